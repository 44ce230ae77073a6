//! Tokens of the flow language.
//!
//! Hand-written because the token set is small and the operators overlap
//! (`==` / `==>`, `>=` / `>==`, `-3` / `->` / `--<`): longest match wins, and
//! the errors can say exactly which character was unexpected.

use crate::expr::{is_ident_continue, is_ident_start, parse_ref_path};

/// What a token is.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// A name: a step, a keyword, a parameter.
    Ident(String),
    /// `${a.b}` with its dotted path.
    Ref(Vec<String>),
    /// `"text"`
    Str(String),
    /// `42`
    Int(i64),
    /// `0.5`
    Float(f64),
    /// `->`
    Arrow,
    /// `==>` opens parallel branches.
    ParOpen,
    /// `>==` joins parallel branches.
    ParClose,
    /// `**` starts a for-each header.
    Star2,
    /// `^^` starts a repeat header.
    Caret2,
    /// `??` starts a conditional header.
    Quest2,
    /// `--<` opens a block body.
    BlockOpen,
    /// `>--` closes a block body.
    BlockClose,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `=`
    Assign,
    /// `|`
    Pipe,
    /// `==`
    EqEq,
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
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// `!`
    Bang,
    /// End of input.
    Eof,
}

impl TokenKind {
    /// How the token is spelled, for messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Ident(s) => format!("`{s}`"),
            TokenKind::Ref(p) => format!("`${{{}}}`", p.join(".")),
            TokenKind::Str(s) => format!("string {s:?}"),
            TokenKind::Int(i) => format!("number {i}"),
            TokenKind::Float(f) => format!("number {f}"),
            TokenKind::Eof => "the end of the flow".into(),
            other => format!("`{}`", other.symbol()),
        }
    }

    /// The text of a punctuation token.
    pub fn symbol(&self) -> &'static str {
        match self {
            TokenKind::Arrow => "->",
            TokenKind::ParOpen => "==>",
            TokenKind::ParClose => ">==",
            TokenKind::Star2 => "**",
            TokenKind::Caret2 => "^^",
            TokenKind::Quest2 => "??",
            TokenKind::BlockOpen => "--<",
            TokenKind::BlockClose => ">--",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBrace => "{",
            TokenKind::RBrace => "}",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::Comma => ",",
            TokenKind::Assign => "=",
            TokenKind::Pipe => "|",
            TokenKind::EqEq => "==",
            TokenKind::Ne => "!=",
            TokenKind::Lt => "<",
            TokenKind::Le => "<=",
            TokenKind::Gt => ">",
            TokenKind::Ge => ">=",
            TokenKind::AndAnd => "&&",
            TokenKind::OrOr => "||",
            TokenKind::Bang => "!",
            _ => "",
        }
    }
}

/// A token with its byte range in the flow text.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// A lexing failure: where and why.
#[derive(Clone, Debug, PartialEq)]
pub struct LexError {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: Option<String>,
}

const PUNCT: &[(&str, TokenKind)] = &[
    ("==>", TokenKind::ParOpen),
    (">==", TokenKind::ParClose),
    ("--<", TokenKind::BlockOpen),
    (">--", TokenKind::BlockClose),
    ("->", TokenKind::Arrow),
    ("**", TokenKind::Star2),
    ("^^", TokenKind::Caret2),
    ("??", TokenKind::Quest2),
    ("==", TokenKind::EqEq),
    ("!=", TokenKind::Ne),
    ("<=", TokenKind::Le),
    (">=", TokenKind::Ge),
    ("&&", TokenKind::AndAnd),
    ("||", TokenKind::OrOr),
    ("(", TokenKind::LParen),
    (")", TokenKind::RParen),
    ("{", TokenKind::LBrace),
    ("}", TokenKind::RBrace),
    ("[", TokenKind::LBracket),
    ("]", TokenKind::RBracket),
    (",", TokenKind::Comma),
    ("=", TokenKind::Assign),
    ("|", TokenKind::Pipe),
    ("<", TokenKind::Lt),
    (">", TokenKind::Gt),
    ("!", TokenKind::Bang),
];

