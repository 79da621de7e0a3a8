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

/// An activation over a fresh journal under `limits`.
fn limited(limits: Limits) -> Activation {
    let (mut a, _) = fresh();
    a.set_limits(limits);
    a
}

fn limit_message(r: Result<impl std::fmt::Debug, Violation>) -> String {
    match r {
        Err(Violation::Limit(m)) => m,
        other => panic!("expected a limit violation, got {other:?}"),
    }
}

/// Each count limit refuses the call that would pass it, naming the limit and its value.
#[test]
fn each_limit_refuses_the_call_over_it_and_names_the_limit() {
    type Case = (
        &'static str,
        Limits,
        fn(&mut Activation) -> Result<(), Violation>,
    );
    let cases: Vec<Case> = vec![
        (
            "max_context_depth = 3",
            Limits {
                max_context_depth: 3,
                ..Limits::default()
            },
            |a| {
                let mut parent: Option<String> = None;
                for _ in 0..4 {
                    let fx = a.context_start(
                        1,
                        parent.as_deref(),
                        None,
                        ContextKind::RunInChildContext,
                    )?;
                    let Reply::Return((id, _)) = fx.reply else {
                        unreachable!()
                    };
                    parent = Some(id);
                }
                Ok(())
            },
        ),
        (
            "max_name_bytes = 8",
            Limits {
                max_name_bytes: 8,
                ..Limits::default()
            },
            |a| {
                a.step_start(1, None, Some("12345678"), ALO, no_retry(), 0.0)?;
                a.step_succeed(1, "1", "1".into())?;
                a.step_start(1, None, Some("123456789"), ALO, no_retry(), 0.0)?;
                Ok(())
            },
        ),
        (
            "max_pending_callbacks = 2",
            Limits {
                max_pending_callbacks: 2,
                ..Limits::default()
            },
            |a| {
                let mut n = 0;
                for _ in 0..3 {
                    a.create_callback(1, None, None, None, None, || {
                        n += 1;
                        format!("cb{n}")
                    })?;
                }
                Ok(())
            },
        ),
        (
            "max_wait_ms = 1000",
            Limits {
                max_wait_ms: 1000,
                ..Limits::default()
            },
            |a| {
                a.wait(1, None, None, 1000)?;
                Ok(())
            },
        ),
        (
            "max_wait_ms = 1000",
            Limits {
                max_wait_ms: 1000,
                ..Limits::default()
            },
            |a| {
                a.wait(1, None, None, 1001)?;
                Ok(())
            },
        ),
        (
            "max_wait_ms = 1000",
            Limits {
                max_wait_ms: 1000,
                ..Limits::default()
            },
            |a| {
                a.create_callback(1, None, None, Some(5000), None, || "cb".into())?;
                Ok(())
            },
        ),
        (
            "max_history_events = 4",
            Limits {
                max_history_events: 4,
                ..Limits::default()
            },
            |a| {
                for i in 0..3u32 {
                    a.step_start(1, None, None, ALO, no_retry(), 0.0)?;
                    a.step_succeed(1, &(i + 1).to_string(), "1".into())?;
                }
                Ok(())
            },
        ),
        (
            "max_operations = 2",
            Limits {
                max_operations: 2,
                ..Limits::default()
            },
            |a| {
                for _ in 0..3 {
                    a.wait(1, None, None, 0)?;
                }
                Ok(())
            },
        ),
    ];
    for (expected, limits, run) in cases {
        let mut a = limited(limits);
        let ok_before_limit = expected == "max_wait_ms = 1000"
            && run(&mut limited(Limits {
                max_wait_ms: 1000,
                ..Limits::default()
            }))
            .is_ok();
        if ok_before_limit {
            // The wait of exactly the limit is allowed.
            continue;
        }
        let m = limit_message(run(&mut a));
        assert!(m.contains(expected), "{expected}: {m}");
    }
}

#[test]
fn a_u64_max_wait_is_refused_not_scheduled_in_1970() {
    let mut a = limited(Limits::default());
    let m = limit_message(a.wait(1_700_000_000_000, None, None, u64::MAX));
    assert!(m.contains("max_wait_ms"), "{m}");
}

