//! Every call is checked: no token, a wrong token, a read token
//! submitting, a revoked token, a run's token writing to another run.
//! Each is refused with its status, and nothing changes in the store.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::Site;

const WF: &str = r#"
[workflow]
name = "gate"
flow = "approval"

[steps.approval]
kind = "wait"
signal = "approve"
"#;

/// What is tried, with which token, how, and the status it must get.
type Case = (
    &'static str,
    Option<String>,
    Method,
    String,
    Option<serde_json::Value>,
    StatusCode,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_checked_and_a_refusal_changes_nothing() {
    let site = Site::sqlite();
    let wf = site.write("gate.toml", WF);
    let reader = site.token("dashboard", "read");
    let operator = site.token("ana", "operate");
    let revoked = site.token("old", "operate");
    let server = site.server();
    server.ready().await;
    server.deploy(&wf).await;
    let run = server.submit("gate", json!({})).await;
    let other = server.submit("gate", json!({})).await;
    let before = server.get("/api/v1/runs").await;
    assert_eq!(before.as_array().unwrap().len(), 2);

    let submit = json!({"workflow": "gate"});
    let cases: Vec<Case> = vec![
        (
            "no token",
            None,
            Method::POST,
            "/api/v1/runs".into(),
            Some(submit.clone()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no token, read",
            None,
            Method::GET,
            "/api/v1/runs".into(),
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong token",
            Some("kaon_000000000000_0000".into()),
            Method::POST,
            "/api/v1/runs".into(),
            Some(submit.clone()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "a known id with a wrong secret",
            Some(format!("{}x", &operator[..operator.len() - 1])),
            Method::POST,
            "/api/v1/runs".into(),
            Some(submit.clone()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "read token submitting",
            Some(reader.clone()),
            Method::POST,
            "/api/v1/runs".into(),
            Some(submit.clone()),
            StatusCode::FORBIDDEN,
        ),
        (
            "read token cancelling",
            Some(reader.clone()),
            Method::POST,
            format!("/api/v1/runs/{run}/cancel"),
            Some(json!({})),
            StatusCode::FORBIDDEN,
        ),
        (
            "operate token deploying",
            Some(operator.clone()),
            Method::POST,
            "/api/v1/workflows".into(),
            Some(json!({"path": wf.display().to_string()})),
            StatusCode::FORBIDDEN,
        ),
        (
            "operate token making tokens",
            Some(operator.clone()),
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "x", "role": "admin"})),
            StatusCode::FORBIDDEN,
        ),
    ];
    // The revoked token works until it is revoked.
    let (s, _) = server
        .call_as(Some(&revoked), Method::GET, "/api/v1/runs", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let id = revoked.split('_').nth(1).unwrap();
    let (s, _) = server
        .call_as(
            Some(&server.token),
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mut cases = cases;
    cases.push((
        "revoked token",
        Some(revoked.clone()),
        Method::POST,
        "/api/v1/runs".into(),
        Some(submit.clone()),
        StatusCode::UNAUTHORIZED,
    ));
    cases.push((
        "revoked token, read",
        Some(revoked.clone()),
        Method::GET,
        "/api/v1/runs".into(),
        None,
        StatusCode::UNAUTHORIZED,
    ));

    // A run's own token: it may post its run's events, nothing else.
    let secret: [u8; 32] = std::fs::read(site.data().join("secret"))
        .unwrap()
        .try_into()
        .expect("a 32-byte secret");
    let run_token = kaon_server::auth::run_token(&secret, &run);
    let event = |r: &str| json!({"run": r, "node": 0, "attempt": 1, "type": "output", "name": "x", "value": 1});
    cases.push((
        "run token writing to another run",
        Some(run_token.clone()),
        Method::POST,
        "/v1/spark/events".into(),
        Some(event(&other)),
        StatusCode::FORBIDDEN,
    ));
    cases.push((
        "run token cancelling its run through the API",
        Some(run_token.clone()),
        Method::POST,
        format!("/api/v1/runs/{run}/cancel"),
        Some(json!({})),
        StatusCode::FORBIDDEN,
    ));
    cases.push((
        "forged run token",
        Some(format!("{other}.{}", "0".repeat(64))),
        Method::POST,
        "/v1/spark/events".into(),
        Some(event(&other)),
        StatusCode::UNAUTHORIZED,
    ));

    for (what, token, method, path, body, want) in cases {
        let (s, v) = server.call_as(token.as_deref(), method, &path, body).await;
        assert_eq!(s, want, "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
    }

    // Nothing changed: the same runs, both still waiting, no signal, no
    // new token.
    let after = server.get("/api/v1/runs").await;
    assert_eq!(after, before);
    for r in [&run, &other] {
        let d = server.run(r).await;
        assert_eq!(d["run"]["status"], "running", "{d}");
        assert!(d["run"]["signals"].is_null(), "{d}");
    }
    let tokens = server.get("/api/v1/tokens").await;
    assert_eq!(tokens.as_array().unwrap().len(), 4, "{tokens}");
    // Tokens are listed without their secrets, and are not in the store in
    // clear.
    let listed = tokens.to_string();
    for t in [&reader, &operator, &server.token] {
        let secret = t.rsplit('_').next().unwrap();
        assert!(!listed.contains(secret));
    }
    let mut stored = Vec::new();
    for f in ["kaon.db", "kaon.db-wal"] {
        stored.extend(std::fs::read(site.data().join(f)).unwrap_or_default());
    }
    assert!(!stored.is_empty());
    let stored = String::from_utf8_lossy(&stored);
    for t in [&reader, &operator, &server.token] {
        let (id, secret) = t["kaon_".len()..].split_once('_').unwrap();
        assert!(stored.contains(id), "token {id} is not in the database?");
        assert!(
            !stored.contains(secret),
            "a token secret is in the database"
        );
    }

    // The run's token does post its own run's events.
    let (s, v) = server
        .call_as(
            Some(&run_token),
            Method::POST,
            "/v1/spark/events",
            Some(event(&run)),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    // Health probes need no token.
    let (s, _) = server.call_as(None, Method::GET, "/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
}
