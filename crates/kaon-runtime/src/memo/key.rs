//! The memo key of a launch order, recorded part by part.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kaon_artifacts::proto::{
    CodeDigest, EnvVar, Environment, InputDigest, MemoKey, OutputDecl, Setting,
};
use kaon_artifacts::{Digest, hash_code};
use kaon_engine::LaunchOrder;
use kaon_engine::event::Invocation;
use prost::Message;
use serde_json::Value;

use crate::error::RuntimeError;
use crate::secrets::Sealer;

/// Script and program files on a command line whose content is code.
const CODE_EXTENSIONS: &[&str] = &[
    "py", "sh", "bash", "r", "sql", "jar", "scala", "js", "mjs", "rb", "pl", "ipynb", "java", "kt",
    "lua", "jl", "awk",
];

/// Digests of code files, remembered by (length, mtime, inode) so a sweep
/// of 30,000 launches hashes `train.py` once.
#[derive(Default)]
pub struct CodeCache {
    seen: Mutex<HashMap<PathBuf, (u64, i128, u64, Digest)>>,
}

fn stamp(meta: &std::fs::Metadata) -> (u64, i128, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        meta.len(),
        i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        meta.ino(),
    )
}

impl CodeCache {
    async fn digest(&self, path: &Path) -> Result<Digest, RuntimeError> {
        let meta = std::fs::metadata(path).map_err(|source| RuntimeError::Code {
            path: path.to_path_buf(),
            source,
        })?;
        let (len, mtime, ino) = stamp(&meta);
        if meta.is_file()
            && let Ok(seen) = self.seen.lock()
            && let Some(&(l, m, i, d)) = seen.get(path)
            && (l, m, i) == (len, mtime, ino)
        {
            return Ok(d);
        }
        let hashed = hash_code(path)
            .await
            .map_err(|source| RuntimeError::Artifact {
                what: format!("cannot hash code path {}", path.display()),
                source,
            })?;
        let Some((_, d)) = hashed else {
            return Err(RuntimeError::CodeMissing {
                path: path.to_path_buf(),
            });
        };
        if meta.is_file()
            && let Ok(mut seen) = self.seen.lock()
        {
            seen.insert(path.to_path_buf(), (len, mtime, ino, d));
        }
        Ok(d)
    }
}

fn find_program(prog: &str, order: &LaunchOrder) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = order.workdir.join(prog);
        return p.is_file().then_some(p);
    }
    let path = order
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| std::ffi::OsString::from(v))
        .or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

fn is_code(arg: &str) -> bool {
    Path::new(arg)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| CODE_EXTENSIONS.contains(&e.as_str()))
}

fn keep_env(name: &str) -> bool {
    !name.starts_with("KAON_") || name.starts_with("KAON_VAR_")
}

