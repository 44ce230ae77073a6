//! Rewriting the flow of a workflow file in place, for `kaon fmt`.
//!
//! Only the bytes of the `flow = ...` string token change: comments, other
//! keys, blank lines and the string's quoting style stay as they were. The
//! result is read back before it is returned: as TOML, its flow string must
//! decode to exactly the text meant, and that text must parse to the same
//! flow as before. A mismatch is an error, so a caller never writes a file
//! that means something else.

use toml::de::{DeTable, DeValue};

use crate::diag::{Span, StrMap};
use crate::flow::{Flow, Notation, parse_flow, print_flow};

/// The four kinds of TOML string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringKind {
    /// `"..."`: one line, backslash escapes.
    Basic,
    /// `'...'`: one line, taken as written.
    Literal,
    /// `"""..."""`: several lines, backslash escapes.
    MultiLineBasic,
    /// `'''...'''`: several lines, taken as written.
    MultiLineLiteral,
}

impl StringKind {
    /// The kind of the TOML string token `raw` (quotes included), or `None`
    /// when `raw` is not a quoted string.
    pub fn of(raw: &str) -> Option<StringKind> {
        // Longest delimiters first: `'''` also starts with `'`.
        [
            StringKind::MultiLineLiteral,
            StringKind::MultiLineBasic,
            StringKind::Literal,
            StringKind::Basic,
        ]
        .into_iter()
        .find(|k| {
            let q = k.delimiter();
            raw.len() >= 2 * q.len() && raw.starts_with(q) && raw.ends_with(q)
        })
    }

    /// The quotes that open and close a string of this kind.
    pub fn delimiter(self) -> &'static str {
        match self {
            StringKind::Basic => "\"",
            StringKind::Literal => "'",
            StringKind::MultiLineBasic => "\"\"\"",
            StringKind::MultiLineLiteral => "'''",
        }
    }

    /// True for `"""` and `'''`.
    pub fn is_multi_line(self) -> bool {
        matches!(
            self,
            StringKind::MultiLineBasic | StringKind::MultiLineLiteral
        )
    }

    /// The multi-line kind of the same family (escapes or not).
    fn multi_line(self) -> StringKind {
        match self {
            StringKind::Basic | StringKind::MultiLineBasic => StringKind::MultiLineBasic,
            StringKind::Literal | StringKind::MultiLineLiteral => StringKind::MultiLineLiteral,
        }
    }

    /// The kind of the same shape that can hold any text (with escapes).
    fn basic(self) -> StringKind {
        if self.is_multi_line() {
            StringKind::MultiLineBasic
        } else {
            StringKind::Basic
        }
    }
}

/// Renders `value` as a TOML string of `kind`, quotes included, or `None`
/// when that kind cannot hold it. A basic string holds any text, escaping
/// what it must (in a one-line one, line breaks as `\n`); a literal string
/// has no escapes, so it cannot hold its own quotes, control characters or,
/// when it is one-line, a line break.
///
/// For the multi-line kinds, `break_after_open` puts a line break right
/// after the opening quotes, where TOML drops it from the value. The break
/// is `\r\n` when `value` has one, else `\n`; a value that itself starts
/// with a line break always gets one, or TOML would drop the value's own.
pub fn render_string(value: &str, kind: StringKind, break_after_open: bool) -> Option<String> {
    let q = kind.delimiter();
    let mut out = String::with_capacity(value.len() + 2 * q.len() + 2);
    out.push_str(q);
    if kind.is_multi_line() && (break_after_open || value.starts_with(['\n', '\r'])) {
        out.push_str(if value.contains("\r\n") { "\r\n" } else { "\n" });
    }
    match kind {
        StringKind::Literal => {
            if value.chars().any(|c| c == '\'' || !literal_char(c)) {
                return None;
            }
            out.push_str(value);
        }
        StringKind::MultiLineLiteral => {
            // Up to two quotes may stand before the closing `'''`, but not
            // every reader takes that edge of the grammar: refuse it.
            let bad_char = value
                .chars()
                .any(|c| !(literal_char(c) || c == '\n' || c == '\r'));
            let lone_cr = value
                .match_indices('\r')
                .any(|(i, _)| value.as_bytes().get(i + 1) != Some(&b'\n'));
            if bad_char || lone_cr || value.contains("'''") || value.ends_with('\'') {
                return None;
            }
            out.push_str(value);
        }
        StringKind::Basic => {
            for c in value.chars() {
                escape_basic(c, &mut out);
            }
        }
        StringKind::MultiLineBasic => {
            let mut chars = value.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\n' => out.push('\n'),
                    '\r' if chars.peek() == Some(&'\n') => out.push('\r'),
                    // A quote is escaped only where it would make `"""` (or
                    // end the value right before the closing quotes), so
                    // the flow's own `"US"` stays readable.
                    '"' if matches!(chars.peek(), None | Some('"')) => out.push_str("\\\""),
                    '"' => out.push('"'),
                    c => escape_basic(c, &mut out),
                }
            }
        }
    }
    out.push_str(q);
    Some(out)
}

