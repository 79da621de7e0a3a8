//! Deterministic values: `now`, `random` and `uuid`, read once and the same on replay.

use durable_sdk::{Context, Error};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ms;

#[derive(Deserialize)]
pub struct Deterministic {
    wait_ms: u64,
}

/// Unix milliseconds of a deterministic `now`.
fn now_ms(ctx: &mut Context) -> Result<u64, Error> {
    let now = ctx.now()?;
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Error::new("ClockError", e.to_string()))?;
    Ok(since.as_millis() as u64)
}

/// `deterministic`: reads now, random and uuid (`random_n` is the number times 2^53, an exact
/// integer), checkpoints what it read in step `seen`, waits `wait_ms` (so the output is
/// computed by a replay) and reads `now` again. Outputs `{seen, replayed, later_ms}`:
/// `seen` as the first run read it, `replayed` as the replay recomputed it.
pub fn deterministic(ctx: &mut Context, p: Deterministic) -> Result<Value, Error> {
    let now = now_ms(ctx)?;
    let random = ctx.random()?;
    let uuid = ctx.uuid()?;
    let values = json!({
        "now_ms": now,
        "random_n": (random * (1u64 << 53) as f64) as u64,
        "uuid": uuid,
    });
    let seen: Value = ctx.step("seen", |_| Ok(values.clone()))?;
    ctx.wait(None, ms(p.wait_ms));
    let later = now_ms(ctx)?;
    Ok(json!({"seen": seen, "replayed": values, "later_ms": later}))
}
