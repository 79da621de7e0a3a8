//! Wait and logging scenarios: single and sequential waits, replay-aware logging, and
//! stdout/stderr capture across replays.

use durable_sdk::{Context, Error};
use serde::Deserialize;
use serde_json::Value;

use crate::ms;

#[derive(Deserialize)]
pub struct Wait {
    ms: u64,
    name: Option<String>,
}

/// `wait`: one wait (named when `name` is given).
pub fn wait(ctx: &mut Context, p: Wait) -> Result<Value, Error> {
    ctx.wait(p.name.as_deref(), ms(p.ms));
    Ok("waited".into())
}

#[derive(Deserialize)]
pub struct Waits {
    ms: Vec<u64>,
}

/// `waits`: sequential unnamed waits; outputs how many.
pub fn waits(ctx: &mut Context, p: Waits) -> Result<Value, Error> {
    for &millis in &p.ms {
        ctx.wait(None, ms(millis));
    }
    Ok(p.ms.len().into())
}

#[derive(Deserialize)]
pub struct LogReplay {
    marker: String,
    wait_ms: u64,
}

/// `log-replay`: logs "{marker}-before", waits, logs "{marker}-after".
pub fn log_replay(ctx: &mut Context, p: LogReplay) -> Result<Value, Error> {
    ctx.logger().info(format!("{}-before", p.marker));
    ctx.wait(None, ms(p.wait_ms));
    ctx.logger().info(format!("{}-after", p.marker));
    Ok("logged".into())
}

#[derive(Deserialize)]
pub struct Stdout {
    text: String,
}

/// `stdout`: prints `text` to stdout and "err:{text}" to stderr, then an unnamed step and a
/// 50 ms wait (so the prints run again on replay; the host records each line once, by replay position).
pub fn stdout(ctx: &mut Context, p: Stdout) -> Result<Value, Error> {
    println!("{}", p.text);
    eprintln!("err:{}", p.text);
    ctx.step(None, |_| Ok(()))?;
    ctx.wait(None, ms(50));
    Ok("printed".into())
}
