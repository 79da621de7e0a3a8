//! The conformance test guest: one component, many scenarios. The input is
//! `{"scenario": "<name>", ...params}`; each scenario exercises one behaviour of the host
//! (steps, retries, waits, callbacks, child contexts, replay, hostile guests). The host's
//! end-to-end tests depend on the scenario names and behaviours listed in
//! `tests/guests/README.md`: change both together. Durations in params are milliseconds.

mod batches;
mod blocking;
mod callbacks;
mod children;
mod conditions;
mod deterministic;
mod floods;
mod hostile;
mod invokes;
mod probes;
mod steps;
mod waits;

use std::time::Duration;

use durable_sdk::{Context, Error};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

fn handler(ctx: &mut Context, input: Value) -> Result<Value, Error> {
    let scenario = input
        .get("scenario")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::new("InvalidInput", "the input needs a \"scenario\" string"))?;
    match scenario {
        "echo" => echo(params(&input)?),
        "step-basic" => steps::basic(ctx, params(&input)?),
        "step-named" => steps::named(ctx, params(&input)?),
        "step-retry" => steps::retry(ctx, params(&input)?),
        "step-fail-caught" => steps::fail_caught(ctx),
        "step-fail-then-wait" => steps::fail_then_wait(ctx, params(&input)?),
        "at-most-once" => steps::at_most_once(ctx, params(&input)?),
        "steps" => steps::many(ctx, params(&input)?),
        "bench-hello" => steps::bench_hello(ctx),
        "step-http" => probes::step_http(ctx, params(&input)?),
        "crash-probe" => probes::crash_probe(ctx, params(&input)?),
        "at-most-once-probe" => probes::at_most_once_probe(ctx, params(&input)?),
        "http-chain" => probes::http_chain(ctx, params(&input)?),
        "wait" => waits::wait(ctx, params(&input)?),
        "waits" => waits::waits(ctx, params(&input)?),
        "log-replay" => waits::log_replay(ctx, params(&input)?),
        "stdout" => waits::stdout(ctx, params(&input)?),
        "callback" => callbacks::callback(ctx, params(&input)?),
        "callback-two" => callbacks::two(ctx, params(&input)?),
        "callback-then-wait" => callbacks::then_wait(ctx, params(&input)?),
        "wait-for-callback" => callbacks::wait_for_callback(ctx, params(&input)?),
        "wait-for-callback-submitter-fails" => callbacks::submitter_fails(ctx, params(&input)?),
        "child-basic" => children::basic(ctx, params(&input)?, None),
        "child-named" => children::basic(ctx, params(&input)?, Some("child")),
        "child-wait" => children::wait(ctx, params(&input)?),
        "child-error-caught" => children::error_caught(ctx),
        "child-nested" => children::nested(ctx),
        "child-log" => children::log(ctx, params(&input)?),
        "wait-for-condition" => conditions::wait_for_condition(ctx, params(&input)?),
        "deterministic" => deterministic::deterministic(ctx, params(&input)?),
        "map" => batches::map(ctx, params(&input)?),
        "parallel" => batches::parallel(ctx, params(&input)?),
        "loop-forever" => hostile::loop_forever(),
        "loop-in-step" => hostile::loop_in_step(ctx),
        "memory-bomb" => hostile::memory_bomb(),
        "big-output" => hostile::big_output(params(&input)?),
        "big-step-result" => hostile::big_step_result(ctx, params(&input)?),
        "nondeterministic" => hostile::nondeterministic(ctx),
        "fail" => hostile::fail(params(&input)?),
        "panic" => hostile::panic(),
        "invoke" => invokes::invoke(ctx, params(&input)?),
        other => floods::scenario(ctx, other, &input)
            .or_else(|| blocking::scenario(ctx, other, &input))
            .unwrap_or_else(|| {
                Err(Error::new(
                    "UnknownScenario",
                    format!("unknown scenario {other:?}"),
                ))
            }),
    }
}

/// The scenario's parameters: the rest of the input, as `P`.
fn params<P: DeserializeOwned>(input: &Value) -> Result<P, Error> {
    P::deserialize(input).map_err(|e| {
        Error::new(
            "InvalidInput",
            format!("bad parameters for scenario {}: {e}", input["scenario"]),
        )
    })
}

/// Milliseconds as a `Duration`.
fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A caught error as `{"caught": {"error_type", "error_message"}}`.
fn caught(error: &Error) -> Value {
    serde_json::json!({
        "caught": {
            "error_type": error.error_type,
            "error_message": error.error_message,
        }
    })
}

#[derive(Deserialize)]
struct Echo {
    #[serde(default)]
    value: Value,
}

/// `echo`: returns `value`, no durable operation.
fn echo(p: Echo) -> Result<Value, Error> {
    Ok(p.value)
}

durable_sdk::export_handler!(handler);
