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
use crate::flow::Flow;
use crate::flow::lexer::{Token, TokenKind, lex};

mod blocks;
mod chain;
mod expr;
mod foreach;

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowKind;

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
