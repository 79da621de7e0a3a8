//! Schedules end to end (DESIGN 10): a real server on real time, per-second crons, real
//! guests. A per-second cron fires the expected executions over a measured window and
//! never twice across a kill -9 (each firing's idempotency key names its execution);
//! missed firings after a downtime follow catch_up none / latest / all; overlap skip,
//! allow and buffer_one with a guest that waits on a callback; pause, resume and trigger;
//! bad input is a 400; another tenant sees and triggers nothing; a firing the tenant's
//! quotas refuse is recorded on the schedule; the CLI drives it all.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use support::{scenario, Server, BIN};

const EVERY_SECOND: &str = "* * * * * *";

/// Unix ms of an RFC 3339 time as the API writes it.
fn ms(t: &Value) -> u64 {
    let t = time::OffsetDateTime::parse(
        t.as_str().unwrap_or_else(|| panic!("not a time: {t}")),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as u64
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `PUT /v1/schedules/{name}`: status and body.
fn put(s: &Server, name: &str, body: Value) -> (u16, Value) {
    s.req(
        "PUT",
        &format!("/v1/schedules/{name}"),
        Some(body.to_string().into_bytes()),
    )
}

/// A schedule that must be accepted.
fn create(s: &Server, name: &str, body: Value) -> Value {
    let (st, v) = put(s, name, body);
    assert!(st == 201 || st == 200, "PUT schedule {name}: {st} {v}");
    v
}

fn schedule(s: &Server, name: &str) -> Value {
    let (st, v) = s.get(&format!("/v1/schedules/{name}"));
    assert_eq!(st, 200, "{v}");
    v
}

fn set_paused(s: &Server, name: &str, paused: bool) -> Value {
    let (st, v) = s.req(
        "PATCH",
        &format!("/v1/schedules/{name}"),
        Some(json!({ "paused": paused }).to_string().into_bytes()),
    );
    assert_eq!(st, 200, "{v}");
    v
}

/// The schedule's firings with `result`, oldest first.
fn firings(s: &Server, name: &str, result: &str) -> Vec<Value> {
    let mut f: Vec<Value> = schedule(s, name)["firings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"] == result)
        .cloned()
        .collect();
    f.reverse();
    f
}

/// The executions of `function`, newest first.
fn executions(s: &Server, function: &str) -> Vec<Value> {
    let (st, v) = s.get(&format!("/v1/executions?function={function}&limit=1000"));
    assert_eq!(st, 200, "{v}");
    v["executions"].as_array().unwrap().clone()
}

/// Poll `f` until it returns `Some` (bounded).
fn until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A per-second schedule of the fast `echo` scenario.
fn per_second(function: &str, overlap: &str, catch_up: &str) -> Value {
    json!({
        "function": function,
        "cron": EVERY_SECOND,
        "input": scenario("echo", json!({"value": "tick"})),
        "overlap": overlap,
        "catch_up": catch_up,
    })
}

/// The fire times (ms) of the fired firings, checked to be distinct, and each one's
/// execution: one execution per firing, each found again by its idempotency key.
fn check_once_each(s: &Server, name: &str, function: &str) -> Vec<u64> {
    let fired = firings(s, name, "fired");
    let times: Vec<u64> = fired.iter().map(|f| ms(&f["fire_time"])).collect();
    let distinct: HashSet<u64> = times.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        times.len(),
        "a fire time fired twice: {fired:#?}"
    );
    let execs = executions(s, function);
    assert_eq!(
        execs.len(),
        fired.len(),
        "one execution per firing: {fired:#?}"
    );
    let ids: HashSet<&str> = execs
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    let input = scenario("echo", json!({"value": "tick"})).to_string();
    for f in &fired {
        let id = f["execution_id"].as_str().unwrap();
        assert!(ids.contains(id), "{id} is not an execution of {function}");
        // Its idempotency key names it: an invoke under that key gets it back.
        let key = format!("schedule:{name}:{}", f["fire_time"].as_str().unwrap());
        let r = s
            .client()
            .post(format!("{}/v1/functions/{function}/invoke", s.url))
            .header("Idempotency-Key", key)
            .body(input.clone())
            .send()
            .unwrap();
        let v: Value = r.json().unwrap();
        assert_eq!(
            v["execution_id"], id,
            "the key of {f} names another execution"
        );
    }
    times
}

