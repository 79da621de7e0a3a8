//! Scenarios that block inside a host call (outbound HTTP, a sleep): stop must still reach them.

use durable_sdk::{Context, Error};
use serde_json::Value;

/// The scenario `name`, if this module has it.
pub fn scenario(ctx: &mut Context, name: &str, input: &Value) -> Option<Result<Value, Error>> {
    let _ = (ctx, name, input);
    None
}