/// Splits flow text into tokens; the last one is always [`TokenKind::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, LexError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        if is_ident_start(c) {
            let len = rest
                .char_indices()
                .find(|&(_, ch)| !is_ident_continue(ch))
                .map_or(rest.len(), |(n, _)| n);
            tokens.push(Token {
                kind: TokenKind::Ident(rest[..len].to_string()),
                start,
                end: start + len,
            });
            i += len;
        } else if rest.starts_with("${") {
            let close = rest.find('}').ok_or_else(|| LexError {
                start,
                end: src.len(),
                message: "`${` is never closed with `}`".into(),
                help: Some("write references as `${step.output}`".into()),
            })?;
            let path = parse_ref_path(&rest[2..close], start + 2).map_err(|e| LexError {
                start: e.start,
                end: e.end,
                message: e.message,
                help: None,
            })?;
            tokens.push(Token {
                kind: TokenKind::Ref(path),
                start,
                end: start + close + 1,
            });
            i += close + 1;
        } else if c == '"' {
            let (s, len) = lex_string(rest, start)?;
            tokens.push(Token {
                kind: TokenKind::Str(s),
                start,
                end: start + len,
            });
            i += len;
        } else if c.is_ascii_digit()
            || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            let (kind, len) = lex_number(rest, start)?;
            tokens.push(Token {
                kind,
                start,
                end: start + len,
            });
            i += len;
        } else if let Some((p, kind)) = PUNCT.iter().find(|(p, _)| rest.starts_with(p)) {
            tokens.push(Token {
                kind: kind.clone(),
                start,
                end: start + p.len(),
            });
            i += p.len();
        } else {
            let help = match c {
                '-' => Some("did you mean `->` (then), `--<` (open a block)?".to_string()),
                '=' => Some("did you mean `==>` (open parallel branches)?".to_string()),
                '$' => Some("references are written `${name}`".to_string()),
                '#' => Some("the flow has no comments; put them in the TOML around it".to_string()),
                _ => None,
            };
            return Err(LexError {
                start,
                end: start + c.len_utf8(),
                message: format!("unexpected character `{c}` in the flow"),
                help,
            });
        }
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: src.len(),
        end: src.len(),
    });
    Ok(tokens)
}

fn lex_string(rest: &str, start: usize) -> Result<(String, usize), LexError> {
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((n, c)) = chars.next() {
        match c {
            '"' => return Ok((out, n + 1)),
            '\\' => {
                let (m, e) = chars.next().ok_or_else(|| LexError {
                    start,
                    end: start + rest.len(),
                    message: "string is never closed with `\"`".into(),
                    help: None,
                })?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '"' => '"',
                    '\\' => '\\',
                    other => {
                        return Err(LexError {
                            start: start + n,
                            end: start + m + other.len_utf8(),
                            message: format!("unknown escape `\\{other}` in string"),
                            help: Some("known escapes: \\n \\t \\r \\\" \\\\".into()),
                        });
                    }
                });
            }
            '\n' => {
                return Err(LexError {
                    start,
                    end: start + n,
                    message: "string is never closed with `\"` on its line".into(),
                    help: None,
                });
            }
            c => out.push(c),
        }
    }
    Err(LexError {
        start,
        end: start + rest.len(),
        message: "string is never closed with `\"`".into(),
        help: None,
    })
}

fn lex_number(rest: &str, start: usize) -> Result<(TokenKind, usize), LexError> {
    let bytes = rest.as_bytes();
    let mut len = usize::from(bytes[0] == b'-');
    while len < bytes.len() && (bytes[len].is_ascii_digit() || bytes[len] == b'_') {
        len += 1;
    }
    let mut float = false;
    if len + 1 < bytes.len() && bytes[len] == b'.' && bytes[len + 1].is_ascii_digit() {
        float = true;
        len += 1;
        while len < bytes.len() && (bytes[len].is_ascii_digit() || bytes[len] == b'_') {
            len += 1;
        }
    }
    let text = rest[..len].replace('_', "");
    let err = || LexError {
        start,
        end: start + len,
        message: format!("`{}` is not a number kaon can hold", &rest[..len]),
        help: None,
    };
    let kind = if float {
        TokenKind::Float(text.parse().map_err(|_| err())?)
    } else {
        TokenKind::Int(text.parse().map_err(|_| err())?)
    };
    Ok((kind, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<TokenKind> {
        lex(s).expect("lexes").into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn longest_match_separates_overlapping_operators() {
        use TokenKind::*;
        assert_eq!(
            kinds("a==>b>==c --< >-- -> ==b >=3 -2"),
            vec![
                Ident("a".into()),
                ParOpen,
                Ident("b".into()),
                ParClose,
                Ident("c".into()),
                BlockOpen,
                BlockClose,
                Arrow,
                EqEq,
                Ident("b".into()),
                Ge,
                Int(3),
                Int(-2),
                Eof
            ]
        );
    }

    #[test]
    fn refs_strings_numbers() {
        use TokenKind::*;
        assert_eq!(
            kinds(r#"${a.b} "x\"y" 1.5 1_000"#),
            vec![
                Ref(vec!["a".into(), "b".into()]),
                Str("x\"y".into()),
                Float(1.5),
                Int(1000),
                Eof
            ]
        );
    }

    #[test]
    fn bad_character_has_position() {
        let e = lex("a -> b ; c").expect_err("semicolon");
        assert_eq!((e.start, e.end), (7, 8));
        let e = lex("a - b").expect_err("lone dash");
        assert!(e.help.is_some());
    }
}