/// Characters a TOML literal string may hold (tab, but no other control).
fn literal_char(c: char) -> bool {
    c == '\t' || !(c.is_control())
}

/// Appends `c` as it is written inside a TOML basic string.
fn escape_basic(c: char, out: &mut String) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push('\t'),
        c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
        c => out.push(c),
    }
}

/// A workflow's `flow` string as it stands in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowString {
    /// The string token, quotes included.
    pub span: Span,
    /// How it is quoted.
    pub kind: StringKind,
    /// What it holds: the flow text.
    pub value: String,
    /// A line break right after the opening quotes (multi-line kinds only).
    pub break_after_open: bool,
}

/// Finds `flow` in the `[workflow]` table of a workflow file's text. `None`
/// when the text is not TOML or has no flow string there.
pub fn find_flow_string(text: &str) -> Option<FlowString> {
    let root = DeTable::parse(text).ok()?;
    let DeValue::Table(wf) = root.get_ref().get("workflow")?.get_ref() else {
        return None;
    };
    let v = wf.get("flow")?;
    let DeValue::String(value) = v.get_ref() else {
        return None;
    };
    let span = Span::from(v.span());
    let raw = text.get(span.range())?;
    let kind = StringKind::of(raw)?;
    let after_open = &raw[kind.delimiter().len()..];
    Some(FlowString {
        span,
        kind,
        value: value.to_string(),
        break_after_open: kind.is_multi_line()
            && (after_open.starts_with('\n') || after_open.starts_with("\r\n")),
    })
}

/// Why a workflow file's flow cannot be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// There is no `flow` string in `[workflow]` (or the text is not TOML).
    #[error("the file has no `flow` string in its `[workflow]` table")]
    NoFlowString,
    /// The flow does not parse; the loader reports it with its place.
    #[error("the flow does not parse: {message}")]
    InvalidFlow {
        /// The parser's message.
        message: String,
    },
    /// The rewritten text did not read back as the same flow. A bug in
    /// kaon; the caller must leave the file as it is.
    #[error(
        "the formatted file did not read back as the same flow ({what}); the file is left as it is (a bug in kaon, please report it)"
    )]
    NotRoundTrip {
        /// What differed.
        what: &'static str,
    },
}

