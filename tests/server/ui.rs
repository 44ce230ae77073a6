//! What the web UI needs of a server: a run's graph (its templates) and
//! scopes, live scopes on the event stream, who the caller is, the pages
//! themselves with their security headers; and `kaon ui`, the server of
//! one local user without tokens.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, Site, kaon_bin};

/// A wait at the start (so a stream opened after the submission sees
/// every scope made), a repeat of three passes, a for-each of 3 × 2
/// items, a condition whose `otherwise` (a Spark step, never run) is
/// not taken, and a sub-workflow.
const SHAPES: &str = r#"
[workflow]
name = "shapes"
flow = '''
gate
  -> ^^(until = ${check.stable}, max = 5) --< (tune, check) >--
  -> regions -> **(reg = ${regions.list}, m = ["gbm", "lin"]) --< (fit) >--
  -> ??(${regions.n} > 2) --< (big | small) >--
  -> sub
'''

[steps.gate]
kind = "wait"
signal = "go"

[steps.tune]
kind = "command"
description = "One more pass"
script = "echo x >> passes"

[steps.check]
kind = "command"
script = '''n=$(wc -l < passes); if [ $n -ge 3 ]; then s=true; else s=false; fi; echo "::kaon::output stable=$s"'''
outputs = { stable = "bool" }

[steps.regions]
kind = "command"
script = '''echo '::kaon::output list=["US","CA","MX"]'; echo '::kaon::output n=3' '''
outputs = { list = "list<string>", n = "int" }

[steps.fit]
kind = "command"
command = ["echo", "${reg}-${m}"]

[steps.big]
kind = "noop"

[steps.small]
kind = "spark"
spark = "3.5"
app = "job.py"

[steps.sub]
kind = "subworkflow"
workflow = "child.toml"
"#;

const CHILD: &str = r#"
[workflow]
name = "child"
flow = "double"

[steps.double]
kind = "command"
command = ["true"]
"#;

const GATE: &str = r#"
[workflow]
name = "gate"
flow = "approval"

[steps.approval]
kind = "wait"
signal = "approve"
"#;

