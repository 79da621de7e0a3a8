//! Stop of a guest blocked in a host call, and the host-wide memory budget (findings 7, 11).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// How soon a stop or a deadline must take effect on a guest blocked in a host call.
const PROMPT: Duration = Duration::from_secs(1);

/// What happened to a connection made to a [`Blackhole`].
#[derive(Debug)]
enum Conn {
    /// A request arrived (its head was read); it will never be answered.
    Request,
    /// The client closed the connection.
    Closed,
}

/// An HTTP server that never finishes an answer, and tells when the client drops the
/// connection: a remote API that hangs. A request for `/hang` gets nothing back; one for
/// `/hang-body` gets a response head and the start of a body that never ends.
struct Blackhole {
    addr: String,
    events: mpsc::Receiver<Conn>,
}

impl Blackhole {
    fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || Self::serve(conn, tx));
            }
        });
        Blackhole { addr, events }
    }

    /// Read the request head, answer it as its path says, report it, then read until the
    /// peer closes.
    fn serve(mut conn: TcpStream, tx: mpsc::Sender<Conn>) {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut reported = false;
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Conn::Closed);
                    return;
                }
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if !reported && seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        reported = true;
                        if seen.starts_with(b"GET /hang-body ") {
                            let head = "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nstart";
                            let _ = conn.write_all(head.as_bytes());
                        }
                        let _ = tx.send(Conn::Request);
                    }
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next connection event, within `timeout`.
    fn next(&self, timeout: Duration) -> Option<Conn> {
        self.events.recv_timeout(timeout).ok()
    }
}

