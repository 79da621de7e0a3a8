//! Durability at the point of output: an activation's writes no longer wait for the disk,
//! so these tests prove that nothing a client was shown is ever lost. Each round starts a
//! mix of clients (a table: history readers, sync invokers, live-stream followers, a webhook
//! receiver, the target of guests' outbound calls), SIGKILLs the server at a different
//! moment, restarts it on the same data directory and checks everything every client saw
//! so far: every history event is still there with the same content, every output is the
//! output, every execution named exists, every webhook's execution ended as it said, and no
//! at-most-once step's body reached the mock twice.
//!
//! The servers run with `DURABLE_FAULT_LOSE_UNSYNCED_LOG=1`: the write-ahead log keeps its
//! records in memory until they are fdatasynced, so a kill -9 loses what a power loss could
//! (without it the page cache would keep every record written, and the test could not tell
//! a missing barrier).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// What clients were shown, across every round.
#[derive(Default)]
struct Seen {
    /// Execution id -> event_id -> the event as shown (history page or SSE frame).
    events: Mutex<HashMap<String, BTreeMap<u64, Value>>>,
    /// Execution id -> the end of a terminal execution as shown (`end_of`).
    ends: Mutex<HashMap<String, Value>>,
    /// Executions a response named.
    named: Mutex<HashSet<String>>,
    /// Executions of at-most-once probes (their outbound path is `/<tag>/slow`).
    probes: Mutex<Vec<String>>,
    /// How many things were seen, per client kind (to check each kind saw something).
    counts: Mutex<HashMap<&'static str, usize>>,
}

impl Seen {
    fn count(&self, kind: &'static str) {
        *self.counts.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn event(&self, kind: &'static str, id: &str, e: &Value) {
        let n = e["event_id"].as_u64().expect("event_id");
        self.events
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_default()
            .insert(n, e.clone());
        self.count(kind);
    }

    fn end(&self, kind: &'static str, id: &str, view: &Value) {
        self.ends
            .lock()
            .unwrap()
            .insert(id.to_string(), end_of(view));
        self.count(kind);
    }

    fn named(&self, id: &str) {
        self.named.lock().unwrap().insert(id.to_string());
    }
}

/// What a client is shown of an execution's end (a view, or a webhook's `data`): a run
/// again after a crash would end at another time, so a lost end shows here even when the
/// output is the same.
fn end_of(v: &Value) -> Value {
    json!({"status": v["status"], "output": v["output"], "ended_at": v["ended_at"]})
}

/// One client's loop: runs until `stop` or until the server is gone (a request fails).
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Invokes `steps` executions and reads their history and view while they run.
    Histories,
    /// `POST .../invoke?wait=30` of `bench-hello` (step, 0 s wait, step).
    SyncInvoke,
    /// Invokes `steps` and follows `/events` to the end.
    Sse,
    /// Invokes `bench-hello` executions whose end the webhook announces.
    Webhooks,
    /// Invokes at-most-once probes: one outbound POST from the step's body.
    Outbound,
}

/// The cases: which clients run together in each round. Alone, a kind of client meets no
/// other client's barrier (which would make its writes durable anyway); together, they
/// share barriers and the commit thread.
const CASES: [(&str, &[Kind]); 6] = [
    ("histories", &[Kind::Histories, Kind::Histories]),
    ("sync invokes", &[Kind::SyncInvoke, Kind::SyncInvoke]),
    ("live streams", &[Kind::Sse, Kind::Sse]),
    ("webhooks", &[Kind::Webhooks]),
    ("outbound calls", &[Kind::Outbound]),
    (
        "all at once",
        &[
            Kind::Histories,
            Kind::SyncInvoke,
            Kind::SyncInvoke,
            Kind::Sse,
            Kind::Webhooks,
            Kind::Outbound,
        ],
    ),
];

/// The webhook's path on the mock: answered after 100 ms, so that a kill often finds a
/// delivery in flight.
const HOOK: &str = "/delay/100/hook";

/// When each round's kill comes after its clients start.
const KILL_AFTER_MS: [u64; 8] = [20, 60, 110, 170, 250, 350, 500, 700];

struct Ctx {
    url: String,
    key: String,
    mock: String,
    round: usize,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    serial: Arc<AtomicUsize>,
}

fn client(key: &str) -> reqwest::blocking::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    reqwest::blocking::Client::builder()
        .default_headers(h)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// `Ok(None)` for a response that is not 2xx; `Err` once the server is gone.
