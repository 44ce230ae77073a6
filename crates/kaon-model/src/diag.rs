//! Diagnostics: what went wrong in a workflow file, where, and what to do.
//!
//! Every check in this crate reports through [`Diagnostics`] instead of
//! returning early, so one `kaon validate` shows every problem it can find.
//! A [`Diagnostic`] points at byte spans of a [`SourceFile`]; rendering turns
//! them into `file:line:col` headers with the offending text underlined.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term;

/// A byte range in one source file.
///
/// Offsets are `u32` to keep the AST small; workflow files over 4 GiB are
/// rejected when they are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// Offset of the first byte.
    pub start: u32,
    /// Offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// A span covering `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Self {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span that covers both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// The span as a `Range` for slicing.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl From<Range<usize>> for Span {
    fn from(r: Range<usize>) -> Self {
        Span::new(r.start, r.end)
    }
}

/// Identifies a file in [`SourceMap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileId(pub usize);

/// One loaded source file.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as the user gave it (used in messages).
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
}

/// All files a validation touched (a workflow and its sub-workflows).
#[derive(Debug, Default)]
pub struct SourceMap {
    files: SimpleFiles<String, String>,
    paths: Vec<PathBuf>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, path: &Path, text: String) -> FileId {
        self.paths.push(path.to_path_buf());
        FileId(self.files.add(path.display().to_string(), text))
    }

    /// The text of a file.
    pub fn text(&self, id: FileId) -> &str {
        self.files
            .get(id.0)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// The path of a file.
    pub fn path(&self, id: FileId) -> &Path {
        self.paths
            .get(id.0)
            .map(PathBuf::as_path)
            .unwrap_or(Path::new(""))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: u32) -> (usize, usize) {
        match self.files.location(id.0, offset as usize) {
            Ok(loc) => (loc.line_number, loc.column_number),
            Err(_) => (0, 0),
        }
    }

    /// The byte range of the line that holds `offset`.
    fn line_range(&self, id: FileId, offset: u32) -> Option<Range<usize>> {
        let line = self.files.line_index(id.0, offset as usize).ok()?;
        self.files.line_range(id.0, line).ok()
    }
}

/// Lines longer than this many bytes are not quoted under a diagnostic: a
/// flow of 90,000 steps on one line would be printed in full once per
/// problem on it.
const MAX_QUOTED_LINE: usize = 1000;

/// Line and column of many positions, in time linear in the file: on a
/// long line, characters are counted from the nearest of checkpoints set
/// every [`CHECKPOINT`] bytes rather than from the start of the line, so that
/// many problems on one long line cost its length, not its square.
struct Columns<'s> {
    sources: &'s SourceMap,
    /// Per long line (file, first byte): (byte offset, characters before
    /// it on the line) at every checkpoint, in order.
    checkpoints: HashMap<(FileId, usize), Vec<(usize, usize)>>,
}

const CHECKPOINT: usize = 1024;

impl<'s> Columns<'s> {
    fn new(sources: &'s SourceMap) -> Self {
        Self {
            sources,
            checkpoints: HashMap::new(),
        }
    }

    fn line_col(&mut self, file: FileId, offset: u32) -> (usize, usize) {
        let short = || self.sources.line_col(file, offset);
        let Some(range) = self.sources.line_range(file, offset) else {
            return short();
        };
        let text = self.sources.text(file);
        let offset = offset as usize;
        if range.len() <= MAX_QUOTED_LINE || !text.is_char_boundary(offset) {
            return short();
        }
        let line = match self.sources.files.line_index(file.0, offset) {
            Ok(i) => i + 1,
            Err(_) => return short(),
        };
        let marks = self
            .checkpoints
            .entry((file, range.start))
            .or_insert_with(|| {
                let mut marks = vec![(range.start, 0)];
                let mut next = range.start + CHECKPOINT;
                for (chars, (i, _)) in text[range.clone()].char_indices().enumerate() {
                    if range.start + i >= next {
                        marks.push((range.start + i, chars));
                        next = range.start + i + CHECKPOINT;
                    }
                }
                marks
            });
        let k = marks
            .partition_point(|(at, _)| *at <= offset)
            .saturating_sub(1);
        let (at, before) = marks[k];
        (line, before + text[at..offset].chars().count() + 1)
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The file is usable but probably not what the author meant.
    Warning,
    /// The file is rejected.
    Error,
}

/// What kind of problem a diagnostic reports. Stable: tests and tools match
/// on these, and they are printed as `error[unknown-step]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// The file could not be read.
    Io,
    /// The file is not valid TOML.
    TomlSyntax,
    /// A key that kaon does not know.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value has the wrong TOML type or is out of range.
    InvalidValue,
    /// A value's declared or inferred type does not fit where it is used.
    TypeMismatch,
    /// The flow text does not parse.
    FlowSyntax,
    /// A block was closed that was never opened (`>--` without `--<`).
    UnopenedBlock,
    /// A block was opened and never closed (`--<` without `>--`).
    UnclosedBlock,
    /// The flow names a step that is not declared.
    UnknownStep,
    /// A name is declared or used twice.
    DuplicateName,
    /// Steps depend on each other in a circle.
    Cycle,
    /// A `${...}` reference names something that does not exist.
    UnknownReference,
    /// A `${step.output}` names an output the step does not declare.
    UnknownOutput,
    /// A reference to a step that does not run before the referring one.
    NotUpstream,
    /// A loop variable used outside its for-each.
    OutOfScope,
    /// A reserved word used as a name.
    ReservedName,
    /// A constraint string that is not in the Mesos attribute grammar.
    InvalidConstraint,
    /// Settings that cannot work together.
    Conflict,
    /// A step needs something this machine does not have (a Spark version).
    NotInstalled,
    /// A declared step that the flow never uses.
    UnusedStep,
}

