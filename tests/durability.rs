//! Crash and suspension tests: SIGKILL the real server mid-step and mid-wait, restart it on
//! the same sled directory, and check that every execution resumes from its last
//! checkpoint, that no checkpointed step runs twice, that timers and callbacks survive,
//! and that under concurrent load every event a reader saw comes back from the write-ahead
//! log.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn crash_server(mock: &Mock) -> Server {
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    s.deploy("conf", "conformance_guest");
    s
}

#[test]
fn kill9_while_a_step_runs_resumes_without_rerunning_checkpointed_steps() {
    let mock = Mock::start();
    let mut s = crash_server(&mock);
    let id = s.invoke("conf", &scenario("crash-probe", json!({"url": mock.url()})));
    // "before" is checkpointed; "slow" is in flight, held by the mock.
    mock.wait_count("/slow", 1);
    assert_eq!(mock.count("/hit/before"), 1);
    s.kill9();
    mock.release_slow();
    s.crash_and_restart();

    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"before": 200, "slow": 200, "after": 200})
    );
    assert_eq!(
        mock.count("/hit/before"),
        1,
        "a checkpointed step never runs again"
    );
    assert_eq!(
        mock.count("/slow"),
        2,
        "the interrupted at-least-once step ran again"
    );
    assert_eq!(mock.count("/hit/after"), 1);
    let h = s.history(&id);
    let restarted = h.iter().find(|e| {
        e["event_type"] == "InvocationCompleted"
            && e["details"]["error"]["error_type"] == "Runtime.HostRestarted"
    });
    assert!(
        restarted.is_some(),
        "the cut-short activation is visible: {h:#?}"
    );
    let before_done = h
        .iter()
        .filter(|e| e["event_type"] == "StepSucceeded" && e["name"] == "before")
        .count();
    assert_eq!(before_done, 1);
}

#[test]
fn kill9_while_suspended_keeps_the_timer_and_finishes_after_restart() {
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let id = s.invoke("conf", &scenario("wait", json!({"ms": 600})));
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
    s.kill9();
    // The timer comes due while the host is down.
    std::thread::sleep(Duration::from_millis(800));
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "waited");
    let t = types(&s.history(&id));
    assert_eq!(
        t,
        [
            "ExecutionStarted",
            "WaitStarted",
            "InvocationCompleted",
            "WaitSucceeded",
            "InvocationCompleted",
            "ExecutionSucceeded"
        ]
    );
}

#[test]
fn a_pending_callback_survives_kill9_and_completes_after_restart() {
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let id = s.invoke("conf", &scenario("callback", json!({"name": "approve"})));
    let cb = s.callback_ids(&id, 1).remove(0);
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    s.crash_and_restart();
    assert_eq!(s.execution(&id)["status"], "suspended");
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!({"ok": 1}));
    assert_eq!(st, 200, "{v}");
    let ex = s.wait_done(&id);
    assert_eq!(ex["output"], json!({"result": {"ok": 1}}));
}

#[test]
fn a_completed_callback_is_not_lost_when_the_host_dies_before_the_wake() {
    // Complete, then kill at once: the completion was fsynced before the 200, so the
    // restarted host must find it and resume the execution.
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    let id = s.invoke(
        "conf",
        &scenario("callback-then-wait", json!({"wait_ms": 1_500})),
    );
    let cb = s.callback_ids(&id, 1).remove(0);
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    let (st, _) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!("yes"));
    assert_eq!(st, 200);
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "yes");
}

/// Run `at-most-once-probe`, SIGKILL the host while its step body is in flight, restart.
fn kill9_inside_at_most_once_step(max_attempts: u32, delay_ms: u64) -> (Mock, Server, String) {
    let mock = Mock::start();
    let mut s = crash_server(&mock);
    let id = s.invoke(
        "conf",
        &scenario(
            "at-most-once-probe",
            json!({"url": mock.url(), "max_attempts": max_attempts, "delay_ms": delay_ms}),
        ),
    );
    mock.wait_count("/slow", 1);
    s.kill9();
    mock.release_slow();
    s.crash_and_restart();
    (mock, s, id)
}

#[test]
fn kill9_inside_an_at_most_once_step_fails_it_as_interrupted_and_never_reruns_it() {
    let (mock, s, id) = kill9_inside_at_most_once_step(1, 100);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["error"]["error_type"], "StepInterrupted", "{ex}");
    assert_eq!(
        mock.count("/slow"),
        1,
        "at most once: the body never ran again"
    );
    let h = s.history(&id);
    let failed = h
        .iter()
        .find(|e| e["event_type"] == "StepFailed")
        .expect("StepFailed");
    assert_eq!(failed["name"], "guarded");
    assert_eq!(failed["details"]["attempt"], 1);
    assert!(failed["details"].get("next_attempt_delay_ms").is_none());
}

