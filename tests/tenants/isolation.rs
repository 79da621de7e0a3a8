//! Tenant isolation: tenant B's key on every operation of /v1/openapi.json, aimed at tenant
//! A's functions, executions (running, suspended on a callback, finished), callbacks,
//! idempotency keys, keys and tenant name. Each answers 404 exactly as for an object that
//! never existed (the same bytes but for the id), or 403 for an admin-only route whatever
//! it names; lists and `whoami` answer about B alone; nothing of A changes. Also the
//! `Durable-Tenant` header: for admin keys only.
//!
//! The matrix is keyed by the spec's operations: one in the spec but not in `table` (or the
//! other way round) fails the test, so a new route cannot escape it.
//!
//! This file also holds the small HTTP client the other tenants tests share (`call`, `As`,
//! `new_key`): the harness's `req_as` gives neither headers nor raw bytes.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{guest_bytes, scenario, Server};

// ---- the shared client ----

/// One answer: status, headers and the body's bytes (for an event stream: not read, so a
/// stream that never ends cannot hang a test).
pub(crate) struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_stream(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text())
    }
}

fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .unwrap()
    })
}

/// `method path` with `authorization` as the whole `Authorization` header (none if `None`),
/// the `headers` given, and `body`.
pub(crate) fn raw(
    s: &Server,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Resp {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = client().request(m, format!("{}{path}", s.url));
    if let Some(a) = authorization {
        r = r.header(reqwest::header::AUTHORIZATION, a);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    let resp = r.send().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let streaming = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let body = if streaming {
        Vec::new()
    } else {
        resp.bytes()
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
            .to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// `method path` with `key` as a bearer key (no `Authorization` if `None`).
pub(crate) fn call(
    s: &Server,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Resp {
    let auth = key.map(|k| format!("Bearer {k}"));
    raw(s, auth.as_deref(), method, path, body, headers)
}

/// An API key as created: its id and the whole key.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub id: String,
    pub key: String,
}

/// Create a key of `role` in `tenant`, with the key `by`.
pub(crate) fn new_key(s: &Server, by: &str, tenant: &str, role: &str) -> Key {
    let body = json!({"role": role, "name": format!("{role} of {tenant}")});
    let r = call(
        s,
        Some(by),
        "POST",
        &format!("/v1/tenants/{tenant}/keys"),
        Some(body.to_string().into_bytes()),
        &[],
    );
    assert_eq!(r.status, 201, "creating a {role} key in {tenant}: {r}");
    let v = r.json();
    Key {
        id: v["key_id"].as_str().unwrap().to_string(),
        key: v["key"].as_str().unwrap().to_string(),
    }
}

/// Create tenant `name` (with the bootstrap admin key) and an owner key for it.
pub(crate) fn tenant_with_owner(s: &Server, name: &str) -> Key {
    let body = json!({ "name": name }).to_string().into_bytes();
    let r = call(
        s,
        Some(&s.admin_key),
        "POST",
        "/v1/tenants",
        Some(body),
        &[],
    );
    assert_eq!(r.status, 201, "creating tenant {name}: {r}");
    new_key(s, &s.admin_key, name, "owner")
}

/// Requests made with one key.
pub(crate) struct As<'a> {
    pub s: &'a Server,
    pub key: String,
}

impl As<'_> {
    pub fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Resp {
        call(self.s, Some(&self.key), method, path, body, &[])
    }

    pub fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        self.call("POST", path, Some(body.to_string().into_bytes()))
    }

    pub fn deploy(&self, name: &str, guest: &str) -> Value {
        let r = self.call(
            "PUT",
            &format!("/v1/functions/{name}"),
            Some(guest_bytes(guest)),
        );
        assert_eq!(r.status, 201, "deploy {name}: {r}");
        r.json()
    }

    /// Invoke (no wait) and return the execution id.
    pub fn invoke(&self, name: &str, input: &Value) -> String {
        let r = self.post(&format!("/v1/functions/{name}/invoke"), input);
        assert_eq!(r.status, 202, "invoke {name}: {r}");
        r.json()["execution_id"].as_str().unwrap().to_string()
    }

    /// Invoke and wait (up to 30 s) for the end: the execution.
    pub fn run(&self, name: &str, input: &Value) -> Value {
        let r = self.post(&format!("/v1/functions/{name}/invoke?wait=30"), input);
        assert_eq!(r.status, 200, "invoke {name}: {r}");
        r.json()
    }

    pub fn execution(&self, id: &str) -> Value {
        let r = self.get(&format!("/v1/executions/{id}"));
        assert_eq!(r.status, 200, "{id}: {r}");
        r.json()
    }

    /// Poll (bounded) until the execution's status is one of `statuses`.
    pub fn wait_status(&self, id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.execution(id);
            if statuses.iter().any(|s| v["status"] == *s) {
                return v;
            }
            assert!(Instant::now() < deadline, "{id} still {}", v["status"]);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Poll (bounded) until the history holds an event of `event_type`: that event.
    pub fn wait_event(&self, id: &str, event_type: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(&format!("/v1/executions/{id}/history"));
            assert_eq!(r.status, 200, "{r}");
            let found = r.json()["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["event_type"] == event_type)
                .cloned();
            if let Some(e) = found {
                return e;
            }
            assert!(Instant::now() < deadline, "{id} has no {event_type}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The id of the execution's first callback (waits for it to be created).
    pub fn callback_id(&self, id: &str) -> String {
        let e = self.wait_event(id, "CallbackStarted");
        e["details"]["callback_id"].as_str().unwrap().to_string()
    }
}

/// The `(method, path template)` of every operation in the server's /v1/openapi.json.
pub(crate) fn spec_operations(s: &Server) -> BTreeSet<(String, String)> {
    let r = call(s, Some(&s.admin_key), "GET", "/v1/openapi.json", None, &[]);
    assert_eq!(r.status, 200, "{r}");
    let spec = r.json();
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let known = [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ];
            if known.contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(ops.len() >= 20, "the spec lists only {ops:?}");
    ops
}

/// Whether `path` (without its query) is an instance of the spec's `template`.
pub(crate) fn fits(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap();
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// An execution id that never existed, of the same shape as real ones.
pub(crate) fn never_execution() -> String {
    durable_host::ids::execution_id_to_string(&durable_host::ids::new_execution_id())
}

// ---- the matrix ----

const A: &str = "tenant-a";
const B: &str = "tenant-b";
/// A tenant that never existed, named like `A`.
const NEVER_TENANT: &str = "tenant-z";
/// A's function, and one never created by anyone, of the same length.
const A_FN: &str = "alpha-fn";
const NEVER_FN: &str = "omega-fn";
/// A's function that B uploads its own of the same name to.
const A_PUT: &str = "alpha-put";
/// A function both tenants have, for the idempotency keys.
const SHARED_FN: &str = "shared-fn";
const A_IDEMPOTENCY_KEY: &str = "order-1234";
/// In every input of A's: a response to B that contains it shows A's data.
const A_SECRET: &str = "alpha-secret";

/// Both tenants and what they own.
struct Fixture {
    a: Key,
    b: Key,
    /// A's executions: running (resident, sleeping), suspended on a callback, finished
    /// (with logs), and the one its idempotency key names.
    a_running: String,
    a_suspended: String,
    a_finished: String,
    a_idempotent: String,
    /// A's callback still pending (of `a_suspended`), and one completed long ago.
    a_pending_cb: String,
    a_done_cb: String,
    a_done_cb_exec: String,
    b_finished: String,
    b_suspended: String,
    /// A's webhook and a delivery of it (the test event).
    a_webhook: String,
    a_delivery: String,
    /// A's schedule (paused).
    a_schedule: String,
    /// A's bulk redrive job.
    a_job: String,
    /// A's background upload (of `A_FN`).
    a_upload: String,
}

impl Fixture {
    fn a_ids(&self) -> Vec<String> {
        vec![
            self.a_running.clone(),
            self.a_suspended.clone(),
            self.a_finished.clone(),
            self.a_idempotent.clone(),
            self.a_pending_cb.clone(),
            self.a_done_cb.clone(),
            self.a_done_cb_exec.clone(),
            self.a.id.clone(),
            self.a_webhook.clone(),
            self.a_delivery.clone(),
            self.a_schedule.clone(),
            self.a_job.clone(),
            self.a_upload.clone(),
        ]
    }

    /// What no answer to B may contain: A's ids, names and data.
    fn a_marks(&self) -> Vec<String> {
        let mut v = self.a_ids();
        v.extend([A.to_string(), A_FN.to_string(), A_SECRET.to_string()]);
        v
    }

    fn set_up(s: &Server) -> Fixture {
        let a_key = tenant_with_owner(s, A);
        let b_key = tenant_with_owner(s, B);
        let a = As {
            s,
            key: a_key.key.clone(),
        };
        let b = As {
            s,
            key: b_key.key.clone(),
        };
        for name in [A_FN, A_PUT, SHARED_FN] {
            a.deploy(name, "conformance_guest");
        }
        for name in ["beta-fn", SHARED_FN] {
            b.deploy(name, "conformance_guest");
        }
        let secret = |what: &str| json!(format!("{A_SECRET}-{what}"));

        // Running: resident, sleeping in the guest for longer than the test.
        let a_running = a.invoke(
            A_FN,
            &scenario(
                "block-sleep",
                json!({"ms": 120_000, "tag": secret("running")}),
            ),
        );
        a.wait_event(&a_running, "StepSucceeded");
        // Suspended on a callback that has a heartbeat timeout.
        let a_suspended = a.invoke(
            A_FN,
            &scenario(
                "callback",
                json!({"heartbeat_timeout_ms": 600_000, "tag": secret("suspended")}),
            ),
        );
        let a_pending_cb = a.callback_id(&a_suspended);
        a.wait_status(&a_suspended, &["suspended"]);
        // Finished, with log lines.
        let a_finished = a.invoke(A_FN, &scenario("stdout", json!({"text": secret("log")})));
        assert_eq!(
            a.wait_status(&a_finished, &["succeeded"])["status"],
            "succeeded"
        );
        // A callback completed, its execution finished.
        let a_done_cb_exec = a.invoke(A_FN, &scenario("callback", json!({"tag": secret("cb")})));
        let a_done_cb = a.callback_id(&a_done_cb_exec);
        let r = a.post(
            &format!("/v1/callbacks/{a_done_cb}/succeed"),
            &secret("result"),
        );
        assert_eq!(r.status, 200, "{r}");
        a.wait_status(&a_done_cb_exec, &["succeeded"]);
        // Under an idempotency key.
        let r = call(
            s,
            Some(&a.key),
            "POST",
            &format!("/v1/functions/{SHARED_FN}/invoke?wait=30"),
            Some(idempotent_input().to_string().into_bytes()),
            &[("Idempotency-Key", A_IDEMPOTENCY_KEY)],
        );
        assert_eq!(r.status, 200, "{r}");
        let a_idempotent = r.json()["execution_id"].as_str().unwrap().to_string();

        let b_finished = b.run("beta-fn", &scenario("echo", json!({"value": "beta"})))
            ["execution_id"]
            .as_str()
            .unwrap()
            .to_string();
        let b_suspended = b.invoke(SHARED_FN, &scenario("wait", json!({"ms": 600_000})));
        b.wait_status(&b_suspended, &["suspended"]);
        // A webhook (to an allowlisted port nobody listens on) and a delivery of it.
        let r = a.post(
            "/v1/webhooks",
            &json!({"url": format!("http://{WEBHOOK_DEST}/{A_SECRET}-hook"), "events": ["execution.failed"]}),
        );
        assert_eq!(r.status, 201, "{r}");
        let a_webhook = r.json()["id"].as_str().unwrap().to_string();
        let r = a.post(&format!("/v1/webhooks/{a_webhook}/test"), &json!({}));
        assert_eq!(r.status, 202, "{r}");
        let a_delivery = r.json()["id"].as_str().unwrap().to_string();
        // Schedules, paused: one for the 404s, one whose name B uses for its own.
        for name in [A_SCHEDULE, SHARED_SCHEDULE] {
            let body = json!({"function": SHARED_FN, "cron": "0 0 1 1 *", "overlap": "skip",
                              "catch_up": "none", "paused": true, "input": secret("schedule")});
            let r = a.call(
                "PUT",
                &format!("/v1/schedules/{name}"),
                Some(body.to_string().into_bytes()),
            );
            assert_eq!(r.status, 201, "{r}");
        }
        let r = a.post(
            "/v1/executions/redrive",
            &json!({"function": A_FN, "status": "timed_out"}),
        );
        assert_eq!(r.status, 202, "{r}");
        let a_job = r.json()["job_id"].as_str().unwrap().to_string();
        let r = a.call(
            "PUT",
            &format!("/v1/functions/{A_FN}?async=true"),
            Some(guest_bytes("conformance_guest")),
        );
        assert_eq!(r.status, 202, "{r}");
        let a_upload = r.json()["upload_id"].as_str().unwrap().to_string();
        Fixture {
            a_upload,
            a_schedule: A_SCHEDULE.to_string(),
            a_job,
            a_webhook,
            a_delivery,
            a: a_key,
            b: b_key,
            a_running,
            a_suspended,
            a_finished,
            a_idempotent,
            a_pending_cb,
            a_done_cb,
            a_done_cb_exec,
            b_finished,
            b_suspended,
        }
    }
}

/// A's schedule, and the never-existing name of the same length.
const A_SCHEDULE: &str = "alpha-sched";
const NEVER_SCHEDULE: &str = "never-sched";
/// A schedule name both tenants use.
const SHARED_SCHEDULE: &str = "shared-sched";

/// Where webhooks may go in these tests (`--allow-outbound`): a port nobody listens on.
pub(crate) const WEBHOOK_DEST: &str = "127.0.0.1:9";

/// A webhook id that never existed.
fn never_webhook() -> String {
    format!("wh_{}", ulid::Ulid::new())
}

/// The input A invoked `SHARED_FN` with under its idempotency key (B sends the same, so
/// it is not one of A's secrets).
fn idempotent_input() -> Value {
    scenario("echo", json!({"value": "order 1234"}))
}

/// One request of the matrix.
struct Req {
    method: &'static str,
    path: String,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
}

fn req(method: &'static str, path: impl Into<String>) -> Req {
    Req {
        method,
        path: path.into(),
        body: None,
        headers: Vec::new(),
    }
}

impl Req {
    fn json(mut self, v: Value) -> Req {
        self.body = Some(v.to_string().into_bytes());
        self
    }

    fn bytes(mut self, b: Vec<u8>) -> Req {
        self.body = Some(b);
        self
    }

    fn header(mut self, k: &'static str, v: &str) -> Req {
        self.headers.push((k, v.to_string()));
        self
    }

    fn send(&self, s: &Server, key: Option<&str>) -> Resp {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        call(s, key, self.method, &self.path, self.body.clone(), &headers)
    }
}

type Check = Box<dyn Fn(&Resp) -> Result<(), String>>;

/// What B's request must get.
enum Expect {
    /// 404, with the answer `fake` gets (the same request naming what never existed),
    /// byte for byte once each `(real, fake)` of `swap` is replaced.
    Hidden {
        fake: Req,
        swap: Vec<(String, String)>,
    },
    /// 403: an admin-only route; the same bytes as for `fake` (naming what never existed).
    AdminOnly { fake: Option<Req> },
    /// 2xx about B alone: `check` holds, and no mark of A is in the body.
    Own(Check),
    /// 2xx without any key.
    Open,
}

struct Case {
    req: Req,
    expect: Expect,
}

fn hidden(real: Req, fake: Req, swap: &[(&str, &str)]) -> Case {
    Case {
        req: real,
        expect: Expect::Hidden {
            fake,
            swap: swap
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        },
    }
}

/// The same request on A's execution `id` and on one that never existed.
fn on_execution(method: &'static str, id: &str, tail: &str) -> Case {
    let never = never_execution();
    hidden(
        req(method, format!("/v1/executions/{id}{tail}")),
        req(method, format!("/v1/executions/{never}{tail}")),
        &[(id, &never)],
    )
}

fn on_callback(id: &str, action: &str, body: Option<Value>) -> Case {
    let never = durable_host::ids::callback_id();
    let mk = |cb: &str| {
        let r = req("POST", format!("/v1/callbacks/{cb}/{action}"));
        match &body {
            Some(b) => r.json(b.clone()),
            None => r,
        }
    };
    hidden(mk(id), mk(&never), &[(id, &never)])
}

fn admin_only(real: Req, fake: Option<Req>) -> Case {
    Case {
        req: real,
        expect: Expect::AdminOnly { fake },
    }
}

fn own(r: Req, check: impl Fn(&Resp) -> Result<(), String> + 'static) -> Case {
    Case {
        req: r,
        expect: Expect::Own(Box::new(check)),
    }
}

/// The execution ids of a list page.
fn listed(r: &Resp) -> Vec<String> {
    r.json()["executions"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|e| e["execution_id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every operation of the spec and the cases that cover it.
fn table(f: &Fixture) -> Vec<((&'static str, &'static str), Vec<Case>)> {
    let a_execs = [&f.a_running, &f.a_suspended, &f.a_finished];
    let each_exec = |method: &'static str, tail: &str| -> Vec<Case> {
        a_execs
            .iter()
            .map(|id| on_execution(method, id, tail))
            .collect()
    };
    let each_cb = |action: &str, body: Option<Value>| -> Vec<Case> {
        [&f.a_pending_cb, &f.a_done_cb]
            .iter()
            .map(|id| on_callback(id, action, body.clone()))
            .collect()
    };
    let on_fn = |method: &'static str, tail: &str, body: Option<Value>| -> Case {
        let mk = |name: &str| {
            let r = req(method, format!("/v1/functions/{name}{tail}"));
            match &body {
                Some(b) => r.json(b.clone()),
                None => r,
            }
        };
        hidden(mk(A_FN), mk(NEVER_FN), &[(A_FN, NEVER_FN)])
    };
    let on_tenant = |method: &'static str, tail: &str, body: Option<Value>| -> (Req, Req) {
        let mk = |t: &str| {
            let r = req(method, format!("/v1/tenants/{t}{tail}"));
            match &body {
                Some(b) => r.json(b.clone()),
                None => r,
            }
        };
        (mk(A), mk(NEVER_TENANT))
    };
    let b_finished = f.b_finished.clone();
    let b_suspended = f.b_suspended.clone();
    let a_idempotent = f.a_idempotent.clone();
    let b_key_id = f.b.id.clone();
    let hello_sha = durable_host::registry::sha256_hex(&guest_bytes("hello"));
    let never_key = hex::encode(rand::random::<[u8; 6]>());
    let a_newest = f.a_idempotent.clone();

    vec![
        (
            ("GET", "/healthz"),
            vec![Case {
                req: req("GET", "/healthz"),
                expect: Expect::Open,
            }],
        ),
        (
            ("GET", "/metrics"),
            vec![admin_only(req("GET", "/metrics"), None)],
        ),
        // ---- functions ----
        (
            ("GET", "/v1/functions"),
            vec![own(req("GET", "/v1/functions"), |r| {
                let names: Vec<String> = r.json()["functions"]
                    .as_array()
                    .ok_or("no functions array")?
                    .iter()
                    .map(|f| f["name"].as_str().unwrap_or("").to_string())
                    .collect();
                let mut sorted = names.clone();
                sorted.sort();
                // B's own, before the PUT case added alpha-put (or after it).
                let ok =
                    sorted == ["beta-fn", SHARED_FN] || sorted == [A_PUT, "beta-fn", SHARED_FN];
                ok.then_some(()).ok_or(format!("B lists {names:?}"))
            })],
        ),
        (
            ("GET", "/v1/functions/{name}"),
            vec![on_fn("GET", "", None)],
        ),
        (
            ("PATCH", "/v1/functions/{name}"),
            vec![on_fn("PATCH", "", Some(json!({"retention_secs": 60})))],
        ),
        (
            ("DELETE", "/v1/functions/{name}"),
            vec![on_fn("DELETE", "", None)],
        ),
        // An upload is an upsert: B's own function of that name, A's untouched (checked after).
        (
            ("PUT", "/v1/functions/{name}"),
            vec![own(
                req("PUT", format!("/v1/functions/{A_PUT}")).bytes(guest_bytes("hello")),
                move |r| {
                    let v = r.json();
                    let ok =
                        r.status == 201 && v["version"] == 1 && v["sha256"] == hello_sha.as_str();
                    ok.then_some(())
                        .ok_or(format!("B's upload over A's name: {r}"))
                },
            )],
        ),
        (
            ("POST", "/v1/functions/{name}/invoke"),
            vec![
                {
                    // A's function, with A's idempotency key: no such function for B.
                    let mk = |name: &str| {
                        req("POST", format!("/v1/functions/{name}/invoke"))
                            .json(idempotent_input())
                            .header("Idempotency-Key", A_IDEMPOTENCY_KEY)
                    };
                    hidden(mk(A_FN), mk(NEVER_FN), &[(A_FN, NEVER_FN)])
                },
                // B's function of the same name, A's key and input: B's own new execution.
                own(
                    req("POST", format!("/v1/functions/{SHARED_FN}/invoke?wait=30"))
                        .json(idempotent_input())
                        .header("Idempotency-Key", A_IDEMPOTENCY_KEY),
                    move |r| {
                        let v = r.json();
                        let id = v["execution_id"].as_str().unwrap_or("");
                        let ok = r.status == 200 && !id.is_empty() && id != a_idempotent;
                        ok.then_some(())
                            .ok_or(format!("A's idempotency key gave B {r}"))
                    },
                ),
            ],
        ),
        // ---- executions ----
        (("GET", "/v1/executions"), {
            let lists = [
                "/v1/executions?limit=1000".to_string(),
                format!("/v1/executions?function={A_FN}"),
                format!("/v1/executions?function={SHARED_FN}"),
                "/v1/executions?status=running".to_string(),
                "/v1/executions?status=suspended".to_string(),
                format!("/v1/executions?cursor={a_newest}"),
            ];
            lists
                .into_iter()
                .map(|path| {
                    let (bf, bs) = (b_finished.clone(), b_suspended.clone());
                    let all = path.ends_with("limit=1000");
                    own(req("GET", path), move |r| {
                        let ids = listed(r);
                        if all && !(ids.contains(&bf) && ids.contains(&bs)) {
                            return Err(format!("B's own executions are missing: {ids:?}"));
                        }
                        Ok(())
                    })
                })
                .collect()
        }),
        (("GET", "/v1/executions/{id}"), each_exec("GET", "")),
        (
            ("GET", "/v1/executions/{id}/history"),
            each_exec("GET", "/history"),
        ),
        (
            ("GET", "/v1/executions/{id}/logs"),
            each_exec("GET", "/logs"),
        ),
        (
            ("GET", "/v1/executions/{id}/events"),
            each_exec("GET", "/events"),
        ),
        (
            ("POST", "/v1/executions/{id}/stop"),
            each_exec("POST", "/stop"),
        ),
        (
            ("POST", "/v1/executions/{id}/redrive"),
            each_exec("POST", "/redrive"),
        ),
        (
            ("POST", "/v1/executions/{id}/fork"),
            each_exec("POST", "/fork"),
        ),
        (("POST", "/v1/executions/redrive"), {
            let mk = |name: &str| {
                req("POST", "/v1/executions/redrive")
                    .json(json!({"function": name, "status": "failed"}))
            };
            vec![hidden(mk(A_FN), mk(NEVER_FN), &[(A_FN, NEVER_FN)])]
        }),
        (("GET", "/v1/jobs"), {
            let a_job = f.a_job.clone();
            vec![own(req("GET", "/v1/jobs"), move |r| {
                let jobs = r.json()["jobs"].as_array().cloned().ok_or("no jobs array")?;
                let leaked = jobs.iter().any(|j| j["job_id"] == a_job.as_str());
                (!leaked).then_some(()).ok_or(format!("B lists A's job: {r}"))
            })]
        }),
        (("GET", "/v1/functions/{name}/uploads/{id}"), {
            let never = ulid::Ulid::new().to_string().to_lowercase();
            vec![hidden(
                req("GET", format!("/v1/functions/{A_FN}/uploads/{}", f.a_upload)),
                req("GET", format!("/v1/functions/{NEVER_FN}/uploads/{never}")),
                &[(A_FN, NEVER_FN), (&f.a_upload, &never)],
            )]
        }),
        (("GET", "/v1/jobs/{job_id}"), {
            let never = format!("job_{}", ulid::Ulid::new());
            vec![hidden(
                req("GET", format!("/v1/jobs/{}", f.a_job)),
                req("GET", format!("/v1/jobs/{never}")),
                &[(&f.a_job, &never)],
            )]
        }),
        // ---- callbacks ----
        (
            ("POST", "/v1/callbacks/{id}/succeed"),
            each_cb("succeed", Some(json!("from B"))),
        ),
        (
            ("POST", "/v1/callbacks/{id}/fail"),
            each_cb(
                "fail",
                Some(json!({"error_type": "FromB", "error_message": "B was here"})),
            ),
        ),
        (
            ("POST", "/v1/callbacks/{id}/heartbeat"),
            each_cb("heartbeat", None),
        ),
        // ---- tenants and keys ----
        (
            ("POST", "/v1/tenants"),
            vec![admin_only(
                req("POST", "/v1/tenants").json(json!({"name": A})),
                Some(req("POST", "/v1/tenants").json(json!({"name": NEVER_TENANT}))),
            )],
        ),
        (
            ("GET", "/v1/tenants"),
            vec![admin_only(req("GET", "/v1/tenants"), None)],
        ),
        (("GET", "/v1/tenants/{tenant}"), {
            let (real, fake) = on_tenant("GET", "", None);
            vec![hidden(real, fake, &[(A, NEVER_TENANT)])]
        }),
        (("PATCH", "/v1/tenants/{tenant}"), {
            let (real, fake) =
                on_tenant("PATCH", "", Some(json!({"quotas": {"max_functions": 0}})));
            vec![admin_only(real, Some(fake))]
        }),
        (("DELETE", "/v1/tenants/{tenant}"), {
            let (real, fake) = on_tenant("DELETE", "", None);
            vec![admin_only(real, Some(fake))]
        }),
        (("GET", "/v1/tenants/{tenant}/keys"), {
            let (real, fake) = on_tenant("GET", "/keys", None);
            vec![hidden(real, fake, &[(A, NEVER_TENANT)])]
        }),
        (("POST", "/v1/tenants/{tenant}/keys"), {
            let (real, fake) = on_tenant(
                "POST",
                "/keys",
                Some(json!({"role": "owner", "name": "planted by B"})),
            );
            vec![hidden(real, fake, &[(A, NEVER_TENANT)])]
        }),
        (
            ("DELETE", "/v1/tenants/{tenant}/keys/{key_id}"),
            vec![
                // A's key under A's name.
                hidden(
                    req("DELETE", format!("/v1/tenants/{A}/keys/{}", f.a.id)),
                    req(
                        "DELETE",
                        format!("/v1/tenants/{NEVER_TENANT}/keys/{never_key}"),
                    ),
                    &[(A, NEVER_TENANT), (&f.a.id, &never_key)],
                ),
                // A's key under B's own name.
                hidden(
                    req("DELETE", format!("/v1/tenants/{B}/keys/{}", f.a.id)),
                    req("DELETE", format!("/v1/tenants/{B}/keys/{never_key}")),
                    &[(&f.a.id, &never_key)],
                ),
            ],
        ),
        // ---- webhooks ----
        (
            ("POST", "/v1/webhooks"),
            vec![own(
                req("POST", "/v1/webhooks").json(
                    json!({"url": format!("http://{WEBHOOK_DEST}/b"), "events": ["execution.failed"]}),
                ),
                |r| {
                    (r.status == 201)
                        .then_some(())
                        .ok_or(format!("B's own webhook: {r}"))
                },
            )],
        ),
        (
            ("GET", "/v1/webhooks"),
            vec![own(req("GET", "/v1/webhooks"), |r| {
                let n = r.json()["webhooks"].as_array().map_or(usize::MAX, Vec::len);
                (r.status == 200 && n <= 1)
                    .then_some(())
                    .ok_or(format!("B lists {r}"))
            })],
        ),
        (("GET", "/v1/webhooks/{id}"), {
            let never = never_webhook();
            vec![hidden(
                req("GET", format!("/v1/webhooks/{}", f.a_webhook)),
                req("GET", format!("/v1/webhooks/{never}")),
                &[(&f.a_webhook, &never)],
            )]
        }),
        (("PATCH", "/v1/webhooks/{id}"), {
            let never = never_webhook();
            let body = json!({"enabled": false});
            vec![hidden(
                req("PATCH", format!("/v1/webhooks/{}", f.a_webhook)).json(body.clone()),
                req("PATCH", format!("/v1/webhooks/{never}")).json(body),
                &[(&f.a_webhook, &never)],
            )]
        }),
        (("DELETE", "/v1/webhooks/{id}"), {
            let never = never_webhook();
            vec![hidden(
                req("DELETE", format!("/v1/webhooks/{}", f.a_webhook)),
                req("DELETE", format!("/v1/webhooks/{never}")),
                &[(&f.a_webhook, &never)],
            )]
        }),
        (("GET", "/v1/webhooks/{id}/deliveries"), {
            let never = never_webhook();
            vec![hidden(
                req("GET", format!("/v1/webhooks/{}/deliveries", f.a_webhook)),
                req("GET", format!("/v1/webhooks/{never}/deliveries")),
                &[(&f.a_webhook, &never)],
            )]
        }),
        (("POST", "/v1/webhooks/{id}/deliveries/{delivery}/retry"), {
            let never = never_webhook();
            let never_d = format!("msg_{}", ulid::Ulid::new());
            vec![hidden(
                req(
                    "POST",
                    format!("/v1/webhooks/{}/deliveries/{}/retry", f.a_webhook, f.a_delivery),
                ),
                req("POST", format!("/v1/webhooks/{never}/deliveries/{never_d}/retry")),
                &[(&f.a_webhook, &never), (&f.a_delivery, &never_d)],
            )]
        }),
        (("POST", "/v1/webhooks/{id}/test"), {
            let never = never_webhook();
            vec![hidden(
                req("POST", format!("/v1/webhooks/{}/test", f.a_webhook)),
                req("POST", format!("/v1/webhooks/{never}/test")),
                &[(&f.a_webhook, &never)],
            )]
        }),
        // ---- schedules ----
        (
            ("GET", "/v1/schedules"),
            vec![own(req("GET", "/v1/schedules"), |r| {
                let n = r.json()["schedules"].as_array().map_or(usize::MAX, Vec::len);
                (r.status == 200 && n <= 1)
                    .then_some(())
                    .ok_or(format!("B lists {r}"))
            })],
        ),
        (
            ("PUT", "/v1/schedules/{name}"),
            // A has one of this name: B's is created (201), not a replacement of A's.
            vec![own(
                req("PUT", format!("/v1/schedules/{SHARED_SCHEDULE}")).json(json!({
                    "function": "beta-fn", "cron": "0 0 1 1 *", "overlap": "skip",
                    "catch_up": "none", "paused": true})),
                |r| {
                    (r.status == 201)
                        .then_some(())
                        .ok_or(format!("B's own schedule: {r}"))
                },
            )],
        ),
        (("GET", "/v1/schedules/{name}"), {
            vec![hidden(
                req("GET", format!("/v1/schedules/{}", f.a_schedule)),
                req("GET", format!("/v1/schedules/{NEVER_SCHEDULE}")),
                &[(&f.a_schedule, NEVER_SCHEDULE)],
            )]
        }),
        (("PATCH", "/v1/schedules/{name}"), {
            let body = json!({"paused": false});
            vec![hidden(
                req("PATCH", format!("/v1/schedules/{}", f.a_schedule)).json(body.clone()),
                req("PATCH", format!("/v1/schedules/{NEVER_SCHEDULE}")).json(body),
                &[(&f.a_schedule, NEVER_SCHEDULE)],
            )]
        }),
        (("DELETE", "/v1/schedules/{name}"), {
            vec![hidden(
                req("DELETE", format!("/v1/schedules/{}", f.a_schedule)),
                req("DELETE", format!("/v1/schedules/{NEVER_SCHEDULE}")),
                &[(&f.a_schedule, NEVER_SCHEDULE)],
            )]
        }),
        (("POST", "/v1/schedules/{name}/trigger"), {
            vec![hidden(
                req("POST", format!("/v1/schedules/{}/trigger", f.a_schedule)),
                req("POST", format!("/v1/schedules/{NEVER_SCHEDULE}/trigger")),
                &[(&f.a_schedule, NEVER_SCHEDULE)],
            )]
        }),
        (
            ("GET", "/v1/whoami"),
            vec![own(req("GET", "/v1/whoami"), move |r| {
                let v = r.json();
                let ok =
                    v["tenant"] == B && v["role"] == "owner" && v["key_id"] == b_key_id.as_str();
                ok.then_some(()).ok_or(format!("whoami: {r}"))
            })],
        ),
    ]
}

fn swapped(body: &[u8], swap: &[(String, String)]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for (real, fake) in swap {
        text = text.replace(real.as_str(), fake);
    }
    text.into_bytes()
}

/// Run one case with B's key: `Err` says what went wrong.
fn run(s: &Server, f: &Fixture, case: &Case) -> Result<(), String> {
    let b = Some(f.b.key.as_str());
    let marks = f.a_marks();
    let leaked = |r: &Resp| {
        let text = r.text();
        marks
            .iter()
            .find(|m| text.contains(m.as_str()))
            .map(|m| format!("the answer holds {m:?} of tenant A: {r}"))
    };
    match &case.expect {
        Expect::Hidden { fake, swap } => {
            let real = case.req.send(s, b);
            let never = fake.send(s, b);
            if real.status != 404 || real.is_stream() {
                return Err(format!("expected 404, got {real}"));
            }
            if never.status != 404 {
                return Err(format!("the never-existing variant got {never}, not 404"));
            }
            if real.header("content-type") != never.header("content-type")
                || real.header("content-length") != never.header("content-length")
            {
                return Err(format!(
                    "headers differ from the never-existing one's: {:?} vs {:?}",
                    real.headers, never.headers
                ));
            }
            if swapped(&real.body, swap) != never.body {
                return Err(format!(
                    "the 404 differs from the never-existing one's:\n  A's: {}\n  never: {}",
                    real.text(),
                    never.text()
                ));
            }
            // The id the request named is the only thing of A's it may echo.
            let named: Vec<&str> = swap.iter().map(|(r, _)| r.as_str()).collect();
            let text = real.text();
            if let Some(m) = marks
                .iter()
                .find(|m| text.contains(m.as_str()) && !named.contains(&m.as_str()))
            {
                return Err(format!("the 404 holds {m:?}: {real}"));
            }
        }
        Expect::AdminOnly { fake } => {
            let real = case.req.send(s, b);
            if real.status != 403 || real.json()["error"]["code"] != "forbidden" {
                return Err(format!("expected 403 forbidden, got {real}"));
            }
            if let Some(fake) = fake {
                let never = fake.send(s, b);
                if never.body != real.body || never.status != 403 {
                    return Err(format!(
                        "the 403 differs for a never-existing name: {real} vs {never}"
                    ));
                }
            }
            if let Some(l) = leaked(&real) {
                return Err(l);
            }
        }
        Expect::Own(check) => {
            let r = case.req.send(s, b);
            if !(200..300).contains(&r.status) {
                return Err(format!("expected 2xx, got {r}"));
            }
            if let Some(l) = leaked(&r) {
                return Err(l);
            }
            check(&r)?;
        }
        Expect::Open => {
            let r = case.req.send(s, None);
            if r.status != 200 {
                return Err(format!("expected 200 without a key, got {r}"));
            }
        }
    }
    Ok(())
}

#[test]
fn another_tenants_key_finds_nothing_on_any_route() {
    let s = Server::start_with(&["--allow-outbound", WEBHOOK_DEST]);
    let f = Fixture::set_up(&s);
    let a = As {
        s: &s,
        key: f.a.key.clone(),
    };
    let a_keys_before = a.get(&format!("/v1/tenants/{A}/keys")).json();
    let a_put_before = a.get(&format!("/v1/functions/{A_PUT}")).json();

    let table = table(&f);
    let covered: BTreeSet<(String, String)> = table
        .iter()
        .map(|((m, p), _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        covered.len(),
        table.len(),
        "an operation is in the table twice"
    );
    let spec = spec_operations(&s);
    let missing: Vec<_> = spec.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&spec).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "the isolation matrix must cover exactly the spec's operations: not covered {missing:?}, \
         not in the spec {stale:?}"
    );

    let mut failures = Vec::new();
    let mut count = 0;
    for ((method, template), cases) in &table {
        assert!(!cases.is_empty(), "{method} {template} has no case");
        for case in cases {
            assert!(
                case.req.method == *method && fits(template, &case.req.path),
                "a case of {method} {template} sends {} {}",
                case.req.method,
                case.req.path
            );
            count += 1;
            if let Err(e) = run(&s, &f, case) {
                failures.push(format!("{method} {}: {e}", case.req.path));
            }
        }
    }
    eprintln!(
        "isolation matrix: {} operations, {count} cases, {} failures",
        table.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "B reached A:\n{}", failures.join("\n"));

    // Nothing of A's changed.
    let r = a.get(&format!("/v1/webhooks/{}", f.a_webhook));
    assert_eq!(
        (r.status, r.json()["enabled"].clone()),
        (200, json!(true)),
        "{r}"
    );
    // A's schedules: still there, still paused, never fired, its shared name still A's.
    for name in [A_SCHEDULE, SHARED_SCHEDULE] {
        let r = a.get(&format!("/v1/schedules/{name}"));
        let v = r.json();
        assert_eq!((r.status, v["paused"].clone()), (200, json!(true)), "{r}");
        assert_eq!(
            (v["function"].clone(), v["firings"].clone()),
            (json!(SHARED_FN), json!([])),
            "{r}"
        );
    }
    assert_eq!(a.execution(&f.a_running)["status"], "running");
    assert_eq!(a.execution(&f.a_suspended)["status"], "suspended");
    assert_eq!(a.execution(&f.a_finished)["status"], "succeeded");
    let r = a.get(&format!("/v1/functions/{A_FN}"));
    assert_eq!(r.status, 200, "B deleted A's function: {r}");
    assert_ne!(
        r.json()["settings"]["retention_secs"],
        60,
        "B patched A's function"
    );
    assert_eq!(
        a.get(&format!("/v1/functions/{A_PUT}")).json(),
        a_put_before
    );
    assert_eq!(
        a.get(&format!("/v1/tenants/{A}/keys")).json(),
        a_keys_before
    );
    let h = a
        .get(&format!("/v1/executions/{}/history", f.a_suspended))
        .text();
    assert!(!h.contains("from B") && !h.contains("FromB"), "{h}");
    // A's pending callback is still A's to complete, and its execution goes on.
    let r = a.post(
        &format!("/v1/callbacks/{}/succeed", f.a_pending_cb),
        &json!("from A"),
    );
    assert_eq!(r.status, 200, "{r}");
    let done = a.wait_status(&f.a_suspended, &["succeeded"]);
    assert_eq!(done["output"], json!({"result": "from A"}));
    // A's idempotency key still names A's execution; B's use of it made B's own.
    let again = |who: &As| {
        let r = call(
            &s,
            Some(&who.key),
            "POST",
            &format!("/v1/functions/{SHARED_FN}/invoke"),
            Some(idempotent_input().to_string().into_bytes()),
            &[("Idempotency-Key", A_IDEMPOTENCY_KEY)],
        );
        assert!(r.status == 200, "{r}");
        r.json()["execution_id"].as_str().unwrap().to_string()
    };
    assert_eq!(again(&a), f.a_idempotent);
    let b = As {
        s: &s,
        key: f.b.key.clone(),
    };
    let b_own = again(&b);
    assert_ne!(b_own, f.a_idempotent);
    assert_eq!(b.execution(&b_own)["status"], "succeeded");
    // A different input under the key is B's own conflict, not A's.
    let r = call(
        &s,
        Some(&b.key),
        "POST",
        &format!("/v1/functions/{SHARED_FN}/invoke"),
        Some(
            scenario("echo", json!({"value": "other"}))
                .to_string()
                .into_bytes(),
        ),
        &[("Idempotency-Key", A_IDEMPOTENCY_KEY)],
    );
    assert_eq!(r.status, 409, "{r}");
    // And A sees none of B's executions.
    let r = a.get("/v1/executions?limit=1000");
    let ids = listed(&r);
    for id in [&f.b_finished, &f.b_suspended, &b_own] {
        assert!(!ids.contains(id), "A lists B's {id}");
    }
    for id in [&f.a_running, &f.a_suspended, &f.a_finished, &f.a_idempotent] {
        assert!(ids.contains(id), "A does not list its own {id}");
    }
}

#[test]
fn only_admin_keys_act_in_another_tenant() {
    let s = Server::start();
    let a_key = tenant_with_owner(&s, A);
    let b_key = tenant_with_owner(&s, B);
    let a = As {
        s: &s,
        key: a_key.key.clone(),
    };
    a.deploy(A_FN, "conformance_guest");
    let a_exec = a.run(A_FN, &scenario("echo", json!({"value": A_SECRET})));
    let a_id = a_exec["execution_id"].as_str().unwrap().to_string();
    let path = format!("/v1/executions/{a_id}");
    let with = |key: &str, tenant: &str, path: &str| {
        call(
            &s,
            Some(key),
            "GET",
            path,
            None,
            &[("Durable-Tenant", tenant)],
        )
    };

    // Any other role naming another tenant, existing or not: 403, the same bytes.
    let b_dev = new_key(&s, &b_key.key, B, "developer");
    let b_reader = new_key(&s, &b_key.key, B, "reader");
    for key in [&b_key, &b_dev, &b_reader] {
        for p in [path.as_str(), "/v1/whoami", "/v1/executions"] {
            let named = with(&key.key, A, p);
            assert_eq!(named.status, 403, "{p}: {named}");
            assert_eq!(named.json()["error"]["code"], "forbidden");
            assert!(!named.text().contains(A_SECRET), "{named}");
            let never = with(&key.key, NEVER_TENANT, p);
            assert_eq!((never.status, &never.body), (403, &named.body), "{never}");
        }
        // Its own tenant named: as without the header.
        let own = with(&key.key, B, "/v1/whoami");
        assert_eq!(own.status, 200, "{own}");
        assert_eq!(own.json()["tenant"], B);
    }
    // A's owner may not act in B either.
    assert_eq!(with(&a_key.key, B, "/v1/whoami").status, 403);

    // The admin key acts in its own tenant by default: A's execution is not there.
    let admin = &s.admin_key;
    let r = call(&s, Some(admin), "GET", &path, None, &[]);
    assert_eq!(r.status, 404, "{r}");
    // Naming A, it sees A's objects.
    let r = with(admin, A, &path);
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["output"], A_SECRET);
    let r = with(admin, A, "/v1/whoami");
    assert_eq!(r.json()["tenant"], A, "{r}");
    assert_eq!(r.json()["role"], "admin");
    assert!(listed(&with(admin, A, "/v1/executions")).contains(&a_id));
    let fns = with(admin, A, "/v1/functions").text();
    assert!(fns.contains(A_FN), "{fns}");
    assert!(!listed(&with(admin, B, "/v1/executions")).contains(&a_id));
    // What it does there is A's: A's owner sees the execution the admin started.
    let r = call(
        &s,
        Some(admin),
        "POST",
        &format!("/v1/functions/{A_FN}/invoke?wait=30"),
        Some(
            scenario("echo", json!({"value": "by admin"}))
                .to_string()
                .into_bytes(),
        ),
        &[("Durable-Tenant", A)],
    );
    assert_eq!(r.status, 200, "{r}");
    let by_admin = r.json()["execution_id"].as_str().unwrap().to_string();
    assert_eq!(a.execution(&by_admin)["output"], "by admin");
    // A tenant that does not exist: nothing to act in.
    let r = with(admin, NEVER_TENANT, "/v1/whoami");
    assert_eq!(r.status, 404, "{r}");
}
