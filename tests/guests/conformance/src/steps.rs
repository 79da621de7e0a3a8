//! Step scenarios: unnamed and named steps, retries with filters, caught failures,
//! at-most-once crashes, long journals and the hello shape used by benchmarks.

use std::time::Duration;

use durable_sdk::{Context, Error, Jitter, RetryStrategy, StepConfig};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ms;

#[derive(Deserialize)]
pub struct Greet {
    name: String,
}

/// `step-basic`: one unnamed step returning `"Hello, {name}!"`.
pub fn basic(ctx: &mut Context, p: Greet) -> Result<Value, Error> {
    let greeting: String = ctx.step(None, |_| Ok(format!("Hello, {}!", p.name)))?;
    Ok(greeting.into())
}

/// `step-named`: the same, step named `custom_step_name`.
pub fn named(ctx: &mut Context, p: Greet) -> Result<Value, Error> {
    let greeting: String = ctx.step("custom_step_name", |_| Ok(format!("Hello, {}!", p.name)))?;
    Ok(greeting.into())
}

#[derive(Deserialize)]
pub struct Retry {
    fail_times: u32,
    max_attempts: u32,
    delay_ms: u64,
    #[serde(default = "transient")]
    error_type: String,
    retry_on: Option<Vec<String>>,
    never_retry_on: Option<Vec<String>>,
    #[serde(default = "one")]
    backoff_rate: f64,
}

fn transient() -> String {
    "TransientError".to_string()
}

fn one() -> f64 {
    1.0
}

/// `step-retry`: step "flaky" fails with `error_type` while attempt <= `fail_times`.
pub fn retry(ctx: &mut Context, p: Retry) -> Result<Value, Error> {
    let mut strategy = RetryStrategy::exponential(
        p.max_attempts,
        ms(p.delay_ms),
        p.backoff_rate,
        Duration::from_secs(60),
    )
    .jitter(Jitter::None);
    if let Some(types) = p.retry_on {
        strategy = strategy.retry_on(types);
    }
    if let Some(types) = p.never_retry_on {
        strategy = strategy.never_retry_on(types);
    }
    let result: String = ctx.step_with("flaky", StepConfig::default().retry(strategy), |s| {
        if s.attempt() <= p.fail_times {
            Err(Error::new(
                p.error_type.as_str(),
                format!("attempt {} failed", s.attempt()),
            ))
        } else {
            Ok("Operation succeeded".to_string())
        }
    })?;
    Ok(result.into())
}

fn no_retry() -> StepConfig {
    StepConfig::default().retry(RetryStrategy::none())
}

/// `step-fail-caught`: step "failing" fails for good, the error is caught, step
/// "fallback" returns `"fallback_result"`.
pub fn fail_caught(ctx: &mut Context) -> Result<Value, Error> {
    let failed: Result<(), Error> = ctx.step_with("failing", no_retry(), |_| {
        Err(Error::new("StepError", "always fails"))
    });
    if failed.is_ok() {
        return Err(Error::new("Unexpected", "step \"failing\" succeeded"));
    }
    let fallback: String = ctx.step("fallback", |_| Ok("fallback_result".to_string()))?;
    Ok(fallback.into())
}

#[derive(Deserialize)]
pub struct FailThenWait {
    wait_ms: u64,
}

/// `step-fail-then-wait`: step "failing" logs "step executed" and fails (no retry); caught;
/// then a wait.
pub fn fail_then_wait(ctx: &mut Context, p: FailThenWait) -> Result<Value, Error> {
    let _ = ctx.step_with("failing", no_retry(), |s| -> Result<(), Error> {
        s.logger().info("step executed");
        Err(Error::new("StepError", "step failed"))
    });
    ctx.wait(None, ms(p.wait_ms));
    Ok("done".into())
}

#[derive(Deserialize)]
pub struct AtMostOnce {
    marker: String,
    crash_attempts: u32,
    max_attempts: u32,
    delay_ms: u64,
}

/// An exponential policy with rate 1 and no jitter: `delay` between attempts.
pub fn steady(max_attempts: u32, delay: Duration) -> RetryStrategy {
    RetryStrategy::exponential(max_attempts, delay, 1.0, delay.max(Duration::from_secs(60)))
        .jitter(Jitter::None)
}

/// `at-most-once`: step "at_most_once_flaky_step" (at-most-once) logs `marker`, then traps
/// the instance while attempt <= `crash_attempts`.
pub fn at_most_once(ctx: &mut Context, p: AtMostOnce) -> Result<Value, Error> {
    let config = StepConfig::default()
        .at_most_once()
        .retry(steady(p.max_attempts, ms(p.delay_ms)));
    let result: String = ctx.step_with("at_most_once_flaky_step", config, |s| {
        s.logger().info(&p.marker);
        if s.attempt() <= p.crash_attempts {
            std::process::abort();
        }
        Ok("succeeded on second attempt".to_string())
    })?;
    Ok(result.into())
}

#[derive(Deserialize)]
pub struct Many {
    count: u64,
}

/// `steps`: `count` sequential unnamed steps, step i (from 0) returning i.
pub fn many(ctx: &mut Context, p: Many) -> Result<Value, Error> {
    for i in 0..p.count {
        let _: u64 = ctx.step(None, |_| Ok(i))?;
    }
    Ok(p.count.into())
}

/// `bench-hello`: the hello example with a zero wait.
pub fn bench_hello(ctx: &mut Context) -> Result<Value, Error> {
    ctx.step("Step #1", |s| {
        s.logger().info("Hello from step #1");
        Ok(())
    })?;
    ctx.wait(None, Duration::ZERO);
    ctx.logger().info("Waited for 0 seconds");
    let message: String = ctx.step("Step #2", |_| Ok("Hello from Durable Lambda!".to_string()))?;
    Ok(json!({
        "statusCode": 200,
        "body": serde_json::to_string(&message)?,
    }))
}