fn names(t: &Value) -> Vec<&str> {
    t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_graph_and_scopes_map_every_node_and_scopes_stream_live() {
    let site = Site::sqlite();
    let wf = site.write("flows/shapes.toml", SHAPES);
    site.write("flows/child.toml", CHILD);
    let server = site.server();
    server.ready().await;
    server.deploy(&wf).await;
    let id = server.submit("shapes", json!({})).await;

    // The stream, opened once the run waits at its gate (its first commit,
    // scope 0 with it, is in): scopes made after the snapshot come on
    // `nodes` events.
    server
        .wait(&id, Duration::from_secs(30), |v| {
            v["nodes"].as_array().is_some_and(|ns| {
                ns.iter()
                    .any(|n| n["name"] == "gate" && n["state"] == "running")
            })
        })
        .await;
    let mut events = server.events(&id).await;
    let (first, snap) = events.next(Duration::from_secs(30)).await.unwrap();
    assert_eq!(first, "snapshot");
    let mut seen: Vec<u64> = snap["scopes"]
        .as_array()
        .unwrap_or_else(|| panic!("no scopes in the snapshot: {snap}"))
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, vec![0], "{snap}");
    assert_eq!(
        snap["scopes"][0],
        json!({"id": 0, "tmpl": 0, "parent": null, "index": 0, "vars": {}})
    );
    let (s, v) = server
        .post(
            &format!("/api/v1/runs/{id}/signal"),
            json!({"name": "go", "value": {}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let mut with_scopes = 0;
    let finished = loop {
        let (name, data) = events.next(Duration::from_secs(60)).await.unwrap();
        if name == "nodes" && data["run"] == id.as_str() {
            let scopes = data["scopes"]
                .as_array()
                .unwrap_or_else(|| panic!("a nodes event without scopes: {data}"));
            if !scopes.is_empty() {
                with_scopes += 1;
            }
            seen.extend(scopes.iter().map(|s| s["id"].as_u64().unwrap()));
        }
        if name == "finished" && data["run"] == id.as_str() {
            break data;
        }
    };
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert!(with_scopes > 0);

    // The detail: scope 0, three passes, six items, the branch taken.
    let detail = server.run(&id).await;
    let scopes = detail["scopes"].as_array().unwrap();
    assert_eq!(scopes.len(), 1 + 3 + 6 + 1, "{scopes:#?}");
    let mut all: Vec<u64> = scopes.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    seen.sort();
    seen.dedup();
    all.sort();
    assert_eq!(seen, all, "the stream missed scopes");

    // The graph.
    let g = server.get(&format!("/api/v1/runs/{id}/graph")).await;
    let tmpls = g["tmpls"].as_array().unwrap();
    assert_eq!(tmpls.len(), 5, "{g:#}");
    let top = &tmpls[0];
    assert_eq!(top["parent"], Value::Null);
    let top_names = names(top);
    assert_eq!(top_names.len(), 6, "{top_names:?}");
    assert_eq!(top_names[0], "gate");
    assert_eq!(top_names[2], "regions");
    assert_eq!(top_names[5], "sub");
    assert_eq!(
        top["preds"],
        json!([[], [0], [1], [2], [3], [4]]),
        "{top:#}"
    );
    let node = |t: usize, i: usize| &tmpls[t]["nodes"][i];
    assert_eq!(node(0, 0)["kind"], "wait");
    let repeat = node(0, 1);
    assert_eq!(repeat["kind"], "repeat", "{repeat}");
    assert_eq!(repeat["max"], 5);
    assert!(
        repeat["until"].as_str().unwrap().contains("check.stable"),
        "{repeat}"
    );
    let body = repeat["body"].as_u64().unwrap() as usize;
    assert_eq!(names(&tmpls[body]), vec!["tune", "check"]);
    assert_eq!(tmpls[body]["parent"], json!([0, 1]));
    assert_eq!(tmpls[body]["preds"], json!([[], [0]]));
    assert_eq!(tmpls[body]["nodes"][0]["description"], "One more pass");
    assert_eq!(tmpls[body]["nodes"][0]["kind"], "command");
    let each = node(0, 3);
    assert_eq!(each["kind"], "for-each", "{each}");
    assert_eq!(each["vars"], json!(["reg", "m"]));
    let fe_body = each["body"].as_u64().unwrap() as usize;
    assert_eq!(names(&tmpls[fe_body]), vec!["fit"]);
    assert_eq!(tmpls[fe_body]["parent"], json!([0, 3]));
    let when = node(0, 4);
    assert_eq!(when["kind"], "when", "{when}");
    assert!(
        when["cond"].as_str().unwrap().contains("regions.n"),
        "{when}"
    );
    let (then, otherwise) = (
        when["then"].as_u64().unwrap() as usize,
        when["otherwise"].as_u64().unwrap() as usize,
    );
    assert_eq!(names(&tmpls[then]), vec!["big"]);
    assert_eq!(tmpls[then]["nodes"][0]["kind"], "noop");
    let small = &tmpls[otherwise]["nodes"][0];
    assert_eq!(small["name"], "small");
    assert_eq!(small["kind"], "spark");
    assert_eq!(small["spark"], "3.5");
    let sub = node(0, 5);
    assert_eq!(sub["kind"], "subworkflow");
    assert_eq!(sub["workflow"], "child");
    // Fields that do not apply are there, as null.
    for key in [
        "spark",
        "workflow",
        "body",
        "then",
        "otherwise",
        "vars",
        "max",
        "until",
        "cond",
    ] {
        assert_eq!(node(0, 2)[key], Value::Null, "{key} of a command");
    }

    // Every stored node is a template node: its scope's template, its
    // name. A for-each item's scope binds its variables.
    let tmpl_of = |scope: &Value| {
        scopes
            .iter()
            .find(|s| s["id"] == *scope)
            .unwrap_or_else(|| panic!("no scope {scope}"))["tmpl"]
            .as_u64()
            .unwrap() as usize
    };
    let nodes = detail["nodes"].as_array().unwrap();
    for n in nodes {
        let t = tmpl_of(&n["scope"]);
        assert!(
            names(&tmpls[t]).contains(&n["name"].as_str().unwrap()),
            "node {n} is not in template {t}"
        );
    }
    let mut items: Vec<(String, String)> = Vec::new();
    for s in scopes.iter().filter(|s| s["tmpl"] == fe_body as u64) {
        let block = nodes.iter().find(|n| n["id"] == s["parent"]).unwrap();
        assert_eq!(block["kind"], "for-each", "{s}");
        items.push((
            s["vars"]["reg"].as_str().unwrap().to_string(),
            s["vars"]["m"].as_str().unwrap().to_string(),
        ));
    }
    items.sort();
    let mut want: Vec<(String, String)> = Vec::new();
    for reg in ["CA", "MX", "US"] {
        for m in ["gbm", "lin"] {
            want.push((reg.into(), m.into()));
        }
    }
    assert_eq!(items, want);
    let passes: Vec<u64> = scopes
        .iter()
        .filter(|s| s["tmpl"] == body as u64)
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert_eq!(passes, vec![0, 1, 2]);

    // A sub-workflow's run has the graph of its own workflow.
    let child = detail["children"][0]["id"].as_str().unwrap();
    let cg = server.get(&format!("/api/v1/runs/{child}/graph")).await;
    assert_eq!(names(&cg["tmpls"][0]), vec!["double"], "{cg}");
    let (s, _) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            "/api/v1/runs/nosuch/graph",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_says_each_role_and_the_pages_carry_their_policy() {
    let site = Site::sqlite();
    let tokens = [
        ("dashboard", "read", site.token("dashboard", "read")),
        ("ana", "operate", site.token("ana", "operate")),
        ("root", "admin", site.token("root", "admin")),
    ];
    let server = site.server();
    server.ready().await;
    for (name, role, token) in &tokens {
        let (s, v) = server
            .call_as(Some(token), Method::GET, "/api/v1/whoami", None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v, json!({"role": role, "name": name, "local": false}));
    }
    for token in [None, Some("kaon_nope_nope")] {
        let (s, v) = server
            .call_as(token, Method::GET, "/api/v1/whoami", None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    }
    // A token server has no anonymous user, even at a loopback address.
    let (s, _) = server
        .call_as(None, Method::GET, "/api/v1/runs", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, doc) = server
        .call_as(None, Method::GET, "/openapi.json", None)
        .await;
    for path in ["/api/v1/whoami", "/api/v1/runs/{id}/graph"] {
        assert!(doc["paths"].get(path).is_some(), "{path} not described");
    }
    pages(&server).await;
}

/// The page and an asset it names, with their headers; an unknown asset.
async fn pages(server: &Server) {
    const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    let get = |path: &str| server.http.get(format!("{}{path}", server.url)).send();
    let r = get("/").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-cache");
    assert!(
        h["content-type"].to_str().unwrap().starts_with("text/html"),
        "{h:?}"
    );
    let page = r.text().await.unwrap();
    let asset = page
        .split("\"/assets/")
        .nth(1)
        .and_then(|p| p.split('"').next())
        .unwrap_or_else(|| panic!("the page names no asset: {page}"));
    let r = get(&format!("/assets/{asset}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{asset}");
    let h = r.headers().clone();
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    let ty = h["content-type"].to_str().unwrap();
    let want = if asset.ends_with(".js") {
        "javascript"
    } else {
        "text/css"
    };
    assert!(ty.contains(want), "{asset}: {ty}");
    assert!(!r.bytes().await.unwrap().is_empty());
    // Revalidated by its digest.
    let etag = h["etag"].to_str().unwrap().to_string();
    let r = server
        .http
        .get(format!("{}/assets/{asset}", server.url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = get("/assets/nosuch-0000.js").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()["content-security-policy"], CSP);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}

/// `kaon ui ARGS` in the site's data directory, the first line it
/// printed (`None`: it exited first), and what it writes to stderr.
fn kaon_ui(
    site: &Site,
    args: &[&str],
) -> (
    std::process::Child,
    Option<String>,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let mut child = Command::new(kaon_bin())
        .arg("ui")
        .args(args)
        .current_dir(site.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("KAON_DB")
        .env_remove("KAON_DATA_DIR")
        .env_remove("KAON_SERVER")
        .env_remove("KAON_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let to = err.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut e = to.lock().unwrap();
            e.push_str(&line);
            e.push('\n');
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    (child, first, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kaon_ui_serves_one_local_user_who_reads_and_operates_without_a_token() {
    let site = Site::sqlite();
    let wf = site.write("gate.toml", GATE);
    let data = site.data().display().to_string();
    let (child, first, _) = kaon_ui(&site, &["--listen", "127.0.0.1:0", "--data", &data]);
    let first = first.expect("kaon ui printed its URL");
    let url = first
        .strip_prefix("kaon ui: ")
        .and_then(|u| u.strip_suffix('/'))
        .unwrap_or_else(|| panic!("`{first}` is not `kaon ui: http://ADDR/`"));
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url}"))
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the real port is printed");
    let server = Server {
        child,
        url: url.to_string(),
        token: site.admin.clone(),
        http: reqwest::Client::new(),
    };
    server.ready().await;
    let r = server
        .http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    pages(&server).await;

    // No token: the local user, who may read and operate.
    let (s, me) = server
        .call_as(None, Method::GET, "/api/v1/whoami", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me, json!({"role": "operate", "name": null, "local": true}));
    // A token is checked as ever: the admin deploys (the local user may
    // not), a bad token is refused.
    let (s, v) = server
        .call_as(
            None,
            Method::POST,
            "/api/v1/workflows",
            Some(json!({"path": wf.display().to_string()})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = server
        .call_as(Some(&site.admin), Method::GET, "/api/v1/whoami", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"role": "admin", "name": "admin", "local": false}));
    let (s, _) = server
        .call_as(Some("kaon_nope_nope"), Method::GET, "/api/v1/runs", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = server
        .call_as(None, Method::GET, "/api/v1/tokens", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    server.deploy(&wf).await;
    let (s, v) = server
        .call_as(
            None,
            Method::POST,
            "/api/v1/runs",
            Some(json!({"workflow": "gate"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let run = v["id"].as_str().unwrap().to_string();
    let (s, listed) = server
        .call_as(None, Method::GET, "/api/v1/runs", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed[0]["id"], run.as_str());
    // Another site's page may not act as the local user.
    let r = server
        .http
        .post(format!("{url}/api/v1/runs/{run}/cancel"))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = server
        .http
        .post(format!("{url}/api/v1/runs/{run}/cancel"))
        .header("origin", url)
        .json(&json!({"reason": "from the page"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let end = server
        .wait(&run, Duration::from_secs(30), |v| {
            v["run"]["status"] != "running"
        })
        .await;
    assert_eq!(end["run"]["status"], "cancelled");
}

#[test]
fn kaon_ui_refuses_an_address_off_this_machine() {
    let site = Site::sqlite();
    let data = site.path("fresh").display().to_string();
    let (mut child, first, err) = kaon_ui(&site, &["--listen", "0.0.0.0:0", "--data", &data]);
    assert_eq!(first, None, "it listened");
    let status = child.wait().unwrap();
    assert!(!status.success());
    // (stderr is read to its end by now, or very soon.)
    let start = std::time::Instant::now();
    loop {
        let e = err.lock().unwrap().clone();
        if e.contains("loopback") || start.elapsed() > Duration::from_secs(5) {
            assert!(e.contains("0.0.0.0:0") && e.contains("loopback"), "{e}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !site.path("fresh").exists(),
        "refused, yet it made its data directory"
    );
}
