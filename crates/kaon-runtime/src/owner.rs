//! Who drives a run: this process's owner name, and whether another
//! owner is still alive; the clock; where a workflow's relative paths start.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kaon_engine::Millis;
use kaon_model::Validated;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How this process names itself as a run's owner: `pid:start@host`.
pub fn owner_id() -> String {
    let pid = std::process::id() as i32;
    let start = kaon_exec::process_start(pid).unwrap_or(0);
    format!("{pid}:{start}@{}", hostname())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// True when `owner` is a live process (on this host), or, on another
/// host, has stamped its heartbeat in the last 30 seconds.
pub fn owner_alive(owner: &str, heartbeat_ms: Option<i64>) -> bool {
    let parsed = owner.split_once('@').and_then(|(p, host)| {
        let (pid, start) = p.split_once(':')?;
        Some((pid.parse::<i32>().ok()?, start.parse::<u64>().ok()?, host))
    });
    match parsed {
        Some((pid, start, host)) if host == hostname() => kaon_exec::process_alive(pid, start),
        _ => heartbeat_ms.is_some_and(|h| (now_ms() as i64) - h < 30_000),
    }
}

/// A digest of the workflow file and its sub-workflows, to notice edits
/// between a run and its resumption.
pub fn workflow_digest(v: &Validated) -> String {
    let mut h = blake3::Hasher::new();
    fn add(h: &mut blake3::Hasher, v: &Validated) {
        let path =
            std::path::absolute(&v.workflow.path).unwrap_or_else(|_| v.workflow.path.clone());
        h.update(path.to_string_lossy().as_bytes());
        h.update(&std::fs::read(&v.workflow.path).unwrap_or_default());
        for c in v.children.values() {
            add(h, c);
        }
    }
    add(&mut h, v);
    h.finalize().to_hex()[..16].to_string()
}

/// The directory relative paths of a workflow start from (absolute).
pub fn base_dir(v: &Validated) -> PathBuf {
    let parent = v
        .workflow
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}
