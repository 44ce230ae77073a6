//! Reading a workflow file: TOML with spans into [`spec::Workflow`].
//!
//! The TOML is parsed into a span-carrying tree (`toml::de::DeTable`) and
//! decoded by hand rather than through `serde` derive, so that every
//! unknown key, wrong type and bad value is reported with its place, all at
//! once, instead of stopping at the first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::constraints::Constraints;
use crate::diag::{Code, Diagnostic, Diagnostics, FileId, Span, StrMap, suggest};
use crate::expr::{Part, Template, is_ident, parse_template};
use crate::flow::{self, Flow, MARKERS, RESERVED};
use crate::spec::{
    Cache, CommandRun, CommandStep, DeployMode, KINDS, OutputDecl, Param, ParamSource, Resources,
    SparkStep, Step, StepKind, SubWorkflowStep, WaitStep, Workflow, WorkflowOutput,
};
use crate::types::{TYPE_NAMES, Type};

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

const WORKFLOW_KEYS: &[&str] = &["name", "description", "flow", "outputs", "code"];
const TOP_KEYS: &[&str] = &["workflow", "params", "steps"];
const PARAM_KEYS: &[&str] = &[
    "type",
    "default",
    "description",
    "secret",
    "from_env",
    "from_file",
];
const COMMON_STEP_KEYS: &[&str] = &[
    "kind",
    "description",
    "cpus",
    "memory",
    "constraints",
    "retries",
    "retry_backoff",
    "retry_backoff_max",
    "timeout",
    "outputs",
    "env",
    "workdir",
    "cache",
    "cache_version",
    "code",
];
const COMMAND_KEYS: &[&str] = &["command", "script"];
const SPARK_KEYS: &[&str] = &[
    "spark",
    "app",
    "sql",
    "main_class",
    "args",
    "master",
    "cluster",
    "deploy_mode",
    "conf",
    "driver_memory",
    "executor_memory",
    "driver_cores",
    "executor_cores",
    "num_executors",
    "max_cores",
    "packages",
    "jars",
    "py_files",
];
const SUBWORKFLOW_KEYS: &[&str] = &["workflow", "params"];
const WAIT_KEYS: &[&str] = &["signal"];
const OUTPUT_KEYS: &[&str] = &["type", "path"];

