//! What a step run launched: its command line or script, its settings and
//! the digests of what it read, decoded from the memo key record the
//! driver stored when it decided to run it ([`KeyRow`]; the `MemoKey`
//! record of `artifacts/kaon_artifacts.proto`).
//!
//! Only steps that have a memo key have such a record: a step with
//! `cache = false`, a kind kaon does not cache (wait, sub-workflow), or a
//! launch re-issued after a restart whose key could not be made records
//! none, and [`launch`] says so in its `note`.
//!
//! Nothing secret is in the record, so nothing secret comes out: a secret
//! parameter's value is stored as `«secret NAME kd:...»` wherever it was
//! substituted, and environment values only as keyed digests (`kd:...`);
//! both come out as stored, marked `hidden`.

use kaon_artifacts::proto::MemoKey;
use kaon_store::{ArtifactIndex, KeyRow, NodeRow, StateStore, StoreError};
use serde::Serialize;
use serde_json::Value;

/// How a secret parameter's value appears in stored key parts (see
/// [`crate::secrets::hide`]).
const SECRET: &str = "«secret ";

/// What one step run launched, as its memo key recorded it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Launch {
    /// The instance key, e.g. `train[reg=US]`.
    pub instance: String,
    /// The attempt the settings are of (the latest that recorded a key),
    /// or the attempts started when none did.
    pub attempt: u32,
    /// The memo key (`blake3:...`), when one was recorded.
    pub memo_key: Option<String>,
    /// Command line, script and settings, in the record's order.
    pub settings: Vec<LaunchSetting>,
    /// The artifacts it read.
    pub inputs: Vec<LaunchInput>,
    /// Why there are no settings, or what else to know about them.
    pub note: Option<String>,
}

/// One setting of a step run: `argv[0]`, `script`, `sql`, `app`,
/// `args[1]`, `conf[spark.sql.shuffle.partitions]`, `env[TOKEN]`,
/// `workdir`, `version`, ...
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaunchSetting {
    /// Its name.
    pub name: String,
    /// Its value (a string for a command line argument; a Spark setting's
    /// JSON value).
    pub value: Value,
    /// True when the value is not what the step saw: a keyed digest (an
    /// environment value) or one holding a hidden secret parameter.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

/// An artifact a step run read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LaunchInput {
    /// The output it read, `step.output`.
    #[serde(rename = "ref")]
    pub source: String,
    /// The artifact's content digest (`blake3:...`).
    pub digest: String,
}

