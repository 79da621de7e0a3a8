//! Flow control per function end to end (DESIGN 10): a real server, the conformance guest
//! whose step makes a real HTTP request to a local mock that counts the requests it answers
//! at once. `max_concurrency` bounds them; with a `concurrency_key` two keys run side by
//! side and one key never twice; `throttle` spaces starts (from history timestamps);
//! `max_queued` answers 429 `backlog_full` with `Retry-After` and writes nothing; after
//! kill -9 the limits still hold; a function at its limit blocks no other; bad settings are
//! refused; the queue metrics by tenant and function follow.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{scenario, Mock, Server};

const CONF: &str = "conformance_guest";

fn server(mock: &Mock) -> Server {
    Server::start_with(&["--allow-outbound", &mock.allow()])
}

/// PATCH a function's settings; they must be accepted.
fn set(s: &Server, name: &str, settings: Value) -> Value {
    let (st, v) = s.req(
        "PATCH",
        &format!("/v1/functions/{name}"),
        Some(settings.to_string().into_bytes()),
    );
    assert_eq!(st, 200, "PATCH {settings}: {v}");
    v
}

/// A step that POSTs `body` to the mock at `path`.
fn http_step(mock: &Mock, path: &str, body: Value) -> Value {
    scenario(
        "step-http",
        json!({"url": format!("{}{path}", mock.url()), "method": "POST", "body": body}),
    )
}

fn wait_all_succeeded(s: &Server, ids: &[String]) {
    for id in ids {
        let e = s.wait_done(id);
        assert_eq!(e["status"], "succeeded", "{e}");
        assert_eq!(e["output"]["status"], 200, "{e}");
    }
}

/// Executions the tenant has (all statuses).
fn execution_count(s: &Server) -> usize {
    let (st, v) = s.get("/v1/executions?limit=1000");
    assert_eq!(st, 200, "{v}");
    v["executions"].as_array().unwrap().len()
}

/// Poll until `pred` holds (bounded).
fn eventually(what: &str, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ten executions of a function with `max_concurrency: 2`, each holding a 300 ms request:
/// the mock never answers more than two at once (and does answer two); the other eight
/// wait in the queue, visible as `durable_queue_depth` of that function; nothing is refused.
#[test]
fn max_concurrency_bounds_the_activations_of_a_function() {
    let mock = Mock::start();
    let s = server(&mock);
    s.deploy("conf", CONF);
    let v = set(&s, "conf", json!({"max_concurrency": 2}));
    assert_eq!(v["settings"]["max_concurrency"], 2, "{v}");
    let ids: Vec<String> = (0..10)
        .map(|n| s.invoke("conf", &http_step(&mock, "/delay/300", json!({"n": n}))))
        .collect();
    let depth = s.metric("durable_queue_depth{tenant=\"default\",function=\"conf\"}");
    assert!(
        (1.0..=8.0).contains(&depth),
        "eight wait at first, fewer as they run: {depth}"
    );
    wait_all_succeeded(&s, &ids);
    assert_eq!(mock.count("/delay/300"), 10);
    assert_eq!(
        mock.peak(),
        2,
        "at most max_concurrency at once, and that many"
    );
    assert_eq!(
        s.metric("durable_queue_depth{tenant=\"default\",function=\"conf\"}"),
        0.0
    );
}

/// `max_concurrency: 1` per value of `/body/user`: users a and b run side by side (two at
/// once), but never one user twice; an input without the field shares one key value.
#[test]
fn a_concurrency_key_limits_each_key_value_apart() {
    let mock = Mock::start();
    let s = server(&mock);
    s.deploy("conf", CONF);
    set(
        &s,
        "conf",
        json!({"max_concurrency": 1, "concurrency_key": "/body/user"}),
    );
    let mut ids = Vec::new();
    for n in 0..3 {
        for user in ["a", "b"] {
            let body = json!({"user": user, "n": n});
            ids.push(s.invoke(
                "conf",
                &http_step(&mock, &format!("/delay/300/{user}"), body),
            ));
        }
    }
    for n in 0..2 {
        ids.push(s.invoke(
            "conf",
            &http_step(&mock, "/delay/300/none", json!({"n": n})),
        ));
    }
    wait_all_succeeded(&s, &ids);
    // The mock counts per body; the bodies of one key value differ only in `n`, so count
    // per key by path instead: a path's peak is the most requests for it at once.
    let hits = mock.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 8);
    assert!(mock.peak() >= 2, "two keys side by side: {}", mock.peak());
    assert!(
        mock.peak() <= 3,
        "one per key value (a, b, missing): {}",
        mock.peak()
    );
    for (path, max) in [
        ("/delay/300/a", 1),
        ("/delay/300/b", 1),
        ("/delay/300/none", 1),
    ] {
        let starts = key_overlap(&s, &ids, path);
        assert!(
            starts <= max,
            "{path}: {starts} at once, the key allows {max}"
        );
    }
}

