//! The local test runner (`durable_sdk::testing`) on handlers written for these tests:
//! retries with skipped delays, injected failures, callbacks completed, failed and timed
//! out from the test, child contexts, deterministic values, and non-deterministic handlers
//! caught, each with the position and what differed.

#![cfg(not(target_arch = "wasm32"))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use durable_sdk::testing::{Runner, Status};
use durable_sdk::{
    CallbackConfig, Context, Error, RetryStrategy, StepConfig, StepSemantics, WaitStrategy,
};
use serde_json::json;

/// Fails its first two attempts (transiently), then succeeds; 10 s between attempts.
fn flaky(ctx: &mut Context, _: ()) -> Result<u32, Error> {
    let retry = RetryStrategy::fixed(5, Duration::from_secs(10));
    ctx.step_with("flaky", StepConfig::default().retry(retry), |step| {
        if step.attempt() < 3 {
            return Err(Error::new(
                "Transient",
                format!("attempt {}", step.attempt()),
            ));
        }
        Ok(step.attempt())
    })
}

#[test]
fn retries_run_after_their_delays_without_sleeping_and_history_records_each_attempt() {
    let started = Instant::now();
    let mut run = Runner::new(flaky);
    assert_eq!(run.invoke(()), Status::Succeeded(json!(3)));
    assert!(started.elapsed() < Duration::from_secs(5), "no real delay");
    assert_eq!(run.elapsed(), Duration::from_secs(20), "two 10 s delays");
    assert_eq!(run.activations(), 3, "each retry delay unloads the guest");
    let attempts: Vec<(&str, u64)> = run
        .history()
        .iter()
        .filter_map(|e| match &e.kind {
            durable_sdk::testing::EventKind::StepFailed {
                next_attempt_delay_ms,
                ..
            } => Some(("StepFailed", next_attempt_delay_ms.unwrap_or(0))),
            durable_sdk::testing::EventKind::StepSucceeded { .. } => Some(("StepSucceeded", 0)),
            _ => None,
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("StepFailed", 10_000),
            ("StepFailed", 10_000),
            ("StepSucceeded", 0)
        ]
    );
    let ids: Vec<u32> = run.history().iter().map(|e| e.seq).collect();
    assert_eq!(ids, (1..=ids.len() as u32).collect::<Vec<_>>());
}

#[test]
fn injected_failures_follow_the_retry_policy() {
    // (injection, expected status, StepFailed events)
    let cases: Vec<(Option<u32>, Status, usize)> = vec![
        // Two injected failures, then the body runs on attempt 3.
        (Some(2), Status::Succeeded(json!(3)), 2),
        // Every attempt fails: after 5 attempts the step (and the execution) fails.
        (
            None,
            Status::Failed(Error::new("Injected", "on purpose")),
            5,
        ),
    ];
    for (times, want, failed) in cases {
        let mut run = Runner::new(flaky);
        let error = Error::new("Injected", "on purpose");
        match times {
            Some(n) => run.fail_step_times("flaky", n, error),
            None => run.fail_step("flaky", error),
        };
        assert_eq!(run.invoke(()), want, "{times:?}");
        let n = run
            .shape()
            .iter()
            .filter(|(t, _, _)| *t == "StepFailed")
            .count();
        assert_eq!(n, failed, "{times:?}: {:?}", run.shape());
    }
}

#[test]
fn an_at_most_once_step_without_retries_fails_for_good_on_an_injected_failure() {
    let mut run = Runner::new(|ctx: &mut Context, _: ()| -> Result<String, Error> {
        let config = StepConfig::default()
            .semantics(StepSemantics::AtMostOncePerRetry)
            .retry(RetryStrategy::none());
        let charged = ctx.step_with("charge", config, |_| Ok(true));
        match charged {
            Ok(_) => Ok("charged".into()),
            // A handled failure: the fallback is another step.
            Err(e) => ctx.step("refund", move |_| {
                Ok(format!("not charged: {}", e.error_type))
            }),
        }
    });
    run.fail_step("charge", Error::new("CardDeclined", "no"));
    assert_eq!(
        run.invoke(()),
        Status::Succeeded(json!("not charged: CardDeclined"))
    );
    assert_eq!(run.activations(), 1);
}

