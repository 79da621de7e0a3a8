//! Robustness end to end: bad uploads and bad requests get clear JSON errors, hostile guests
//! (runaway loops, memory bombs, panics, oversized payloads, non-determinism) fail cleanly
//! with the host's error types while the host keeps serving, outbound HTTP is allowlisted,
//! guest output is logged once across replays, and `/metrics` counts what happened.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// Assert an API error: HTTP status, `error.code`, and a message containing `needle`.
#[track_caller]
fn assert_api_error(got: (u16, Value), status: u16, code: &str, needle: &str) {
    let (st, v) = got;
    assert_eq!(st, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"));
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "message {msg:?} should mention {needle:?}"
    );
}

/// The error message of a failed execution, after checking its status and error type.
#[track_caller]
fn failed_with(ex: &Value, error_type: &str) -> String {
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["error"]["error_type"], error_type, "{ex}");
    ex["error"]["error_message"].as_str().unwrap().to_string()
}

/// Invoke the deployed conformance guest `conf` and wait until the execution is done.
fn run(s: &Server, name: &str, params: Value) -> (String, Value) {
    let id = s.invoke("conf", &scenario(name, params));
    let ex = s.wait_done(&id);
    (id, ex)
}

/// The events of `event_type` in a history.
fn events<'a>(h: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    h.iter().filter(|e| e["event_type"] == event_type).collect()
}

/// `durable_executions{status="..."}` for each of the six statuses, in a fixed order.
const STATUSES: [&str; 6] = [
    "running",
    "suspended",
    "succeeded",
    "failed",
    "timed_out",
    "stopped",
];

fn by_status(s: &Server) -> Vec<(String, f64)> {
    STATUSES
        .iter()
        .map(|st| {
            (
                st.to_string(),
                s.metric(&format!("durable_executions{{status=\"{st}\"}}")),
            )
        })
        .collect()
}

fn expect_by_status(counts: [f64; 6]) -> Vec<(String, f64)> {
    STATUSES
        .iter()
        .zip(counts)
        .map(|(st, n)| (st.to_string(), n))
        .collect()
}

/// How many executions `GET /v1/executions?status=` lists.
fn listed(s: &Server, status: &str) -> usize {
    let (st, v) = s.get(&format!("/v1/executions?status={status}"));
    assert_eq!(st, 200, "{v}");
    v["executions"].as_array().unwrap().len()
}

// ---------------------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------------------

#[test]
fn bad_uploads_are_rejected_with_a_reason_and_the_host_keeps_serving() {
    let hello = guest_bytes("hello");
    // Room for hello plus a small custom section, nothing more.
    let limit = hello.len() + 64;
    let s = Server::start_with(&["--max-upload-bytes", &limit.to_string()]);
    let put =
        |name: &str, body: Vec<u8>| s.req("PUT", &format!("/v1/functions/{name}"), Some(body));

    assert_api_error(
        put("bad", b"this is certainly not WebAssembly".to_vec()),
        400,
        "invalid_component",
        "not a WebAssembly binary",
    );
    assert_api_error(put("bad", Vec::new()), 400, "invalid_component", "empty");
    // A core module: the 8-byte header alone is a valid (empty) core module.
    assert_api_error(
        put("bad", b"\0asm\x01\0\0\0".to_vec()),
        400,
        "invalid_component",
        "core WebAssembly module, not a component",
    );
    // A truncated component: the header is fine, the body is cut.
    assert_api_error(
        put("bad", hello[..hello.len() / 2].to_vec()),
        400,
        "invalid_component",
        "invalid component:",
    );
    // A valid component of the wrong world: the empty component exports nothing.
    assert_api_error(
        put("bad", b"\0asm\x0d\0\x01\0".to_vec()),
        400,
        "invalid_component",
        "does not export the durable-function world",
    );
    // Over --max-upload-bytes.
    assert_api_error(
        put("bad", vec![0u8; limit + 1]),
        413,
        "payload_too_large",
        "too large",
    );
    // Invalid names, whatever the body.
    for name in ["bad$name", ".hidden", &"n".repeat(65)] {
        assert_api_error(
            put(name, hello.clone()),
            400,
            "bad_request",
            "invalid function name",
        );
    }
    // Nothing was stored for any of them.
    let (st, v) = s.get("/v1/functions/bad");
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    let (st, v) = s.get("/v1/functions");
    assert_eq!(st, 200);
    assert_eq!(v["functions"], json!([]), "{v}");

    // The host still serves: deploy; the same bytes again are the same version.
    let (st, v1) = put("hello", hello.clone());
    assert_eq!(st, 201, "{v1}");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["size_bytes"], hello.len());
    let (st, again) = put("hello", hello.clone());
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["version"], 1);
    assert_eq!(again["sha256"], v1["sha256"]);
    // Different bytes (hello plus a custom section named "test") are version 2.
    let mut other = hello.clone();
    other.extend_from_slice(&[0, 5, 4, b't', b'e', b's', b't']);
    let (st, v2) = put("hello", other);
    assert_eq!(st, 201, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_ne!(v2["sha256"], v1["sha256"]);
    let (st, f) = s.get("/v1/functions/hello");
    assert_eq!(st, 200);
    assert_eq!(f["latest_version"], 2);
    assert_eq!(f["versions"].as_array().unwrap().len(), 2);

    // And runs it.
    let (st, ex) = s.post("/v1/functions/hello/invoke?wait=30", &json!({}));
    assert_eq!(st, 200, "{ex}");
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["version"], 2);
    assert_eq!(
        ex["output"],
        json!({"statusCode": 200, "body": "\"Hello from Durable Lambda!\""})
    );
}

