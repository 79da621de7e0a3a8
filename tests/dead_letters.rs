//! Dead letters and delayed starts (DESIGN 9 and 10), against the real server: the
//! execution list's filters (`status`, `error_type`, `function`, `ended_after`,
//! `ended_before`) with cursor paging; executions the host cannot run (version record gone,
//! component bytes and artifact gone, bytes that no longer compile, bytes that do not match
//! their hash) end with a reason instead of staying `running`; `?delay=` and `?start_at=`
//! start later, on a durable timer that survives kill -9, and can be stopped meanwhile.
//!
//! The stores of the load-failure tests are altered while the server is down, through
//! `durable_host::db::Store` itself (so its log and manifest stay consistent).

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use durable_host::db::{Batch, Durability, Store, VersionRecord};
use serde_json::{json, Value};
use support::*;

fn ms_of(rfc3339: &Value) -> u64 {
    let t = time::OffsetDateTime::parse(
        rfc3339
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {rfc3339}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as u64
}

/// RFC 3339 UTC with milliseconds, as the API writes times.
fn rfc3339(ms: u64) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&fmt)
        .unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `GET /v1/executions` with `query`, every page of `limit`: the ids in order.
fn list_all(s: &Server, query: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/executions?limit={limit}");
        if !query.is_empty() {
            path.push('&');
            path.push_str(query);
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, v) = s.get(&path);
        assert_eq!(st, 200, "{path}: {v}");
        let page = v["executions"].as_array().unwrap();
        assert!(page.len() <= limit, "{path}: {v}");
        ids.extend(
            page.iter()
                .map(|e| e["execution_id"].as_str().unwrap().to_string()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn the_execution_list_filters_dead_letters_by_status_error_type_function_and_end_time() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    s.deploy("other", "conformance_guest");
    let fail = |f: &str, ty: &str| {
        let id = s.invoke(
            f,
            &scenario("fail", json!({"error_type": ty, "message": "no"})),
        );
        s.wait_done(&id);
        id
    };
    let ok = s.invoke("conf", &scenario("echo", json!({"value": 1})));
    s.wait_done(&ok);
    let a1 = fail("conf", "Api.Unavailable");
    let a2 = fail("conf", "Api.Unavailable");
    let b = fail("conf", "Api.BadRequest");
    // Everything above ended before this instant, everything below after it.
    let mid = {
        let end = ms_of(&s.execution(&b)["ended_at"]);
        while now_ms() <= end {
            std::thread::sleep(Duration::from_millis(5));
        }
        now_ms()
    };
    let c = fail("other", "Api.Unavailable");
    let d = fail("conf", "Api.Unavailable");
    let waiting = s.invoke("conf", &scenario("wait", json!({"ms": 60_000})));
    s.wait_status(&waiting, &["suspended"], Duration::from_secs(30));
    let stopped = s.invoke("conf", &scenario("wait", json!({"ms": 60_000})));
    s.wait_status(&stopped, &["suspended"], Duration::from_secs(30));
    let (st, v) = s.post(&format!("/v1/executions/{stopped}/stop"), &json!(null));
    assert_eq!(st, 200, "{v}");

    // ended_at: the end of a finished execution, null for one that has not ended.
    let e = s.execution(&a1);
    assert!(ms_of(&e["ended_at"]) >= ms_of(&e["created_at"]), "{e}");
    assert_eq!(e["ended_at"], e["updated_at"], "{e}");
    assert_eq!(s.execution(&waiting)["ended_at"], Value::Null);

    // Every filter, alone and combined, through pages of 1 and of 50: each match once.
    let cases: Vec<(String, Vec<&String>)> = vec![
        ("status=failed".into(), vec![&a1, &a2, &b, &c, &d]),
        ("error_type=Api.Unavailable".into(), vec![&a1, &a2, &c, &d]),
        (
            "status=failed&error_type=Api.Unavailable&function=conf".into(),
            vec![&a1, &a2, &d],
        ),
        ("error_type=Api.BadRequest".into(), vec![&b]),
        ("error_type=Execution.Stopped".into(), vec![&stopped]),
        ("error_type=Api".into(), vec![]),
        (
            format!("status=failed&ended_before={}", rfc3339(mid)),
            vec![&a1, &a2, &b],
        ),
        (
            format!("status=failed&ended_after={}", rfc3339(mid)),
            vec![&c, &d],
        ),
        (
            format!("ended_after={}&function=conf", rfc3339(mid)),
            vec![&d, &stopped],
        ),
        (
            format!(
                "ended_after={}&ended_before={}",
                rfc3339(ms_of(&s.execution(&ok)["ended_at"])),
                rfc3339(mid)
            ),
            vec![&ok, &a1, &a2, &b],
        ),
        // A running or suspended execution has not ended: no end-time window holds it.
        (
            "ended_after=1970-01-01T00:00:00Z".into(),
            vec![&ok, &a1, &a2, &b, &c, &d, &stopped],
        ),
        ("status=suspended".into(), vec![&waiting]),
    ];
    for (query, want) in cases {
        let want = sorted(want.into_iter().cloned().collect());
        for limit in [1, 2, 50] {
            let got = list_all(&s, &query, limit);
            let unique: HashSet<&String> = got.iter().collect();
            assert_eq!(
                unique.len(),
                got.len(),
                "{query} limit {limit}: twice: {got:?}"
            );
            // Newest first.
            let mut newest_first = got.clone();
            newest_first.sort_by(|x, y| y.cmp(x));
            assert_eq!(got, newest_first, "{query} limit {limit}");
            assert_eq!(sorted(got), want, "{query} limit {limit}");
        }
    }
    // Offsets in RFC 3339 are honoured: the same instant written at +02:00.
    let utc = list_all(&s, &format!("ended_before={}", rfc3339(mid)), 50);
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(mid) * 1_000_000)
        .unwrap()
        .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let plus2 = list_all(&s, &format!("ended_before={}", t.replace('+', "%2B")), 50);
    assert_eq!(utc, plus2);

    // Bad values: 400, naming the parameter.
    for (query, name) in [
        ("ended_after=yesterday", "ended_after"),
        ("ended_before=2026-01-31", "ended_before"),
        ("ended_after=2026-01-31T09:30:00", "ended_after"),
        ("status=dead", "status"),
    ] {
        let (st, v) = s.get(&format!("/v1/executions?{query}"));
        assert_eq!(st, 400, "{query}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{query}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(name), "{query}: {msg}");
    }
}

// ---- executions the host cannot run ----

/// Alter the store of a server that is down with `change` (it gets the store and returns
/// the writes), then wait until the store's lock is free again.
fn alter_store(data: &Path, change: impl FnOnce(&Store) -> Batch) {
    let dir = data.join("db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    {
        let db = Store::open(&dir, 16 << 20).expect("open the store");
        let batch = change(&db);
        rt.block_on(db.commit(batch, Durability::Sync)).unwrap();
    }
    // The commit thread lets go of sled (and its lock) once it sees the store dropped.
    let lock = std::fs::File::open(dir.join("db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_UN) };
            return;
        }
        assert!(Instant::now() < deadline, "the store stayed locked");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exec_id(id: &str) -> durable_host::db::ExecId {
    durable_host::ids::parse_execution_id(id).unwrap()
}

/// Point version `version` of `conf` at `sha256`.
fn repoint(db: &Store, version: u32, sha256: &str) -> Batch {
    let v = db.version("default", "conf", version).unwrap().unwrap();
    let mut batch = Batch::new();
    batch.put_version(
        "default",
        "conf",
        &VersionRecord {
            sha256: sha256.to_string(),
            ..v
        },
    );
    batch
}

/// An execution of `conf` suspended in a wait of `wait_ms`, then the server killed, its
/// store changed by `change`, and the server started again: the execution's next activation
/// meets what `change` did.
fn suspended_then(
    s: &mut Server,
    wait_ms: u64,
    change: impl FnOnce(&Store, &str) -> Batch,
) -> String {
    let id = s.invoke("conf", &scenario("wait", json!({"ms": wait_ms})));
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    s.restart_after(|data| alter_store(data, |db| change(db, &id)));
    id
}

fn assert_load_error(s: &Server, id: &str, says: &[&str]) -> Value {
    let e = s.wait_status(id, &["failed"], Duration::from_secs(30));
    assert_eq!(e["error"]["error_type"], "Runtime.LoadError", "{e}");
    let msg = e["error"]["error_message"].as_str().unwrap();
    for want in says {
        assert!(msg.contains(want), "{msg:?} does not say {want:?}");
    }
    assert!(e["ended_at"].is_string(), "{e}");
    let h = s.history(id);
    let types = types(&h);
    assert_eq!(
        types.last().map(String::as_str),
        Some("ExecutionFailed"),
        "{types:?}"
    );
    assert_eq!(
        h.last().unwrap()["details"]["error"]["error_type"],
        "Runtime.LoadError"
    );
    e
}

#[test]
fn an_execution_whose_function_was_deleted_and_whose_component_is_gone_fails_with_the_reason() {
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let kept = s.invoke("conf", &scenario("wait", json!({"ms": 400})));
    let id = s.invoke("conf", &scenario("wait", json!({"ms": 500})));
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    // A deleted function's executions finish on their version...
    let (st, v) = s.req("DELETE", "/v1/functions/conf", None);
    assert_eq!(st, 204, "{v}");
    assert_eq!(s.wait_done(&kept)["status"], "succeeded");
    // ...unless its component is gone: the bytes and the compiled artifact both.
    let gone = "0".repeat(64);
    s.restart_after(|data| {
        alter_store(data, |db| repoint(db, 1, &gone));
    });
    let e = assert_load_error(
        &s,
        &id,
        &[
            "the function was deleted",
            "missing from the store",
            "version 1",
        ],
    );
    // Counted like any other failure, and found among the dead letters.
    assert_eq!(
        s.metric("durable_executions{tenant=\"default\",status=\"failed\"}"),
        1.0
    );
    assert_eq!(
        s.metric("durable_executions{tenant=\"default\",status=\"running\"}"),
        0.0
    );
    let found = list_all(&s, "status=failed&error_type=Runtime.LoadError", 10);
    assert_eq!(found, [e["execution_id"].as_str().unwrap()]);
}

#[test]
fn an_execution_whose_version_record_is_gone_or_whose_bytes_no_longer_compile_fails() {
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    // Its version record gone (the execution names a version that is not stored).
    let no_version = suspended_then(&mut s, 500, |db, id| {
        let mut rec = db.execution("default", &exec_id(id)).unwrap().unwrap();
        rec.version = 7;
        let mut batch = Batch::new();
        batch.put_execution(&rec);
        batch
    });
    assert_load_error(&s, &no_version, &["version 7", "not found"]);

    // Bytes that no longer compile (as a host upgrade could make them), with no artifact.
    let junk = b"\0asm\x0d\0\x01\0 not a component any more".to_vec();
    let junk_sha = durable_host::registry::sha256_hex(&junk);
    let no_compile = suspended_then(&mut s, 500, |db, _| {
        let mut batch = repoint(db, 1, &junk_sha);
        batch.put_component(&junk_sha, junk.clone());
        batch
    });
    assert_load_error(&s, &no_compile, &["invalid component"]);
    // Neither was ever left `running`, and nothing else is.
    let running = list_all(&s, "status=running", 50);
    assert!(running.is_empty(), "{running:?}");
}

#[test]
fn bytes_that_do_not_match_their_hash_are_retried_as_a_host_failure_until_the_execution_times_out()
{
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let (st, v) = s.req(
        "PATCH",
        "/v1/functions/conf",
        Some(
            json!({"execution_timeout_secs": 10})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(st, 200, "{v}");
    // The store hands back other bytes than the hash names (a damaged store, which a
    // restore may repair): not the component's fault, so it is not failed for it.
    let sha = "ab".repeat(32);
    let id = suspended_then(&mut s, 300, |db, _| {
        let mut batch = repoint(db, 1, &sha);
        batch.put_component(&sha, b"\0asm\x0d\0\x01\0 other bytes".to_vec());
        batch
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.metric("durable_host_failures_total{tenant=\"default\"}") < 1.0 {
        assert!(Instant::now() < deadline, "no host failure was counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.execution(&id)["status"], "running", "retried, not failed");
    // Its deadline still ends it, naming what kept it from running.
    let e = s.wait_status(&id, &["timed_out"], Duration::from_secs(30));
    let msg = e["error"]["error_message"].as_str().unwrap();
    assert!(msg.contains("failed in the host"), "{msg}");
    assert!(msg.contains("do not match their sha256"), "{msg}");
    assert!(e["ended_at"].is_string(), "{e}");
}

// ---- delayed start ----

/// The time the guest first ran: the end of the first activation.
fn first_activation_ms(h: &[Value]) -> u64 {
    let ic = h
        .iter()
        .find(|e| e["event_type"] == "InvocationCompleted")
        .unwrap_or_else(|| panic!("never activated: {h:?}"));
    ms_of(&ic["timestamp"])
}

#[test]
fn a_delay_starts_the_execution_after_it_suspended_until_then() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let t0 = now_ms();
    let (st, v) = s.post(
        "/v1/functions/conf/invoke?delay=1",
        &scenario("echo", json!({"value": "later"})),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["status"], "suspended", "{v}");
    assert_eq!(v["ended_at"], Value::Null);
    let id = v["execution_id"].as_str().unwrap().to_string();
    let created = ms_of(&v["created_at"]);
    let h = s.history(&id);
    assert_eq!(types(&h), ["ExecutionStarted"]);
    let start_at = ms_of(&h[0]["details"]["start_at"]);
    assert!(
        (created + 1000..=created + 1001).contains(&start_at),
        "{h:?}"
    );
    assert_eq!(h[0]["details"]["input"]["value"], "later");
    assert_eq!(
        s.metric("durable_executions{tenant=\"default\",status=\"suspended\"}"),
        1.0
    );

    let e = s.wait_done(&id);
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["output"], "later");
    let h = s.history(&id);
    assert_eq!(
        types(&h),
        [
            "ExecutionStarted",
            "InvocationCompleted",
            "ExecutionSucceeded"
        ]
    );
    let ran = first_activation_ms(&h);
    assert!(
        ran >= start_at && ran >= t0 + 1000,
        "ran {} ms after invoke",
        ran - t0
    );
    eprintln!("delay=1: ran {} ms after the invoke", ran - t0);

    // ?wait= covers the delay: 200 with the output.
    let t = Instant::now();
    let (st, v) = s.post(
        "/v1/functions/conf/invoke?delay=0.5&wait=30",
        &scenario("echo", json!({"value": 2})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["output"], 2);
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    // A start time in the past (or a delay of 0) starts at once, as without one.
    for q in [
        format!("start_at={}", rfc3339(now_ms() - 60_000)),
        "delay=0".into(),
    ] {
        let (st, v) = s.post(
            &format!("/v1/functions/conf/invoke?{q}&wait=30"),
            &scenario("echo", json!({"value": 3})),
        );
        assert_eq!(st, 200, "{q}: {v}");
        let h = s.history(v["execution_id"].as_str().unwrap());
        assert_eq!(h[0]["details"].get("start_at"), None, "{q}: {h:?}");
    }
}

#[test]
fn a_start_time_survives_kill9_and_a_stop_during_the_delay_ends_it_stopped() {
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let start = now_ms() + 3_000;
    let path = format!(
        "/v1/functions/conf/invoke?start_at={}",
        rfc3339(start).replace('+', "%2B")
    );
    let (st, v) = s.post(&path, &scenario("echo", json!({"value": "after restart"})));
    assert_eq!(st, 202, "{v}");
    let later = v["execution_id"].as_str().unwrap().to_string();
    let (st, v) = s.post(
        "/v1/functions/conf/invoke?delay=2.5",
        &scenario("echo", json!({"value": "never"})),
    );
    assert_eq!(st, 202, "{v}");
    let stopped = v["execution_id"].as_str().unwrap().to_string();
    // Stopped while it waits for its start: it ends at once...
    let (st, v) = s.post(&format!("/v1/executions/{stopped}/stop"), &json!(null));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "stopped", "{v}");
    assert!(v["ended_at"].is_string(), "{v}");
    let (st, v) = s.post(
        "/v1/functions/conf/invoke?delay=60",
        &scenario("echo", json!({"value": "never either"})),
    );
    assert_eq!(st, 202, "{v}");
    let stopped_after = v["execution_id"].as_str().unwrap().to_string();

    s.crash_and_restart();
    // (Unless the restart took longer than the delay, it is still waiting.)
    let status = s.execution(&later)["status"].clone();
    assert!(
        ["suspended", "running", "succeeded"].contains(&status.as_str().unwrap()),
        "{status}"
    );
    // A delayed execution reloaded from disk stops too.
    assert_eq!(s.execution(&stopped_after)["status"], "suspended");
    let (st, v) = s.post(
        &format!("/v1/executions/{stopped_after}/stop"),
        &json!(null),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "stopped", "{v}");

    let e = s.wait_done(&later);
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(e["output"], "after restart");
    let ran = first_activation_ms(&s.history(&later));
    assert!(ran >= start, "ran {} ms before its start time", start - ran);

    // ...and never starts, also once its start time has passed after a restart.
    let deadline = start.max(ms_of(&s.execution(&stopped)["created_at"]) + 2_500) + 500;
    while now_ms() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let h = s.history(&stopped);
    assert_eq!(
        types(&h),
        [
            "ExecutionStarted",
            "InvocationCompleted",
            "ExecutionStopped"
        ],
        "{h:?}"
    );
    assert_eq!(s.execution(&stopped)["status"], "stopped");
}

#[test]
fn a_delayed_start_after_the_host_was_down_past_it_starts_on_restart() {
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let (st, v) = s.post(
        "/v1/functions/conf/invoke?delay=0.3",
        &scenario("echo", json!({"value": 1})),
    );
    assert_eq!(st, 202, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    // Down across the start time.
    s.restart_after(|_| std::thread::sleep(Duration::from_millis(500)));
    assert_eq!(s.wait_done(&id)["status"], "succeeded");
}

#[test]
fn bad_delays_and_start_times_are_400_naming_the_parameter_and_write_nothing() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let (st, v) = s.req(
        "PATCH",
        "/v1/functions/conf",
        Some(
            json!({"execution_timeout_secs": 60})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(st, 200, "{v}");
    let soon = rfc3339(now_ms() + 1_000);
    let far = rfc3339(now_ms() + 120_000);
    for (q, names) in [
        ("delay=-1".to_string(), "delay"),
        ("delay=abc".into(), "delay"),
        ("delay=NaN".into(), "delay"),
        ("delay=61".into(), "execution timeout"),
        ("start_at=tomorrow".into(), "start_at"),
        ("start_at=2026-01-31".into(), "start_at"),
        (format!("start_at={far}"), "execution timeout"),
        (format!("delay=1&start_at={soon}"), "not both"),
    ] {
        let (st, v) = s.post(&format!("/v1/functions/conf/invoke?{q}"), &json!(null));
        assert_eq!(st, 400, "{q}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{q}: {msg}");
    }
    assert!(list_all(&s, "", 50).is_empty(), "nothing was written");
    // At the limit is accepted.
    let (st, v) = s.post("/v1/functions/conf/invoke?delay=60", &json!(null));
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["status"], "suspended");
}
