//! References (`${params.x}`, `${step.output}`, `${var}`), string templates
//! that embed them, and the small condition language of `repeat` and `when`.

use std::fmt;

use serde::Serialize;

use crate::diag::Span;

/// A `${...}` reference, split on dots.
///
/// - `${params.NAME}`: a workflow parameter;
/// - `${run.id}`, `${run.name}`: facts about the run;
/// - `${STEP.OUTPUT[.FIELD...]}`: an output of an upstream step (fields index
///   into a `json` output);
/// - `${VAR}`: a for-each loop variable in scope.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ref {
    /// The dotted path.
    pub path: Vec<String>,
    /// Where the whole `${...}` stands.
    #[serde(skip)]
    pub span: Span,
}

impl Ref {
    /// What the reference points at, by the rules above.
    pub fn target(&self) -> RefTarget<'_> {
        match self.path.as_slice() {
            [var] => RefTarget::LoopVar(var),
            [ns, name, ..] if ns == "params" => RefTarget::Param(name),
            [ns, name, ..] if ns == "run" => RefTarget::Run(name),
            [step, output, rest @ ..] => RefTarget::Output {
                step,
                output,
                fields: rest,
            },
            [] => RefTarget::LoopVar(""),
        }
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}}}", self.path.join("."))
    }
}

/// What a [`Ref`] names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RefTarget<'a> {
    /// `${params.NAME}`
    Param(&'a str),
    /// `${run.FIELD}`
    Run(&'a str),
    /// `${STEP.OUTPUT...}`
    Output {
        /// The step.
        step: &'a str,
        /// The output.
        output: &'a str,
        /// Fields inside a json output.
        fields: &'a [String],
    },
    /// `${VAR}`
    LoopVar(&'a str),
}

/// The fields `${run.X}` may name.
pub const RUN_FIELDS: &[&str] = &["id", "name", "attempt"];

/// A literal value in a condition or a literal list.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Lit {
    /// `"text"`
    Str(String),
    /// `42`
    Int(i64),
    /// `0.5`
    Float(f64),
    /// `true`, `false`
    Bool(bool),
    /// `null`
    Null,
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Str(s) => write!(f, "{}", quote(s)),
            Lit::Int(i) => write!(f, "{i}"),
            Lit::Float(x) => {
                if x.fract() == 0.0 && x.is_finite() {
                    write!(f, "{x:.1}")
                } else {
                    write!(f, "{x}")
                }
            }
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Null => f.write_str("null"),
        }
    }
}

/// Quotes a string the way the flow lexer reads it back.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Binary operators of conditions, loosest first: `||`, `&&`, comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BinOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl BinOp {
    /// The operator's text.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }

    /// Binding strength: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            _ => 3,
        }
    }

    /// True for `==`, `!=`, `<`, `<=`, `>`, `>=`.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }
}

/// A condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "expr", rename_all = "snake_case")]
pub enum Expr {
    /// A literal.
    Lit {
        /// The value.
        value: Lit,
        /// Where.
        #[serde(skip)]
        span: Span,
    },
    /// A reference.
    Ref {
        /// The reference.
        #[serde(rename = "ref")]
        r: Ref,
    },
    /// `!e`
    Not {
        /// The operand.
        operand: Box<Expr>,
        /// Where the whole `!e` stands.
        #[serde(skip)]
        span: Span,
    },
    /// `a OP b`
    Binary {
        /// Left operand.
        left: Box<Expr>,
        /// Operator.
        op: BinOp,
        /// Right operand.
        right: Box<Expr>,
    },
}

impl Expr {
    /// Where the expression stands.
    pub fn span(&self) -> Span {
        match self {
            Expr::Lit { span, .. } | Expr::Not { span, .. } => *span,
            Expr::Ref { r } => r.span,
            Expr::Binary { left, right, .. } => left.span().to(right.span()),
        }
    }

    /// Every reference in the expression, left to right.
    pub fn refs(&self) -> Vec<&Ref> {
        let mut out = Vec::new();
        self.collect_refs(&mut out);
        out
    }

    fn collect_refs<'a>(&'a self, out: &mut Vec<&'a Ref>) {
        match self {
            Expr::Lit { .. } => {}
            Expr::Ref { r } => out.push(r),
            Expr::Not { operand, .. } => operand.collect_refs(out),
            Expr::Binary { left, right, .. } => {
                left.collect_refs(out);
                right.collect_refs(out);
            }
        }
    }

    /// A copy with every span zeroed, for comparing models.
    pub fn without_spans(&self) -> Expr {
        match self {
            Expr::Lit { value, .. } => Expr::Lit {
                value: value.clone(),
                span: Span::default(),
            },
            Expr::Ref { r } => Expr::Ref {
                r: Ref {
                    path: r.path.clone(),
                    span: Span::default(),
                },
            },
            Expr::Not { operand, .. } => Expr::Not {
                operand: Box::new(operand.without_spans()),
                span: Span::default(),
            },
            Expr::Binary { left, op, right } => Expr::Binary {
                left: Box::new(left.without_spans()),
                op: *op,
                right: Box::new(right.without_spans()),
            },
        }
    }

    fn fmt_prec(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        match self {
            Expr::Lit { value, .. } => write!(f, "{value}"),
            Expr::Ref { r } => write!(f, "{r}"),
            Expr::Not { operand, .. } => {
                f.write_str("!")?;
                operand.fmt_prec(f, 4)
            }
            Expr::Binary { left, op, right } => {
                let p = op.precedence();
                let paren = p < min;
                if paren {
                    f.write_str("(")?;
                }
                // Comparisons do not chain, so both sides bind tighter.
                let (lmin, rmin) = if op.is_comparison() {
                    (4, 4)
                } else {
                    (p, p + 1)
                };
                left.fmt_prec(f, lmin)?;
                write!(f, " {} ", op.as_str())?;
                right.fmt_prec(f, rmin)?;
                if paren {
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_prec(f, 0)
    }
}

/// One piece of a [`Template`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Part {
    /// Text taken as it is.
    Text(String),
    /// A reference substituted at run time.
    Ref(Ref),
}

/// A string setting with `${...}` references in it, e.g.
/// `"--date=${params.cohort_date}"`. `$${` stands for a literal `${`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Template {
    /// Text and references, in order.
    pub parts: Vec<Part>,
    /// Where the string stands in the file.
    #[serde(skip)]
    pub span: Span,
}

