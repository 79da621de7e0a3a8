//! The Python examples (`examples/python/`, built with the Python SDK by
//! `scripts/build-guests.sh` into `target/wasm/python/`) end to end: real server, real HTTP,
//! a local mock for the external API, `kill -9` of the host in the middle. Each example
//! must record exactly the history of its Rust twin (same operations, ids, names, event
//! sequence), which every test checks by running both on the same server.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// The examples: (Rust component, Python component).
const EXAMPLES: [(&str, &str); 4] = [
    ("hello", "python/hello"),
    ("user_registration", "python/user_registration"),
    ("approval", "python/approval"),
    ("fan_out", "python/fan_out"),
];

/// Deploy both twins of `example` as `rust` and `python`.
fn deploy_twins(s: &Server, example: &str) {
    let (rust, python) = EXAMPLES
        .iter()
        .find(|(r, _)| *r == example)
        .expect("an example");
    s.deploy_precompiled("rust", rust);
    s.deploy_precompiled("python", python);
}

fn messages(s: &Server, id: &str) -> Vec<String> {
    s.logs(id)
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

/// Both executions' histories have the same shape, and the same results recorded in them;
/// returns the Python one.
fn same_history(s: &Server, rust: &str, python: &str) -> Vec<Value> {
    let (hr, hp) = (s.history(rust), s.history(python));
    assert_eq!(shape(&hp), shape(&hr), "python vs rust history");
    let results = |h: &[Value]| -> Vec<Value> {
        h.iter()
            .map(|e| e["details"]["result"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(results(&hp), results(&hr), "results recorded in history");
    hp
}

#[test]
fn python_hello_records_exactly_the_history_of_the_rust_hello() {
    let s = Server::start();
    deploy_twins(&s, "hello");
    let rust = s.invoke("rust", &json!({}));
    let python = s.invoke("python", &json!({}));

    // During the 1 s wait: suspended, nothing resident.
    s.wait_status(&python, &["suspended"], Duration::from_secs(30));
    let (r, p) = (s.wait_done(&rust), s.wait_done(&python));
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(p["output"], r["output"]);
    assert_eq!(
        p["output"],
        json!({"statusCode": 200, "body": "\"Hello from Durable Lambda!\""})
    );
    // The Rust hello's history is pinned event by event in tests/examples.rs.
    let h = same_history(&s, &rust, &python);
    assert_eq!(h.len(), 10, "{h:#?}");
    assert_eq!(h[3]["details"]["duration_ms"], 1000);
    // Replay-aware logging: each line once, as in Rust.
    assert_eq!(messages(&s, &python), messages(&s, &rust));
    assert_eq!(
        messages(&s, &python),
        ["Hello from step #1", "Waited for 1 second"]
    );
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
}

#[test]
fn python_hello_survives_kill9_during_its_wait() {
    let mut s = Server::start();
    deploy_twins(&s, "hello");
    let python = s.invoke("python", &json!({}));
    s.wait_status(&python, &["suspended"], Duration::from_secs(30));
    s.crash_and_restart();
    let p = s.wait_done(&python);
    assert_eq!(p["status"], "succeeded", "{p}");
    // The same history as an uninterrupted Rust run: the crash cost nothing.
    let rust = s.invoke("rust", &json!({}));
    s.wait_done(&rust);
    same_history(&s, &rust, &python);
    assert_eq!(
        messages(&s, &python),
        ["Hello from step #1", "Waited for 1 second"]
    );
}

fn registration_input(mock: &Mock, max_attempts: u32) -> Value {
    json!({
        "username": "taro",
        "email": "taro@example.com",
        "api_base_url": mock.url(),
        "poll_interval_seconds": 1,
        "max_attempts": max_attempts,
    })
}

#[test]
fn python_user_registration_polls_like_the_rust_one_and_survives_kill9() {
    let mock = Mock::start();
    mock.respond("/start-job", 200, r#"{"job_id": "job-42"}"#);
    mock.respond("/check-status/job-42", 202, r#"{"state": "running"}"#);
    let mut s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    deploy_twins(&s, "user_registration");
    let input = registration_input(&mock, 5);
    let rust = s.invoke("rust", &input);
    let python = s.invoke("python", &input);

    // Both polled once (202); the host dies while both wait for the next poll.
    mock.wait_count("/check-status/job-42", 2);
    s.wait_status(&python, &["suspended"], Duration::from_secs(30));
    s.crash_and_restart();
    mock.respond("/check-status/job-42", 200, r#"{"state": "done"}"#);
    let (r, p) = (s.wait_done(&rust), s.wait_done(&python));
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(p["output"], r["output"]);
    assert_eq!(p["output"]["status"], "completed");
    assert_eq!(
        p["output"]["jobResult"]["data"]["body"],
        json!({"state": "done"})
    );
    assert_eq!(p["output"]["attempts"], 2);
    // Each external call once per execution: no checkpointed step ran again.
    assert_eq!(mock.count("/start-job"), 2);
    assert_eq!(mock.count("/check-status/job-42"), 4);
    let bodies = mock.bodies("/start-job");
    assert_eq!(bodies[0], bodies[1], "the same request from both SDKs");
    same_history(&s, &rust, &python);
    assert_eq!(messages(&s, &python), messages(&s, &rust));
}

#[test]
fn python_user_registration_fails_with_the_same_errors_as_the_rust_one() {
    let mock = Mock::start();
    mock.respond("/start-job", 200, r#"{"job_id": "j"}"#);
    mock.respond("/check-status/j", 503, "busy");
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    deploy_twins(&s, "user_registration");
    let cases = [
        (
            json!({"username": "taro", "api_base_url": mock.url()}),
            "ValidationError",
        ),
        (registration_input(&mock, 2), "TimeoutError"),
    ];
    for (input, error_type) in cases {
        let rust = s.invoke("rust", &input);
        let python = s.invoke("python", &input);
        let (r, p) = (s.wait_done(&rust), s.wait_done(&python));
        assert_eq!(p["status"], "failed", "{p}");
        assert_eq!(p["error"]["error_type"], error_type, "{p}");
        assert_eq!(p["error"], r["error"]);
        same_history(&s, &rust, &python);
    }
}

#[test]
fn python_approval_waits_for_the_approver_across_kill9() {
    let mock = Mock::start();
    let mut s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    deploy_twins(&s, "approval");
    let input = |who: &str| json!({"request": {"amount": 100}, "notify_url": format!("{}/notify/{who}", mock.url())});
    let rust = s.invoke("rust", &input("rust"));
    let python = s.invoke("python", &input("python"));
    mock.wait_count("/notify/python", 1);
    mock.wait_count("/notify/rust", 1);
    s.wait_status(&python, &["suspended"], Duration::from_secs(30));
    s.wait_status(&rust, &["suspended"], Duration::from_secs(30));
    s.crash_and_restart();
    for who in ["rust", "python"] {
        let note = &mock.bodies(&format!("/notify/{who}"))[0];
        assert_eq!(note["request"], json!({"amount": 100}));
        let cb = note["callback_id"].as_str().unwrap();
        let (st, v) = s.post(
            &format!("/v1/callbacks/{cb}/succeed"),
            &json!({"approved": true, "by": who}),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (r, p) = (s.wait_done(&rust), s.wait_done(&python));
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(
        p["output"],
        json!({"request": {"amount": 100}, "approval": {"approved": true, "by": "python"}})
    );
    assert_eq!(r["output"]["request"], p["output"]["request"]);
    let (hr, hp) = (s.history(&rust), s.history(&python));
    assert_eq!(shape(&hp), shape(&hr));
    assert_eq!(mock.count("/notify/python"), 1, "the submitter ran once");
}

#[test]
fn python_approval_fails_when_rejected_or_timed_out_like_the_rust_one() {
    let s = Server::start();
    deploy_twins(&s, "approval");
    // Rejected by the approver.
    let mut ids = Vec::new();
    for f in ["rust", "python"] {
        let id = s.invoke(f, &json!({"request": "r"}));
        let cb = s.callback_ids(&id, 1).remove(0);
        // Suspended first, so that both histories have the same activations.
        s.wait_status(&id, &["suspended"], Duration::from_secs(30));
        let (st, _) = s.post(
            &format!("/v1/callbacks/{cb}/fail"),
            &json!({"error_type": "Rejected", "error_message": "no budget"}),
        );
        assert_eq!(st, 200);
        ids.push(id);
    }
    let (r, p) = (s.wait_done(&ids[0]), s.wait_done(&ids[1]));
    assert_eq!(p["status"], "failed");
    assert_eq!(p["error"], r["error"]);
    assert_eq!(p["error"]["error_type"], "Rejected");
    same_history(&s, &ids[0], &ids[1]);

    // Timed out.
    let rust = s.invoke("rust", &json!({"request": "r", "timeout_seconds": 1}));
    let python = s.invoke("python", &json!({"request": "r", "timeout_seconds": 1}));
    let (r, p) = (s.wait_done(&rust), s.wait_done(&python));
    assert_eq!(p["error"]["error_type"], "Callback.Timeout", "{p}");
    assert_eq!(p["error"]["error_type"], r["error"]["error_type"]);
    same_history(&s, &rust, &python);
}

#[test]
fn python_fan_out_maps_like_the_rust_one_and_survives_kill9() {
    let mut s = Server::start();
    deploy_twins(&s, "fan_out");
    let items: Vec<Value> = (0..6).map(|i| json!({"n": i})).collect();
    let want: Vec<Value> = items.iter().map(|x| json!({"item": x})).collect();
    // One branch at a time the history is deterministic: the same as Rust's, event for
    // event. Three at a time (each on its own instance) the branches' events interleave
    // in commit order: the same per branch.
    for (max_concurrency, exact) in [(1, true), (3, false)] {
        let input = json!({"items": items, "max_concurrency": max_concurrency, "work_ms": 30});
        let rust = s.invoke("rust", &input);
        let python = s.invoke("python", &input);
        let (r, p) = (s.wait_done(&rust), s.wait_done(&python));
        assert_eq!(p["status"], "succeeded", "{p}");
        assert_eq!(p["output"], r["output"]);
        assert_eq!(p["output"], json!(want));
        if exact {
            same_history(&s, &rust, &python);
        } else {
            let by_branch = |id: &str| {
                let mut v = shape(&s.history(id));
                // Stable: each branch's events keep their order.
                v.sort_by_key(|(_, op, _)| {
                    op.as_deref()
                        .map(|o| o.split('.').take(2).collect::<Vec<_>>().join("."))
                });
                v
            };
            assert_eq!(by_branch(&python), by_branch(&rust), "per branch");
        }
    }

    // kill -9 in the middle: the finished iterations record nothing again.
    let input = json!({"items": items, "max_concurrency": 2, "work_ms": 200});
    let id = s.invoke("python", &input);
    let before = s.wait_history(&id, |h| finished_branches(h).len() >= 2);
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!(want));
    let finished = assert_finished_branches_not_rerun(&before, &s.history(&id));
    assert!(finished < 6, "the crash came in the middle");
}

#[test]
fn the_same_bytes_uploaded_again_reuse_their_artifact_instead_of_compiling() {
    // A Python component takes seconds to compile: a second function (or tenant) with
    // the same bytes loads the verified artifact of the first.
    let s = Server::start();
    s.deploy("first", "python/hello");
    assert_eq!(s.metric("durable_compiles_total"), 1.0);
    s.deploy("second", "python/hello");
    assert_eq!(s.metric("durable_compiles_total"), 1.0, "no second compile");
    let id = s.invoke("second", &json!({}));
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    // Other bytes do compile.
    s.deploy("other", "python/approval");
    assert_eq!(s.metric("durable_compiles_total"), 2.0);
}

/// The README's Python example, as written: extracted from README.md, built with
/// `python -m durable.build` (the venv `scripts/build-guests.sh` made), deployed, and run
/// to both of the ends the README names.
#[test]
fn the_readme_python_example_builds_and_runs_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let code = readme
        .split("### In Python")
        .nth(1)
        .and_then(|s| s.split("```python\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README's Python example");
    guest("python/hello"); // the Python toolchain is in place
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), code).unwrap();
    let wasm = dir.path().join("app.wasm");
    let built = std::process::Command::new(root.join("target/python-venv/bin/python"))
        .args(["-m", "durable.build", "app", "-o"])
        .arg(&wasm)
        .current_dir(dir.path())
        .env("PYTHONPATH", root.join("guest-sdk/python/src"))
        .env("DURABLE_WIT", root.join("wit"))
        .status()
        .unwrap();
    assert!(
        built.success(),
        "durable.build failed: its errors are above"
    );

    let mock = Mock::start();
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    let (st, v) = s.req(
        "PUT",
        "/v1/functions/app",
        Some(std::fs::read(&wasm).unwrap()),
    );
    assert_eq!(st, 201, "{v}");
    let url = format!("{}/ask", mock.url());
    let id = s.invoke("app", &json!({"name": "ann", "approvals_url": url}));
    mock.wait_count("/ask", 1);
    let callback = mock.bodies("/ask")[0]["id"].as_str().unwrap().to_string();
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    let (st, v) = s.post(&format!("/v1/callbacks/{callback}/succeed"), &json!(true));
    assert_eq!(st, 200, "{v}");
    let ex = s.wait_done(&id);
    assert_eq!(
        ex["output"],
        json!({"user": "ann", "approved": true}),
        "{ex}"
    );
    let logs: Vec<Value> = s.logs(&id).iter().map(|l| l["message"].clone()).collect();
    assert_eq!(logs, [json!("ann: True")], "recorded once");

    let bad = s.invoke("app", &json!({"name": ""}));
    let ex = s.wait_done(&bad);
    assert_eq!(ex["error"]["error_type"], "ValidationError", "{ex}");
}
