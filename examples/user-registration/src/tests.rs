//! user-registration under the local test runner: the external API is an in-process
//! stand-in, and the polling's durable waits take no real time.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use durable_sdk::http::Response;
use durable_sdk::testing::{Runner, Status};
use serde_json::{json, Value};

/// The API stand-in: start-job answers `start` (then a job id), check-status answers 202
/// until it has been asked `busy_polls` times. Returns the counters of both routes.
fn runner(start_failures: u32, busy_polls: u32) -> (Runner, Rc<Cell<u32>>, Rc<Cell<u32>>) {
    let starts = Rc::new(Cell::new(0));
    let polls = Rc::new(Cell::new(0));
    let (s, p) = (starts.clone(), polls.clone());
    let mut run = Runner::new(super::handler);
    run.on_http(move |req| {
        let answer = |status: u16, body: Value| Response {
            status,
            body: body.to_string().into_bytes(),
        };
        Ok(match (req.method.as_str(), req.path()) {
            ("POST", "/start-job") => {
                s.set(s.get() + 1);
                let body: Value = req.json().expect("JSON");
                assert_eq!(body["username"], "taro");
                if s.get() <= start_failures {
                    answer(503, json!("busy"))
                } else {
                    answer(200, json!({"job_id": "job-42"}))
                }
            }
            ("GET", "/check-status/job-42") => {
                p.set(p.get() + 1);
                if p.get() <= busy_polls {
                    answer(202, json!({"state": "running"}))
                } else {
                    answer(200, json!({"state": "done"}))
                }
            }
            other => panic!("unexpected request {other:?}"),
        })
    });
    (run, starts, polls)
}

fn input(max_attempts: u32) -> Value {
    json!({
        "username": "taro",
        "email": "taro@example.com",
        "api_base_url": "http://api.test/",
        "poll_interval_seconds": 30,
        "max_attempts": max_attempts,
    })
}

#[test]
fn polling_skips_its_durable_waits_and_each_call_happens_once() {
    let started = Instant::now();
    let (mut run, starts, polls) = runner(0, 3);
    let Status::Succeeded(out) = run.invoke(input(10)) else {
        panic!("{:?}", run.status());
    };
    // Four checks 30 s apart after a 30 s initial delay: two minutes on the manual clock.
    assert_eq!(run.elapsed(), Duration::from_secs(120));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out["status"], "completed");
    assert_eq!(out["attempts"], 4);
    assert_eq!(out["totalWaitSeconds"], 120);
    assert_eq!(out["jobResult"]["data"]["body"], json!({"state": "done"}));
    // Replays never re-ran a checkpointed step or check.
    assert_eq!((starts.get(), polls.get()), (1, 4));
    // One operation for the polling, each check an attempt of it (sub type
    // WaitForCondition), the first three with the poll interval as the next delay.
    let delays: Vec<Option<u64>> = run
        .history()
        .iter()
        .filter_map(|e| match &e.kind {
            durable_sdk::testing::EventKind::ConditionSucceeded {
                op,
                next_attempt_delay_ms,
                ..
            } if op.name.as_deref() == Some("check-status") => Some(*next_attempt_delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [Some(30_000), Some(30_000), Some(30_000), None]);
    assert_eq!(
        run.activations(),
        5,
        "unloaded during the initial delay and each poll wait"
    );
}

#[test]
fn a_job_that_never_completes_times_out_after_max_attempts() {
    let (mut run, _, polls) = runner(0, u32::MAX);
    let Status::Failed(e) = run.invoke(input(3)) else {
        panic!("{:?}", run.status());
    };
    assert_eq!(e.error_type, "TimeoutError");
    assert_eq!(polls.get(), 3);
    assert_eq!(run.elapsed(), Duration::from_secs(90));
}

#[test]
fn start_job_is_retried_with_backoff_and_validation_is_not_retried() {
    // Two 503s: retried after up to 1 s and up to 2 s (exponential, full jitter), then
    // started; the delays drawn are recorded, and the runner's seed draws them again.
    let delays = |run: &Runner| -> Vec<u64> {
        run.history()
            .iter()
            .filter_map(|e| match &e.kind {
                durable_sdk::testing::EventKind::StepFailed {
                    next_attempt_delay_ms: Some(d),
                    ..
                } => Some(*d),
                _ => None,
            })
            .collect()
    };
    let (mut run, starts, _) = runner(2, 0);
    assert!(matches!(run.invoke(input(3)), Status::Succeeded(_)));
    assert_eq!(starts.get(), 3);
    let drawn = delays(&run);
    assert_eq!(drawn.len(), 2);
    assert!(drawn[0] <= 1000 && drawn[1] <= 2000, "{drawn:?}");
    let waited = Duration::from_millis(drawn.iter().sum::<u64>()) + Duration::from_secs(30);
    assert_eq!(run.elapsed(), waited);
    let (mut again, _, _) = runner(2, 0);
    again.invoke(input(3));
    assert_eq!(delays(&again), drawn);

    let (mut run, starts, _) = runner(0, 0);
    let Status::Failed(e) =
        run.invoke(json!({"username": "taro", "api_base_url": "http://api.test"}))
    else {
        panic!("{:?}", run.status());
    };
    assert_eq!(e.error_type, "ValidationError");
    assert!(e.error_message.contains("email"), "{e}");
    assert_eq!(starts.get(), 0);
    let failed = run.shape().iter().filter(|s| s.0 == "StepFailed").count();
    assert_eq!(failed, 1, "RetryStrategy::none()");
}
