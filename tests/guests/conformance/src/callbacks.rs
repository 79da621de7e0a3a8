//! Callback scenarios: create/await with timeouts, two interleaved callbacks, a callback
//! across a wait, and wait-for-callback with a submitter that notifies the test or fails.

use std::time::Duration;

use durable_sdk::{http, CallbackConfig, Context, Error, WaitForCallbackConfig};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::steps::steady;
use crate::{caught, ms};

#[derive(Deserialize)]
pub struct Callback {
    name: Option<String>,
    timeout_ms: Option<u64>,
    heartbeat_timeout_ms: Option<u64>,
    #[serde(default)]
    catch: bool,
}

fn config(timeout_ms: Option<u64>, heartbeat_timeout_ms: Option<u64>) -> CallbackConfig {
    CallbackConfig {
        timeout: timeout_ms.map(Duration::from_millis),
        heartbeat_timeout: heartbeat_timeout_ms.map(Duration::from_millis),
    }
}

/// `{"result": value}`, or `{"caught": ..}` when `catch` and it failed.
fn outcome(result: Result<Value, Error>, catch: bool) -> Result<Value, Error> {
    match result {
        Ok(value) => Ok(json!({ "result": value })),
        Err(e) if catch => Ok(caught(&e)),
        Err(e) => Err(e),
    }
}

/// `callback`: create a callback, await it.
pub fn callback(ctx: &mut Context, p: Callback) -> Result<Value, Error> {
    let cb = ctx.create_callback::<Value>(
        p.name.as_deref(),
        config(p.timeout_ms, p.heartbeat_timeout_ms),
    )?;
    outcome(cb.result(), p.catch)
}

#[derive(Deserialize)]
pub struct Two {
    a: String,
    b: String,
}

/// `callback-two`: create callbacks `a` and `b`, await `a`, then `b`.
pub fn two(ctx: &mut Context, p: Two) -> Result<Value, Error> {
    let a = ctx.create_callback::<Value>(&p.a, CallbackConfig::default())?;
    let b = ctx.create_callback::<Value>(&p.b, CallbackConfig::default())?;
    let result_a = a.result()?;
    let result_b = b.result()?;
    Ok(json!([result_a, result_b]))
}

#[derive(Deserialize)]
pub struct ThenWait {
    wait_ms: u64,
}

/// `callback-then-wait`: create callback "cb", wait, await it.
pub fn then_wait(ctx: &mut Context, p: ThenWait) -> Result<Value, Error> {
    let cb = ctx.create_callback::<Value>("cb", CallbackConfig::default())?;
    ctx.wait(None, ms(p.wait_ms));
    cb.result()
}

#[derive(Deserialize)]
pub struct WaitForCallback {
    name: Option<String>,
    notify_url: Option<String>,
    timeout_ms: Option<u64>,
    heartbeat_timeout_ms: Option<u64>,
    #[serde(default)]
    catch: bool,
}

/// `wait-for-callback`: the submitter POSTs `{"callback_id"}` to `notify_url` when given
/// (a non-2xx answer is an error, retried per the default policy).
pub fn wait_for_callback(ctx: &mut Context, p: WaitForCallback) -> Result<Value, Error> {
    let name = p.name.as_deref().unwrap_or("approval");
    let config = config(p.timeout_ms, p.heartbeat_timeout_ms);
    let result = ctx.wait_for_callback(name, config, |callback_id, _| {
        if let Some(url) = &p.notify_url {
            let response = http::post_json(url, &json!({ "callback_id": callback_id }))?;
            if !response.is_success() {
                return Err(Error::new(
                    "NotifyError",
                    format!("POST {url} returned status {}", response.status),
                ));
            }
        }
        Ok(())
    });
    outcome(result, p.catch)
}

#[derive(Deserialize)]
pub struct SubmitterFails {
    max_attempts: u32,
    delay_ms: u64,
}

/// `wait-for-callback-submitter-fails`: the submitter always fails with "SubmitterError";
/// the execution fails once its retries are exhausted.
pub fn submitter_fails(ctx: &mut Context, p: SubmitterFails) -> Result<Value, Error> {
    let config = WaitForCallbackConfig {
        callback: CallbackConfig::default(),
        submitter_retry: steady(p.max_attempts, ms(p.delay_ms)),
    };
    ctx.wait_for_callback_with("approval", config, |_, s| {
        Err(Error::new(
            "SubmitterError",
            format!("submitter failed on attempt {}", s.attempt()),
        ))
    })
}