#[test]
fn a_retry_without_history_room_fails_the_step_for_good_naming_the_limit() {
    let mut a = limited(Limits {
        max_history_events: 2,
        ..Limits::default()
    });
    a.step_start(1, None, None, ALO, fixed(5, 0), 0.0).unwrap();
    let fx = a
        .step_fail(2, "1", ErrorObject::new("Flaky", "boom"), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(None), "no further attempt");
    let EventKind::StepFailed {
        error,
        next_attempt_delay_ms,
        ..
    } = &fx.events[0].kind
    else {
        panic!("{:?}", fx.events)
    };
    assert_eq!(*next_attempt_delay_ms, None);
    assert_eq!(error.error_type, error_types::LIMIT_EXCEEDED);
    assert!(
        error.error_message.contains("max_history_events = 2"),
        "{error}"
    );
    assert!(error.error_message.contains("Flaky: boom"), "{error}");
}

#[test]
fn oversized_errors_are_cut_with_a_marker_and_big_data_dropped() {
    let limits = Limits {
        max_error_type_bytes: 32,
        max_error_message_bytes: 200,
        max_error_data_bytes: 10,
        ..Limits::default()
    };
    let e = limits.bound_error(ErrorObject {
        error_type: "T".repeat(40),
        error_message: "é".repeat(500),
        error_data: Some(format!("\"{}\"", "d".repeat(20))),
    });
    assert!(e.error_type.len() <= 32, "{e:?}");
    assert!(e.error_type.starts_with("TTT"), "{e:?}");
    assert!(e.error_message.len() <= 200, "{}", e.error_message.len());
    assert!(
        e.error_message.contains("[cut: 1000 bytes in all]"),
        "{e:?}"
    );
    assert!(
        e.error_message.contains("error_data dropped: 22 bytes"),
        "{e:?}"
    );
    assert_eq!(e.error_data, None);
    let small = ErrorObject {
        error_type: "T".into(),
        error_message: "m".into(),
        error_data: Some("1".into()),
    };
    assert_eq!(
        limits.bound_error(small.clone()),
        small,
        "within limits: unchanged"
    );

    // Step errors, context errors and callback failures are bounded as they are recorded.
    let mut a = limited(limits);
    a.step_start(1, None, None, ALO, no_retry(), 0.0).unwrap();
    let fx = a
        .step_fail(2, "1", ErrorObject::new("E", "x".repeat(10_000)), 0.0)
        .unwrap();
    let EventKind::StepFailed { error, .. } = &fx.events[0].kind else {
        panic!()
    };
    assert!(error.error_message.len() <= 200, "{error}");
}

#[test]
fn closing_a_context_closes_its_open_descendants() {
    let (mut a, _) = fresh();
    let start = |a: &mut Activation, parent: Option<&str>| -> String {
        let fx = a
            .context_start(1, parent, None, ContextKind::RunInChildContext)
            .unwrap();
        let Reply::Return((id, _)) = fx.reply else {
            unreachable!()
        };
        id
    };
    let outer = start(&mut a, None);
    let mid = start(&mut a, Some(&outer));
    let inner = start(&mut a, Some(&mid));
    a.context_end(2, &outer, Ok("1".into())).unwrap();
    for id in [&mid, &inner] {
        let err = a.wait(3, Some(id), None, 0).unwrap_err();
        assert!(matches!(err, Violation::Protocol(_)), "{err}");
    }
}

/// What is journaled already replays, even under a lower limit (an operator lowered a
/// flag, or the execution began before the limit existed); only new operations are refused.
#[test]
fn journaled_operations_replay_under_lower_limits() {
    let (mut a, mut log) = fresh();
    let fx = a
        .context_start(1, None, Some("a-long-name"), ContextKind::RunInChildContext)
        .unwrap();
    log.extend(fx.events);
    log.extend(a.wait(1, Some("1"), None, 5_000).unwrap().events);
    let strict = Limits {
        max_context_depth: 0,
        max_name_bytes: 4,
        max_wait_ms: 10,
        ..Limits::default()
    };
    let mut r = Activation::new(Journal::from_events(&log), 2);
    r.set_limits(strict);
    r.context_start(3, None, Some("a-long-name"), ContextKind::RunInChildContext)
        .unwrap();
    let fx = r.wait(3, Some("1"), None, 5_000).unwrap();
    assert_eq!(
        fx.reply,
        Reply::Suspend(SuspendReason::Wait),
        "the wait goes on"
    );
    let m = limit_message(r.wait(3, Some("1"), None, 5_000));
    assert!(m.contains("max_wait_ms = 10"), "a new wait is refused: {m}");
}

