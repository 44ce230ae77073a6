//! kaon's workflow model.
//!
//! A workflow file (TOML) declares parameters, steps and a flow; this crate
//! reads it into a [`spec::Workflow`], checks it with precise diagnostics,
//! and turns it into a [`plan::Plan`]: a graph whose for-each, repeat and
//! conditional blocks and sub-workflows stay structured until run time.
//!
//! ```no_run
//! let loaded = kaon_model::load(std::path::Path::new("examples/recsys/recsys.toml"));
//! match &loaded.result {
//!     Some(v) => println!("{} steps", v.workflow.steps.len()),
//!     None => eprint!("{}", loaded.diagnostics.render(&loaded.sources, false)),
//! }
//! ```

pub mod constraints;
pub mod diag;
pub mod edit;
pub mod expr;
pub mod flow;
pub mod ids;
pub mod load;
pub mod plan;
pub mod spec;
pub mod types;
pub mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::diag::{Code, Diagnostic, Diagnostics, FileId, SourceMap, Span};
use crate::plan::{Plan, PlanBuilder};
use crate::spec::{StepKind, Workflow};
use crate::validate::{ChildInfo, Facts};

/// A workflow that passed validation, with its plan and its sub-workflows.
#[derive(Clone, Debug)]
pub struct Validated {
    /// The workflow as written.
    pub workflow: Workflow,
    /// What runs after what.
    pub plan: Plan,
    /// Facts for users of this workflow (output types).
    pub facts: Facts,
    /// The validated child of each sub-workflow step, by step name.
    pub children: IndexMap<String, Validated>,
}

/// The outcome of loading a workflow file.
#[derive(Debug)]
pub struct Loaded {
    /// Every file read (for rendering diagnostics).
    pub sources: SourceMap,
    /// Errors and warnings, from all files.
    pub diagnostics: Diagnostics,
    /// The workflow, when there are no errors.
    pub result: Option<Validated>,
}

/// Reads, checks and plans the workflow at `path` and its sub-workflows.
pub fn load(path: &Path) -> Loaded {
    let mut l = Loader::default();
    let result = l.file(path, None);
    l.finish(result)
}

/// Like [`load`] for text already in memory (`path` names it in messages
/// and anchors relative sub-workflow paths).
pub fn load_str(path: &Path, text: &str) -> Loaded {
    let mut l = Loader::default();
    let result = l.text(path, text.to_string());
    l.finish(result)
}

#[derive(Default)]
struct Loader {
    sources: SourceMap,
    diags: Diagnostics,
    /// Canonical paths of the files being loaded, outermost first.
    stack: Vec<PathBuf>,
}

impl Loader {
    fn finish(self, result: Option<Validated>) -> Loaded {
        let ok = !self.diags.has_errors();
        Loaded {
            sources: self.sources,
            diagnostics: self.diags,
            result: result.filter(|_| ok),
        }
    }

    /// Loads a file; `from` is the `workflow = "..."` setting that named it.
    fn file(&mut self, path: &Path, from: Option<(FileId, Span)>) -> Option<Validated> {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(pos) = self.stack.iter().position(|p| *p == canonical) {
            let (file, span) = from.unwrap_or_default();
            let chain: Vec<String> = self.stack[pos..]
                .iter()
                .chain(std::iter::once(&canonical))
                .map(|p| {
                    p.file_name().map_or_else(
                        || p.display().to_string(),
                        |f| f.to_string_lossy().into_owned(),
                    )
                })
                .collect();
            self.diags.push(
                Diagnostic::error(
                    Code::Cycle,
                    file,
                    span,
                    format!("sub-workflows include each other: {}", chain.join(" -> ")),
                )
                .with_help(
                    "a workflow cannot run itself as a sub-workflow, directly or through others",
                ),
            );
            return None;
        }
        let (message, help) = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) if !text.contains('\0') => return self.text(path, text),
                // Read whole, it is not a workflow: say that, not "check
                // the path".
                Ok(text) => (
                    format!(
                        "`{}` is not a text file (a NUL byte at offset {})",
                        path.display(),
                        text.find('\0').unwrap_or(0)
                    ),
                    "a workflow is a TOML text file; is this the file you meant?",
                ),
                Err(e) => (
                    format!(
                        "`{}` is not a text file (bytes at offset {} are not UTF-8)",
                        path.display(),
                        e.utf8_error().valid_up_to()
                    ),
                    "a workflow is a TOML text file in UTF-8; is this the file you meant?",
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => (
                format!("`{}` is a folder, not a workflow file", path.display()),
                "name the workflow's .toml file inside it",
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                format!("cannot read `{}`: {e}", path.display()),
                "check the path; sub-workflow paths are relative to the file that names them",
            ),
            Err(e) => (
                format!("cannot read `{}`: {e}", path.display()),
                "check that kaon may read it",
            ),
        };
        let (file, span) = match from {
            Some(f) => f,
            None => (self.sources.add(path, String::new()), Span::default()),
        };
        self.diags
            .push(Diagnostic::error(Code::Io, file, span, message).with_help(help));
        None
    }

    fn text(&mut self, path: &Path, text: String) -> Option<Validated> {
        let file = self.sources.add(path, text);
        let text = self.sources.text(file).to_string();
        let workflow = load::decode(&text, file, path, &mut self.diags)?;
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.stack.push(canonical);
        let base = path.parent().unwrap_or(Path::new("."));
        let mut children = IndexMap::new();
        for (name, step) in &workflow.steps {
            if let StepKind::SubWorkflow(sw) = &step.kind {
                let child_path = base.join(&sw.workflow);
                if let Some(v) = self.file(&child_path, Some((file, sw.workflow_span))) {
                    children.insert(name.clone(), v);
                }
            }
        }
        self.stack.pop();
        let infos: HashMap<String, ChildInfo<'_>> = children
            .iter()
            .map(|(k, v): (&String, &Validated)| {
                (
                    k.clone(),
                    ChildInfo {
                        workflow: &v.workflow,
                        facts: &v.facts,
                    },
                )
            })
            .collect();
        let errors_before = self.diags.error_count();
        let facts = validate::check(&workflow, &infos, &mut self.diags);
        drop(infos);
        if self.diags.error_count() > errors_before {
            return None;
        }
        let child_plan = |name: &str| children.get(name).map(|c: &Validated| c.plan.clone());
        let plan = PlanBuilder::new(&workflow, &child_plan).build();
        Some(Validated {
            workflow,
            plan,
            facts,
            children,
        })
    }
}
