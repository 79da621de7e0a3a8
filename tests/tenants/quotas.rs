//! Quotas end to end (DESIGN 8): each count or size quota refused with 429
//! `quota_exceeded` naming the quota, its limit and the usage, with nothing written; the
//! invocation rate with 429 `rate_limited` and `Retry-After`; the usage in `GET
//! /v1/tenants/{t}` exact, and still exact after kill -9; a tenant's share of the resident
//! slots; the ceilings on function settings; `max_history_events` as the journal limit.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{guest_bytes, padded_component, scenario, Server};

const CONF: &str = "conformance_guest";

/// A tenant's developer: requests with its key.
struct Dev<'a> {
    s: &'a Server,
    tenant: String,
    key: String,
}

/// Create tenant `name` with `quotas` and a developer key of it.
fn tenant<'a>(s: &'a Server, name: &str, quotas: Value) -> Dev<'a> {
    let (st, v) = s.post("/v1/tenants", &json!({"name": name, "quotas": quotas}));
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.post(
        &format!("/v1/tenants/{name}/keys"),
        &json!({"role": "developer", "name": "quota tests"}),
    );
    assert_eq!(st, 201, "{v}");
    Dev {
        s,
        tenant: name.into(),
        key: v["key"].as_str().unwrap().into(),
    }
}