#[test]
fn an_interrupted_at_most_once_step_is_retried_by_its_policy() {
    let (mock, s, id) = kill9_inside_at_most_once_step(2, 200);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], 200);
    assert_eq!(mock.count("/slow"), 2, "one attempt per retry");
    let h = s.history(&id);
    let f = h.iter().find(|e| e["event_type"] == "StepFailed").unwrap();
    assert_eq!(f["details"]["error"]["error_type"], "StepInterrupted");
    assert_eq!(f["details"]["next_attempt_delay_ms"], 200);
    let ok = h
        .iter()
        .find(|e| e["event_type"] == "StepSucceeded")
        .unwrap();
    assert_eq!(ok["details"]["attempt"], 2);
}

#[test]
fn retries_suspend_between_attempts_and_exhaust_after_max_attempts() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let id = s.invoke(
        "conf",
        &scenario(
            "step-retry",
            json!({"fail_times": 2, "max_attempts": 3, "delay_ms": 700}),
        ),
    );
    // Between attempts nothing is resident.
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "Operation succeeded");
    let h = s.history(&id);
    let attempts: Vec<(String, u64)> = h
        .iter()
        .filter(|e| e["sub_type"] == "Step" && e["event_type"] != "StepStarted")
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_string(),
                e["details"]["attempt"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("StepFailed".to_string(), 1),
            ("StepFailed".to_string(), 2),
            ("StepSucceeded".to_string(), 3)
        ]
    );
    for f in h.iter().filter(|e| e["event_type"] == "StepFailed") {
        assert_eq!(f["details"]["next_attempt_delay_ms"], 700);
    }
    let ics = types(&h)
        .iter()
        .filter(|t| *t == "InvocationCompleted")
        .count();
    assert_eq!(ics, 3, "one activation per attempt");

    let id = s.invoke(
        "conf",
        &scenario(
            "step-retry",
            json!({"fail_times": 9, "max_attempts": 3, "delay_ms": 50}),
        ),
    );
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed");
    assert_eq!(ex["error"]["error_type"], "TransientError");
    assert_eq!(ex["error"]["error_message"], "attempt 3 failed");
    let fails = s
        .history(&id)
        .iter()
        .filter(|e| e["event_type"] == "StepFailed")
        .count();
    assert_eq!(fails, 3);
}

#[test]
fn executions_running_at_a_crash_with_only_their_start_recorded_run_after_restart() {
    // Many invocations, then a kill before most of them ran: all finish after restart.
    let mut s = Server::start_with(&["--max-resident", "1"]);
    s.deploy("conf", "conformance_guest");
    let ids: Vec<String> = (0..20)
        .map(|i| {
            s.invoke(
                "conf",
                &scenario("step-basic", json!({"name": format!("n{i}")})),
            )
        })
        .collect();
    s.crash_and_restart();
    for (i, id) in ids.iter().enumerate() {
        let ex = s.wait_done(id);
        assert_eq!(ex["status"], "succeeded", "{ex}");
        assert_eq!(ex["output"], format!("Hello, n{i}!"));
        let steps = s
            .history(id)
            .iter()
            .filter(|e| e["event_type"] == "StepSucceeded")
            .count();
        assert_eq!(steps, 1);
    }
}

#[test]
fn stop_ends_a_suspended_execution_and_its_callbacks_refuse_completion() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let waiting = s.invoke("conf", &scenario("wait", json!({"ms": 60_000})));
    s.wait_status(&waiting, &["suspended"], Duration::from_secs(30));
    // Its wait; its execution timeout (a year away) waits on disk, beyond the horizon.
    assert_eq!(s.metric("durable_timers"), 1.0);
    let (st, v) = s.post(&format!("/v1/executions/{waiting}/stop"), &json!(null));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "stopped");
    let h = s.history(&waiting);
    let last = h.last().unwrap();
    assert_eq!(last["event_type"], "ExecutionStopped");
    assert_eq!(last["details"]["error"]["error_type"], "Execution.Stopped");
    assert_eq!(s.metric("durable_timers"), 0.0, "its timers are dropped");
    let (st, v) = s.post(&format!("/v1/executions/{waiting}/stop"), &json!(null));
    assert_eq!(st, 409, "{v}");

    let cb_exec = s.invoke("conf", &scenario("callback", json!({})));
    let cb = s.callback_ids(&cb_exec, 1).remove(0);
    s.wait_status(&cb_exec, &["suspended"], Duration::from_secs(30));
    let (st, _) = s.post(&format!("/v1/executions/{cb_exec}/stop"), &json!(null));
    assert_eq!(st, 200);
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!(1));
    assert_eq!(
        st, 409,
        "a stopped execution's callback refuses completion: {v}"
    );
    assert_eq!(s.metric("durable_executions{status=\"stopped\"}"), 2.0);
    let (st, _) = s.post(
        "/v1/executions/01ARZ3NDEKTSV4RRFFQ69G5FAV/stop",
        &json!(null),
    );
    assert_eq!(st, 404);
}

