//! Memoization: a step's memo key, and reuse of an earlier step run with
//! the same key.
//!
//! The key is the BLAKE3 digest of a `MemoKey` record
//! (`artifacts/kaon_artifacts.proto`): the step kind, its command line with
//! every reference substituted, its environment (the step's `env` and its
//! for-each variables, not the run-wide `KAON_*` variables), working
//! directory, declared outputs, the content of its code (the program that
//! runs, script files on the command line, and `code` entries), and the
//! digests of the artifacts it reads. Parameters enter through the command
//! line they are substituted into, so a parameter a step does not use does
//! not change its key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use kaon_artifacts::proto::{CodeDigest, EnvVar, Environment, InputDigest, MemoKey, OutputDecl};
use kaon_artifacts::{
    ArtifactError, ArtifactKind, ArtifactStore, Digest, Existing, RestorePlan, hash_code,
};
use kaon_engine::event::Invocation;
use kaon_engine::{LaunchOrder, OutputArtifact};
use kaon_exec::outputs::artifact_id;
use kaon_store::{ArtifactIndex, MemoRow};

use crate::secrets::Sealer;
use prost::Message;
use serde_json::{Map, Value};

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
    async fn digest(&self, path: &Path) -> Result<Digest> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("code path {} cannot be read", path.display()))?;
        let (len, mtime, ino) = stamp(&meta);
        if meta.is_file()
            && let Ok(seen) = self.seen.lock()
            && let Some(&(l, m, i, d)) = seen.get(path)
            && (l, m, i) == (len, mtime, ino)
        {
            return Ok(d);
        }
        let Some((_, d)) = hash_code(path).await? else {
            bail!("code path {} does not exist", path.display());
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
) -> Result<(String, MemoKey)> {
    let spec = order.memo.as_ref().context("the step is not cached")?;
    let mut key = MemoKey {
        version: 2,
        kind: spec.kind.clone(),
        workdir: order.workdir.display().to_string(),
        cache_version: spec.cache_version.clone(),
        instance: order.key.clone(),
        config: if spec.config.is_null() {
            String::new()
        } else {
            spec.config.to_string()
        },
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
        Invocation::Spark { job } => {
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
            key.config = hidden
                .hide_json(serde_json::json!({ "job": job, "placement": facts }))
                .to_string();
        }
        Invocation::Unsupported { kind } => bail!("steps of kind `{kind}` are not cached"),
    }
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
    fn hide(&self, text: &str) -> String {
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

/// An earlier step run whose result can stand in for this one.
pub struct Hit {
    /// `<run>/<step key>` of that step run.
    pub from: String,
    /// Value outputs, with file and dir outputs at this order's paths.
    pub outputs: Map<String, Value>,
    /// Its artifacts, as new artifacts of this run.
    pub artifacts: Vec<OutputArtifact>,
    /// The memo entry (to forget it if restoring fails).
    pub row: MemoRow,
    /// What to put back where: (kind, digest, path).
    pub restore: Vec<(ArtifactKind, Digest, PathBuf)>,
}

/// The newest memo entry with `key` whose artifacts are all still in the
/// store, ready to link into `order`'s run.
pub async fn lookup<S: ArtifactIndex>(
    index: &S,
    blobs: &ArtifactStore,
    key: &str,
    order: &LaunchOrder,
) -> Result<Option<Hit>> {
    'entries: for row in index.memo(key).await? {
        let ids: Map<String, Value> = serde_json::from_str(&row.artifacts).unwrap_or_default();
        let mut outputs: Map<String, Value> =
            serde_json::from_str(&row.outputs).unwrap_or_default();
        let mut artifacts = Vec::new();
        let mut restore = Vec::new();
        for (name, id) in &ids {
            let Some(id) = id.as_str() else {
                continue 'entries;
            };
            let Some(a) = index.artifact(id).await? else {
                continue 'entries;
            };
            let Ok(digest) = a.digest.parse::<Digest>() else {
                continue 'entries;
            };
            let Ok(kind) = a.kind.parse::<ArtifactKind>() else {
                continue 'entries;
            };
            if !blobs.contains(&digest).await? {
                continue 'entries;
            }
            let declared = order
                .outputs
                .iter()
                .find(|o| &o.name == name)
                .and_then(|o| o.path.clone());
            if let Some(p) = &declared {
                restore.push((kind, digest, p.clone()));
                outputs.insert(name.clone(), Value::String(p.display().to_string()));
            }
            artifacts.push(OutputArtifact {
                name: name.clone(),
                id: artifact_id(&order.run, order.node.0, order.attempt, name),
                digest: a.digest.clone(),
                kind: a.kind.clone(),
                size: a.size.max(0) as u64,
                files: a.files.max(0) as u64,
                media_type: a.media_type.clone(),
                path: declared.map(|p| p.display().to_string()).or(a.path.clone()),
                memoized_from: Some(a.memoized_from.clone().unwrap_or(a.id.clone())),
            });
        }
        return Ok(Some(Hit {
            from: format!("{}/{}", row.run, row.step_key),
            outputs,
            artifacts,
            row,
            restore,
        }));
    }
    Ok(None)
}

/// Decides how a hit's files and folders go back at the paths the step
/// declares, writing nothing: each path must lie inside the step's working
/// directory with no link on the way; a folder is merged into (files of
/// the user's stay), and a file at one of the artifact's own paths that
/// differs refuses the reuse ([`kaon_artifacts::ArtifactError::is_in_the_way`]):
/// kaon never overwrites a file it cannot tell it wrote, and running the
/// step instead is the step's own doing.
pub async fn plan(
    blobs: &ArtifactStore,
    hit: &Hit,
    workdir: &Path,
) -> Result<Vec<RestorePlan>, ArtifactError> {
    let mut plans = Vec::with_capacity(hit.restore.len());
    for (kind, digest, path) in &hit.restore {
        kaon_artifacts::no_link_below(workdir, path)?;
        plans.push(
            blobs
                .plan_restore(*kind, digest, path, Existing::Refuse)
                .await?,
        );
    }
    Ok(plans)
}

/// Carries out the plans of [`plan`].
pub async fn restore(blobs: &ArtifactStore, plans: Vec<RestorePlan>) -> Result<()> {
    for p in plans {
        blobs
            .apply(p)
            .await
            .context("cannot restore a cached output from the artifact store")?;
    }
    Ok(())
}
