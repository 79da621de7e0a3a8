//! order-saga under the local test runner, with stand-ins for `payment` and `inventory`:
//! each invoke reaches its stand-in once, the saga suspends while a callee runs (as on the
//! host), and a failed reservation is compensated by a refund.

use std::cell::RefCell;
use std::rc::Rc;

use durable_sdk::testing::{Runner, Status};
use durable_sdk::Error;
use serde_json::{json, Value};

/// The calls the `payment` stand-in received, in order.
type Calls = Rc<RefCell<Vec<Value>>>;

/// A runner whose `payment` charges (and refunds) and whose `inventory` reserves unless
/// `out_of_stock`.
fn runner(out_of_stock: bool) -> (Runner, Calls) {
    let calls: Calls = Rc::default();
    let mut run = Runner::new(super::handler);
    let seen = calls.clone();
    run.on_invoke("payment", move |call: Value| {
        seen.borrow_mut().push(call.clone());
        match call["action"].as_str() {
            Some("charge") => Ok(
                json!({"payment_id": format!("pay-{}", call["order_id"].as_str().unwrap_or(""))}),
            ),
            Some("refund") => Ok(json!({"refunded": call["payment_id"]})),
            _ => Err(Error::new("BadCall", format!("{call}"))),
        }
    });
    run.on_invoke("inventory", move |_: Value| {
        if out_of_stock {
            Err(Error::new("OutOfStock", "sku-2 is out of stock"))
        } else {
            Ok(json!({"reservation_id": "res-1"}))
        }
    });
    (run, calls)
}

fn order() -> Value {
    json!({"order_id": "o-1", "amount_cents": 1250, "items": ["sku-1", "sku-2"]})
}

#[test]
fn a_reserved_order_is_confirmed_with_each_callee_invoked_once() {
    let (mut run, calls) = runner(false);
    let status = run.invoke(order());
    assert_eq!(
        status,
        Status::Succeeded(
            json!({"status": "confirmed", "payment_id": "pay-o-1", "reservation_id": "res-1"})
        )
    );
    assert_eq!(calls.borrow().len(), 1, "charged once, across every replay");
    // The host's history: each invoke started, the caller unloaded, its end recorded.
    let shape: Vec<(&str, Option<&str>)> = run
        .shape()
        .into_iter()
        .filter(|(t, _, _)| t.starts_with("ChainedInvoke"))
        .map(|(t, _, name)| (t, name))
        .collect();
    assert_eq!(
        shape,
        [
            ("ChainedInvokeStarted", Some("charge")),
            ("ChainedInvokeSucceeded", Some("charge")),
            ("ChainedInvokeStarted", Some("reserve")),
            ("ChainedInvokeSucceeded", Some("reserve")),
        ]
    );
    // One activation per invoke, and the last.
    assert_eq!(run.activations(), 3);
}

#[test]
fn a_failed_reservation_is_refunded() {
    let (mut run, calls) = runner(true);
    let status = run.invoke(order());
    assert_eq!(
        status,
        Status::Succeeded(json!({
            "status": "refunded",
            "payment_id": "pay-o-1",
            "reason": {"error_type": "OutOfStock", "error_message": "sku-2 is out of stock"},
        }))
    );
    let actions: Vec<Value> = calls.borrow().iter().map(|c| c["action"].clone()).collect();
    assert_eq!(actions, [json!("charge"), json!("refund")]);
    assert!(run
        .shape()
        .iter()
        .any(|(t, _, name)| *t == "ChainedInvokeFailed" && *name == Some("reserve")));
}

#[test]
fn an_unknown_callee_fails_the_invoke_as_on_the_host() {
    let mut run = Runner::new(super::handler);
    let status = run.invoke(order());
    match status {
        Status::Failed(e) => assert_eq!(e.error_type, "Invoke.FunctionNotFound", "{e:?}"),
        other => panic!("{other:?}"),
    }
}