/// The memo key of a launch order: its text form and the record it digests.
/// `facts` are what the executor adds (the exact Spark version a request
/// resolves to, the placement), from [`kaon_exec::Executor::describe`].
///
/// No secret is stored in the record: environment values are kept as keyed
/// digests, and the values of secret parameters are replaced wherever they
/// appear (command line, script, Spark settings) by `hidden`.
pub async fn memo_key(
    order: &LaunchOrder,
    code: &CodeCache,
    facts: &Value,
    hidden: &Hidden<'_>,
) -> Result<(String, MemoKey), RuntimeError> {
    let spec = order.memo.as_ref().ok_or_else(|| RuntimeError::NotCached {
        kind: "uncached".into(),
    })?;
    let mut key = MemoKey {
        version: 3,
        kind: spec.kind.clone(),
        workdir: order.workdir.display().to_string(),
        cache_version: spec.cache_version.clone(),
        instance: order.key.clone(),
        ..Default::default()
    };
    let mut code_paths: Vec<(String, PathBuf)> = spec
        .code
        .iter()
        .map(|p| (p.display().to_string(), p.clone()))
        .collect();
    match &order.invocation {
        Invocation::Argv { argv } => {
            key.argv = argv.iter().map(|a| hidden.hide(a)).collect();
            if let Some(prog) = argv.first() {
                let program = match find_program(prog, order) {
                    Some(p) => CodeDigest {
                        path: p.display().to_string(),
                        digest: code.digest(&p).await?.to_string(),
                    },
                    None => CodeDigest {
                        path: prog.clone(),
                        digest: String::new(),
                    },
                };
                key.environment = Some(Environment {
                    program: Some(program),
                    ..Default::default()
                });
            }
            for arg in argv.iter().skip(1) {
                let p = order.workdir.join(arg);
                if is_code(arg) && p.is_file() {
                    code_paths.push((arg.clone(), p));
                }
            }
        }
        Invocation::Script { script } => key.script = hidden.hide(script),
        Invocation::Spark {
            step: job,
            constraints,
        } => {
            // The application and the files shipped with it are code; the
            // rest of the job (conf, resources, arguments) and where it is
            // placed are configuration.
            let local = |p: &String| !p.contains(':') || p.starts_with('/');
            for p in job
                .app
                .iter()
                .chain(&job.jars)
                .chain(&job.py_files)
                .filter(|p| local(p))
            {
                // Shown relative to the working directory, as command steps' are.
                let shown = Path::new(p)
                    .strip_prefix(&order.workdir)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| p.clone());
                code_paths.push((shown, PathBuf::from(p)));
            }
            key.environment = Some(Environment {
                spark_version: facts["spark"].as_str().unwrap_or("").to_string(),
                ..Default::default()
            });
            // Hidden in the structure, before serialising: a secret with a
            // quote or a line break in it would not match its escaped form.
            // A job that cannot be encoded gets no key (a key without it
            // could stand for another job).
            let mut job = serde_json::to_value(job).map_err(|_| RuntimeError::NotCached {
                kind: "spark (its settings cannot be encoded)".into(),
            })?;
            // Recorded as the engine's Spark job carried them.
            job["constraints"] = constraints.clone().into();
            flatten("", &hidden.hide_json(job), &mut key.settings);
            flatten(
                "placement",
                &hidden.hide_json(facts.clone()),
                &mut key.settings,
            );
        }
        Invocation::Unsupported { kind } => {
            return Err(RuntimeError::NotCached { kind: kind.clone() });
        }
    }
    if !spec.config.is_null() {
        flatten(
            "config",
            &hidden.hide_json(spec.config.clone()),
            &mut key.settings,
        );
    }
    key.settings.sort_by(|a, b| a.name.cmp(&b.name));
    code_paths.sort();
    code_paths.dedup();
    for (shown, p) in code_paths {
        key.code.push(CodeDigest {
            path: shown,
            digest: code.digest(&p).await?.to_string(),
        });
    }
    let mut env: Vec<EnvVar> = order
        .env
        .iter()
        .filter(|(k, _)| keep_env(k))
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: hidden.sealer.digest(v),
        })
        .collect();
    env.sort_by(|a, b| a.name.cmp(&b.name));
    key.env = env;
    key.outputs = order
        .outputs
        .iter()
        .map(|o| OutputDecl {
            name: o.name.clone(),
            r#type: o.ty.to_string(),
            path: o
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        })
        .collect();
    key.inputs = order
        .inputs
        .iter()
        .map(|i| InputDigest {
            source: i.source.clone(),
            digest: i.digest.clone(),
        })
        .collect();
    key.inputs.sort_by(|a, b| a.source.cmp(&b.source));
    let digest = Digest::of(&key.encode_to_vec());
    Ok((digest.to_string(), key))
}

/// What a memo key must not hold in plain text.
pub struct Hidden<'a> {
    /// Digests values under the data directory's key.
    pub sealer: &'a Sealer,
    /// The run's secret parameters: (name, value).
    pub secrets: &'a [(String, String)],
}

impl Hidden<'_> {
    pub(crate) fn hide(&self, text: &str) -> String {
        crate::secrets::hide(self.sealer, self.secrets, text)
    }

    fn hide_json(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.hide(&s)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|i| self.hide_json(i)).collect())
            }
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (self.hide(&k), self.hide_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Records `v` field by field under `prefix`: objects as `prefix.key` (or
/// `prefix[key]` when the key has a dot, as Spark conf keys do), arrays as
/// `prefix[i]`; empty values and nulls are left out, so adding an unset
/// optional field to the job does not change any key.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<Setting>) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else if k.contains('.') || k.contains('[') {
                    format!("{prefix}[{k}]")
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push(Setting {
            name: prefix.to_string(),
            value: other.to_string(),
        }),
    }
}
