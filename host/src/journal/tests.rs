//! Replay-core tests: sequences of calls against journals, no IO.

use super::*;

fn no_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    }
}

fn fixed(max: u32, ms: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts: max,
        initial_delay_ms: ms,
        backoff: Backoff::Exponential(1.0),
        jitter: Jitter::None,
        ..RetryPolicy::default()
    }
}

/// A journal with just `ExecutionStarted`, and the events so far.
fn fresh() -> (Activation, Vec<Event>) {
    let mut j = Journal::from_events(&[]);
    let e = j.record(0, EventKind::ExecutionStarted { input: "{}".into() });
    (Activation::new(j, 0), vec![e])
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.event_type()).collect()
}

const ALO: StepSemantics = StepSemantics::AtLeastOncePerRetry;
const AMO: StepSemantics = StepSemantics::AtMostOncePerRetry;

#[test]
fn a_completed_step_replays_its_result_without_running() {
    let (mut a, mut log) = fresh();
    let fx = a
        .step_start(1, None, Some("s"), ALO, no_retry(), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(("1".into(), StepStart::Run(1))));
    assert!(!fx.sync, "at-least-once start is not fsynced");
    log.extend(fx.events);
    let fx = a.step_succeed(2, "1", "42".into()).unwrap();
    assert!(
        fx.sync,
        "a step result is fsynced before the guest continues"
    );
    log.extend(fx.events);
    assert_eq!(
        types(&log),
        ["ExecutionStarted", "StepStarted", "StepSucceeded"]
    );

    let mut replay = Activation::new(Journal::from_events(&log), 10);
    let fx = replay
        .step_start(11, None, Some("s"), ALO, no_retry(), 0.0)
        .unwrap();
    assert_eq!(
        fx.reply,
        Reply::Return(("1".into(), StepStart::Succeeded("42".into())))
    );
    assert!(fx.events.is_empty(), "replay appends nothing");
}

#[test]
fn kind_or_name_mismatch_is_non_deterministic_and_names_both_sides() {
    let (mut a, mut log) = fresh();
    log.extend(
        a.step_start(1, None, Some("charge"), ALO, no_retry(), 0.0)
            .unwrap()
            .events,
    );
    log.extend(a.step_succeed(2, "1", "1".into()).unwrap().events);

    let mut r = Activation::new(Journal::from_events(&log), 3);
    let err = r.wait(4, None, Some("charge"), 10).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Violation::NonDeterministic(_)));
    assert!(msg.contains("step") && msg.contains("wait"), "{msg}");

    let mut r = Activation::new(Journal::from_events(&log), 3);
    let err = r
        .step_start(4, None, Some("refund"), ALO, no_retry(), 0.0)
        .unwrap_err();
    assert!(err.to_string().contains("charge") && err.to_string().contains("refund"));
    assert_eq!(err.to_error().error_type, "NonDeterministicExecution");
}

#[test]
fn retry_with_delay_suspends_then_runs_next_attempt_when_due() {
    let (mut a, mut log) = fresh();
    log.extend(
        a.step_start(100, None, None, ALO, fixed(3, 1_000), 0.0)
            .unwrap()
            .events,
    );
    let fx = a
        .step_fail(200, "1", ErrorObject::new("E", "boom"), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Suspend(SuspendReason::RetryDelay));
    assert_eq!(
        fx.timers,
        vec![TimerRef {
            due_ms: 1_200,
            op_id: "1".into()
        }]
    );
    log.extend(fx.events);

    // Woken early: suspend again, keep the timer.
    let mut early = Activation::new(Journal::from_events(&log), 500);
    let fx = early
        .step_start(500, None, None, ALO, fixed(3, 1_000), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Suspend(SuspendReason::RetryDelay));

    let mut due = Activation::new(Journal::from_events(&log), 1_300);
    let fx = due
        .step_start(1_300, None, None, ALO, fixed(3, 1_000), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(("1".into(), StepStart::Run(2))));
    assert_eq!(fx.timers_done.len(), 1, "the retry timer is consumed");
}

