//! hello under the local test runner: the host's history, the seed output, each log line
//! once, and the one-second wait skipped.

use std::time::{Duration, Instant};

use durable_sdk::testing::{Runner, Status};
use serde_json::json;

#[test]
fn hello_waits_one_second_of_virtual_time_and_records_the_hosts_history() {
    let started = Instant::now();
    let mut run = Runner::new(super::handler);
    let status = run.invoke(json!({}));
    let took = started.elapsed();

    assert_eq!(
        status,
        Status::Succeeded(json!({"statusCode": 200, "body": "\"Hello from Durable Lambda!\""}))
    );
    // The wait was skipped: a second on the manual clock, far less in real time.
    assert_eq!(run.elapsed(), Duration::from_secs(1));
    assert!(took < Duration::from_millis(500), "took {took:?}");
    // The same events, in the same order, as the host records (tests/examples.rs).
    assert_eq!(
        run.shape(),
        [
            ("ExecutionStarted", None, None),
            ("StepStarted", Some("1"), Some("Step #1")),
            ("StepSucceeded", Some("1"), Some("Step #1")),
            ("WaitStarted", Some("2"), None),
            ("InvocationCompleted", None, None),
            ("WaitSucceeded", Some("2"), None),
            ("StepStarted", Some("3"), Some("Step #2")),
            ("StepSucceeded", Some("3"), Some("Step #2")),
            ("InvocationCompleted", None, None),
            ("ExecutionSucceeded", None, None),
        ]
    );
    assert_eq!(run.history()[3].kind.sub_type(), Some("Wait"));
    assert_eq!(run.activations(), 2);
    // Replay-aware logging: each line once, although the first part ran twice (and once
    // more in each determinism check).
    let logs: Vec<&str> = run.logs().iter().map(|l| l.message.as_str()).collect();
    assert_eq!(logs, ["Hello from step #1", "Waited for 1 second"]);
    assert_eq!(run.logs()[0].operation_id.as_deref(), Some("1"));
}

#[test]
fn hello_fails_when_its_second_step_fails_for_good() {
    let mut run = Runner::new(super::handler);
    run.fail_step("Step #2", durable_sdk::Error::new("Broken", "on purpose"));
    let Status::Failed(e) = run.invoke(json!(null)) else {
        panic!("{:?}", run.status());
    };
    assert_eq!(
        (e.error_type.as_str(), e.error_message.as_str()),
        ("Broken", "on purpose")
    );
    // The SDK's default policy: 6 attempts, delays skipped.
    let failed = run.shape().iter().filter(|s| s.0 == "StepFailed").count();
    assert_eq!(failed, 6);
    assert!(run.elapsed() > Duration::from_secs(1));
}