impl Template {
    /// Every reference in the template.
    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Text(_) => None,
        })
    }

    /// The single reference when the template is exactly `${...}` (then its
    /// value keeps its type instead of becoming text).
    pub fn as_single_ref(&self) -> Option<&Ref> {
        match self.parts.as_slice() {
            [Part::Ref(r)] => Some(r),
            _ => None,
        }
    }

    /// The text when there are no references.
    pub fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Text(t) => f.write_str(&t.replace("${", "$${"))?,
                Part::Ref(r) => write!(f, "{r}")?,
            }
        }
        Ok(())
    }
}

/// Why a reference does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefError {
    /// Offsets in the scanned text.
    pub start: usize,
    /// End offset.
    pub end: usize,
    /// What is wrong.
    pub message: String,
}

/// True for the characters of names: steps, outputs, parameters, variables.
pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// True for the characters after the first.
pub fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// True when `s` is a valid name.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_continue)
}

/// Parses the inside of `${...}` (`inner` starts at offset `at` of the text).
pub fn parse_ref_path(inner: &str, at: usize) -> Result<Vec<String>, RefError> {
    let trimmed = inner.trim();
    if trimmed.is_empty() {
        return Err(RefError {
            start: at,
            end: at + inner.len(),
            message: "empty reference `${}`".into(),
        });
    }
    let mut path = Vec::new();
    let mut offset = at + (inner.len() - inner.trim_start().len());
    for seg in trimmed.split('.') {
        if !is_ident(seg) {
            return Err(RefError {
                start: offset,
                end: offset + seg.len().max(1),
                message: format!(
                    "`{seg}` is not a name: references are dotted names like `${{step.output}}`"
                ),
            });
        }
        path.push(seg.to_string());
        offset += seg.len() + 1;
    }
    Ok(path)
}

/// Splits a string setting into text and references. Offsets in errors and
/// returned spans are relative to `s` and mapped by `map`.
pub fn parse_template(
    s: &str,
    map: impl Fn(usize, usize) -> Span,
    span: Span,
) -> Result<Template, RefError> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with("$${") {
            text.push_str("${");
            i += 3;
        } else if s[i..].starts_with("${") {
            let close = s[i + 2..].find('}').ok_or_else(|| RefError {
                start: i,
                end: s.len(),
                message: "`${` is never closed with `}`".into(),
            })?;
            let inner = &s[i + 2..i + 2 + close];
            let path = parse_ref_path(inner, i + 2)?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            let end = i + 2 + close + 1;
            parts.push(Part::Ref(Ref {
                path,
                span: map(i, end),
            }));
            i = end;
        } else {
            // Advance one whole character; `$` and `{` are ASCII so byte
            // tests above are safe.
            let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
            text.push_str(&s[i..i + ch_len]);
            i += ch_len;
        }
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(Template { parts, span })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(s: &str) -> Template {
        parse_template(s, Span::new, Span::default()).expect("parses")
    }

    #[test]
    fn template_splits_text_and_refs() {
        let t = tpl("--date=${params.day} --out=${ prep.path }/x");
        assert_eq!(t.parts.len(), 5);
        assert_eq!(t.refs().count(), 2);
        assert_eq!(t.to_string(), "--date=${params.day} --out=${prep.path}/x");
        let r = t.refs().nth(1).expect("second ref");
        assert_eq!(r.span, Span::new(27, 41));
    }

    #[test]
    fn escaped_dollar_is_text() {
        let t = tpl("echo $${HOME} ${reg}");
        assert_eq!(t.parts[0], Part::Text("echo ${HOME} ".into()));
        assert_eq!(t.to_string(), "echo $${HOME} ${reg}");
    }

    #[test]
    fn single_ref_keeps_type() {
        assert!(tpl("${a.b}").as_single_ref().is_some());
        assert!(tpl("x${a.b}").as_single_ref().is_none());
    }

    #[test]
    fn bad_refs_are_errors_with_offsets() {
        let e = parse_template("ab ${x.1y}", Span::new, Span::default()).expect_err("bad segment");
        assert_eq!((e.start, e.end), (7, 9));
        let e = parse_template("${open", Span::new, Span::default()).expect_err("unclosed");
        assert_eq!(e.start, 0);
    }

    #[test]
    fn targets() {
        let r = |p: &str| Ref {
            path: p.split('.').map(String::from).collect(),
            span: Span::default(),
        };
        assert_eq!(r("params.x").target(), RefTarget::Param("x"));
        assert_eq!(r("reg").target(), RefTarget::LoopVar("reg"));
        assert!(matches!(
            r("s.o.f").target(),
            RefTarget::Output {
                step: "s",
                output: "o",
                ..
            }
        ));
    }
}
