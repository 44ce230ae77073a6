//! The flow language: how steps are ordered.
//!
//! Two notations parse to one model ([`Flow`]) and may be mixed:
//!
//! | construct | operators | verbs |
//! |---|---|---|
//! | sequence | `a -> b -> c` | `sequence(a, b, c)` |
//! | parallel | `x ==> (a -> b, c) >== y` | `x parallel { sequence(a, b) c } parallel y` |
//! | for-each | `**(r = regions) --< (a, b) >--` | `forEach(r = regions) sequence(a, b) forEach` |
//! | repeat-until | `^^(until = C, max = 5) --< (a, b) >--` | `repeat(until = C, max = 5) sequence(a, b) repeat` |
//! | conditional | `??(C) --< (a \| b) >--` | `when(C) a otherwise b when` |
//!
//! See `docs/dsl.md` for the reference.

mod lexer;
mod parser;
mod print;

pub use lexer::{Token, TokenKind};
pub use parser::{ParseError, parse_flow};
pub use print::{Notation, print_flow};

use serde::Serialize;

use crate::diag::Span;
use crate::expr::{Expr, Lit, Ref};

/// Words with a meaning in the flow; no step may be called one of these.
pub const RESERVED: &[&str] = &[
    "sequence",
    "parallel",
    "forEach",
    "repeat",
    "when",
    "otherwise",
    "until",
    "max",
    "params",
    "run",
    "true",
    "false",
    "null",
];

/// Marker steps that need not be declared: the flow's entry and exit.
pub const MARKERS: &[&str] = &["start", "end"];

/// A name with its place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it stands.
    #[serde(skip)]
    pub span: Span,
}

impl Ident {
    fn without_span(&self) -> Ident {
        Ident {
            name: self.name.clone(),
            span: Span::default(),
        }
    }
}

/// One node of the flow tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flow {
    /// What it is.
    #[serde(flatten)]
    pub kind: FlowKind,
    /// Where it stands.
    #[serde(skip)]
    pub span: Span,
}

/// The constructs of the flow language.
///
/// The parser normalises: a sequence has at least two items and none of them
/// is itself a sequence, so equal flows have equal trees whichever notation
/// they were written in.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "node", rename_all = "snake_case")]
pub enum FlowKind {
    /// Run a step.
    Step {
        /// The step.
        step: Ident,
    },
    /// Run items one after another.
    Sequence {
        /// The items.
        items: Vec<Flow>,
    },
    /// Run branches at the same time; what follows waits for all of them.
    Parallel {
        /// The branches.
        branches: Vec<Flow>,
    },
    /// Run the body once per item (per combination, with several bindings).
    ForEach {
        /// `var = list` bindings; several form a cross product.
        bindings: Vec<Binding>,
        /// The body.
        body: Box<Flow>,
    },
    /// Run the body, then again until the condition holds, at most `max` times.
    Repeat {
        /// Checked after each pass.
        until: Expr,
        /// Most passes.
        max: u32,
        /// The body.
        body: Box<Flow>,
    },
    /// Run `then` when the condition holds, else `otherwise` (if any).
    When {
        /// The condition.
        cond: Expr,
        /// Taken when true.
        then: Box<Flow>,
        /// Taken when false.
        otherwise: Option<Box<Flow>>,
    },
}

/// `var = list` in a for-each header.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Binding {
    /// The loop variable.
    pub var: Ident,
    /// The list it takes its values from.
    pub source: ListSource,
}

/// Where a for-each list comes from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ListSource {
    /// A workflow parameter named bare, as in Meson: `reg = regions`.
    Param {
        /// The parameter.
        name: Ident,
    },
    /// A reference, e.g. `${wrangle.regions}` (known at run time).
    Ref {
        /// The reference.
        #[serde(rename = "ref")]
        r: Ref,
    },
    /// A literal list: `["US", "CA"]`.
    Literal {
        /// The items.
        items: Vec<Lit>,
        /// Where the list stands.
        #[serde(skip)]
        span: Span,
    },
}