// ---------------------------------------------------------------------------------------
// Bad requests
// ---------------------------------------------------------------------------------------

#[test]
fn bad_requests_get_json_errors_with_the_right_status_and_code() {
    let s = Server::start_with(&["--max-payload-bytes", "4096"]);
    s.deploy("conf", "conformance_guest");
    let invoke = |path: &str, body: &[u8]| s.req("POST", path, Some(body.to_vec()));

    assert_api_error(
        invoke("/v1/functions/conf/invoke", br#"{"scenario": "echo", "#),
        400,
        "invalid_json",
        "not valid JSON",
    );
    assert_api_error(
        invoke("/v1/functions/conf/invoke", b"\xff\xfe"),
        400,
        "invalid_json",
        "not UTF-8",
    );
    let big = scenario("echo", json!({"value": "x".repeat(5000)}));
    assert_api_error(
        s.post("/v1/functions/conf/invoke", &big),
        413,
        "payload_too_large",
        "the limit is 4096 bytes",
    );
    assert_api_error(
        s.post("/v1/functions/nope/invoke", &json!({})),
        404,
        "not_found",
        "\"nope\"",
    );
    assert_api_error(
        invoke("/v1/functions/conf/invoke?wait=abc", b"{}"),
        400,
        "bad_request",
        "wait=\"abc\"",
    );
    assert_api_error(
        invoke("/v1/functions/conf/invoke?wait=-1", b"{}"),
        400,
        "bad_request",
        "expected a number of seconds",
    );
    // None of the rejected invocations created an execution.
    let (st, v) = s.get("/v1/executions");
    assert_eq!(st, 200);
    assert_eq!(v["executions"], json!([]), "{v}");

    // Unknown executions: a valid-looking ULID and garbage.
    for id in ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "garbage-id"] {
        for suffix in ["", "/history", "/logs"] {
            assert_api_error(
                s.get(&format!("/v1/executions/{id}{suffix}")),
                404,
                "not_found",
                id,
            );
        }
    }
    // Unknown routes.
    for path in ["/nope", "/v1/nope", "/v1/executions/x/y/z"] {
        assert_api_error(s.get(path), 404, "not_found", "no such route");
    }
    // Callbacks that do not exist.
    for action in ["succeed", "fail", "heartbeat"] {
        assert_api_error(
            s.post(
                &format!("/v1/callbacks/cb_0123456789abcdef/{action}"),
                &json!({}),
            ),
            404,
            "not_found",
            "cb_0123456789abcdef",
        );
    }

    // A real pending callback: malformed completions are rejected and change nothing.
    let id = s.invoke("conf", &scenario("callback", json!({"name": "cb"})));
    let cb = s.callback_ids(&id, 1).remove(0);
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    assert_api_error(
        invoke(&format!("/v1/callbacks/{cb}/fail"), b"not json"),
        400,
        "invalid_json",
        "not valid JSON",
    );
    assert_api_error(
        invoke(&format!("/v1/callbacks/{cb}/fail"), br#"{"error_type": 5}"#),
        400,
        "invalid_json",
        "error_type",
    );
    assert_api_error(
        invoke(&format!("/v1/callbacks/{cb}/succeed"), b"{oops"),
        400,
        "invalid_json",
        "not valid JSON",
    );
    assert_eq!(s.execution(&id)["status"], "suspended");
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!({"ok": 1}));
    assert_eq!(st, 200, "{v}");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({"result": {"ok": 1}}));
}