#[test]
fn retry_exhaustion_returns_none_and_replays_failure() {
    let (mut a, mut log) = fresh();
    log.extend(
        a.step_start(0, None, None, ALO, fixed(2, 0), 0.0)
            .unwrap()
            .events,
    );
    let fx = a
        .step_fail(1, "1", ErrorObject::new("E", "1"), 0.0)
        .unwrap();
    assert_eq!(
        fx.reply,
        Reply::Return(Some(2)),
        "zero delay retries at once"
    );
    log.extend(fx.events);
    let fx = a
        .step_fail(2, "1", ErrorObject::new("E", "2"), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(None));
    log.extend(fx.events);
    assert_eq!(
        types(&log)[1..],
        ["StepStarted", "StepFailed", "StepStarted", "StepFailed"]
    );
    let mut r = Activation::new(Journal::from_events(&log), 5);
    let fx = r.step_start(5, None, None, ALO, fixed(2, 0), 0.0).unwrap();
    assert!(matches!(
        fx.reply,
        Reply::Return((_, StepStart::Failed(ref e))) if e.error_message == "2"
    ));
}

#[test]
fn interrupted_at_most_once_step_goes_through_retry_policy() {
    let (mut a, mut log) = fresh();
    let fx = a.step_start(0, None, None, AMO, no_retry(), 0.0).unwrap();
    assert!(
        fx.sync,
        "at-most-once start is durable before the body runs"
    );
    log.extend(fx.events);
    // Crash: nothing more recorded. Replay without retry: fails with StepInterrupted.
    let mut r = Activation::new(Journal::from_events(&log), 10);
    let fx = r.step_start(10, None, None, AMO, no_retry(), 0.0).unwrap();
    match fx.reply {
        Reply::Return((_, StepStart::Failed(e))) => assert_eq!(e.error_type, "StepInterrupted"),
        other => panic!("{other:?}"),
    }
    // With retry and a delay: suspends; the next attempt runs later.
    let mut r = Activation::new(Journal::from_events(&log), 10);
    let fx = r
        .step_start(10, None, None, AMO, fixed(3, 50), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Suspend(SuspendReason::RetryDelay));
    // At-least-once: the attempt simply runs again.
    let mut r = Activation::new(Journal::from_events(&log), 10);
    let fx = r.step_start(10, None, None, ALO, no_retry(), 0.0).unwrap();
    assert_eq!(fx.reply, Reply::Return(("1".into(), StepStart::Run(1))));
}

#[test]
fn trap_inside_step_is_a_failed_attempt() {
    let (mut a, _) = fresh();
    a.step_start(0, None, None, ALO, fixed(3, 0), 0.0).unwrap();
    let fx = a
        .interrupt_live_step(5, ErrorObject::new("Runtime.Trap", "unreachable"), 0.0)
        .unwrap();
    assert_eq!(types(&fx.events), ["StepFailed", "StepStarted"]);
    assert!(a.live_step().is_none());
    assert!(a
        .interrupt_live_step(6, ErrorObject::new("x", "y"), 0.0)
        .is_none());
}

#[test]
fn zero_wait_does_not_suspend_and_positive_wait_does() {
    let (mut a, mut log) = fresh();
    let fx = a.wait(0, None, None, 0).unwrap();
    assert_eq!(fx.reply, Reply::Return(()));
    assert_eq!(types(&fx.events), ["WaitStarted", "WaitSucceeded"]);
    log.extend(fx.events);
    let fx = a.wait(10, None, Some("w"), 1_000).unwrap();
    assert_eq!(fx.reply, Reply::Suspend(SuspendReason::Wait));
    log.extend(fx.events);

    let mut r = Activation::new(Journal::from_events(&log), 2_000);
    let (events, timers) = r.complete_due_waits(2_000);
    assert_eq!(types(&events), ["WaitSucceeded"]);
    assert_eq!(timers[0].due_ms, 1_010);
    assert_eq!(
        r.wait(2_000, None, None, 0).unwrap().reply,
        Reply::Return(())
    );
    assert_eq!(
        r.wait(2_000, None, Some("w"), 1_000).unwrap().reply,
        Reply::Return(())
    );
    match &events[0].kind {
        EventKind::WaitSucceeded { duration_ms, .. } => assert_eq!(*duration_ms, 1_000),
        k => panic!("{k:?}"),
    }
}

