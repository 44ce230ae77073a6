//! The workflow as written: parameters, steps and their settings, the flow.
//!
//! These types are what [`crate::load`] produces from a TOML file. Spans are
//! kept wherever validation may need to point back at the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
pub use kaon_schedule::{CatchUp, Concurrency, ScheduleSpec, TriggerSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::constraints::Constraints;
use crate::diag::{FileId, Span};
use crate::expr::Template;
use crate::flow::Flow;
use crate::types::Type;

/// A whole workflow file.
#[derive(Clone, Debug, Serialize)]
pub struct Workflow {
    /// The workflow's name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Parameters, in file order.
    pub params: IndexMap<String, Param>,
    /// Steps, in file order.
    pub steps: IndexMap<String, Step>,
    /// What the workflow hands back when used as a sub-workflow.
    pub outputs: IndexMap<String, WorkflowOutput>,
    /// `[workflow] code`: files or folders every step's memo key covers
    /// (a library the step scripts import).
    pub code: Vec<String>,
    /// `[[workflow.schedule]]`: when a deployed workflow runs by the clock.
    /// (A workflow used as a sub-workflow may have them; only deployed
    /// top-level workflows fire.)
    pub schedules: Vec<ScheduleSpec>,
    /// `[[workflow.trigger]]`: which other workflows' successful runs fire
    /// a deployed workflow.
    pub triggers: Vec<TriggerSpec>,
    /// The order of steps.
    pub flow: Flow,
    /// The file it came from.
    #[serde(skip)]
    pub file: FileId,
    /// Its path.
    pub path: PathBuf,
    /// Where the flow string stands.
    #[serde(skip)]
    pub flow_span: Span,
    /// Steps that are declared but could not be decoded (their errors are
    /// already reported), so that checks do not also call them undeclared.
    #[serde(skip)]
    pub invalid_steps: Vec<String>,
}

/// A typed workflow parameter.
#[derive(Clone, Debug, Serialize)]
pub struct Param {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: Type,
    /// The value used when the run gives none; `None` makes it required.
    pub default: Option<Value>,
    /// Free text.
    pub description: Option<String>,
    /// A secret (`secret = true`): kaon stores and prints only a keyed
    /// digest of its value, never the value.
    pub secret: bool,
    /// Where the value comes from at run time when `-p` does not give it:
    /// an environment variable or a file, so that it need not be written
    /// in the workflow file.
    pub source: Option<ParamSource>,
    /// Where it is declared.
    #[serde(skip)]
    pub span: Span,
}

/// Where a parameter's value is read at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamSource {
    /// `from_env = "NAME"`: the environment variable `NAME` of `kaon run`.
    Env(String),
    /// `from_file = "path"`: a file's content (one trailing line break
    /// dropped), the path relative to the workflow file's folder.
    File(String),
}

/// `[workflow.outputs] name = "${step.output}"`.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowOutput {
    /// The value.
    pub value: Template,
    /// Where the key stands.
    #[serde(skip)]
    pub span: Span,
}

/// A declared step output.
#[derive(Clone, Debug, Serialize)]
pub struct OutputDecl {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: Type,
    /// For `file` / `dir`: where the step writes it, relative to its workdir.
    pub path: Option<Template>,
    /// Where it is declared.
    #[serde(skip)]
    pub span: Span,
}

/// Resource needs, used for admission on a worker.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    /// CPU cores (fractions allowed).
    pub cpus: Option<f64>,
    /// Memory in bytes.
    pub memory: Option<u64>,
}

/// One step.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The step's name (its key under `[steps]`).
    pub name: String,
    /// What it runs.
    pub kind: StepKind,
    /// Free text.
    pub description: Option<String>,
    /// Resource needs.
    pub resources: Resources,
    /// Placement constraints (Mesos attribute grammar).
    pub constraints: Option<Constraints>,
    /// Attempts after the first failure.
    pub retries: u32,
    /// Delay before the first retry (doubles per retry, with jitter).
    #[serde(with = "opt_duration")]
    pub retry_backoff: Option<Duration>,
    /// Longest delay between retries.
    #[serde(with = "opt_duration")]
    pub retry_backoff_max: Option<Duration>,
    /// Longest a single attempt may run.
    #[serde(with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// Declared outputs.
    pub outputs: IndexMap<String, OutputDecl>,
    /// Extra environment variables.
    pub env: BTreeMap<String, Template>,
    /// Working directory, relative to the workflow file.
    pub workdir: Option<Template>,
    /// Memoization settings.
    pub cache: Cache,
    /// Where the step's name stands.
    #[serde(skip)]
    pub span: Span,
    /// Where the `kind` value stands.
    #[serde(skip)]
    pub kind_span: Span,
}