#[test]
fn stop_interrupts_a_resident_guest() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let id = s.invoke("conf", &scenario("loop-forever", json!({})));
    // Resident and spinning.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.metric("durable_resident_instances") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never became resident"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (st, v) = s.post(&format!("/v1/executions/{id}/stop"), &json!(null));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "stopped");
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
    let t = types(&s.history(&id));
    assert_eq!(
        t,
        [
            "ExecutionStarted",
            "InvocationCompleted",
            "ExecutionStopped"
        ]
    );
}

#[test]
fn timers_beyond_the_memory_horizon_fire_on_time_also_across_a_crash() {
    // A 2 s horizon: a 5 s wait is on disk only when it starts, and is loaded as it nears.
    let mut s = Server::start_with(&["--timer-horizon-secs", "2"]);
    s.deploy("conf", "conformance_guest");
    let started = std::time::Instant::now();
    let a = s.invoke("conf", &scenario("wait", json!({"ms": 5_000})));
    let b = s.invoke("conf", &scenario("wait", json!({"ms": 6_000})));
    s.wait_status(&a, &["suspended"], Duration::from_secs(30));
    s.wait_status(&b, &["suspended"], Duration::from_secs(30));
    assert_eq!(s.metric("durable_timers"), 0.0, "both beyond the horizon");
    assert_eq!(s.wait_done(&a)["status"], "succeeded");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(took < Duration::from_secs(9), "fired late: {took:?}");
    // The other one, across a crash: recovery loads the window again.
    s.crash_and_restart();
    assert_eq!(s.wait_done(&b)["status"], "succeeded");
    assert!(started.elapsed() < Duration::from_secs(12));
}

#[test]
fn kill9_under_concurrent_load_keeps_every_event_a_reader_saw_and_each_step_succeeds_once() {
    // Many executions checkpointing at once (group commit through the write-ahead log);
    // SIGKILL mid-flight. Anything a reader saw before the crash was on disk, so it must
    // come back unchanged; every step must end up succeeded exactly once.
    let mut s = Server::start();
    s.deploy("conf", "conformance_guest");
    const STEPS: usize = 100;
    let ids: Vec<String> = (0..16)
        .map(|_| s.invoke("conf", &scenario("steps", json!({"count": STEPS}))))
        .collect();
    let succeeded = |h: &[serde_json::Value]| {
        h.iter()
            .filter(|e| e["event_type"] == "StepSucceeded")
            .count()
    };
    s.wait_history(&ids[0], |h| succeeded(h) >= 20);
    let seen: Vec<Vec<serde_json::Value>> = ids.iter().map(|id| s.history(id)).collect();
    s.kill9();
    let unfinished = seen.iter().filter(|h| succeeded(h) < STEPS).count();
    assert!(unfinished > 0, "every execution finished before the kill");
    let wal = s.data.path().join("db").join("wal");
    let logged = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(logged > 0, "nothing was left for recovery to replay");

    s.crash_and_restart();
    for (id, before) in ids.iter().zip(&seen) {
        let ex = s.wait_done(id);
        assert_eq!(ex["status"], "succeeded", "{ex}");
        assert_eq!(ex["output"], json!(STEPS));
        let after = s.history(id);
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "an event a reader saw before the crash changed or vanished"
        );
        for (i, e) in after.iter().enumerate() {
            assert_eq!(
                e["event_id"],
                json!(i + 1),
                "history of {id} has a gap: {e}"
            );
        }
        let mut ids_done: Vec<String> = after
            .iter()
            .filter(|e| e["event_type"] == "StepSucceeded")
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        let total = ids_done.len();
        ids_done.sort();
        ids_done.dedup();
        assert_eq!((total, ids_done.len()), (STEPS, STEPS), "{id}");
    }
}
