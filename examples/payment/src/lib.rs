//! A payment service, invoked by `order-saga`: charges an order and refunds a charge, each
//! in one step (a real one would call a payment provider there).
//!
//! Input: `{"action": "charge", "order_id": string, "amount_cents": number}` → output
//! `{"payment_id": "pay-<order_id>", "amount_cents": n}`; or `{"action": "refund",
//! "payment_id": string}` → `{"refunded": payment_id}`. A charge of 0 cents or less fails
//! with `PaymentDeclined`.

use durable_sdk::{Context, Error, RetryStrategy, StepConfig};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Request {
    Charge { order_id: String, amount_cents: i64 },
    Refund { payment_id: String },
}

fn handler(ctx: &mut Context, request: Request) -> Result<Value, Error> {
    // Money moves at most once per attempt, and a declined charge is not retried.
    let once = StepConfig::default()
        .at_most_once()
        .retry(RetryStrategy::none());
    match request {
        Request::Charge {
            order_id,
            amount_cents,
        } => ctx.step_with("charge", once, |_| {
            if amount_cents <= 0 {
                return Err(Error::new(
                    "PaymentDeclined",
                    format!("cannot charge {amount_cents} cents"),
                ));
            }
            Ok(json!({"payment_id": format!("pay-{order_id}"), "amount_cents": amount_cents}))
        }),
        Request::Refund { payment_id } => {
            ctx.step_with("refund", once, |_| Ok(json!({"refunded": payment_id})))
        }
    }
}

durable_sdk::export_handler!(handler);