// ---------------------------------------------------------------------------------------
// Hostile guests
// ---------------------------------------------------------------------------------------

#[test]
fn hostile_guests_fail_cleanly_while_the_host_keeps_serving() {
    let s = Server::start_with(&[
        "--activation-timeout-secs",
        "2",
        "--memory-limit-mb",
        "32",
        "--max-payload-bytes",
        "4096",
    ]);
    s.deploy("conf", "conformance_guest");
    // Warm up (the first activation loads the component).
    let (_, ex) = run(&s, "echo", json!({"value": "warm"}));
    assert_eq!(ex["output"], "warm");

    // A runaway loop does not hold up other executions on the same server.
    let spin = s.invoke("conf", &scenario("loop-forever", json!(null)));
    let t0 = Instant::now();
    let (st, hello) = s.post(
        "/v1/functions/conf/invoke?wait=30",
        &scenario("bench-hello", json!(null)),
    );
    let took = t0.elapsed();
    assert_eq!(st, 200, "{hello}");
    assert_eq!(hello["status"], "succeeded", "{hello}");
    assert_eq!(
        hello["output"],
        json!({"statusCode": 200, "body": "\"Hello from Durable Lambda!\""})
    );
    assert_eq!(
        s.execution(&spin)["status"],
        "running",
        "bench-hello took {took:?}: it should finish while the loop still runs"
    );

    // loop-forever: stopped by the activation timeout.
    let ex = s.wait_done(&spin);
    let msg = failed_with(&ex, "Runtime.ActivationTimeout");
    assert!(msg.contains("ran longer than 2s"), "{msg}");
    let h = s.history(&spin);
    assert_eq!(
        types(&h),
        ["ExecutionStarted", "InvocationCompleted", "ExecutionFailed"]
    );
    assert_eq!(
        h[1]["details"]["error"]["error_type"],
        "Runtime.ActivationTimeout"
    );

    // One runaway guest at a time: see `as_many_runaway_guests_as_cores_do_not_freeze_the_host`.
    let in_step = s.invoke("conf", &scenario("loop-in-step", json!(null)));
    let bomb = s.invoke("conf", &scenario("memory-bomb", json!(null)));
    let panic = s.invoke("conf", &scenario("panic", json!(null)));
    let big_out = s.invoke("conf", &scenario("big-output", json!({"bytes": 10_000})));
    let big_step = s.invoke(
        "conf",
        &scenario("big-step-result", json!({"bytes": 10_000})),
    );

    // loop-in-step: a failed attempt of step "spin" (no retry), then the execution fails.
    let ex = s.wait_done(&in_step);
    failed_with(&ex, "Runtime.ActivationTimeout");
    let h = s.history(&in_step);
    assert_eq!(
        shape(&h),
        vec![
            ev("ExecutionStarted", None, None),
            ev("StepStarted", Some("1"), Some("spin")),
            ev("InvocationCompleted", None, None),
            ev("StepFailed", Some("1"), Some("spin")),
            ev("InvocationCompleted", None, None),
            ev("ExecutionFailed", None, None),
        ]
    );
    let failed = &h[3]["details"];
    assert_eq!(
        failed["error"]["error_type"], "Runtime.ActivationTimeout",
        "{failed}"
    );
    assert_eq!(failed["attempt"], 1);
    assert!(failed.get("next_attempt_delay_ms").is_none(), "{failed}");
    assert_eq!(
        h[2]["details"]["error"]["error_type"],
        "Runtime.ActivationTimeout"
    );

    // memory-bomb: a trap that says it was about memory.
    let ex = s.wait_done(&bomb);
    let msg = failed_with(&ex, "Runtime.Trap");
    assert!(msg.to_lowercase().contains("memory"), "{msg}");

    // panic: a trap; the panic message went to stderr and is in the logs.
    let ex = s.wait_done(&panic);
    failed_with(&ex, "Runtime.Trap");
    let logs = s.logs(&panic);
    assert!(
        logs.iter().any(|l| l["stream"] == "stderr"
            && l["message"]
                .as_str()
                .unwrap()
                .contains("deliberate panic outside any step")),
        "{logs:#?}"
    );

    // big-output: the output over the payload limit fails the execution.
    let ex = s.wait_done(&big_out);
    let msg = failed_with(&ex, "PayloadTooLarge");
    assert!(msg.contains("the limit is 4096 bytes"), "{msg}");
    assert_eq!(ex["output"], Value::Null);

    // big-step-result: a failed step attempt the guest catches.
    let ex = s.wait_done(&big_step);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"]["caught"]["error_type"], "PayloadTooLarge",
        "{ex}"
    );
    let h = s.history(&big_step);
    let failed = events(&h, "StepFailed");
    assert_eq!(failed.len(), 1, "{h:#?}");
    assert_eq!(failed[0]["name"], "big");
    assert_eq!(
        failed[0]["details"]["error"]["error_type"],
        "PayloadTooLarge"
    );
    assert!(events(&h, "StepSucceeded").is_empty(), "{h:#?}");

    // Still serving; nothing resident; the counts add up.
    let (_, ex) = run(&s, "echo", json!({"value": "still here"}));
    assert_eq!(ex["output"], "still here");
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
    // echo x2, bench-hello, big-step-result succeeded; five failed.
    assert_eq!(
        by_status(&s),
        expect_by_status([0.0, 0.0, 4.0, 5.0, 0.0, 0.0])
    );
}

