//! Scenarios that flood what a guest controls (log lines, names, errors, nesting, callbacks): the host must bound each with a named limit.

use durable_sdk::{CallbackConfig, Context, Error, RetryStrategy, StepConfig};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{caught, ms};

/// The scenario `name`, if this module has it.
pub fn scenario(ctx: &mut Context, name: &str, input: &Value) -> Option<Result<Value, Error>> {
    Some(match name {
        "log-flood" => params(input).and_then(|p| log_flood(ctx, p)),
        "nest" => params(input).and_then(|p| nest(ctx, p)),
        "big-names" => params(input).and_then(|p| big_names(ctx, p)),
        "big-step-errors" => params(input).and_then(|p| big_step_errors(ctx, p)),
        "big-error" => params(input).and_then(big_error),
        "callback-flood" => params(input).and_then(|p| callback_flood(ctx, p)),
        _ => return None,
    })
}

fn params<P: DeserializeOwned>(input: &Value) -> Result<P, Error> {
    P::deserialize(input).map_err(|e| {
        Error::new(
            "InvalidInput",
            format!("bad parameters for scenario {}: {e}", input["scenario"]),
        )
    })
}

#[derive(Deserialize)]
struct LogFlood {
    lines: u32,
    bytes: usize,
    #[serde(default = "one")]
    activations: u32,
    #[serde(default = "one_ms")]
    wait_ms: u64,
}

fn one() -> u32 {
    1
}

fn one_ms() -> u64 {
    1
}

/// `log-flood`: in each of `activations` activations (a `wait_ms` wait between them),
/// `lines` log lines of `bytes` bytes each (context logger, info).
fn log_flood(ctx: &mut Context, p: LogFlood) -> Result<Value, Error> {
    let line = "x".repeat(p.bytes);
    for a in 0..p.activations {
        if a > 0 {
            ctx.wait(None, ms(p.wait_ms));
        }
        let log = ctx.logger();
        for _ in 0..p.lines {
            log.info(&line);
        }
    }
    Ok(json!(p.activations))
}

#[derive(Deserialize)]
struct Nest {
    depth: u32,
}

/// `nest`: `depth` unnamed child contexts, each inside the last; the innermost returns
/// `depth`.
fn nest(ctx: &mut Context, p: Nest) -> Result<Value, Error> {
    fn level(ctx: &mut Context, left: u32, depth: u32) -> Result<u32, Error> {
        if left == 0 {
            return Ok(depth);
        }
        ctx.run_in_child_context(None, |child| level(child, left - 1, depth))
    }
    Ok(json!(level(ctx, p.depth, p.depth)?))
}

#[derive(Deserialize)]
struct Sized {
    bytes: usize,
    count: u32,
}

/// `big-names`: `count` steps, each named with `bytes` bytes (`n` repeated, then its index)
/// and returning its index.
fn big_names(ctx: &mut Context, p: Sized) -> Result<Value, Error> {
    for i in 0..p.count {
        let name = format!("{}{i}", "n".repeat(p.bytes));
        let _: u32 = ctx.step(name.as_str(), |_| Ok(i))?;
    }
    Ok(json!(p.count))
}

/// `big-step-errors`: `count` steps (no retry) that fail with type `BigError` and a message
/// of `bytes` bytes, each caught; outputs the last caught error.
fn big_step_errors(ctx: &mut Context, p: Sized) -> Result<Value, Error> {
    let config = || StepConfig::default().retry(RetryStrategy::none());
    let mut last = Value::Null;
    for _ in 0..p.count {
        let r: Result<u32, Error> = ctx.step_with(None, config(), |_| {
            Err(Error::new("BigError", "m".repeat(p.bytes)))
        });
        if let Err(e) = r {
            last = json!({"error_type": e.error_type, "message_bytes": e.error_message.len()});
        }
    }
    Ok(last)
}

#[derive(Deserialize)]
struct BigError {
    type_bytes: usize,
    message_bytes: usize,
    data_bytes: usize,
}

/// `big-error`: fails the execution with a type of `type_bytes` `T`s, a message of
/// `message_bytes` `m`s and, when `data_bytes` > 0, data: a JSON string of `data_bytes` `d`s.
fn big_error(p: BigError) -> Result<Value, Error> {
    let mut e = Error::new("T".repeat(p.type_bytes), "m".repeat(p.message_bytes));
    if p.data_bytes > 0 {
        e = e.with_data(&"d".repeat(p.data_bytes));
    }
    Err(e)
}

#[derive(Deserialize)]
struct CallbackFlood {
    count: u32,
}

/// `callback-flood`: creates `count` unnamed callbacks and awaits none; outputs `count`.
fn callback_flood(ctx: &mut Context, p: CallbackFlood) -> Result<Value, Error> {
    for _ in 0..p.count {
        let cb = ctx.create_callback::<Value>(None, CallbackConfig::default());
        if let Err(e) = cb {
            return Ok(caught(&e));
        }
    }
    Ok(json!(p.count))
}