#[test]
fn a_delayed_start_is_an_execution_started_event_that_carries_its_start_time() {
    let mut j = Journal::from_events(&[]);
    let e = j.record(
        5,
        EventKind::ExecutionStartedAt {
            input: "{\"a\":1}".into(),
            start_ms: 1_005,
        },
    );
    assert_eq!(e.kind.event_type(), "ExecutionStarted");
    assert_eq!(e.kind.sub_type(), None);
    assert!(e.kind.op().is_none() && !e.kind.is_terminal());
    let j = Journal::from_events(&[e]);
    assert_eq!(j.start_ms(), Some(1_005));
    assert_eq!(j.input(), "{\"a\":1}");
    assert_eq!(j.last_event_type(), Some("ExecutionStarted"));
    // The guest's first operation is still `1`: the delay is no operation.
    let mut a = Activation::new(j, 1_005);
    let fx = a
        .step_start(1_006, None, Some("s"), ALO, no_retry(), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(("1".into(), StepStart::Run(1))));
    // One started at once has none.
    let (a, _) = fresh();
    assert_eq!(a.journal().start_ms(), None);
}

/// The events of an execution that ended, then `ExecutionRedriven`, folded.
fn redriven(mut log: Vec<Event>, terminal: EventKind) -> Journal {
    let mut j = Journal::from_events(&log);
    log.push(j.record(100, terminal));
    assert!(j.is_terminal());
    log.push(j.record(
        101,
        EventKind::ExecutionRedriven {
            key_id: Some("key_1".into()),
            trigger: RedriveTrigger::Request,
            from_version: 1,
            to_version: 1,
            redrive_count: 1,
        },
    ));
    let j = Journal::from_events(&log);
    assert!(!j.is_terminal(), "a redriven execution runs again");
    assert_eq!(j.last_event_type(), Some("ExecutionRedriven"));
    j
}

#[test]
fn a_redrive_replays_what_succeeded_and_runs_what_failed_again_from_attempt_one() {
    // Step "ok" succeeded, step "bad" failed for good after 2 attempts: after the redrive
    // "ok" replays and "bad" starts again at attempt 1 with its whole budget.
    let (mut a, mut log) = fresh();
    let fx = a
        .step_start(1, None, Some("ok"), ALO, no_retry(), 0.0)
        .unwrap();
    log.extend(fx.events);
    log.extend(a.step_succeed(2, "1", "1".into()).unwrap().events);
    let fx = a
        .step_start(3, None, Some("bad"), ALO, fixed(2, 0), 0.0)
        .unwrap();
    log.extend(fx.events);
    let fx = a
        .step_fail(4, "2", ErrorObject::new("E", "1st"), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(Some(2)));
    log.extend(fx.events);
    let fx = a
        .step_fail(5, "2", ErrorObject::new("E", "2nd"), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(None));
    log.extend(fx.events);
    let error = ErrorObject::new("E", "2nd");
    let j = redriven(log, EventKind::ExecutionFailed { error });

    let mut again = Activation::new(j, 200);
    let fx = again
        .step_start(201, None, Some("ok"), ALO, no_retry(), 0.0)
        .unwrap();
    assert_eq!(
        fx.reply,
        Reply::Return(("1".into(), StepStart::Succeeded("1".into())))
    );
    let fx = again
        .step_start(202, None, Some("bad"), ALO, fixed(2, 0), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(("2".into(), StepStart::Run(1))));
    assert_eq!(types(&fx.events), ["StepStarted"]);
    // Its budget is whole again: the first failure retries.
    let fx = again
        .step_fail(203, "2", ErrorObject::new("E", "again"), 0.0)
        .unwrap();
    assert_eq!(fx.reply, Reply::Return(Some(2)));
}

