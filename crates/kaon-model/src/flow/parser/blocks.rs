//! Block headers and bodies in both notations, and the repeat-until and
//! conditional blocks.

use super::{PResult, Parser};
use crate::diag::{Code, Span};
use crate::expr::Expr;
use crate::flow::lexer::{Token, TokenKind};
use crate::flow::{Flow, FlowKind};

impl Parser<'_> {
    pub(super) fn header_open(&mut self, what: &str) -> PResult<Token> {
        if self.peek() != &TokenKind::LParen {
            return Err(self.error_here(
                Code::FlowSyntax,
                format!(
                    "expected `(` after {what}, found {}",
                    self.peek().describe()
                ),
            ));
        }
        Ok(self.bump())
    }

    pub(super) fn header_close(&mut self, open: &Token) -> PResult<()> {
        if self.peek() != &TokenKind::RParen {
            return Err(self
                .error_here(
                    Code::FlowSyntax,
                    format!(
                        "expected `,` or `)` in the header, found {}",
                        self.peek().describe()
                    ),
                )
                .related(self.span(open), "header opened here"));
        }
        self.bump();
        Ok(())
    }

    /// `--< ( list [ '|' list ] ) >--`; returns the body and the else part.
    pub(super) fn body_op(
        &mut self,
        header: Span,
        what: &str,
        allow_else: bool,
    ) -> PResult<(Flow, Option<Flow>, Span)> {
        if self.peek() != &TokenKind::BlockOpen {
            return Err(self
                .error_here(
                    Code::FlowSyntax,
                    format!(
                        "expected `--<` after the {what} header, found {}",
                        self.peek().describe()
                    ),
                )
                .related(header, "header")
                .help(format!("a {what} body is written `--< (a, b) >--`")));
        }
        let open = self.bump();
        let open_span = self.span(&open);
        if self.peek() != &TokenKind::LParen {
            return Err(self.error_here(
                Code::FlowSyntax,
                format!("expected `(` after `--<`, found {}", self.peek().describe()),
            ));
        }
        let lp = self.bump();
        let ends: &[TokenKind] = if allow_else {
            &[TokenKind::RParen, TokenKind::Pipe]
        } else {
            &[TokenKind::RParen]
        };
        let body_items = self.list(ends, &format!("an item of the {what} body"))?;
        let body_span = self.span(&lp).to(self.prev_end());
        if body_items.is_empty() {
            return Err(self.error_at(
                Code::FlowSyntax,
                body_span,
                format!("the {what} body is empty"),
            ));
        }
        let body = Flow::sequence(body_items, body_span);
        let mut otherwise = None;
        if allow_else && self.peek() == &TokenKind::Pipe {
            let bar = self.bump();
            let items = self.list(&[TokenKind::RParen], "an item of the else part")?;
            if items.is_empty() {
                return Err(self.error_at(
                    Code::FlowSyntax,
                    self.span(&bar),
                    "the part after `|` is empty",
                ));
            }
            let span = self.span(&bar).to(self.prev_end());
            otherwise = Some(Flow::sequence(items, span));
        }
        if self.peek() != &TokenKind::RParen {
            return Err(self.unclosed(
                open_span,
                &format!("the {what} body opened with `--<`"),
                "`) >--`",
            ));
        }
        self.bump();
        if self.peek() != &TokenKind::BlockClose {
            let mut e = self.unclosed(
                open_span,
                &format!("the {what} body opened with `--<`"),
                "`>--`",
            );
            if self.peek() == &TokenKind::ParClose {
                e = e.help("`>==` joins parallel branches; this block was opened with `--<`, so it closes with `>--`");
            }
            return Err(e);
        }
        let close = self.bump();
        Ok((body, otherwise, self.span(&close)))
    }

    /// The chain of a verb block, checking that `closer` follows it.
    pub(super) fn verb_body(&mut self, kw: &Token, closer: &str) -> PResult<Flow> {
        if !self.starts_element() {
            return Err(self.error_here(
                Code::FlowSyntax,
                format!(
                    "expected the body of `{closer}`, found {}",
                    self.peek().describe()
                ),
            ));
        }
        let body = self.chain()?;
        if !self.is_kw(0, closer) || self.at_verb_block() {
            return Err(self
                .error_here(
                    Code::UnclosedBlock,
                    format!(
                        "`{closer}` block is never closed; found {} instead",
                        self.peek().describe()
                    ),
                )
                .related(self.span(kw), "opened here")
                .help(format!("end the block with `{closer}`")));
        }
        Ok(body)
    }

    /// `until = expr, max = N` in any order.
    fn repeat_args(&mut self, open: &Token) -> PResult<(Expr, u32)> {
        let mut until = None;
        let mut max = None;
        loop {
            let name = match self.peek().clone() {
                TokenKind::Ident(n) if n == "until" || n == "max" => n,
                other => {
                    return Err(self
                        .error_here(
                            Code::FlowSyntax,
                            format!(
                                "expected `until = ...` or `max = N`, found {}",
                                other.describe()
                            ),
                        )
                        .help(
                            "a repeat header is `(until = ${validate.stable} == true, max = 5)`",
                        ));
                }
            };
            let name_tok = self.bump();
            if self.peek() != &TokenKind::Assign {
                return Err(self.error_here(
                    Code::FlowSyntax,
                    format!(
                        "expected `=` after `{name}`, found {}",
                        self.peek().describe()
                    ),
                ));
            }
            self.bump();
            let dup = if name == "until" {
                let was = until.replace(self.condition()?);
                was.is_some()
            } else {
                let t = self.bump();
                let n = match t.kind {
                    TokenKind::Int(n) if n >= 1 && n <= i64::from(u32::MAX) => n as u32,
                    _ => {
                        return Err(self
                            .error_at(
                                Code::InvalidValue,
                                self.span(&t),
                                format!(
                                    "`max` must be a whole number of at least 1, found {}",
                                    t.kind.describe()
                                ),
                            )
                            .help("e.g. `max = 5`"));
                    }
                };
                max.replace(n).is_some()
            };
            if dup {
                return Err(self.error_at(
                    Code::DuplicateName,
                    self.span(&name_tok),
                    format!("`{name}` is given twice in the repeat header"),
                ));
            }
            if self.peek() == &TokenKind::Comma {
                self.bump();
                continue;
            }
            break;
        }
        let header = self.span(open).to(self.here());
        let until = until.ok_or_else(|| {
            self.error_at(
                Code::MissingKey,
                header,
                "the repeat header has no `until = condition`",
            )
            .help("say when to stop: `until = ${validate.stable}`")
        })?;
        let max = max.ok_or_else(|| {
            self.error_at(
                Code::MissingKey,
                header,
                "the repeat header has no `max = N`",
            )
            .help("a loop must be bounded: add `max = 5`")
        })?;
        Ok((until, max))
    }

    pub(super) fn repeat_op(&mut self) -> PResult<Flow> {
        let caret = self.bump();
        let open = self.header_open("`^^`")?;
        let (until, max) = self.repeat_args(&open)?;
        self.header_close(&open)?;
        let header = self.span(&caret).to(self.prev_end());
        let (body, _, close) = self.body_op(header, "repeat", false)?;
        Ok(Flow {
            kind: FlowKind::Repeat {
                until,
                max,
                body: Box::new(body),
            },
            span: header.to(close),
        })
    }

    pub(super) fn repeat_verb(&mut self) -> PResult<Flow> {
        let kw = self.bump();
        let open = self.bump();
        let (until, max) = self.repeat_args(&open)?;
        self.header_close(&open)?;
        let body = self.verb_body(&kw, "repeat")?;
        let close = self.bump();
        Ok(Flow {
            kind: FlowKind::Repeat {
                until,
                max,
                body: Box::new(body),
            },
            span: self.span(&kw).to(self.span(&close)),
        })
    }

    pub(super) fn when_op(&mut self) -> PResult<Flow> {
        let q = self.bump();
        let open = self.header_open("`??`")?;
        let cond = self.condition()?;
        self.header_close(&open)?;
        let header = self.span(&q).to(self.prev_end());
        let (then, otherwise, close) = self.body_op(header, "conditional", true)?;
        Ok(Flow {
            kind: FlowKind::When {
                cond,
                then: Box::new(then),
                otherwise: otherwise.map(Box::new),
            },
            span: header.to(close),
        })
    }

    pub(super) fn when_verb(&mut self) -> PResult<Flow> {
        let kw = self.bump();
        let open = self.bump();
        let cond = self.condition()?;
        self.header_close(&open)?;
        if !self.starts_element() {
            return Err(self.error_here(
                Code::FlowSyntax,
                format!(
                    "expected the body of `when`, found {}",
                    self.peek().describe()
                ),
            ));
        }
        let then = self.chain()?;
        let mut otherwise = None;
        if self.is_kw(0, "otherwise") {
            self.bump();
            otherwise = Some(Box::new(self.verb_body(&kw, "when")?));
        } else if !self.is_kw(0, "when") || self.at_verb_block() {
            return Err(self
                .error_here(
                    Code::UnclosedBlock,
                    format!(
                        "`when` block is never closed; found {} instead",
                        self.peek().describe()
                    ),
                )
                .related(self.span(&kw), "opened here")
                .help("end the block with `when` (or add `otherwise ... when`)"));
        }
        let close = self.bump();
        Ok(Flow {
            kind: FlowKind::When {
                cond,
                then: Box::new(then),
                otherwise,
            },
            span: self.span(&kw).to(self.span(&close)),
        })
    }
}
