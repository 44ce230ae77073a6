//! The same suite of API calls against a server on SQLite and on
//! PostgreSQL: deploy, submit, follow events to success, signal a wait
//! step, cancel, retry, logs, artifacts, lineage.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Site, state_of};

const SUITE: &str = r#"
[workflow]
name = "suite"
flow = "make -> approval -> use -> flaky"

[params]
greeting = { type = "string", default = "hello" }

[steps.make]
kind = "command"
command = ["sh", "-c", "echo $1 > data.txt; echo made $1; echo a warning >&2", "sh", "${params.greeting}"]
outputs = { data = { type = "file", path = "data.txt" } }

[steps.approval]
kind = "wait"
signal = "approve"
outputs = { by = "string" }

[steps.use]
kind = "command"
command = ["sh", "-c", "cat $1 > used.txt; echo approved by $2", "sh", "${make.data}", "${approval.by}"]
outputs = { used = { type = "file", path = "used.txt" } }

[steps.flaky]
kind = "command"
command = ["sh", "-c", "test -e ok.marker || { echo no marker >&2; exit 1; }"]
"#;

const SLEEPY: &str = r#"
[workflow]
name = "sleepy"
flow = "nap"

[steps.nap]
kind = "command"
command = ["sh", "-c", "echo dozing; exec sleep 300"]
"#;

