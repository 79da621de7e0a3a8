//! Scenarios that flood what a guest controls (log lines, names, errors, nesting, callbacks): the host must bound each with a named limit.

use durable_sdk::{Context, Error};
use serde_json::Value;

/// The scenario `name`, if this module has it.
pub fn scenario(ctx: &mut Context, name: &str, input: &Value) -> Option<Result<Value, Error>> {
    let _ = (ctx, name, input);
    None
}