fn call(
    c: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut r = c.request(method, url);
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let resp = r.send()?;
    let status = resp.status().as_u16();
    let text = resp.text()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn run(kind: Kind, cx: Ctx) {
    let c = client(&cx.key);
    let invoke = |input: Value, wait: bool| -> Result<(u16, Value), reqwest::Error> {
        let q = if wait { "?wait=30" } else { "" };
        let url = format!("{}/v1/functions/conf/invoke{q}", cx.url);
        call(&c, reqwest::Method::POST, &url, Some(&input))
    };
    let record_invoke = |(st, v): (u16, Value)| -> Option<String> {
        let id = v["execution_id"].as_str()?.to_string();
        if st == 200 || st == 202 {
            cx.seen.named(&id);
        }
        if st == 200 && matches!(v["status"].as_str(), Some("succeeded" | "failed")) {
            cx.seen.end("sync invoke", &id, &v);
        }
        Some(id)
    };
    while !cx.stop.load(Ordering::SeqCst) {
        let step = || -> Result<(), reqwest::Error> {
            match kind {
                Kind::SyncInvoke => {
                    record_invoke(invoke(scenario("bench-hello", json!({})), true)?);
                }
                Kind::Webhooks => {
                    record_invoke(invoke(scenario("bench-hello", json!({})), false)?);
                    // Every response is a barrier: leave the deliveries (each in flight
                    // 100 ms) a moment alone.
                    std::thread::sleep(Duration::from_millis(150));
                }
                Kind::Histories => {
                    let input = scenario("steps", json!({"count": 15}));
                    let Some(id) = record_invoke(invoke(input, false)?) else {
                        return Ok(());
                    };
                    for _ in 0..6 {
                        let url = format!("{}/v1/executions/{id}/history", cx.url);
                        let (st, page) = call(&c, reqwest::Method::GET, &url, None)?;
                        if st == 200 {
                            for e in page["events"].as_array().into_iter().flatten() {
                                cx.seen.event("history", &id, e);
                            }
                        }
                        let url = format!("{}/v1/executions/{id}", cx.url);
                        let (st, view) = call(&c, reqwest::Method::GET, &url, None)?;
                        if st == 200 && view["status"] == "succeeded" {
                            cx.seen.end("execution view", &id, &view);
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                Kind::Sse => {
                    let input = scenario("steps", json!({"count": 15}));
                    let Some(id) = record_invoke(invoke(input, false)?) else {
                        return Ok(());
                    };
                    follow(&c, &cx, &id)?;
                }
                Kind::Outbound => {
                    let n = cx.serial.fetch_add(1, Ordering::SeqCst);
                    let tag = format!("r{}n{n}", cx.round);
                    let input = scenario(
                        "at-most-once-probe",
                        json!({"url": format!("{}/delay/150/{tag}", cx.mock), "max_attempts": 1, "delay_ms": 0}),
                    );
                    if let Some(id) = record_invoke(invoke(input, false)?) {
                        cx.seen.probes.lock().unwrap().push(id);
                    }
                    // Every response is a barrier: leave the probes' calls a moment alone
                    // (each is in flight 150 ms, so a kill often finds one).
                    std::thread::sleep(Duration::from_millis(40));
                }
            }
            Ok(())
        };
        if step().is_err() {
            return; // the server is gone
        }
    }
}

/// Follow an execution's live history to its end frame, recording every frame.
fn follow(c: &reqwest::blocking::Client, cx: &Ctx, id: &str) -> Result<(), reqwest::Error> {
    let resp = c
        .get(format!("{}/v1/executions/{id}/events", cx.url))
        .send()?;
    if resp.status() != 200 {
        return Ok(());
    }
    let mut event = String::new();
    for line in std::io::BufReader::new(resp).lines() {
        let Ok(line) = line else {
            return Ok(()); // cut by the kill
        };
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).expect("frame data is JSON");
            match event.as_str() {
                "history" => cx.seen.event("live stream", id, &v),
                "end" => {
                    cx.seen.end("live stream", id, &v);
                    return Ok(());
                }
                other => panic!("unexpected frame {other}"),
            }
        }
    }
    Ok(())
}

/// Everything seen so far is on the restarted server.
fn check(s: &Server, seen: &Seen, mock: &Mock) {
    for (id, events) in seen.events.lock().unwrap().iter() {
        let (st, page) = s.get(&format!("/v1/executions/{id}/history"));
        assert_eq!(st, 200, "{id}: {page}");
        let now: BTreeMap<u64, &Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["event_id"].as_u64().unwrap(), e))
            .collect();
        for (n, e) in events {
            assert_eq!(
                now.get(n).copied(),
                Some(e),
                "{id}: event {n} was shown, and is gone or changed after the crash"
            );
        }
    }
    for (id, end) in seen.ends.lock().unwrap().iter() {
        assert_eq!(
            &end_of(&s.execution(id)),
            end,
            "{id}: its end was shown, and differs after the crash"
        );
    }
    for id in seen.named.lock().unwrap().iter() {
        let (st, v) = s.get(&format!("/v1/executions/{id}"));
        assert_eq!(st, 200, "{id} was named in a response and is gone: {v}");
    }
    // Webhooks: every delivery's execution ended as it says.
    for body in mock.bodies(HOOK) {
        let d = &body["data"];
        let id = d["execution_id"].as_str().unwrap();
        assert_eq!(
            end_of(&s.execution(id)),
            end_of(d),
            "{id}: a webhook announced its end, which differs after the crash"
        );
    }
}

