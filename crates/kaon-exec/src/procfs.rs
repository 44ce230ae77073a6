//! What Linux's /proc says about a process: enough to tell "the process
//! kaon launched" from "another process that got the same pid".

use std::path::Path;

/// Fields of `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Process group.
    pub pgrp: i32,
    /// Start time in clock ticks after boot.
    pub start: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... starttime(22).
    Some(Stat {
        state: f.first()?.chars().next()?,
        pgrp: f.get(2)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// True when `pid` is alive (not a zombie) and started at `start`.
pub fn alive(pid: i32, start: u64) -> bool {
    matches!(stat(pid), Some(s) if s.start == start && s.state != 'Z' && s.state != 'X')
}

/// The process-group leader whose environment holds `KAON_ATTEMPT_ID=id`.
pub fn find_attempt(id: &str) -> Option<(i32, Stat)> {
    let needle = format!("KAON_ATTEMPT_ID={id}\0");
    let entries = std::fs::read_dir(Path::new("/proc")).ok()?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if !env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            continue;
        }
        if let Some(s) = stat(pid)
            && s.pgrp == pid
            && s.state != 'Z'
        {
            return Some((pid, s));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stat() {
        let me = std::process::id() as i32;
        let s = stat(me).expect("own stat");
        assert!(alive(me, s.start));
        assert!(
            !alive(me, s.start + 1),
            "another start time is another process"
        );
        assert_eq!(stat(i32::MAX), None);
    }
}
