//! Recovery end to end (DESIGN 9): redrive in place, fork from a checkpoint, automatic
//! redrive (`redrive_policy`) and bulk redrive jobs, against a real server, real guests and
//! a local mock API that counts what each step asked of it (so "not run again" is measured,
//! not assumed). The guest is the conformance guest's `http-chain`: one step per name,
//! each POSTing `/{name}` and failing with `HttpError` unless the answer is 2xx.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{scenario, types, Mock, Server};

fn chain(mock: &Mock, prefix: &str, steps: &[&str]) -> Value {
    let names: Vec<String> = steps.iter().map(|s| format!("{prefix}{s}")).collect();
    scenario("http-chain", json!({"url": mock.url(), "steps": names}))
}

fn start(mock: &Mock, extra: &[&str]) -> Server {
    let mut args = vec!["--allow-outbound", &mock.addr];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

fn redrive(s: &Server, id: &str, body: Value) -> (u16, Value) {
    s.post(&format!("/v1/executions/{id}/redrive"), &body)
}

fn failed(s: &Server, id: &str) -> Value {
    let v = s.wait_done(id);
    assert_eq!(v["status"], "failed", "{v}");
    v
}

/// Poll `get` until `done` holds for its value (bounded).
fn wait_for(what: &str, mut get: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = get();
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; last {v}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_redriven_execution_reruns_only_what_failed_and_succeeds() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("chain", "conformance_guest");
    mock.respond("/r-b", 500, "down");
    let id = s.invoke("chain", &chain(&mock, "r-", &["a", "b", "c"]));
    let v = failed(&s, &id);
    assert_eq!(v["error"]["error_type"], "HttpError", "{v}");
    assert_eq!(v["redrive_count"], 0);
    let before = s.history(&id).len();

    mock.respond("/r-b", 200, "{}");
    let (st, v) = redrive(&s, &id, json!({}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["redrive_count"].as_u64()),
        (Some("running"), Some(1))
    );
    assert_eq!(
        v["error"],
        Value::Null,
        "a running execution shows no error: {v}"
    );
    let v = s.wait_done(&id);
    assert_eq!(v["status"], "succeeded", "{v}");
    assert_eq!(v["output"], json!({"r-a": 200, "r-b": 200, "r-c": 200}));
    assert_eq!(v["redrive_count"], 1);
    // The step that had succeeded replayed; the failed one and the rest ran.
    let counts: Vec<usize> = ["/r-a", "/r-b", "/r-c"]
        .iter()
        .map(|p| mock.count(p))
        .collect();
    assert_eq!(counts, [1, 2, 1]);

    let h = s.history(&id);
    let at = h
        .iter()
        .position(|e| e["event_type"] == "ExecutionRedriven")
        .expect("ExecutionRedriven in history");
    assert_eq!(at, before, "appended after the failure");
    let d = &h[at]["details"];
    assert_eq!(
        (
            &d["trigger"],
            &d["from_version"],
            &d["to_version"],
            &d["redrive_count"]
        ),
        (&json!("request"), &json!(1), &json!(1), &json!(1)),
        "{d}"
    );
    assert!(
        d["key_id"].as_str().is_some_and(|k| !k.is_empty()),
        "by which key: {d}"
    );
    // The failed step starts again at attempt 1 (a fresh budget).
    let restarted = &h[at + 1..]
        .iter()
        .find(|e| e["event_type"] == "StepStarted")
        .unwrap();
    assert_eq!(
        (&restarted["id"], &restarted["details"]["attempt"]),
        (&json!("2"), &json!(1))
    );
    assert_eq!(
        types(&h).last().map(String::as_str),
        Some("ExecutionSucceeded")
    );
}

#[test]
fn only_a_failed_timed_out_or_stopped_execution_of_ones_own_tenant_is_redriven() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("chain", "conformance_guest");
    // Running: its step holds a slow request.
    let running = s.invoke(
        "chain",
        &scenario("crash-probe", json!({"url": mock.url()})),
    );
    mock.wait_count("/slow", 1);
    let succeeded = s.invoke("chain", &chain(&mock, "ok-", &["a"]));
    assert_eq!(s.wait_done(&succeeded)["status"], "succeeded");
    // Stopped and timed out are redriven; the stopped one's leftover stop does not stop it.
    let stopped = s.invoke("chain", &scenario("wait", json!({"ms": 60_000})));
    s.wait_status(&stopped, &["suspended"], Duration::from_secs(30));
    let (st, v) = s.post(&format!("/v1/executions/{stopped}/stop"), &json!({}));
    assert_eq!(st, 200, "{v}");
    s.deploy("short", "conformance_guest");
    let (st, v) = s.req(
        "PATCH",
        "/v1/functions/short",
        Some(br#"{"execution_timeout_secs": 1}"#.to_vec()),
    );
    assert_eq!(st, 200, "{v}");
    let timed_out = s.invoke("short", &scenario("wait", json!({"ms": 5_000})));
    assert_eq!(s.wait_done(&timed_out)["status"], "timed_out");
    s.post("/v1/tenants", &json!({"name": "other"}));
    let (st, v) = s.post(
        "/v1/tenants/other/keys",
        &json!({"role": "owner", "name": "redrive test"}),
    );
    assert_eq!(st, 201, "{v}");
    let other = v["key"].as_str().unwrap().to_string();

    // (who, execution, body, status, part of the message)
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let cases: [(Option<&str>, &str, Value, u16, &str); 7] = [
        (None, &running, json!({}), 409, "is running"),
        (None, &succeeded, json!({}), 409, "is succeeded"),
        (None, unknown, json!({}), 404, "not found"),
        (Some(&other), &stopped, json!({}), 404, "not found"),
        (
            None,
            &stopped,
            json!({"version": 7}),
            400,
            "has no version 7",
        ),
        (
            None,
            &stopped,
            json!({"version": "newest"}),
            400,
            "expected \"pinned\"",
        ),
        (None, &stopped, json!({"versions": 1}), 400, "unknown field"),
    ];
    for (key, id, body, status, message) in cases {
        let path = format!("/v1/executions/{id}/redrive");
        let bytes = Some(body.to_string().into_bytes());
        let (st, v) = match key {
            None => s.req("POST", &path, bytes),
            Some(k) => s.req_as(Some(k), "POST", &path, bytes),
        };
        assert_eq!(st, status, "{id} {body}: {v}");
        let m = v["error"]["message"].as_str().unwrap_or("");
        assert!(m.contains(message), "{id} {body}: {v}");
    }
    // Nothing was written by the refusals.
    assert_eq!(s.execution(&stopped)["status"], "stopped");
    assert_eq!(s.execution(&stopped)["redrive_count"], 0);

    // The stopped one runs again (its wait's end is still ahead: it suspends on it), and
    // the timed-out one gets a fresh timeout (and times out again, after it).
    for (id, back) in [(&stopped, "suspended"), (&timed_out, "timed_out")] {
        let (st, v) = s.req("POST", &format!("/v1/executions/{id}/redrive"), None);
        assert_eq!(st, 200, "{v}");
        let v = s.wait_status(id, &[back], Duration::from_secs(30));
        assert_eq!(v["redrive_count"], 1, "{v}");
    }
    let h = s.history(&timed_out);
    let timeouts: Vec<&Value> = h
        .iter()
        .filter(|e| e["event_type"] == "ExecutionTimedOut")
        .map(|e| &e["details"]["error"]["error_message"])
        .collect();
    assert_eq!(timeouts.len(), 2, "{h:#?}");
    // The second timeout is the fresh one, counted from the redrive.
    for m in timeouts {
        let m = m.as_str().unwrap_or("");
        assert!(m.contains("within its timeout of 1000 ms"), "{m}");
    }
    mock.release_slow();
    s.wait_done(&running);
}

#[test]
fn a_redrive_onto_a_divergent_version_fails_as_non_deterministic_and_loses_nothing() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("div", "conformance_guest");
    mock.respond("/d-b", 500, "down");
    let id = s.invoke("div", &chain(&mock, "d-", &["a", "b"]));
    failed(&s, &id);
    let v = s.deploy("div", "hello");
    assert_eq!(v["version"], 2, "{v}");

    let (st, v) = redrive(&s, &id, json!({"version": "latest"}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["version"], 2);
    let v = failed(&s, &id);
    assert_eq!(v["error"]["error_type"], "NonDeterministicExecution", "{v}");
    let message = v["error"]["message"]
        .as_str()
        .or(v["error"]["error_message"].as_str());
    assert!(message.unwrap_or("").contains("operation 1"), "{v}");
    assert_eq!(v["version"], 2);

    // Nothing was lost: back on version 1, with the API fixed, it completes, and step a
    // still replays.
    mock.respond("/d-b", 200, "{}");
    let (st, v) = redrive(&s, &id, json!({"version": 1}));
    assert_eq!(st, 200, "{v}");
    let v = s.wait_done(&id);
    assert_eq!(
        (v["status"].as_str(), v["version"].as_u64()),
        (Some("succeeded"), Some(1)),
        "{v}"
    );
    assert_eq!(v["redrive_count"], 2);
    assert_eq!((mock.count("/d-a"), mock.count("/d-b")), (1, 2));
    let h = s.history(&id);
    let versions: Vec<(Value, Value)> = h
        .iter()
        .filter(|e| e["event_type"] == "ExecutionRedriven")
        .map(|e| {
            (
                e["details"]["from_version"].clone(),
                e["details"]["to_version"].clone(),
            )
        })
        .collect();
    assert_eq!(versions, [(json!(1), json!(2)), (json!(2), json!(1))]);
}

#[test]
fn a_fork_copies_the_history_before_its_cut_and_reruns_only_from_there() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("fork", "conformance_guest");
    mock.respond("/f-c", 500, "down");
    let id = s.invoke("fork", &chain(&mock, "f-", &["a", "b", "c"]));
    failed(&s, &id);
    let original = s.history(&id);
    mock.respond("/f-c", 200, "{}");

    // (request, the mock paths the fork calls again, its output)
    let cases: [(Value, [usize; 3]); 4] = [
        // Default: from the operation that failed (c).
        (json!({}), [0, 0, 1]),
        (json!({"from_operation": "2"}), [0, 1, 1]),
        (
            json!({"from_operation": "1", "version": "latest"}),
            [1, 1, 1],
        ),
        (
            json!({"from_operation": "3", "input": chain(&mock, "f-", &["a", "b", "c"])}),
            [0, 0, 1],
        ),
    ];
    for (body, again) in cases {
        let before: Vec<usize> = ["/f-a", "/f-b", "/f-c"]
            .iter()
            .map(|p| mock.count(p))
            .collect();
        let (st, v) = s.post(&format!("/v1/executions/{id}/fork"), &body);
        assert_eq!(st, 201, "{body}: {v}");
        let fork = v["execution_id"].as_str().unwrap().to_string();
        assert_ne!(fork, id);
        assert_eq!(v["forked_from"], json!(id), "{v}");
        let v = s.wait_done(&fork);
        assert_eq!(v["status"], "succeeded", "{body}: {v}");
        assert_eq!(
            v["output"],
            json!({"f-a": 200, "f-b": 200, "f-c": 200}),
            "{body}"
        );
        let after: Vec<usize> = ["/f-a", "/f-b", "/f-c"]
            .iter()
            .map(|p| mock.count(p))
            .collect();
        let ran: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        assert_eq!(ran, again, "{body}");
        // Its history starts with the copy.
        let h = s.history(&fork);
        assert_eq!(h[0]["event_type"], "ExecutionStarted");
        let copied = 2 * (3 - again.iter().sum::<usize>());
        for (n, e) in h[1..=copied].iter().enumerate() {
            assert_eq!(e["event_type"], original[n + 1]["event_type"], "{body}");
            assert_eq!(e["id"], original[n + 1]["id"], "{body}");
        }
    }
    // The original is untouched.
    assert_eq!(s.history(&id), original);
    assert_eq!(s.execution(&id)["status"], "failed");
    let (st, v) = s.post(
        &format!("/v1/executions/{id}/fork"),
        &json!({"from_operation": "9"}),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"9\" is not in its history"));
}

