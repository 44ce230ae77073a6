//! What the UI reads of artifacts: previews of each kind, content served
//! safely, metric series over runs; and the run list's filters (a time
//! window, a schedule's runs).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Server, Site};

/// `kaon artifacts put PATH --name NAME` on the site: the artifact's id.
fn put(site: &Site, path: &Path, name: &str) -> String {
    let o = site
        .cmd(&["artifacts", "put", path.to_str().unwrap(), "--name", name])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "put {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A Parquet file of `rows` rows (id, name, score, tags) in row groups of
/// 50.
fn parquet_file(path: &Path, rows: i64) {
    use arrow::array::{ArrayRef, Float64Array, Int64Array, ListBuilder, StringArray};
    use arrow::array::{Int32Builder, RecordBatch};
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
    let names: ArrayRef = Arc::new(StringArray::from_iter((0..rows).map(|i| {
        if i % 7 == 3 {
            None
        } else {
            Some(format!("user-{i}"))
        }
    })));
    let scores: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..rows).map(|i| i as f64 / 4.0),
    ));
    let mut tags = ListBuilder::new(Int32Builder::new());
    for i in 0..rows {
        tags.values().append_value(i as i32);
        tags.values().append_value(-1);
        tags.append(true);
    }
    let tags: ArrayRef = Arc::new(tags.finish());
    let batch = RecordBatch::try_from_iter([
        ("id", ids),
        ("name", names),
        ("score", scores),
        ("tags", tags),
    ])
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(50))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// GET with the server's token: status, headers and body bytes.
async fn raw(server: &Server, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = server
        .http
        .get(format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_artifact_previews_and_is_served_safely() {
    let site = Site::sqlite();
    let files = site.path("files");
    std::fs::create_dir_all(&files).unwrap();
    let at = |name: &str| files.join(name);

    parquet_file(&at("users.parquet"), 120);
    std::fs::write(at("bad.parquet"), b"PAR1 this is not parquet at all PAR1").unwrap();
    std::fs::write(
        at("data.csv"),
        "region,users\n\"europe, west\",12\nasia,7\nafrica,3\n",
    )
    .unwrap();
    std::fs::write(
        at("metrics.json"),
        r#"{"auc": 0.75, "by": {"eu": 0.7}, "label": "x"}"#,
    )
    .unwrap();
    // Text over 64 KiB whose 64 KiB boundary falls inside a character.
    let mut long = "a".repeat((64 << 10) - 1);
    long.push_str(&"é".repeat(1000));
    std::fs::write(at("notes.txt"), &long).unwrap();
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    std::fs::write(at("plot.png"), &png).unwrap();
    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script><circle r="4"/></svg>"#;
    std::fs::write(at("chart.svg"), svg).unwrap();
    std::fs::write(at("html.html"), "<script>alert(1)</script>").unwrap();
    // No extension, JSON inside: found by its first bytes.
    std::fs::write(at("blob"), r#"{"sniffed": [1, 2]}"#).unwrap();
    std::fs::write(at("random"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    std::fs::create_dir_all(at("folder/sub")).unwrap();
    std::fs::write(at("folder/a.txt"), "a").unwrap();
    std::fs::write(at("folder/sub/b.txt"), "bb").unwrap();

    let id = |name: &str, file: &str| put(&site, &at(file), name);
    let users = id("users", "users.parquet");
    let bad = id("bad", "bad.parquet");
    let csv = id("data", "data.csv");
    let metrics = id("metrics", "metrics.json");
    let notes = id("notes", "notes.txt");
    let plot = id("plot", "plot.png");
    let chart = id("chart", "chart.svg");
    let html = id("page", "html.html");
    let blob = id("blob", "blob");
    let random = id("random", "random");
    let folder = id("folder", "folder");

    let server = site.server();
    server.ready().await;
    let preview = |id: &str, q: &str| {
        let path = format!("/api/v1/artifacts/{id}/preview{q}");
        let server = &server;
        async move { server.get(&path).await }
    };

    // Parquet: schema, the first rows as JSON values, the count from the
    // footer.
    let p = preview(&users, "?rows=10").await;
    assert_eq!(p["kind"], "parquet", "{p}");
    assert_eq!(p["media_type"], "application/vnd.apache.parquet");
    assert_eq!(p["total_rows"], 120);
    assert_eq!(p["truncated"], true);
    let names: Vec<&str> = p["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["id", "name", "score", "tags"]);
    assert_eq!(p["schema"][0]["type"], "Int64");
    let rows = p["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[2], json!([2, "user-2", 0.5, [2, -1]]));
    assert_eq!(rows[3][1], Value::Null);
    for key in ["json", "text", "files"] {
        assert_eq!(p[key], Value::Null, "{key}");
    }
    // Rows beyond the first row group, and every row.
    let all = preview(&users, "?rows=500").await;
    assert_eq!(all["rows"].as_array().unwrap().len(), 120);
    assert_eq!(all["rows"][119][0], 119);
    assert_eq!(all["truncated"], false);
    assert_eq!(
        preview(&users, "").await["rows"].as_array().unwrap().len(),
        50
    );

    // A damaged Parquet file is a 422 that says so.
    let (s, v) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            &format!("/api/v1/artifacts/{bad}/preview"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("not a readable Parquet file: "), "{msg}");

    // CSV: the header as the schema, the rows as strings.
    let p = preview(&csv, "?rows=2").await;
    assert_eq!(p["kind"], "csv", "{p}");
    assert_eq!(
        p["schema"],
        json!([{"name": "region", "type": "string"}, {"name": "users", "type": "string"}])
    );
    assert_eq!(p["rows"], json!([["europe, west", "12"], ["asia", "7"]]));
    assert_eq!(p["total_rows"], 3);
    assert_eq!(p["truncated"], true);

    // JSON: the value.
    let p = preview(&metrics, "").await;
    assert_eq!(p["kind"], "json", "{p}");
    assert_eq!(p["json"]["by"]["eu"], 0.7);
    assert_eq!(p["truncated"], false);
    let p = preview(&blob, "").await;
    assert_eq!(p["kind"], "json", "sniffed: {p}");
    assert_eq!(p["media_type"], "application/octet-stream");
    assert_eq!(p["json"], json!({"sniffed": [1, 2]}));

    // Text: the first 64 KiB, not cut inside a character.
    let p = preview(&notes, "").await;
    assert_eq!(p["kind"], "text", "{}", p["kind"]);
    let text = p["text"].as_str().unwrap();
    assert!(!text.contains('\u{fffd}'));
    assert_eq!(text.len(), (64 << 10) - 1, "the cut character is left out");
    assert!(long.starts_with(text));
    assert_eq!(p["truncated"], true);
    assert_eq!(preview(&html, "").await["kind"], "text");

    // Images are named, not read; binary too.
    for (id, media) in [(&plot, "image/png"), (&chart, "image/svg+xml")] {
        let p = preview(id, "").await;
        assert_eq!(p["kind"], "image", "{p}");
        assert_eq!(p["media_type"], media);
        assert_eq!(p["text"], Value::Null);
    }
    assert_eq!(preview(&random, "").await["kind"], "binary");

    // A folder lists its files; it has no single content.
    let p = preview(&folder, "").await;
    assert_eq!(p["kind"], "dir", "{p}");
    assert_eq!(
        p["files"],
        json!([{"path": "a.txt", "size": 1}, {"path": "sub/b.txt", "size": 2}])
    );
    let (s, _, body) = raw(&server, &format!("/api/v1/artifacts/{folder}/content")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("is a directory"));

    // Content: the bytes, typed, never sniffed; only raster images go
    // without a sandbox.
    let (s, h, body) = raw(&server, &format!("/api/v1/artifacts/{chart}/content")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, svg.as_bytes());
    assert_eq!(header(&h, "content-type"), Some("image/svg+xml"));
    assert_eq!(header(&h, "content-security-policy"), Some("sandbox"));
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    assert_eq!(
        header(&h, "content-disposition"),
        Some("inline; filename=\"chart.svg\"; filename*=UTF-8''chart.svg")
    );
    let etag = header(&h, "etag").unwrap().to_string();
    let (s, h, body) = raw(&server, &format!("/api/v1/artifacts/{plot}/content")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, png);
    assert_eq!(header(&h, "content-type"), Some("image/png"));
    assert_eq!(header(&h, "content-security-policy"), None);
    let (_, h, _) = raw(&server, &format!("/api/v1/artifacts/{html}/content")).await;
    assert_eq!(header(&h, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(header(&h, "content-security-policy"), Some("sandbox"));
    let (s, _, body) = raw(&server, &format!("/api/v1/artifacts/{users}/content")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, std::fs::read(at("users.parquet")).unwrap());
    // The digest is the ETag.
    let r = server
        .http
        .get(format!("{}/api/v1/artifacts/{chart}/content", server.url))
        .bearer_auth(&server.token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Unknown artifacts.
    for path in ["content", "preview"] {
        let (s, _, _) = raw(
            &server,
            &format!("/api/v1/artifacts/a0000000000000000/{path}"),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    // Reading needs a token.
    let (s, _) = server
        .call_as(
            None,
            Method::GET,
            &format!("/api/v1/artifacts/{chart}/content"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Described.
    let (_, doc) = server
        .call_as(None, Method::GET, "/openapi.json", None)
        .await;
    for path in [
        "/api/v1/artifacts/{id}/content",
        "/api/v1/artifacts/{id}/preview",
        "/api/v1/artifacts/series",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not described");
    }
    let run_params: Vec<&str> = doc["paths"]["/api/v1/runs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["since", "until", "schedule"] {
        assert!(run_params.contains(&name), "{run_params:?}");
    }

    // A corrupt blob is not served whole.
    let blob_path = std::fs::read_dir(site.data().join("artifacts/blobs"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .find(|p| std::fs::read(p).is_ok_and(|b| b == svg.as_bytes()))
        .expect("the SVG's blob");
    std::fs::remove_file(&blob_path).unwrap();
    std::fs::write(&blob_path, svg.replace("circle", "CIRCLE")).unwrap();
    // A small blob is checked before its answer starts: a corrupt one is
    // an error answer, never its bytes.
    let (status, body) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            &format!("/api/v1/artifacts/{chart}/content"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.to_string().contains("is corrupt"), "{body}");
}

const METRICS: &str = r#"
[workflow]
name = "metrics"
flow = "score"

[params]
x = { type = "int", default = 1 }

[[workflow.schedule]]
name = "each-second"
cron = "* * * * * *"
params = { x = 9 }

[steps.score]
kind = "command"
command = ["sh", "-c", "printf '{\"auc\": 0.%s, \"by\": {\"n\": %s, \"tag\": \"t\"}}' $1 $1 > m.json", "sh", "${params.x}"]
outputs = { metrics = { type = "file", path = "m.json" } }
"#;

async fn series_and_run_filters(site: Site) {
    let wf = site.write("flows/metrics.toml", METRICS);
    let server = site.server();
    server.ready().await;
    server.deploy(&wf).await;
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    // Two runs started by the schedule's ticks, then it is paused and
    // every run let finish.
    let start = Instant::now();
    loop {
        let by_schedule = server
            .get("/api/v1/runs?schedule=metrics:each-second")
            .await;
        if by_schedule.as_array().unwrap().len() >= 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no ticks");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, v) = server
        .post("/api/v1/schedules/metrics:each-second/pause", json!({}))
        .await;
    assert!(s.is_success(), "{v}");
    // A tick recorded just before the pause may start its run after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settle = Instant::now();
    while !server
        .get("/api/v1/runs?workflow=metrics&status=running")
        .await
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(settle.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two runs by hand, with other values; a schedule's trigger by hand
    // records no tick either.
    let mut by_hand = Vec::new();
    for x in [5, 7] {
        let id = server.submit("metrics", json!({"x": x})).await;
        server
            .wait(&id, Duration::from_secs(60), |v| {
                v["run"]["status"] == "succeeded"
            })
            .await;
        by_hand.push(id);
        // Distinct creation times for the window below.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The schedule's runs are those its ticks started, nothing else.
    let ticks = server
        .get("/api/v1/schedules/metrics:each-second/ticks?limit=1000")
        .await;
    let ticked: BTreeSet<String> = ticks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "started")
        .filter_map(|t| t["run"].as_str().map(str::to_string))
        .collect();
    let scheduled = ids(&server
        .get("/api/v1/runs?schedule=metrics:each-second")
        .await);
    assert!(scheduled.len() >= 2);
    assert_eq!(
        scheduled.iter().cloned().collect::<BTreeSet<_>>(),
        ticked,
        "{ticks}"
    );
    for id in &by_hand {
        assert!(!scheduled.contains(id));
    }
    assert!(
        server
            .get("/api/v1/runs?schedule=metrics:nosuch")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let limited = ids(&server
        .get("/api/v1/runs?schedule=metrics:each-second&limit=1")
        .await);
    assert_eq!(limited, scheduled[..1]);

    // A window of creation times: `since` inclusive, `until` exclusive.
    let all = server.get("/api/v1/runs?workflow=metrics&limit=1000").await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), scheduled.len() + 2);
    let created = |id: &str| {
        all.iter().find(|r| r["id"] == id).unwrap()["created_ms"]
            .as_i64()
            .unwrap()
    };
    let t5 = created(&by_hand[0]);
    let t7 = created(&by_hand[1]);
    assert!(t5 < t7);
    let window = |q: String| {
        let server = &server;
        async move {
            ids(&server
                .get(&format!("/api/v1/runs?workflow=metrics{q}"))
                .await)
        }
    };
    assert_eq!(
        window(format!("&since={t5}")).await,
        [by_hand[1].as_str(), by_hand[0].as_str()]
    );
    assert_eq!(
        window(format!("&since={t5}&until={t7}")).await,
        [by_hand[0].as_str()]
    );
    let before: Vec<String> = all
        .iter()
        .filter(|r| r["created_ms"].as_i64().unwrap() < t5)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(window(format!("&until={t5}")).await, before);
    assert_eq!(before.len(), scheduled.len());
    let (s, v) = server
        .call_as(
            Some(&server.token),
            Method::GET,
            &format!("/api/v1/runs?since={t7}&until={t5}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // The metric over runs: one point per run, newest first, the numbers
    // flattened; the scheduled runs after the first reuse its result.
    let series = server
        .get("/api/v1/artifacts/series?workflow=metrics&name=metrics")
        .await;
    assert_eq!(series["names"], json!(["auc", "by.n"]), "{series}");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), all.len(), "{series}");
    let runs: Vec<&str> = points.iter().map(|p| p["run"].as_str().unwrap()).collect();
    let listed: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(runs, listed);
    assert_eq!(points[0]["values"], json!({"auc": 0.7, "by.n": 7}));
    assert_eq!(points[1]["values"], json!({"auc": 0.5, "by.n": 5}));
    assert_eq!(points[0]["created_ms"], t7);
    for p in &points[2..] {
        assert_eq!(p["values"], json!({"auc": 0.9, "by.n": 9}), "{p}");
    }
    assert_eq!(series["skipped"], json!([]));
    let one = server
        .get("/api/v1/artifacts/series?workflow=metrics&name=metrics&step=score&limit=1")
        .await;
    assert_eq!(one["points"].as_array().unwrap().len(), 1);
    assert_eq!(one["points"][0]["run"], by_hand[1].as_str());
    let none = server
        .get("/api/v1/artifacts/series?workflow=metrics&name=metrics&step=nosuch")
        .await;
    assert_eq!(none, json!({"points": [], "names": [], "skipped": []}));
    // The artifact of a point is the one previews and serves.
    let a = points[0]["artifact"].as_str().unwrap();
    let p = server.get(&format!("/api/v1/artifacts/{a}/preview")).await;
    assert_eq!(p["kind"], "json", "{p}");
    assert_eq!(p["json"]["auc"], 0.7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_and_run_filters_on_sqlite() {
    series_and_run_filters(Site::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_and_run_filters_on_postgres() {
    series_and_run_filters(Site::postgres().await).await;
}