impl Step {
    /// Every template among the step's settings, for reference checks.
    pub fn templates(&self) -> Vec<&Template> {
        let mut out: Vec<&Template> = Vec::new();
        out.extend(self.env.values());
        out.extend(self.workdir.iter());
        out.extend(self.cache.version.iter());
        out.extend(self.cache.code.iter());
        out.extend(self.outputs.values().filter_map(|o| o.path.as_ref()));
        match &self.kind {
            StepKind::Command(c) => match &c.run {
                CommandRun::Argv(argv) => out.extend(argv.iter()),
                CommandRun::Script(s) => out.push(s),
            },
            StepKind::Spark(s) => {
                out.extend(s.app.iter());
                out.extend(s.sql.iter());
                out.extend(s.args.iter());
                out.extend(s.conf.values());
            }
            StepKind::SubWorkflow(s) => out.extend(s.params.values()),
            StepKind::Wait(_) | StepKind::Noop => {}
        }
        out
    }
}

/// How a step takes part in memoization.
#[derive(Clone, Debug, Serialize)]
pub struct Cache {
    /// `cache = false` turns memoization off for the step (side effects).
    pub enabled: bool,
    /// `cache_version`: part of the memo key, so changing it forces a miss.
    pub version: Option<Template>,
    /// `code`: files or folders (relative to the workflow file) whose
    /// content is part of the memo key, besides the programs on the
    /// command line.
    pub code: Vec<Template>,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            enabled: true,
            version: None,
            code: Vec::new(),
        }
    }
}

/// What a step runs, with the settings of that kind.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// Any program, as a child process.
    Command(CommandStep),
    /// A Spark application.
    Spark(Box<SparkStep>),
    /// Another workflow, run as a child run.
    SubWorkflow(SubWorkflowStep),
    /// Parks until a signal arrives.
    Wait(WaitStep),
    /// Does nothing; marks a point in the flow (Meson's split/join steps).
    Noop,
}

impl StepKind {
    /// The kind's name as written in files.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Command(_) => "command",
            StepKind::Spark(_) => "spark",
            StepKind::SubWorkflow(_) => "subworkflow",
            StepKind::Wait(_) => "wait",
            StepKind::Noop => "noop",
        }
    }
}

/// The step kinds, for messages.
pub const KINDS: &[&str] = &["command", "spark", "subworkflow", "wait", "noop"];

/// How a command step runs.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandRun {
    /// `command = ["python3", "prep.py"]`: run directly.
    Argv(Vec<Template>),
    /// `script = "..."`: run with `sh -c`.
    Script(Template),
}

/// `kind = "command"`.
#[derive(Clone, Debug, Serialize)]
pub struct CommandStep {
    /// What to run.
    pub run: CommandRun,
}

/// Spark deploy modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployMode {
    /// The driver runs where kaon runs it (spark-submit is supervised).
    Client,
    /// The driver runs on the cluster (standalone: REST submission API).
    Cluster,
}

/// `kind = "spark"`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SparkStep {
    /// Requested Spark version (`"3.5"` or exact `"3.5.9"`).
    pub version: Option<String>,
    /// The application: a `.jar` or `.py` file.
    pub app: Option<Template>,
    /// A SQL query (run through kaon's bundled SQL runner).
    pub sql: Option<Template>,
    /// `--class` for jar applications.
    pub main_class: Option<String>,
    /// Application arguments.
    pub args: Vec<Template>,
    /// `local[n]`, `spark://`, `yarn`, `k8s://`, `mesos://`.
    pub master: Option<String>,
    /// Named cluster from kaon's configuration (instead of `master`).
    pub cluster: Option<String>,
    /// Client or cluster.
    pub deploy_mode: Option<DeployMode>,
    /// `--conf` pairs.
    pub conf: BTreeMap<String, Template>,
    /// `--driver-memory`, bytes.
    pub driver_memory: Option<u64>,
    /// `--executor-memory`, bytes.
    pub executor_memory: Option<u64>,
    /// `--driver-cores`.
    pub driver_cores: Option<u32>,
    /// `--executor-cores`.
    pub executor_cores: Option<u32>,
    /// `--num-executors`.
    pub num_executors: Option<u32>,
    /// `--total-executor-cores` (`spark.cores.max`).
    pub max_cores: Option<u32>,
    /// `--packages`.
    pub packages: Vec<String>,
    /// `--jars`.
    pub jars: Vec<String>,
    /// `--py-files`.
    pub py_files: Vec<String>,
    /// Where `master` stands, for messages.
    #[serde(skip)]
    pub master_span: Span,
    /// Where `version` stands, for messages.
    #[serde(skip)]
    pub version_span: Span,
}

