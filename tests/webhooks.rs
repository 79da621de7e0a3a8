//! Webhooks end to end (DESIGN 9): a real server, real guests, and a real local receiver
//! that checks every Standard Webhooks signature with the secret the API returned. Failed,
//! timed-out and stopped executions each deliver one signed event with the right body; a
//! receiver answering 500, 500, 200 gets three attempts on the (shortened) schedule; 410
//! disables the webhook; a delivery cut short by kill -9 is sent after the restart; a
//! destination outside the allowlist is refused; another tenant sees nothing; and the
//! delivery latency after the terminal event (p50, p99) is printed.

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use support::{guest_bytes, scenario, Server};

/// The shortened retry schedule of these tests: 3 attempts in all.
const SCHEDULE: &str = "300ms,600ms";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
    at: SystemTime,
    /// Whether `webhook-signature` verified with the secret set for `path`.
    signed: bool,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
}

#[derive(Default)]
struct State {
    got: Vec<Received>,
    /// Answers per path, used up in order; then `fallback` (default 200).
    script: HashMap<String, VecDeque<u16>>,
    fallback: HashMap<String, u16>,
    /// Secrets (decoded) per path.
    secrets: HashMap<String, Vec<u8>>,
    /// Paths whose requests are held (never answered) while set.
    hold: bool,
}

/// A local webhook receiver on a loopback port.
struct Receiver {
    addr: String,
    state: Arc<Mutex<State>>,
    _rt: tokio::runtime::Runtime,
}

