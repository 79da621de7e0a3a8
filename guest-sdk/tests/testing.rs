//! The local test runner (`durable_sdk::testing`) on handlers written for these tests:
//! retries with skipped delays, injected failures, callbacks completed, failed and timed
//! out from the test, child contexts, deterministic values, and non-deterministic handlers
//! caught, each with the position and what differed; map and parallel (results in order,
//! completion policies, waits inside iterations, a map over another count on replay).

#![cfg(not(target_arch = "wasm32"))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use durable_sdk::testing::{Runner, Status};
use durable_sdk::{
    Branch, CallbackConfig, CompletionConfig, Context, Error, MapConfig, ParallelConfig,
    RetryStrategy, StepConfig, StepSemantics, WaitStrategy,
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

/// (event type, sub type, operation id, name) per event: the host's history columns.
fn typed_shape(run: &Runner) -> Vec<(&'static str, Option<&'static str>, String, Option<String>)> {
    run.history()
        .iter()
        .map(|e| {
            let op = e.kind.op();
            (
                e.kind.event_type(),
                e.kind.sub_type(),
                op.map_or_else(String::new, |o| o.id.clone()),
                op.and_then(|o| o.name.clone()),
            )
        })
        .collect()
}

/// Squares each item in a step of its own; iterations named after their items.
fn squares(ctx: &mut Context, items: Vec<u32>) -> Result<Vec<u32>, Error> {
    let config = MapConfig::default().item_namer(|n: &u32, _| format!("item-{n}"));
    let batch = ctx.map("squares", items, config, |ctx, n, _index| {
        ctx.step("square", move |_| Ok(n * n))
    })?;
    batch.into_result()
}

#[test]
fn a_map_runs_each_item_in_an_iteration_and_returns_the_results_in_order() {
    let mut run = Runner::new(squares);
    assert_eq!(run.invoke([3, 1, 2]), Status::Succeeded(json!([9, 1, 4])));
    assert_eq!(run.activations(), 1);
    let name = |s: &str| Some(s.to_string());
    let mut want = vec![
        ("ExecutionStarted", None, String::new(), None),
        ("ContextStarted", Some("Map"), "1".into(), name("squares")),
    ];
    for (i, n) in [3, 1, 2].into_iter().enumerate() {
        let (branch, step) = (format!("1.{}", i + 1), format!("1.{}.1", i + 1));
        let item = name(&format!("item-{n}"));
        want.extend([
            (
                "ContextStarted",
                Some("MapIteration"),
                branch.clone(),
                item.clone(),
            ),
            ("StepStarted", Some("Step"), step.clone(), name("square")),
            ("StepSucceeded", Some("Step"), step, name("square")),
            ("ContextSucceeded", Some("MapIteration"), branch, item),
        ]);
    }
    want.extend([
        ("ContextSucceeded", Some("Map"), "1".into(), name("squares")),
        ("InvocationCompleted", None, String::new(), None),
        ("ExecutionSucceeded", None, String::new(), None),
    ]);
    assert_eq!(typed_shape(&run), want);
    // The map's own end carries the host's summary, not the results.
    let summary = run.history().iter().find_map(|e| match &e.kind {
        durable_sdk::testing::EventKind::ContextSucceeded { op, result, .. } if op.id == "1" => {
            Some(serde_json::from_str::<serde_json::Value>(result).unwrap())
        }
        _ => None,
    });
    let summary = summary.expect("the map's ContextSucceeded");
    assert_eq!(summary["type"], "MapResult");
    assert_eq!(summary["completionReason"], "ALL_COMPLETED");
    assert_eq!(
        (
            summary["totalCount"].clone(),
            summary["successCount"].clone()
        ),
        (json!(3), json!(3))
    );
}

/// Three branches; "b" fails. The output: each started branch's status, the reason, the
/// errors.
fn three_branches(completion: CompletionConfig) -> Runner {
    Runner::new(
        move |ctx: &mut Context, _: ()| -> Result<serde_json::Value, Error> {
            let step = |ctx: &mut Context, v: &'static str| ctx.step(v, move |_| Ok(v.to_string()));
            let branches = vec![
                Branch::named("a", move |ctx| step(ctx, "a")),
                Branch::named("b", move |ctx| {
                    step(ctx, "b")?;
                    Err(Error::new("Declined", "branch b"))
                }),
                Branch::named("c", move |ctx| step(ctx, "c")),
            ];
            let config = ParallelConfig::default().completion(completion.clone());
            let batch = ctx.parallel("fan", branches, config)?;
            let statuses: Vec<&str> = batch.items.iter().map(|i| i.status.as_str()).collect();
            let errors: Vec<&str> = batch
                .errors()
                .iter()
                .map(|e| e.error_type.as_str())
                .collect();
            Ok(json!({
                "statuses": statuses,
                "reason": batch.completion_reason.as_str(),
                "results": batch.results(),
                "errors": errors,
            }))
        },
    )
}

#[test]
fn a_parallel_with_a_failing_branch_completes_by_its_completion_policy() {
    // (policy, started branches' statuses, completion reason, successful results)
    let cases: Vec<(CompletionConfig, &[&str], &str, &[&str])> = vec![
        (
            CompletionConfig::default(),
            &["SUCCEEDED", "FAILED", "SUCCEEDED"],
            "ALL_COMPLETED",
            &["a", "c"],
        ),
        (
            CompletionConfig::default().tolerated_failure_count(1),
            &["SUCCEEDED", "FAILED", "SUCCEEDED"],
            "ALL_COMPLETED",
            &["a", "c"],
        ),
        // Fail fast: "c" never starts.
        (
            CompletionConfig::all_successful(),
            &["SUCCEEDED", "FAILED"],
            "FAILURE_TOLERANCE_EXCEEDED",
            &["a"],
        ),
        // 1 of 3 failed is more than 10 %.
        (
            CompletionConfig::default().tolerated_failure_percentage(10.0),
            &["SUCCEEDED", "FAILED"],
            "FAILURE_TOLERANCE_EXCEEDED",
            &["a"],
        ),
        (
            CompletionConfig::first_successful(),
            &["SUCCEEDED"],
            "MIN_SUCCESSFUL_REACHED",
            &["a"],
        ),
    ];
    for (policy, statuses, reason, results) in cases {
        let mut run = three_branches(policy.clone());
        let failed = statuses.contains(&"FAILED");
        let errors: &[&str] = if failed { &["Declined"] } else { &[] };
        assert_eq!(
            run.invoke(()),
            Status::Succeeded(json!({
                "statuses": statuses,
                "reason": reason,
                "results": results,
                "errors": errors,
            })),
            "{policy:?}"
        );
        let shape = typed_shape(&run);
        let branches: Vec<(&str, &str)> = shape
            .iter()
            .filter(|(_, sub, _, _)| *sub == Some("ParallelBranch"))
            .filter(|(t, _, _, _)| *t != "ContextStarted")
            .map(|(t, _, id, _)| (*t, id.as_str()))
            .collect();
        let mut want = vec![("ContextSucceeded", "1.1")];
        if failed {
            want.push(("ContextFailed", "1.2"));
        }
        if statuses.len() == 3 {
            want.push(("ContextSucceeded", "1.3"));
        }
        assert_eq!(branches, want, "{policy:?}");
        assert!(
            shape.contains(&(
                "ContextSucceeded",
                Some("Parallel"),
                "1".into(),
                Some("fan".into())
            )),
            "{policy:?}: {shape:?}"
        );
    }
}

/// Each item waits 10 s in its iteration, then steps.
fn waits_in_items(ctx: &mut Context, items: Vec<String>) -> Result<Vec<String>, Error> {
    let config = MapConfig::default().max_concurrency(2);
    let batch = ctx.map("slow", items, config, |ctx, item, index| {
        ctx.wait("work", Duration::from_secs(10));
        ctx.step("done", move |_| Ok(format!("{index}:{item}")))
    })?;
    batch.into_result()
}

#[test]
fn waits_inside_map_iterations_are_skipped_in_virtual_time_and_pass_the_checks() {
    let started = Instant::now();
    let mut run = Runner::new(waits_in_items);
    assert_eq!(
        run.invoke(["x", "y", "z"]),
        Status::Succeeded(json!(["0:x", "1:y", "2:z"]))
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no real wait");
    // The items run one after another in the one instance: a wait each, each unloading it.
    assert_eq!(run.elapsed(), Duration::from_secs(30));
    assert_eq!(run.activations(), 4);
    let shape = typed_shape(&run);
    for i in 1..=3 {
        let wait = format!("1.{i}.1");
        assert!(shape.contains(&(
            "WaitStarted",
            Some("Wait"),
            wait.clone(),
            Some("work".into())
        )));
        assert!(shape.contains(&("WaitSucceeded", Some("Wait"), wait, Some("work".into()))));
    }
    let ended = shape.iter().filter(|s| s.0 == "ContextSucceeded").count();
    assert_eq!(ended, 4, "three iterations and the map");
}

static MAPPED: AtomicU32 = AtomicU32::new(0);

/// Maps over 3 items on its first run and over 2 on every later one (a count that is not
/// recorded: say, read from the real clock).
fn maps_fewer_on_replay(ctx: &mut Context, _: ()) -> Result<Vec<u32>, Error> {
    let n = if MAPPED.fetch_add(1, Ordering::SeqCst) == 0 {
        3
    } else {
        2
    };
    let batch = ctx.map(
        "items",
        (0..n).collect(),
        MapConfig::default(),
        |ctx, i, _| ctx.step("item", move |_| Ok(i)),
    )?;
    batch.into_result()
}

static MAPPED_WAITING: AtomicU32 = AtomicU32::new(0);

/// The same, but its last item waits: the first run suspends inside item 3, which the
/// replay over 2 items never reaches, so that it would finish the map.
fn maps_fewer_then_finishes(ctx: &mut Context, _: ()) -> Result<Vec<u32>, Error> {
    let n: u32 = if MAPPED_WAITING.fetch_add(1, Ordering::SeqCst) == 0 {
        3
    } else {
        2
    };
    let batch = ctx.map(
        "items",
        (0..n).collect(),
        MapConfig::default(),
        |ctx, i, _| {
            if i == 2 {
                ctx.wait("last", Duration::from_secs(1));
            }
            ctx.step("item", move |_| Ok(i))
        },
    )?;
    batch.into_result()
}

#[test]
fn a_map_over_another_number_of_items_on_replay_is_caught() {
    // The batch's options are journaled: a replay over fewer items is caught at the map
    // itself, whether the map had ended (first) or was suspended in item 3 (second).
    for handler in [maps_fewer_on_replay, maps_fewer_then_finishes] {
        let mut run = Runner::new(handler);
        let e = run.try_invoke(()).unwrap_err();
        assert_eq!(e.activation, 1, "{e}");
        assert_eq!(e.operation.as_deref(), Some("1"), "{e}");
        assert!(
            e.message
                .contains("a batch of 3 branches, the function now passes 2"),
            "{e}"
        );
    }
}