#[test]
fn a_per_second_cron_fires_on_time_and_never_twice_across_kill9() {
    let mut s = Server::start();
    s.deploy("tick", "conformance_guest");
    let v = create(&s, "every-second", per_second("tick", "allow", "all"));
    let created = Instant::now();
    assert_eq!(v["next_fire_times"].as_array().unwrap().len(), 5, "{v}");

    // A measured window: about one firing per second.
    std::thread::sleep(Duration::from_millis(4000));
    let window = created.elapsed().as_secs_f64();
    let n = executions(&s, "tick").len() as f64;
    println!("{n} firings in {window:.2} s");
    assert!(
        (window - 1.5..=window + 1.0).contains(&n),
        "{n} firings in {window:.2} s"
    );
    let before = check_once_each(&s, "every-second", "tick");

    // kill -9 (no shutdown), restart: what was fired stays fired once; catch_up all fires
    // the seconds of the downtime.
    s.crash_and_restart();
    until("firings after the restart", Duration::from_secs(20), || {
        (firings(&s, "every-second", "fired").len() >= before.len() + 4).then_some(())
    });
    let mut times = check_once_each(&s, "every-second", "tick");
    times.sort_unstable();
    assert_eq!(
        &times[..before.len()],
        &before[..],
        "the firings before the kill"
    );
    // Every second from the first firing on, once: none lost to the kill, none twice.
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "fire times {times:?}");
    }
    let fired = s.metric(r#"durable_schedule_firings_total{result="fired"}"#);
    assert!(fired >= 4.0, "fired since the restart: {fired}");
}

/// Kill -9 a server whose per-second schedule has fired, keep it down for 3 s, restart
/// it: the seconds it missed fire as `catch_up` says. One server per policy, side by side.
#[test]
fn missed_firings_after_a_downtime_follow_catch_up() {
    /// What a policy fires of the missed seconds.
    #[derive(Clone, Copy, Debug)]
    enum Missed {
        None,
        MostRecent,
        Every,
    }
    let cases = [
        ("none", Missed::None),
        ("latest", Missed::MostRecent),
        ("all", Missed::Every),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(policy, expect)| {
            std::thread::spawn(move || {
                let mut s = Server::start();
                s.deploy("tick", "conformance_guest");
                create(&s, "s", per_second("tick", "allow", policy));
                until("two firings", Duration::from_secs(20), || {
                    (firings(&s, "s", "fired").len() >= 2).then_some(())
                });
                s.kill9();
                let down = now_ms();
                std::thread::sleep(Duration::from_secs(3));
                let restart = now_ms();
                s.crash_and_restart();
                let up = now_ms();
                // Two on-time firings after the restart.
                until("firings after the restart", Duration::from_secs(20), || {
                    let on_time = firings(&s, "s", "fired")
                        .iter()
                        .filter(|f| f["missed"] == false && ms(&f["fire_time"]) >= up)
                        .count();
                    (on_time >= 2).then_some(())
                });
                let times = check_once_each(&s, "s", "tick");
                let fired = firings(&s, "s", "fired");
                let before: Vec<u64> = fired
                    .iter()
                    .filter(|f| ms(&f["handled_at"]) < down)
                    .map(|f| ms(&f["fire_time"]))
                    .collect();
                let last_before = *before.iter().max().expect("fired before the kill");
                let missed: Vec<u64> = fired
                    .iter()
                    .filter(|f| f["missed"] == true)
                    .map(|f| ms(&f["fire_time"]))
                    .collect();
                // Every second the host was surely down (after its last firing, before
                // the restart began).
                let down_secs: Vec<u64> = (last_before / 1000 + 1..=restart / 1000)
                    .map(|sec| sec * 1000)
                    .collect();
                assert!(down_secs.len() >= 3, "{policy}: down {down_secs:?}");
                let fired_down: Vec<u64> = times
                    .iter()
                    .copied()
                    .filter(|t| *t > last_before && *t <= restart)
                    .collect();
                match expect {
                    Missed::None => {
                        assert!(missed.is_empty(), "{policy}: fired missed {missed:?}");
                        assert!(fired_down.is_empty(), "{policy}: fired {fired_down:?}");
                        let skipped = firings(&s, "s", "skipped");
                        assert!(
                            skipped.iter().any(|f| f["missed"] == true),
                            "{policy}: no skipped record: {skipped:#?}"
                        );
                    }
                    Missed::MostRecent => {
                        assert_eq!(missed.len(), 1, "{policy}: {missed:?}");
                        // The most recent missed second: the host started after it.
                        assert!(missed[0] >= restart / 1000 * 1000, "{policy}: {missed:?}");
                        assert!(fired_down.len() <= 1, "{policy}: {fired_down:?}");
                    }
                    Missed::Every => {
                        for t in &down_secs {
                            assert!(
                                missed.contains(t),
                                "{policy}: {t} not caught up: {missed:?}"
                            );
                        }
                        // Oldest first, one per second, nothing else missed.
                        let mut sorted = missed.clone();
                        sorted.sort_unstable();
                        assert_eq!(sorted[0], down_secs[0], "{policy}: {missed:?}");
                        for pair in sorted.windows(2) {
                            assert_eq!(pair[1] - pair[0], 1000, "{policy}: {missed:?}");
                        }
                    }
                }
                println!(
                    "catch_up {policy}: down {} s, {} missed fired",
                    down_secs.len(),
                    missed.len()
                );
            })
        })
        .collect();
    for r in runs {
        r.join().expect("a catch-up case failed");
    }
}

