//! Scenarios that block inside a host call (outbound HTTP, a sleep): stop must still reach
//! them; and one that holds a given amount of touched linear memory for a while, for the
//! host-wide memory budget.

use std::hint::black_box;

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
        "hold-memory" => params(input).and_then(hold_memory),
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

#[derive(Deserialize)]
pub struct HoldMemory {
    mib: usize,
    hold_ms: u64,
}

/// Bytes per page the host's kernel commits; touching one byte in each makes it resident.
const PAGE: usize = 4096;

/// `hold-memory`: allocates `mib` MiB, writes one byte in every 4 KiB page (so the memory
/// is resident, not just reserved), sleeps `hold_ms` (staying resident), outputs `mib`.
fn hold_memory(p: HoldMemory) -> Result<Value, Error> {
    let mut hoard = vec![0u8; p.mib << 20];
    for i in (0..hoard.len()).step_by(PAGE) {
        hoard[i] = 1;
    }
    black_box(&hoard);
    std::thread::sleep(ms(p.hold_ms));
    black_box(&hoard);
    Ok(p.mib.into())
}
