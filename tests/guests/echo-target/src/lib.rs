//! The conformance kit's invoke target (`tests/guests/README.md`): returns its input as it
//! is, except an object with a string `fail`, which fails the execution with that error
//! type (message `"the target failed"`). Nothing durable, so one activation.

use durable_sdk::{Context, Error};
use serde_json::Value;

fn handler(_ctx: &mut Context, input: Value) -> Result<Value, Error> {
    match input.get("fail").and_then(Value::as_str) {
        Some(error_type) => Err(Error::new(error_type, "the target failed")),
        None => Ok(input),
    }
}

durable_sdk::export_handler!(handler);