impl Decoder<'_, '_> {
    fn err(&mut self, code: Code, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        self.diags
            .push_mut(Diagnostic::error(code, self.file, span, msg))
    }

    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for (k, _) in table.iter() {
            let key: &str = k.get_ref();
            if !allowed.contains(&key) {
                let help = match suggest(key, allowed.iter().copied()) {
                    Some(s) => format!(
                        "did you mean `{s}`? {context} takes: {}",
                        allowed.join(", ")
                    ),
                    None => format!("{context} takes: {}", allowed.join(", ")),
                };
                self.err(
                    Code::UnknownKey,
                    span_of(k),
                    format!("unknown key `{key}` in {context}"),
                )
                .help = Some(help);
            }
        }
    }

    fn get<'a, 'i>(&self, table: &'a DeTable<'i>, key: &str) -> Option<&'a V<'i>> {
        table.get(key)
    }

    fn table<'a, 'i>(&mut self, v: &'a V<'i>, what: &str) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be a table, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn string(&mut self, v: &V<'_>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn template(&mut self, v: &V<'_>, what: &str) -> Option<Template> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            // Numbers and booleans are accepted where text is expected (conf values).
            DeValue::Integer(i) => i.to_string(),
            DeValue::Float(f) => f.to_string(),
            DeValue::Boolean(b) => b.to_string(),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be a string, found {}", type_name(other)),
                );
                return None;
            }
        };
        let span = span_of(v);
        let map = StrMap::new(self.text, span, &s);
        match parse_template(&s, |a, b| map.map(a, b), span) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(Code::InvalidValue, map.map(e.start, e.end), e.message).help =
                    Some("references are written `${params.name}`, `${step.output}` or `${loop_var}`; `$${` is a literal `${`".into());
                None
            }
        }
    }

    fn templates(&mut self, v: &V<'_>, what: &str) -> Option<Vec<Template>> {
        match v.get_ref() {
            DeValue::Array(items) => {
                let out: Vec<Option<Template>> =
                    items.iter().map(|i| self.template(i, what)).collect();
                out.into_iter().collect()
            }
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!(
                        "{what} must be an array of strings, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    fn strings(&mut self, v: &V<'_>, what: &str) -> Option<Vec<String>> {
        match v.get_ref() {
            DeValue::Array(items) => items.iter().map(|i| self.string(i, what)).collect(),
            DeValue::String(s) => Some(
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!(
                        "{what} must be an array of strings, found {}",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    fn boolean(&mut self, v: &V<'_>, what: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be true or false, found {}", type_name(other)),
                );
                None
            }
        }
    }

    fn int(&mut self, v: &V<'_>, what: &str, min: i64, max: i64) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be an integer, found {}", type_name(other)),
                );
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be between {min} and {max}"),
                );
                None
            }
        }
    }

    fn u32_setting(&mut self, t: &DeTable<'_>, key: &str, what: &str) -> Option<u32> {
        let v = self.get(t, key)?;
        self.int(v, what, 1, i64::from(u32::MAX)).map(|n| n as u32)
    }

    fn memory(&mut self, v: &V<'_>, what: &str) -> Option<u64> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(_) => return self.int(v, what, 1, i64::MAX).map(|n| n as u64),
            other => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!(
                        "{what} must be a size like \"4g\" or \"512MiB\", found {}",
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        match parse_memory(&s) {
            Some(n) => Some(n),
            None => {
                self.err(Code::InvalidValue, span_of(v), format!("`{s}` is not a size"))
                    .help = Some("write a number and a unit: \"512m\", \"4g\", \"2GiB\", \"1.5t\" (units are powers of 1024, as in Spark)".into());
                None
            }
        }
    }

    fn json(&mut self, v: &V<'_>) -> Option<Value> {
        Some(match v.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => Value::from(i64::from_str_radix(i.as_str(), i.radix()).ok()?),
            DeValue::Float(f) => {
                serde_json::Number::from_f64(f.as_str().replace('_', "").parse().ok()?)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::String(d.to_string()),
            DeValue::Array(a) => Value::Array(a.iter().filter_map(|i| self.json(i)).collect()),
            DeValue::Table(t) => Value::Object(
                t.iter()
                    .filter_map(|(k, v)| Some((k.get_ref().to_string(), self.json(v)?)))
                    .collect(),
            ),
        })
    }

    fn name_ok(&mut self, name: &str, span: Span, what: &str) -> bool {
        if !is_ident(name) {
            self.err(
                Code::InvalidValue,
                span,
                format!("`{name}` is not a valid {what} name"),
            )
            .help =
                Some("names start with a letter or `_` and contain letters, digits and `_`".into());
            return false;
        }
        if RESERVED.contains(&name) || (what == "step" && MARKERS.contains(&name)) {
            self.err(
                Code::ReservedName,
                span,
                format!("`{name}` is a reserved word and cannot name a {what}"),
            )
            .help = Some(format!("rename the {what}, e.g. `{name}_step`"));
            return false;
        }
        true
    }

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

    fn params(&mut self, v: &V<'_>) -> IndexMap<String, Param> {
        let mut out = IndexMap::new();
        for (name, span, pv) in self.named(v, "`params`", "parameter") {
            let param = match pv.get_ref() {
                DeValue::Table(pt) => {
                    self.check_keys(pt, PARAM_KEYS, &format!("parameter `{name}`"));
                    let default = self.get(pt, "default").and_then(|d| self.json(d));
                    let description = self
                        .get(pt, "description")
                        .and_then(|d| self.string(d, "`description`"));
                    let ty = match self.get(pt, "type") {
                        Some(tv) => {
                            let Some(ts) = self.string(tv, "`type`") else {
                                continue;
                            };
                            match ts.parse::<Type>() {
                                Ok(t) => t,
                                Err(msg) => {
                                    self.err(Code::InvalidValue, span_of(tv), msg);
                                    continue;
                                }
                            }
                        }
                        None => match &default {
                            Some(d) => Type::of_value(d),
                            None => {
                                self.err(
                                    Code::MissingKey,
                                    span,
                                    format!("parameter `{name}` has neither `type` nor `default`"),
                                )
                                .help = Some(format!(
                                    "write `{name} = {{ type = \"string\" }}` for a required parameter"
                                ));
                                continue;
                            }
                        },
                    };
                    if let (Some(d), Some(dv)) = (&default, self.get(pt, "default"))
                        && !ty.accepts_value(d)
                    {
                        self.err(
                            Code::TypeMismatch,
                            span_of(dv),
                            format!("default of `{name}` is not {ty:#}"),
                        )
                        .help = Some(format!("give {ty:#} value, or change `type`"));
                    }
                    let secret = self
                        .get(pt, "secret")
                        .and_then(|b| self.boolean(b, "`secret`"))
                        .unwrap_or(false);
                    let from_env = self
                        .get(pt, "from_env")
                        .and_then(|e| self.string(e, "`from_env`").map(|n| (n, span_of(e))));
                    let from_file = self
                        .get(pt, "from_file")
                        .and_then(|f| self.string(f, "`from_file`").map(|n| (n, span_of(f))));
                    if let Some((n, at)) = &from_env
                        && (n.is_empty() || n.contains('=') || n.contains('\0'))
                    {
                        self.err(
                            Code::InvalidValue,
                            *at,
                            format!("`from_env` of `{name}` is not an environment variable name"),
                        );
                    }
                    let source = match (from_env, from_file) {
                        (Some(_), Some((_, at))) => {
                            self.err(
                                Code::Conflict,
                                at,
                                format!("parameter `{name}` has both `from_env` and `from_file`"),
                            )
                            .help = Some("keep one of them".into());
                            None
                        }
                        (Some((n, _)), None) => Some(ParamSource::Env(n)),
                        (None, Some((f, _))) => Some(ParamSource::File(f)),
                        (None, None) => None,
                    };
                    if secret && let Some(dv) = self.get(pt, "default") {
                        self.err(
                            Code::Conflict,
                            span_of(dv),
                            format!("secret parameter `{name}` has a `default`: its value would be written in the workflow file"),
                        )
                        .help = Some(format!(
                            "take it from the environment (`from_env = \"{}\"`) or a file (`from_file = \"...\"`), or pass `-p {name}=...`",
                            name.to_ascii_uppercase()
                        ));
                    }
                    Param {
                        ty,
                        default,
                        description,
                        secret,
                        source,
                        span,
                    }
                }
                // Shorthand: `name = value` declares a parameter with that default.
                _ => {
                    let Some(default) = self.json(pv) else {
                        continue;
                    };
                    Param {
                        ty: Type::of_value(&default),
                        default: Some(default),
                        description: None,
                        secret: false,
                        source: None,
                        span,
                    }
                }
            };
            out.insert(name, param);
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

    /// The decoded steps, and the names of those that could not be decoded.
    fn steps(&mut self, v: &V<'_>) -> (IndexMap<String, Step>, Vec<String>) {
        let mut out = IndexMap::new();
        let mut invalid = Vec::new();
        let Some(t) = self.table(v, "`steps`") else {
            return (out, invalid);
        };
        for (k, sv) in t.iter() {
            let name = k.get_ref().to_string();
            let span = span_of(k);
            let name_ok = self.name_ok(&name, span, "step");
            let step = self
                .table(sv, &format!("step `{name}`"))
                .and_then(|st| self.step(&name, span, st));
            match step {
                Some(step) if name_ok => {
                    out.insert(name, step);
                }
                _ => invalid.push(name),
            }
        }
        (out, invalid)
    }

    fn step(&mut self, name: &str, span: Span, t: &DeTable<'_>) -> Option<Step> {
        let Some(kind_v) = self.get(t, "kind") else {
            self.err(
                Code::MissingKey,
                span,
                format!("step `{name}` has no `kind`"),
            )
            .help = Some(format!(
                "add `kind = \"command\"` (or one of: {})",
                KINDS.join(", ")
            ));
            return None;
        };
        let kind_name = self.string(kind_v, "`kind`")?;
        let kind_span = span_of(kind_v);
        let specific: &[&str] = match kind_name.as_str() {
            "command" => COMMAND_KEYS,
            "spark" => SPARK_KEYS,
            "subworkflow" => SUBWORKFLOW_KEYS,
            "wait" => WAIT_KEYS,
            "noop" => &[],
            other => {
                let help = match suggest(other, KINDS.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? kinds are: {}", KINDS.join(", ")),
                    None => format!("kinds are: {}", KINDS.join(", ")),
                };
                self.err(
                    Code::InvalidValue,
                    kind_span,
                    format!("unknown step kind `{other}`"),
                )
                .help = Some(help);
                return None;
            }
        };
        let allowed: Vec<&str> = COMMON_STEP_KEYS.iter().chain(specific).copied().collect();
        self.check_keys(t, &allowed, &format!("a `{kind_name}` step"));

        let kind = match kind_name.as_str() {
            "command" => StepKind::Command(self.command(name, span, t)?),
            "spark" => StepKind::Spark(Box::new(self.spark(name, span, t)?)),
            "subworkflow" => StepKind::SubWorkflow(self.subworkflow(name, span, t)?),
            "wait" => StepKind::Wait(WaitStep {
                signal: match self.get(t, "signal") {
                    Some(v) => self.string(v, "`signal`")?,
                    None => name.to_string(),
                },
            }),
            _ => StepKind::Noop,
        };
        let resources = Resources {
            cpus: self.get(t, "cpus").and_then(|v| {
                let x = match v.get_ref() {
                    DeValue::Integer(_) => self.int(v, "`cpus`", 0, 1 << 20)? as f64,
                    DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok()?,
                    other => {
                        self.err(
                            Code::InvalidValue,
                            span_of(v),
                            format!("`cpus` must be a number, found {}", type_name(other)),
                        );
                        return None;
                    }
                };
                if x <= 0.0 || !x.is_finite() {
                    self.err(Code::InvalidValue, span_of(v), "`cpus` must be more than 0");
                    return None;
                }
                Some(x)
            }),
            memory: self
                .get(t, "memory")
                .and_then(|v| self.memory(v, "`memory`")),
        };
        let constraints = self.get(t, "constraints").and_then(|v| {
            let s = self.string(v, "`constraints`")?;
            let map = StrMap::new(self.text, span_of(v), &s);
            match Constraints::parse(&s) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.err(Code::InvalidConstraint, map.map(e.start, e.end), e.message)
                        .help = Some(
                        "constraints are `attr:v1,v2;attr2` (the Mesos attribute grammar)".into(),
                    );
                    None
                }
            }
        });
        let retries = self
            .get(t, "retries")
            .and_then(|v| self.int(v, "`retries`", 0, 1000))
            .unwrap_or(0) as u32;
        let timeout = self
            .get(t, "timeout")
            .and_then(|v| self.duration(v, "`timeout`"));
        let retry_backoff = self
            .get(t, "retry_backoff")
            .and_then(|v| self.duration(v, "`retry_backoff`"));
        let retry_backoff_max = self
            .get(t, "retry_backoff_max")
            .and_then(|v| self.duration(v, "`retry_backoff_max`"));
        let outputs = match self.get(t, "outputs") {
            Some(v) => self.outputs(v),
            None => IndexMap::new(),
        };
        let env = match self.get(t, "env") {
            Some(v) => self.template_map(v, "`env`"),
            None => BTreeMap::new(),
        };
        let workdir = self
            .get(t, "workdir")
            .and_then(|v| self.template(v, "`workdir`"));
        let description = self
            .get(t, "description")
            .and_then(|v| self.string(v, "`description`"));
        let cache = Cache {
            enabled: self
                .get(t, "cache")
                .and_then(|v| self.boolean(v, "`cache`"))
                .unwrap_or(true),
            version: self
                .get(t, "cache_version")
                .and_then(|v| self.template(v, "`cache_version`")),
            code: self
                .get(t, "code")
                .and_then(|v| self.templates(v, "`code`"))
                .unwrap_or_default(),
        };
        Some(Step {
            name: name.to_string(),
            kind,
            description,
            resources,
            constraints,
            retries,
            retry_backoff,
            retry_backoff_max,
            timeout,
            outputs,
            env,
            workdir,
            cache,
            span,
            kind_span,
        })
    }

    fn duration(&mut self, v: &V<'_>, what: &str) -> Option<Duration> {
        let s = self.string(v, what)?;
        match humantime::parse_duration(&s) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("{what} must be longer than zero"),
                );
                None
            }
            Err(e) => {
                self.err(
                    Code::InvalidValue,
                    span_of(v),
                    format!("`{s}` is not a duration: {e}"),
                )
                .help = Some("write e.g. \"90s\", \"10m\", \"1h 30m\"".into());
                None
            }
        }
    }

    fn template_map(&mut self, v: &V<'_>, what: &str) -> BTreeMap<String, Template> {
        let mut out = BTreeMap::new();
        if let Some(t) = self.table(v, what) {
            for (k, val) in t.iter() {
                if let Some(tpl) = self.template(val, what) {
                    out.insert(k.get_ref().to_string(), tpl);
                }
            }
        }
        out
    }

    fn outputs(&mut self, v: &V<'_>) -> IndexMap<String, OutputDecl> {
        let mut out = IndexMap::new();
        for (name, span, ov) in self.named(v, "`outputs`", "output") {
            let (ty_v, path) = match ov.get_ref() {
                DeValue::String(_) => (ov, None),
                DeValue::Table(ot) => {
                    self.check_keys(ot, OUTPUT_KEYS, &format!("output `{name}`"));
                    let path = self
                        .get(ot, "path")
                        .and_then(|p| self.template(p, "`path`"));
                    match self.get(ot, "type") {
                        Some(tv) => (tv, path),
                        None => {
                            self.err(
                                Code::MissingKey,
                                span,
                                format!("output `{name}` has no `type`"),
                            );
                            continue;
                        }
                    }
                }
                other => {
                    self.err(
                        Code::InvalidValue,
                        span_of(ov),
                        format!(
                            "output `{name}` must be a type name or a table, found {}",
                            type_name(other)
                        ),
                    )
                    .help = Some(format!(
                        "e.g. `{name} = \"list<string>\"` or `{name} = {{ type = \"file\", path = \"out/model.bin\" }}`"
                    ));
                    continue;
                }
            };
            let Some(ts) = self.string(ty_v, "`type`") else {
                continue;
            };
            let ty = match ts.parse::<Type>() {
                Ok(t) => t,
                Err(msg) => {
                    self.err(Code::InvalidValue, span_of(ty_v), msg).help =
                        Some(format!("types are {TYPE_NAMES}"));
                    continue;
                }
            };
            if let Some(p) = &path {
                self.check_output_path(&name, p);
            }
            if path.is_some() && !ty.is_artifact() {
                self.err(Code::Conflict, span, format!("output `{name}` has a `path` but its type is {ty}"))
                    .help = Some("`path` is for `file` and `dir` outputs; value outputs are reported by the step".into());
            }
            out.insert(name, OutputDecl { ty, path, span });
        }
        out
    }

    /// An output path must stay inside the step's working directory: kaon
    /// stores what is there and a memo restore writes it back, so `/etc/x`
    /// or `../x` would read or overwrite files no step owns. Only the
    /// literal text is checked here; the executor checks the resolved path.
    fn check_output_path(&mut self, name: &str, path: &Template) {
        // References stand in as one opaque letter: what they resolve to
        // is checked at run time.
        let literal: String = path
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Ref(_) => "x",
            })
            .collect();
        let absolute = literal.starts_with('/');
        let parent = literal.split('/').any(|c| c == "..");
        if absolute || parent {
            self.err(
                Code::InvalidValue,
                path.span,
                format!(
                    "output `{name}`: `path` must stay inside the step's working directory (no absolute path, no `..`)"
                ),
            )
            .help = Some(
                "set the step's `workdir` to the folder that holds its outputs and give the path relative to it".into(),
            );
        }
    }

    fn command(&mut self, name: &str, span: Span, t: &DeTable<'_>) -> Option<CommandStep> {
        let argv = self.get(t, "command");
        let script = self.get(t, "script");
        let run = match (argv, script) {
            (Some(a), None) => {
                let argv = match a.get_ref() {
                    // A single string is split on whitespace, shell-free.
                    DeValue::String(_) => {
                        let tpl = self.template(a, "`command`")?;
                        let text = tpl.to_string();
                        let map = StrMap::new(self.text, span_of(a), &text);
                        let mut parts = Vec::new();
                        let mut at = 0;
                        for word in text.split_whitespace() {
                            let start = text[at..].find(word).map_or(at, |i| at + i);
                            at = start + word.len();
                            let wspan = map.map(start, at);
                            parts.push(
                                parse_template(word, |a, b| map.map(start + a, start + b), wspan)
                                    .ok()?,
                            );
                        }
                        parts
                    }
                    _ => self.templates(a, "`command`")?,
                };
                if argv.is_empty() {
                    self.err(Code::InvalidValue, span_of(a), "`command` is empty");
                    return None;
                }
                CommandRun::Argv(argv)
            }
            (None, Some(s)) => CommandRun::Script(self.template(s, "`script`")?),
            (Some(a), Some(_)) => {
                self.err(
                    Code::Conflict,
                    span_of(a),
                    format!("step `{name}` has both `command` and `script`"),
                )
                .help = Some(
                    "keep one: `command` runs a program directly, `script` runs shell text".into(),
                );
                return None;
            }
            (None, None) => {
                self.err(
                    Code::MissingKey,
                    span,
                    format!("command step `{name}` has neither `command` nor `script`"),
                )
                .help =
                    Some("add `command = [\"python3\", \"prep.py\"]` or `script = \"...\"`".into());
                return None;
            }
        };
        Some(CommandStep { run })
    }

    fn spark(&mut self, name: &str, span: Span, t: &DeTable<'_>) -> Option<SparkStep> {
        let mut s = SparkStep::default();
        if let Some(v) = self.get(t, "spark") {
            s.version_span = span_of(v);
            s.version = self.string(v, "`spark`");
            if let Some(ver) = &s.version
                && !valid_version(ver)
            {
                self.err(
                    Code::InvalidValue,
                    s.version_span,
                    format!("`{ver}` is not a Spark version"),
                )
                .help = Some("write a version like \"3.5\" or \"4.0.1\"".into());
            }
        }
        s.app = self.get(t, "app").and_then(|v| self.template(v, "`app`"));
        s.sql = self.get(t, "sql").and_then(|v| self.template(v, "`sql`"));
        match (self.get(t, "app"), self.get(t, "sql")) {
            (None, None) => {
                self.err(
                    Code::MissingKey,
                    span,
                    format!("spark step `{name}` has neither `app` nor `sql`"),
                )
                .help = Some(
                    "add `app = \"jobs/train.py\"` (a .py or .jar file) or `sql = \"SELECT ...\"`"
                        .into(),
                );
            }
            (Some(a), Some(_)) => {
                self.err(
                    Code::Conflict,
                    span_of(a),
                    format!("spark step `{name}` has both `app` and `sql`"),
                );
            }
            _ => {}
        }
        s.main_class = self
            .get(t, "main_class")
            .and_then(|v| self.string(v, "`main_class`"));
        s.args = self
            .get(t, "args")
            .and_then(|v| self.templates(v, "`args`"))
            .unwrap_or_default();
        if let Some(v) = self.get(t, "master") {
            s.master_span = span_of(v);
            s.master = self.string(v, "`master`");
            if let Some(m) = &s.master
                && !valid_master(m)
            {
                self.err(Code::InvalidValue, s.master_span, format!("`{m}` is not a Spark master URL"))
                        .help = Some("use `local`, `local[N]`, `local[*]`, `spark://host:port`, `yarn`, `k8s://https://host:port` or `mesos://host:port`".into());
            }
        }
        s.cluster = self
            .get(t, "cluster")
            .and_then(|v| self.string(v, "`cluster`"));
        if let (Some(m), Some(_)) = (self.get(t, "master"), self.get(t, "cluster")) {
            self.err(
                Code::Conflict,
                span_of(m),
                "`master` and `cluster` both choose where the step runs",
            )
            .help = Some(
                "keep `cluster` (a named cluster from kaon's config) or `master`, not both".into(),
            );
        }
        if let Some(v) = self.get(t, "deploy_mode") {
            s.deploy_mode = match self.string(v, "`deploy_mode`").as_deref() {
                Some("client") => Some(DeployMode::Client),
                Some("cluster") => Some(DeployMode::Cluster),
                Some(other) => {
                    self.err(
                        Code::InvalidValue,
                        span_of(v),
                        format!("`{other}` is not a deploy mode; use \"client\" or \"cluster\""),
                    );
                    None
                }
                None => None,
            };
        }
        s.conf = match self.get(t, "conf") {
            Some(v) => self.template_map(v, "`conf`"),
            None => BTreeMap::new(),
        };
        s.driver_memory = self
            .get(t, "driver_memory")
            .and_then(|v| self.memory(v, "`driver_memory`"));
        s.executor_memory = self
            .get(t, "executor_memory")
            .and_then(|v| self.memory(v, "`executor_memory`"));
        s.driver_cores = self.u32_setting(t, "driver_cores", "`driver_cores`");
        s.executor_cores = self.u32_setting(t, "executor_cores", "`executor_cores`");
        s.num_executors = self.u32_setting(t, "num_executors", "`num_executors`");
        s.max_cores = self.u32_setting(t, "max_cores", "`max_cores`");
        s.packages = self
            .get(t, "packages")
            .and_then(|v| self.strings(v, "`packages`"))
            .unwrap_or_default();
        s.jars = self
            .get(t, "jars")
            .and_then(|v| self.strings(v, "`jars`"))
            .unwrap_or_default();
        s.py_files = self
            .get(t, "py_files")
            .and_then(|v| self.strings(v, "`py_files`"))
            .unwrap_or_default();
        Some(s)
    }

    fn subworkflow(&mut self, name: &str, span: Span, t: &DeTable<'_>) -> Option<SubWorkflowStep> {
        let Some(v) = self.get(t, "workflow") else {
            self.err(
                Code::MissingKey,
                span,
                format!("subworkflow step `{name}` has no `workflow`"),
            )
            .help = Some("add `workflow = \"other.toml\"` (relative to this file)".into());
            return None;
        };
        let workflow = PathBuf::from(self.string(v, "`workflow`")?);
        let mut params = IndexMap::new();
        if let Some(pv) = self.get(t, "params")
            && let Some(pt) = self.table(pv, "`params`")
        {
            for (k, val) in pt.iter() {
                let tpl = match val.get_ref() {
                    DeValue::Array(_) | DeValue::Table(_) => {
                        // Structured values pass through as JSON text.
                        let j = self.json(val)?;
                        Template {
                            parts: vec![Part::Text(j.to_string())],
                            span: span_of(val),
                        }
                    }
                    _ => self.template(val, "a sub-workflow parameter")?,
                };
                params.insert(k.get_ref().to_string(), tpl);
            }
        }
        Some(SubWorkflowStep {
            workflow,
            params,
            workflow_span: span_of(v),
        })
    }
}