#[test]
fn a_redrive_forgets_each_kind_of_failure_and_keeps_what_is_under_way() {
    // (what the journal holds before the end, the end, the operation, what it is after)
    type Build = fn(&mut Activation, &mut Vec<Event>);
    let failed = |e: &str| EventKind::ExecutionFailed {
        error: ErrorObject::new(e, "m"),
    };
    let mut cases: Vec<(&str, Build, EventKind, &str, Option<&str>)> = vec![
        (
            "a step waiting for its retry when the execution timed out",
            |a, log| {
                log.extend(
                    a.step_start(1, None, None, ALO, fixed(3, 10_000), 0.0)
                        .unwrap()
                        .events,
                );
                log.extend(
                    a.step_fail(2, "1", ErrorObject::new("E", "m"), 0.0)
                        .unwrap()
                        .events,
                );
            },
            EventKind::ExecutionTimedOut {
                error: ErrorObject::new("Execution.Timeout", "m"),
            },
            "1",
            None,
        ),
        (
            "a wait not over when the execution was stopped",
            |a, log| log.extend(a.wait(1, None, None, 60_000).unwrap().events),
            EventKind::ExecutionStopped {
                error: ErrorObject::new("Execution.Stopped", "m"),
            },
            "1",
            Some("wait"),
        ),
        (
            "a callback that failed",
            |a, log| {
                log.extend(
                    a.create_callback(1, None, None, None, None, || "cb1".into())
                        .unwrap()
                        .events,
                );
                let failed = Resolution::Failed(ErrorObject::new("E", "m"));
                log.push(a.resolve_callback(2, "1", failed).unwrap());
            },
            failed("E"),
            "1",
            None,
        ),
        (
            "a pending callback when the execution was stopped",
            |a, log| {
                log.extend(
                    a.create_callback(1, None, None, None, None, || "cb1".into())
                        .unwrap()
                        .events,
                );
            },
            EventKind::ExecutionStopped {
                error: ErrorObject::new("Execution.Stopped", "m"),
            },
            "1",
            Some("callback"),
        ),
        (
            "a child context that failed: open again",
            |a, log| {
                let kind = ContextKind::RunInChildContext;
                log.extend(a.context_start(1, None, None, kind).unwrap().events);
                let e = ErrorObject::new("E", "m");
                log.extend(a.context_end(2, "1", Err(e)).unwrap().events);
            },
            failed("E"),
            "1",
            Some("open context"),
        ),
        (
            "a wait-for-callback that failed: forgotten with its callback",
            |a, log| {
                let kind = ContextKind::WaitForCallback;
                log.extend(a.context_start(1, None, None, kind).unwrap().events);
                log.extend(
                    a.create_callback(2, Some("1"), None, None, None, || "cb1".into())
                        .unwrap()
                        .events,
                );
                let e = ErrorObject::new("E", "m");
                log.push(
                    a.resolve_callback(3, "1.1", Resolution::TimedOut(e.clone()))
                        .unwrap(),
                );
                log.extend(a.context_end(4, "1", Err(e)).unwrap().events);
            },
            failed("E"),
            "1",
            None,
        ),
    ];
    cases.push((
        "a step failure the guest caught and went on from: it replays as that failure",
        |a, log| {
            log.extend(
                a.step_start(1, None, None, ALO, no_retry(), 0.0)
                    .unwrap()
                    .events,
            );
            log.extend(
                a.step_fail(2, "1", ErrorObject::new("E", "m"), 0.0)
                    .unwrap()
                    .events,
            );
            log.extend(
                a.step_start(3, None, None, ALO, no_retry(), 0.0)
                    .unwrap()
                    .events,
            );
            log.extend(
                a.step_fail(4, "2", ErrorObject::new("E", "m"), 0.0)
                    .unwrap()
                    .events,
            );
        },
        failed("E"),
        "1",
        Some("failed step"),
    ));
    for (what, build, end, id, after) in cases {
        let (mut a, mut log) = fresh();
        build(&mut a, &mut log);
        let j = redriven(log, end);
        let state = j.op(id).map(|op| match &op.state {
            OpState::Wait { done: false, .. } => "wait",
            OpState::Callback { outcome: None, .. } => "callback",
            OpState::Context { outcome: None } => "open context",
            OpState::Step(StepProgress::Failed { .. }) => "failed step",
            other => panic!("{what}: unexpected {other:?}"),
        });
        assert_eq!(state, after, "{what}");
        if what.starts_with("a wait-for-callback") {
            assert!(
                j.op("1.1").is_none(),
                "{what}: its callback is forgotten too"
            );
        }
        if what.starts_with("a step failure the guest caught") {
            assert!(
                j.op("2").is_none(),
                "{what}: the failure after it runs again"
            );
        }
        let pending = usize::from(after == Some("callback"));
        assert_eq!(j.pending_callback_count(), pending, "{what}");
    }
}