/// Creates two callbacks, waits for both; the second has a 1 h timeout.
fn two_callbacks(ctx: &mut Context, _: ()) -> Result<serde_json::Value, Error> {
    let a = ctx.create_callback::<String>("a", CallbackConfig::default())?;
    let b = ctx.create_callback::<String>(
        "b",
        CallbackConfig::default().timeout(Duration::from_secs(3600)),
    )?;
    let a = a.result()?;
    let b = b.result().unwrap_or_else(|e| e.error_type);
    Ok(json!([a, b]))
}

#[test]
fn callbacks_are_completed_failed_or_timed_out_from_the_test() {
    let mut run = Runner::new(two_callbacks);
    let Status::Waiting { callbacks } = run.invoke(()) else {
        panic!("waits for its callbacks: {:?}", run.status());
    };
    assert_eq!(callbacks.len(), 2);
    assert_eq!(callbacks, run.callback_ids());
    // The first completes; the second is still pending.
    let status = run.succeed_callback(&callbacks[0], "yes");
    assert_eq!(
        status,
        Status::Waiting {
            callbacks: vec![callbacks[1].clone()]
        }
    );
    // Half an hour: not yet timed out. Then the rest of the hour.
    assert!(matches!(
        run.advance(Duration::from_secs(1800)),
        Status::Waiting { .. }
    ));
    assert_eq!(
        run.advance(Duration::from_secs(1800)),
        Status::Succeeded(json!(["yes", "Callback.Timeout"]))
    );
    assert!(run
        .shape()
        .contains(&("CallbackTimedOut", Some("2"), Some("b"))));

    // Heartbeats keep a callback with a heartbeat timeout alive; silence times it out.
    let mut run = Runner::new(|ctx: &mut Context, _: ()| -> Result<String, Error> {
        let config = CallbackConfig::default().heartbeat_timeout(Duration::from_secs(60));
        let cb = ctx.create_callback::<String>("worker", config)?;
        Ok(cb.result().unwrap_or_else(|e| e.error_type))
    });
    run.invoke(());
    let id = run.callback_ids().remove(0);
    for _ in 0..3 {
        assert!(matches!(
            run.advance(Duration::from_secs(50)),
            Status::Waiting { .. }
        ));
        run.heartbeat_callback(&id);
    }
    assert_eq!(
        run.advance(Duration::from_secs(60)),
        Status::Succeeded(json!("Callback.HeartbeatTimeout"))
    );

    // A failed callback fails the await with the test's error.
    let mut run = Runner::new(two_callbacks);
    run.invoke(());
    let first = run.callback_ids().remove(0);
    let status = run.fail_callback(&first, Error::new("Rejected", "no budget"));
    assert_eq!(status, Status::Failed(Error::new("Rejected", "no budget")));
}