impl Code {
    /// The kebab-case name shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "io",
            Code::TomlSyntax => "toml-syntax",
            Code::UnknownKey => "unknown-key",
            Code::MissingKey => "missing-key",
            Code::InvalidValue => "invalid-value",
            Code::TypeMismatch => "type-mismatch",
            Code::FlowSyntax => "flow-syntax",
            Code::UnopenedBlock => "unopened-block",
            Code::UnclosedBlock => "unclosed-block",
            Code::UnknownStep => "unknown-step",
            Code::DuplicateName => "duplicate-name",
            Code::Cycle => "cycle",
            Code::UnknownReference => "unknown-reference",
            Code::UnknownOutput => "unknown-output",
            Code::NotUpstream => "not-upstream",
            Code::OutOfScope => "out-of-scope",
            Code::ReservedName => "reserved-name",
            Code::InvalidConstraint => "invalid-constraint",
            Code::Conflict => "conflict",
            Code::NotInstalled => "not-installed",
            Code::UnusedStep => "unused-step",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secondary location that explains the primary one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// The file.
    pub file: FileId,
    /// Where.
    pub span: Span,
    /// What is there.
    pub message: String,
}

/// One problem found in a workflow file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The kind of problem.
    pub code: Code,
    /// One sentence: what is wrong.
    pub message: String,
    /// The file of the primary span.
    pub file: FileId,
    /// The offending text.
    pub span: Span,
    /// A short note shown under the underline.
    pub label: String,
    /// Related places.
    pub secondary: Vec<Label>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span` of `file`.
    pub fn error(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            file,
            span,
            label: String::new(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A warning at `span` of `file`.
    pub fn warning(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, file, span, message)
        }
    }

    /// Sets the note under the underline.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Adds a related place.
    pub fn with_secondary(mut self, file: FileId, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            file,
            span,
            message: message.into(),
        });
        self
    }

    /// Says what to do.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column of the primary span.
    pub fn line_col(&self, sources: &SourceMap) -> (usize, usize) {
        sources.line_col(self.file, self.span.start)
    }

    /// True when a line it would quote is longer than [`MAX_QUOTED_LINE`].
    fn on_long_line(&self, sources: &SourceMap) -> bool {
        std::iter::once((self.file, self.span))
            .chain(self.secondary.iter().map(|l| (l.file, l.span)))
            .flat_map(|(file, span)| [(file, span.start), (file, span.end)])
            .any(|(file, at)| {
                sources
                    .line_range(file, at)
                    .is_some_and(|r| r.len() > MAX_QUOTED_LINE)
            })
    }

    /// Like the rich rendering, without quoting the source.
    fn render_unquoted(&self, sources: &SourceMap, columns: &mut Columns<'_>) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let (line, col) = columns.line_col(self.file, self.span.start);
        let path = sources.path(self.file).display();
        let mut out = format!(
            "{sev}[{}]: {}\n  ┌─ {path}:{line}:{col}\n  │\n  = line {line} is too long to quote\n",
            self.code, self.message
        );
        if !self.label.is_empty() {
            out.push_str(&format!("  = {}\n", self.label));
        }
        for l in &self.secondary {
            let (line, col) = columns.line_col(l.file, l.span.start);
            let path = sources.path(l.file).display();
            out.push_str(&format!("  = {path}:{line}:{col}: {}\n", l.message));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("  = help: {help}\n"));
        }
        out.push('\n');
        out
    }

    fn to_codespan(&self) -> cs::Diagnostic<usize> {
        let severity = match self.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
        };
        let mut labels =
            vec![cs::Label::primary(self.file.0, self.span.range()).with_message(&self.label)];
        labels.extend(
            self.secondary
                .iter()
                .map(|l| cs::Label::secondary(l.file.0, l.span.range()).with_message(&l.message)),
        );
        let mut d = cs::Diagnostic::new(severity)
            .with_code(self.code.as_str())
            .with_message(&self.message)
            .with_labels(labels);
        if let Some(help) = &self.help {
            d = d.with_notes(vec![format!("help: {help}")]);
        }
        d
    }
}

/// An ordered collection of diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Records one and returns it for further detail.
    pub fn push_mut(&mut self, d: Diagnostic) -> &mut Diagnostic {
        self.items.push(d);
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    /// Records all of another collection.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// True when at least one is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// All diagnostics, sorted by file and position.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut v: Vec<&Diagnostic> = self.items.iter().collect();
        v.sort_by_key(|d| (d.file.0, d.span.start, d.span.end));
        v
    }

    /// Iterates in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Renders all diagnostics with underlined source, for a terminal
    /// (`color`) or a plain stream. A diagnostic on a line too long to quote
    /// gets its place and notes without the source.
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        let config = term::Config::default();
        let mut out = Vec::new();
        let mut columns = Columns::new(sources);
        for d in self.sorted() {
            if d.on_long_line(sources) {
                out.extend_from_slice(d.render_unquoted(sources, &mut columns).as_bytes());
                continue;
            }
            let cd = d.to_codespan();
            if color {
                let mut buf = term::termcolor::Ansi::new(&mut out);
                let styles = term::Styles::default();
                let mut w = term::StylesWriter::new(&mut buf, &styles);
                let _ = term::emit_to_write_style(&mut w, &config, &sources.files, &cd);
            } else {
                let _ = term::emit_to_io_write(&mut out, &config, &sources.files, &cd);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Renders one line per diagnostic: `file:line:col: error[code]: message`.
    pub fn render_short(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        let mut columns = Columns::new(sources);
        for d in self.sorted() {
            let (line, col) = columns.line_col(d.file, d.span.start);
            let sev = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            out.push_str(&format!(
                "{}:{line}:{col}: {sev}[{}]: {}\n",
                sources.path(d.file).display(),
                d.code,
                d.message
            ));
        }
        out
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// The closest candidate to `name` by edit distance, for "did you mean".
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Maps offsets inside a decoded TOML string back to the file.
///
/// TOML strings may contain escapes, so an offset in the decoded text is an
/// offset in the file only when the raw text between the quotes equals the
/// decoded value (always true for `'''literal'''` strings). When it does not,
/// every span falls back to the whole string: coarse, but never wrong.
#[derive(Clone, Copy, Debug)]
pub struct StrMap {
    base: Option<u32>,
    whole: Span,
}

impl StrMap {
    /// Builds the map for a string value whose TOML token covers `span`.
    pub fn new(file_text: &str, span: Span, decoded: &str) -> Self {
        let raw = file_text.get(span.range()).unwrap_or("");
        let base = ["'''", "\"\"\"", "'", "\""].iter().find_map(|q| {
            let inner = raw.strip_prefix(q)?.strip_suffix(q)?;
            let offset = q.len();
            // A multi-line string drops a newline right after the opening quotes.
            let (inner, offset) = if q.len() == 3 {
                if let Some(rest) = inner.strip_prefix("\r\n") {
                    (rest, offset + 2)
                } else if let Some(rest) = inner.strip_prefix('\n') {
                    (rest, offset + 1)
                } else {
                    (inner, offset)
                }
            } else {
                (inner, offset)
            };
            (inner == decoded).then_some(span.start + offset as u32)
        });
        Self { base, whole: span }
    }

    /// A map for text that is not inside a file (tests, generated flows).
    pub fn identity() -> Self {
        Self {
            base: Some(0),
            whole: Span::default(),
        }
    }

    /// The file span of `start..end` in the decoded text.
    pub fn map(&self, start: usize, end: usize) -> Span {
        match self.base {
            Some(b) => Span {
                start: b + start as u32,
                end: b + end as u32,
            },
            None => self.whole,
        }
    }
}