#[test]
fn an_operation_a_redrive_runs_again_logs_at_new_positions_and_the_rest_at_the_same() {
    let (mut a, mut log) = fresh();
    log.extend(
        a.step_start(1, None, None, ALO, no_retry(), 0.0)
            .unwrap()
            .events,
    );
    log.extend(a.step_succeed(2, "1", "1".into()).unwrap().events);
    log.extend(
        a.step_start(3, None, None, ALO, no_retry(), 0.0)
            .unwrap()
            .events,
    );
    let first = a.next_log_key();
    log.extend(
        a.step_fail(4, "2", ErrorObject::new("E", "m"), 0.0)
            .unwrap()
            .events,
    );
    let after_first = a.next_log_key();
    let error = ErrorObject::new("E", "m");
    let mut again = Activation::new(redriven(log, EventKind::ExecutionFailed { error }), 9);
    again
        .step_start(10, None, None, ALO, no_retry(), 0.0)
        .unwrap();
    let replayed = again.next_log_key();
    assert_eq!(replayed, "1#0#0", "a replayed operation logs where it did");
    again
        .step_start(11, None, None, ALO, no_retry(), 0.0)
        .unwrap();
    let rerun = again.next_log_key();
    assert_eq!((first.as_str(), rerun.as_str()), ("2#1#0", "2~1#1#0"));
    assert_ne!(after_first, again.next_log_key());
}

/// What a wait strategy decides after a check, in the `wait_for_condition` table.
#[derive(Clone, Copy)]
enum Decide {
    Again(u64),
    Stop,
    GiveUp,
}