#[test]
fn child_contexts_conditions_and_deterministic_values_replay_from_the_journal() {
    let mut run = Runner::new(
        |ctx: &mut Context, _: ()| -> Result<serde_json::Value, Error> {
            let id = ctx.uuid()?;
            let at = ctx.now()?;
            let sum: u32 = ctx.run_in_child_context("pair", |child| {
                let a: u32 = child.step("a", |_| Ok(1))?;
                child.wait("breath", Duration::from_secs(5));
                let b: u32 = child.step("b", |_| Ok(2))?;
                Ok(a + b)
            })?;
            let polls = ctx.wait_for_condition(
                "count",
                0u32,
                |n, _| Ok(n + 1),
                WaitStrategy::until(|n: &u32| *n >= 3).fixed_delay(Duration::from_secs(60)),
            )?;
            Ok(
                json!({"id": id, "at": at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64, "sum": sum, "polls": polls}),
            )
        },
    );
    run.seed(7);
    let out = match run.invoke(()) {
        Status::Succeeded(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(out["sum"], 3);
    assert_eq!(out["polls"], 3);
    assert_eq!(out["id"].as_str().unwrap().len(), 36);
    assert_eq!(out["at"], durable_sdk::testing::DEFAULT_START_MS);
    // The 5 s wait and two 60 s delays between checks.
    assert_eq!(run.elapsed(), Duration::from_secs(125));
    assert!(run
        .shape()
        .contains(&("ContextSucceeded", Some("3"), Some("pair"))));
    // The same seed draws the same UUID.
    let mut again = Runner::new(|ctx: &mut Context, _: ()| ctx.uuid());
    again.seed(7);
    assert_eq!(again.invoke(()), Status::Succeeded(out["id"].clone()));
}

static CALLS: AtomicU32 = AtomicU32::new(0);

/// Takes another path on every run: a global counter is not recorded.
fn branches_on_a_counter(ctx: &mut Context, _: ()) -> Result<String, Error> {
    let n = CALLS.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        ctx.step("first", |_| Ok(()))?;
    } else {
        ctx.step("later", |_| Ok(()))?;
    }
    ctx.wait("pause", Duration::from_secs(1));
    Ok("done".into())
}

static OUTPUTS: AtomicU32 = AtomicU32::new(0);

/// The same operations on every run, but an output that differs: only the check replay of
/// the last activation sees it.
fn output_from_a_counter(ctx: &mut Context, _: ()) -> Result<u32, Error> {
    ctx.step("only", |_| Ok(()))?;
    Ok(OUTPUTS.fetch_add(1, Ordering::SeqCst))
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Ends after one step on its first run, but waits after it on any later run (as a
/// handler that reads the real clock outside a step might): the first run never
/// suspends, so no later activation would ever notice.
fn grows_on_replay(ctx: &mut Context, _: ()) -> Result<(), Error> {
    ctx.step("a", |_| Ok(()))?;
    if RUNS.fetch_add(1, Ordering::SeqCst) > 0 {
        ctx.wait("late", Duration::from_secs(1));
    }
    Ok(())
}

static SKIPS: AtomicU32 = AtomicU32::new(0);

/// Calls step "b" on its first run only: the replay ends the same way, but skips it.
fn skips_on_replay(ctx: &mut Context, _: ()) -> Result<u32, Error> {
    ctx.step("a", |_| Ok(()))?;
    if SKIPS.fetch_add(1, Ordering::SeqCst) == 0 {
        ctx.step("b", |_| Ok(()))?;
    }
    Ok(1)
}

#[test]
fn non_deterministic_handlers_are_caught_with_the_position_and_what_differed() {
    // The first activation's check replay already takes the other path: step "later" at
    // position 1, where the journal holds "first".
    let mut run = Runner::new(branches_on_a_counter);
    let e = run.try_invoke(()).unwrap_err();
    assert_eq!(e.activation, 1, "{e}");
    assert_eq!(e.operation.as_deref(), Some("1"), "{e}");
    assert!(
        e.message.contains("\"first\"") && e.message.contains("\"later\""),
        "{e}"
    );

    // With the checks off, the host's own rule catches it on the next activation: the
    // execution fails with NonDeterministicExecution.
    CALLS.store(0, Ordering::SeqCst);
    let mut run = Runner::new(branches_on_a_counter);
    run.check_determinism(false);
    let e = run.try_invoke(()).unwrap_err();
    assert_eq!(e.activation, 2, "{e}");
    assert_eq!(e.operation.as_deref(), Some("1"));
    assert_eq!(
        run.history().last().map(|e| e.kind.event_type()),
        Some("ExecutionFailed")
    );
    assert!(run.shape().contains(&("InvocationCompleted", None, None)));

    // Same operations, different output: the check replay of the end catches it.
    let mut run = Runner::new(output_from_a_counter);
    let e = run.try_invoke(()).unwrap_err();
    assert_eq!(e.activation, 1);
    assert!(
        e.message.contains("returned 0") && e.message.contains("returned 1"),
        "{e}"
    );

    // A new operation on replay (the wait): "would record WaitStarted".
    let mut run = Runner::new(grows_on_replay);
    let e = run.try_invoke(()).unwrap_err();
    assert_eq!(e.operation.as_deref(), Some("2"), "{e}");
    assert!(e.message.contains("WaitStarted \"late\""), "{e}");

    // A skipped operation: same end, one operation fewer.
    let mut run = Runner::new(skips_on_replay);
    let e = run.try_invoke(()).unwrap_err();
    assert_eq!(e.operation.as_deref(), Some("2"), "{e}");
    assert!(
        e.message
            .contains("called 2 operations at the top level, the replay 1"),
        "{e}"
    );
}

#[test]
#[should_panic(expected = "non-deterministic handler (activation 1, operation 1)")]
fn invoke_panics_on_a_non_deterministic_handler() {
    static N: AtomicU32 = AtomicU32::new(0);
    let mut run = Runner::new(|ctx: &mut Context, _: ()| -> Result<(), Error> {
        let name = format!("step-{}", N.fetch_add(1, Ordering::SeqCst));
        ctx.step(name, |_| Ok(()))
    });
    run.invoke(());
}

#[test]
fn a_panicking_handler_panics_the_test_with_its_own_message() {
    let caught = std::panic::catch_unwind(|| {
        let mut run = Runner::new(|ctx: &mut Context, _: ()| -> Result<(), Error> {
            ctx.step("a", |_| Ok(()))?;
            panic!("a bug in the handler");
        });
        run.invoke(())
    });
    let payload = caught.unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"a bug in the handler")
    );
}

#[test]
fn bad_input_and_the_handlers_errors_end_the_execution_as_on_the_host() {
    let mut run = Runner::new(|_: &mut Context, n: u32| -> Result<u32, Error> { Ok(n) });
    let Status::Failed(e) = run.invoke("not a number") else {
        panic!("{:?}", run.status());
    };
    assert_eq!(e.error_type, "InvalidInput");
    assert_eq!(
        run.shape(),
        [
            ("ExecutionStarted", None, None),
            ("InvocationCompleted", None, None),
            ("ExecutionFailed", None, None),
        ]
    );
}

/// Runs one step with the given semantics and retry strategy; counts its body's runs.
fn charge_with(semantics: StepSemantics, retry: RetryStrategy, runs: &'static AtomicU32) -> Runner {
    Runner::new(move |ctx: &mut Context, _: ()| -> Result<u32, Error> {
        let config = StepConfig::default()
            .semantics(semantics)
            .retry(retry.clone());
        ctx.step_with("charge", config, |step| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(step.attempt())
        })
    })
}