fn valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn valid_master(m: &str) -> bool {
    let local_ok = |inner: &str| inner == "*" || inner.parse::<u32>().is_ok_and(|n| n > 0);
    m == "local"
        || m == "yarn"
        || m.strip_prefix("local[")
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(local_ok)
        || ["spark://", "mesos://", "k8s://"]
            .iter()
            .any(|p| m.strip_prefix(p).is_some_and(|r| !r.is_empty()))
}

/// Parses a size: a number and a binary unit, as Spark does (`512m`, `4g`,
/// `2GiB`, `1.5t`, a bare number is bytes).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    let bytes = n * mult as f64;
    (bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m"), Some(512 << 20));
        assert_eq!(parse_memory("4g"), Some(4 << 30));
        assert_eq!(parse_memory("2GiB"), Some(2 << 30));
        assert_eq!(parse_memory("1.5k"), Some(1536));
        assert_eq!(parse_memory("4 gb"), Some(4 << 30));
        assert_eq!(parse_memory("4x"), None);
        assert_eq!(parse_memory("0m"), None);
        assert_eq!(parse_memory("g"), None);
    }

    #[test]
    fn masters() {
        for ok in [
            "local",
            "local[2]",
            "local[*]",
            "spark://h:7077",
            "yarn",
            "k8s://https://h:443",
            "mesos://h:5050",
        ] {
            assert!(valid_master(ok), "{ok}");
        }
        for bad in ["local[0]", "local[x]", "spark://", "http://x"] {
            assert!(!valid_master(bad), "{bad}");
        }
    }
}
