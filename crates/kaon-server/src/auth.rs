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
    /// The token's id; `None` for the anonymous local user (see
    /// [`authorize`]).
    pub token: Option<String>,
    /// The token's name.
    pub name: Option<String>,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// True for the anonymous local user of `kaon ui`.
    pub fn is_local(&self) -> bool {
        self.token.is_none()
    }

    /// `token ID` or `the local user`, for messages.
    pub fn describe(&self) -> String {
        match &self.token {
            Some(id) => format!("token {id}"),
            None => "the local user".to_string(),
        }
    }
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
///
/// `anonymous`: the role of a request without an `Authorization` header
/// (`kaon ui`'s single local user); `None` on a server for a team. A
/// request with a token is checked as ever. See [`anonymous`] for what an
/// anonymous request must also show.
pub async fn authorize<S: ServiceStore>(
    store: &S,
    headers: &HeaderMap,
    need: Role,
    anonymous: Option<Role>,
) -> Result<Caller, ApiError> {
    if let Some(role) = anonymous
        && !headers.contains_key(axum::http::header::AUTHORIZATION)
    {
        return self::anonymous(headers, role, need);
    }
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
        token: Some(row.id),
        name: Some(row.name),
        role,
    })
}

/// The anonymous local user, with `role`, if the request is one it may
/// make. A browser on this machine is also where other web sites run, so
/// a request without a token must show it comes from a page of this
/// server: its `Host` is a loopback name (a site that points its own
/// domain at 127.0.0.1, DNS rebinding, sends its domain), and an `Origin`,
/// when there is one, is that same host (a form another site posts here
/// carries the other site's origin; the browser does not let the page set
/// it), nor does `Sec-Fetch-Site` say another site sent it (an <img> or
/// <script> carries no `Origin`). 403 for a cross-site request, or when
/// `role` does not allow
/// `need`.
pub fn anonymous(headers: &HeaderMap, role: Role, need: Role) -> Result<Caller, ApiError> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header(axum::http::header::HOST).unwrap_or("");
    if !is_loopback_host(host) {
        return Err(ApiError::unauthorized(format!(
            "this call needs a token: the local user without one is only served at a loopback address, not at `{host}`"
        )));
    }
    if let Some(origin) = header(axum::http::header::ORIGIN) {
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(ApiError::forbidden(format!(
                "a request from the page at {origin} may not act as the local user of {host}"
            )));
        }
    }
    // Browsers send no `Origin` with an <img>, a classic <script> or a
    // link followed from another site, but every current one says where a
    // request comes from in `Sec-Fetch-Site`: only this server's own pages
    // (`same-origin`) and an address typed or bookmarked (`none`) act as
    // the local user.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        return Err(ApiError::forbidden(format!(
            "a request from another site ({site}) may not act as the local user of {host}"
        )));
    }
    if role < need {
        return Err(ApiError::forbidden(format!(
            "the local user may only `{role}`; this call needs `{need}` (use a token of that role)"
        )));
    }
    Ok(Caller {
        token: None,
        name: None,
        role,
    })
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) if rest.is_empty() || rest.starts_with(':') => addr,
            _ => return false,
        },
        None => host.split_once(':').map_or(host, |(h, _)| h),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header"));
        }
        h
    }

    async fn store_with(role: Role) -> (kaon_store::MemoryStore, String) {
        let store = kaon_store::MemoryStore::new();
        let t = make_token("ci", role, 1).expect("token");
        store.create_token(&t.row).await.expect("stored");
        (store, t.token)
    }

    #[tokio::test]
    async fn without_anonymous_mode_a_request_needs_a_token() {
        let (store, _) = store_with(Role::Admin).await;
        let h = headers(&[("host", "127.0.0.1:8484")]);
        let e = authorize(&store, &h, Role::Read, None)
            .await
            .expect_err("no token");
        assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_anonymous_user_reads_and_operates_but_does_not_administer() {
        let (store, _) = store_with(Role::Admin).await;
        let h = headers(&[("host", "127.0.0.1:8484")]);
        for need in [Role::Read, Role::Operate] {
            let c = authorize(&store, &h, need, Some(Role::Operate))
                .await
                .expect("allowed");
            assert!(c.is_local());
            assert_eq!(c.role, Role::Operate);
            assert_eq!(c.name, None);
        }
        let e = authorize(&store, &h, Role::Admin, Some(Role::Operate))
            .await
            .expect_err("admin");
        assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN);
        // A read-only anonymous user may not operate.
        let e = authorize(&store, &h, Role::Operate, Some(Role::Read))
            .await
            .expect_err("operate");
        assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_request_with_a_token_is_checked_as_ever_in_anonymous_mode() {
        let (store, token) = store_with(Role::Admin).await;
        let good = headers(&[
            ("host", "127.0.0.1:8484"),
            ("authorization", &format!("Bearer {token}")),
        ]);
        let c = authorize(&store, &good, Role::Admin, Some(Role::Operate))
            .await
            .expect("admin token");
        assert!(!c.is_local());
        assert_eq!(c.role, Role::Admin);
        assert_eq!(c.name.as_deref(), Some("ci"));
        for bad in ["Bearer kaon_nope_nope", "Basic abc", "Bearer "] {
            let h = headers(&[("host", "127.0.0.1:8484"), ("authorization", bad)]);
            let e = authorize(&store, &h, Role::Read, Some(Role::Operate))
                .await
                .expect_err(bad);
            assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_anonymous_user_is_refused_to_other_sites_and_hosts() {
        let (store, _) = store_with(Role::Admin).await;
        let anon = Some(Role::Operate);
        for host in [
            "127.0.0.1:8484",
            "localhost:8484",
            "[::1]:8484",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            let h = headers(&[("host", host), ("origin", &format!("http://{host}"))]);
            assert!(
                authorize(&store, &h, Role::Operate, anon).await.is_ok(),
                "{host}"
            );
        }
        // DNS rebinding: a name of the attacker's that points here.
        for host in ["evil.example:8484", "127.0.0.1.evil.example", "[::2]:1", ""] {
            let h = headers(&[("host", host)]);
            let e = authorize(&store, &h, Role::Read, anon)
                .await
                .expect_err(host);
            assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED, "{host}");
        }
        // A form another page posts here.
        for origin in ["http://evil.example", "null", "http://127.0.0.1:9999"] {
            let h = headers(&[("host", "127.0.0.1:8484"), ("origin", origin)]);
            let e = authorize(&store, &h, Role::Operate, anon)
                .await
                .expect_err(origin);
            assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN, "{origin}");
        }
        // An <img> or <script> of another site's page: no Origin, but the
        // browser says it crossed sites.
        for site in ["cross-site", "same-site"] {
            let h = headers(&[("host", "127.0.0.1:8484"), ("sec-fetch-site", site)]);
            let e = authorize(&store, &h, Role::Read, anon)
                .await
                .expect_err(site);
            assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN, "{site}");
        }
        for site in ["same-origin", "none"] {
            let h = headers(&[("host", "127.0.0.1:8484"), ("sec-fetch-site", site)]);
            authorize(&store, &h, Role::Read, anon)
                .await
                .unwrap_or_else(|e| panic!("{site}: {}", e.message));
        }
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
