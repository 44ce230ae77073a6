//! For-each blocks: bindings and the lists they loop over.

use super::{PResult, Parser};
use crate::diag::Code;
use crate::expr::Ref;
use crate::flow::lexer::TokenKind;
use crate::flow::{Binding, Flow, FlowKind, Ident, ListSource};

impl Parser<'_> {
    fn bindings(&mut self) -> PResult<Vec<Binding>> {
        let mut out = Vec::new();
        loop {
            let var = match self.peek().clone() {
                TokenKind::Ident(name) => {
                    let t = self.bump();
                    Ident {
                        name,
                        span: self.span(&t),
                    }
                }
                other => {
                    return Err(self
                        .error_here(
                            Code::FlowSyntax,
                            format!("expected a loop variable name, found {}", other.describe()),
                        )
                        .help(
                            "bindings are written `var = list`, e.g. `reg = ${wrangle.regions}`",
                        ));
                }
            };
            if self.peek() != &TokenKind::Assign {
                return Err(self.error_here(
                    Code::FlowSyntax,
                    format!(
                        "expected `=` after `{}`, found {}",
                        var.name,
                        self.peek().describe()
                    ),
                ));
            }
            self.bump();
            let source = self.list_source()?;
            out.push(Binding { var, source });
            if self.peek() == &TokenKind::Comma {
                self.bump();
                continue;
            }
            return Ok(out);
        }
    }

    fn list_source(&mut self) -> PResult<ListSource> {
        match self.peek().clone() {
            TokenKind::Ident(name) => {
                let t = self.bump();
                Ok(ListSource::Param {
                    name: Ident {
                        name,
                        span: self.span(&t),
                    },
                })
            }
            TokenKind::Ref(path) => {
                let t = self.bump();
                Ok(ListSource::Ref {
                    r: Ref {
                        path,
                        span: self.span(&t),
                    },
                })
            }
            TokenKind::LBracket => {
                let open = self.bump();
                let mut items = Vec::new();
                while self.peek() != &TokenKind::RBracket {
                    let lit = self.literal().ok_or_else(|| {
                        self.error_here(
                            Code::FlowSyntax,
                            format!("expected a value in the list, found {}", self.peek().describe()),
                        )
                        .related(self.span(&open), "list opened here")
                    })?;
                    items.push(lit);
                    if self.peek() == &TokenKind::Comma {
                        self.bump();
                    } else if self.peek() != &TokenKind::RBracket {
                        return Err(self.error_here(
                            Code::FlowSyntax,
                            format!("expected `,` or `]` in the list, found {}", self.peek().describe()),
                        ));
                    }
                }
                let close = self.bump();
                Ok(ListSource::Literal {
                    items,
                    span: self.span(&open).to(self.span(&close)),
                })
            }
            other => Err(self
                .error_here(
                    Code::FlowSyntax,
                    format!("expected a list to loop over, found {}", other.describe()),
                )
                .help("loop over a parameter (`regions`), an output (`${wrangle.regions}`) or a literal list (`[\"US\", \"CA\"]`)")),
        }
    }

    pub(super) fn foreach_op(&mut self) -> PResult<Flow> {
        let star = self.bump();
        let open = self.header_open("`**`")?;
        let bindings = self.bindings()?;
        self.header_close(&open)?;
        let header = self.span(&star).to(self.prev_end());
        let (body, _, close) = self.body_op(header, "for-each", false)?;
        Ok(Flow {
            kind: FlowKind::ForEach {
                bindings,
                body: Box::new(body),
            },
            span: header.to(close),
        })
    }

    pub(super) fn foreach_verb(&mut self) -> PResult<Flow> {
        let kw = self.bump();
        let open = self.bump();
        let bindings = self.bindings()?;
        self.header_close(&open)?;
        let body = self.verb_body(&kw, "forEach")?;
        let close = self.bump();
        Ok(Flow {
            kind: FlowKind::ForEach {
                bindings,
                body: Box::new(body),
            },
            span: self.span(&kw).to(self.span(&close)),
        })
    }
}
