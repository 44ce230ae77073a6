//! Launch orders: a step's templates rendered into what an executor runs.

use std::cell::RefCell;

use kaon_model::spec::{CommandRun, StepKind};
use serde_json::{Map, Value};

use super::RunState;
use super::resolve::Ctx;
use super::spark::{normalize, spark_invocation};
use crate::error::EvalError;
use crate::eval;
use crate::event::{InputRef, Invocation, LaunchOrder, MemoSpec, NodeId, OutputSpec};

/// The longest parameter value passed in the environment. Linux refuses an
/// environment string over 128 KiB, and copying a big list into every
/// launch would cost time per step; such values reach steps through
/// `${params.NAME}` instead.
pub const MAX_ENV_VALUE: usize = 32 * 1024;

/// `KAON_PARAMS` (all parameters as one JSON object) and `KAON_PARAM_<NAME>`
/// per parameter, leaving out values longer than [`MAX_ENV_VALUE`].
pub(super) fn param_env(params: &Map<String, Value>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let all = Value::Object(params.clone()).to_string();
    if all.len() <= MAX_ENV_VALUE {
        env.push(("KAON_PARAMS".to_string(), all));
    }
    for (k, v) in params {
        let text = eval::to_text(v);
        if text.len() <= MAX_ENV_VALUE {
            env.push((format!("KAON_PARAM_{}", env_name(k)), text));
        }
    }
    env
}

impl RunState {
    /// Builds the launch order of an attempt: every template rendered.
    pub fn launch_order(
        &self,
        n: u32,
        attempt: u32,
        adopt: bool,
    ) -> Result<LaunchOrder, EvalError> {
        let id = NodeId(n);
        let step = self.step_of(id).ok_or(EvalError::NotAStep { node: id })?;
        let reads = RefCell::new(Vec::new());
        let ctx = Ctx {
            run: self,
            scope: self.nodes[n as usize].scope,
            node: Some(n),
            reads: Some(&reads),
        };
        let key = self.key(id);
        let invocation = match &step.kind {
            StepKind::Command(c) => match &c.run {
                CommandRun::Argv(argv) => Invocation::Argv {
                    argv: argv
                        .iter()
                        .map(|t| eval::render(t, &ctx))
                        .collect::<Result<_, _>>()?,
                },
                CommandRun::Script(s) => Invocation::Script {
                    script: eval::render(s, &ctx)?,
                },
            },
            other => Invocation::Unsupported {
                kind: other.name().to_string(),
            },
        };
        let workdir = match &step.workdir {
            Some(w) => self.program.base_dir.join(eval::render(w, &ctx)?),
            None => self.program.base_dir.clone(),
        };
        let invocation = match &step.kind {
            StepKind::Spark(s) => spark_invocation(s, step.constraints.as_ref(), &workdir, &ctx)?,
            _ => invocation,
        };
        let mut env = Vec::new();
        for (k, t) in &step.env {
            env.push((k.clone(), eval::render(t, &ctx)?));
        }
        env.push(("KAON_RUN_ID".into(), self.id.clone()));
        env.push(("KAON_STEP".into(), step.name.clone()));
        env.push(("KAON_STEP_KEY".into(), key.clone()));
        env.push(("KAON_ATTEMPT".into(), attempt.to_string()));
        env.extend(self.param_env.iter().cloned());
        let mut s = self.nodes[n as usize].scope;
        loop {
            let sc = &self.scopes[s as usize];
            for (k, v) in &sc.vars {
                env.push((format!("KAON_VAR_{}", env_name(k)), eval::to_text(v)));
            }
            match sc.parent {
                Some(b) => s = self.nodes[b.0 as usize].scope,
                None => break,
            }
        }
        let mut outputs = Vec::new();
        for (name, o) in &step.outputs {
            let path = match &o.path {
                Some(p) => Some(workdir.join(eval::render(p, &ctx)?)),
                None => None,
            };
            outputs.push(OutputSpec {
                name: name.clone(),
                ty: o.ty.clone(),
                path,
            });
        }
        let memo = if step.cache.enabled && !matches!(invocation, Invocation::Unsupported { .. }) {
            let mut code = Vec::new();
            for c in &self.program.workflow.workflow.code {
                code.push(normalize(self.program.base_dir.join(c)));
            }
            for c in &step.cache.code {
                code.push(normalize(
                    self.program.base_dir.join(eval::render(c, &ctx)?),
                ));
            }
            code.sort();
            code.dedup();
            Some(MemoSpec {
                kind: step.kind.name().to_string(),
                cache_version: match &step.cache.version {
                    Some(v) => eval::render(v, &ctx)?,
                    None => String::new(),
                },
                code,
                config: Value::Null,
                reuse: !self.options.no_cache,
            })
        } else {
            None
        };
        // Of the outputs read, those that are artifacts are the inputs.
        let mut inputs: Vec<InputRef> = Vec::new();
        for (m, output) in reads.into_inner() {
            let node = &self.nodes[m as usize];
            if let Some(a) = node.info.artifacts.iter().find(|a| a.name == output) {
                let name = self
                    .step_of(NodeId(m))
                    .map(|s| s.name.as_str())
                    .unwrap_or("?");
                inputs.push(InputRef {
                    source: format!("{name}.{output}"),
                    artifact: a.id.clone(),
                    digest: a.digest.clone(),
                });
            }
        }
        inputs.sort();
        inputs.dedup();
        Ok(LaunchOrder {
            run: self.id.clone(),
            node: id,
            attempt,
            step: step.name.clone(),
            key,
            invocation,
            env,
            workdir: normalize(workdir),
            outputs,
            cpus: step.resources.cpus.unwrap_or(1.0),
            memory: step.resources.memory.unwrap_or(0),
            adopt,
            inputs,
            memo,
        })
    }
}

/// `KAON_PARAM_<NAME>`: upper case, anything else than A-Z0-9 as `_`.
pub(super) fn env_name(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
