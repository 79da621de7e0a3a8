//! An inventory service, invoked by `order-saga`: reserves the items of an order in one
//! step (a real one would update a stock database there).
//!
//! Input: `{"order_id": string, "items": [sku, ...]}` → output `{"reservation_id":
//! "res-<order_id>", "items": [...]}`. A sku starting with `sold-out` fails the
//! reservation with `OutOfStock` (never retried).

use durable_sdk::{Context, Error, RetryStrategy, StepConfig};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Request {
    order_id: String,
    items: Vec<String>,
}

fn handler(ctx: &mut Context, request: Request) -> Result<Value, Error> {
    let config = StepConfig::default().retry(RetryStrategy::none());
    ctx.step_with("reserve", config, |_| {
        if let Some(sku) = request.items.iter().find(|s| s.starts_with("sold-out")) {
            return Err(Error::new("OutOfStock", format!("{sku} is out of stock")));
        }
        Ok(json!({
            "reservation_id": format!("res-{}", request.order_id),
            "items": request.items,
        }))
    })
}

durable_sdk::export_handler!(handler);