#[test]
fn traps_total_counts_activation_timeouts_as_its_help_text_says() {
    let s = Server::start_with(&["--activation-timeout-secs", "1"]);
    s.deploy("conf", "conformance_guest");
    let (_, ex) = run(&s, "panic", json!(null));
    failed_with(&ex, "Runtime.Trap");
    assert_eq!(s.metric("durable_traps_total"), 1.0);
    let (_, ex) = run(&s, "loop-forever", json!(null));
    failed_with(&ex, "Runtime.ActivationTimeout");
    let text = s
        .client()
        .get(format!("{}/metrics", s.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.contains("# HELP durable_traps_total Activations that ended in a trap or timeout."),
        "{text}"
    );
    assert_eq!(
        s.metric("durable_traps_total"),
        2.0,
        "the activation timeout is not counted in durable_traps_total"
    );
}

/// A GET with a short timeout: `None` when the host does not answer in time.
fn probe(s: &Server, path: &str, timeout: Duration) -> Option<(u16, Value)> {
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}{path}", s.url))
        .bearer_auth(&s.admin_key)
        .send()
        .ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[test]
fn as_many_runaway_guests_as_cores_do_not_freeze_the_host() {
    // The host's runtime has one worker thread per core by default; start that many loops.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let s = Server::start_with(&["--activation-timeout-secs", "2"]);
    s.deploy("conf", "conformance_guest");
    let (_, ex) = run(&s, "echo", json!({"value": "warm"}));
    assert_eq!(ex["status"], "succeeded", "{ex}");

    let spins: Vec<String> = (0..cores)
        .map(|_| s.invoke("conf", &scenario("loop-forever", json!(null))))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let health = probe(&s, "/healthz", Duration::from_secs(5));
    assert_eq!(
        health.map(|h| h.0),
        Some(200),
        "with {cores} runaway guests the host does not answer /healthz within 5 s"
    );
    // Each loop is stopped by the 2 s activation timeout.
    let deadline = Instant::now() + Duration::from_secs(15);
    for id in &spins {
        loop {
            let got = probe(&s, &format!("/v1/executions/{id}"), Duration::from_secs(5));
            let ex = got.map(|g| g.1).unwrap_or(Value::Null);
            if ex["status"] == "failed" {
                assert_eq!(ex["error"]["error_type"], "Runtime.ActivationTimeout");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not stopped by the 2 s activation timeout after 15 s: {ex}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
}

// ---------------------------------------------------------------------------------------
// Outbound HTTP
// ---------------------------------------------------------------------------------------

#[test]
fn outbound_http_reaches_only_allowlisted_hosts() {
    let allowed = Mock::start();
    let denied = Mock::start();
    allowed.respond("/hello", 200, "hi from the mock");
    let s = Server::start_with(&["--allow-outbound", &allowed.allow()]);
    s.deploy("conf", "conformance_guest");

    let url = format!("{}/secret", denied.url());
    let (id, ex) = run(&s, "step-http", json!({"url": url, "method": "GET"}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let msg = ex["output"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{ex}"));
    assert!(msg.contains("HttpRequestDenied"), "{msg}");
    assert!(msg.contains(&url), "{msg}");
    assert!(denied.hits.lock().unwrap().is_empty(), "the request left");
    let h = s.history(&id);
    assert_eq!(
        events(&h, "StepSucceeded")[0]["details"]["result"],
        ex["output"]
    );

    let (_, ex) = run(
        &s,
        "step-http",
        json!({"url": format!("{}/hello", allowed.url()), "method": "POST", "body": {"a": 1}}),
    );
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"status": 200, "body": "hi from the mock"})
    );
    assert_eq!(allowed.count("/hello"), 1);
    assert_eq!(allowed.bodies("/hello"), [json!({"a": 1})]);
    assert!(denied.hits.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Non-determinism, explicit failures
// ---------------------------------------------------------------------------------------

/// The distinct `random-<digits>` names in a message, in order of appearance.
fn random_names(msg: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, _) in msg.match_indices("random-") {
        let digits: String = msg[i + 7..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let name = format!("random-{digits}");
        if !digits.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

#[test]
fn a_nondeterministic_replay_fails_naming_both_sides_and_fail_reports_the_given_error() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");

    let (id, ex) = run(&s, "nondeterministic", json!(null));
    let msg = failed_with(&ex, "NonDeterministicExecution");
    let h = s.history(&id);
    let started = events(&h, "StepStarted");
    assert_eq!(started.len(), 1, "{h:#?}");
    let recorded = started[0]["name"].as_str().unwrap().to_string();
    assert!(recorded.starts_with("random-"), "{recorded}");
    let names = random_names(&msg);
    assert_eq!(names.len(), 2, "both step names in {msg:?}");
    assert_eq!(names[0], recorded, "the journal's side first: {msg:?}");
    assert!(msg.contains("operation 1"), "{msg}");
    assert_eq!(
        types(&h).last().map(String::as_str),
        Some("ExecutionFailed")
    );
    assert!(
        events(&h, "WaitSucceeded").len() == 1,
        "it failed on the replay after the wait: {h:#?}"
    );

    let (id, ex) = run(
        &s,
        "fail",
        json!({"error_type": "Custom.Thing", "message": "it broke: 42 \"quoted\""}),
    );
    assert_eq!(ex["status"], "failed");
    assert_eq!(
        ex["error"],
        json!({"error_type": "Custom.Thing", "error_message": "it broke: 42 \"quoted\""})
    );
    let h = s.history(&id);
    assert_eq!(
        types(&h),
        ["ExecutionStarted", "InvocationCompleted", "ExecutionFailed"]
    );
    assert_eq!(h[2]["details"]["error"], ex["error"]);
    assert!(h[1]["details"].get("error").is_none(), "{h:#?}");
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

#[test]
fn guest_output_and_logs_are_recorded_once_across_replays() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");

    let (id, ex) = run(&s, "stdout", json!({"text": "printed-line"}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "printed");
    let h = s.history(&id);
    assert_eq!(
        events(&h, "InvocationCompleted").len(),
        2,
        "the guest ran again after its wait: {h:#?}"
    );
    let logs: Vec<(String, String)> = s
        .logs(&id)
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_string(),
                l["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        logs,
        [
            ("stdout".to_string(), "printed-line".to_string()),
            ("stderr".to_string(), "err:printed-line".to_string()),
        ]
    );

    let (id, ex) = run(&s, "log-replay", json!({"marker": "mk", "wait_ms": 50}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "logged");
    assert_eq!(events(&s.history(&id), "InvocationCompleted").len(), 2);
    let logs = s.logs(&id);
    let lines: Vec<(&str, &str, &str)> = logs
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap(),
                l["level"].as_str().unwrap(),
                l["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [("log", "info", "mk-before"), ("log", "info", "mk-after")]
    );
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

#[test]
fn metrics_count_executions_by_status_and_resident_instances() {
    let mock = Mock::start();
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    assert_eq!(by_status(&s), expect_by_status([0.0; 6]));
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
    s.deploy("conf", "conformance_guest");

    for v in [1, 2] {
        let (_, ex) = run(&s, "echo", json!({"value": v}));
        assert_eq!(ex["status"], "succeeded", "{ex}");
    }
    let (_, ex) = run(
        &s,
        "fail",
        json!({"error_type": "Boom", "message": "expected"}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    let waiting = s.invoke("conf", &scenario("callback", json!({"name": "hold"})));
    let cb = s.callback_ids(&waiting, 1).remove(0);
    s.wait_status(&waiting, &["suspended"], Duration::from_secs(30));
    // Running: a step blocked in an outbound request the mock holds.
    let busy = s.invoke(
        "conf",
        &scenario(
            "step-http",
            json!({"url": format!("{}/slow", mock.url()), "method": "POST"}),
        ),
    );
    mock.wait_count("/slow", 1);
    assert_eq!(s.execution(&busy)["status"], "running");

    assert_eq!(
        by_status(&s),
        expect_by_status([1.0, 1.0, 2.0, 1.0, 0.0, 0.0])
    );
    assert_eq!(s.metric("durable_resident_instances"), 1.0);
    for (st, n) in [
        ("running", 1),
        ("suspended", 1),
        ("succeeded", 2),
        ("failed", 1),
    ] {
        assert_eq!(listed(&s, st), n, "{st}");
    }

    mock.release_slow();
    let ex = s.wait_done(&busy);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"]["status"], 200);
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!("go"));
    assert_eq!(st, 200, "{v}");
    let ex = s.wait_done(&waiting);
    assert_eq!(ex["output"], json!({"result": "go"}));

    assert_eq!(
        by_status(&s),
        expect_by_status([0.0, 0.0, 4.0, 1.0, 0.0, 0.0])
    );
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
    assert_eq!(listed(&s, "succeeded"), 4);
    assert_eq!(listed(&s, "running"), 0);
}

/// POST an invoke with an `Idempotency-Key`.
fn invoke_with_key(s: &Server, path: &str, key: &str, body: &str) -> (u16, serde_json::Value) {
    let resp = s
        .client()
        .post(format!("{}{path}", s.url))
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

#[test]
fn an_idempotency_key_returns_the_same_execution_and_refuses_a_different_input() {
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let path = "/v1/functions/conf/invoke";
    let (st, first) = invoke_with_key(&s, path, "order-1", r#"{"scenario":"echo","value":1}"#);
    assert_eq!(st, 202, "{first}");
    let id = first["execution_id"].as_str().unwrap().to_string();

    // Same key, same JSON value (other spacing and key order): the same execution.
    let (st, again) = invoke_with_key(
        &s,
        &format!("{path}?wait=30"),
        "order-1",
        r#"{ "value": 1, "scenario": "echo" }"#,
    );
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["execution_id"], id.as_str());
    assert_eq!(again["output"], 1);

    // Same key, different input: 409, and no execution is created.
    let (st, conflict) = invoke_with_key(&s, path, "order-1", r#"{"scenario":"echo","value":2}"#);
    assert_eq!(st, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "conflict");
    let (_, list) = s.get("/v1/executions");
    assert_eq!(list["executions"].as_array().unwrap().len(), 1);

    // Another key: another execution. A bad key: 400.
    let (st, other) = invoke_with_key(&s, path, "order-2", r#"{"scenario":"echo","value":1}"#);
    assert_eq!(st, 202);
    assert_ne!(other["execution_id"], id.as_str());
    let (st, bad) = invoke_with_key(&s, path, &"k".repeat(300), "{}");
    assert_eq!(st, 400, "{bad}");

    // The claim is durable: after kill -9 the key still names the same execution.
    s.crash_and_restart();
    let (st, after) = invoke_with_key(&s, path, "order-1", r#"{"scenario":"echo","value":1}"#);
    assert_eq!(st, 200, "{after}");
    assert_eq!(after["execution_id"], id.as_str());
}
