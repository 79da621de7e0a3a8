//! The HTTP API beyond the durable core, over real HTTP against the real server: versions
//! and pinning, function settings, execution timeouts, retention, pagination, the live
//! history stream, and the OpenAPI description checked against DESIGN.md's contract.

mod support;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{guest_bytes, scenario, Server};

fn put(s: &Server, path: &str, guest: &str) -> (u16, Value) {
    s.req("PUT", path, Some(guest_bytes(guest)))
}

fn patch(s: &Server, path: &str, body: &Value) -> (u16, Value) {
    s.req("PATCH", path, Some(body.to_string().into_bytes()))
}

fn invoke_wait(s: &Server, name: &str, input: &Value, secs: u32) -> (u16, Value) {
    s.post(&format!("/v1/functions/{name}/invoke?wait={secs}"), input)
}

#[test]
fn an_execution_finishes_on_the_version_it_started_on() {
    let s = Server::start();
    let v1 = put(&s, "/v1/functions/pinned", "conformance_guest");
    assert_eq!(v1.0, 201, "{}", v1.1);
    assert_eq!(v1.1["version"], 1);
    assert_eq!(v1.1["created"], true);
    let old = s.invoke("pinned", &scenario("wait", json!({"ms": 1500})));
    s.wait_status(&old, &["suspended"], Duration::from_secs(30));

    // Version 2 is a different component (hello).
    let v2 = put(&s, "/v1/functions/pinned", "hello");
    assert_eq!(v2.0, 201, "{}", v2.1);
    assert_eq!(v2.1["version"], 2);
    let (st, new) = invoke_wait(&s, "pinned", &json!({"name": "v2"}), 60);
    assert_eq!(st, 200, "{new}");
    assert_eq!(new["version"], 2);
    assert_eq!(new["status"], "succeeded", "{new}");

    let done = s.wait_done(&old);
    assert_eq!(done["version"], 1);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["output"], "waited",
        "replayed and finished on version 1"
    );

    // Same bytes again: 200 and the same version; listing shows both versions.
    let again = put(&s, "/v1/functions/pinned", "hello");
    assert_eq!(again.0, 200);
    assert_eq!(again.1["version"], 2);
    assert_eq!(again.1["created"], false);
    let (_, f) = s.get("/v1/functions/pinned");
    let versions = f["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    for v in versions {
        assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
        assert!(v["size_bytes"].as_u64().unwrap() > 0);
        assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn a_deleted_function_refuses_invocations_while_its_executions_finish() {
    let s = Server::start();
    s.deploy("gone", "conformance_guest");
    let running = s.invoke("gone", &scenario("wait", json!({"ms": 1000})));
    s.wait_status(&running, &["suspended"], Duration::from_secs(30));
    let (st, _) = s.req("DELETE", "/v1/functions/gone", None);
    assert_eq!(st, 204);
    let (st, v) = s.post("/v1/functions/gone/invoke", &json!(null));
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(s.get("/v1/functions/gone").0, 404);
    let (st, _) = s.req("DELETE", "/v1/functions/gone", None);
    assert_eq!(st, 404, "deleting twice");
    let done = s.wait_done(&running);
    assert_eq!(done["status"], "succeeded", "{done}");

    // Uploading again brings the name back with a new version number.
    let (st, v) = put(&s, "/v1/functions/gone", "conformance_guest");
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["version"], 2);
    let (st, v) = invoke_wait(&s, "gone", &scenario("echo", json!({"value": 1})), 30);
    assert_eq!((st, &v["output"]), (200, &json!(1)), "{v}");
}

