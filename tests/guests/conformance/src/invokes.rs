//! Chained invokes (DESIGN 11): the `invoke` scenario calls another function of the tenant
//! (the echo target in the kit, or this guest itself with another scenario).

use durable_sdk::{Context, Error, InvokeConfig};
use serde::Deserialize;
use serde_json::Value;

use crate::{caught, ms};

fn default_times() -> u32 {
    1
}

fn default_wait_ms() -> u64 {
    10
}

#[derive(Deserialize)]
pub struct Invoke {
    function: String,
    #[serde(default)]
    input: Value,
    name: Option<String>,
    tenant_id: Option<String>,
    #[serde(default)]
    catch: bool,
    #[serde(default = "default_times")]
    times: u32,
    #[serde(default)]
    child: bool,
    #[serde(default)]
    step_first: bool,
    then: Option<String>,
    #[serde(default = "default_wait_ms")]
    wait_ms: u64,
    transform: Option<String>,
    /// Instead of `input`: a string of this many `x`.
    input_bytes: Option<usize>,
}

/// Uppercase a JSON string (anything else as it is).
fn upper(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.to_uppercase()),
        other => other,
    }
}

/// `times` invokes of `function` with `input`, each named `name`.
fn invokes(ctx: &mut Context, p: &Invoke, input: &Value) -> Result<Value, Error> {
    let mut config = InvokeConfig::default();
    if let Some(t) = &p.tenant_id {
        config = config.tenant_id(t);
    }
    let mut result = Value::Null;
    for _ in 0..p.times {
        result = ctx.invoke_with(p.name.as_deref(), &p.function, input, config.clone())?;
    }
    Ok(result)
}

/// `invoke`: see tests/guests/README.md.
pub fn invoke(ctx: &mut Context, p: Invoke) -> Result<Value, Error> {
    let mut input = match p.input_bytes {
        Some(n) => Value::String("x".repeat(n)),
        None => p.input.clone(),
    };
    if p.step_first {
        input = ctx.step(None, |_| Ok(input.clone()))?;
    }
    if p.transform.as_deref() == Some("upper-input") {
        input = upper(input);
    }
    let outcome = if p.child {
        ctx.run_in_child_context(None, |child| invokes(child, &p, &input))
    } else {
        invokes(ctx, &p, &input)
    };
    let mut out = match outcome {
        Ok(v) => v,
        Err(e) if p.catch => caught(&e),
        Err(e) => return Err(e),
    };
    match p.then.as_deref() {
        Some("wait") => ctx.wait(None, ms(p.wait_ms)),
        Some("step") => out = ctx.step(None, |_| Ok(out.clone()))?,
        _ => {}
    }
    if p.transform.as_deref() == Some("upper-result") {
        out = upper(out);
    }
    Ok(out)
}