/// A per-second schedule of a guest that waits for a callback (so its execution does not
/// end until the test completes it): skip fires once, allow fires every second,
/// buffer_one fires once, then once more as soon as the first ends.
#[test]
fn overlap_skip_allow_and_buffer_one_with_a_waiting_guest() {
    let s = Server::start();
    let waits = scenario("callback", json!({}));
    for policy in ["skip", "allow", "buffer_one"] {
        s.deploy(&format!("wait-{policy}"), "conformance_guest");
        let body = json!({
            "function": format!("wait-{policy}"),
            "cron": EVERY_SECOND,
            "input": waits,
            "overlap": policy,
            "catch_up": "none",
        });
        create(&s, policy, body);
    }
    // At least three fire times for each.
    until("three firings of allow", Duration::from_secs(20), || {
        (executions(&s, "wait-allow").len() >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(executions(&s, "wait-skip").len(), 1, "skip fired twice");
    let skipped = firings(&s, "skip", "skipped");
    assert!(skipped.len() >= 2, "{skipped:#?}");
    assert!(skipped[0]["note"]
        .as_str()
        .unwrap()
        .starts_with("overlap skip"));
    let allowed = executions(&s, "wait-allow").len();
    assert!(allowed >= 4, "allow fired {allowed}");

    let first = executions(&s, "wait-buffer_one");
    assert_eq!(first.len(), 1, "buffer_one fired twice: {first:#?}");
    let v = schedule(&s, "buffer_one");
    let buffered = ms(&v["buffered_fire_at"]);
    // End the running execution: the buffered firing fires at once.
    let id = first[0]["execution_id"].as_str().unwrap();
    let cb = s.callback_ids(id, 1).remove(0);
    let (st, r) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!("done"));
    assert_eq!(st, 200, "{r}");
    s.wait_done(id);
    let ended = Instant::now();
    let second = until("the buffered firing", Duration::from_secs(10), || {
        let f = firings(&s, "buffer_one", "fired");
        (f.len() == 2).then(|| f[1].clone())
    });
    let waited = ended.elapsed();
    assert_eq!(ms(&second["fire_time"]), buffered, "{second}");
    assert!(
        waited < Duration::from_secs(2),
        "buffered firing after {waited:?}"
    );
    println!("buffered firing fired {waited:?} after the execution ended");
    // The second runs now: the firings after it are buffered again, not fired.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(executions(&s, "wait-buffer_one").len(), 2);
    assert!(!schedule(&s, "buffer_one")["buffered_fire_at"].is_null());
    for policy in ["skip", "allow", "buffer_one"] {
        set_paused(&s, policy, true);
    }
}

#[test]
fn pause_stops_firing_resume_restarts_and_trigger_fires_at_once() {
    let s = Server::start();
    s.deploy("tick", "conformance_guest");
    create(&s, "p", per_second("tick", "allow", "all"));
    until("a firing", Duration::from_secs(20), || {
        (!executions(&s, "tick").is_empty()).then_some(())
    });
    let v = set_paused(&s, "p", true);
    assert_eq!(v["paused"], true);
    assert!(v["next_fire_at"].is_null(), "{v}");
    assert_eq!(v["next_fire_times"], json!([]), "{v}");
    let paused = executions(&s, "tick").len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(executions(&s, "tick").len(), paused, "fired while paused");
    let (st, list) = s.get("/v1/schedules");
    assert_eq!(st, 200);
    assert_eq!(list["schedules"][0]["paused"], true, "{list}");

    // Resumed: firing again from the next second, without catching up the pause.
    let resumed = now_ms();
    set_paused(&s, "p", false);
    until("a firing after resume", Duration::from_secs(10), || {
        (executions(&s, "tick").len() > paused).then_some(())
    });
    let after: Vec<Value> = firings(&s, "p", "fired")
        .into_iter()
        .filter(|f| ms(&f["handled_at"]) >= resumed)
        .collect();
    assert!(
        after
            .iter()
            .all(|f| ms(&f["fire_time"]) > resumed - 1000 && f["missed"] == false),
        "the pause was caught up: {after:#?}"
    );
    set_paused(&s, "p", true);

    // Trigger: fires now, paused or not; the yearly cron would not fire for months.
    s.deploy("yearly", "conformance_guest");
    create(
        &s,
        "new-year",
        json!({"function": "yearly", "cron": "0 0 1 1 *", "input": scenario("echo", json!({"value": 1})),
               "overlap": "skip", "catch_up": "none", "paused": true}),
    );
    let asked = Instant::now();
    let (st, f) = s.post("/v1/schedules/new-year/trigger", &json!({}));
    assert_eq!(st, 202, "{f}");
    assert_eq!(f["result"], "fired");
    assert_eq!(f["manual"], true);
    let id = f["execution_id"].as_str().unwrap();
    let done = s.wait_done(id);
    assert_eq!(done["status"], "succeeded", "{done}");
    println!("trigger to succeeded: {:?}", asked.elapsed());
    let v = schedule(&s, "new-year");
    assert_eq!(v["firings"][0]["execution_id"], id, "{v}");
    assert_eq!(executions(&s, "yearly").len(), 1);
}

#[test]
fn bad_schedules_are_refused_with_a_clear_400_and_unknown_ones_are_404() {
    let s = Server::start();
    s.deploy("f", "conformance_guest");
    let ok = json!({"function": "f", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin",
                    "overlap": "skip", "catch_up": "latest"});
    let with = |field: &str, value: Value| {
        let mut b = ok.clone();
        b[field] = value;
        b
    };
    let without = |field: &str| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().remove(field);
        b
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "a cron of 4 fields",
            "s",
            with("cron", json!("* * * *")),
            "cron",
        ),
        (
            "a minute of 61",
            "s",
            with("cron", json!("61 * * * *")),
            "cron",
        ),
        ("words", "s", with("cron", json!("every day")), "cron"),
        (
            "February 30th",
            "s",
            with("cron", json!("0 0 30 2 *")),
            "never fires",
        ),
        (
            "an unknown zone",
            "s",
            with("timezone", json!("Mars/Olympus")),
            "timezone",
        ),
        (
            "an unknown function",
            "s",
            with("function", json!("nope")),
            "not found",
        ),
        (
            "an unknown overlap",
            "s",
            with("overlap", json!("queue")),
            "overlap",
        ),
        ("no catch_up", "s", without("catch_up"), "catch_up"),
        ("an unknown field", "s", with("when", json!("now")), "when"),
        ("a bad name", "a%20b", ok.clone(), "schedule name"),
        (
            "a name with a dot first",
            ".hidden",
            ok.clone(),
            "schedule name",
        ),
    ];
    for (what, name, body, says) in cases {
        let (st, v) = put(&s, name, body);
        assert_eq!(st, 400, "{what}: {v}");
        assert_eq!(v["error"]["code"], "bad_request", "{what}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{what}: {msg:?} does not say {says:?}");
    }
    let (st, v) = s.get("/v1/schedules");
    assert_eq!(
        (st, v["schedules"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    // Not JSON at all.
    let (st, v) = s.req("PUT", "/v1/schedules/s", Some(b"cron=*".to_vec()));
    assert_eq!(st, 400, "{v}");

    // A good one: the next five fire times at 9:00 in Berlin (07:00 or 08:00 UTC).
    let v = create(&s, "s", ok.clone());
    let next = v["next_fire_times"].as_array().unwrap();
    assert_eq!(next.len(), 5, "{v}");
    assert!(
        next.iter().all(|t| ["T07:00:00.000Z", "T08:00:00.000Z"]
            .iter()
            .any(|h| t.as_str().unwrap().ends_with(h))),
        "{v}"
    );
    // Replaced: 200, same schedule.
    let (st, v) = put(&s, "s", with("cron", json!("0 10 * * *")));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["cron"], "0 10 * * *");
    // Unknown names: 404 on every route.
    for (method, path) in [
        ("GET", "/v1/schedules/nope"),
        ("PATCH", "/v1/schedules/nope"),
        ("DELETE", "/v1/schedules/nope"),
        ("POST", "/v1/schedules/nope/trigger"),
    ] {
        let body = (method == "PATCH").then(|| json!({"paused": true}).to_string().into_bytes());
        let (st, v) = s.req(method, path, body);
        assert_eq!(st, 404, "{method} {path}: {v}");
    }
    let (st, _) = s.req("DELETE", "/v1/schedules/s", None);
    assert_eq!(st, 204);
    assert_eq!(s.get("/v1/schedules/s").0, 404);
}

/// Create tenant `name` (with `quotas`) and a key of `role` in it; the key.
fn tenant(s: &Server, name: &str, quotas: Value, role: &str) -> String {
    let (st, v) = s.post("/v1/tenants", &json!({"name": name, "quotas": quotas}));
    assert!(st == 201, "tenant {name}: {v}");
    key(s, name, role)
}

fn key(s: &Server, tenant: &str, role: &str) -> String {
    let (st, v) = s.post(
        &format!("/v1/tenants/{tenant}/keys"),
        &json!({"role": role, "name": role}),
    );
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_string()
}

#[test]
fn other_tenants_see_nothing_quotas_refuse_firings_on_the_record_and_leftovers_go() {
    let s = Server::start();
    s.deploy("f", "conformance_guest");
    create(
        &s,
        "mine",
        json!({"function": "f", "cron": "0 0 1 1 *", "overlap": "skip", "catch_up": "none"}),
    );
    // Another tenant: 404 on the name, an empty list; its own function of the same name
    // does not make the schedule visible.
    let other = tenant(&s, "other", json!({}), "owner");
    let as_other = |method: &str, path: &str, body: Option<Value>| {
        s.req_as(
            Some(&other),
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
        )
    };
    let (st, v) = as_other("GET", "/v1/schedules", None);
    assert_eq!((st, v["schedules"].clone()), (200, json!([])), "{v}");
    for (method, path, body) in [
        ("GET", "/v1/schedules/mine", None),
        ("POST", "/v1/schedules/mine/trigger", None),
        ("PATCH", "/v1/schedules/mine", Some(json!({"paused": true}))),
        ("DELETE", "/v1/schedules/mine", None),
    ] {
        let (st, v) = as_other(method, path, body);
        assert_eq!(st, 404, "{method} {path}: {v}");
    }
    assert!(
        firings(&s, "mine", "fired").is_empty(),
        "another tenant fired it"
    );
    // Roles: an invoker may not manage schedules.
    let invoker = key(&s, "default", "invoker");
    let (st, v) = s.req_as(Some(&invoker), "GET", "/v1/schedules", None);
    assert_eq!(st, 403, "{v}");

    // A tenant allowed one active execution: the second firing is refused, on the record.
    let tight = tenant(
        &s,
        "tight",
        json!({"max_active_executions": 1}),
        "developer",
    );
    let as_tight = |method: &str, path: &str, body: Option<Vec<u8>>| {
        s.req_as(Some(&tight), method, path, body)
    };
    let (st, v) = as_tight(
        "PUT",
        "/v1/functions/w",
        Some(support::guest_bytes("conformance_guest")),
    );
    assert_eq!(st, 201, "{v}");
    let body = json!({"function": "w", "cron": EVERY_SECOND, "input": scenario("callback", json!({})),
                      "overlap": "allow", "catch_up": "none"});
    let (st, v) = as_tight(
        "PUT",
        "/v1/schedules/w",
        Some(body.to_string().into_bytes()),
    );
    assert_eq!(st, 201, "{v}");
    let v = until("a refused firing", Duration::from_secs(20), || {
        let (_, v) = as_tight("GET", "/v1/schedules/w", None);
        v["last_error"].is_string().then_some(v)
    });
    let err = v["last_error"].as_str().unwrap();
    assert!(err.contains("max_active_executions"), "{v}");
    let refused: Vec<&Value> = v["firings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["result"] == "refused")
        .collect();
    assert!(
        !refused.is_empty() && refused[0]["execution_id"].is_null(),
        "{v}"
    );
    // A trigger is refused the same way, with the quota's 429.
    let (st, t) = as_tight("POST", "/v1/schedules/w/trigger", None);
    assert_eq!(
        (st, t["error"]["code"].as_str()),
        (429, Some("quota_exceeded")),
        "{t}"
    );
    let n = s.metric(r#"durable_schedule_firings_total{tenant="tight",result="refused"}"#);
    assert!(n >= 2.0, "refused firings counted: {n}");
    let (_, page) = as_tight("GET", "/v1/executions", None);
    assert_eq!(page["executions"].as_array().unwrap().len(), 1, "{page}");

    // A deleted tenant's schedules go with it.
    let (st, v) = s.req_as(
        Some(&other),
        "PUT",
        "/v1/functions/g",
        Some(support::guest_bytes("conformance_guest")),
    );
    assert_eq!(st, 201, "{v}");
    let body = json!({"function": "g", "cron": "0 0 1 1 *", "overlap": "skip", "catch_up": "none"});
    let (st, v) = as_other("PUT", "/v1/schedules/theirs", Some(body));
    assert_eq!(st, 201, "{v}");
    let (st, v) = as_other("DELETE", "/v1/functions/g", None);
    assert_eq!(st, 204, "{v}");
    let (st, v) = s.req("DELETE", "/v1/tenants/other", None);
    assert_eq!(st, 204, "{v}");
    let again = tenant(&s, "other", json!({}), "owner");
    let (st, v) = s.req_as(Some(&again), "GET", "/v1/schedules", None);
    assert_eq!((st, v["schedules"].clone()), (200, json!([])), "{v}");
}

/// The client commands against a server: create, list, get, pause, resume, trigger,
/// delete, and an error's exit code.
#[test]
fn the_cli_drives_schedules() {
    let s = Server::start();
    s.deploy("f", "conformance_guest");
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("DURABLE_SERVER", &s.url)
            .env("DURABLE_API_KEY", &s.admin_key)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = cli(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    };
    let out = ok(&[
        "schedules",
        "create",
        "nightly",
        "--function",
        "f",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "America/New_York",
        "--input",
        r#"{"scenario":"echo","value":7}"#,
        "--catch-up",
        "latest",
    ]);
    assert!(
        out.contains("saved schedule nightly") && out.contains("next fire times"),
        "{out}"
    );
    let out = ok(&["schedules", "list"]);
    assert!(
        out.contains("nightly") && out.contains("active") && out.contains("0 3 * * *"),
        "{out}"
    );
    let out = ok(&["schedules", "pause", "nightly"]);
    assert!(out.contains("paused schedule nightly"), "{out}");
    assert_eq!(schedule(&s, "nightly")["paused"], true);
    let out = ok(&["schedules", "trigger", "nightly"]);
    assert!(out.contains("fired schedule nightly: execution "), "{out}");
    let id = out.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(s.wait_done(&id)["output"], json!(7));
    let out = ok(&["schedules", "resume", "nightly"]);
    assert!(out.contains("resumed schedule nightly"), "{out}");
    let out = ok(&["schedules", "get", "nightly"]);
    assert!(
        out.contains(&id) && out.contains("trigger") && out.contains("America/New_York"),
        "{out}"
    );
    let json_out = ok(&["--json", "schedules", "get", "nightly"]);
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(v["firings"][0]["execution_id"], id.as_str());
    ok(&["schedules", "delete", "nightly"]);
    let (code, _, err) = cli(&["schedules", "get", "nightly"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = cli(&[
        "schedules",
        "create",
        "x",
        "--function",
        "f",
        "--cron",
        "nope",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cron"), "{err}");
}
