//! Chains, groups, sequences and parallel blocks, and the dispatch to
//! the other blocks.

use super::{CLOSERS, Nest, PResult, ParseError, Parser};
use crate::diag::{Code, Span};
use crate::flow::lexer::TokenKind;
use crate::flow::{Flow, FlowKind};

impl Parser<'_> {
    /// Elements joined by `->` (or following a block): a flat list however
    /// long the chain, never a nest.
    pub(super) fn chain(&mut self) -> PResult<Flow> {
        let start = self.here();
        let mut items = Vec::new();
        loop {
            // Whether the element *ends in a block closer* is a matter of
            // syntax: `sequence(x)` and `(x)` end in `)` even when x is a block.
            let was_block = self.at_block_opener();
            let elem = self.element()?;
            items.push(elem);
            if self.peek() == &TokenKind::Arrow {
                let arrow = self.bump();
                if !self.starts_element() {
                    // element() knows the precise complaint (an unopened
                    // closer, the end of the flow, ...).
                    let err = match self.element() {
                        Err(e) => e,
                        Ok(_) => self.error_here(Code::FlowSyntax, "expected a step after `->`"),
                    };
                    return Err(
                        err.related(self.span(&arrow), "this arrow needs a step to point at")
                    );
                }
                continue;
            }
            if self.at_block_opener() || (was_block && self.starts_element()) {
                continue;
            }
            break;
        }
        let span = start.to(self.prev_end());
        Ok(Flow::sequence(items, span))
    }

    fn element(&mut self) -> PResult<Flow> {
        if self.at_block_opener() {
            self.enter(Nest::Block, self.here())?;
            let block = self.block()?;
            self.leave(Nest::Block);
            return Ok(block);
        }
        if self.peek() == &TokenKind::LParen || self.is_kw(0, "sequence") {
            self.enter(Nest::Group, self.here())?;
            let group = self.group()?;
            self.leave(Nest::Group);
            return Ok(group);
        }
        match self.peek().clone() {
            TokenKind::Ident(w) if CLOSERS.contains(&w.as_str()) => Err(self
                .error_here(
                    Code::UnopenedBlock,
                    format!("`{w}` closes a block, but no `{w}` block is open here"),
                )
                .help(format!(
                    "open it first, e.g. `{w}(...) body {w}`; a step may not be called `{w}`"
                ))),
            TokenKind::Ident(name) => {
                let t = self.bump();
                Ok(Flow::step(&name, self.span(&t)))
            }
            TokenKind::BlockOpen => Err(self
                .error_here(
                    Code::FlowSyntax,
                    "`--<` opens a block body, but no block header comes before it",
                )
                .help("write a header first: `**(x = list) --< (...) >--`, `^^(until = cond, max = 5) --< (...) >--` or `??(cond) --< (...) >--`")),
            TokenKind::BlockClose => Err(self
                .error_here(
                    Code::UnopenedBlock,
                    "`>--` closes a block (the for-each join), but no block was opened with `--<`",
                )
                .help("a for-each is written `split **(x = list) --< (a, b) >-- join`")),
            TokenKind::ParClose => Err(self
                .error_here(
                    Code::UnopenedBlock,
                    "`>==` joins parallel branches, but none were opened with `==>`",
                )
                .help("open the branches first: `a ==> (b, c) >== d`")),
            other => Err(self
                .error_here(
                    Code::FlowSyntax,
                    format!("expected a step name or a block, found {}", other.describe()),
                )
                .help("a flow is made of step names joined by `->`, `==> ( , ) >==`, `**(x = list) --< ( ) >--`")),
        }
    }

    /// A block, at its opener (see [`Parser::at_block_opener`]).
    fn block(&mut self) -> PResult<Flow> {
        match self.peek().clone() {
            TokenKind::ParOpen => self.parallel_op(),
            TokenKind::Star2 => self.foreach_op(),
            TokenKind::Caret2 => self.repeat_op(),
            TokenKind::Quest2 => self.when_op(),
            TokenKind::Ident(w) => match w.as_str() {
                "parallel" => self.parallel_verb(),
                "forEach" => self.foreach_verb(),
                "repeat" => self.repeat_verb(),
                _ => self.when_verb(),
            },
            other => Err(self.error_here(
                Code::FlowSyntax,
                format!("expected a block, found {}", other.describe()),
            )),
        }
    }

    /// `( chain )` or `sequence( list )`, at its `(` or `sequence`.
    fn group(&mut self) -> PResult<Flow> {
        if self.peek() != &TokenKind::LParen {
            return self.sequence_verb();
        }
        let open = self.bump();
        let inner = self.chain()?;
        if self.peek() != &TokenKind::RParen {
            let e = if self.peek() == &TokenKind::Comma {
                self.error_here(
                    Code::FlowSyntax,
                    "`,` in a plain group: branches go inside `==> ( ... ) >==`",
                )
                .help("write `x ==> (a, b) >== y` for parallel branches")
            } else {
                self.error_here(
                    Code::FlowSyntax,
                    format!(
                        "expected `)` to close the group, found {}",
                        self.peek().describe()
                    ),
                )
            };
            return Err(e.related(self.span(&open), "group opened here"));
        }
        let close = self.bump();
        let mut f = inner;
        f.span = self.span(&open).to(self.span(&close));
        Ok(f)
    }

    /// Chains separated by commas up to (not including) one of `ends`.
    pub(super) fn list(&mut self, ends: &[TokenKind], what: &str) -> PResult<Vec<Flow>> {
        let mut items = Vec::new();
        loop {
            if ends.contains(self.peek()) {
                break;
            }
            items.push(self.chain()?);
            if self.peek() == &TokenKind::Comma {
                self.bump();
                continue;
            }
            if ends.contains(self.peek()) {
                break;
            }
            let expected: Vec<String> = ends.iter().map(|e| format!("`{}`", e.symbol())).collect();
            let mut err = self.error_here(
                Code::FlowSyntax,
                format!(
                    "expected `,` or {} after {what}, found {}",
                    expected.join(" or "),
                    self.peek().describe()
                ),
            );
            if self.starts_element() {
                err = err.help("did you forget `->` between two steps?");
            }
            return Err(err);
        }
        Ok(items)
    }

    fn parallel_op(&mut self) -> PResult<Flow> {
        let open = self.bump();
        let open_span = self.span(&open);
        if self.peek() != &TokenKind::LParen {
            return Err(self
                .error_here(
                    Code::FlowSyntax,
                    format!("expected `(` after `==>`, found {}", self.peek().describe()),
                )
                .help("parallel branches are written `==> (a, b) >==`"));
        }
        self.bump();
        let branches = self.list(&[TokenKind::RParen], "a parallel branch")?;
        if branches.is_empty() {
            return Err(self.error_here(Code::FlowSyntax, "parallel block has no branches"));
        }
        if self.peek() != &TokenKind::RParen {
            return Err(self.unclosed(
                open_span,
                "the parallel block opened with `==>`",
                "`) >==`",
            ));
        }
        self.bump();
        if self.peek() != &TokenKind::ParClose {
            return Err(self.unclosed(
                open_span,
                "the parallel block opened with `==>`",
                "`>==` after the closing `)`",
            ));
        }
        let close = self.bump();
        Ok(Flow {
            kind: FlowKind::Parallel { branches },
            span: open_span.to(self.span(&close)),
        })
    }

    pub(super) fn unclosed(&self, opened: Span, what: &str, closer: &str) -> ParseError {
        self.error_here(
            Code::UnclosedBlock,
            format!(
                "{what} is never closed; found {} instead",
                self.peek().describe()
            ),
        )
        .related(opened, "opened here")
        .help(format!("close the block with {closer}"))
    }

    fn parallel_verb(&mut self) -> PResult<Flow> {
        let open = self.bump();
        let open_span = self.span(&open);
        self.bump(); // `{`, checked by at_verb_block
        let mut branches = Vec::new();
        while !matches!(self.peek(), TokenKind::RBrace | TokenKind::Eof) {
            branches.push(self.chain()?);
            if self.peek() == &TokenKind::Comma {
                self.bump();
            } else if !matches!(self.peek(), TokenKind::RBrace) && !self.starts_element() {
                break;
            }
        }
        if self.peek() != &TokenKind::RBrace {
            return Err(self.unclosed(
                open_span,
                "the parallel block opened with `parallel {`",
                "`} parallel`",
            ));
        }
        if branches.is_empty() {
            return Err(self.error_here(Code::FlowSyntax, "parallel block has no branches"));
        }
        self.bump();
        if !self.is_kw(0, "parallel") {
            return Err(self.unclosed(
                open_span,
                "the parallel block opened with `parallel {`",
                "`} parallel`",
            ));
        }
        let close = self.bump();
        Ok(Flow {
            kind: FlowKind::Parallel { branches },
            span: open_span.to(self.span(&close)),
        })
    }

    fn sequence_verb(&mut self) -> PResult<Flow> {
        let kw = self.bump();
        let kw_span = self.span(&kw);
        if self.peek() != &TokenKind::LParen {
            return Err(self
                .error_at(
                    Code::ReservedName,
                    kw_span,
                    "`sequence` is a keyword, not a step name",
                )
                .help("write `sequence(a, b, c)`, or rename the step"));
        }
        let open = self.bump();
        let items = self.list(&[TokenKind::RParen], "a sequence item")?;
        if self.peek() != &TokenKind::RParen {
            return Err(self
                .error_here(Code::UnclosedBlock, "`sequence(` is never closed with `)`")
                .related(self.span(&open), "opened here"));
        }
        let close = self.bump();
        let span = kw_span.to(self.span(&close));
        if items.is_empty() {
            return Err(self.error_at(Code::FlowSyntax, span, "`sequence()` is empty"));
        }
        Ok(Flow::sequence(items, span))
    }
}