#[test]
fn callbacks_keep_their_id_and_resolve_once() {
    let (mut a, mut log) = fresh();
    let fx = a
        .create_callback(0, None, Some("cb"), Some(5_000), None, || "cb-1".into())
        .unwrap();
    assert!(fx.sync);
    assert_eq!(
        fx.callback.as_ref().unwrap().timeout_deadline_ms,
        Some(5_000)
    );
    log.extend(fx.events);
    assert_eq!(
        a.await_callback("1").unwrap(),
        CallbackPoll::Pending {
            callback_id: "cb-1".into()
        }
    );
    let e = a
        .resolve_callback(10, "1", Resolution::Succeeded("\"ok\"".into()))
        .unwrap();
    assert_eq!(e.kind.event_type(), "CallbackSucceeded");
    assert!(a
        .resolve_callback(11, "1", Resolution::Succeeded("2".into()))
        .is_none());
    log.push(e);

    let mut r = Activation::new(Journal::from_events(&log), 20);
    let fx = r
        .create_callback(20, None, Some("cb"), Some(5_000), None, || {
            panic!("a replayed callback keeps its id")
        })
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(("1".into(), "cb-1".into())));
    assert_eq!(
        r.await_callback("1").unwrap(),
        CallbackPoll::Ready(Ok("\"ok\"".into()))
    );
    assert!(r.await_callback("9").is_err());
}

#[test]
fn child_context_ids_nest_and_completed_contexts_replay() {
    let (mut a, mut log) = fresh();
    let fx = a
        .context_start(0, None, Some("c"), ContextKind::RunInChildContext)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(("1".into(), ContextStart::Run)));
    log.extend(fx.events);
    let fx = a
        .step_start(1, Some("1"), None, ALO, no_retry(), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(("1.1".into(), StepStart::Run(1))));
    log.extend(fx.events);
    log.extend(a.step_succeed(2, "1.1", "7".into()).unwrap().events);
    log.extend(a.context_end(3, "1", Ok("7".into())).unwrap().events);
    // A step under a closed context is a protocol violation.
    assert!(matches!(
        a.step_start(4, Some("1"), None, ALO, no_retry(), 0.0),
        Err(Violation::Protocol(_))
    ));
    // The top-level counter is independent of the child's.
    let fx = a.step_start(4, None, None, ALO, no_retry(), 0.0).unwrap();
    assert_eq!(fx.reply, Reply::Return(("2".into(), StepStart::Run(1))));

    let mut r = Activation::new(Journal::from_events(&log), 10);
    let fx = r
        .context_start(10, None, Some("c"), ContextKind::RunInChildContext)
        .unwrap();
    assert_eq!(
        fx.reply,
        Reply::Return(("1".into(), ContextStart::Succeeded("7".into())))
    );
}

#[test]
fn durable_calls_inside_a_step_body_are_refused() {
    let (mut a, _) = fresh();
    a.step_start(0, None, None, ALO, no_retry(), 0.0).unwrap();
    assert!(matches!(
        a.wait(1, None, None, 5),
        Err(Violation::Protocol(_))
    ));
    assert!(matches!(
        a.step_succeed(1, "2", "1".into()),
        Err(Violation::Protocol(_))
    ));
}

#[test]
fn log_keys_follow_the_deterministic_position() {
    let (mut a, _) = fresh();
    let k0 = a.next_log_key();
    a.step_start(0, None, None, ALO, fixed(3, 0), 0.0).unwrap();
    let k1 = a.next_log_key();
    a.step_fail(1, "1", ErrorObject::new("E", "x"), 0.0)
        .unwrap();
    let k2 = a.next_log_key();
    assert_ne!(k1, k2, "a retry attempt logs under its own key");
    let (mut b, _) = fresh();
    assert_eq!(b.next_log_key(), k0, "the same position gives the same key");
}
