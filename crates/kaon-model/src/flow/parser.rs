//! Recursive-descent parser for the flow language (both notations at once).
//!
//! Grammar (informal; `chain` is the workhorse):
//!
//! ```text
//! flow     := chain EOF
//! chain    := element ( ( '->' element ) | block | ( element after a block ) )*
//! element  := STEP | '(' chain ')' | 'sequence' '(' list ')' | block
//! block    := '==>' '(' list ')' '>=='                      parallel
//!           | 'parallel' '{' chain* '}' 'parallel'           parallel (verbs)
//!           | '**' '(' bindings ')' body                     for-each
//!           | 'forEach' '(' bindings ')' chain 'forEach'
//!           | '^^' '(' repeat-args ')' body                  repeat-until
//!           | 'repeat' '(' repeat-args ')' chain 'repeat'
//!           | '??' '(' expr ')' '--<' '(' list [ '|' list ] ')' '>--'
//!           | 'when' '(' expr ')' chain [ 'otherwise' chain ] 'when'
//! body     := '--<' '(' list ')' '>--'
//! list     := chain ( ',' chain )*          (a sequence, or branches after '==>')
//! bindings := NAME '=' source ( ',' NAME '=' source )*
//! source   := NAME | REF | '[' literal ( ',' literal )* ']'
//! ```
//!
//! Two plain elements side by side (`a b`) end a chain: inside `parallel {}`
//! that starts the next branch, elsewhere it is an error that asks for `->`.

use crate::diag::{Code, Span, StrMap};
use crate::expr::{BinOp, Expr, Lit, Ref};
use crate::flow::lexer::{Token, TokenKind, lex};
use crate::flow::{Binding, Flow, FlowKind, Ident, ListSource};

/// How deep blocks (parallel, for-each, repeat, when) may nest.
pub const MAX_BLOCK_DEPTH: u32 = 100;

/// How deep plain groups, `( ... )` and `sequence( ... )`, may nest. More
/// than blocks: canonical verbs wrap a block body in `sequence( ... )`, and
/// the canonical text of every flow that parses must parse again.
pub const MAX_GROUP_DEPTH: u32 = 128;

/// How deep a condition may nest (parentheses and `!`).
pub const MAX_CONDITION_DEPTH: u32 = 100;

/// How many binary operators a condition may have: `a || b || c` nests its
/// tree one level per operator, and everything that walks a condition
/// (checking, printing, evaluating) recurses through that tree.
pub const MAX_CONDITION_OPERATORS: u32 = 100;

/// What the parser is nested in; each kind has its own bound. The bounds
/// keep every recursive walk of the model (this parser, validation, the
/// plan, the printer, the engine) well inside a thread's stack. Sequences
/// never nest: `a -> b -> c` is one flat list however long it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nest {
    Block,
    Group,
    Condition,
}

/// Why a flow does not parse.
#[derive(Clone, Debug, PartialEq)]
pub struct ParseError {
    /// [`Code::FlowSyntax`], [`Code::UnopenedBlock`] or [`Code::UnclosedBlock`].
    pub code: Code,
    /// Where (mapped into the file).
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: Option<String>,
    /// A related place, e.g. where an unclosed block was opened.
    pub related: Option<(Span, String)>,
}

type PResult<T> = Result<T, ParseError>;

/// Parses flow text. Spans are mapped through `map` into file offsets.
pub fn parse_flow(src: &str, map: &StrMap) -> PResult<Flow> {
    let tokens = lex(src).map_err(|e| ParseError {
        code: Code::FlowSyntax,
        span: map.map(e.start, e.end),
        message: e.message,
        help: e.help,
        related: None,
    })?;
    let mut p = Parser {
        tokens,
        pos: 0,
        map,
        blocks: 0,
        groups: 0,
        cond_depth: 0,
        cond_ops: 0,
    };
    if p.peek() == &TokenKind::Eof {
        return Err(p
            .error_here(Code::FlowSyntax, "the flow is empty")
            .help("write the order of steps, e.g. `start -> prepare -> train -> end`"));
    }
    let flow = p.chain()?;
    p.expect_end()?;
    Ok(flow)
}

