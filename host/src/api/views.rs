//! JSON renderings of stored records: the API's response shapes.

use serde_json::{json, Map, Value};

use crate::db::{ExecutionRecord, FunctionRecord, LogRecord, VersionRecord};
use crate::ids;
use crate::journal::{ErrorObject, Event, EventKind};

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // Always three fractional digits, so timestamps also sort as strings.
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// Stored JSON text as a JSON value (it was validated when stored).
fn payload(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn error(e: &ErrorObject) -> Value {
    let mut v = json!({"error_type": e.error_type, "error_message": e.error_message});
    if let Some(d) = &e.error_data {
        v["error_data"] = payload(d);
    }
    v
}

pub fn version(name: &str, v: &VersionRecord) -> Value {
    json!({
        "name": name,
        "version": v.version,
        "sha256": v.sha256,
        "size_bytes": v.size_bytes,
        "created_at": timestamp(v.created_ms),
    })
}

pub fn function(f: &FunctionRecord, versions: &[VersionRecord]) -> Value {
    json!({
        "name": f.name,
        "latest_version": f.latest_version,
        "created_at": timestamp(f.created_ms),
        "versions": versions.iter().map(|v| version(&f.name, v)).collect::<Vec<_>>(),
    })
}

pub fn execution(r: &ExecutionRecord) -> Value {
    json!({
        "execution_id": ids::execution_id_to_string(&r.id),
        "function": r.function,
        "version": r.version,
        "status": r.status.as_str(),
        "input": payload(&r.input),
        "output": r.output.as_deref().map(payload),
        "error": r.error.as_ref().map(error),
        "created_at": timestamp(r.created_ms),
        "updated_at": timestamp(r.updated_ms),
    })
}

pub fn event(e: &Event) -> Value {
    let mut d = Map::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_string(), v);
    };
    match &e.kind {
        EventKind::ExecutionStarted { input } => put("input", payload(input)),
        EventKind::StepStarted { attempt, .. } => put("attempt", json!(attempt)),
        EventKind::StepSucceeded {
            result, attempt, ..
        } => {
            put("result", payload(result));
            put("attempt", json!(attempt));
        }
        EventKind::StepFailed {
            error: err,
            attempt,
            next_attempt_delay_ms,
            ..
        } => {
            put("error", error(err));
            put("attempt", json!(attempt));
            if let Some(ms) = next_attempt_delay_ms {
                put("next_attempt_delay_ms", json!(ms));
            }
        }
        EventKind::WaitStarted {
            duration_ms,
            scheduled_end_ms,
            ..
        } => {
            put("duration_ms", json!(duration_ms));
            put("scheduled_end", json!(timestamp(*scheduled_end_ms)));
        }
        EventKind::WaitSucceeded { duration_ms, .. } => put("duration_ms", json!(duration_ms)),
        EventKind::CallbackStarted {
            callback_id,
            timeout_ms,
            heartbeat_timeout_ms,
            ..
        } => {
            put("callback_id", json!(callback_id));
            if let Some(t) = timeout_ms {
                put("timeout_ms", json!(t));
            }
            if let Some(t) = heartbeat_timeout_ms {
                put("heartbeat_timeout_ms", json!(t));
            }
        }
        EventKind::CallbackSucceeded { result, .. }
        | EventKind::ContextSucceeded { result, .. } => put("result", payload(result)),
        EventKind::CallbackFailed { error: err, .. }
        | EventKind::CallbackTimedOut { error: err, .. }
        | EventKind::ContextFailed { error: err, .. }
        | EventKind::ExecutionFailed { error: err }
        | EventKind::ExecutionTimedOut { error: err }
        | EventKind::ExecutionStopped { error: err } => put("error", error(err)),
        EventKind::ContextStarted { .. } => {}
        EventKind::InvocationCompleted {
            started_ms,
            error: err,
        } => {
            put("start", json!(timestamp(*started_ms)));
            put("end", json!(timestamp(e.at_ms)));
            if let Some(err) = err {
                put("error", error(err));
            }
        }
        EventKind::ExecutionSucceeded { output } => put("result", payload(output)),
    }
    let op = e.kind.op();
    json!({
        "event_id": e.seq,
        "event_type": e.kind.event_type(),
        "sub_type": e.kind.sub_type(),
        "id": op.map(|o| o.id.clone()),
        "parent_id": op.and_then(|o| o.parent.clone()),
        "name": op.and_then(|o| o.name.clone()),
        "timestamp": timestamp(e.at_ms),
        "details": Value::Object(d),
    })
}

pub fn log(l: &LogRecord) -> Value {
    json!({
        "timestamp": timestamp(l.at_ms),
        "level": l.level.as_str(),
        "stream": l.stream.as_str(),
        "message": l.message,
        "operation_id": l.op_id,
    })
}