/// (semantics, retry, body runs, status, StepStarted attempts, StepFailed error types)
type CrashCase = (
    StepSemantics,
    RetryStrategy,
    &'static AtomicU32,
    Status,
    Vec<u32>,
    Vec<&'static str>,
);

#[test]
fn a_crash_mid_step_reruns_an_at_least_once_attempt_and_interrupts_an_at_most_once_one() {
    static LEAST: AtomicU32 = AtomicU32::new(0);
    static MOST: AtomicU32 = AtomicU32::new(0);
    static MOST_RETRIED: AtomicU32 = AtomicU32::new(0);
    let no_retry = RetryStrategy::none();
    let retry = RetryStrategy::fixed(2, Duration::from_secs(5));
    let cases: Vec<CrashCase> = vec![
        // The same attempt runs again after the restart.
        (
            StepSemantics::AtLeastOncePerRetry,
            no_retry.clone(),
            &LEAST,
            Status::Succeeded(json!(1)),
            vec![1, 1],
            vec![],
        ),
        // The attempt is failed as interrupted; no retry: the execution fails.
        (
            StepSemantics::AtMostOncePerRetry,
            no_retry,
            &MOST,
            Status::Failed(Error::new("StepInterrupted", "")),
            vec![1],
            vec!["StepInterrupted"],
        ),
        // Interrupted, then retried 5 s later as attempt 2.
        (
            StepSemantics::AtMostOncePerRetry,
            retry,
            &MOST_RETRIED,
            Status::Succeeded(json!(2)),
            vec![1, 2],
            vec!["StepInterrupted"],
        ),
    ];
    for (semantics, retry, runs, want, starts, failures) in cases {
        let mut run = charge_with(semantics, retry, runs);
        run.crash_in_step("charge");
        let got = match run.invoke(()) {
            // The message names the attempt and step; only its type is compared.
            Status::Failed(e) => Status::Failed(Error::new(e.error_type, "")),
            other => other,
        };
        assert_eq!(got, want, "{semantics:?}");
        let expected_runs = u32::from(matches!(want, Status::Succeeded(_)));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            expected_runs,
            "{semantics:?}: the body ran only after the restart"
        );
        let history = run.history();
        let attempts: Vec<u32> = history
            .iter()
            .filter_map(|e| match &e.kind {
                durable_sdk::testing::EventKind::StepStarted { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect();
        assert_eq!(attempts, starts, "{semantics:?}");
        let failed: Vec<&str> = history
            .iter()
            .filter_map(|e| match &e.kind {
                durable_sdk::testing::EventKind::StepFailed { error, .. } => {
                    Some(error.error_type.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(failed, failures, "{semantics:?}");
        // The activation the crash cut short, as the host's recovery records it.
        let restarted = history.iter().any(|e| {
            matches!(&e.kind, durable_sdk::testing::EventKind::InvocationCompleted { error: Some(err), .. } if err.error_type == "Runtime.HostRestarted")
        });
        assert!(restarted, "{semantics:?}: {:?}", run.shape());
    }
}