impl ListSource {
    /// Where the source stands.
    pub fn span(&self) -> Span {
        match self {
            ListSource::Param { name } => name.span,
            ListSource::Ref { r } => r.span,
            ListSource::Literal { span, .. } => *span,
        }
    }
}

impl Flow {
    /// A step node.
    pub fn step(name: &str, span: Span) -> Flow {
        Flow {
            kind: FlowKind::Step {
                step: Ident {
                    name: name.to_string(),
                    span,
                },
            },
            span,
        }
    }

    /// Builds a normalised sequence: nested sequences are spliced in and a
    /// single item stands for itself.
    pub fn sequence(items: Vec<Flow>, span: Span) -> Flow {
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match item.kind {
                FlowKind::Sequence { items } => flat.extend(items),
                kind => flat.push(Flow {
                    kind,
                    span: item.span,
                }),
            }
        }
        if flat.len() == 1 {
            return flat.pop().unwrap_or_else(|| Flow::step("", span));
        }
        Flow {
            kind: FlowKind::Sequence { items: flat },
            span,
        }
    }

    /// The items when this is a sequence, else just this node.
    pub fn items(&self) -> &[Flow] {
        match &self.kind {
            FlowKind::Sequence { items } => items,
            _ => std::slice::from_ref(self),
        }
    }

    /// True for constructs with a body or branches.
    pub fn is_block(&self) -> bool {
        !matches!(self.kind, FlowKind::Step { .. } | FlowKind::Sequence { .. })
    }

    /// Visits every step reference, depth first, left to right.
    pub fn for_each_step<'a>(&'a self, f: &mut impl FnMut(&'a Ident)) {
        match &self.kind {
            FlowKind::Step { step } => f(step),
            FlowKind::Sequence { items } => items.iter().for_each(|i| i.for_each_step(f)),
            FlowKind::Parallel { branches } => branches.iter().for_each(|b| b.for_each_step(f)),
            FlowKind::ForEach { body, .. } | FlowKind::Repeat { body, .. } => body.for_each_step(f),
            FlowKind::When {
                then, otherwise, ..
            } => {
                then.for_each_step(f);
                if let Some(o) = otherwise {
                    o.for_each_step(f);
                }
            }
        }
    }

    /// A copy with every span zeroed, for comparing models.
    pub fn without_spans(&self) -> Flow {
        let kind = match &self.kind {
            FlowKind::Step { step } => FlowKind::Step {
                step: step.without_span(),
            },
            FlowKind::Sequence { items } => FlowKind::Sequence {
                items: items.iter().map(Flow::without_spans).collect(),
            },
            FlowKind::Parallel { branches } => FlowKind::Parallel {
                branches: branches.iter().map(Flow::without_spans).collect(),
            },
            FlowKind::ForEach { bindings, body } => FlowKind::ForEach {
                bindings: bindings
                    .iter()
                    .map(|b| Binding {
                        var: b.var.without_span(),
                        source: match &b.source {
                            ListSource::Param { name } => ListSource::Param {
                                name: name.without_span(),
                            },
                            ListSource::Ref { r } => ListSource::Ref {
                                r: Ref {
                                    path: r.path.clone(),
                                    span: Span::default(),
                                },
                            },
                            ListSource::Literal { items, .. } => ListSource::Literal {
                                items: items.clone(),
                                span: Span::default(),
                            },
                        },
                    })
                    .collect(),
                body: Box::new(body.without_spans()),
            },
            FlowKind::Repeat { until, max, body } => FlowKind::Repeat {
                until: until.without_spans(),
                max: *max,
                body: Box::new(body.without_spans()),
            },
            FlowKind::When {
                cond,
                then,
                otherwise,
            } => FlowKind::When {
                cond: cond.without_spans(),
                then: Box::new(then.without_spans()),
                otherwise: otherwise.as_ref().map(|o| Box::new(o.without_spans())),
            },
        };
        Flow {
            kind,
            span: Span::default(),
        }
    }
}
