//! Secret values: parameters marked `secret = true` and the values of step
//! environments. kaon keeps them in memory while it runs steps and stores
//! or prints only a keyed digest of them: the database, memo keys and
//! `kaon cache explain` can tell that a value changed, never what it is.
//!
//! The key is the data directory's 32-byte secret (`<data>/secret`, 0600),
//! so a digest cannot be checked against guessed values by someone who
//! reads only the database.

use std::path::Path;

use indexmap::IndexMap;
use kaon_model::spec::{Param, ParamSource};
use serde_json::{Map, Value};

use crate::error::SecretError;

/// What a stored secret parameter looks like: `{"kaon:secret": "<digest>"}`
/// (a key no workflow value is likely to have).
const SEALED: &str = "kaon:secret";

/// Digests secret values under the data directory's key.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer with a given key: the data directory's secret (see
    /// `kaon_spark::callback::load_secret`), or any key in tests.
    pub fn with_key(key: [u8; 32]) -> Sealer {
        Sealer { key }
    }

    /// The keyed digest of a value, as stored: `kd:<32 hex digits>`.
    pub fn digest(&self, value: &str) -> String {
        let h = blake3::keyed_hash(&self.key, value.as_bytes());
        format!("kd:{}", &h.to_hex()[..32])
    }

    /// Parameters as they are stored: each secret one, and each one whose
    /// value holds one of `inherited` (a parent run's secrets handed to a
    /// sub-workflow), replaced by `{"kaon:secret": "<digest>"}`.
    pub fn seal_params(
        &self,
        declared: &IndexMap<String, Param>,
        params: &Map<String, Value>,
        inherited: &[(String, String)],
    ) -> Map<String, Value> {
        params
            .iter()
            .map(|(k, v)| {
                let holds_inherited = || {
                    let text = kaon_engine::eval::to_text(v);
                    inherited.iter().any(|(_, s)| text.contains(s.as_str()))
                };
                let v = if declared.get(k).is_some_and(|p| p.secret) || holds_inherited() {
                    serde_json::json!({ SEALED: self.digest(&kaon_engine::eval::to_text(v)) })
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    }

    /// The parameters of a stored run with its secrets filled in from
    /// `current` (values taken again from their source): each must have
    /// the digest that was stored, or the run would go on with another
    /// secret than it started with.
    pub fn unseal_params(
        &self,
        declared: &IndexMap<String, Param>,
        stored: &Map<String, Value>,
        current: &Map<String, Value>,
    ) -> Result<Map<String, Value>, SecretError> {
        let mut out = Map::new();
        for (k, v) in stored {
            let Some(sealed) = v.get(SEALED).and_then(Value::as_str) else {
                out.insert(k.clone(), v.clone());
                continue;
            };
            let Some(now) = current.get(k) else {
                return Err(SecretError::Missing {
                    name: k.clone(),
                    how: how_to_give(k, declared.get(k)),
                });
            };
            // Given as text again (`-p`, a variable, a file): converted to
            // the declared type, as when the run started.
            let now = match declared.get(k) {
                Some(p) => kaon_engine::eval::coerce(&p.ty, now.clone()).map_err(|_| {
                    SecretError::WrongType {
                        name: k.clone(),
                        ty: format!("{:#}", p.ty),
                    }
                })?,
                None => now.clone(),
            };
            if self.digest(&kaon_engine::eval::to_text(&now)) != sealed {
                return Err(SecretError::Differs { name: k.clone() });
            }
            out.insert(k.clone(), now);
        }
        Ok(out)
    }
}

/// How a user gives parameter `name` a value.
pub fn how_to_give(name: &str, p: Option<&Param>) -> String {
    match p.and_then(|p| p.source.as_ref()) {
        Some(ParamSource::Env(var)) => format!("set ${var} or pass `-p {name}=VALUE`"),
        Some(ParamSource::File(f)) => format!("write it to {f} or pass `-p {name}=VALUE`"),
        None => format!("pass `-p {name}=VALUE`"),
    }
}

/// Fills in parameters that `-p` did not give from their `from_env` or
/// `from_file` source. `base` is the workflow file's folder. A missing
/// variable is left out (a default or the "required" error follows); a
/// file that is named but cannot be read is an error. With `only_secrets`
/// (carrying a run on: the store keeps every other value) the rest are
/// left alone.
pub fn take_from_sources(
    declared: &IndexMap<String, Param>,
    given: &mut Map<String, Value>,
    base: &Path,
    only_secrets: bool,
) -> Result<(), SecretError> {
    for (name, p) in declared {
        if given.contains_key(name) || (only_secrets && !p.secret) {
            continue;
        }
        match &p.source {
            Some(ParamSource::Env(var)) => {
                if let Some(v) = std::env::var_os(var) {
                    let v = v.into_string().map_err(|_| SecretError::NotUtf8 {
                        name: name.clone(),
                        var: var.clone(),
                    })?;
                    given.insert(name.clone(), Value::String(v));
                }
            }
            Some(ParamSource::File(f)) => {
                let path = match f.strip_prefix("~/") {
                    Some(rest) => match std::env::var_os("HOME") {
                        Some(home) => Path::new(&home).join(rest),
                        None => {
                            return Err(SecretError::NoHome {
                                name: name.clone(),
                                file: f.clone(),
                            });
                        }
                    },
                    None => base.join(f),
                };
                let text = std::fs::read_to_string(&path).map_err(|source| SecretError::File {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?;
                let text = text
                    .strip_suffix("\r\n")
                    .or_else(|| text.strip_suffix('\n'))
                    .unwrap_or(&text);
                given.insert(name.clone(), Value::String(text.to_string()));
            }
            None => {}
        }
    }
    Ok(())
}

/// The text of every secret parameter's value, longest first (a secret
/// that contains another is hidden whole).
pub fn secret_values(
    declared: &IndexMap<String, Param>,
    params: &Map<String, Value>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = declared
        .iter()
        .filter(|(_, p)| p.secret)
        .filter_map(|(k, _)| {
            let text = kaon_engine::eval::to_text(params.get(k)?);
            (!text.is_empty()).then(|| (k.clone(), text))
        })
        .collect();
    out.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    out
}

/// Hides secret values inside `text` (a command line argument, a script,
/// Spark settings): each becomes `«secret NAME kd:...»`, so what is stored
/// still changes when the secret does.
pub fn hide(sealer: &Sealer, secrets: &[(String, String)], text: &str) -> String {
    let mut out = text.to_string();
    for (name, value) in secrets {
        if out.contains(value.as_str()) {
            out = out.replace(
                value.as_str(),
                &format!("«secret {name} {}»", sealer.digest(value)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_keyed_and_hide_values() {
        let a = Sealer::with_key([1; 32]);
        let b = Sealer::with_key([2; 32]);
        assert_ne!(a.digest("hunter2"), b.digest("hunter2"));
        assert_eq!(a.digest("hunter2"), a.digest("hunter2"));
        assert!(!a.digest("hunter2").contains("hunter2"));
        let secrets = vec![("pw".to_string(), "hunter2".to_string())];
        let shown = hide(&a, &secrets, "--password=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.starts_with("--password=«secret pw kd:"), "{shown}");
    }
}