/// A [`SparkStep`] as one attempt runs it: every template rendered and
/// the local paths (the application, jars, py-files) made absolute.
///
/// Kept beside [`SparkStep`] so that the two cannot drift apart; it has the
/// same fields, serialised under the same names in the same order (a memo
/// key holds this form).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RenderedSparkStep {
    /// Requested Spark version (`"3.5"` or exact `"3.5.9"`).
    pub version: Option<String>,
    /// The application: a `.jar` or `.py` file (absolute) or a URL.
    pub app: Option<String>,
    /// A SQL query (run through kaon's bundled SQL runner).
    pub sql: Option<String>,
    /// `--class` for jar applications.
    pub main_class: Option<String>,
    /// Application arguments.
    pub args: Vec<String>,
    /// `local[n]`, `spark://`, `yarn`, `k8s://`, `mesos://`.
    pub master: Option<String>,
    /// Named cluster from kaon's configuration (instead of `master`).
    pub cluster: Option<String>,
    /// Client or cluster; none for the cluster's default.
    pub deploy_mode: Option<DeployMode>,
    /// `--conf` pairs.
    pub conf: BTreeMap<String, String>,
    /// `--driver-memory`, bytes.
    pub driver_memory: Option<u64>,
    /// `--executor-memory`, bytes.
    pub executor_memory: Option<u64>,
    /// `--driver-cores`.
    pub driver_cores: Option<u32>,
    /// `--executor-cores`.
    pub executor_cores: Option<u32>,
    /// `--num-executors`.
    pub num_executors: Option<u32>,
    /// `--total-executor-cores` (`spark.cores.max`).
    pub max_cores: Option<u32>,
    /// `--packages` (Maven coordinates).
    pub packages: Vec<String>,
    /// `--jars` (absolute paths or URLs).
    pub jars: Vec<String>,
    /// `--py-files` (absolute paths or URLs).
    pub py_files: Vec<String>,
}

impl SparkStep {
    /// The step as one attempt runs it: `render` gives each template's
    /// text, `place` turns what names a local file (the application, jars,
    /// py-files) into the path the attempt uses.
    pub fn render<E>(
        &self,
        mut render: impl FnMut(&Template) -> Result<String, E>,
        place: impl Fn(&str) -> String,
    ) -> Result<RenderedSparkStep, E> {
        let mut conf = BTreeMap::new();
        for (k, t) in &self.conf {
            conf.insert(k.clone(), render(t)?);
        }
        Ok(RenderedSparkStep {
            version: self.version.clone(),
            app: match &self.app {
                Some(t) => Some(place(&render(t)?)),
                None => None,
            },
            sql: match &self.sql {
                Some(t) => Some(render(t)?),
                None => None,
            },
            main_class: self.main_class.clone(),
            args: self
                .args
                .iter()
                .map(&mut render)
                .collect::<Result<_, _>>()?,
            master: self.master.clone(),
            cluster: self.cluster.clone(),
            deploy_mode: self.deploy_mode,
            conf,
            driver_memory: self.driver_memory,
            executor_memory: self.executor_memory,
            driver_cores: self.driver_cores,
            executor_cores: self.executor_cores,
            num_executors: self.num_executors,
            max_cores: self.max_cores,
            packages: self.packages.clone(),
            jars: self.jars.iter().map(|j| place(j)).collect(),
            py_files: self.py_files.iter().map(|p| place(p)).collect(),
        })
    }
}

/// `kind = "subworkflow"`.
#[derive(Clone, Debug, Serialize)]
pub struct SubWorkflowStep {
    /// The child workflow file, relative to this one.
    pub workflow: PathBuf,
    /// Values for the child's parameters.
    pub params: IndexMap<String, Template>,
    /// Where `workflow` stands.
    #[serde(skip)]
    pub workflow_span: Span,
}

/// `kind = "wait"`.
#[derive(Clone, Debug, Serialize)]
pub struct WaitStep {
    /// The signal's name (`kaon signal RUN NAME`).
    pub signal: String,
}

mod opt_duration {
    use std::time::Duration;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}