async fn suite(site: Site) {
    let wf = site.write("flows/suite.toml", SUITE);
    let sleepy = site.write("flows/sleepy.toml", SLEEPY);
    let server = site.server();
    server.ready().await;

    // Deploy: new, then the same version again changes nothing.
    let d = server.deploy(&wf).await;
    assert_eq!(d["new"], true, "{d}");
    assert_eq!(d["workflow"]["name"], "suite");
    let again = server.deploy(&wf).await;
    assert_eq!(again["new"], false);
    assert_eq!(again["workflow"]["digest"], d["workflow"]["digest"]);
    server.deploy(&sleepy).await;
    let listed = server.get("/api/v1/workflows").await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    // What a form to start a run needs comes from the file itself.
    let suite = server.get("/api/v1/workflows/suite").await;
    assert_eq!(suite["params"]["greeting"]["type"], "string", "{suite}");
    assert_eq!(suite["params"]["greeting"]["required"], false, "{suite}");
    assert!(suite["problem"].is_null(), "{suite}");

    // Submit with a parameter; follow its events.
    let id = server.submit("suite", json!({"greeting": "bonjour"})).await;
    let mut events = server.events(&id).await;
    let (first, snap) = events.next(Duration::from_secs(30)).await.unwrap();
    assert_eq!(first, "snapshot");
    assert_eq!(snap["run"]["id"], id.as_str());
    assert_eq!(snap["run"]["params"]["greeting"], "bonjour");
    // The wait step is reported running (waiting for its signal): signal it.
    let mut signalled = false;
    let mut states: Vec<(String, String)> = Vec::new();
    let finished = loop {
        let (name, data) = events
            .next(Duration::from_secs(60))
            .await
            .expect("the stream ends after the run's end");
        if name == "nodes" {
            for n in data["nodes"].as_array().unwrap() {
                let (step, state) = (n["name"].as_str().unwrap(), n["state"].as_str().unwrap());
                states.push((step.to_string(), state.to_string()));
                if step == "approval" && state == "running" && !signalled {
                    let (s, v) = server
                        .post(
                            &format!("/api/v1/runs/{id}/signal"),
                            json!({"name": "approve", "value": {"by": "ana"}}),
                        )
                        .await;
                    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
                    signalled = true;
                }
            }
        }
        if name == "finished" && data["run"] == id.as_str() {
            break data;
        }
    };
    assert!(
        signalled,
        "the wait step was never seen waiting: {states:?}"
    );
    // `flaky` fails: no marker yet.
    assert_eq!(finished["status"], "failed", "{states:?}");
    for want in [
        ("make", "succeeded"),
        ("use", "succeeded"),
        ("flaky", "failed"),
    ] {
        assert!(
            states.contains(&(want.0.to_string(), want.1.to_string())),
            "no {want:?} in {states:?}"
        );
    }
    let detail = server.run(&id).await;
    assert_eq!(detail["run"]["status"], "failed");
    assert_eq!(detail["run"]["signals"]["approve"]["by"], "ana");

    // Logs: stdout and stderr, paged.
    let page = server
        .get(&format!("/api/v1/runs/{id}/logs?step=make"))
        .await;
    assert_eq!(page["text"], "made bonjour\n", "{page}");
    assert_eq!(page["done"], true);
    let err = server
        .get(&format!("/api/v1/runs/{id}/logs?step=make&stream=stderr"))
        .await;
    assert_eq!(err["text"], "a warning\n");
    let p1 = server
        .get(&format!("/api/v1/runs/{id}/logs?step=use&limit=5"))
        .await;
    assert_eq!(p1["text"], "appro");
    let p2 = server
        .get(&format!(
            "/api/v1/runs/{id}/logs?step=use&offset={}",
            p1["next"]
        ))
        .await;
    assert_eq!(p2["text"], "ved by ana\n");
    let (s, v) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            &format!("/api/v1/runs/{id}/logs?step=nothere"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // Artifacts and lineage: `used` came from `data`.
    let arts = server.get(&format!("/api/v1/artifacts?run={id}")).await;
    let names: Vec<&str> = arts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"data") && names.contains(&"used"), "{arts}");
    let used = arts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "used")
        .unwrap();
    let data = arts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "data")
        .unwrap();
    let one = server
        .get(&format!(
            "/api/v1/artifacts/{}",
            used["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one["step"], "use");
    let up = server
        .get(&format!(
            "/api/v1/artifacts/{}/lineage",
            used["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        up.as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == data["id"]),
        "{up}"
    );
    let down = server
        .get(&format!(
            "/api/v1/artifacts/{}/lineage?direction=downstream",
            data["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        down.as_array()
            .unwrap()
            .iter()
            .any(|e| e["to"] == used["id"]),
        "{down}"
    );
    let why = server
        .get(&format!("/api/v1/cache/explain?run={id}&step=make"))
        .await;
    assert!(
        why["lines"][0].as_str().unwrap().starts_with("make: ran"),
        "{why}"
    );

    // Retry the failed step once its cause is fixed: the run succeeds,
    // the steps that succeeded do not run again.
    std::fs::write(site.path("flows/ok.marker"), "").unwrap();
    let (s, v) = server
        .post(
            &format!("/api/v1/runs/{id}/retry"),
            json!({"step": "flaky"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // Followed on its event stream to success.
    let mut events = server.events(&id).await;
    let ended = loop {
        let (name, data) = events.next(Duration::from_secs(60)).await.unwrap();
        if name == "finished" && data["run"] == id.as_str() {
            break data;
        }
    };
    assert_eq!(ended["status"], "succeeded", "{ended}");
    let done = server.run(&id).await;
    assert_eq!(done["run"]["status"], "succeeded", "{done:#}");
    let make = done["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "make")
        .unwrap();
    assert_eq!(make["attempt"], 1, "make ran again: {make}");
    let flaky = done["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "flaky")
        .unwrap();
    assert_eq!(flaky["attempt"], 2, "{flaky}");

    // Cancel a running run, seen on the stream of every run's events, its
    // log followed until the step ends.
    let mut all = server.all_events().await;
    let nap = server.submit("sleepy", json!({})).await;
    loop {
        let (name, data) = all.next(Duration::from_secs(30)).await.unwrap();
        if name == "run" && data["run"] == nap.as_str() {
            assert_eq!(data["workflow"], "sleepy");
            break;
        }
    }
    server
        .wait(&nap, Duration::from_secs(30), |v| {
            state_of(v, "nap").as_deref() == Some("running")
        })
        .await;
    let follow = {
        let http = server.http.clone();
        let url = format!(
            "{}/api/v1/runs/{nap}/logs?step=nap&offset=7&follow=true",
            server.url
        );
        let token = server.token.clone();
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (std::time::Instant::now(), r.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !follow.is_finished(),
        "a followed log answered with nothing new"
    );
    let asked = std::time::Instant::now();
    let (s, v) = server
        .post(
            &format!("/api/v1/runs/{nap}/cancel"),
            json!({"reason": "enough"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let end = server
        .wait(&nap, Duration::from_secs(30), |v| {
            v["run"]["status"] != "running"
        })
        .await;
    assert_eq!(end["run"]["status"], "cancelled");
    assert_eq!(state_of(&end, "nap").as_deref(), Some("cancelled"));
    let (answered, page) = follow.await.unwrap();
    assert!(answered >= asked, "{page}");
    assert_eq!(page["done"], true, "{page}");
    assert_eq!(page["text"], "", "{page}");
    // Cancelling an ended run is a conflict, not a success.
    let (s, _) = server
        .post(&format!("/api/v1/runs/{nap}/cancel"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Lists filter by workflow and status.
    let runs = server.get("/api/v1/runs?workflow=sleepy").await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let runs = server.get("/api/v1/runs?status=succeeded").await;
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["id"], id.as_str());

    // Bad requests say what is wrong.
    let r = server
        .http
        .post(format!("{}/api/v1/runs", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body("{\"workflow\": \"suite\",")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 1"),
        "{v}"
    );
    let (s, v) = server
        .post(
            "/api/v1/runs",
            json!({"workflow": "suite", "parameters": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parameters"),
        "{v}"
    );
    let (s, v) = server
        .post(
            "/api/v1/runs",
            json!({"workflow": "suite", "params": {"greting": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("greting"),
        "{v}"
    );
    let (s, _) = server
        .post("/api/v1/runs", json!({"workflow": "nosuch"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // (On a connection of its own: the server closes one whose body it
    // refused unread, and a pooled connection would be reused after.)
    let big = "x".repeat(2 << 20);
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/runs", server.url))
        .bearer_auth(&server.token)
        .json(&json!({"workflow": big}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The description of it all.
    let (s, doc) = server
        .call_as(None, Method::GET, "/openapi.json", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/api/v1/runs",
        "/api/v1/runs/{id}/events",
        "/api/v1/schedules",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not described");
    }
    let metrics = server
        .http
        .get(format!("{}/metrics", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("kaon_runs_submitted_total 2"), "{metrics}");
    assert!(
        metrics.contains("kaon_store_commit_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_suite_on_sqlite() {
    suite(Site::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_suite_on_postgres() {
    suite(Site::postgres().await).await;
}
