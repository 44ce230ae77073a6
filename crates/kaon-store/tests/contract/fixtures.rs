//! Rows the contract tests write: runs, nodes, scopes, artifacts, reads.

use kaon_store::row::{NodeKind, NodeState, RunStatus};
use kaon_store::{ArtifactRow, NodeRow, ReadRow, RunRow, ScopeRow};

pub fn run(id: &str, created: i64, parent: Option<(&str, u32)>) -> RunRow {
    RunRow {
        id: id.into(),
        workflow: "wf".into(),
        path: "wf.toml".into(),
        digest: "d".into(),
        params: "{}".into(),
        options: "{}".into(),
        parent: parent.map(|(p, n)| (p.to_string(), n)),
        status: RunStatus::Running,
        data: "{}".into(),
        created_ms: created,
        finished_ms: None,
        owner: None,
        heartbeat_ms: None,
    }
}

pub fn node(id: u32, state: NodeState) -> NodeRow {
    NodeRow {
        id,
        scope: 0,
        key: format!("s{id}[x=\"q\"]"),
        name: format!("s{id}"),
        kind: NodeKind::Command,
        state,
        attempt: 1,
        started_ms: Some(5),
        finished_ms: None,
        data: format!("{{\"state\":\"{state}\",\"quote\":\"a\\\"b\"}}"),
    }
}

pub fn scope(id: u32) -> ScopeRow {
    ScopeRow {
        id,
        tmpl: 0,
        parent: None,
        index: 0,
        vars: r#"[["reg","US"]]"#.into(),
    }
}

pub fn art(id: &str, run: &str, node: u32, name: &str, t: i64) -> ArtifactRow {
    ArtifactRow {
        id: id.into(),
        digest: format!("blake3:{:0>64}", id.trim_start_matches('a')),
        kind: "file".into(),
        size: 10,
        files: 1,
        media_type: "text/csv".into(),
        name: name.into(),
        run: Some(run.into()),
        node: Some(node),
        step: Some(format!("step{node}")),
        step_key: Some(format!("step{node}")),
        attempt: Some(1),
        path: None,
        created_ms: t,
        tags: "{}".into(),
        memoized_from: None,
    }
}

pub fn read(run: &str, node: u32, artifact: &str) -> ReadRow {
    ReadRow {
        run: run.into(),
        node,
        attempt: 1,
        artifact: artifact.into(),
    }
}
