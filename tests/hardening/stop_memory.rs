//! Stop of a guest blocked in a host call, and the host-wide memory budget (findings 7, 11).

use std::io::Read;
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

/// An HTTP server that reads requests and never answers them, and tells when the client
/// drops the connection: a remote API that hangs.
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

    /// Read the request head, report it, then read until the peer closes.
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
                        let _ = tx.send(Conn::Request);
                    }
                }
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hang", self.addr)
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
    /// The history shows this event for step `name`, and a moment has passed (a sleep
    /// outside a step leaves no event of its own; the moment lets the guest reach it).
    After(&'static str, &'static str),
}

struct Case {
    name: &'static str,
    scenario: &'static str,
    in_step: bool,
    blocked: Blocked,
}

const LONG_SLEEP_MS: u64 = 600_000;

/// The guest is well inside its blocking call (see [`Blocked`]).
fn wait_blocked(s: &Server, id: &str, hole: &Blackhole, blocked: &Blocked) {
    match blocked {
        Blocked::InRequest => {
            let ev = hole.next(Duration::from_secs(30));
            assert!(
                matches!(ev, Some(Conn::Request)),
                "{id}: no request: {ev:?}"
            );
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
            in_step: false,
            blocked: Blocked::InRequest,
        },
        Case {
            name: "http inside a step",
            scenario: "block-http",
            in_step: true,
            blocked: Blocked::InRequest,
        },
        Case {
            name: "sleep outside a step",
            scenario: "block-sleep",
            in_step: false,
            blocked: Blocked::After("StepSucceeded", "before"),
        },
        Case {
            name: "sleep inside a step",
            scenario: "block-sleep",
            in_step: true,
            blocked: Blocked::After("StepStarted", "sleep"),
        },
    ];
    for case in cases {
        let input = scenario(
            case.scenario,
            json!({"url": hole.url(), "ms": LONG_SLEEP_MS, "in_step": case.in_step}),
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
        if matches!(case.blocked, Blocked::InRequest) {
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
            json!({"url": hole.url(), "ms": LONG_SLEEP_MS, "in_step": in_step}),
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
