//! Map and parallel scenarios (`map`, `parallel`): items or branches described as data
//! ("specs"), a completion config and max concurrency from the params, and the output
//! chosen by `output` (the results, a summary projection, the accessors, or the results
//! after `throw_if_error`). Optionally a wait after the batch, so its replay is seen.

use durable_sdk::{
    BatchResult, Branch, CompletionConfig, Context, Error, MapConfig, ParallelConfig,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ms;

#[derive(Deserialize, Default)]
pub struct Batch {
    #[serde(default)]
    name: Option<String>,
    /// map: the items.
    #[serde(default)]
    items: Vec<Value>,
    /// map: what each item does: `greet`, `double`, `add-index`, `times10`, `spec`.
    #[serde(default)]
    body: Option<String>,
    /// parallel: the branches (specs).
    #[serde(default)]
    branches: Vec<Value>,
    /// parallel: branch names, by index.
    #[serde(default)]
    branch_names: Vec<String>,
    /// map: name each iteration `item-{item}`.
    #[serde(default)]
    item_names: bool,
    #[serde(default)]
    max_concurrency: Option<u32>,
    #[serde(default)]
    min_successful: Option<u32>,
    #[serde(default)]
    tolerated_failure_count: Option<u32>,
    #[serde(default)]
    tolerated_failure_percentage: Option<f64>,
    /// `results` (default), `summary`, `accessors`, `throw`, `counts`.
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    then_wait_ms: Option<u64>,
}

impl Batch {
    fn completion(&self) -> CompletionConfig {
        let mut c = CompletionConfig::default();
        if let Some(n) = self.min_successful {
            c = c.min_successful(n);
        }
        if let Some(n) = self.tolerated_failure_count {
            c = c.tolerated_failure_count(n);
        }
        if let Some(p) = self.tolerated_failure_percentage {
            c = c.tolerated_failure_percentage(p);
        }
        c
    }
}

/// Runs a spec: `{"value": v}` returns v; `{"step": v}` an unnamed step returning v;
/// `{"fail": msg}` fails with `ItemError` / msg; `{"bytes": n}` returns n `x`;
/// `{"wait_ms": n, "then": spec}` an unnamed wait, then the spec; `{"parallel": {...}}` a
/// nested parallel (its params as for the scenario) returning its results; anything else
/// is returned as it is.
pub fn run_spec(ctx: &mut Context, spec: &Value) -> Result<Value, Error> {
    if let Some(v) = spec.get("value") {
        return Ok(v.clone());
    }
    if let Some(v) = spec.get("step") {
        let v = v.clone();
        return ctx.step(None, move |_| Ok(v.clone()));
    }
    if let Some(msg) = spec.get("fail") {
        return Err(Error::new(
            "ItemError",
            msg.as_str().unwrap_or("failed").to_string(),
        ));
    }
    if let Some(n) = spec.get("bytes").and_then(Value::as_u64) {
        return Ok(Value::String("x".repeat(n as usize)));
    }
    if let Some(n) = spec.get("wait_ms").and_then(Value::as_u64) {
        ctx.wait(None, ms(n));
        return run_spec(ctx, spec.get("then").unwrap_or(&Value::Null));
    }
    if let Some(p) = spec.get("parallel") {
        let p: Batch = serde_json::from_value(p.clone())?;
        return parallel(ctx, p);
    }
    Ok(spec.clone())
}

/// `map`.
pub fn map(ctx: &mut Context, p: Batch) -> Result<Value, Error> {
    let mut config = MapConfig::default().completion(p.completion());
    if let Some(n) = p.max_concurrency {
        config = config.max_concurrency(n);
    }
    if p.item_names {
        config = config.item_namer(|item: &Value, _| format!("item-{item}"));
    }
    let body = p.body.clone().unwrap_or_else(|| "spec".into());
    let batch = ctx.map(
        p.name.as_deref(),
        p.items.clone(),
        config,
        |ctx, item, index| match body.as_str() {
            "greet" => {
                let name = item.as_str().unwrap_or_default().to_string();
                ctx.step(None, move |_| Ok(Value::String(format!("Hello, {name}!"))))
            }
            "double" => Ok(json!(item.as_i64().unwrap_or(0) * 2)),
            "times10" => Ok(json!(item.as_i64().unwrap_or(0) * 10)),
            "add-index" => Ok(json!(item.as_i64().unwrap_or(0) + index as i64)),
            _ => run_spec(ctx, &item),
        },
    )?;
    finish(ctx, &p, batch)
}

/// `parallel`.
pub fn parallel(ctx: &mut Context, p: Batch) -> Result<Value, Error> {
    let mut config = ParallelConfig::default().completion(p.completion());
    if let Some(n) = p.max_concurrency {
        config = config.max_concurrency(n);
    }
    let branches: Vec<Branch<'_, Value>> = p
        .branches
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let body = move |ctx: &mut Context| run_spec(ctx, spec);
            match p.branch_names.get(i) {
                Some(name) => Branch::named(name.clone(), body),
                None => Branch::new(body),
            }
        })
        .collect();
    let batch = ctx.parallel(p.name.as_deref(), branches, config)?;
    finish(ctx, &p, batch)
}

/// The output `p.output` asks for, after the wait `then_wait_ms`.
fn finish(ctx: &mut Context, p: &Batch, batch: BatchResult<Value>) -> Result<Value, Error> {
    if let Some(n) = p.then_wait_ms {
        ctx.wait(None, ms(n));
    }
    let out = match p.output.as_deref().unwrap_or("results") {
        "summary" => json!({
            "completionReason": batch.completion_reason.as_str(),
            "status": batch.status().as_str(),
            "successCount": batch.success_count(),
            "failureCount": batch.failure_count(),
            "startedCount": batch.started_count(),
            "totalCount": batch.total_count(),
        }),
        "accessors" => json!({
            "hasFailure": batch.has_failure(),
            "successCount": batch.succeeded().len(),
            "failureCount": batch.failed().len(),
            "errorCount": batch.errors().len(),
        }),
        "counts" => json!({
            "successCount": batch.success_count(),
            "totalCount": batch.total_count(),
        }),
        "throw" => Value::Array(batch.into_result()?),
        _ => Value::Array(batch.into_results()),
    };
    Ok(out)
}