/// Drive one `wait_for_condition` (integer state) to its end over as many activations as
/// it suspends for, each starting when the pending timer is due; returns the history in a
/// compact form ("start 1", "ok 1 +2000", "done 3", "fail E", "crash"), the guest's result
/// and the number of activations.
fn drive_condition(
    initial: i64,
    check: fn(i64) -> Result<i64, &'static str>,
    decide: fn(i64, u32) -> Decide,
    limits: Limits,
    crash_at_check: Option<u32>,
) -> (Vec<String>, Result<i64, String>, u32) {
    let (_, mut log) = fresh();
    let mut now = 1;
    let mut crashed = false;
    for activation in 1..=50 {
        let mut a = Activation::new(Journal::from_events(&log), now);
        a.set_limits(limits.clone());
        let fx = a.condition_start(now, None, Some("poll")).unwrap();
        log.extend(fx.events.clone());
        let (id, mut start) = match fx.reply {
            Reply::Suspend(_) => {
                now = fx.timers[0].due_ms;
                continue;
            }
            Reply::Return(r) => r,
        };
        let result = loop {
            let (attempt, state) = match start {
                ConditionStart::Succeeded(v) => break Ok(v.parse().unwrap()),
                ConditionStart::Failed(e) => break Err(e.error_type),
                ConditionStart::Check { attempt, state } => (attempt, state),
            };
            if crash_at_check == Some(attempt) && !crashed {
                crashed = true;
                break Err("crash".into());
            }
            let state: i64 = state.map_or(initial, |s| s.parse().unwrap());
            now += 1;
            let next = match check(state) {
                Err(e) => {
                    let fx = a
                        .condition_fail(now, &id, ErrorObject::new(e, "check"))
                        .unwrap();
                    log.extend(fx.events);
                    break Err(e.into());
                }
                Ok(next) => next,
            };
            match decide(next, attempt) {
                Decide::Stop => {
                    let fx = a.condition_succeed(now, &id, next.to_string()).unwrap();
                    assert!(fx.sync, "the final state is fsynced");
                    log.extend(fx.events);
                    break Ok(next);
                }
                Decide::GiveUp => {
                    let e = ErrorObject::new("WaitForCondition.MaxAttemptsExceeded", "gave up");
                    log.extend(a.condition_fail(now, &id, e).unwrap().events);
                    break Err("WaitForCondition.MaxAttemptsExceeded".into());
                }
                Decide::Again(ms) => {
                    let fx = a
                        .condition_continue(now, &id, next.to_string(), ms)
                        .unwrap();
                    assert!(
                        fx.sync,
                        "a continue is fsynced before the guest is unloaded"
                    );
                    log.extend(fx.events.clone());
                    match fx.reply {
                        Reply::Return(Ok(n)) => {
                            start = ConditionStart::Check {
                                attempt: n,
                                state: Some(next.to_string()),
                            }
                        }
                        Reply::Return(Err(e)) => break Err(e.error_type),
                        Reply::Suspend(_) => {
                            assert_eq!(fx.timers[0].due_ms, now + ms, "the timer is the delay");
                            now += ms;
                            break Err("suspended".into());
                        }
                    }
                }
            }
        };
        match result {
            Err(s) if s == "suspended" || s == "crash" => {}
            r => {
                // The end replays as recorded and records nothing more.
                let mut replay = Activation::new(Journal::from_events(&log), now + 1);
                let fx = replay.condition_start(now + 1, None, Some("poll")).unwrap();
                assert!(fx.events.is_empty(), "a finished condition replays");
                let compact = log[1..]
                    .iter()
                    .map(|e| {
                        assert_eq!(e.kind.sub_type(), Some("WaitForCondition"));
                        match &e.kind {
                            EventKind::ConditionStarted { attempt, .. } => {
                                format!("start {attempt}")
                            }
                            EventKind::ConditionSucceeded {
                                state,
                                next_attempt_delay_ms: Some(d),
                                ..
                            } => format!("ok {state} +{d}"),
                            EventKind::ConditionSucceeded { state, .. } => format!("done {state}"),
                            EventKind::ConditionFailed { error, .. } => {
                                format!("fail {}", error.error_type)
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    })
                    .collect();
                return (compact, r, activation);
            }
        }
    }
    panic!("no end in 50 activations");
}

#[test]
fn wait_for_condition_cases() {
    fn inc(s: i64) -> Result<i64, &'static str> {
        Ok(s + 1)
    }
    fn same(s: i64) -> Result<i64, &'static str> {
        Ok(s)
    }
    fn raise(_: i64) -> Result<i64, &'static str> {
        Err("CheckError")
    }
    let limits = Limits::default();
    type Case = (
        &'static str,
        i64,
        fn(i64) -> Result<i64, &'static str>,
        fn(i64, u32) -> Decide,
        Option<u32>,
        &'static [&'static str],
        Result<i64, &'static str>,
        u32,
    );
    let cases: &[Case] = &[
        (
            "polls until 3 (6-1, 6-5: the delay is on each continue)",
            0,
            inc,
            |s, _| {
                if s < 3 {
                    Decide::Again(2000)
                } else {
                    Decide::Stop
                }
            },
            None,
            &[
                "start 1",
                "ok 1 +2000",
                "start 2",
                "ok 2 +2000",
                "start 3",
                "done 3",
            ],
            Ok(3),
            3,
        ),
        (
            "already met: one check, no suspension (6-2)",
            5,
            same,
            |_, _| Decide::Stop,
            None,
            &["start 1", "done 5"],
            Ok(5),
            1,
        ),
        (
            "the initial state seeds the first check (6-4)",
            5,
            inc,
            |s, _| {
                if s < 8 {
                    Decide::Again(1000)
                } else {
                    Decide::Stop
                }
            },
            None,
            &[
                "start 1",
                "ok 6 +1000",
                "start 2",
                "ok 7 +1000",
                "start 3",
                "done 8",
            ],
            Ok(8),
            3,
        ),
        (
            "the strategy gives up at its max attempts (6-6)",
            0,
            inc,
            |_, n| {
                if n < 3 {
                    Decide::Again(10)
                } else {
                    Decide::GiveUp
                }
            },
            None,
            &[
                "start 1",
                "ok 1 +10",
                "start 2",
                "ok 2 +10",
                "start 3",
                "fail WaitForCondition.MaxAttemptsExceeded",
            ],
            Err("WaitForCondition.MaxAttemptsExceeded"),
            3,
        ),
        (
            "the check raises: failed for good, no retry (6-7)",
            0,
            raise,
            |_, _| Decide::Stop,
            None,
            &["start 1", "fail CheckError"],
            Err("CheckError"),
            1,
        ),
        (
            "a zero delay checks again in the same activation",
            0,
            inc,
            |s, _| {
                if s < 3 {
                    Decide::Again(0)
                } else {
                    Decide::Stop
                }
            },
            None,
            &[
                "start 1", "ok 1 +0", "start 2", "ok 2 +0", "start 3", "done 3",
            ],
            Ok(3),
            1,
        ),
        (
            "a crash mid-check runs that check again on the state before it",
            0,
            inc,
            |s, _| {
                if s < 3 {
                    Decide::Again(5)
                } else {
                    Decide::Stop
                }
            },
            Some(2),
            &[
                "start 1", "ok 1 +5", "start 2", "ok 2 +5", "start 3", "done 3",
            ],
            Ok(3),
            4,
        ),
    ];
    for (name, initial, check, decide, crash, want, result, activations) in cases {
        let (got, r, n) = drive_condition(*initial, *check, *decide, limits.clone(), *crash);
        assert_eq!(got, *want, "{name}");
        assert_eq!(r, result.map_err(str::to_string), "{name}");
        assert_eq!(n, *activations, "{name}: activations");
    }
}