/// Returns `text` with its flow written canonically in `notation`, every
/// byte outside the flow string token unchanged. Equal to `text` when the
/// flow is already canonical.
///
/// The string keeps its kind where it can: a one-line string whose flow
/// now needs several lines becomes the multi-line kind of its family
/// (`"` to `"""`, `'` to `'''`), since a one-line string can hold line
/// breaks only as `\n` escapes, which no one can read; a literal string
/// that cannot hold the text (it has no escapes, so no `'''` inside or
/// `'` at the end) becomes the basic kind of the same shape. A multi-line
/// string keeps its line break after the opening quotes (or its absence)
/// and whether a line break ends the flow; the file's `\r\n` line ends are
/// kept inside the string.
pub fn format_flow(text: &str, notation: Notation) -> Result<String, EditError> {
    let found = find_flow_string(text).ok_or(EditError::NoFlowString)?;
    let flow = parse(&found.value)?;
    let canonical = print_flow(&flow, notation);
    let body = canonical.strip_suffix('\n').unwrap_or(&canonical);
    let nl = line_break(text, found.span);
    let (kind, break_after_open, value) = if !found.kind.is_multi_line() && !body.contains('\n') {
        (found.kind, false, body.to_string())
    } else {
        let was_multi = found.kind.is_multi_line();
        let ends_with_break =
            !was_multi || found.value.trim_end_matches([' ', '\t']).ends_with('\n');
        let mut value = body.replace('\n', nl);
        if ends_with_break {
            value.push_str(nl);
        }
        let open = if was_multi {
            found.break_after_open
        } else {
            true
        };
        (found.kind.multi_line(), open, value)
    };
    let literal = render_string(&value, kind, break_after_open)
        .or_else(|| render_string(&value, kind.basic(), break_after_open))
        .ok_or(EditError::NotRoundTrip {
            what: "no string kind holds it",
        })?;
    let at = found.span.range();
    let out = format!("{}{literal}{}", &text[..at.start], &text[at.end..]);
    check(&out, at.start, &value, &flow)?;
    Ok(out)
}

fn parse(value: &str) -> Result<Flow, EditError> {
    parse_flow(value, &StrMap::identity())
        .map(|f| f.without_spans())
        .map_err(|e| EditError::InvalidFlow { message: e.message })
}

/// The line break to write inside the flow string: the one the string
/// already uses, else the one that ends the line holding it.
fn line_break(text: &str, span: Span) -> &'static str {
    let raw = text.get(span.range()).unwrap_or("");
    let crlf = if raw.contains('\n') {
        raw.contains("\r\n")
    } else {
        text[span.end as usize..]
            .find('\n')
            .is_some_and(|i| i > 0 && text.as_bytes()[span.end as usize + i - 1] == b'\r')
    };
    if crlf { "\r\n" } else { "\n" }
}

