//! An order saga over chained invokes: charge the order with the `payment` function, then
//! reserve its items with the `inventory` function; when the reservation fails, compensate
//! by refunding the charge (another invoke of `payment`). Each invoke is a durable call: the
//! saga is unloaded while a callee runs, and after any crash it neither charges nor refunds
//! twice (each callee starts exactly once).
//!
//! Deploy `payment`, `inventory` (examples/payment, examples/inventory) and this as
//! `order-saga` in one tenant. Input: `{"order_id": string, "amount_cents": number,
//! "items": [sku, ...]}`. Output: `{"status": "confirmed", "payment_id", "reservation_id"}`,
//! or `{"status": "refunded", "payment_id", "reason": {"error_type", "error_message"}}`
//! when the reservation failed and the charge was refunded. A failed charge fails the saga
//! with the payment's error (nothing to compensate).

use durable_sdk::{Context, Error};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Order {
    order_id: String,
    amount_cents: i64,
    items: Vec<String>,
}

#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Payment<'a> {
    Charge {
        order_id: &'a str,
        amount_cents: i64,
    },
    Refund {
        payment_id: &'a str,
    },
}

#[derive(Deserialize)]
struct Charged {
    payment_id: String,
}

#[derive(Deserialize)]
struct Reserved {
    reservation_id: String,
}

fn handler(ctx: &mut Context, order: Order) -> Result<Value, Error> {
    let charge = Payment::Charge {
        order_id: &order.order_id,
        amount_cents: order.amount_cents,
    };
    let charged: Charged = ctx.invoke("charge", "payment", &charge)?;
    let reserve = json!({"order_id": order.order_id, "items": order.items});
    match ctx.invoke::<_, Reserved>("reserve", "inventory", &reserve) {
        Ok(reserved) => Ok(json!({
            "status": "confirmed",
            "payment_id": charged.payment_id,
            "reservation_id": reserved.reservation_id,
        })),
        Err(reason) => {
            let refund = Payment::Refund {
                payment_id: &charged.payment_id,
            };
            let _: Value = ctx.invoke("refund", "payment", &refund)?;
            Ok(json!({
                "status": "refunded",
                "payment_id": charged.payment_id,
                "reason": {"error_type": reason.error_type, "error_message": reason.error_message},
            }))
        }
    }
}

durable_sdk::export_handler!(handler);

// The local test runner runs natively only (`cargo test -p <crate>`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