/// The most executions whose step requested `path` that overlapped in time, from their
/// histories (step start to step end).
fn key_overlap(s: &Server, ids: &[String], path: &str) -> usize {
    let mut spans = Vec::new();
    for id in ids {
        let e = s.execution(id);
        if !e["input"]["url"].as_str().unwrap().ends_with(path) {
            continue;
        }
        let h = s.history(id);
        let at = |t: &str| {
            h.iter()
                .find(|e| e["event_type"] == t)
                .map(|e| ms_of(e["timestamp"].as_str().unwrap()))
                .unwrap_or_else(|| panic!("{t} in {h:?}"))
        };
        spans.push((at("StepStarted"), at("StepSucceeded")));
    }
    assert!(spans.len() >= 2, "{path}: {spans:?}");
    spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s2, e2)| s2 <= start && start < e2)
                .count()
        })
        .max()
        .unwrap()
}

/// An RFC 3339 timestamp in unix milliseconds.
fn ms_of(text: &str) -> i64 {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("timestamp {text:?}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `throttle {per_second: 4, burst: 1}`: six executions invoked at once start (their first
/// step) at least ~250 ms apart, and the ones that waited are counted.
#[test]
fn a_throttle_spaces_the_starts_of_new_executions() {
    let s = Server::start();
    s.deploy("conf", CONF);
    let v = set(
        &s,
        "conf",
        json!({"throttle": {"per_second": 4, "burst": 1}}),
    );
    assert_eq!(
        v["settings"]["throttle"],
        json!({"per_second": 4.0, "burst": 1})
    );
    let ids: Vec<String> = (0..6)
        .map(|n| {
            s.invoke(
                "conf",
                &scenario("step-basic", json!({"name": n.to_string()})),
            )
        })
        .collect();
    let mut starts: Vec<i64> = ids
        .iter()
        .map(|id| {
            assert_eq!(s.wait_done(id)["status"], "succeeded");
            let h = s.history(id);
            let step = h.iter().find(|e| e["event_type"] == "StepStarted").unwrap();
            ms_of(step["timestamp"].as_str().unwrap())
        })
        .collect();
    starts.sort();
    // A token every 250 ms: the i-th start is at least i * 250 ms after the first (less a
    // little for the time an activation takes to reach its step, which varies).
    for (i, t) in starts.iter().enumerate() {
        let after = t - starts[0];
        assert!(
            after >= i as i64 * 250 - 60,
            "start {i} came {after} ms after the first: {starts:?}"
        );
    }
    assert!(
        s.metric("durable_throttled_total{tenant=\"default\",function=\"conf\"}") >= 1.0,
        "throttled starts are counted"
    );
}

/// `max_concurrency: 1, max_queued: 2`: one runs (held by the mock), two wait, the fourth
/// invoke is 429 `backlog_full` with `Retry-After` and creates nothing; once the queue
/// drains, invokes are accepted again.
#[test]
fn max_queued_refuses_with_backlog_full_and_writes_nothing() {
    let mock = Mock::start();
    let s = server(&mock);
    s.deploy("conf", CONF);
    set(&s, "conf", json!({"max_concurrency": 1, "max_queued": 2}));
    mock.hold_slow();
    let input = http_step(&mock, "/slow", json!({}));
    let mut ids = vec![s.invoke("conf", &input)];
    mock.wait_count("/slow", 1);
    ids.push(s.invoke("conf", &input));
    ids.push(s.invoke("conf", &input));
    let before = execution_count(&s);
    let r = s
        .client()
        .post(format!("{}/v1/functions/conf/invoke", s.url))
        .body(input.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After: {retry}");
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "backlog_full", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("max_queued: "),
        "{v}"
    );
    assert_eq!(execution_count(&s), before, "the refusal wrote nothing");
    assert_eq!(before, 3);
    assert_eq!(
        s.metric("durable_backlog_refused_total{tenant=\"default\",function=\"conf\"}"),
        1.0
    );
    assert_eq!(
        s.metric("durable_queue_depth{tenant=\"default\",function=\"conf\"}"),
        2.0
    );
    assert!(s.metric("durable_queue_oldest_seconds{tenant=\"default\",function=\"conf\"}") > 0.0);
    mock.release_slow();
    wait_all_succeeded(&s, &ids);
    let id = s.invoke("conf", &input);
    wait_all_succeeded(&s, &[id]);
}

/// Six executions under `max_concurrency: 2`; kill -9 while two hold a request; after the
/// restart (limits are settings, the queue is rebuilt by recovery) the mock again never
/// answers more than two at once, and every execution succeeds.
#[test]
fn the_limits_hold_after_kill_9() {
    let mock = Mock::start();
    let mut s = server(&mock);
    s.deploy("conf", CONF);
    set(&s, "conf", json!({"max_concurrency": 2}));
    let ids: Vec<String> = (0..6)
        .map(|n| s.invoke("conf", &http_step(&mock, "/delay/400", json!({"n": n}))))
        .collect();
    eventually("two requests in flight", || mock.in_flight() == 2);
    s.kill9();
    eventually("the cut requests to end", || mock.in_flight() == 0);
    mock.reset_peaks();
    s.crash_and_restart();
    wait_all_succeeded(&s, &ids);
    assert_eq!(mock.peak(), 2, "max_concurrency after the restart");
    let (_, f) = s.get("/v1/functions/conf");
    assert_eq!(f["settings"]["max_concurrency"], 2, "{f}");
}

/// A function at its limit, with a backlog, does not delay another function of the same
/// tenant: it runs at once.
#[test]
fn a_function_at_its_limit_does_not_block_another() {
    let mock = Mock::start();
    let s = server(&mock);
    s.deploy("conf", CONF);
    s.deploy("other", CONF);
    set(&s, "conf", json!({"max_concurrency": 1}));
    mock.hold_slow();
    let input = http_step(&mock, "/slow", json!({}));
    let held: Vec<String> = (0..4).map(|_| s.invoke("conf", &input)).collect();
    mock.wait_count("/slow", 1);
    let started = Instant::now();
    let (st, v) = s.post(
        "/v1/functions/other/invoke?wait=20",
        &scenario("step-basic", json!({"name": "x"})),
    );
    assert_eq!((st, v["status"].as_str()), (200, Some("succeeded")), "{v}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(mock.count("/slow"), 1, "conf still at its limit");
    assert_eq!(
        s.metric("durable_queue_depth{tenant=\"default\",function=\"conf\"}"),
        3.0
    );
    mock.release_slow();
    wait_all_succeeded(&s, &held);
}

/// Settings: each bad value is refused with a message naming it, and changes nothing; the
/// upload query sets them too; `null` (or `default`) removes one.
#[test]
fn flow_settings_are_validated_shown_and_reset() {
    let s = Server::start();
    s.deploy("conf", CONF);
    let bad = [
        (json!({"max_concurrency": 0}), "max_concurrency"),
        (json!({"max_queued": -1}), "max_queued"),
        (json!({"concurrency_key": "user_id"}), "concurrency_key"),
        (json!({"concurrency_key": "/a~2"}), "concurrency_key"),
        (
            json!({"throttle": {"per_second": 0}}),
            "throttle.per_second",
        ),
        (
            json!({"throttle": {"per_second": 1, "burst": 0}}),
            "throttle.burst",
        ),
        (json!({"throttle": {"rate": 1}}), "throttle"),
    ];
    for (body, field) in bad {
        let (st, v) = s.req(
            "PATCH",
            "/v1/functions/conf",
            Some(body.to_string().into_bytes()),
        );
        assert_eq!(st, 400, "{body}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(field), "{body}: {m}");
    }
    let (_, f) = s.get("/v1/functions/conf");
    for field in [
        "max_concurrency",
        "concurrency_key",
        "throttle",
        "max_queued",
    ] {
        assert!(f["settings"][field].is_null(), "{field} unchanged: {f}");
    }
    let (st, v) = s.req(
        "PUT",
        "/v1/functions/conf?max_concurrency=3&concurrency_key=/user&throttle_per_second=0.5&throttle_burst=2&max_queued=7",
        Some(support::guest_bytes(CONF)),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            &v["settings"]["max_concurrency"],
            &v["settings"]["concurrency_key"],
            &v["settings"]["throttle"],
            &v["settings"]["max_queued"]
        ),
        (
            &json!(3),
            &json!("/user"),
            &json!({"per_second": 0.5, "burst": 2}),
            &json!(7)
        ),
        "{v}"
    );
    let v = set(
        &s,
        "conf",
        json!({"throttle": null, "concurrency_key": null}),
    );
    assert!(v["settings"]["throttle"].is_null(), "{v}");
    assert!(v["settings"]["concurrency_key"].is_null(), "{v}");
    assert_eq!(v["settings"]["max_concurrency"], 3, "{v}");
    let (st, v) = s.req(
        "PUT",
        "/v1/functions/conf?max_queued=default&throttle_burst=2",
        Some(support::guest_bytes(CONF)),
    );
    assert_eq!(st, 400, "a burst without a rate: {v}");
}