struct Parser<'m> {
    tokens: Vec<Token>,
    pos: usize,
    map: &'m StrMap,
    /// Blocks open around the current token.
    blocks: u32,
    /// Plain groups open around the current token.
    groups: u32,
    /// Parentheses and `!` open in the current condition.
    cond_depth: u32,
    /// Binary operators so far in the current condition.
    cond_ops: u32,
}

impl ParseError {
    fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }

    fn related(mut self, span: Span, msg: impl Into<String>) -> Self {
        self.related = Some((span, msg.into()));
        self
    }
}

/// Keywords that close a verb block (when not followed by `(` or `{`).
const CLOSERS: &[&str] = &["forEach", "repeat", "when", "otherwise", "parallel"];

impl Parser<'_> {
    fn peek(&self) -> &TokenKind {
        &self.tokens[self.pos.min(self.tokens.len() - 1)].kind
    }

    fn peek_at(&self, n: usize) -> &TokenKind {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].kind
    }

    fn tok(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.tok().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn span(&self, t: &Token) -> Span {
        self.map.map(t.start, t.end)
    }

    fn here(&self) -> Span {
        self.span(self.tok())
    }

    fn prev_end(&self) -> Span {
        let t = &self.tokens[self.pos.saturating_sub(1)];
        self.map.map(t.end, t.end)
    }

    fn error_at(&self, code: Code, span: Span, msg: impl Into<String>) -> ParseError {
        ParseError {
            code,
            span,
            message: msg.into(),
            help: None,
            related: None,
        }
    }

    fn error_here(&self, code: Code, msg: impl Into<String>) -> ParseError {
        self.error_at(code, self.here(), msg)
    }

    /// Opens one level of `what` at `at` (the token that opens it), or
    /// refuses when that is one level too many.
    fn enter(&mut self, what: Nest, at: Span) -> PResult<()> {
        let (depth, max) = match what {
            Nest::Block => (&mut self.blocks, MAX_BLOCK_DEPTH),
            Nest::Group => (&mut self.groups, MAX_GROUP_DEPTH),
            Nest::Condition => (&mut self.cond_depth, MAX_CONDITION_DEPTH),
        };
        *depth += 1;
        if *depth <= max {
            return Ok(());
        }
        let (msg, help) = match what {
            Nest::Block => (
                format!("the flow nests blocks deeper than {max} levels"),
                format!("parallel, for-each, repeat and when blocks may nest up to {max} levels; move the inner levels into a sub-workflow"),
            ),
            Nest::Group => (
                format!("the flow nests groups deeper than {max} levels"),
                "`( ... )` and `sequence( ... )` only group steps; remove the levels that group a single item".to_string(),
            ),
            Nest::Condition => (
                format!("the condition nests deeper than {max} levels"),
                "remove parentheses around single values and double `!`s; for an involved decision, let a step make it and test its output, e.g. `${decide.go}`".to_string(),
            ),
        };
        Err(self.error_at(Code::FlowSyntax, at, msg).help(help))
    }

    fn leave(&mut self, what: Nest) {
        match what {
            Nest::Block => self.blocks -= 1,
            Nest::Group => self.groups -= 1,
            Nest::Condition => self.cond_depth -= 1,
        }
    }

    fn is_kw(&self, n: usize, word: &str) -> bool {
        matches!(self.peek_at(n), TokenKind::Ident(s) if s == word)
    }

    /// A verb block opener: `forEach(`, `repeat(`, `when(`, `parallel {`.
    fn at_verb_block(&self) -> bool {
        (["forEach", "repeat", "when"]
            .iter()
            .any(|w| self.is_kw(0, w))
            && self.peek_at(1) == &TokenKind::LParen)
            || (self.is_kw(0, "parallel") && self.peek_at(1) == &TokenKind::LBrace)
    }

    fn at_block_opener(&self) -> bool {
        matches!(
            self.peek(),
            TokenKind::ParOpen | TokenKind::Star2 | TokenKind::Caret2 | TokenKind::Quest2
        ) || self.at_verb_block()
    }

    fn at_closer_kw(&self) -> bool {
        matches!(self.peek(), TokenKind::Ident(s) if CLOSERS.contains(&s.as_str()))
            && !self.at_verb_block()
    }

    fn starts_element(&self) -> bool {
        match self.peek() {
            TokenKind::Ident(_) => !self.at_closer_kw(),
            TokenKind::LParen => true,
            _ => self.at_block_opener(),
        }
    }

    fn expect_end(&mut self) -> PResult<()> {
        let code_and_msg = match self.peek() {
            TokenKind::Eof => return Ok(()),
            TokenKind::ParClose => (
                Code::UnopenedBlock,
                "`>==` joins parallel branches, but none were opened with `==>`".to_string(),
                "open the branches first: `a ==> (b, c) >== d`",
            ),
            TokenKind::BlockClose => (
                Code::UnopenedBlock,
                "`>--` closes a block (the for-each join), but no block was opened with `--<`"
                    .to_string(),
                "a for-each is written `split **(x = list) --< (a, b) >-- join`",
            ),
            TokenKind::RParen => (
                Code::FlowSyntax,
                "this `)` has no matching `(`".to_string(),
                "remove it, or open the group it closes",
            ),
            TokenKind::RBrace => (
                Code::UnopenedBlock,
                "this `}` has no matching `parallel {`".to_string(),
                "parallel branches in verbs are written `parallel { a b } parallel`",
            ),
            TokenKind::Ident(w) if CLOSERS.contains(&w.as_str()) => (
                Code::UnopenedBlock,
                format!("`{w}` closes a block, but no `{w}` block is open here"),
                "verb blocks are written `forEach(x = list) body forEach`",
            ),
            TokenKind::Comma => (
                Code::FlowSyntax,
                "`,` is only allowed inside `( ... )`, `sequence(...)` and block bodies"
                    .to_string(),
                "use `->` to run one step after another",
            ),
            _ if self.starts_element() => (
                Code::FlowSyntax,
                format!(
                    "expected `->` before {}: steps side by side need an operator",
                    self.peek().describe()
                ),
                "write `a -> b` to run b after a, or `==> (a, b) >==` to run them in parallel",
            ),
            other => (
                Code::FlowSyntax,
                format!("unexpected {} in the flow", other.describe()),
                "see docs/dsl.md for the operators",
            ),
        };
        let (code, msg, help) = code_and_msg;
        Err(self.error_here(code, msg).help(help))
    }

    /// Elements joined by `->` (or following a block): a flat list however
    /// long the chain, never a nest.
    fn chain(&mut self) -> PResult<Flow> {
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
    fn list(&mut self, ends: &[TokenKind], what: &str) -> PResult<Vec<Flow>> {
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

    fn unclosed(&self, opened: Span, what: &str, closer: &str) -> ParseError {
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

    fn header_open(&mut self, what: &str) -> PResult<Token> {
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

    fn header_close(&mut self, open: &Token) -> PResult<()> {
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
    fn body_op(
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

    fn literal(&mut self) -> Option<Lit> {
        let lit = match self.peek() {
            TokenKind::Str(s) => Lit::Str(s.clone()),
            TokenKind::Int(i) => Lit::Int(*i),
            TokenKind::Float(f) => Lit::Float(*f),
            TokenKind::Ident(w) if w == "true" => Lit::Bool(true),
            TokenKind::Ident(w) if w == "false" => Lit::Bool(false),
            TokenKind::Ident(w) if w == "null" => Lit::Null,
            _ => return None,
        };
        self.bump();
        Some(lit)
    }

    fn foreach_op(&mut self) -> PResult<Flow> {
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

    fn foreach_verb(&mut self) -> PResult<Flow> {
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

    /// The chain of a verb block, checking that `closer` follows it.
    fn verb_body(&mut self, kw: &Token, closer: &str) -> PResult<Flow> {
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

    fn repeat_op(&mut self) -> PResult<Flow> {
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

    fn repeat_verb(&mut self) -> PResult<Flow> {
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

    fn when_op(&mut self) -> PResult<Flow> {
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

    fn when_verb(&mut self) -> PResult<Flow> {
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

    /// A whole condition: of `until = `, `??( )` or `when( )`.
    fn condition(&mut self) -> PResult<Expr> {
        self.cond_ops = 0;
        self.expr_prec(1)
    }

    fn binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            TokenKind::OrOr => BinOp::Or,
            TokenKind::AndAnd => BinOp::And,
            TokenKind::EqEq => BinOp::Eq,
            TokenKind::Ne => BinOp::Ne,
            TokenKind::Lt => BinOp::Lt,
            TokenKind::Le => BinOp::Le,
            TokenKind::Gt => BinOp::Gt,
            TokenKind::Ge => BinOp::Ge,
            _ => return None,
        })
    }

    fn expr_prec(&mut self, min: u8) -> PResult<Expr> {
        let mut left = self.unary()?;
        while let Some(op) = self.binop() {
            let p = op.precedence();
            if p < min {
                break;
            }
            let op_tok = self.bump();
            self.cond_ops += 1;
            if self.cond_ops > MAX_CONDITION_OPERATORS {
                return Err(self
                    .error_at(
                        Code::FlowSyntax,
                        self.span(&op_tok),
                        format!("the condition has more than {MAX_CONDITION_OPERATORS} operators"),
                    )
                    .help("for an involved decision, let a step make it and test its output, e.g. `${decide.go}`"));
            }
            let right = if op.is_comparison() {
                self.unary()?
            } else {
                self.expr_prec(p + 1)?
            };
            if op.is_comparison() && self.binop().is_some_and(BinOp::is_comparison) {
                return Err(self
                    .error_here(Code::FlowSyntax, "comparisons do not chain")
                    .related(self.span(&op_tok), "first comparison")
                    .help("join them with `&&`: `a < b && b < c`"));
            }
            left = Expr::Binary {
                left: Box::new(left),
                op,
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.peek() == &TokenKind::Bang {
            let bang = self.bump();
            self.enter(Nest::Condition, self.span(&bang))?;
            let operand = self.unary()?;
            self.leave(Nest::Condition);
            let span = self.span(&bang).to(operand.span());
            return Ok(Expr::Not {
                operand: Box::new(operand),
                span,
            });
        }
        if self.peek() == &TokenKind::LParen {
            let open = self.bump();
            self.enter(Nest::Condition, self.span(&open))?;
            let inner = self.expr_prec(1)?;
            self.leave(Nest::Condition);
            if self.peek() != &TokenKind::RParen {
                return Err(self
                    .error_here(
                        Code::FlowSyntax,
                        format!(
                            "expected `)` in the condition, found {}",
                            self.peek().describe()
                        ),
                    )
                    .related(self.span(&open), "opened here"));
            }
            self.bump();
            return Ok(inner);
        }
        if let TokenKind::Ref(path) = self.peek().clone() {
            let t = self.bump();
            return Ok(Expr::Ref {
                r: Ref {
                    path,
                    span: self.span(&t),
                },
            });
        }
        let span = self.here();
        if let Some(value) = self.literal() {
            return Ok(Expr::Lit { value, span });
        }
        let err = match self.peek() {
            TokenKind::Ident(name) => self
                .error_here(Code::FlowSyntax, format!("bare name `{name}` in a condition"))
                .help(format!(
                    "write `${{{name}}}` for a loop variable, `${{params.{name}}}` for a parameter, or `\"{name}\"` for text"
                )),
            other => self.error_here(
                Code::FlowSyntax,
                format!("expected a value in the condition, found {}", other.describe()),
            ),
        };
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Flow {
        parse_flow(s, &StrMap::identity())
            .unwrap_or_else(|e| panic!("{s}: {e:?}"))
            .without_spans()
    }

    fn err(s: &str) -> ParseError {
        parse_flow(s, &StrMap::identity()).expect_err(s)
    }

    const SEED_OPS: &str = "start -> getUsers -> wrangleData ==> (
      trainGlobalModel -> validateGlobalModel,
      regionSplit **(reg = regions) --< (trainRegModel, validateRegModel) >-- regionJoin
    ) >== selectModel -> validateModel -> end";

    const SEED_VERBS: &str = "sequence(start, getUsers, wrangleData) parallel {
      sequence(trainGlobalModel, validateGlobalModel)
      sequence(regionSplit,
               forEach(reg = regions) sequence(trainRegModel, validateRegModel) forEach,
               regionJoin)
    } parallel sequence(selectModel, validateModel, end)";

    #[test]
    fn seed_notations_parse_to_the_same_model() {
        let a = parse(SEED_OPS);
        let b = parse(SEED_VERBS);
        assert_eq!(a, b);
        let FlowKind::Sequence { items } = &a.kind else {
            panic!("top is a sequence")
        };
        assert_eq!(items.len(), 7);
        assert!(
            matches!(items[3].kind, FlowKind::Parallel { ref branches } if branches.len() == 2)
        );
    }

    #[test]
    fn repeat_and_when_both_notations() {
        let a = parse(
            "^^(until = ${v.ok} == true, max = 3) --< (t, v) >-- -> ??(${v.n} > 2 && !${v.bad}) --< (p | q -> r) >--",
        );
        let b = parse(
            "sequence(repeat(max = 3, until = ${v.ok} == true) sequence(t, v) repeat, when(${v.n} > 2 && !${v.bad}) p otherwise sequence(q, r) when)",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn nested_and_cross_product() {
        let f = parse("**(a = [1, 2], b = ${s.list}) --< (x, **(c = cs) --< (y) >--) >--");
        let FlowKind::ForEach { bindings, body } = f.kind else {
            panic!("for-each")
        };
        assert_eq!(bindings.len(), 2);
        assert!(matches!(body.items()[1].kind, FlowKind::ForEach { .. }));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(err("a >-- b").code, Code::UnopenedBlock);
        assert_eq!(err("a **(x = l) --< (b) c").code, Code::UnclosedBlock);
        assert_eq!(err("a ==> (b, c) d").code, Code::UnclosedBlock);
        assert_eq!(err("a b").code, Code::FlowSyntax);
        assert_eq!(err("forEach(x = l) a").code, Code::UnclosedBlock);
        assert_eq!(err("a -> ").code, Code::FlowSyntax);
        assert_eq!(err("^^(until = ${a.b}) --< (a) >--").code, Code::MissingKey);
        let e = err("a -> b -> >== c");
        assert_eq!((e.span.start, e.code), (10, Code::UnopenedBlock));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = format!("{}a{}", "(".repeat(5000), ")".repeat(5000));
        let e = err(&s);
        assert_eq!(e.message, "the flow nests groups deeper than 128 levels");
        assert_eq!(e.span.start, 128, "at the first `(` too many");
        let s = format!("{}a{}", "sequence(".repeat(5000), ")".repeat(5000));
        assert!(err(&s).message.contains("nests groups deeper than 128"));
        let s = format!("{}a{}", "==> (".repeat(5000), ") >==".repeat(5000));
        let e = err(&s);
        assert_eq!(e.message, "the flow nests blocks deeper than 100 levels");
        assert_eq!(e.span.start as usize, 100 * "==> (".len());
        let s = format!("??({}true) --< (a) >--", "!".repeat(5000));
        assert!(err(&s).message.contains("condition nests deeper than 100"));
        let s = format!(
            "??({}true{}) --< (a) >--",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(err(&s).message.contains("condition nests deeper than 100"));
        let s = format!("??(true{}) --< (a) >--", " || true".repeat(5000));
        let e = err(&s);
        assert_eq!(e.message, "the condition has more than 100 operators");
        assert_eq!(
            e.span.start as usize,
            "??(true".len() + 100 * " || true".len() + 1
        );
    }

    #[test]
    fn nesting_at_the_bounds_parses() {
        let s = format!("{}a{}", "(".repeat(128), ")".repeat(128));
        assert_eq!(parse(&s), parse("a"));
        let s = format!("{}a{}", "==> (".repeat(100), ") >==".repeat(100));
        parse(&s);
        let s = format!("??({}true) --< (a) >--", "!".repeat(100));
        parse(&s);
        let s = format!(
            "??(true{}) --< (a) >-- -> ??(true{0}) --< (b) >--",
            " || true".repeat(100)
        );
        parse(&s);
    }
}