#[test]
fn an_automatic_redrive_happens_max_redrives_times_then_one_failed_delivery() {
    let mock = Mock::start();
    let s = start(&mock, &["--webhook-retry-schedule", "100ms"]);
    s.deploy("auto", "conformance_guest");
    let policy = json!({"redrive_policy": {"max_redrives": 2, "delay_secs": 1}});
    let (st, v) = s.req(
        "PATCH",
        "/v1/functions/auto",
        Some(policy.to_string().into_bytes()),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["settings"]["redrive_policy"], policy["redrive_policy"],
        "{v}"
    );
    let hook = json!({"url": format!("{}/hook", mock.url()), "events": ["execution.failed", "execution.redriven"]});
    let (st, v) = s.post("/v1/webhooks", &hook);
    assert_eq!(st, 201, "{v}");
    mock.respond("/auto-b", 500, "down");
    let id = s.invoke("auto", &chain(&mock, "auto-", &["a", "b"]));

    // Two redrives, each after its delay, then the final failure.
    mock.wait_count("/hook", 3);
    let v = wait_for(
        "the last failure",
        || s.execution(&id),
        |v| v["status"] == "failed" && v["redrive_count"] == 2,
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        s.execution(&id)["redrive_count"],
        2,
        "no third redrive: {v}"
    );
    assert_eq!((mock.count("/auto-a"), mock.count("/auto-b")), (1, 3));
    let got: Vec<(String, u64)> = mock
        .bodies("/hook")
        .iter()
        .map(|b| {
            assert_eq!(b["data"]["execution_id"], json!(id), "{b}");
            (
                b["type"].as_str().unwrap().to_string(),
                b["data"]["redrive_count"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("execution.redriven".to_string(), 1),
        ("execution.redriven".to_string(), 2),
        ("execution.failed".to_string(), 2),
    ];
    assert_eq!(got, expected);
    // Each redrive came at least its delay after the failure before it.
    let h = s.history(&id);
    let at = |t: &str| -> Vec<u64> {
        h.iter()
            .filter(|e| e["event_type"] == t)
            .map(|e| {
                let ts = e["timestamp"].as_str().unwrap();
                let t =
                    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                        .unwrap();
                (t.unix_timestamp_nanos() / 1_000_000) as u64
            })
            .collect()
    };
    let (fails, redrives) = (at("ExecutionFailed"), at("ExecutionRedriven"));
    assert_eq!((fails.len(), redrives.len()), (3, 2));
    for (f, r) in fails.iter().zip(&redrives) {
        assert!(r - f >= 1000, "redriven {} ms after the failure", r - f);
    }
    let triggers: Vec<&Value> = h
        .iter()
        .filter(|e| e["event_type"] == "ExecutionRedriven")
        .map(|e| &e["details"]["trigger"])
        .collect();
    assert_eq!(
        triggers,
        [&json!("redrive_policy"), &json!("redrive_policy")]
    );

    // A failure whose redrive cannot happen (its function was deleted meanwhile) is
    // notified when the redrive is refused: it is not silent.
    s.deploy("gone", "conformance_guest");
    let (st, v) = s.req(
        "PATCH",
        "/v1/functions/gone",
        Some(policy.to_string().into_bytes()),
    );
    assert_eq!(st, 200, "{v}");
    let id = s.invoke("gone", &chain(&mock, "auto-", &["b"]));
    failed(&s, &id);
    let (st, v) = s.req("DELETE", "/v1/functions/gone", None);
    assert_eq!(st, 204, "{v}");
    mock.wait_count("/hook", 4);
    let last = mock.bodies("/hook").pop().unwrap();
    assert_eq!(
        (&last["type"], &last["data"]["execution_id"]),
        (&json!("execution.failed"), &json!(id))
    );
    assert_eq!(s.execution(&id)["redrive_count"], 0);
}

fn job(s: &Server, id: &str) -> Value {
    let (st, v) = s.get(&format!("/v1/jobs/{id}"));
    assert_eq!(st, 200, "{v}");
    v
}

#[test]
fn a_bulk_redrive_of_200_failed_executions_survives_kill_9_and_redrives_each_once() {
    const N: usize = 200;
    let mock = Mock::start();
    let mut s = start(&mock, &[]);
    s.deploy("bulk", "conformance_guest");
    s.deploy("other", "conformance_guest");
    mock.respond("/bulk-b", 500, "down");
    let ids: Vec<String> = (0..N)
        .map(|_| s.invoke("bulk", &chain(&mock, "bulk-", &["a", "b"])))
        .collect();
    // One failed execution of another function, which the job must not touch.
    let other = s.invoke("other", &chain(&mock, "bulk-", &["b"]));
    for id in ids.iter().chain([&other]) {
        failed(&s, id);
    }
    mock.respond("/bulk-b", 200, "{}");

    // Bad requests first: (body, status, part of the message).
    let cases: [(Value, u16, &str); 4] = [
        (
            json!({"function": "bulk", "status": "running"}),
            400,
            "only failed",
        ),
        (
            json!({"function": "nope", "status": "failed"}),
            404,
            "not found",
        ),
        (
            json!({"function": "bulk", "status": "failed", "per_second": 0}),
            400,
            "expected 0.01 to 100000",
        ),
        (json!({"status": "failed"}), 400, "missing field `function`"),
    ];
    for (body, status, message) in cases {
        let (st, v) = s.post("/v1/executions/redrive", &body);
        assert_eq!(st, status, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{v}"
        );
    }
    let (st, v) = s.get("/v1/jobs/job_01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert_eq!(st, 404, "{v}");

    let started = Instant::now();
    let (st, v) = s.post(
        "/v1/executions/redrive",
        &json!({"function": "bulk", "status": "failed", "error_type": "HttpError", "per_second": 100}),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        (v["matched"].as_u64(), v["status"].as_str()),
        (Some(N as u64), Some("running"))
    );
    let job_id = v["job_id"].as_str().unwrap().to_string();
    // Kill -9 in the middle.
    let mid = wait_for(
        "some progress",
        || job(&s, &job_id),
        |j| j["done"].as_u64() >= Some(40),
    );
    assert!(
        mid["done"].as_u64().unwrap() < N as u64,
        "the job finished before the kill: {mid}"
    );
    s.crash_and_restart();
    let end = wait_for(
        "the job's end",
        || job(&s, &job_id),
        |j| j["status"] == "succeeded",
    );
    let elapsed = started.elapsed();
    assert_eq!(
        (end["done"].as_u64(), end["failed"].as_u64()),
        (Some(N as u64), Some(0)),
        "{end}"
    );
    let (st, list) = s.get("/v1/jobs");
    assert_eq!(st, 200);
    assert_eq!(list["jobs"][0]["job_id"], json!(job_id), "{list}");

    for id in &ids {
        let v = s.wait_done(id);
        assert_eq!(
            (v["status"].as_str(), v["redrive_count"].as_u64()),
            (Some("succeeded"), Some(1)),
            "{v}"
        );
    }
    let h = s.history(&ids[N / 2]);
    assert_eq!(
        h.iter()
            .filter(|e| e["event_type"] == "ExecutionRedriven")
            .count(),
        1
    );
    let d = &h
        .iter()
        .find(|e| e["event_type"] == "ExecutionRedriven")
        .unwrap()["details"];
    assert_eq!(
        (&d["trigger"], &d["job_id"]),
        (&json!("job"), &json!(job_id))
    );
    // Each ran its failed step once more; the step that had succeeded never ran again.
    assert_eq!(mock.count("/bulk-a"), N);
    // (A step b in flight at the kill runs again: steps are at least once.)
    let b = mock.count("/bulk-b");
    assert!(b > 2 * N && b <= 2 * N + 1 + 16, "/bulk-b asked {b} times");
    assert_eq!(s.execution(&other)["redrive_count"], 0);
    eprintln!(
        "bulk redrive: {N} executions at per_second=100 across a kill -9 in {:.1} s (from the job's start to its end)",
        elapsed.as_secs_f64()
    );
}

#[test]
fn a_redrive_and_a_fork_count_against_max_active_executions_and_usage_stays_exact() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    let (st, v) = s.post(
        "/v1/tenants",
        &json!({"name": "acme", "quotas": {"max_active_executions": 1}}),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.post(
        "/v1/tenants/acme/keys",
        &json!({"role": "owner", "name": "redrive test"}),
    );
    assert_eq!(st, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_string();
    let call = |method: &str, path: &str, body: Value| {
        s.req_as(
            Some(&key),
            method,
            path,
            Some(body.to_string().into_bytes()),
        )
    };
    let (st, v) = s.req_as(
        Some(&key),
        "PUT",
        "/v1/functions/q",
        Some(support::guest_bytes("conformance_guest")),
    );
    assert_eq!(st, 201, "{v}");
    let active = || {
        let (st, v) = s.get("/v1/tenants/acme");
        assert_eq!(st, 200, "{v}");
        v["usage"]["max_active_executions"].clone()
    };
    let get = |id: &str| call("GET", &format!("/v1/executions/{id}"), Value::Null).1;
    let ended = |id: &str| {
        wait_for(
            "its end",
            || get(id),
            |v| ["succeeded", "failed"].contains(&v["status"].as_str().unwrap_or("")),
        )
    };
    mock.respond("/q-b", 500, "down");
    let (st, v) = call(
        "POST",
        "/v1/functions/q/invoke",
        chain(&mock, "q-", &["a", "b"]),
    );
    assert_eq!(st, 202, "{v}");
    let failed_id = v["execution_id"].as_str().unwrap().to_string();
    assert_eq!(ended(&failed_id)["status"], "failed");
    wait_for("no active execution", active, |v| *v == json!(0));

    // The one active execution holds a slow request: no room for a redrive or a fork.
    let (st, v) = call(
        "POST",
        "/v1/functions/q/invoke",
        scenario("crash-probe", json!({"url": mock.url()})),
    );
    assert_eq!(st, 202, "{v}");
    let busy = v["execution_id"].as_str().unwrap().to_string();
    mock.wait_count("/slow", 1);
    for what in ["redrive", "fork"] {
        let (st, v) = call(
            "POST",
            &format!("/v1/executions/{failed_id}/{what}"),
            json!({}),
        );
        assert_eq!(st, 429, "{what}: {v}");
        assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_active_executions"));
    }
    assert_eq!(get(&failed_id)["redrive_count"], 0, "nothing written");
    mock.release_slow();
    ended(&busy);
    wait_for("no active execution", active, |v| *v == json!(0));

    let (st, v) = call(
        "POST",
        &format!("/v1/executions/{failed_id}/redrive"),
        json!({}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(active(), json!(1), "counted at once");
    assert_eq!(ended(&failed_id)["status"], "failed");
    wait_for("no active execution", active, |v| *v == json!(0));
    assert_eq!(mock.count("/q-a"), 1);
}

/// `durable-host ARGS` against `s` with its admin key: (exit code, stdout, stderr).
fn cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(support::BIN)
        .args(["--server", &s.url])
        .args(args)
        .env("DURABLE_API_KEY", &s.admin_key)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The value of `key` in a key/value view.
fn kv(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).filter(|r| r.starts_with(' ')))
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {stdout}"))
}

#[test]
fn the_cli_redrives_forks_and_follows_a_bulk_job() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("cli", "conformance_guest");
    mock.respond("/c-b", 500, "down");
    let ids: Vec<String> = (0..3)
        .map(|_| s.invoke("cli", &chain(&mock, "c-", &["a", "b"])))
        .collect();
    for id in &ids {
        failed(&s, id);
    }
    mock.respond("/c-b", 200, "{}");

    let (code, out, err) = cli(&s, &["redrive", &ids[0], "--version", "pinned"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        (kv(&out, "status"), kv(&out, "redrive_count")),
        ("running".into(), "1".into())
    );
    assert_eq!(s.wait_done(&ids[0])["status"], "succeeded");
    let (code, _, err) = cli(&s, &["redrive", &ids[0]]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: 409 conflict: execution") && err.contains("is succeeded"),
        "{err}"
    );

    let (code, out, err) = cli(
        &s,
        &["fork", &ids[1], "--from", "2", "--input", "@/nonexistent"],
    );
    assert_eq!(code, 2, "{out}{err}");
    let (code, out, err) = cli(&s, &["fork", &ids[1], "--from", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(kv(&out, "forked_from"), ids[1]);
    assert_eq!(
        s.wait_done(&kv(&out, "execution_id"))["status"],
        "succeeded"
    );

    let (code, out, err) = cli(
        &s,
        &[
            "redrive",
            "--function",
            "cli",
            "--status",
            "failed",
            "--error-type",
            "HttpError",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        (kv(&out, "status"), kv(&out, "matched"), kv(&out, "done")),
        ("succeeded".into(), "2".into(), "2".into())
    );
    assert!(
        err.contains("2 of 2 redriven, 0 failed"),
        "progress on stderr: {err}"
    );
    let job = kv(&out, "job_id");
    let (code, out, _) = cli(&s, &["jobs", "get", &job]);
    assert_eq!((code, kv(&out, "failed")), (0, "0".into()));
    let (code, out, _) = cli(&s, &["jobs", "list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("JOB") && out.contains(&job), "{out}");
    let (code, out, _) = cli(&s, &["--json", "jobs", "get", &job]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, &v["done"]), (0, &json!(2)));
    for id in &ids[1..] {
        assert_eq!(s.wait_done(id)["status"], "succeeded");
    }
    assert_eq!(
        mock.count("/c-a"),
        3,
        "no step that had succeeded ran again"
    );
}

/// Figures: the latency of one redrive request (its batch is fsynced before the answer)
/// and how fast an unthrottled bulk job redrives.
#[test]
fn redrive_latency_and_bulk_rate() {
    const ONE: usize = 50;
    const BULK: usize = 200;
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("fig", "conformance_guest");
    s.deploy("figbulk", "conformance_guest");
    mock.respond("/fig-b", 500, "down");
    let one: Vec<String> = (0..ONE)
        .map(|_| s.invoke("fig", &chain(&mock, "fig-", &["a", "b"])))
        .collect();
    let bulk: Vec<String> = (0..BULK)
        .map(|_| s.invoke("figbulk", &chain(&mock, "fig-", &["a", "b"])))
        .collect();
    for id in one.iter().chain(&bulk) {
        failed(&s, id);
    }
    mock.respond("/fig-b", 200, "{}");
    let mut lat: Vec<Duration> = one
        .iter()
        .map(|id| {
            let t = Instant::now();
            let (st, v) = redrive(&s, id, json!({}));
            assert_eq!(st, 200, "{v}");
            t.elapsed()
        })
        .collect();
    lat.sort();
    let started = Instant::now();
    let (st, v) = s.post(
        "/v1/executions/redrive",
        &json!({"function": "figbulk", "status": "failed"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    let end = wait_for(
        "the job's end",
        || job(&s, &id),
        |j| j["status"] == "succeeded",
    );
    let took = started.elapsed();
    assert_eq!(end["done"], json!(BULK));
    for id in one.iter().chain(&bulk) {
        assert_eq!(s.wait_done(id)["status"], "succeeded");
    }
    eprintln!(
        "redrive request latency over {ONE}: p50 {:.1} ms, p99 {:.1} ms; bulk job of {BULK} (unthrottled): {:.2} s, {:.0} redrives/s",
        lat[ONE / 2].as_secs_f64() * 1e3,
        lat[ONE * 99 / 100].as_secs_f64() * 1e3,
        took.as_secs_f64(),
        BULK as f64 / took.as_secs_f64()
    );
}

#[test]
fn a_redrive_recreates_a_callback_that_timed_out_and_its_submitter_sends_the_new_id() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("wfc", "conformance_guest");
    let input = scenario(
        "wait-for-callback",
        json!({"notify_url": format!("{}/notify", mock.url()), "timeout_ms": 300}),
    );
    let id = s.invoke("wfc", &input);
    let v = failed(&s, &id);
    assert_eq!(v["error"]["error_type"], "Callback.Timeout", "{v}");
    let first = mock.bodies("/notify")[0]["callback_id"].clone();

    let (st, v) = redrive(&s, &id, json!({}));
    assert_eq!(st, 200, "{v}");
    mock.wait_count("/notify", 2);
    let second = mock.bodies("/notify")[1]["callback_id"].clone();
    assert_ne!(first, second, "a new callback");
    // The old callback is dead; the new one completes the execution.
    let (st, v) = s.post(
        &format!("/v1/callbacks/{}/succeed", second.as_str().unwrap()),
        &json!("ok"),
    );
    assert_eq!(st, 200, "{v}");
    let v = s.wait_done(&id);
    assert_eq!(
        (v["status"].as_str(), &v["output"]),
        (Some("succeeded"), &json!({"result": "ok"})),
        "{v}"
    );
    let started: Vec<Value> = s
        .history(&id)
        .iter()
        .filter(|e| e["event_type"] == "CallbackStarted")
        .map(|e| e["details"]["callback_id"].clone())
        .collect();
    assert_eq!(started, [first, second]);
}

#[test]
fn a_failure_the_function_caught_replays_as_caught_after_a_redrive() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("caught", "conformance_guest");
    // Step "failing" fails and is caught, then a long wait: stopped during the wait.
    let id = s.invoke(
        "caught",
        &scenario("step-fail-then-wait", json!({"wait_ms": 1500})),
    );
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    let (st, v) = s.post(&format!("/v1/executions/{id}/stop"), &json!({}));
    assert_eq!(st, 200, "{v}");
    let (st, v) = redrive(&s, &id, json!({}));
    assert_eq!(st, 200, "{v}");
    let v = s.wait_done(&id);
    assert_eq!(
        (v["status"].as_str(), &v["output"]),
        (Some("succeeded"), &json!("done")),
        "{v}"
    );
    // The caught step did not run again: its one log line, one StepFailed.
    let lines: Vec<Value> = s
        .logs(&id)
        .into_iter()
        .filter(|l| l["message"] == "step executed")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let h = s.history(&id);
    assert_eq!(
        h.iter().filter(|e| e["event_type"] == "StepFailed").count(),
        1
    );
    assert_eq!(
        h.iter()
            .filter(|e| e["event_type"] == "WaitSucceeded")
            .count(),
        1
    );
}

#[test]
fn a_callback_a_redrive_replaced_while_pending_is_refused() {
    let mock = Mock::start();
    let s = start(&mock, &[]);
    s.deploy("sub", "conformance_guest");
    let input = scenario(
        "wait-for-callback-submitter-fails",
        json!({"max_attempts": 1, "delay_ms": 0}),
    );
    let id = s.invoke("sub", &input);
    let v = failed(&s, &id);
    assert_eq!(v["error"]["error_type"], "SubmitterError", "{v}");
    let old = s.callback_ids(&id, 1).remove(0);
    let (st, v) = redrive(&s, &id, json!({}));
    assert_eq!(st, 200, "{v}");
    failed(&s, &id);
    let ids = s.callback_ids(&id, 2);
    assert_ne!(ids[1], old, "a new callback");
    let (st, v) = s.post(&format!("/v1/callbacks/{old}/succeed"), &json!(1));
    assert_eq!(st, 409, "the replaced callback: {v}");
    // Refused as completed (the redrive replaced it), not only because the execution ended.
    let m = v["error"]["message"].as_str().unwrap_or("");
    assert!(m.contains("already completed"), "{v}");
}
