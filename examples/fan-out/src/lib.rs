//! Fan-out: a map over the input's items. Each item waits `work_ms` (the guest is unloaded
//! meanwhile), then a step returns `{"item": x}`; the output is the results in item order.
//!
//! Input: `{"items": [...], "max_concurrency": n, "work_ms": m, "step_ms": s}` (all but
//! `items` optional; `step_ms`: the step itself takes that long, its instance resident). History: a `Map` context, one `MapIteration` per item holding its
//! wait and its step `work`. After a crash, finished items replay from the journal and are
//! not run again.

use std::time::Duration;

use durable_sdk::{Context, Error, MapConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct Input {
    items: Vec<Value>,
    #[serde(default)]
    max_concurrency: Option<u32>,
    #[serde(default)]
    work_ms: u64,
    #[serde(default)]
    step_ms: u64,
}

/// One item's result.
#[derive(Serialize, Deserialize)]
struct Done {
    item: Value,
}

fn handler(ctx: &mut Context, input: Input) -> Result<Vec<Done>, Error> {
    let mut config = MapConfig::default();
    if let Some(n) = input.max_concurrency {
        config = config.max_concurrency(n);
    }
    let work = Duration::from_millis(input.work_ms);
    let busy = Duration::from_millis(input.step_ms);
    let batch = ctx.map("fan-out", input.items, config, |ctx, item, _index| {
        if !work.is_zero() {
            ctx.wait(None, work);
        }
        ctx.step("work", move |_| {
            // Busy in the step: its instance stays resident while it sleeps.
            std::thread::sleep(busy);
            Ok(Done { item: item.clone() })
        })
    })?;
    // Every item succeeds or the first failure fails the execution.
    batch.into_result()
}

durable_sdk::export_handler!(handler);

// The local test runner runs natively only (`cargo test -p <crate>`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
