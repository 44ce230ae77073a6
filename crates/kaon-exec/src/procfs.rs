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

/// True when process group `pgrp` has a member that is not a zombie.
///
/// `kill(-pgrp, 0)` also counts zombies, and one can linger for seconds:
/// spark-submit's launcher leaves a finished `bash` subshell behind as a
/// child of the JVM, and once the JVM exits the zombie waits for whatever
/// reaps orphans (a slow init in containers and microVMs).
pub fn group_alive(pgrp: i32) -> bool {
    let Ok(entries) = std::fs::read_dir(Path::new("/proc")) else {
        // Without /proc nothing can be told apart; assume it is alive.
        return true;
    };
    entries.flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(stat)
            .is_some_and(|s| s.pgrp == pgrp && s.state != 'Z' && s.state != 'X')
    })
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

    #[test]
    fn a_group_of_zombies_is_not_alive() {
        use std::os::unix::process::CommandExt;
        // The group's only member exits and stays a zombie until reaped.
        let mut child = std::process::Command::new("true")
            .process_group(0)
            .spawn()
            .expect("spawn true");
        let pgrp = child.id() as i32;
        while stat(pgrp).is_some_and(|s| s.state != 'Z') {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(stat(pgrp).is_some(), "the zombie is still there");
        assert!(!group_alive(pgrp));
        child.wait().expect("reap");

        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        assert!(group_alive(sleeper.id() as i32));
        sleeper.kill().expect("kill");
        sleeper.wait().expect("reap");
    }
}
