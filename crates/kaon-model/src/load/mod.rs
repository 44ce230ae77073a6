//! Reading a workflow file: TOML with spans into [`spec::Workflow`].
//!
//! The TOML is parsed into a span-carrying tree (`toml::de::DeTable`) and
//! decoded by hand rather than through `serde` derive, so that every
//! unknown key, wrong type and bad value is reported with its place, all at
//! once, instead of stopping at the first.

use std::path::Path;

use indexmap::IndexMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Code, Diagnostic, Diagnostics, FileId, Span, StrMap};
use crate::flow::{self, Flow};
use crate::spec::{Workflow, WorkflowOutput};

mod kinds;
mod params;
mod schedules;
mod steps;
mod values;

pub use values::parse_memory;

type V<'i> = Spanned<DeValue<'i>>;

/// Decodes a workflow from `text` (already added to the source map as `file`).
/// Returns `None` when the file is too broken to describe a workflow; the
/// reasons are in `diags` either way.
pub fn decode(text: &str, file: FileId, path: &Path, diags: &mut Diagnostics) -> Option<Workflow> {
    if u32::try_from(text.len()).is_err() {
        diags.push(Diagnostic::error(
            Code::Io,
            file,
            Span::default(),
            "workflow file is larger than 4 GiB",
        ));
        return None;
    }
    let (root, errors) = DeTable::parse_recoverable(text);
    let had_syntax_errors = !errors.is_empty();
    for e in errors {
        let span = e.span().map(Span::from).unwrap_or_default();
        diags.push(
            Diagnostic::error(
                Code::TomlSyntax,
                file,
                span,
                format!("invalid TOML: {}", e.message().trim()),
            )
            .with_help("see https://toml.io for the syntax"),
        );
    }
    if had_syntax_errors {
        return None;
    }
    let mut d = Decoder { text, file, diags };
    d.workflow(root.get_ref(), path)
}

struct Decoder<'t, 'd> {
    text: &'t str,
    file: FileId,
    diags: &'d mut Diagnostics,
}

fn span_of<T>(v: &Spanned<T>) -> Span {
    Span::from(v.span())
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "flow",
    "outputs",
    "code",
    "schedule",
    "trigger",
];
const TOP_KEYS: &[&str] = &["workflow", "params", "steps"];

impl Decoder<'_, '_> {
    fn workflow(&mut self, root: &DeTable<'_>, path: &Path) -> Option<Workflow> {
        self.check_keys(root, TOP_KEYS, "a workflow file");
        let whole = Span::new(0, self.text.len().min(1));
        let Some(wf_v) = self.get(root, "workflow") else {
            self.err(
                Code::MissingKey,
                whole,
                "the file has no `[workflow]` table",
            )
            .help = Some(
                "start the file with `[workflow]`, a `name = \"...\"` and a `flow = '''...'''`"
                    .into(),
            );
            return None;
        };
        let wf = self.table(wf_v, "`workflow`")?;
        self.check_keys(wf, WORKFLOW_KEYS, "`[workflow]`");
        let name = match self.get(wf, "name") {
            Some(v) => self.string(v, "`workflow.name`"),
            None => {
                self.err(
                    Code::MissingKey,
                    span_of(wf_v),
                    "`[workflow]` has no `name`",
                );
                None
            }
        };
        let description = self
            .get(wf, "description")
            .and_then(|v| self.string(v, "`description`"));
        let code = self
            .get(wf, "code")
            .and_then(|v| self.strings(v, "`workflow.code`"))
            .unwrap_or_default();

        let params = match self.get(root, "params") {
            Some(v) => self.params(v),
            None => IndexMap::new(),
        };
        let mut names = schedules::Names::default();
        let schedules = match self.get(wf, "schedule") {
            Some(v) => self.schedules(v, &params, &mut names),
            None => Vec::new(),
        };
        let triggers = match self.get(wf, "trigger") {
            Some(v) => self.triggers(v, &params, name.as_deref(), &mut names),
            None => Vec::new(),
        };
        let (steps, invalid_steps) = match self.get(root, "steps") {
            Some(v) => self.steps(v),
            None => {
                self.err(Code::MissingKey, whole, "the file declares no steps")
                    .help = Some("declare steps as `[steps.NAME]` tables with a `kind`".into());
                (IndexMap::new(), Vec::new())
            }
        };
        let outputs = match self.get(wf, "outputs") {
            Some(v) => self.workflow_outputs(v),
            None => IndexMap::new(),
        };
        let (flow, flow_span) = match self.get(wf, "flow") {
            Some(v) => (self.flow(v)?, span_of(v)),
            None => {
                self.err(
                    Code::MissingKey,
                    span_of(wf_v),
                    "`[workflow]` has no `flow`",
                )
                .help = Some(
                    "add `flow = '''start -> a -> b -> end'''` to say in which order steps run"
                        .into(),
                );
                return None;
            }
        };
        Some(Workflow {
            name: name?,
            description,
            params,
            steps,
            outputs,
            code,
            schedules,
            triggers,
            flow,
            file: self.file,
            path: path.to_path_buf(),
            flow_span,
            invalid_steps,
        })
    }

    fn flow(&mut self, v: &V<'_>) -> Option<Flow> {
        let src = self.string(v, "`flow`")?;
        let map = StrMap::new(self.text, span_of(v), &src);
        match flow::parse_flow(&src, &map) {
            Ok(f) => Some(f),
            Err(e) => {
                let mut d = Diagnostic::error(e.code, self.file, e.span, e.message);
                if let Some(h) = e.help {
                    d = d.with_help(h);
                }
                if let Some((span, msg)) = e.related {
                    d = d.with_secondary(self.file, span, msg);
                }
                self.diags.push(d);
                None
            }
        }
    }

    /// The entries of a table of named things (`[params]`, `outputs`),
    /// keeping only those whose names are valid.
    fn named<'a, 'i>(
        &mut self,
        v: &'a V<'i>,
        table_what: &str,
        name_what: &str,
    ) -> Vec<(String, Span, &'a V<'i>)> {
        let Some(t) = self.table(v, table_what) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, val) in t.iter() {
            let name = k.get_ref().to_string();
            let span = span_of(k);
            if self.name_ok(&name, span, name_what) {
                out.push((name, span, val));
            }
        }
        out
    }

    fn workflow_outputs(&mut self, v: &V<'_>) -> IndexMap<String, WorkflowOutput> {
        let mut out = IndexMap::new();
        for (name, span, ov) in self.named(v, "`workflow.outputs`", "output") {
            if let Some(value) = self.template(ov, "a workflow output") {
                out.insert(name, WorkflowOutput { value, span });
            }
        }
        out
    }
}
