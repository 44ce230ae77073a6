//! What the step drawer shows of a step run (issue 15): each attempt with
//! its exit and failure in the node's `history`, and the resolved command
//! line and settings from `/api/v1/runs/{id}/steps/{key}/launch`, never
//! with a secret's value.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, Site};

const SECRET: &str = "hunter2-plaintext-5521";

const LAUNCH: &str = r#"
[workflow]
name = "launch"
flow = '''flaky -> show -> use_secret -> plain'''

[params.region]
type = "string"
default = "US"

[params.token]
type = "string"
secret = true

[steps.flaky]
kind = "command"
command = ["sh", "-c", "test -e marker || { touch marker; exit 3; }"]
retries = 1
retry_backoff = "50ms"

[steps.show]
kind = "command"
command = ["echo", "region=${params.region}"]

[steps.use_secret]
kind = "command"
command = ["sh", "-c", "test -n \"$TOKEN\"", "--token=${params.token}"]
env = { TOKEN = "${params.token}" }

[steps.plain]
kind = "command"
cache = false
command = ["echo", "${params.region}"]
"#;

fn node<'a>(detail: &'a Value, name: &str) -> &'a Value {
    detail["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}: {detail:#}"))
}

/// The value of setting `name` in a launch answer.
fn setting<'a>(l: &'a Value, name: &str) -> &'a Value {
    l["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no setting {name}: {l:#}"))
}

async fn launch_of(server: &Server, run: &str, key: &str) -> Value {
    // Instance keys hold `[`, `=` and `]`: sent URL-encoded.
    let key: String = url_encode(key);
    server
        .get(&format!("/api/v1/runs/{run}/steps/{key}/launch"))
        .await
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn suite(site: Site) {
    let wf = site.write("flows/launch.toml", LAUNCH);
    let server = site.server();
    server.ready().await;
    server.deploy(&wf).await;
    let id = server
        .submit("launch", json!({"region": "EU", "token": SECRET}))
        .await;
    let detail = server
        .wait(&id, Duration::from_secs(60), |v| {
            v["run"]["status"] != "running"
        })
        .await;
    assert_eq!(detail["run"]["status"], "succeeded", "{detail:#}");

    // The step that failed once: two attempts, exit 3 then 0.
    let flaky = node(&detail, "flaky");
    assert_eq!(flaky["attempt"], 2, "{flaky:#}");
    let history = flaky["data"]["history"].as_array().unwrap_or_else(|| {
        panic!("no history: {flaky:#}");
    });
    assert_eq!(history.len(), 2, "{flaky:#}");
    assert_eq!(history[0]["attempt"], 1);
    assert_eq!(history[0]["exit_code"], 3);
    assert_eq!(history[0]["failure"]["class"], "user");
    assert_eq!(history[0]["failure"]["message"], "exited with status 3");
    assert_eq!(history[0]["state"], "failed");
    assert_eq!(history[1]["attempt"], 2);
    assert_eq!(history[1]["exit_code"], 0);
    assert_eq!(history[1]["state"], "succeeded");
    assert!(history[1].get("failure").is_none(), "{flaky:#}");
    for h in history {
        let (s, f) = (
            h["started"].as_u64().unwrap(),
            h["finished"].as_u64().unwrap(),
        );
        assert!(s <= f, "{h}");
    }

    // What it launched: its latest attempt's command line.
    let l = launch_of(&server, &id, "flaky").await;
    assert_eq!(l["instance"], "flaky");
    assert_eq!(l["attempt"], 2, "{l:#}");
    assert!(
        l["memo_key"].as_str().unwrap().starts_with("blake3:"),
        "{l:#}"
    );
    assert_eq!(setting(&l, "argv[0]")["value"], "sh");
    assert_eq!(
        setting(&l, "argv[2]")["value"],
        "test -e marker || { touch marker; exit 3; }"
    );
    assert_eq!(l["note"], Value::Null);

    // A parameter in the command line, resolved.
    let l = launch_of(&server, &id, "show").await;
    assert_eq!(setting(&l, "argv[0]")["value"], "echo", "{l:#}");
    assert_eq!(setting(&l, "argv[1]")["value"], "region=EU", "{l:#}");
    assert_eq!(setting(&l, "argv[1]").get("hidden"), None);
    assert!(
        setting(&l, "workdir")["value"]
            .as_str()
            .unwrap()
            .ends_with("flows")
    );

    // A secret, through `env` and on the command line: never shown.
    let l = launch_of(&server, &id, "use_secret").await;
    let text = l.to_string();
    assert!(!text.contains(SECRET), "{l:#}");
    let env = setting(&l, "env[TOKEN]");
    assert_eq!(env["hidden"], true, "{l:#}");
    assert!(env["value"].as_str().unwrap().starts_with("kd:"), "{l:#}");
    let arg = setting(&l, "argv[3]");
    assert_eq!(arg["hidden"], true, "{l:#}");
    assert!(
        arg["value"]
            .as_str()
            .unwrap()
            .starts_with("--token=«secret token kd:"),
        "{l:#}"
    );
    // Nor anywhere else the drawer reads.
    let text = server.run(&id).await.to_string();
    assert!(!text.contains(SECRET), "the run detail shows the secret");

    // `cache = false`: nothing recorded, and the answer says so.
    let l = launch_of(&server, &id, "plain").await;
    assert_eq!(l["settings"], json!([]), "{l:#}");
    assert_eq!(l["memo_key"], Value::Null);
    assert!(l["note"].as_str().unwrap().contains("cache"), "{l:#}");

    // Unknown runs and steps are 404s; a reader may ask.
    let (s, v) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            &format!("/api/v1/runs/{id}/steps/nope/launch"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            "/api/v1/runs/r-none/steps/show/launch",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let reader = site.token("reader", "read");
    let (s, v) = server
        .call_as(
            Some(&reader),
            Method::GET,
            &format!("/api/v1/runs/{id}/steps/show/launch"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = server
        .call_as(
            None,
            Method::GET,
            &format!("/api/v1/runs/{id}/steps/show/launch"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

const FOREACH: &str = r#"
[workflow]
name = "each"
flow = '''**(reg = ["US", "CA"]) --< (fit) >--'''

[steps.fit]
kind = "command"
command = ["echo", "fit-${reg}"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_named_by_their_key() {
    let site = Site::sqlite();
    let wf = site.write("flows/each.toml", FOREACH);
    let server = site.server();
    server.ready().await;
    server.deploy(&wf).await;
    let id = server.submit("each", json!({})).await;
    server
        .wait(&id, Duration::from_secs(60), |v| {
            v["run"]["status"] != "running"
        })
        .await;
    let l = launch_of(&server, &id, "fit[reg=CA]").await;
    assert_eq!(l["instance"], "fit[reg=CA]", "{l:#}");
    assert_eq!(setting(&l, "argv[1]")["value"], "fit-CA");
    // The step's name stands for two instances: the answer names them.
    let (s, v) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            &format!("/api/v1/runs/{id}/steps/fit/launch"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v.to_string().contains("fit[reg=US]"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_launch_on_sqlite() {
    suite(Site::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_and_launch_on_postgres() {
    suite(Site::postgres().await).await;
}
