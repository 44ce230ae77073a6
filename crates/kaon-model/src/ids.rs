//! The ids that cross crate borders: runs, step instances, attempts and
//! artifacts. Each has one type and one place that makes new ones (an
//! artifact one for step runs and one for `kaon artifacts put`); ids read
//! back from the store or a command line go through `parse`, which checks
//! them. All serialise as their text, so stored rows are unchanged.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An id that is not one kaon makes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {what} id: {why}")]
pub struct IdError {
    /// What was given.
    pub text: String,
    /// Which kind of id was expected.
    pub what: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
}

fn check(text: &str, what: &'static str) -> Result<(), IdError> {
    let fail = |why| {
        Err(IdError {
            text: text.chars().take(80).collect(),
            what,
            why,
        })
    };
    if text.is_empty() {
        return fail("it is empty");
    }
    if text.len() > 512 {
        return fail("it is longer than 512 bytes");
    }
    if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        return fail("it holds a space, a slash or a control character");
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// An id read back (from the store, a command line, a request):
            /// checked, never made up.
            pub fn parse(text: &str) -> Result<$name, IdError> {
                check(text, $what)?;
                Ok($name(text.to_string()))
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

text_id!(
    /// A run: `20261123-071601-3f2a` for a root run (the time it was made,
    /// UTC, and four hex digits), `<parent>.<node>-<attempt>` for the child
    /// run of a sub-workflow step.
    RunId,
    "run"
);

text_id!(
    /// A step instance in a run: the step's name and the loop values and
    /// passes of the blocks around it, e.g. `train[pass=2, reg=US]`.
    NodeKey,
    "step instance"
);

text_id!(
    /// An artifact: `a` and 16 hex digits of a digest of the step run that
    /// made it and the output's name, so the same output of the same
    /// attempt always has the same id.
    ArtifactId,
    "artifact"
);

impl RunId {
    /// A new root run's id. The only place root run ids are made.
    pub fn new_root() -> RunId {
        use std::sync::atomic::{AtomicU32, Ordering};
        // The four hex digits count up from a random start in each
        // process: a server making hundreds of runs a second never makes
        // the same id twice (a random draw per id met another within a
        // second more often than not at 200 a second), and two processes
        // meet only by chance.
        static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
        let now = SystemTime::now();
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = || {
            let h = blake3::hash(format!("{nanos}:{}", std::process::id()).as_bytes());
            let b = h.as_bytes();
            u32::from_le_bytes([b[0], b[1], 0, 0])
        };
        let _ = NEXT.compare_exchange(u32::MAX, seed(), Ordering::Relaxed, Ordering::Relaxed);
        let salt = NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff;
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
        RunId(format!(
            "{}-{}-{salt:04x}",
            &digits[..8.min(digits.len())],
            &digits[8.min(digits.len())..],
        ))
    }

    /// The child run of sub-workflow step `node`, attempt `attempt`, of
    /// run `parent`. The only place child run ids are made.
    pub fn child(parent: &str, node: u32, attempt: u32) -> RunId {
        RunId(format!("{parent}.{node}-{attempt}"))
    }
}

impl NodeKey {
    /// The key of step `name` inside blocks with these loop frames
    /// (outermost first, e.g. `["pass=2", "reg=US"]`). The only place
    /// instance keys are made.
    pub fn instance(name: &str, frames: &[String]) -> NodeKey {
        if frames.is_empty() {
            NodeKey(name.to_string())
        } else {
            NodeKey(format!("{name}[{}]", frames.join(", ")))
        }
    }
}

impl ArtifactId {
    /// The id of output `name` of `attempt` of node `node` in `run`: the
    /// id of every artifact a step run makes.
    pub fn new(run: &str, node: u32, attempt: u32, name: &str) -> ArtifactId {
        Self::digest_of(&[run, &node.to_string(), &attempt.to_string(), name])
    }

    /// The id of an artifact `kaon artifacts put` stores outside any run:
    /// its content digest, its name, when (ms) and which process put it.
    pub fn standalone(digest: &str, name: &str, at_ms: i64, pid: u32) -> ArtifactId {
        Self::digest_of(&["put", digest, name, &at_ms.to_string(), &pid.to_string()])
    }

    fn digest_of(parts: &[&str]) -> ArtifactId {
        let mut h = blake3::Hasher::new();
        for part in parts {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        ArtifactId(format!("a{}", &h.finalize().to_hex()[..16]))
    }
}

/// One attempt of one step instance: `run/node/attempt`. It names the
/// attempt's process (`KAON_ATTEMPT_ID` in its environment) and its Spark
/// submission's tag, so a restarted kaon finds the attempt instead of
/// starting it twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AttemptId {
    run: String,
    node: u32,
    attempt: u32,
}

impl AttemptId {
    /// The attempt `attempt` (from 1) of node `node` of run `run`.
    pub fn new(run: &str, node: u32, attempt: u32) -> AttemptId {
        AttemptId {
            run: run.to_string(),
            node,
            attempt,
        }
    }

    /// The run.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The node.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The attempt number.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.run, self.node, self.attempt)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn root_ids_made_in_one_second_differ() {
        let ids: std::collections::HashSet<String> =
            (0..20_000).map(|_| RunId::new_root().to_string()).collect();
        // 20,000 ids span a second or two; drawn at random, four hex
        // digits would repeat thousands of times.
        assert_eq!(ids.len(), 20_000);
    }

    use super::*;

    #[test]
    fn ids_keep_their_text_forms() {
        let root = RunId::new_root();
        assert_eq!(root.as_str().len(), "20261123-071601-3f2a".len(), "{root}");
        assert_eq!(RunId::parse(root.as_str()), Ok(root.clone()));
        assert_eq!(RunId::child("r1", 4, 2).as_str(), "r1.4-2");
        assert_eq!(NodeKey::instance("train", &[]).as_str(), "train");
        assert_eq!(
            NodeKey::instance("train", &["pass=2".into(), "reg=US".into()]).as_str(),
            "train[pass=2, reg=US]"
        );
        assert_eq!(AttemptId::new("r1", 3, 1).to_string(), "r1/3/1");
        let a = ArtifactId::new("r1", 3, 1, "model");
        assert_eq!(a, ArtifactId::new("r1", 3, 1, "model"));
        assert_ne!(a, ArtifactId::new("r1", 3, 2, "model"));
        assert!(a.as_str().starts_with('a') && a.as_str().len() == 17);
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
    }

    #[test]
    fn parse_refuses_what_kaon_never_makes() {
        for bad in ["", "a b", "r/1", "x\n"] {
            assert!(RunId::parse(bad).is_err(), "{bad:?}");
        }
        let e = RunId::parse("a b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`a b` is not a run id: it holds a space, a slash or a control character"
        );
    }
}
