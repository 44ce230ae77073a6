//! The settings of each kind of step: command, spark, sub-workflow.

use std::collections::BTreeMap;
use std::path::PathBuf;

use indexmap::IndexMap;
use toml::de::{DeTable, DeValue};

use super::{Decoder, span_of};
use crate::diag::{Code, Span, StrMap};
use crate::expr::{Part, Template, parse_template};
use crate::spec::{CommandRun, CommandStep, DeployMode, SparkStep, SubWorkflowStep};

impl Decoder<'_, '_> {
    pub(super) fn command(
        &mut self,
        name: &str,
        span: Span,
        t: &DeTable<'_>,
    ) -> Option<CommandStep> {
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

    pub(super) fn spark(&mut self, name: &str, span: Span, t: &DeTable<'_>) -> Option<SparkStep> {
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

    pub(super) fn subworkflow(
        &mut self,
        name: &str,
        span: Span,
        t: &DeTable<'_>,
    ) -> Option<SubWorkflowStep> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
