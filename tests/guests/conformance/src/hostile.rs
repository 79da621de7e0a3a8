//! Misbehaving-guest scenarios: runaway loops, memory bombs, oversized payloads,
//! non-determinism, explicit failures and panics. Each must fail cleanly in the host.

use std::hint::black_box;

use durable_sdk::{Context, Error, RetryStrategy, StepConfig};
use serde::Deserialize;
use serde_json::Value;

use crate::{caught, ms};

/// Spins forever; `black_box` keeps the loop from being optimised away.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// `loop-forever`: an infinite loop outside any step.
pub fn loop_forever() -> Result<Value, Error> {
    spin()
}

/// `loop-in-step`: an infinite loop inside step "spin" (no retry).
pub fn loop_in_step(ctx: &mut Context) -> Result<Value, Error> {
    let config = StepConfig::default().retry(RetryStrategy::none());
    ctx.step_with("spin", config, |_| -> Result<Value, Error> { spin() })
}

/// `memory-bomb`: allocates 1 MiB chunks until the allocator fails.
pub fn memory_bomb() -> Result<Value, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        black_box(&hoard);
    }
}

#[derive(Deserialize)]
pub struct Size {
    bytes: usize,
}

/// `big-output`: outputs a string of `bytes` 'x'.
pub fn big_output(p: Size) -> Result<Value, Error> {
    Ok("x".repeat(p.bytes).into())
}

/// `big-step-result`: step "big" (no retry) returns `bytes` 'x'; outputs that string, or
/// `{"caught": ..}` when the step fails (e.g. `PayloadTooLarge`).
pub fn big_step_result(ctx: &mut Context, p: Size) -> Result<Value, Error> {
    let config = StepConfig::default().retry(RetryStrategy::none());
    match ctx.step_with("big", config, |_| Ok("x".repeat(p.bytes))) {
        Ok(text) => Ok(Value::String(text)),
        Err(e) => Ok(caught(&e)),
    }
}

/// `nondeterministic`: names steps with random numbers drawn OUTSIDE any step (the bug this
/// scenario exists for): the replay after the wait calls a differently named first step.
pub fn nondeterministic(ctx: &mut Context) -> Result<Value, Error> {
    let first = wasip2::random::random::get_random_u64();
    let _: u64 = ctx.step(format!("random-{first}"), |_| Ok(first))?;
    ctx.wait(None, ms(10));
    let second = wasip2::random::random::get_random_u64();
    let value: u64 = ctx.step(format!("random-{second}"), |_| Ok(second))?;
    Ok(value.into())
}

#[derive(Deserialize)]
pub struct Fail {
    error_type: String,
    message: String,
}

/// `fail`: fails the execution with the given error, no step.
pub fn fail(p: Fail) -> Result<Value, Error> {
    Err(Error::new(p.error_type, p.message))
}

/// `panic`: panics outside any step.
pub fn panic() -> Result<Value, Error> {
    panic!("deliberate panic outside any step")
}