/// How the test knows the guest is inside its blocking call.
enum Blocked {
    /// The blackhole received the request.
    InRequest,
    /// The blackhole sent a response head and part of its body, and a moment has passed
    /// (for the guest to read the head and block on the rest).
    InBody,
    /// The history shows this event for step `name`, and a moment has passed (a sleep
    /// outside a step leaves no event of its own; the moment lets the guest reach it).
    After(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    scenario: &'static str,
    path: &'static str,
    in_step: bool,
    blocked: Blocked,
}

const LONG_SLEEP_MS: u64 = 600_000;

/// The guest is well inside its blocking call (see [`Blocked`]).
fn wait_blocked(s: &Server, id: &str, hole: &Blackhole, blocked: &Blocked) {
    match blocked {
        Blocked::InRequest | Blocked::InBody => {
            let ev = hole.next(Duration::from_secs(30));
            assert!(
                matches!(ev, Some(Conn::Request)),
                "{id}: no request: {ev:?}"
            );
            if matches!(blocked, Blocked::InBody) {
                // Nothing marks the moment the guest blocks on the body: give it time.
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Blocked::After(event_type, step) => {
            s.wait_history(id, |h| {
                h.iter()
                    .any(|e| e["event_type"] == *event_type && e["name"] == *step)
            });
            // Nothing marks the moment the guest enters the poll: give it time to get there.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

#[test]
fn finding_07_stop_reaches_a_guest_blocked_in_http_or_a_sleep() {
    let hole = Blackhole::start();
    let s = Server::start_with(&["--allow-outbound", &hole.addr]);
    s.deploy("block", "conformance_guest");
    let cases = [
        Case {
            name: "http outside a step",
            scenario: "block-http",
            path: "/hang",
            in_step: false,
            blocked: Blocked::InRequest,
        },
        Case {
            name: "http inside a step",
            scenario: "block-http",
            path: "/hang",
            in_step: true,
            blocked: Blocked::InRequest,
        },
        Case {
            name: "http body read inside a step",
            scenario: "block-http",
            path: "/hang-body",
            in_step: true,
            blocked: Blocked::InBody,
        },
        Case {
            name: "sleep outside a step",
            scenario: "block-sleep",
            path: "",
            in_step: false,
            blocked: Blocked::After("StepSucceeded", "before"),
        },
        Case {
            name: "sleep inside a step",
            scenario: "block-sleep",
            path: "",
            in_step: true,
            blocked: Blocked::After("StepStarted", "sleep"),
        },
    ];
    for case in cases {
        let input = scenario(
            case.scenario,
            json!({"url": hole.url(case.path), "ms": LONG_SLEEP_MS, "in_step": case.in_step}),
        );
        let id = s.invoke("block", &input);
        wait_blocked(&s, &id, &hole, &case.blocked);

        let asked = Instant::now();
        let (code, v) = s.post(&format!("/v1/executions/{id}/stop"), &json!({}));
        let took = asked.elapsed();
        assert_eq!(code, 200, "{}: stop answered {code} {v}", case.name);
        assert_eq!(v["status"], "stopped", "{}: {v}", case.name);
        assert!(took < PROMPT, "{}: stopped after {took:?}", case.name);

        let h = s.history(&id);
        let t = types(&h);
        assert_eq!(
            t.last().map(String::as_str),
            Some("ExecutionStopped"),
            "{}: {t:?}",
            case.name
        );
        assert!(
            !t.iter().any(|e| e == "StepFailed"),
            "{}: the stop was recorded as a failed attempt: {t:?}",
            case.name
        );
        if matches!(case.blocked, Blocked::InRequest | Blocked::InBody) {
            let ev = hole.next(PROMPT);
            assert!(
                matches!(ev, Some(Conn::Closed)),
                "{}: the request to the hanging server was not dropped: {ev:?}",
                case.name
            );
        }
        println!("{}: stopped in {took:?}", case.name);
    }
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
}

#[test]
fn finding_07_the_execution_deadline_reaches_a_guest_blocked_in_a_host_call() {
    let hole = Blackhole::start();
    let s = Server::start_with(&["--allow-outbound", &hole.addr]);
    let (code, v) = s.req(
        "PUT",
        "/v1/functions/short?execution_timeout_secs=1",
        Some(guest_bytes("conformance_guest")),
    );
    assert_eq!(code, 201, "{v}");
    for (scenario_name, in_step) in [("block-http", true), ("block-sleep", false)] {
        let input = scenario(
            scenario_name,
            json!({"url": hole.url("/hang"), "ms": LONG_SLEEP_MS, "in_step": in_step}),
        );
        let invoked = Instant::now();
        let id = s.invoke("short", &input);
        let v = s.wait_status(&id, &["timed_out"], Duration::from_secs(1) + PROMPT);
        let took = invoked.elapsed();
        assert_eq!(v["error"]["error_type"], "Execution.Timeout", "{v}");
        let t = types(&s.history(&id));
        assert_eq!(
            t.last().map(String::as_str),
            Some("ExecutionTimedOut"),
            "{t:?}"
        );
        println!("{scenario_name}: timed out {took:?} after the invoke");
    }
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn finding_11_guests_wait_for_the_host_wide_memory_budget() {
    const BUDGET_MB: u64 = 512;
    const GUESTS: usize = 20;
    const TOUCH_MB: u64 = 100;
    let s = Server::start_with(&["--memory-budget-mb", &BUDGET_MB.to_string()]);
    s.deploy("hog", "conformance_guest");
    assert_eq!(
        s.metric("durable_memory_budget_bytes"),
        BUDGET_MB as f64 * MIB
    );
    // Once, so that the compiled component is loaded before the baseline is taken.
    let warm = s.invoke(
        "hog",
        &scenario("hold-memory", json!({"mib": 1, "hold_ms": 0})),
    );
    assert_eq!(s.wait_done(&warm)["status"], "succeeded");
    let rss_before = s.proc_status_bytes("VmRSS") / 1024;

    let input = scenario("hold-memory", json!({"mib": TOUCH_MB, "hold_ms": 300}));
    let ids: Vec<String> = (0..GUESTS).map(|_| s.invoke("hog", &input)).collect();
    let (mut reserved, mut resident, mut waiting) = (0f64, 0f64, 0f64);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        reserved = reserved.max(s.metric("durable_memory_reserved_bytes"));
        resident = resident.max(s.metric("durable_resident_instances"));
        waiting = waiting.max(s.metric("durable_activations_waiting_for_memory"));
        let done = ids
            .iter()
            .filter(|id| s.execution(id)["status"] != "running")
            .count();
        if done == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {GUESTS} done in 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in &ids {
        let v = s.execution(id);
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    let hwm = s.proc_status_bytes("VmHWM") / 1024;
    let grew_mib = hwm.saturating_sub(rss_before) / 1024;
    println!(
        "budget {BUDGET_MB} MiB, {GUESTS} guests x {TOUCH_MB} MiB: peak reserved {} MiB, \
         peak resident {resident}, peak waiting {waiting}; VmRSS before {} MiB, VmHWM {} MiB \
         (+{grew_mib} MiB)",
        reserved / MIB,
        rss_before / 1024,
        hwm / 1024
    );
    assert!(reserved <= BUDGET_MB as f64 * MIB, "reserved {reserved}");
    assert!(
        resident <= (BUDGET_MB / TOUCH_MB) as f64,
        "{resident} resident at once"
    );
    assert!(waiting >= 1.0, "no activation ever waited for memory");
    // The budget, plus room for the host's own allocations around the guests.
    assert!(
        grew_mib < BUDGET_MB + 128,
        "the host grew by {grew_mib} MiB with a budget of {BUDGET_MB} MiB"
    );
    assert_eq!(s.metric("durable_memory_reserved_bytes"), 0.0);
    assert_eq!(s.metric("durable_activations_waiting_for_memory"), 0.0);
}

#[test]
fn finding_11_stop_and_the_deadline_reach_an_execution_waiting_for_memory() {
    // Room for exactly one instance: the second waits for the first, which sleeps.
    let s = Server::start_with(&["--memory-budget-mb", "128", "--memory-limit-mb", "128"]);
    s.deploy("hog", "conformance_guest");
    let (code, v) = s.req(
        "PUT",
        "/v1/functions/short?execution_timeout_secs=1",
        Some(guest_bytes("conformance_guest")),
    );
    assert_eq!(code, 201, "{v}");
    let holder = s.invoke(
        "hog",
        &scenario("hold-memory", json!({"mib": 1, "hold_ms": LONG_SLEEP_MS})),
    );
    s.wait_history(&holder, |h| !h.is_empty());
    let until_resident = Instant::now() + Duration::from_secs(30);
    while s.metric("durable_memory_reserved_bytes") < 128.0 * MIB {
        assert!(
            Instant::now() < until_resident,
            "the holder never became resident"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let waiter = s.invoke("hog", &scenario("echo", json!({"value": 1})));
    let timed = s.invoke("short", &scenario("echo", json!({"value": 2})));
    let until_waiting = Instant::now() + Duration::from_secs(30);
    while s.metric("durable_activations_waiting_for_memory") < 2.0 {
        assert!(
            Instant::now() < until_waiting,
            "the others never waited for memory"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Stop the waiting one: it ends at once, without an instance.
    let asked = Instant::now();
    let (code, v) = s.post(&format!("/v1/executions/{waiter}/stop"), &json!({}));
    assert_eq!((code, v["status"].as_str()), (200, Some("stopped")), "{v}");
    assert!(
        asked.elapsed() < PROMPT,
        "stopped after {:?}",
        asked.elapsed()
    );
    // The one with a 1 s timeout ends timed_out while it waits.
    let v = s.wait_status(&timed, &["timed_out"], Duration::from_secs(1) + PROMPT);
    assert_eq!(v["error"]["error_type"], "Execution.Timeout", "{v}");
    assert_eq!(s.metric("durable_activations_waiting_for_memory"), 0.0);

    // And the holder, blocked in its sleep, stops too; its memory is released.
    let (code, v) = s.post(&format!("/v1/executions/{holder}/stop"), &json!({}));
    assert_eq!((code, v["status"].as_str()), (200, Some("stopped")), "{v}");
    assert_eq!(s.metric("durable_memory_reserved_bytes"), 0.0);
    let after = s.invoke("hog", &scenario("echo", json!({"value": 3})));
    assert_eq!(s.wait_done(&after)["output"], json!(3));
}

#[test]
fn finding_11_a_budget_below_the_per_instance_limit_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--memory-budget-mb", "64", "--memory-limit-mb", "128"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway: {stderr}");
    for needle in ["--memory-budget-mb", "--memory-limit-mb", "64", "128"] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}