#[test]
fn settings_are_set_at_upload_or_by_patch_validated_and_reset_to_defaults() {
    let s = Server::start();
    let (st, v) = put(
        &s,
        "/v1/functions/tuned?memory_limit_mb=64&retention_secs=600",
        "conformance_guest",
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["settings"]["memory_limit_mb"], 64);
    assert_eq!(v["settings"]["retention_secs"], 600);
    assert_eq!(v["settings"]["execution_timeout_secs"], 366 * 24 * 3600);

    let (st, f) = patch(
        &s,
        "/v1/functions/tuned",
        &json!({"execution_timeout_secs": 30, "memory_limit_mb": null}),
    );
    assert_eq!(st, 200, "{f}");
    assert_eq!(f["settings"]["execution_timeout_secs"], 30);
    assert_eq!(f["settings"]["memory_limit_mb"], 128, "back to the default");
    assert_eq!(f["settings"]["retention_secs"], 600, "untouched");
    let (_, f) = s.get("/v1/functions/tuned");
    assert_eq!(f["settings"]["execution_timeout_secs"], 30);

    // A new version keeps the function's settings.
    put(&s, "/v1/functions/tuned", "hello");
    let (_, f) = s.get("/v1/functions/tuned");
    assert_eq!(f["settings"]["execution_timeout_secs"], 30);

    let bad: [(u16, Value); 5] = [
        patch(&s, "/v1/functions/tuned", &json!({"memory_limit_mb": 4096})),
        patch(&s, "/v1/functions/tuned", &json!({"retention_secs": 0})),
        patch(&s, "/v1/functions/tuned", &json!({"memory": 1})),
        put(
            &s,
            "/v1/functions/tuned?execution_timeout_secs=soon",
            "hello",
        ),
        put(&s, "/v1/functions/tuned?colour=blue", "hello"),
    ];
    for (st, v) in bad {
        assert_eq!(st, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
    }
    let (st, _) = patch(&s, "/v1/functions/nope", &json!({"retention_secs": 5}));
    assert_eq!(st, 404);
    // A refused change changed nothing, and the bad upload stored no version.
    let (_, f) = s.get("/v1/functions/tuned");
    assert_eq!(f["settings"]["retention_secs"], 600);
    assert_eq!(f["versions"].as_array().unwrap().len(), 2);
}

#[test]
fn a_function_memory_limit_below_the_server_default_applies() {
    let s = Server::start_with(&["--max-payload-bytes", "50000000"]);
    put(
        &s,
        "/v1/functions/small?memory_limit_mb=16",
        "conformance_guest",
    );
    s.deploy("roomy", "conformance_guest");
    // A 12 MB string and its JSON copy: over 16 MiB, well under the default 128 MiB.
    let input = scenario("big-output", json!({"bytes": 12_000_000}));
    let (_, small) = invoke_wait(&s, "small", &input, 60);
    assert_eq!(small["status"], "failed", "{}", small["error"]);
    let (_, roomy) = invoke_wait(&s, "roomy", &input, 60);
    assert_eq!(roomy["status"], "succeeded", "{}", roomy["error"]);
}

fn last_event(s: &Server, id: &str) -> Value {
    s.history(id).last().cloned().unwrap()
}

#[test]
fn executions_past_their_timeout_end_timed_out_suspended_or_running() {
    let s = Server::start();
    put(
        &s,
        "/v1/functions/slow?execution_timeout_secs=1",
        "conformance_guest",
    );
    let started = Instant::now();
    let suspended = s.invoke("slow", &scenario("wait", json!({"ms": 60_000})));
    let spinning = s.invoke("slow", &scenario("loop-forever", json!({})));
    for id in [&suspended, &spinning] {
        let ex = s.wait_done(id);
        assert_eq!(ex["status"], "timed_out", "{ex}");
        assert_eq!(ex["error"]["error_type"], "Execution.Timeout", "{ex}");
        let last = last_event(&s, id);
        assert_eq!(last["event_type"], "ExecutionTimedOut", "{last}");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(s.metric("durable_timers"), 0.0, "its timers are gone");
    assert_eq!(s.metric("durable_executions{status=\"timed_out\"}"), 2.0);
}

#[test]
fn an_execution_timeout_holds_across_a_crash() {
    let mut s = Server::start();
    put(
        &s,
        "/v1/functions/slow?execution_timeout_secs=2",
        "conformance_guest",
    );
    let id = s.invoke("slow", &scenario("wait", json!({"ms": 60_000})));
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    s.kill9();
    std::thread::sleep(Duration::from_secs(3));
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "timed_out", "{ex}");
    // It ended once: one terminal event.
    let ends = s
        .history(&id)
        .iter()
        .filter(|e| e["event_type"] == "ExecutionTimedOut")
        .count();
    assert_eq!(ends, 1);
}

#[test]
fn finished_executions_are_deleted_after_their_retention() {
    let s = Server::start();
    put(
        &s,
        "/v1/functions/brief?retention_secs=1",
        "conformance_guest",
    );
    s.deploy("kept", "conformance_guest");
    let key_input = scenario("echo", json!({"value": "k"}));
    let body = key_input.to_string().into_bytes();
    let keyed = |s: &Server| {
        let r = s
            .client()
            .post(format!("{}/v1/functions/brief/invoke?wait=30", s.url))
            .header("Idempotency-Key", "once")
            .body(body.clone())
            .send()
            .unwrap();
        r.json::<Value>().unwrap()
    };
    let first = keyed(&s);
    let first_id = first["execution_id"].as_str().unwrap().to_string();
    assert_eq!(first["status"], "succeeded", "{first}");
    let cb = s.invoke("brief", &scenario("callback", json!({})));
    let cb_id = s.callback_ids(&cb, 1).remove(0);
    s.post(&format!("/v1/callbacks/{cb_id}/succeed"), &json!("ok"));
    s.wait_done(&cb);
    let (_, kept) = invoke_wait(&s, "kept", &scenario("echo", json!({"value": 1})), 30);
    let kept = kept["execution_id"].as_str().unwrap().to_string();
    assert_eq!(s.metric("durable_executions{status=\"succeeded\"}"), 3.0);

    let deadline = Instant::now() + Duration::from_secs(20);
    while s.get(&format!("/v1/executions/{first_id}")).0 != 404
        || s.get(&format!("/v1/executions/{cb}")).0 != 404
    {
        assert!(Instant::now() < deadline, "not deleted after its retention");
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in ["history", "logs"] {
        assert_eq!(s.get(&format!("/v1/executions/{cb}/{path}")).0, 404);
    }
    // Its callback went with it; the other function's execution stays.
    let (st, _) = s.post(&format!("/v1/callbacks/{cb_id}/succeed"), &json!(1));
    assert_eq!(st, 404);
    assert_eq!(s.get(&format!("/v1/executions/{kept}")).0, 200);
    assert_eq!(s.metric("durable_executions{status=\"succeeded\"}"), 1.0);
    // The idempotency key was released with its execution.
    let again = keyed(&s);
    assert_ne!(again["execution_id"].as_str().unwrap(), first_id);
}

#[test]
fn execution_pages_cover_every_execution_exactly_once_newest_first() {
    let s = Server::start();
    s.deploy("a", "conformance_guest");
    s.deploy("b", "conformance_guest");
    let mut ids = Vec::new();
    for i in 0..23 {
        let f = if i % 3 == 0 { "b" } else { "a" };
        ids.push(s.invoke(f, &scenario("echo", json!({"value": i}))));
    }
    let waiting = s.invoke("a", &scenario("wait", json!({"ms": 60_000})));
    s.wait_status(&waiting, &["suspended"], Duration::from_secs(30));
    for id in &ids {
        s.wait_done(id);
    }
    ids.push(waiting.clone());

    let page_through = |query: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
            let (st, v) = s.get(&format!("/v1/executions?limit=5{query}{c}"));
            assert_eq!(st, 200, "{v}");
            let page = v["executions"].as_array().unwrap();
            assert!(page.len() <= 5);
            out.extend(
                page.iter()
                    .map(|e| e["execution_id"].as_str().unwrap().into()),
            );
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    };
    let all = page_through("");
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(all, expected, "every execution once, newest first");
    let of_b = page_through("&function=b");
    assert_eq!(of_b.len(), 8);
    assert_eq!(page_through("&status=suspended"), vec![waiting.clone()]);
    assert_eq!(page_through("&function=a&status=succeeded").len(), 15);
    for bad in ["status=sleeping", "cursor=xyz", "limit=-1"] {
        let (st, v) = s.get(&format!("/v1/executions?{bad}"));
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[test]
fn history_pages_join_to_the_whole_history() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let (_, ex) = invoke_wait(&s, "conf", &scenario("steps", json!({"count": 12})), 60);
    let id = ex["execution_id"].as_str().unwrap();
    let whole = s.history(id);
    assert!(whole.len() > 24, "{}", whole.len());
    let mut joined = Vec::new();
    let mut cursor = String::new();
    loop {
        let (st, v) = s.get(&format!("/v1/executions/{id}/history?limit=7{cursor}"));
        assert_eq!(st, 200, "{v}");
        joined.extend(v["events"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(joined, whole);
    let (st, _) = s.get(&format!("/v1/executions/{id}/history?cursor=abc"));
    assert_eq!(st, 400);
}

/// One parsed Server-Sent Events frame.
struct Frame {
    event: String,
    id: Option<String>,
    data: Value,
}

/// Read frames until the stream closes (or `limit` passes: then the test fails).
fn read_sse(key: &str, url: &str, last_event_id: Option<&str>, limit: Duration) -> Vec<Frame> {
    let client = reqwest::blocking::Client::builder()
        .timeout(limit)
        .build()
        .unwrap();
    let mut req = client.get(url).bearer_auth(key);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut frames = Vec::new();
    let (mut event, mut id, mut data) = (String::new(), None, String::new());
    for line in BufReader::new(resp).lines() {
        let line = line.expect("the stream ended cleanly, within the time limit");
        if line.is_empty() {
            if !data.is_empty() {
                frames.push(Frame {
                    event: std::mem::take(&mut event),
                    id: id.take(),
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    frames
}

#[test]
fn the_event_stream_delivers_history_live_in_order_and_ends_at_completion() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let id = s.invoke("conf", &scenario("waits", json!({"ms": [300, 300, 300]})));
    let url = format!("{}/v1/executions/{id}/events", s.url);
    let frames = read_sse(&s.admin_key, &url, None, Duration::from_secs(60));
    let (end, events) = frames.split_last().expect("frames");
    assert_eq!(end.event, "end");
    assert_eq!(end.data["status"], "succeeded", "{}", end.data);
    assert!(events.iter().all(|f| f.event == "history"));
    let streamed: Vec<Value> = events.iter().map(|f| f.data.clone()).collect();
    assert_eq!(streamed, s.history(&id), "the same events, in order");
    for (i, f) in events.iter().enumerate() {
        assert_eq!(f.id.as_deref(), Some((i + 1).to_string().as_str()));
    }

    // A finished execution: the whole history, then the end, at once. Resuming after an
    // event id (header or query) sends only what follows.
    let again = read_sse(&s.admin_key, &url, None, Duration::from_secs(10));
    assert_eq!(again.len(), frames.len());
    let resumed = read_sse(&s.admin_key, &url, Some("3"), Duration::from_secs(10));
    assert_eq!(resumed.len(), frames.len() - 3);
    assert_eq!(resumed[0].id.as_deref(), Some("4"));
    let by_query = read_sse(
        &s.admin_key,
        &format!("{url}?after=5"),
        None,
        Duration::from_secs(10),
    );
    assert_eq!(by_query.len(), frames.len() - 5);

    let (st, v) = s.get("/v1/executions/01ARZ3NDEKTSV4RRFFQ69G5FAV/events");
    assert_eq!(st, 404, "{v}");
    let (st, _) = s.get(&format!("/v1/executions/{id}/events?after=x"));
    assert_eq!(st, 400);
}

/// The endpoint rows of DESIGN.md section 4 (the contract): (method, path).
fn design_routes() -> Vec<(String, String)> {
    let design = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/DESIGN.md"),
    )
    .expect("../shared/DESIGN.md beside the repository");
    let section = design
        .split("## 4.")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("section 4");
    let mut out = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap();
        for route in cell.split(',') {
            let route = route.trim().trim_matches('`');
            let mut parts = route.split_whitespace();
            let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
                continue;
            };
            let path = path
                .split('?')
                .next()
                .unwrap()
                .replace("{callback_id}", "{id}");
            out.push((method.to_lowercase(), path));
        }
    }
    out
}

#[test]
fn the_openapi_description_covers_every_route_of_the_contract_and_each_is_served() {
    let s = Server::start();
    let (st, spec) = s.get("/v1/openapi.json");
    assert_eq!(st, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    let contract = design_routes();
    assert!(contract.len() >= 14, "{contract:?}");
    for (method, path) in &contract {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is in DESIGN.md but not in /v1/openapi.json"
        );
    }
    // Every described operation is served: no fallback 404, no 405.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{name}", "nosuchfn")
                .replace("{id}", "nosuchid");
            let body = (method != "get").then(|| b"{}".to_vec());
            let (st, v) = s.req(&method.to_uppercase(), &concrete, body);
            assert_ne!(st, 405, "{method} {path}");
            assert_ne!(
                v["error"]["message"], "no such route",
                "{method} {path} is described but not served"
            );
        }
    }
    let (st, v) = s.get("/v1/nothing-here");
    assert_eq!((st, &v["error"]["message"]), (404, &json!("no such route")));
    let (st, v) = s.get("/v1/functions/x/invoke");
    assert_eq!(
        (st, &v["error"]["code"]),
        (405, &json!("method_not_allowed")),
        "{v}"
    );
}

#[test]
fn an_oversized_callback_result_is_refused_and_the_callback_stays_pending() {
    let s = Server::start_with(&["--max-payload-bytes", "4096"]);
    s.deploy("conf", "conformance_guest");
    let id = s.invoke("conf", &scenario("callback", json!({})));
    let cb = s.callback_ids(&id, 1).remove(0);
    // The callback exists before the execution has finished suspending.
    s.wait_status(&id, &["suspended"], Duration::from_secs(10));
    let (st, v) = s.post(
        &format!("/v1/callbacks/{cb}/succeed"),
        &json!("x".repeat(5000)),
    );
    assert_eq!(
        (st, &v["error"]["code"]),
        (413, &json!("payload_too_large")),
        "{v}"
    );
    let (st, v) = s.post(
        &format!("/v1/callbacks/{cb}/fail"),
        &json!({"error_type": "Big", "error_message": "y".repeat(5000)}),
    );
    assert_eq!(st, 413, "{v}");
    assert_eq!(s.execution(&id)["status"], "suspended");
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!("small"));
    assert_eq!(st, 200, "{v}");
    let done = s.wait_done(&id);
    assert_eq!(done["output"], json!({"result": "small"}), "{done}");
}