#[test]
fn a_condition_that_never_stops_fails_at_max_condition_checks() {
    let limits = Limits {
        max_condition_checks: 3,
        ..Limits::default()
    };
    let (got, r, _) = drive_condition(0, |s| Ok(s + 1), |_, _| Decide::Again(1), limits, None);
    assert_eq!(
        got,
        [
            "start 1",
            "ok 1 +1",
            "start 2",
            "ok 2 +1",
            "start 3",
            "fail Durable.LimitExceeded"
        ]
    );
    assert_eq!(r, Err(error_types::LIMIT_EXCEEDED.to_string()));
}

#[test]
fn a_condition_is_its_own_kind_and_its_calls_are_checked() {
    let (mut a, mut log) = fresh();
    let fx = a.condition_start(1, None, None).unwrap();
    log.extend(fx.events);
    // Step calls cannot end a check, nor can durable calls run inside it.
    assert!(matches!(
        a.step_succeed(2, "1", "1".into()),
        Err(Violation::Protocol(_))
    ));
    assert!(matches!(
        a.wait(2, None, None, 5),
        Err(Violation::Protocol(_))
    ));
    assert!(matches!(
        a.condition_continue(2, "1", "1".into(), u64::MAX),
        Err(Violation::Limit(_))
    ));
    log.extend(a.condition_continue(2, "1", "1".into(), 10).unwrap().events);
    // A step now where the journal has a condition diverges.
    let mut r = Activation::new(Journal::from_events(&log), 20);
    let err = r
        .step_start(20, None, None, ALO, no_retry(), 0.0)
        .unwrap_err();
    assert!(matches!(err, Violation::NonDeterministic(_)), "{err}");
    assert!(err.to_string().contains("wait-for-condition"), "{err}");
    // Its pending check is a live timer; a redrive keeps it with its state.
    let j = redriven(
        log,
        EventKind::ExecutionFailed {
            error: ErrorObject::new("E", "m"),
        },
    );
    assert_eq!(j.live_timers(), [(12, "1".to_string())]);
    let mut r = Activation::new(j, 12);
    let fx = r.condition_start(12, None, None).unwrap();
    assert_eq!(
        fx.reply,
        Reply::Return((
            "1".into(),
            ConditionStart::Check {
                attempt: 2,
                state: Some("1".into())
            }
        ))
    );
}