impl Dev<'_> {
    fn req(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        self.s.req_as(Some(&self.key), method, path, body)
    }

    fn put(&self, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        self.req("PUT", &format!("/v1/functions/{name}"), Some(bytes))
    }

    fn deploy(&self, name: &str, bytes: Vec<u8>) {
        let (st, v) = self.put(name, bytes);
        assert!(st == 201 || st == 200, "deploy {name}: {st} {v}");
    }

    fn invoke(&self, name: &str, input: &Value) -> (u16, Value) {
        let path = format!("/v1/functions/{name}/invoke");
        self.req("POST", &path, Some(input.to_string().into_bytes()))
    }

    fn started(&self, name: &str, input: &Value) -> String {
        let (st, v) = self.invoke(name, input);
        assert!(st == 202 || st == 200, "invoke {name}: {st} {v}");
        v["execution_id"].as_str().unwrap().into()
    }

    fn execution(&self, id: &str) -> Value {
        let (st, v) = self.req("GET", &format!("/v1/executions/{id}"), None);
        assert_eq!(st, 200, "{v}");
        v
    }

    fn history(&self, id: &str) -> Vec<Value> {
        let (st, v) = self.req("GET", &format!("/v1/executions/{id}/history"), None);
        assert_eq!(st, 200, "{v}");
        v["events"].as_array().unwrap().clone()
    }

    /// Poll until `id`'s status is one of `statuses` (bounded).
    fn wait_status(&self, id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.execution(id);
            if statuses.contains(&v["status"].as_str().unwrap()) {
                return v;
            }
            assert!(Instant::now() < deadline, "{id} still {}", v["status"]);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_done(&self, id: &str) -> Value {
        self.wait_status(id, &["succeeded", "failed", "timed_out", "stopped"])
    }

    /// Poll until the history has an event of `event_type` (bounded); its callback ids.
    fn wait_event(&self, id: &str, event_type: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let h = self.history(id);
            if h.iter().any(|e| e["event_type"] == event_type) {
                return h;
            }
            assert!(Instant::now() < deadline, "no {event_type} in {h:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn callback_id(&self, id: &str) -> String {
        let h = self.wait_event(id, "CallbackStarted");
        let e = h.iter().find(|e| e["event_type"] == "CallbackStarted");
        e.unwrap()["details"]["callback_id"]
            .as_str()
            .unwrap()
            .into()
    }

    /// The tenant's usage, as its view in `GET /v1/tenants/{t}` shows it.
    fn usage(&self) -> Value {
        let (st, v) = self.s.get(&format!("/v1/tenants/{}", self.tenant));
        assert_eq!(st, 200, "{v}");
        v["usage"].clone()
    }

    /// Poll until `pred` holds for the usage (bounded); the usage.
    fn wait_usage(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let u = self.usage();
            if pred(&u) {
                return u;
            }
            assert!(Instant::now() < deadline, "usage never {what}: {u}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What a refused request must leave as it was: usage, functions and executions.
    fn snapshot(&self) -> (Value, Value, Value) {
        let (_, functions) = self.req("GET", "/v1/functions", None);
        let (_, executions) = self.req("GET", "/v1/executions?limit=1000", None);
        (self.usage(), functions, executions)
    }
}

/// A 429 `quota_exceeded` whose message is `message` exactly.
fn assert_quota(what: &str, (st, v): (u16, Value), message: &str) {
    assert_eq!(st, 429, "{what}: {v}");
    assert_eq!(v["error"]["code"], "quota_exceeded", "{what}: {v}");
    assert_eq!(v["error"]["message"], message, "{what}");
}

/// Each count or size quota, one table: the tenant's quotas, what is done first (within
/// them), the request over the quota and its exact message. The refused request must
/// write nothing: the tenant's usage, functions and executions stay as they were.
#[test]
fn each_count_and_size_quota_is_429_quota_exceeded_and_writes_nothing() {
    let s = Server::start();
    let hello = guest_bytes("hello");
    let conf = guest_bytes(CONF);
    let (h, c) = (hello.len() as u64, conf.len() as u64);
    let bigger = padded_component(&hello, 200, 1);
    let b = bigger.len() as u64;
    let echo = scenario("echo", json!({"value": "x".repeat(100)}));
    let echo_len = echo.to_string().len() as u64;
    type Step = Box<dyn Fn(&Dev)>;
    type Refused = Box<dyn Fn(&Dev) -> (u16, Value)>;
    let cases: Vec<(&str, Value, Step, Refused, String)> = vec![
        (
            "max_functions: a new name",
            json!({"max_functions": 2}),
            Box::new({
                let (hello, conf) = (hello.clone(), conf.clone());
                move |d: &Dev| {
                    d.deploy("one", hello.clone());
                    d.deploy("two", conf.clone());
                }
            }),
            Box::new({
                let hello = hello.clone();
                move |d: &Dev| d.put("three", hello.clone())
            }),
            "max_functions: the tenant has 2 functions, its limit is 2".into(),
        ),
        (
            "max_component_bytes: announced by Content-Length",
            json!({"max_component_bytes": h - 1}),
            Box::new(|_: &Dev| {}),
            Box::new({
                let hello = hello.clone();
                move |d: &Dev| d.put("hello", hello.clone())
            }),
            format!(
                "max_component_bytes: the component is {h} bytes, the tenant's limit is {}",
                h - 1
            ),
        ),
        (
            "max_stored_bytes: an upload",
            json!({"max_stored_bytes": h + 100}),
            Box::new({
                let hello = hello.clone();
                move |d: &Dev| d.deploy("hello", hello.clone())
            }),
            Box::new({
                let bigger = bigger.clone();
                move |d: &Dev| d.put("bigger", bigger.clone())
            }),
            format!(
                "max_stored_bytes: the tenant stores {h} bytes and this upload adds {b}, its \
                 limit is {}",
                h + 100
            ),
        ),
        (
            "max_stored_bytes: an invocation's input",
            json!({"max_stored_bytes": c + 10}),
            Box::new({
                let conf = conf.clone();
                move |d: &Dev| d.deploy("conf", conf.clone())
            }),
            Box::new({
                let echo = echo.clone();
                move |d: &Dev| d.invoke("conf", &echo)
            }),
            format!(
                "max_stored_bytes: the tenant stores {c} bytes and the input adds {echo_len}, \
                 its limit is {}",
                c + 10
            ),
        ),
        (
            "max_active_executions",
            json!({"max_active_executions": 2}),
            Box::new({
                let conf = conf.clone();
                move |d: &Dev| {
                    d.deploy("conf", conf.clone());
                    for _ in 0..2 {
                        let id = d.started("conf", &scenario("callback", json!({})));
                        d.wait_status(&id, &["suspended"]);
                    }
                }
            }),
            Box::new(|d: &Dev| d.invoke("conf", &scenario("echo", json!({"value": 1})))),
            "max_active_executions: the tenant has 2 executions running or suspended, its \
             limit is 2"
                .into(),
        ),
    ];
    for (n, (what, quotas, setup, refused, message)) in cases.into_iter().enumerate() {
        let d = tenant(&s, &format!("case-{n}"), quotas);
        setup(&d);
        let before = d.snapshot();
        assert_quota(what, refused(&d), &message);
        assert_eq!(d.snapshot(), before, "{what}: the refusal wrote nothing");
    }
}

/// What stays allowed at a count: a re-upload of an existing name (the same bytes, or a new
/// version), an idempotent replay of an existing execution; and what frees room: a deleted
/// function, an execution that ends.
#[test]
fn at_a_count_reuploads_and_replays_pass_and_an_end_frees_room() {
    let s = Server::start();
    let d = tenant(
        &s,
        "acme",
        json!({"max_functions": 1, "max_active_executions": 1}),
    );
    let conf = guest_bytes(CONF);
    d.deploy("conf", conf.clone());
    assert_eq!(d.put("conf", conf.clone()).0, 200, "the same bytes");
    assert_eq!(
        d.put("conf", padded_component(&conf, 10, 1)).0,
        201,
        "a new version of an existing function"
    );
    assert_eq!(d.put("other", guest_bytes("hello")).0, 429);

    let path = "/v1/functions/conf/invoke";
    let input = scenario("callback", json!({})).to_string().into_bytes();
    let keyed = |key: &str| {
        let client = reqwest::blocking::Client::new();
        let r = client
            .post(format!("{}{path}", s.url))
            .bearer_auth(&d.key)
            .header("Idempotency-Key", key)
            .body(input.clone())
            .send()
            .unwrap();
        let st = r.status().as_u16();
        (st, r.json::<Value>().unwrap())
    };
    let (st, first) = keyed("k1");
    assert_eq!(st, 202, "{first}");
    let id = first["execution_id"].as_str().unwrap();
    let (st, again) = keyed("k1");
    assert_eq!((st, &again["execution_id"]), (202, &first["execution_id"]));
    assert_eq!(keyed("k2").0, 429, "a new key is a new execution");
    let cb = d.callback_id(id);
    let (st, v) = d.req(
        "POST",
        &format!("/v1/callbacks/{cb}/succeed"),
        Some(b"1".to_vec()),
    );
    assert_eq!(st, 200, "{v}");
    d.wait_done(id);
    d.wait_usage("without active executions", |u| {
        u["max_active_executions"] == 0
    });
    assert_eq!(keyed("k2").0, 202, "room once it ended");

    let (st, v) = d.req("DELETE", "/v1/functions/conf", None);
    assert_eq!(st, 204, "{v}");
    assert_eq!(
        d.put("other", guest_bytes("hello")).0,
        201,
        "room once deleted"
    );
}

/// Concurrent invocations at a tenant's `max_active_executions`: exactly the quota's worth
/// start, every other one is refused, and the executions listed are those that started.
#[test]
fn concurrent_invocations_do_not_overshoot_max_active_executions() {
    const QUOTA: usize = 5;
    const CLIENTS: usize = 24;
    let s = Server::start();
    let d = tenant(&s, "acme", json!({"max_active_executions": QUOTA}));
    d.deploy("conf", guest_bytes(CONF));
    let input = scenario("callback", json!({}));
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(|| d.invoke("conf", &input).0))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let started = answers.iter().filter(|st| **st == 202).count();
    let refused = answers.iter().filter(|st| **st == 429).count();
    assert_eq!((started, refused), (QUOTA, CLIENTS - QUOTA), "{answers:?}");
    let (_, page) = d.req("GET", "/v1/executions", None);
    assert_eq!(page["executions"].as_array().unwrap().len(), QUOTA);
    assert_eq!(d.usage()["max_active_executions"], QUOTA);
}

/// An upload with no Content-Length over the tenant's `max_component_bytes` is refused
/// while it streams (the body still open), with 429, not the 413 of `--max-upload-bytes`.
#[test]
fn a_streamed_upload_over_max_component_bytes_is_refused_while_it_streams() {
    const LIMIT: usize = 256 * 1024;
    let s = Server::start();
    let d = tenant(&s, "acme", json!({"max_component_bytes": LIMIT}));
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "PUT /v1/functions/big HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        d.key
    )
    .unwrap();
    let body = padded_component(&guest_bytes("hello"), 2 * LIMIT, 3);
    let mut sent = 0;
    for chunk in body.chunks(32 * 1024) {
        if sent > LIMIT + LIMIT / 2 {
            break; // and the body stays open
        }
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if conn.write_all(&frame).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("}}") {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer while the body was open: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(
        text.contains(&format!(
            "max_component_bytes: the upload is larger than the tenant's limit of {LIMIT} bytes"
        )),
        "{text}"
    );
    assert_eq!(d.req("GET", "/v1/functions/big", None).0, 404);
    assert_eq!(d.usage()["max_stored_bytes"], 0);
}

/// Over the tenant's invocation rate: 429 `rate_limited` with a whole number of seconds in
/// `Retry-After`, and no execution; after that many seconds a token is back. Another
/// tenant is not limited by it.
#[test]
fn over_the_invocation_rate_is_429_rate_limited_with_retry_after() {
    let s = Server::start();
    let d = tenant(
        &s,
        "acme",
        json!({"invocations_per_second": 0.5, "invocation_burst": 2}),
    );
    let other = tenant(&s, "other", json!({}));
    d.deploy("conf", guest_bytes(CONF));
    other.deploy("conf", guest_bytes(CONF));
    let input = scenario("echo", json!({"value": 1}));
    let invoke = |d: &Dev| {
        reqwest::blocking::Client::new()
            .post(format!("{}/v1/functions/conf/invoke", s.url))
            .bearer_auth(&d.key)
            .body(input.to_string())
            .send()
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(invoke(&d).status().as_u16(), 202, "within the burst");
    }
    let r = invoke(&d);
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A token every 2 s: the next one is at most 2 s away.
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("invocations_per_second: "), "{m}");
    let (_, page) = d.req("GET", "/v1/executions", None);
    assert_eq!(
        page["executions"].as_array().unwrap().len(),
        2,
        "none for the refusal"
    );
    for _ in 0..5 {
        assert_eq!(
            invoke(&other).status().as_u16(),
            202,
            "another tenant's rate"
        );
    }
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(invoke(&d).status().as_u16(), 202, "after Retry-After");
}

/// Stored bytes of a tenant with functions only are its versions' component bytes exactly;
/// the same bytes again add nothing, a new version its size, a deleted function's versions
/// stay; an execution adds its records and takes them away when its retention ends.
#[test]
fn stored_bytes_are_the_versions_bytes_and_the_executions_records() {
    let s = Server::start();
    let d = tenant(&s, "acme", json!({}));
    let (hello, conf) = (guest_bytes("hello"), guest_bytes(CONF));
    let v2 = padded_component(&hello, 1000, 9);
    let (h, c, h2) = (hello.len(), conf.len(), v2.len());
    d.deploy("hello", hello.clone());
    let (st, v) = d.put("conf", conf.clone());
    assert_eq!(st, 201, "{v}");
    type Step<'a> = Box<dyn Fn() + 'a>;
    // (what, the step, functions after it, stored bytes after it)
    let steps: Vec<(&str, Step, usize, usize)> = vec![
        ("two functions", Box::new(|| {}), 2, h + c),
        (
            "the same bytes again",
            Box::new(|| assert_eq!(d.put("hello", hello.clone()).0, 200)),
            2,
            h + c,
        ),
        (
            "a new version",
            Box::new(|| assert_eq!(d.put("hello", v2.clone()).0, 201)),
            2,
            h + c + h2,
        ),
        (
            "a deleted function",
            Box::new(|| assert_eq!(d.req("DELETE", "/v1/functions/hello", None).0, 204)),
            1,
            h + c + h2,
        ),
    ];
    for (what, step, functions, bytes) in steps {
        step();
        let u = d.usage();
        assert_eq!(u["max_functions"], functions, "{what}: {u}");
        assert_eq!(u["max_stored_bytes"], bytes, "{what}: {u}");
    }
    let components = (h + c + h2) as u64;
    let (st, v) = d.req(
        "PATCH",
        "/v1/functions/conf",
        Some(br#"{"retention_secs": 1}"#.to_vec()),
    );
    assert_eq!(st, 200, "{v}");
    let id = d.started(
        "conf",
        &scenario("echo", json!({"value": "y".repeat(5000)})),
    );
    d.wait_done(&id);
    let u = d.usage();
    let with = u["max_stored_bytes"].as_u64().unwrap();
    // Its record and first event each hold the 5 KB input, and its output once more.
    assert!(with > components + 15_000, "{u}");
    d.wait_usage("back to the components after the retention", |u| {
        u["max_stored_bytes"] == components
    });
    assert_eq!(d.req("GET", &format!("/v1/executions/{id}"), None).0, 404);
}

/// The usage is exact, and still exact after kill -9 and a restart, with executions
/// finished, suspended and running (resident) at the crash: counts equal, and bytes equal
/// once nothing is resident (an activation cut short is recorded by the recovery, and
/// what it had written is counted from the store).
#[test]
fn usage_stays_exact_across_kill_9_with_executions_running_suspended_and_finished() {
    let mut s = Server::start();
    let key = {
        let d = tenant(&s, "acme", json!({}));
        d.deploy("conf", guest_bytes(CONF));
        d.deploy("hello", guest_bytes("hello"));
        d.key.clone()
    };
    // Each `Dev` lives until the next restart, which replaces the server in place.
    fn dev<'a>(s: &'a Server, key: &str) -> Dev<'a> {
        Dev {
            s,
            tenant: "acme".into(),
            key: key.into(),
        }
    }
    let d = dev(&s, &key);
    let finished = d.started("conf", &scenario("echo", json!({"value": "done"})));
    d.wait_done(&finished);
    let suspended = d.started("conf", &scenario("callback", json!({})));
    d.wait_status(&suspended, &["suspended"]);
    let running = d.started("conf", &scenario("block-sleep", json!({"ms": 600_000})));
    d.wait_event(&running, "StepSucceeded");
    let before = d.wait_usage("with one resident", |u| {
        u["max_concurrent_activations"] == 1
    });
    assert_eq!(before["max_functions"], 2, "{before}");
    assert_eq!(before["max_active_executions"], 2, "{before}");
    drop(d);

    s.crash_and_restart();
    let d = dev(&s, &key);
    let after = d.wait_usage("with the running one resident again", |u| {
        u["max_concurrent_activations"] == 1
    });
    for quota in ["max_functions", "max_active_executions"] {
        assert_eq!(
            after[quota], before[quota],
            "{quota}: {before} then {after}"
        );
    }
    assert!(
        after["max_stored_bytes"].as_u64() >= before["max_stored_bytes"].as_u64(),
        "{before} then {after}"
    );

    // At rest (nothing resident): every number survives a crash exactly.
    let (st, v) = d.req("POST", &format!("/v1/executions/{running}/stop"), None);
    assert!(st == 200 || st == 202, "{v}");
    d.wait_done(&running);
    let at_rest = d.wait_usage("with the stopped one ended", |u| {
        u["max_active_executions"] == 1 && u["max_concurrent_activations"] == 0
    });
    drop(d);
    s.crash_and_restart();
    let d = dev(&s, &key);
    assert_eq!(d.usage(), at_rest, "after a crash at rest");

    let cb = d.callback_id(&suspended);
    let (st, v) = d.req(
        "POST",
        &format!("/v1/callbacks/{cb}/succeed"),
        Some(br#"{"approved": true}"#.to_vec()),
    );
    assert_eq!(st, 200, "{v}");
    d.wait_done(&suspended);
    let ended = d.wait_usage("with nothing active", |u| u["max_active_executions"] == 0);
    assert!(
        ended["max_stored_bytes"].as_u64() > at_rest["max_stored_bytes"].as_u64(),
        "the callback's result and the end are stored: {at_rest} then {ended}"
    );
    drop(d);
    s.crash_and_restart();
    assert_eq!(
        dev(&s, &key).usage(),
        ended,
        "after a crash with everything ended"
    );
}

/// A tenant with a share of 1 of 4 resident slots runs its three executions one at a time,
/// while another tenant's three run at once in the slots left.
#[test]
fn a_capped_tenant_runs_at_most_its_share_and_others_take_the_free_slots() {
    let s = Server::start_with(&["--max-resident", "4"]);
    let capped = tenant(&s, "capped", json!({"max_concurrent_activations": 1}));
    let free = tenant(&s, "free", json!({}));
    for d in [&capped, &free] {
        let (st, v) = d.req(
            "PUT",
            "/v1/functions/conf?memory_limit_mb=16",
            Some(guest_bytes(CONF)),
        );
        assert_eq!(st, 201, "{v}");
    }
    let input = scenario("block-sleep", json!({"ms": 1500}));
    let ids: Vec<(&Dev, String)> = [&capped, &free]
        .into_iter()
        .flat_map(|d| (0..3).map(move |_| d))
        .map(|d| (d, d.started("conf", &input)))
        .collect();
    let (mut peak_capped, mut peak_free) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids
        .iter()
        .any(|(d, id)| d.execution(id)["status"] == "running")
    {
        let c = capped.usage()["max_concurrent_activations"]
            .as_u64()
            .unwrap();
        let f = free.usage()["max_concurrent_activations"].as_u64().unwrap();
        peak_capped = peak_capped.max(c);
        peak_free = peak_free.max(f);
        assert!(c <= 1, "the capped tenant has {c} activations in progress");
        assert!(Instant::now() < deadline, "the executions never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!((peak_capped, peak_free), (1, 3));
    for (d, id) in &ids {
        assert_eq!(d.wait_done(id)["status"], "succeeded");
    }
}

/// A function setting over its tenant's ceiling is 400 naming the setting and the ceiling
/// (upload query and PATCH); within it, it is taken. A ceiling lowered later bounds the
/// next activation, and the function's settings in force show it.
#[test]
fn a_tenant_ceiling_refuses_a_function_setting_and_bounds_activations() {
    let s = Server::start();
    let d = tenant(
        &s,
        "acme",
        json!({"memory_limit_mb": 64, "activation_timeout_secs": 30}),
    );
    let refusals = [
        (
            "PUT",
            "/v1/functions/conf?memory_limit_mb=100",
            Some(guest_bytes(CONF)),
            "memory_limit_mb = 100: the tenant's ceiling is 64",
        ),
        (
            "PUT",
            "/v1/functions/conf?activation_timeout_secs=31",
            Some(guest_bytes(CONF)),
            "activation_timeout_secs = 31: the tenant's ceiling is 30",
        ),
    ];
    for (method, path, body, message) in refusals {
        let (st, v) = d.req(method, path, body);
        assert_eq!(st, 400, "{path}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(message), "{path}: {m}");
    }
    assert_eq!(
        d.req("GET", "/v1/functions/conf", None).0,
        404,
        "nothing stored"
    );
    let (st, v) = d.put("conf", guest_bytes(CONF));
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["settings"]["memory_limit_mb"], 64,
        "the server's 128, within 64"
    );
    let (st, v) = d.req(
        "PATCH",
        "/v1/functions/conf",
        Some(br#"{"activation_timeout_secs": 45}"#.to_vec()),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("activation_timeout_secs = 45: the tenant's ceiling is 30"),
        "{v}"
    );
    let (st, v) = d.req(
        "PATCH",
        "/v1/functions/conf",
        Some(br#"{"activation_timeout_secs": 20}"#.to_vec()),
    );
    assert_eq!(st, 200, "{v}");

    // The admin lowers the ceiling to 1 s: a spinning guest is stopped after 1 s, not 20.
    let (st, v) = s.req(
        "PATCH",
        "/v1/tenants/acme",
        Some(br#"{"quotas": {"activation_timeout_secs": 1}}"#.to_vec()),
    );
    assert_eq!(st, 200, "{v}");
    let (_, f) = d.req("GET", "/v1/functions/conf", None);
    assert_eq!(f["settings"]["activation_timeout_secs"], 1.0, "{f}");
    let started = Instant::now();
    let id = d.started("conf", &scenario("loop-forever", json!({})));
    let ex = d.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(
        ex["error"]["error_type"], "Runtime.ActivationTimeout",
        "{ex}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// The tenant's `max_history_events` is the journal limit of its executions: a runaway
/// guest fails with `Durable.LimitExceeded` naming it, and another tenant's executions
/// keep the server's limit.
#[test]
fn max_history_events_is_the_journal_limit_of_the_tenants_executions() {
    let s = Server::start();
    let limited = tenant(&s, "limited", json!({"max_history_events": 10}));
    let other = tenant(&s, "other", json!({}));
    let input = scenario("steps", json!({"count": 50}));
    for d in [&limited, &other] {
        d.deploy("conf", guest_bytes(CONF));
    }
    let id = limited.started("conf", &input);
    let ex = limited.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["error"]["error_type"], "Durable.LimitExceeded", "{ex}");
    let m = ex["error"]["error_message"].as_str().unwrap();
    assert!(m.contains("max_history_events = 10"), "{m}");
    assert!(
        limited.history(&id).len() <= 14,
        "the history stopped near 10"
    );
    let id = other.started("conf", &input);
    assert_eq!(other.wait_done(&id)["status"], "succeeded");
}