#[test]
fn nothing_any_client_saw_is_lost_whatever_the_moment_of_a_crash() {
    std::env::set_var("DURABLE_FAULT_LOSE_UNSYNCED_LOG", "1");
    let mut report = Vec::new();
    for (case, clients) in CASES {
        report.push(crash_rounds(case, clients));
    }
    for line in report {
        eprintln!("{line}");
    }
}

/// `KILL_AFTER_MS.len()` rounds of `clients` on one data directory, each ended by a kill -9
/// and followed by the checks; then the at-most-once check once every probe has ended.
fn crash_rounds(case: &str, clients: &[Kind]) -> String {
    let started = Instant::now();
    let mock = Mock::start();
    let mut s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    s.deploy("conf", "conformance_guest");
    let (st, v) = s.post(
        "/v1/webhooks",
        &json!({"url": format!("{}{HOOK}", mock.url()), "events": ["execution.succeeded"]}),
    );
    assert_eq!(st, 201, "{v}");
    let seen = Arc::new(Seen::default());
    let serial = Arc::new(AtomicUsize::new(0));
    for (round, kill_after) in KILL_AFTER_MS.into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = clients
            .iter()
            .map(|&kind| {
                let cx = Ctx {
                    url: s.url.clone(),
                    key: s.admin_key.clone(),
                    mock: mock.url(),
                    round,
                    seen: seen.clone(),
                    stop: stop.clone(),
                    serial: serial.clone(),
                };
                std::thread::spawn(move || run(kind, cx))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(kill_after));
        s.kill9();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("client thread");
        }
        s.crash_and_restart();
        check(&s, &seen, &mock);
    }
    // The clients were shown something (else the rounds proved nothing about them).
    let counts = seen.counts.lock().unwrap().clone();
    let named = seen.named.lock().unwrap().len();
    assert!(named > 0, "{case}: no execution was invoked");
    let expected: &[&str] = match clients {
        [Kind::Histories, ..] => &["history"],
        [Kind::SyncInvoke, ..] => &["sync invoke"],
        [Kind::Sse, ..] => &["live stream"],
        _ => &[],
    };
    for kind in expected {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "{case}: {counts:?}"
        );
    }
    // Let every probe end, then: no at-most-once body reached the mock twice.
    let probes = seen.probes.lock().unwrap().clone();
    for id in &probes {
        s.wait_done(id);
    }
    let mut per_path: HashMap<String, usize> = HashMap::new();
    for (_, path, _) in mock.hits.lock().unwrap().iter() {
        if path.ends_with("/slow") {
            *per_path.entry(path.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = per_path.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{case}: at-most-once bodies ran twice: {twice:?}"
    );
    if clients.iter().any(|k| matches!(k, Kind::Outbound)) {
        assert!(!per_path.is_empty(), "{case}: no outbound call was made");
    }
    if clients.iter().any(|k| matches!(k, Kind::Webhooks)) {
        // Deliveries of executions the last restart resumed may still come: wait a little.
        let deadline = Instant::now() + Duration::from_secs(20);
        while mock.bodies(HOOK).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{case}: no webhook was delivered"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // A last check once everything has settled (deliveries retried after the restarts).
    check(&s, &seen, &mock);
    format!(
        "{case}: {} rounds in {:?}: seen {counts:?}; {named} executions named, {} ends, {} probes \
         ({} outbound calls), {} webhook deliveries",
        KILL_AFTER_MS.len(),
        started.elapsed(),
        seen.ends.lock().unwrap().len(),
        probes.len(),
        per_path.len(),
        mock.bodies(HOOK).len(),
    )
}
