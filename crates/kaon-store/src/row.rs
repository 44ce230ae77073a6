//! The typed columns of stored rows: a run's [`RunStatus`], a node's
//! [`NodeState`] and [`NodeKind`].
//!
//! Each is stored, serialised and shown as the same lowercase text the
//! engine names it by (`running`, `memoized`, `for-each`, ...), so
//! databases written before these types existed read back unchanged and
//! `kaon runs show --format json` prints what it always printed.
//!
//! They are the store's own types, not the engine's (`kaon_engine::RunStatus`,
//! `StepState`, `TKind`): the store keeps rows and does not depend on the
//! engine; the runtime converts between the two. A stored text this build
//! does not know (a database written by a newer kaon, or edited by hand) is
//! no panic: parsing it is an [`UnknownValue`], and a backend reading such
//! a row fails with [`StoreError::Damaged`](crate::StoreError::Damaged).

use std::fmt;
use std::str::FromStr;

/// A stored text that names no value of the column's type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {column} kaon knows")]
pub struct UnknownValue {
    /// The column's type, e.g. `node state`.
    pub column: &'static str,
    /// The text found.
    pub value: String,
}

/// Defines a fieldless enum stored as text: its variants with their text,
/// `ALL`, `as_str`, `FromStr`, `Display` and serde as that text. One table
/// per type, so the text cannot drift between writing and reading.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($column:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text it is stored and shown as.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<$name, UnknownValue> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownValue {
                        column: $column,
                        value: s.to_string(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, so that widths and alignment in format strings apply.
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum! {
    /// A run's status as stored.
    ///
    /// ```text
    /// Running ──▶ Succeeded | Failed | Cancelled
    /// ```
    ///
    /// `kaon runs` also shows `interrupted`: a `Running` run that no live
    /// process drives. That is not stored; it is read from the owner.
    RunStatus ("run status") {
        /// Steps are running or will run.
        Running = "running",
        /// Every step succeeded (or was skipped by a false condition).
        Succeeded = "succeeded",
        /// A step failed.
        Failed = "failed",
        /// Cancelled.
        Cancelled = "cancelled",
    }
}

impl RunStatus {
    /// True once the run has ended: it will not change again.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

text_enum! {
    /// A node's state as stored: the name of the engine's state, whose
    /// facts (handle, failure, reason) stay in the row's JSON data.
    ///
    /// ```text
    ///  Pending ──▶ Waiting ──▶ Ready ──▶ Starting ──▶ Running ──▶ Succeeded
    ///     │                      ▲                      │
    ///     │                      └──── Retrying ◀───────┤
    ///     │                                             ├──▶ Failed
    ///     └──▶ Skipped            Memoized (reused)     └──▶ Cancelled
    /// ```
    NodeState ("node state") {
        /// Nothing upstream has finished yet.
        Pending = "pending",
        /// Some upstream branches finished, others have not.
        Waiting = "waiting",
        /// Everything upstream succeeded; waiting for resources.
        Ready = "ready",
        /// Launch ordered and committed; no handle yet.
        Starting = "starting",
        /// Executing (blocks and wait steps: under way).
        Running = "running",
        /// Failed; another attempt will start.
        Retrying = "retrying",
        /// Done, with its outputs.
        Succeeded = "succeeded",
        /// Done without running: an earlier step run's result was reused.
        Memoized = "memoized",
        /// Failed for good.
        Failed = "failed",
        /// Never ran.
        Skipped = "skipped",
        /// Stopped by a cancel.
        Cancelled = "cancelled",
    }
}

impl NodeState {
    /// True when the node will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            NodeState::Succeeded
                | NodeState::Memoized
                | NodeState::Failed
                | NodeState::Skipped
                | NodeState::Cancelled
        )
    }

    /// True while an attempt is under way (launching or running): what
    /// `kaon kill` can stop.
    pub fn is_active(self) -> bool {
        matches!(self, NodeState::Starting | NodeState::Running)
    }
}

text_enum! {
    /// What a node is: a step of some kind, a block, or a marker.
    NodeKind ("node kind") {
        /// `start` / `end`: done as soon as reached.
        Marker = "marker",
        /// A step of `kind = "noop"`: done as soon as reached.
        Noop = "noop",
        /// A child process.
        Command = "command",
        /// A Spark application.
        Spark = "spark",
        /// Parks until a signal arrives.
        Wait = "wait",
        /// A child run of another workflow.
        SubWorkflow = "subworkflow",
        /// A for-each block.
        ForEach = "for-each",
        /// A repeat-until block.
        Repeat = "repeat",
        /// A conditional block.
        When = "when",
    }
}

impl NodeKind {
    /// True for the kinds an executor runs (command, spark): the nodes that
    /// have attempts, processes and logs.
    pub fn is_executed(self) -> bool {
        matches!(self, NodeKind::Command | NodeKind::Spark)
    }

    /// True for for-each, repeat and when blocks.
    pub fn is_block(self) -> bool {
        matches!(self, NodeKind::ForEach | NodeKind::Repeat | NodeKind::When)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that cannot proceed should panic right there
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + fmt::Debug + PartialEq + FromStr<Err = UnknownValue> + fmt::Display,
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        for v in all {
            let text = v.to_string();
            assert_eq!(text.parse::<T>(), Ok(*v));
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), *v);
        }
    }

    #[test]
    fn text_round_trips() {
        round_trips(RunStatus::ALL);
        round_trips(NodeState::ALL);
        round_trips(NodeKind::ALL);
    }

    #[test]
    fn stored_text_is_the_engines() {
        let kinds: Vec<&str> = NodeKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "marker",
                "noop",
                "command",
                "spark",
                "wait",
                "subworkflow",
                "for-each",
                "repeat",
                "when"
            ]
        );
        assert_eq!(RunStatus::Cancelled.as_str(), "cancelled");
        assert_eq!(NodeState::Memoized.as_str(), "memoized");
        assert_eq!(format!("[{:<9}]", NodeState::Ready), "[ready    ]");
    }

    #[test]
    fn unknown_text_is_an_error() {
        let e = "paused".parse::<NodeState>().unwrap_err();
        assert_eq!(
            e,
            UnknownValue {
                column: "node state",
                value: "paused".into()
            }
        );
        assert_eq!(e.to_string(), "`paused` is not a node state kaon knows");
        assert!("Running".parse::<RunStatus>().is_err());
        assert!(serde_json::from_str::<NodeKind>("\"loop\"").is_err());
    }
}
