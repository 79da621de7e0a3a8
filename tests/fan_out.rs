//! Map and parallel on separate instances (DESIGN 11, `runtime::fanout`): branches run at
//! the same time, each on its own wasm instance, at most `max_concurrency` at once; a stop
//! ends them all. (A kill -9 in the middle of a fan-out: `examples.rs` and
//! `conformance.rs`, `map_after_a_host_crash_runs_no_finished_item_again`.) Uses `examples/fan-out` (each item: an optional wait, then a step that
//! may itself take `step_ms` with its instance resident).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// One timing case: `items` items whose step takes `step_ms`, at most `max_concurrency`
/// at once: the execution takes between `min` and `max`, and at some moment at least
/// `min_resident` instances are resident (the execution's branches, at once).
struct Case {
    what: &'static str,
    items: usize,
    max_concurrency: Option<u32>,
    /// Each item's wait before its step (its instance unloaded meanwhile).
    work_ms: u64,
    step_ms: u64,
    min: Duration,
    max: Duration,
    min_resident: f64,
}

const CASES: &[Case] = &[
    Case {
        // Issue 11's case: ten at a time, each a 1 s wait (then a short step, so that
        // instances are resident long enough to be seen): two rounds, not twenty.
        what: "20 items of a 1 s wait, 10 at a time",
        items: 20,
        max_concurrency: Some(10),
        work_ms: 1_000,
        step_ms: 200,
        min: Duration::from_millis(2_400),
        max: Duration::from_millis(6_000),
        min_resident: 2.0,
    },
    Case {
        // One after another this is 20 s; side by side, about one step.
        what: "20 branches of 1 s, unbounded",
        items: 20,
        max_concurrency: None,
        work_ms: 0,
        step_ms: 1_000,
        min: Duration::from_millis(1_000),
        max: Duration::from_millis(3_500),
        min_resident: 10.0,
    },
    Case {
        // Four at a time: three rounds of 400 ms, never one.
        what: "12 branches of 400 ms, 4 at a time",
        items: 12,
        max_concurrency: Some(4),
        work_ms: 0,
        step_ms: 400,
        min: Duration::from_millis(1_150),
        max: Duration::from_millis(4_000),
        min_resident: 2.0,
    },
];

/// The items and their `{"item": x}` results, in order.
fn items(n: usize) -> Vec<Value> {
    (0..n).map(|i| json!(format!("item-{i}"))).collect()
}

#[test]
fn branches_run_at_once_on_their_own_instances_within_max_concurrency() {
    let s = Server::start();
    s.deploy("fan-out", "fan_out");
    for case in CASES {
        let items = items(case.items);
        let mut input = json!({"items": items, "work_ms": case.work_ms, "step_ms": case.step_ms});
        if let Some(m) = case.max_concurrency {
            input["max_concurrency"] = json!(m);
        }
        let started = Instant::now();
        let id = s.invoke("fan-out", &input);
        let mut peak: f64 = 0.0;
        let ex = loop {
            peak = peak.max(s.metric("durable_resident_instances"));
            let ex = s.execution(&id);
            if ex["status"] != "running" && ex["status"] != "suspended" {
                break ex;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{}: still {ex}",
                case.what
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = started.elapsed();
        eprintln!("{}: {took:?}, at most {peak} instances resident", case.what);
        assert_eq!(ex["status"], "succeeded", "{}: {ex}", case.what);
        let got: Vec<Value> = ex["output"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| r["item"].clone())
            .collect();
        assert_eq!(got, items, "{}: every result, in item order", case.what);
        assert!(
            took >= case.min && took <= case.max,
            "{}: took {took:?}, expected {:?} to {:?}",
            case.what,
            case.min,
            case.max
        );
        assert!(
            peak >= case.min_resident,
            "{}: at most {peak} instances were resident at once",
            case.what
        );
        if let Some(m) = case.max_concurrency {
            // The instances the batch's own instance left behind are its branches only.
            assert!(
                peak <= f64::from(m),
                "{}: {peak} resident, max_concurrency {m}",
                case.what
            );
        }
        // Each branch recorded once, and the execution's own instance recorded no
        // activation while its branches ran: one `InvocationCompleted` at the end, and
        // one for each branch's instance that suspended at its wait.
        let h = s.history(&id);
        let count = |t: &str, sub: &str| {
            h.iter()
                .filter(|e| e["event_type"] == t && (sub.is_empty() || e["sub_type"] == sub))
                .count()
        };
        assert_eq!(count("ContextStarted", "MapIteration"), case.items);
        assert_eq!(count("StepSucceeded", "Step"), case.items);
        let suspended = if case.work_ms > 0 { case.items } else { 0 };
        assert_eq!(
            count("InvocationCompleted", ""),
            1 + suspended,
            "{}",
            case.what
        );
        let seqs: Vec<u64> = h.iter().map(|e| e["event_id"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (1..=h.len() as u64).collect();
        assert_eq!(seqs, expected, "{}: events numbered once each", case.what);
    }
}

#[test]
fn a_stop_ends_every_branch_instance_and_the_execution_once() {
    let s = Server::start();
    s.deploy("fan-out", "fan_out");
    let id = s.invoke("fan-out", &json!({"items": items(6), "step_ms": 5_000}));
    // Every branch is inside its 5 s step.
    s.wait_history(&id, |h| {
        h.iter()
            .filter(|e| e["event_type"] == "StepStarted")
            .count()
            == 6
    });
    let asked = Instant::now();
    let (st, v) = s.post(&format!("/v1/executions/{id}/stop"), &json!(null));
    assert!(st == 200 || st == 202, "{st} {v}");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "stopped", "{ex}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "the branches' steps were cut short: {:?}",
        asked.elapsed()
    );
    let h = s.history(&id);
    assert_eq!(h.last().unwrap()["event_type"], "ExecutionStopped");
    assert_eq!(
        h.iter()
            .filter(|e| e["event_type"] == "StepSucceeded")
            .count(),
        0,
        "no step finished"
    );
    // Nothing is written after the end, and no instance is left.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.history(&id).len(), h.len());
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
}