/// Why a step run's launch cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No run with this id.
    #[error("no run `{run}`")]
    NoSuchRun {
        /// The run.
        run: String,
    },
    /// The run has no stored node of this name or instance key.
    #[error("run {run} has no step `{step}` that started")]
    NoSuchStep {
        /// The run.
        run: String,
        /// The step name or instance key asked for.
        step: String,
    },
    /// A step name that has several instances in the run.
    #[error("step `{step}` has {} instances in run {run} ({}); name one by its instance key", instances.len(), instances.join(", "))]
    Several {
        /// The run.
        run: String,
        /// The step name asked for.
        step: String,
        /// Its instances' keys.
        instances: Vec<String>,
    },
    /// A step run's stored key parts do not parse.
    #[error("the stored key parts of {instance} do not read")]
    Damaged {
        /// The step instance.
        instance: String,
        /// Why they do not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the step instance `step` of `run` launched (its latest attempt
/// that recorded a key). `step` is an instance key, or a step name with
/// one instance in the run. Reads only.
pub async fn launch<S: StateStore + ArtifactIndex + ?Sized>(
    store: &S,
    run: &str,
    step: &str,
) -> Result<Launch, LaunchError> {
    if store.run(run).await?.is_none() {
        return Err(LaunchError::NoSuchRun { run: run.into() });
    }
    let mut nodes = store.nodes_named(run, step).await?;
    // An instance key names one node; a step name may name many.
    if let Some(i) = nodes.iter().position(|n| n.key == step) {
        nodes = vec![nodes.swap_remove(i)];
    }
    let node = match nodes.len() {
        0 => {
            return Err(LaunchError::NoSuchStep {
                run: run.into(),
                step: step.into(),
            });
        }
        1 => nodes.remove(0),
        _ => {
            return Err(LaunchError::Several {
                run: run.into(),
                step: step.into(),
                instances: nodes.into_iter().map(|n| n.key).collect(),
            });
        }
    };
    match store.key_of(run, node.id).await? {
        Some(k) => of_key(&node, &k),
        None => Ok(Launch {
            attempt: node.attempt,
            memo_key: None,
            settings: Vec::new(),
            inputs: Vec::new(),
            note: Some(no_key(&node)),
            instance: node.key,
        }),
    }
}

/// Why a node has no key record.
fn no_key(node: &NodeRow) -> String {
    if !node.kind.is_executed() {
        format!("a {} step runs no command", node.kind)
    } else if node.attempt == 0 {
        "this step has not launched yet".into()
    } else {
        "this step records no key: cache is off (`cache = false`) or it never launched, so its command and settings were not recorded".into()
    }
}

fn of_key(node: &NodeRow, k: &KeyRow) -> Result<Launch, LaunchError> {
    let parts =
        serde_json::from_str::<MemoKey>(&k.parts).map_err(|source| LaunchError::Damaged {
            instance: node.key.clone(),
            source,
        })?;
    let mut note = None;
    if node.kind.is_executed() {
        if k.outcome == "memoized" {
            note = Some(
                "memoized: an earlier step run with this key had the result, so this did not run"
                    .to_string(),
            );
        } else if k.attempt < node.attempt {
            note = Some(format!(
                "recorded for attempt {}; later attempts recorded no key",
                k.attempt
            ));
        }
    }
    Ok(Launch {
        instance: node.key.clone(),
        attempt: k.attempt,
        memo_key: Some(k.key.clone()),
        settings: settings(&parts),
        inputs: parts
            .inputs
            .iter()
            .map(|i| LaunchInput {
                source: i.source.clone(),
                digest: i.digest.clone(),
            })
            .collect(),
        note,
    })
}

/// The settings a key record holds, named as `kaon cache explain` names
/// them: the command line (`argv[i]`) or `script`; the step kind's
/// settings field by field (`sql`, `app`, `args[i]`, `conf[...]`,
/// `placement.*`, `config.*`); `env[NAME]` (a keyed digest, never the
/// value); `workdir`; the `program` run and the digests of `code[PATH]`;
/// declared `outputs.NAME`; the step's cache `version`; the
/// `spark_version` and `image` it ran on.
pub fn settings(p: &MemoKey) -> Vec<LaunchSetting> {
    let mut out = Vec::new();
    let mut text = |name: String, v: &str| {
        out.push(LaunchSetting {
            name,
            value: Value::String(v.to_string()),
            hidden: v.contains(SECRET),
        });
    };
    for (i, a) in p.argv.iter().enumerate() {
        text(format!("argv[{i}]"), a);
    }
    if !p.script.is_empty() {
        text("script".into(), &p.script);
    }
    for s in &p.settings {
        out.push(LaunchSetting {
            name: s.name.clone(),
            value: serde_json::from_str(&s.value)
                .unwrap_or_else(|_| Value::String(s.value.clone())),
            hidden: s.value.contains(SECRET),
        });
    }
    if !p.config.is_empty() {
        out.push(LaunchSetting {
            name: "config".into(),
            value: serde_json::from_str(&p.config)
                .unwrap_or_else(|_| Value::String(p.config.clone())),
            hidden: p.config.contains(SECRET),
        });
    }
    for e in &p.env {
        out.push(LaunchSetting {
            name: format!("env[{}]", e.name),
            value: Value::String(e.value.clone()),
            hidden: true,
        });
    }
    let mut text = |name: String, v: &str| {
        if !v.is_empty() {
            out.push(LaunchSetting {
                name,
                value: Value::String(v.to_string()),
                hidden: v.contains(SECRET),
            });
        }
    };
    text("workdir".into(), &p.workdir);
    if let Some(prog) = p.environment.as_ref().and_then(|e| e.program.as_ref()) {
        text("program".into(), &prog.path);
    }
    for c in &p.code {
        text(format!("code[{}]", c.path), &c.digest);
    }
    for o in &p.outputs {
        let v = if o.path.is_empty() {
            o.r#type.clone()
        } else {
            format!("{} {}", o.r#type, o.path)
        };
        text(format!("outputs.{}", o.name), &v);
    }
    text("version".into(), &p.cache_version);
    if let Some(env) = &p.environment {
        text("spark_version".into(), &env.spark_version);
        text("image".into(), &env.image);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use kaon_artifacts::proto::{CodeDigest, EnvVar, Environment, InputDigest, Setting};
    use kaon_store::row::{NodeKind, NodeState, RunStatus};
    use kaon_store::{Batch, MemoryStore, RunRow};
    use serde_json::json;

    use super::*;

    fn run_row(id: &str) -> RunRow {
        RunRow {
            id: id.into(),
            workflow: "wf".into(),
            path: "wf.toml".into(),
            digest: "d".into(),
            params: "{}".into(),
            options: "{}".into(),
            parent: None,
            status: RunStatus::Succeeded,
            data: "{}".into(),
            created_ms: 1,
            finished_ms: None,
            owner: None,
            heartbeat_ms: None,
        }
    }

    fn node(id: u32, key: &str, kind: NodeKind, attempt: u32) -> NodeRow {
        NodeRow {
            id,
            scope: 0,
            key: key.into(),
            name: key.split('[').next().unwrap().into(),
            kind,
            state: NodeState::Succeeded,
            attempt,
            started_ms: Some(1),
            finished_ms: Some(2),
            data: "{}".into(),
        }
    }

    fn key(node: u32, key: &str, attempt: u32, parts: &MemoKey, outcome: &str) -> KeyRow {
        KeyRow {
            run: "r1".into(),
            node,
            attempt,
            step: key.split('[').next().unwrap().into(),
            step_key: key.into(),
            key: "blake3:k".into(),
            parts: serde_json::to_string(parts).unwrap(),
            outcome: outcome.into(),
            created_ms: 1,
        }
    }

    fn command_parts() -> MemoKey {
        MemoKey {
            version: 3,
            kind: "command".into(),
            argv: vec![
                "train".into(),
                "--region=US".into(),
                "--token=«secret token kd:0011»".into(),
            ],
            env: vec![EnvVar {
                name: "TOKEN".into(),
                value: "kd:2233".into(),
            }],
            workdir: "/w".into(),
            environment: Some(Environment {
                program: Some(CodeDigest {
                    path: "/usr/bin/train".into(),
                    digest: "blake3:pp".into(),
                }),
                ..Default::default()
            }),
            inputs: vec![InputDigest {
                source: "prep.data".into(),
                digest: "blake3:dd".into(),
            }],
            cache_version: "v2".into(),
            instance: "train[reg=US]".into(),
            ..Default::default()
        }
    }

    async fn store(nodes: Vec<NodeRow>, keys: Vec<KeyRow>) -> MemoryStore {
        let s = MemoryStore::new();
        s.create_run(&run_row("r1")).await.unwrap();
        s.commit(&[Batch {
            run: "r1".into(),
            nodes,
            keys,
            ..Default::default()
        }])
        .await
        .unwrap();
        s
    }

    #[tokio::test]
    async fn a_command_steps_launch_is_decoded_with_secrets_kept_hidden() {
        let p = command_parts();
        let s = store(
            vec![
                node(1, "train[reg=US]", NodeKind::Command, 2),
                node(2, "train[reg=CA]", NodeKind::Command, 1),
            ],
            vec![
                key(1, "train[reg=US]", 1, &MemoKey::default(), "ran"),
                key(1, "train[reg=US]", 2, &p, "ran"),
            ],
        )
        .await;
        let l = launch(&s, "r1", "train[reg=US]").await.unwrap();
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            json!({
                "instance": "train[reg=US]",
                "attempt": 2,
                "memo_key": "blake3:k",
                "settings": [
                    {"name": "argv[0]", "value": "train"},
                    {"name": "argv[1]", "value": "--region=US"},
                    {"name": "argv[2]", "value": "--token=«secret token kd:0011»", "hidden": true},
                    {"name": "env[TOKEN]", "value": "kd:2233", "hidden": true},
                    {"name": "workdir", "value": "/w"},
                    {"name": "program", "value": "/usr/bin/train"},
                    {"name": "version", "value": "v2"},
                ],
                "inputs": [{"ref": "prep.data", "digest": "blake3:dd"}],
                "note": null,
            })
        );
        // A step name with two instances is ambiguous.
        let e = launch(&s, "r1", "train").await.unwrap_err();
        assert!(matches!(e, LaunchError::Several { .. }), "{e}");
        assert!(e.to_string().contains("train[reg=CA]"), "{e}");
        // One without a key record says why.
        let l = launch(&s, "r1", "train[reg=CA]").await.unwrap();
        assert!(l.settings.is_empty() && l.memo_key.is_none());
        assert_eq!(l.attempt, 1);
        assert!(l.note.unwrap().contains("cache is off"));
        assert!(matches!(
            launch(&s, "r1", "nope").await,
            Err(LaunchError::NoSuchStep { .. })
        ));
        assert!(matches!(
            launch(&s, "r9", "train").await,
            Err(LaunchError::NoSuchRun { .. })
        ));
    }

    #[tokio::test]
    async fn spark_settings_come_field_by_field_and_a_memoized_run_says_so() {
        let p = MemoKey {
            version: 3,
            kind: "spark".into(),
            settings: vec![
                Setting {
                    name: "app".into(),
                    value: "\"/w/job.py\"".into(),
                },
                Setting {
                    name: "args[0]".into(),
                    value: "\"--day=2026-01-02\"".into(),
                },
                Setting {
                    name: "conf[spark.sql.shuffle.partitions]".into(),
                    value: "\"64\"".into(),
                },
                Setting {
                    name: "executors".into(),
                    value: "4".into(),
                },
            ],
            code: vec![CodeDigest {
                path: "job.py".into(),
                digest: "blake3:cc".into(),
            }],
            environment: Some(Environment {
                spark_version: "3.5.1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = store(
            vec![node(0, "etl", NodeKind::Spark, 1)],
            vec![key(0, "etl", 1, &p, "memoized")],
        )
        .await;
        let l = launch(&s, "r1", "etl").await.unwrap();
        let names: Vec<(&str, &Value)> = l
            .settings
            .iter()
            .map(|s| (s.name.as_str(), &s.value))
            .collect();
        assert_eq!(
            names,
            [
                ("app", &json!("/w/job.py")),
                ("args[0]", &json!("--day=2026-01-02")),
                ("conf[spark.sql.shuffle.partitions]", &json!("64")),
                ("executors", &json!(4)),
                ("code[job.py]", &json!("blake3:cc")),
                ("spark_version", &json!("3.5.1")),
            ]
        );
        assert!(l.note.unwrap().starts_with("memoized"));
    }

    #[tokio::test]
    async fn a_block_or_wait_step_runs_no_command() {
        let s = store(vec![node(0, "gate", NodeKind::Wait, 1)], vec![]).await;
        let l = launch(&s, "r1", "gate").await.unwrap();
        assert_eq!(l.note.as_deref(), Some("a wait step runs no command"));
    }
}
