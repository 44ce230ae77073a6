//! Who may call the API.
//!
//! People and programs carry API tokens, `kaon_<id>_<secret>`, each with
//! a role: `read` sees everything, `operate` also starts, cancels and
//! signals runs and pauses schedules, `admin` also deploys workflows and
//! manages tokens. The store keeps a token's id, role and a BLAKE3 digest
//! of its secret, never the secret: a stolen database gives no token, and
//! the token is shown once, when made. Secrets are 256 random bits, so a
//! fast digest is enough (a slow password hash guards guessable secrets).
//!
//! A run's steps and its Spark listener carry the run's own token instead
//! (see [`run_token`]): it may post events and outputs of that run only.

use axum::http::HeaderMap;
use kaon_store::{ServiceStore, TokenRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// What a token may do; each role may do what the ones before it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read runs, logs, artifacts, schedules.
    Read,
    /// Also submit, cancel, signal and retry runs, pause and trigger
    /// schedules.
    Operate,
    /// Also deploy workflows and make and revoke tokens.
    Admin,
}

impl Role {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }

    /// Reads the stored text.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "operate" => Some(Role::Operate),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token just made: its row (to store) and the token itself (to show
/// once).
pub struct NewToken {
    /// What the store keeps.
    pub row: TokenRow,
    /// The token; nowhere else after it is shown.
    pub token: String,
}

/// Makes a token for `name` with `role`.
pub fn make_token(name: &str, role: Role, now_ms: i64) -> Result<NewToken, ApiError> {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)
        .and_then(|()| getrandom::fill(&mut secret))
        .map_err(|e| ApiError::internal(format!("no randomness for a token: {e}")))?;
    let id = hex(&id);
    let secret = hex(&secret);
    Ok(NewToken {
        row: TokenRow {
            id: id.clone(),
            name: name.to_string(),
            role: role.as_str().to_string(),
            hash: digest(&secret),
            created_ms: now_ms,
            revoked_ms: None,
        },
        token: format!("kaon_{id}_{secret}"),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn digest(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// Constant-time, so a token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's id.
    pub token: String,
    /// Its role.
    pub role: Role,
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Checks a request's token and that its role allows `need`: 401 when
/// there is no token or it is not one this server knows (or it was
/// revoked), 403 when it is known but its role does not allow the call.
pub async fn authorize<S: ServiceStore>(
    store: &S,
    headers: &HeaderMap,
    need: Role,
) -> Result<Caller, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::unauthorized(
            "this call needs a token: `Authorization: Bearer kaon_...` (make one with `kaon tokens create`)",
        ));
    };
    let refused =
        || ApiError::unauthorized("the token is not valid (unknown, malformed or revoked)");
    let Some((id, secret)) = token.strip_prefix("kaon_").and_then(|t| t.split_once('_')) else {
        if token.contains('.') {
            return Err(ApiError::forbidden(
                "a run's own token may only post that run's events and outputs",
            ));
        }
        return Err(refused());
    };
    let Some(row) = store.token(id).await? else {
        return Err(refused());
    };
    if row.revoked_ms.is_some() || !same(row.hash.as_bytes(), digest(secret).as_bytes()) {
        return Err(refused());
    }
    let Some(role) = Role::parse(&row.role) else {
        return Err(refused());
    };
    if role < need {
        return Err(ApiError::forbidden(format!(
            "token {id} has the role `{role}`; this call needs `{need}`"
        )));
    }
    Ok(Caller {
        token: row.id,
        role,
    })
}

/// The token of `run`'s steps and Spark listener: `<run>.<mac>`, a keyed
/// BLAKE3 hash of the run id under the installation's secret. It needs
/// no storage (every server sharing the secret can check it) and speaks
/// for one run only.
pub fn run_token(secret: &[u8; 32], run: &str) -> String {
    format!("{run}.{}", kaon_spark::callback::token(secret, run))
}

/// Checks a run token against the run a request writes to: `Ok` when it
/// is that run's, 403 when it is a valid token of another run, 401
/// otherwise. A bare mac (the form kaon gave listeners before the run
/// was part of the token) is accepted for its own run.
pub fn check_run_token(secret: &[u8; 32], headers: &HeaderMap, run: &str) -> Result<(), ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::unauthorized("this call needs the run's token"));
    };
    let want = kaon_spark::callback::token(secret, run);
    match token.rsplit_once('.') {
        Some((of, mac)) => {
            let valid = same(
                mac.as_bytes(),
                kaon_spark::callback::token(secret, of).as_bytes(),
            );
            if !valid {
                Err(ApiError::unauthorized("the run token is not valid"))
            } else if of != run {
                Err(ApiError::forbidden(format!(
                    "the token is run {of}'s; it may not write to run {run}"
                )))
            } else {
                Ok(())
            }
        }
        None if same(token.as_bytes(), want.as_bytes()) => Ok(()),
        None => Err(ApiError::unauthorized("the run token is not valid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Operate && Role::Operate > Role::Read);
        for r in [Role::Read, Role::Operate, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn a_token_is_stored_only_as_its_digest() {
        let t = make_token("ci", Role::Operate, 1).expect("token");
        let secret = t.token.rsplit('_').next().expect("secret");
        assert!(!t.row.hash.contains(secret));
        assert_eq!(t.row.hash, digest(secret));
        assert!(t.token.starts_with(&format!("kaon_{}_", t.row.id)));
    }

    #[test]
    fn a_run_token_speaks_for_its_run_only() {
        let secret = [7u8; 32];
        let mut h = HeaderMap::new();
        let t = run_token(&secret, "r1.3-1");
        h.insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
        assert!(check_run_token(&secret, &h, "r1.3-1").is_ok());
        let other = check_run_token(&secret, &h, "r2").expect_err("other run");
        assert_eq!(other.status, axum::http::StatusCode::FORBIDDEN);
        let forged = format!("Bearer r2.{}", kaon_spark::callback::token(&[8; 32], "r2"));
        h.insert("authorization", forged.parse().expect("header"));
        let e = check_run_token(&secret, &h, "r2").expect_err("forged");
        assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
    }
}