fn verify(secret: &[u8], headers: &HashMap<String, String>, body: &str) -> bool {
    let (Some(id), Some(ts), Some(sigs)) = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(ts_secs) = ts.parse::<u64>() else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(ts_secs) > 300 {
        return false; // Standard Webhooks: refuse a timestamp more than 5 minutes off
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    sigs.split(' ').any(|s| s == expected)
}

impl Receiver {
    fn start() -> Receiver {
        use axum::http::{HeaderMap, StatusCode, Uri};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        async fn handle(
            axum::extract::State(state): axum::extract::State<Arc<Mutex<State>>>,
            uri: Uri,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            let path = uri.path().to_string();
            let headers: HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let status = {
                let mut st = state.lock().unwrap();
                let signed = st
                    .secrets
                    .get(&path)
                    .is_some_and(|s| verify(s, &headers, &body));
                st.got.push(Received {
                    path: path.clone(),
                    headers,
                    body,
                    at: SystemTime::now(),
                    signed,
                });
                let scripted = st.script.get_mut(&path).and_then(VecDeque::pop_front);
                scripted.unwrap_or_else(|| st.fallback.get(&path).copied().unwrap_or(200))
            };
            while state.lock().unwrap().hold {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            StatusCode::from_u16(status).unwrap()
        }
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            addr,
            state,
            _rt: rt,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn secret(&self, path: &str, secret: &str) {
        let bytes = B64
            .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
            .unwrap();
        assert_eq!(bytes.len(), 32, "32 bytes of secret");
        self.state
            .lock()
            .unwrap()
            .secrets
            .insert(path.to_string(), bytes);
    }

    fn script(&self, path: &str, answers: &[u16], then: u16) {
        let mut st = self.state.lock().unwrap();
        st.script
            .insert(path.to_string(), answers.iter().copied().collect());
        st.fallback.insert(path.to_string(), then);
    }

    fn got(&self, path: &str) -> Vec<Received> {
        let st = self.state.lock().unwrap();
        st.got.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Wait until `path` got `n` requests (bounded), and return them.
    fn wait(&self, path: &str, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {} requests, expected {n}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Like `wait`, with its own bound.
    fn wait_for(&self, path: &str, n: usize, bound: Duration) -> Vec<Received> {
        let deadline = Instant::now() + bound;
        loop {
            let got = self.got(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {} requests, expected {n}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn hold(&self, on: bool) {
        self.state.lock().unwrap().hold = on;
    }
}

fn start(r: &Receiver, extra: &[&str]) -> Server {
    let mut args = vec![
        "--allow-outbound",
        &r.addr,
        "--webhook-retry-schedule",
        SCHEDULE,
    ];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// Create a webhook for `path` of the receiver; returns its id (the receiver knows its
/// secret from now on).
fn webhook(s: &Server, r: &Receiver, path: &str, body: Value) -> String {
    let mut body = body;
    body["url"] = json!(r.url(path));
    let (st, v) = s.post("/v1/webhooks", &body);
    assert_eq!(st, 201, "{v}");
    let secret = v["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{v}");
    r.secret(path, secret);
    // The secret is shown at creation only.
    let id = v["id"].as_str().unwrap().to_string();
    let (st, got) = s.get(&format!("/v1/webhooks/{id}"));
    assert_eq!(st, 200, "{got}");
    assert!(got.get("secret").is_none(), "{got}");
    id
}

fn put(s: &Server, path: &str) {
    let (st, v) = s.req("PUT", path, Some(guest_bytes("conformance_guest")));
    assert!(st == 201 || st == 200, "{st} {v}");
}

fn deliveries(s: &Server, id: &str, query: &str) -> Vec<Value> {
    let (st, v) = s.get(&format!("/v1/webhooks/{id}/deliveries{query}"));
    assert_eq!(st, 200, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

/// Wait until the webhook's deliveries satisfy `pred` (bounded).
fn wait_deliveries(s: &Server, id: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ds = deliveries(s, id, "");
        if pred(&ds) {
            return ds;
        }
        assert!(Instant::now() < deadline, "deliveries: {ds:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ms_of(rfc3339: &str) -> i128 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000
}

fn ms_since_epoch(t: SystemTime) -> i128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i128
}

#[test]
fn failed_timed_out_and_stopped_executions_each_deliver_one_signed_event() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    put(&s, "/v1/functions/work");
    put(&s, "/v1/functions/slow?execution_timeout_secs=1");
    let hook = webhook(
        &s,
        &r,
        "/std",
        json!({"events": ["execution.failed", "execution.timed_out", "execution.stopped"]}),
    );
    let slack = webhook(
        &s,
        &r,
        "/slack",
        json!({"events": ["execution.failed"], "functions": ["work"], "format": "slack"}),
    );
    let ok_hook = webhook(
        &s,
        &r,
        "/ok",
        json!({"events": ["execution.succeeded"], "functions": ["work"]}),
    );
    let failed = s.invoke(
        "work",
        &scenario(
            "fail",
            json!({"error_type": "MailApiDown", "message": "the mail API answered 500"}),
        ),
    );
    let timed_out = s.invoke("slow", &scenario("wait", json!({"ms": 60_000})));
    let stopped = s.invoke("work", &scenario("wait", json!({"ms": 60_000})));
    let succeeded = s.invoke("work", &scenario("echo", json!({"value": 1})));
    s.wait_status(&stopped, &["suspended"], Duration::from_secs(30));
    let (st, v) = s.post(&format!("/v1/executions/{stopped}/stop"), &json!({}));
    assert!(st == 200 || st == 202, "{st} {v}");
    for id in [&failed, &timed_out, &stopped, &succeeded] {
        s.wait_done(id);
    }
    let got = r.wait("/std", 3);
    let ok_got = r.wait("/ok", 1);
    let ok = ok_got[0].json();
    assert!(ok_got[0].signed);
    assert_eq!(
        (ok["type"].clone(), ok["data"]["status"].clone()),
        (json!("execution.succeeded"), json!("succeeded")),
        "{ok}"
    );
    assert_eq!(ok["data"]["execution_id"], succeeded.as_str());
    assert_eq!(
        ok["data"]["output"],
        s.execution(&succeeded)["output"],
        "{ok}"
    );
    assert_eq!(ok["data"]["error"], Value::Null);
    let slack_got = r.wait("/slack", 1);
    // Nothing more comes: one delivery per event, none for the success.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.got("/std").len(), 3, "{:?}", r.got("/std"));
    assert_eq!(r.got("/slack").len(), 1);
    assert_eq!(r.got("/ok").len(), 1);
    assert_eq!(deliveries(&s, &ok_hook, "").len(), 1);

    let by_exec: HashMap<String, Received> = got
        .iter()
        .map(|g| {
            (
                g.json()["data"]["execution_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                g.clone(),
            )
        })
        .collect();
    for (id, event, status, error_type, function) in [
        (&failed, "execution.failed", "failed", "MailApiDown", "work"),
        (
            &timed_out,
            "execution.timed_out",
            "timed_out",
            "Execution.Timeout",
            "slow",
        ),
        (
            &stopped,
            "execution.stopped",
            "stopped",
            "Execution.Stopped",
            "work",
        ),
    ] {
        let g = &by_exec[id.as_str()];
        assert!(g.signed, "signature verifies: {g:?}");
        assert!(g.id().starts_with("msg_"), "{g:?}");
        assert_eq!(g.headers["content-type"], "application/json");
        let b = g.json();
        let ex = s.execution(id);
        assert_eq!(b["type"], event, "{b}");
        let d = &b["data"];
        assert_eq!(d["execution_id"], id.as_str());
        assert_eq!(d["function"], function);
        assert_eq!(d["version"], ex["version"]);
        assert_eq!(d["status"], status);
        assert_eq!(d["error"]["error_type"], error_type, "{b}");
        assert_eq!(
            d["error"]["error_message"], ex["error"]["error_message"],
            "{b}"
        );
        assert_eq!(d["output"], Value::Null);
        assert_eq!(d["created_at"], ex["created_at"]);
        assert_eq!(d["ended_at"], ex["updated_at"]);
        assert_eq!(b["timestamp"], ex["updated_at"]);
        assert_eq!(d["redrive_count"], 0);
    }
    // Slack: a message naming function, execution, status, error type and message.
    let sl = &slack_got[0];
    assert!(sl.signed, "signed too: {sl:?}");
    let text = sl.json()["text"].as_str().unwrap().to_string();
    for part in [
        "work",
        failed.as_str(),
        "failed",
        "MailApiDown",
        "the mail API answered 500",
    ] {
        assert!(text.contains(part), "{text:?} names {part:?}");
    }
    // The deliveries list says the same.
    let ds = wait_deliveries(&s, &hook, |ds| {
        ds.len() == 3 && ds.iter().all(|d| d["status"] == "delivered")
    });
    for d in &ds {
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["last_status_code"], 200, "{d}");
        assert!(d["delivered_at"].is_string(), "{d}");
        assert_eq!(d["next_attempt_at"], Value::Null, "{d}");
    }
    assert_eq!(deliveries(&s, &slack, "?status=delivered").len(), 1);
    assert_eq!(deliveries(&s, &slack, "?status=failed").len(), 0);
    let metric = "durable_webhook_deliveries_total{tenant=\"default\",result=\"delivered\"}";
    assert_eq!(s.metric(metric), 5.0);
}

#[test]
fn a_receiver_answering_500_500_200_gets_three_attempts_on_the_schedule() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    put(&s, "/v1/functions/work");
    let flaky = webhook(&s, &r, "/flaky", json!({"events": ["execution.failed"]}));
    r.script("/flaky", &[500, 500], 200);
    let id = s.invoke(
        "work",
        &scenario("fail", json!({"error_type": "E", "message": "m"})),
    );
    let got = r.wait("/flaky", 3);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.got("/flaky").len(), 3, "three attempts, then no more");
    assert!(
        got.iter().all(|g| g.signed && g.id() == got[0].id()),
        "one webhook-id: {got:?}"
    );
    assert_eq!(got[0].json()["data"]["execution_id"], id.as_str());
    let gaps: Vec<u128> = got
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).unwrap().as_millis())
        .collect();
    println!(
        "500, 500, 200: attempts {} ms apart (schedule {SCHEDULE})",
        gaps.iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(" ms and ")
    );
    assert!((300..1300).contains(&gaps[0]), "{gaps:?}");
    assert!((600..1600).contains(&gaps[1]), "{gaps:?}");
    let ds = wait_deliveries(&s, &flaky, |ds| {
        ds.first().is_some_and(|d| d["status"] == "delivered")
    });
    assert_eq!(ds[0]["attempts"], 3, "{:?}", ds[0]);

    // Always 500: failed after the last attempt, visible, counted; a manual retry is one
    // more attempt.
    let down = webhook(&s, &r, "/down", json!({"events": ["execution.failed"]}));
    r.script("/down", &[], 500);
    s.invoke(
        "work",
        &scenario("fail", json!({"error_type": "E", "message": "m"})),
    );
    let ds = wait_deliveries(&s, &down, |ds| {
        ds.first().is_some_and(|d| d["status"] == "failed")
    });
    let d = &ds[0];
    assert_eq!(
        (d["attempts"].clone(), d["last_status_code"].clone()),
        (json!(3), json!(500)),
        "{d}"
    );
    assert!(d["last_error"].as_str().unwrap().contains("500"), "{d}");
    assert_eq!(r.got("/down").len(), 3);
    assert_eq!(deliveries(&s, &down, "?status=failed").len(), 1);
    assert_eq!(deliveries(&s, &down, "?status=pending").len(), 0);
    let failed_metric = "durable_webhook_deliveries_total{tenant=\"default\",result=\"failed\"}";
    assert_eq!(s.metric(failed_metric), 1.0);
    r.script("/down", &[], 200);
    let delivery = d["id"].as_str().unwrap();
    let (st, v) = s.post(
        &format!("/v1/webhooks/{down}/deliveries/{delivery}/retry"),
        &json!({}),
    );
    assert_eq!(st, 202, "{v}");
    let ds = wait_deliveries(&s, &down, |ds| ds[0]["status"] == "delivered");
    assert_eq!(ds[0]["attempts"], 4);
    assert_eq!(r.got("/down").len(), 4);
    let (st, v) = s.post(
        &format!("/v1/webhooks/{down}/deliveries/{delivery}/retry"),
        &json!({}),
    );
    assert_eq!(st, 202, "a delivered one may be sent again: {v}");
    let (st, _) = s.post(
        &format!("/v1/webhooks/{down}/deliveries/msg_01KBDXW1Q0000000000000000/retry"),
        &json!({}),
    );
    assert_eq!(st, 404);
}

#[test]
fn a_410_disables_the_webhook_and_the_test_event_needs_it_enabled() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    put(&s, "/v1/functions/work");
    let gone = webhook(&s, &r, "/gone", json!({"events": ["execution.failed"]}));
    r.script("/gone", &[], 410);
    s.invoke(
        "work",
        &scenario("fail", json!({"error_type": "E", "message": "m"})),
    );
    r.wait("/gone", 1);
    let ds = wait_deliveries(&s, &gone, |ds| {
        ds.first().is_some_and(|d| d["status"] == "failed")
    });
    assert_eq!(ds[0]["attempts"], 1, "no retry after a 410: {:?}", ds[0]);
    assert_eq!(ds[0]["last_status_code"], 410);
    let (_, w) = s.get(&format!("/v1/webhooks/{gone}"));
    assert_eq!(w["enabled"], false, "{w}");
    assert!(
        w["disabled_reason"].as_str().unwrap().contains("410"),
        "{w}"
    );
    // A disabled webhook gets nothing.
    s.invoke(
        "work",
        &scenario("fail", json!({"error_type": "E", "message": "m"})),
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(r.got("/gone").len(), 1);
    let (st, _) = s.post(&format!("/v1/webhooks/{gone}/test"), &json!({}));
    assert_eq!(st, 409);
    // Enabled again, the test event arrives, signed.
    r.script("/gone", &[], 204);
    let (st, w) = s.req(
        "PATCH",
        &format!("/v1/webhooks/{gone}"),
        Some(br#"{"enabled": true}"#.to_vec()),
    );
    assert_eq!(
        (st, w["enabled"].clone(), w["disabled_reason"].clone()),
        (200, json!(true), Value::Null),
        "{w}"
    );
    let (st, d) = s.post(&format!("/v1/webhooks/{gone}/test"), &json!({}));
    assert_eq!(st, 202, "{d}");
    let got = r.wait("/gone", 2);
    assert!(got[1].signed);
    assert_eq!(got[1].json()["type"], "webhook.test");
    assert_eq!(got[1].id(), d["id"].as_str().unwrap());
    // Deleted: gone with its deliveries.
    let (st, _) = s.req("DELETE", &format!("/v1/webhooks/{gone}"), None);
    assert_eq!(st, 204);
    let (st, _) = s.get(&format!("/v1/webhooks/{gone}/deliveries"));
    assert_eq!(st, 404);
}

#[test]
fn a_delivery_cut_short_by_kill_9_is_sent_after_the_restart() {
    let r = Receiver::start();
    let mut s = start(&r, &[]);
    put(&s, "/v1/functions/work");
    let hook = webhook(&s, &r, "/crash", json!({"events": ["execution.failed"]}));
    // The receiver holds the first attempt: the crash comes before any answer.
    r.hold(true);
    let id = s.invoke(
        "work",
        &scenario("fail", json!({"error_type": "E", "message": "m"})),
    );
    r.wait("/crash", 1);
    s.kill9();
    r.hold(false);
    std::thread::sleep(Duration::from_millis(200));
    let seen_before = r.got("/crash").len();
    s.crash_and_restart();
    let got = r.wait("/crash", seen_before + 1);
    assert!(
        got.iter().all(|g| g.signed && g.id() == got[0].id()),
        "the same delivery: {got:?}"
    );
    assert_eq!(
        got.last().unwrap().json()["data"]["execution_id"],
        id.as_str()
    );
    let ds = wait_deliveries(&s, &hook, |ds| {
        ds.first().is_some_and(|d| d["status"] == "delivered")
    });
    assert_eq!(ds.len(), 1);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        r.got("/crash").len(),
        seen_before + 1,
        "delivered once after the restart"
    );
    println!(
        "kill -9 while the receiver held the attempt: {} request(s) before, 1 after the restart",
        seen_before
    );
}

#[test]
fn a_destination_outside_the_allowlist_is_refused_at_creation() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    let ev = json!(["execution.failed"]);
    for url in [
        "http://127.0.0.1:1/hook".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!(
            "http://localhost:{}/hook",
            r.addr.rsplit(':').next().unwrap()
        ),
        s.url.clone() + "/v1/functions",
        format!("ftp://{}/x", r.addr),
        "not a url".to_string(),
    ] {
        let (st, v) = s.post("/v1/webhooks", &json!({"url": url, "events": ev}));
        assert_eq!(st, 400, "{url}: {v}");
    }
    let (st, v) = s.post(
        "/v1/webhooks",
        &json!({"url": r.url("/ok"), "events": ["execution.exploded"]}),
    );
    assert_eq!(st, 400, "{v}");
    let (st, v) = s.post("/v1/webhooks", &json!({"url": r.url("/ok"), "events": []}));
    assert_eq!(st, 400, "{v}");
    // A tenant whose own list leaves the receiver out is refused too.
    let (st, v) = s.post(
        "/v1/tenants",
        &json!({"name": "closed", "quotas": {"outbound_allowlist": []}}),
    );
    assert_eq!(st, 201, "{v}");
    let key = new_key(&s, "closed", "developer");
    let (st, v) = s.req_as(
        Some(&key),
        "POST",
        "/v1/webhooks",
        Some(
            json!({"url": r.url("/ok"), "events": ev})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(st, 400, "{v}");
    // Changing a webhook to an outside URL is refused as well.
    let id = webhook(&s, &r, "/ok", json!({"events": ev}));
    let (st, v) = s.req(
        "PATCH",
        &format!("/v1/webhooks/{id}"),
        Some(br#"{"url": "http://10.0.0.1:80/"}"#.to_vec()),
    );
    assert_eq!(st, 400, "{v}");
}

fn new_key(s: &Server, tenant: &str, role: &str) -> String {
    let (st, v) = s.post(
        &format!("/v1/tenants/{tenant}/keys"),
        &json!({"role": role, "name": "webhooks test"}),
    );
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_string()
}

#[test]
fn another_tenant_cannot_see_or_retry_a_delivery() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    for t in ["a", "b"] {
        let (st, v) = s.post("/v1/tenants", &json!({"name": t}));
        assert_eq!(st, 201, "{v}");
    }
    let a = new_key(&s, "a", "developer");
    let b = new_key(&s, "b", "owner");
    let a_reader = new_key(&s, "a", "reader");
    let (st, v) = s.req_as(
        Some(&a),
        "PUT",
        "/v1/functions/work",
        Some(guest_bytes("conformance_guest")),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.req_as(
        Some(&a),
        "POST",
        "/v1/webhooks",
        Some(
            json!({"url": r.url("/a"), "events": ["execution.failed"]})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(st, 201, "{v}");
    r.secret("/a", v["secret"].as_str().unwrap());
    let hook = v["id"].as_str().unwrap().to_string();
    r.script("/a", &[], 500);
    let (st, v) = s.req_as(
        Some(&a),
        "POST",
        "/v1/functions/work/invoke",
        Some(
            scenario("fail", json!({"error_type": "E", "message": "m"}))
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(st, 202, "{v}");
    r.wait("/a", 3);
    let path = format!("/v1/webhooks/{hook}/deliveries");
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        let (st, v) = s.req_as(Some(&a), "GET", &path, None);
        assert_eq!(st, 200, "{v}");
        if v["deliveries"][0]["status"] == "failed" {
            break v["deliveries"][0]["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let unknown = "wh_01KBDXW1Q0000000000000000";
    for (method, p) in [
        ("GET", format!("/v1/webhooks/{hook}")),
        ("PATCH", format!("/v1/webhooks/{hook}")),
        ("DELETE", format!("/v1/webhooks/{hook}")),
        ("GET", format!("/v1/webhooks/{hook}/deliveries")),
        (
            "POST",
            format!("/v1/webhooks/{hook}/deliveries/{delivery}/retry"),
        ),
        ("POST", format!("/v1/webhooks/{hook}/test")),
    ] {
        let body = (method == "PATCH").then(|| br#"{"enabled": false}"#.to_vec());
        let (st, v) = s.req_as(Some(&b), method, &p, body.clone());
        let (st_unknown, v_unknown) = s.req_as(Some(&b), method, &p.replace(&hook, unknown), body);
        assert_eq!((st, st_unknown), (404, 404), "{method} {p}: {v}");
        assert_eq!(v["error"]["code"], v_unknown["error"]["code"]);
    }
    let (st, v) = s.req_as(Some(&b), "GET", "/v1/webhooks", None);
    assert_eq!(
        (st, v["webhooks"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    // A's reader may not manage webhooks at all.
    let (st, _) = s.req_as(Some(&a_reader), "GET", "/v1/webhooks", None);
    assert_eq!(st, 403);
    // Nothing of A changed: B's retry did not send anything.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.got("/a").len(), 3);
    let (st, v) = s.req_as(Some(&a), "GET", &format!("/v1/webhooks/{hook}"), None);
    assert_eq!((st, v["enabled"].clone()), (200, json!(true)), "{v}");
}

#[test]
fn delivery_latency_after_the_terminal_event() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    put(&s, "/v1/functions/work");
    webhook(&s, &r, "/lat", json!({"events": ["execution.failed"]}));
    const N: usize = 50;
    for i in 0..N {
        s.invoke(
            "work",
            &scenario(
                "fail",
                json!({"error_type": "E", "message": format!("{i}")}),
            ),
        );
        // Spaced out: each delivery's latency on its own, not a burst's queueing.
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = r.wait("/lat", N);
    let mut lat: Vec<i128> = got
        .iter()
        .map(|g| {
            assert!(g.signed);
            ms_since_epoch(g.at) - ms_of(g.json()["data"]["ended_at"].as_str().unwrap())
        })
        .collect();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "webhook delivery latency after the terminal event, {N} failed executions: p50 {} ms, p99 {} ms, max {} ms",
        p(0.5),
        p(0.99),
        lat.last().unwrap()
    );
    assert!(p(0.5) < 1000, "{lat:?}");

    // A burst: 50 executions invoked at once (deliveries queue behind the concurrency
    // bound, 16).
    for i in 0..N {
        s.invoke(
            "work",
            &scenario(
                "fail",
                json!({"error_type": "E", "message": format!("b{i}")}),
            ),
        );
    }
    let got = r.wait("/lat", 2 * N);
    let mut lat: Vec<i128> = got[N..]
        .iter()
        .map(|g| ms_since_epoch(g.at) - ms_of(g.json()["data"]["ended_at"].as_str().unwrap()))
        .collect();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "webhook delivery latency after the terminal event, a burst of {N}: p50 {} ms, p99 {} ms, max {} ms",
        p(0.5),
        p(0.99),
        lat.last().unwrap()
    );
}

#[test]
fn an_attempt_without_an_answer_is_cut_at_15_s_and_retried() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    put(&s, "/v1/functions/work");
    let hook = webhook(&s, &r, "/mute", json!({"events": ["execution.failed"]}));
    r.hold(true);
    s.invoke(
        "work",
        &scenario("fail", json!({"error_type": "E", "message": "m"})),
    );
    let first = r.wait("/mute", 1);
    let started = Instant::now();
    let got = r.wait_for("/mute", 2, Duration::from_secs(30));
    let gap = got[1].at.duration_since(first[0].at).unwrap();
    println!(
        "an attempt without an answer: the next one {} ms after it began",
        gap.as_millis()
    );
    // Seen at the receiver, which heard the first attempt some time after the host began
    // it (its 15 s count starts at the host): allow that much earlier, not more.
    assert!(gap >= Duration::from_millis(15_000 + 300 - 100), "{gap:?}");
    assert!(gap < Duration::from_millis(15_000 + 3_000), "{gap:?}");
    assert!(started.elapsed() < Duration::from_secs(25));
    let ds = deliveries(&s, &hook, "");
    let err = ds[0]["last_error"].as_str().unwrap_or("");
    assert!(
        ds[0]["attempts"].as_u64() >= Some(1) && err.contains("15"),
        "{:?}",
        ds[0]
    );
    // Released only now: an answered second attempt would clear the first one's error.
    r.hold(false);
}

/// `durable-host webhooks ...` against the server: (exit code, stdout, stderr).
fn cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(support::BIN)
        .args(["--server", &s.url, "--api-key", &s.admin_key])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_creates_lists_tests_and_deletes_webhooks() {
    let r = Receiver::start();
    let s = start(&r, &[]);
    let url = r.url("/cli");
    let (code, out, err) = cli(
        &s,
        &[
            "--json",
            "webhooks",
            "create",
            "--url",
            &url,
            "--event",
            "execution.failed",
            "--format",
            "slack",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert!(v["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(v["format"], "slack");
    let (code, out, err) = cli(&s, &["webhooks", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&id) && out.contains("execution.failed") && out.contains("enabled"),
        "{out}"
    );
    let (code, out, err) = cli(&s, &["webhooks", "test", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("webhook.test"), "{out}");
    let got = r.wait("/cli", 1);
    assert!(
        got[0].json()["text"].as_str().unwrap().contains("test"),
        "{:?}",
        got[0]
    );
    wait_deliveries(&s, &id, |ds| {
        ds.first().is_some_and(|d| d["status"] == "delivered")
    });
    let (code, out, _) = cli(
        &s,
        &["webhooks", "deliveries", &id, "--status", "delivered"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("webhook.test") && out.contains("delivered"),
        "{out}"
    );
    let (code, out, _) = cli(&s, &["webhooks", "get", &id]);
    assert_eq!(code, 0);
    assert!(out.contains(&url) && !out.contains("whsec_"), "{out}");
    // Errors: one line, exit 2.
    let (code, _, err) = cli(&s, &["webhooks", "create", "--url", "http://127.0.0.1:1/"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: 400 bad_request") && err.contains("allowlist"),
        "{err}"
    );
    let (code, out, _) = cli(&s, &["webhooks", "delete", &id]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = cli(&s, &["webhooks", "get", &id]);
    assert_eq!(code, 2);
    assert!(err.contains("404 not_found"), "{err}");
}

#[test]
fn deliveries_in_flight_are_bounded_by_the_concurrency_flag() {
    let r = Receiver::start();
    let s = start(&r, &["--webhook-concurrency", "2"]);
    put(&s, "/v1/functions/work");
    webhook(&s, &r, "/busy", json!({"events": ["execution.failed"]}));
    r.hold(true);
    for _ in 0..5 {
        s.invoke(
            "work",
            &scenario("fail", json!({"error_type": "E", "message": "m"})),
        );
    }
    r.wait("/busy", 2);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        r.got("/busy").len(),
        2,
        "two in flight while the receiver holds them"
    );
    r.hold(false);
    let got = r.wait("/busy", 5);
    std::thread::sleep(Duration::from_millis(500));
    let ids: std::collections::HashSet<&str> = got.iter().map(Received::id).collect();
    assert_eq!((got.len(), ids.len()), (5, 5), "each delivered once");
}