/// Reads the rewritten text back: the flow string stands where it stood,
/// holds `value`, and `value` parses to `flow`.
fn check(out: &str, start: usize, value: &str, flow: &Flow) -> Result<(), EditError> {
    let back = find_flow_string(out).ok_or(EditError::NotRoundTrip {
        what: "no flow string",
    })?;
    if back.span.start as usize != start {
        return Err(EditError::NotRoundTrip {
            what: "the flow string moved",
        });
    }
    if back.value != value {
        return Err(EditError::NotRoundTrip {
            what: "the string holds other text",
        });
    }
    match parse(&back.value) {
        Ok(f) if f == *flow => Ok(()),
        _ => Err(EditError::NotRoundTrip {
            what: "the text parses to another flow",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPS: &str = "# a comment that stays\n[workflow]\nname = \"wf\"   # so does this\nflow = '''\nstart   ->  a\n  -> b -> end\n'''\n\n[steps.a]\nkind = \"noop\" # end\n[steps.b]\nkind = \"noop\"\n";

    fn ops(text: &str) -> String {
        format_flow(text, Notation::Operators).expect("formats")
    }

    /// Everything outside the flow token, before and after.
    fn outside(text: &str) -> (String, String) {
        let f = find_flow_string(text).expect("flow");
        let r = f.span.range();
        (text[..r.start].to_string(), text[r.end..].to_string())
    }

    #[test]
    fn only_the_flow_string_changes() {
        let out = ops(OPS);
        assert_eq!(outside(&out), outside(OPS));
        assert!(
            out.contains("flow = '''\nstart -> a -> b -> end\n'''\n"),
            "{out}"
        );
        assert_eq!(ops(&out), out, "formatting is idempotent");
    }

    #[test]
    fn one_line_strings_keep_their_kind() {
        for (written, want) in [
            (
                "flow = \"start->a ->b->end\"",
                "flow = \"start -> a -> b -> end\"",
            ),
            (
                "flow = 'start->a ->b->end'",
                "flow = 'start -> a -> b -> end'",
            ),
            (
                "flow = \"\"\"start->a ->b->end\"\"\"",
                "flow = \"\"\"start -> a -> b -> end\"\"\"",
            ),
            (
                "flow = '''start->a ->b->end'''",
                "flow = '''start -> a -> b -> end'''",
            ),
            (
                "flow = \"\"\"\n  start->a ->b->end\n  \"\"\"",
                "flow = \"\"\"\nstart -> a -> b -> end\n\"\"\"",
            ),
        ] {
            let text = format!("[workflow]\nname = \"x\"\n{written} # c\n[steps.a]\n");
            let out = ops(&text);
            assert_eq!(
                out,
                format!("[workflow]\nname = \"x\"\n{want} # c\n[steps.a]\n")
            );
            assert_eq!(ops(&out), out);
        }
    }

    #[test]
    fn a_flow_that_needs_lines_gets_a_multi_line_string() {
        let long = (0..30)
            .map(|i| format!("step{i}"))
            .collect::<Vec<_>>()
            .join(" -> ");
        for (q, qqq) in [("\"", "\"\"\""), ("'", "'''")] {
            let text = format!("[workflow]\nflow = {q}{long}{q}\nname = \"x\"\n");
            let out = ops(&text);
            let prefix = format!("[workflow]\nflow = {qqq}\nstep0 -> ");
            assert!(out.starts_with(&prefix), "{out}");
            assert!(
                out.ends_with(&format!("step29\n{qqq}\nname = \"x\"\n")),
                "{out}"
            );
            assert_eq!(ops(&out), out);
        }
    }

    #[test]
    fn verbs_and_back() {
        let verbs = format_flow(OPS, Notation::Verbs).expect("formats");
        assert!(
            verbs.contains("flow = '''\nsequence(start, a, b, end)\n'''\n"),
            "{verbs}"
        );
        assert_eq!(outside(&verbs), outside(OPS));
        assert_eq!(ops(&verbs), ops(OPS));
    }

    #[test]
    fn quotes_and_backslashes_in_conditions() {
        let cond = r#"??(${params.r} == "U\"S\\") --< (a) >--"#;
        // A literal string holds them as they are...
        let text = format!("[workflow]\nflow = '''\n{cond}\n'''\n");
        assert_eq!(ops(&text), text);
        // ...a basic string escapes them.
        let quoted = render_string(cond, StringKind::Basic, false).expect("basic");
        assert!(quoted.contains(r#"== \"U\\\"S\\\\\")"#), "{quoted}");
        let text = format!("[workflow]\nflow = {quoted}\n");
        assert_eq!(ops(&text), text);
        // A `"` right before `"""` is escaped; others are not.
        assert_eq!(
            render_string("a \"b\"", StringKind::MultiLineBasic, false).as_deref(),
            Some("\"\"\"a \"b\\\"\"\"\"")
        );
        assert_eq!(render_string("it's", StringKind::Literal, false), None);
        assert_eq!(
            render_string("a'''b", StringKind::MultiLineLiteral, false),
            None
        );
        assert_eq!(
            render_string("a'", StringKind::MultiLineLiteral, false),
            None
        );
        assert_eq!(render_string("a\nb", StringKind::Literal, false), None);
        assert_eq!(
            render_string("a\nb", StringKind::Basic, false).as_deref(),
            Some("\"a\\nb\"")
        );
    }

    #[test]
    fn rendered_strings_read_back() {
        let values = [
            "",
            "plain",
            "\nstarts with a break",
            "tab\tand \u{7f} and \u{1}",
            "quote\" at the end\"",
            "\"\"\"three\"\"\"",
            "back\\slash\\",
            "crlf\r\nline\r\n",
            "it's",
        ];
        let kinds = [
            StringKind::Basic,
            StringKind::Literal,
            StringKind::MultiLineBasic,
            StringKind::MultiLineLiteral,
        ];
        for v in values {
            for k in kinds {
                for open in [false, true] {
                    let Some(s) = render_string(v, k, open) else {
                        continue;
                    };
                    let doc = format!("[workflow]\nflow = {s}\n");
                    let back = find_flow_string(&doc).unwrap_or_else(|| panic!("{doc:?}"));
                    assert_eq!(back.value, v, "{k:?} {doc:?}");
                    assert_eq!(back.kind, k);
                }
            }
            assert!(render_string(v, StringKind::Basic, false).is_some());
            assert!(render_string(v, StringKind::MultiLineBasic, false).is_some());
        }
    }

    #[test]
    fn crlf_files_keep_crlf_in_the_flow() {
        let text = "[workflow]\r\nflow = '''\r\nstart->a\r\n'''\r\nname = \"x\"\r\n";
        let out = ops(text);
        assert_eq!(
            out,
            "[workflow]\r\nflow = '''\r\nstart -> a\r\n'''\r\nname = \"x\"\r\n"
        );
        let long = (0..30)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join("->");
        let text = format!("[workflow]\r\nflow = \"{long}\"\r\n");
        let out = ops(&text);
        assert!(
            out.starts_with("[workflow]\r\nflow = \"\"\"\r\ns0 -> "),
            "{out:?}"
        );
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    }

    #[test]
    fn dotted_and_inline_tables() {
        let text = "workflow.name = \"x\"\nworkflow.flow = \"a->b\" # c\n";
        assert_eq!(
            ops(text),
            "workflow.name = \"x\"\nworkflow.flow = \"a -> b\" # c\n"
        );
        let text = "workflow = { name = \"x\", flow = 'a->b' }\n";
        assert_eq!(ops(text), "workflow = { name = \"x\", flow = 'a -> b' }\n");
    }

    #[test]
    fn every_kind_and_notation_is_stable() {
        let flows = [
            "a -> b",
            "start ^^(until = ${v.ok}, max = 3) --< (getUsers -> wrangle ==> (g -> vg, split **(reg = ${wrangle.regions}) --< (t, v) >-- join) >== pick -> v) >-- publish -> end",
            r#"??(${p.r} == "U\"S" && ${p.n} > 2) --< (a | b -> c) >--"#,
        ];
        let kinds = [
            StringKind::Basic,
            StringKind::Literal,
            StringKind::MultiLineBasic,
            StringKind::MultiLineLiteral,
        ];
        for flow in flows {
            for kind in kinds {
                for open in [false, true] {
                    let Some(lit) = render_string(flow, kind, open) else {
                        continue;
                    };
                    let text = format!("# c\n[workflow]\nflow = {lit} # d\nname = 'n'\n");
                    for notation in [Notation::Operators, Notation::Verbs] {
                        let once = format_flow(&text, notation).expect("formats");
                        assert_eq!(outside(&once), outside(&text), "{once}");
                        let twice = format_flow(&once, notation).expect("formats");
                        assert_eq!(twice, once, "{kind:?} {notation:?}");
                        let back = find_flow_string(&once).expect("flow");
                        assert_eq!(
                            back.kind.delimiter().chars().next(),
                            kind.delimiter().chars().next()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn errors() {
        assert!(matches!(
            format_flow("[workflow]\nname = 1\n", Notation::Operators),
            Err(EditError::NoFlowString)
        ));
        assert!(matches!(
            format_flow("[workflow]\nflow = 3\n", Notation::Operators),
            Err(EditError::NoFlowString)
        ));
        assert!(matches!(
            format_flow("not toml [", Notation::Operators),
            Err(EditError::NoFlowString)
        ));
        assert!(matches!(
            format_flow("[workflow]\nflow = 'a >-- b'\n", Notation::Operators),
            Err(EditError::InvalidFlow { .. })
        ));
    }
}
