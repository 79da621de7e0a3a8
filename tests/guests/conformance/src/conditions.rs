//! `wait-for-condition` scenarios: one polling operation over a state of some shape, then
//! optionally a step or a second poll (see `tests/guests/README.md`).

use durable_sdk::{Context, Error, WaitStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};

use crate::ms;

fn default_delay() -> u64 {
    10
}

fn one() -> i64 {
    1
}

fn default_attempts() -> u32 {
    60
}

#[derive(Deserialize)]
pub struct Params {
    /// `count`, `object`, `null`, `string` or `raise`.
    kind: String,
    #[serde(default)]
    initial: i64,
    #[serde(default)]
    threshold: i64,
    /// What a `count` check adds to the state.
    #[serde(default = "one")]
    increment: i64,
    name: Option<String>,
    #[serde(default = "default_delay")]
    delay_ms: u64,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default)]
    catch: bool,
    /// `step`: then an unnamed step returning the result times 10; `again`: then a second
    /// `count` poll from the result up to `second_threshold`.
    then: Option<String>,
    #[serde(default)]
    second_threshold: i64,
}

#[derive(Serialize, Deserialize)]
struct Job {
    status: String,
    attempts: i64,
}

/// A string state with a serdes of its own: checkpointed as `{"encoded": <reversed>}`.
struct Encoded(String);

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({"encoded": self.0.chars().rev().collect::<String>()}).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            encoded: String,
        }
        Ok(Encoded(
            Raw::deserialize(d)?.encoded.chars().rev().collect(),
        ))
    }
}

fn strategy<S>(p: &Params, done: impl Fn(&S) -> bool + 'static) -> WaitStrategy<S> {
    WaitStrategy::until(done)
        .fixed_delay(ms(p.delay_ms))
        .max_attempts(p.max_attempts)
}

fn count(ctx: &mut Context, p: &Params, initial: i64, threshold: i64) -> Result<i64, Error> {
    let s = strategy(p, move |n: &i64| *n >= threshold);
    let increment = p.increment;
    ctx.wait_for_condition(p.name.as_deref(), initial, |n, _| Ok(n + increment), s)
}

/// `wait-for-condition`.
pub fn wait_for_condition(ctx: &mut Context, p: Params) -> Result<Value, Error> {
    let threshold = p.threshold;
    let polled: Result<Value, Error> = match p.kind.as_str() {
        "count" => count(ctx, &p, p.initial, threshold).map(Value::from),
        "object" => {
            let initial = Job {
                status: "PENDING".into(),
                attempts: 0,
            };
            let s = strategy(&p, |j: &Job| j.status == "DONE");
            let check = |j: Job, _: &mut _| {
                let attempts = j.attempts + 1;
                let status = if attempts >= threshold {
                    "DONE"
                } else {
                    "PENDING"
                };
                Ok(Job {
                    status: status.into(),
                    attempts,
                })
            };
            let job = ctx.wait_for_condition(p.name.as_deref(), initial, check, s)?;
            Ok(json!({"status": job.status, "attempts": job.attempts}))
        }
        "null" => {
            let s = strategy(&p, |_: &Value| true);
            ctx.wait_for_condition(p.name.as_deref(), Value::Null, |_, _| Ok(Value::Null), s)
        }
        "string" => {
            let limit = usize::try_from(threshold).unwrap_or(0);
            let s = strategy(&p, move |e: &Encoded| e.0.len() >= limit);
            let check = |e: Encoded, _: &mut _| Ok(Encoded(format!("{}x", e.0)));
            let e = ctx.wait_for_condition(p.name.as_deref(), Encoded(String::new()), check, s)?;
            Ok(e.0.into())
        }
        "raise" => {
            let s = strategy(&p, |_: &i64| true);
            let check = |_, _: &mut _| Err(Error::new("CheckError", "the check failed"));
            ctx.wait_for_condition(p.name.as_deref(), 0, check, s)
                .map(Value::from)
        }
        other => Err(Error::new(
            "InvalidInput",
            format!("unknown kind {other:?}"),
        )),
    };
    let value = match polled {
        Err(_) if p.catch => return Ok("recovered".into()),
        r => r?,
    };
    match p.then.as_deref() {
        Some("step") => {
            let n = value.as_i64().unwrap_or(0);
            let times_ten: i64 = ctx.step(None, |_| Ok(n * 10))?;
            Ok(times_ten.into())
        }
        Some("again") => {
            let from = value.as_i64().unwrap_or(0);
            count(ctx, &p, from, p.second_threshold).map(Value::from)
        }
        _ => Ok(value),
    }
}
