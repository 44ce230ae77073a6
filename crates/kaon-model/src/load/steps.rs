//! `[steps]`: the settings every step has, and its outputs.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use toml::de::{DeTable, DeValue};

use super::{Decoder, V, span_of, type_name};
use crate::constraints::Constraints;
use crate::diag::{Code, Span, StrMap, suggest};
use crate::expr::{Part, Template};
use crate::spec::{Cache, KINDS, OutputDecl, Resources, Step, StepKind, WaitStep};
use crate::types::{TYPE_NAMES, Type};

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
    /// The decoded steps, and the names of those that could not be decoded.
    pub(super) fn steps(&mut self, v: &V<'_>) -> (IndexMap<String, Step>, Vec<String>) {
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
}
