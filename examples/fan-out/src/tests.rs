//! fan-out under the local test runner: twenty items of a second's work each end in twenty
//! seconds of virtual time, with the output in item order and the host's history.

use std::time::{Duration, Instant};

use durable_sdk::testing::{Runner, Status};
use serde_json::json;

#[test]
fn twenty_items_of_a_second_each_finish_in_virtual_time_in_item_order() {
    let items: Vec<u32> = (0..20).collect();
    let started = Instant::now();
    let mut run = Runner::new(super::handler);
    let status = run.invoke(json!({"items": items, "max_concurrency": 5, "work_ms": 1000}));
    let took = started.elapsed();

    let want: Vec<_> = items.iter().map(|i| json!({"item": i})).collect();
    assert_eq!(status, Status::Succeeded(json!(want)));
    // The items run one after another in the one instance, each wait unloading it.
    assert_eq!(run.elapsed(), Duration::from_secs(20));
    assert_eq!(run.activations(), 21);
    assert!(took < Duration::from_secs(10), "took {took:?}");

    // History: one Map context, an iteration per item holding its wait and its step.
    let history = run.history();
    let count = |event: &str, sub: &str| {
        history
            .iter()
            .filter(|e| e.kind.event_type() == event && e.kind.sub_type() == Some(sub))
            .count()
    };
    assert_eq!(count("ContextStarted", "Map"), 1);
    assert_eq!(count("ContextSucceeded", "Map"), 1);
    assert_eq!(count("ContextStarted", "MapIteration"), 20);
    assert_eq!(count("ContextSucceeded", "MapIteration"), 20);
    assert_eq!(count("WaitSucceeded", "Wait"), 20);
    let steps: Vec<&str> = run
        .shape()
        .into_iter()
        .filter(|(t, _, name)| *t == "StepSucceeded" && *name == Some("work"))
        .filter_map(|(_, id, _)| id)
        .collect();
    let ids: Vec<String> = (1..=20).map(|i| format!("1.{i}.2")).collect();
    assert_eq!(steps, ids);
}

#[test]
fn a_failed_item_fails_the_execution_with_its_error() {
    let mut run = Runner::new(super::handler);
    run.fail_step("work", durable_sdk::Error::new("Broken", "on purpose"));
    let Status::Failed(e) = run.invoke(json!({"items": [1, 2]})) else {
        panic!("{:?}", run.status());
    };
    assert_eq!(e.error_type, "Broken");
}
