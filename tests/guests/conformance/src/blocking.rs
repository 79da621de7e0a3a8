//! Scenarios that block inside a host call (outbound HTTP, a sleep): stop must still reach
//! them.

use durable_sdk::http::Request;
use durable_sdk::{Context, Error, RetryStrategy, StepConfig};
use serde::Deserialize;
use serde_json::Value;

use crate::{ms, params};

/// The scenario `name`, if this module has it.
pub fn scenario(ctx: &mut Context, name: &str, input: &Value) -> Option<Result<Value, Error>> {
    Some(match name {
        "block-http" => params(input).and_then(|p| block_http(ctx, p)),
        "block-sleep" => params(input).and_then(|p| block_sleep(ctx, p)),
        _ => return None,
    })
}

/// Step `before` (returns null: a mark in the history that the guest is about to block),
/// then `body`, inside step `name` (no retry) when `in_step`, else directly in the handler.
fn maybe_in_step(
    ctx: &mut Context,
    in_step: bool,
    name: &str,
    mut body: impl FnMut() -> Result<Value, Error>,
) -> Result<Value, Error> {
    let _: Value = ctx.step("before", |_| Ok(Value::Null))?;
    if in_step {
        let config = StepConfig::default().retry(RetryStrategy::none());
        ctx.step_with(name, config, |_| body())
    } else {
        body()
    }
}

#[derive(Deserialize)]
pub struct BlockHttp {
    url: String,
    #[serde(default)]
    in_step: bool,
}

/// `block-http`: step `before`, then GET `url` (meant to be a server that never answers),
/// inside step `http` when `in_step`; outputs the status.
fn block_http(ctx: &mut Context, p: BlockHttp) -> Result<Value, Error> {
    maybe_in_step(ctx, p.in_step, "http", || {
        Ok(Request::new("GET", &p.url).send()?.status.into())
    })
}

#[derive(Deserialize)]
pub struct BlockSleep {
    ms: u64,
    #[serde(default)]
    in_step: bool,
}

/// `block-sleep`: step `before`, then `std::thread::sleep(ms)` (a `wasi:io/poll` on a monotonic-clock
/// subscription, not a durable wait), inside step `sleep` when `in_step`; outputs `"slept"`.
fn block_sleep(ctx: &mut Context, p: BlockSleep) -> Result<Value, Error> {
    maybe_in_step(ctx, p.in_step, "sleep", || {
        std::thread::sleep(ms(p.ms));
        Ok("slept".into())
    })
}
