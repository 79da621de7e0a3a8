//! Scenarios that call the test's mock HTTP server from steps: plain requests, and probes
//! that let a test kill the host in the middle of a step and count what ran again.

use durable_sdk::http::Request;
use durable_sdk::{Context, Error, RetryStrategy, StepConfig};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ms;
use crate::steps::steady;

fn no_retry() -> StepConfig {
    StepConfig::default().retry(RetryStrategy::none())
}

#[derive(Deserialize)]
pub struct StepHttp {
    url: String,
    method: String,
    body: Option<Value>,
    name: Option<String>,
}

/// `step-http`: one step (default name "http", no retry) doing the request; returns
/// `{"status", "body"}` or `{"error"}` (the error is caught inside the step).
pub fn step_http(ctx: &mut Context, p: StepHttp) -> Result<Value, Error> {
    let name = p.name.as_deref().unwrap_or("http");
    ctx.step_with(name, no_retry(), |_| {
        let mut request = Request::new(&p.method, &p.url);
        if let Some(body) = &p.body {
            request = request.json(body)?;
        }
        Ok(match request.send() {
            Ok(response) => json!({ "status": response.status, "body": response.text() }),
            Err(e) => json!({ "error": e.error_message }),
        })
    })
}

#[derive(Deserialize)]
pub struct Probe {
    url: String,
}

fn post(url: &str) -> Result<u16, Error> {
    Ok(Request::new("POST", url).send()?.status)
}

/// `crash-probe`: steps "before" (POST /hit/before), "slow" (POST /slow), a 100 ms wait,
/// "after" (POST /hit/after); outputs the three statuses.
pub fn crash_probe(ctx: &mut Context, p: Probe) -> Result<Value, Error> {
    let base = p.url.trim_end_matches('/');
    let before: u16 = ctx.step_with("before", no_retry(), |_| {
        post(&format!("{base}/hit/before"))
    })?;
    let slow: u16 = ctx.step_with("slow", no_retry(), |_| post(&format!("{base}/slow")))?;
    ctx.wait(None, ms(100));
    let after: u16 = ctx.step_with("after", no_retry(), |_| post(&format!("{base}/hit/after")))?;
    Ok(json!({ "before": before, "slow": slow, "after": after }))
}

#[derive(Deserialize)]
pub struct AtMostOnceProbe {
    url: String,
    max_attempts: u32,
    delay_ms: u64,
}

/// `at-most-once-probe`: step "guarded" (at-most-once) POSTs /slow and returns its status.
pub fn at_most_once_probe(ctx: &mut Context, p: AtMostOnceProbe) -> Result<Value, Error> {
    let base = p.url.trim_end_matches('/');
    let config = StepConfig::default()
        .at_most_once()
        .retry(steady(p.max_attempts, ms(p.delay_ms)));
    let status: u16 = ctx.step_with("guarded", config, |_| post(&format!("{base}/slow")))?;
    Ok(status.into())
}

#[derive(Deserialize)]
pub struct HttpChain {
    url: String,
    steps: Vec<String>,
    #[serde(default = "one")]
    max_attempts: u32,
}

fn one() -> u32 {
    1
}

/// `http-chain`: for each name in `steps`, step `name` POSTs `{url}/{name}` and fails with
/// `HttpError` when the answer is not 2xx (`max_attempts` attempts, no delay); returns the
/// statuses by name.
pub fn http_chain(ctx: &mut Context, p: HttpChain) -> Result<Value, Error> {
    let base = p.url.trim_end_matches('/');
    let config = || StepConfig::default().retry(steady(p.max_attempts, ms(0)));
    let mut out = serde_json::Map::new();
    for name in &p.steps {
        let status: u16 = ctx.step_with(name.as_str(), config(), |_| {
            let url = format!("{base}/{name}");
            let status = post(&url)?;
            if !(200..300).contains(&status) {
                return Err(Error::new(
                    "HttpError",
                    format!("POST {url} answered {status}"),
                ));
            }
            Ok(status)
        })?;
        out.insert(name.clone(), status.into());
    }
    Ok(Value::Object(out))
}