#[test]
fn payloads_are_checked_for_size_then_json() {
    let cases: [(&str, usize, Option<&str>); 5] = [
        (r#"{"a":1}"#, 7, None),
        (r#"{"a":1}"#, 6, Some(error_types::PAYLOAD_TOO_LARGE)),
        ("not json", 100, Some(error_types::INVALID_PAYLOAD)),
        ("", 100, Some(error_types::INVALID_PAYLOAD)),
        ("null", 4, None),
    ];
    for (value, max, want) in cases {
        let got = check_payload("output", value, max).err();
        assert_eq!(
            got.as_ref().map(|e| e.error_type.as_str()),
            want,
            "{value:?}"
        );
        if let Some(e) = got {
            assert!(e.error_message.starts_with("the output is"), "{e}");
        }
    }
}

#[test]
fn an_invoke_starts_its_callee_once_suspends_and_replays_its_outcome() {
    let (mut a, mut log) = fresh();
    let InvokePoll::New(op) = a.invoke_position(None, Some("pay")).unwrap() else {
        panic!("a new invoke")
    };
    let start = |callee| InvokeStart {
        function: "payment".into(),
        input: "1".into(),
        tenant_id: None,
        callee,
    };
    let fx = a.invoke_started(1, op, start(Ok(("C1".into(), 3))));
    assert!(fx.sync, "the start is fsynced with the callee's record");
    assert_eq!(fx.reply, Reply::Suspend(SuspendReason::Invoke));
    log.extend(fx.events);
    assert_eq!(a.journal().pending_invokes(), [("1".into(), "C1".into())]);

    // Replayed before the callee ended: the same callee, never a second start.
    let mut replay = Activation::new(Journal::from_events(&log), 5);
    let poll = replay.invoke_position(None, Some("pay")).unwrap();
    assert!(matches!(poll, InvokePoll::Pending { ref callee, .. } if callee == "C1"));
    log.push(
        replay
            .invoke_ended(6, "1", InvokeEnd::Succeeded("\"ok\"".into()))
            .unwrap(),
    );
    assert!(replay
        .invoke_ended(7, "1", InvokeEnd::Succeeded("2".into()))
        .is_none());

    let mut again = Activation::new(Journal::from_events(&log), 10);
    assert_eq!(
        again.invoke_position(None, Some("pay")).unwrap(),
        InvokePoll::Ready(Ok("\"ok\"".into()))
    );
    assert!(again.journal().pending_invokes().is_empty());
    assert_eq!(
        types(&log),
        [
            "ExecutionStarted",
            "ChainedInvokeStarted",
            "ChainedInvokeSucceeded"
        ]
    );
    assert_eq!(log[1].kind.sub_type(), Some("ChainedInvoke"));
    // Another kind at its position is a divergence.
    let mut other = Activation::new(Journal::from_events(&log), 10);
    let err = other.wait(11, None, Some("pay"), 5).unwrap_err();
    assert!(matches!(err, Violation::NonDeterministic(_)), "{err:?}");
}

#[test]
fn an_invoke_whose_callee_never_started_fails_at_once_and_a_redrive_runs_failed_ones_again() {
    let (mut a, mut log) = fresh();
    let InvokePoll::New(op) = a.invoke_position(None, None).unwrap() else {
        panic!("a new invoke")
    };
    let error = ErrorObject::new(error_types::INVOKE_FUNCTION_NOT_FOUND, "no such function");
    let fx = a.invoke_started(
        1,
        op,
        InvokeStart {
            function: "nope".into(),
            input: "null".into(),
            tenant_id: None,
            callee: Err(error.clone()),
        },
    );
    assert_eq!(
        fx.reply,
        Reply::Return(InvokePoll::Ready(Err(error.clone())))
    );
    log.extend(fx.events);
    assert_eq!(
        types(&log),
        [
            "ExecutionStarted",
            "ChainedInvokeStarted",
            "ChainedInvokeFailed"
        ]
    );
    assert!(Journal::from_events(&log).pending_invokes().is_empty());
    let error = ErrorObject::new("InvokeError", "it failed");
    let journal = redriven(log, EventKind::ExecutionFailed { error });
    let mut again = Activation::new(journal, 200);
    assert!(matches!(
        again.invoke_position(None, None).unwrap(),
        InvokePoll::New(_)
    ));
}
