//! Child-context scenarios: unnamed and named children, waits inside a child, caught
//! child failures, nesting, and replay-aware logging inside a child.

use durable_sdk::{Context, Error, RetryStrategy, StepConfig};
use serde::Deserialize;
use serde_json::Value;

use crate::ms;

#[derive(Deserialize)]
pub struct Basic {
    #[serde(default)]
    value: Value,
}

/// `child-basic` / `child-named`: a child context (named `name`) with one unnamed step
/// returning `value`.
pub fn basic(ctx: &mut Context, p: Basic, name: Option<&str>) -> Result<Value, Error> {
    ctx.run_in_child_context(name, |child| child.step(None, |_| Ok(p.value.clone())))
}

#[derive(Deserialize)]
pub struct Wait {
    wait_ms: u64,
}

/// `child-wait`: a child with step "inner-1" (1), a wait, step "inner-2" (2); then step
/// "after" (3); outputs 6.
pub fn wait(ctx: &mut Context, p: Wait) -> Result<Value, Error> {
    let inner: u64 = ctx.run_in_child_context(None, |child| {
        let one: u64 = child.step("inner-1", |_| Ok(1))?;
        child.wait(None, ms(p.wait_ms));
        let two: u64 = child.step("inner-2", |_| Ok(2))?;
        Ok(one + two)
    })?;
    let after: u64 = ctx.step("after", |_| Ok(3))?;
    Ok((inner + after).into())
}

/// `child-error-caught`: a child whose step "bad" fails with "ChildError"; caught.
pub fn error_caught(ctx: &mut Context) -> Result<Value, Error> {
    let result: Result<(), Error> = ctx.run_in_child_context(None, |child| {
        child.step_with(
            "bad",
            StepConfig::default().retry(RetryStrategy::none()),
            |_| Err(Error::new("ChildError", "the child's step failed")),
        )
    });
    match result {
        Ok(()) => Err(Error::new("Unexpected", "the child context succeeded")),
        Err(_) => Ok("recovered".into()),
    }
}

/// `child-nested`: child "outer" containing child "inner" containing step "deep".
pub fn nested(ctx: &mut Context) -> Result<Value, Error> {
    let deep: String = ctx.run_in_child_context("outer", |outer| {
        outer.run_in_child_context("inner", |inner| {
            inner.step("deep", |_| Ok("deep".to_string()))
        })
    })?;
    Ok(deep.into())
}

#[derive(Deserialize)]
pub struct Log {
    marker: String,
}

/// `child-log`: a child that logs `marker`, waits 50 ms and returns "ok".
pub fn log(ctx: &mut Context, p: Log) -> Result<Value, Error> {
    let ok: String = ctx.run_in_child_context(None, |child| {
        child.logger().info(&p.marker);
        child.wait(None, ms(50));
        Ok("ok".to_string())
    })?;
    Ok(ok.into())
}
