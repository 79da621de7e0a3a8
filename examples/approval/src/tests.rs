//! approval under the local test runner: the approver's notification answered by an
//! in-process stand-in, the callback completed, failed or timed out from the test.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use durable_sdk::http::Response;
use durable_sdk::testing::{Runner, Status};
use durable_sdk::Error;
use serde_json::{json, Value};

/// A runner whose notifications are recorded (and answered with `status`).
fn runner(status: u16) -> (Runner, Rc<RefCell<Vec<Value>>>) {
    let notes = Rc::new(RefCell::new(Vec::new()));
    let mut run = Runner::new(super::handler);
    let seen = notes.clone();
    run.on_http(move |req| {
        assert_eq!((req.method.as_str(), req.path()), ("POST", "/notify"));
        seen.borrow_mut().push(req.json().expect("JSON body"));
        Ok(Response {
            status,
            body: Vec::new(),
        })
    });
    (run, notes)
}

#[test]
fn the_approvers_answer_completes_the_callback_and_becomes_the_output() {
    let (mut run, notes) = runner(200);
    let input = json!({"request": {"amount": 100}, "notify_url": "http://approvals.test/notify"});
    let Status::Waiting { callbacks } = run.invoke(input) else {
        panic!("waits for the approver: {:?}", run.status());
    };
    // The submitter told the approver which callback to complete.
    let notes = notes.borrow().clone();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["request"], json!({"amount": 100}));
    assert_eq!(notes[0]["callback_id"], json!(callbacks[0]));

    let status = run.succeed_callback(&callbacks[0], json!({"approved": true}));
    assert_eq!(
        status,
        Status::Succeeded(json!({"request": {"amount": 100}, "approval": {"approved": true}}))
    );
    let ctx: Vec<&str> = run
        .history()
        .iter()
        .filter(|e| e.kind.sub_type() == Some("WaitForCallback"))
        .map(|e| e.kind.event_type())
        .collect();
    assert_eq!(ctx, ["ContextStarted", "ContextSucceeded"]);
    assert!(run
        .shape()
        .contains(&("StepSucceeded", Some("1.2"), Some("submitter"))));
    assert!(run.callback_ids().is_empty());
}

#[test]
fn a_rejection_or_a_timeout_fails_the_execution_with_that_error() {
    let mut run = Runner::new(super::handler);
    run.invoke(json!({"request": "r"}));
    let id = run.callback_ids().remove(0);
    assert_eq!(
        run.fail_callback(&id, Error::new("Rejected", "no budget")),
        Status::Failed(Error::new("Rejected", "no budget"))
    );
    // The submitter logged the id, once.
    let logs: Vec<&str> = run.logs().iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        logs,
        [format!(
            "approval requested: complete callback {id} to decide"
        )]
    );

    let mut run = Runner::new(super::handler);
    run.invoke(json!({"request": "r", "timeout_seconds": 60}));
    assert!(matches!(
        run.advance(Duration::from_secs(59)),
        Status::Waiting { .. }
    ));
    let Status::Failed(e) = run.advance(Duration::from_secs(1)) else {
        panic!("{:?}", run.status());
    };
    assert_eq!(e.error_type, "Callback.Timeout");
    assert!(run.shape().iter().any(|s| s.0 == "CallbackTimedOut"));
}

#[test]
fn a_failing_notification_is_retried_twice_a_second_apart_then_fails() {
    let (mut run, notes) = runner(503);
    let input = json!({"request": 1, "notify_url": "http://approvals.test/notify"});
    let Status::Failed(e) = run.invoke(input) else {
        panic!("{:?}", run.status());
    };
    assert_eq!(e.error_type, "NotifyError");
    assert_eq!(notes.borrow().len(), 3, "RetryStrategy::fixed(3, 1 s)");
    assert_eq!(run.elapsed(), Duration::from_secs(2));
}
