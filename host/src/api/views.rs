//! JSON renderings of stored records: the API's response shapes.

use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::db::{ExecutionRecord, FunctionRecord, LogRecord, VersionRecord};
use crate::ids;
use crate::journal::{ErrorObject, Event, EventKind, RedriveTrigger};
use crate::settings::Limits;

pub use crate::timer::rfc3339 as timestamp;

/// Stored JSON text as a JSON value (it was validated when stored).
fn payload(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A stored version of a function.
#[derive(Serialize, ToSchema)]
pub struct Version {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    pub size_bytes: u64,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// The function's effective settings (in upload answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<Settings>,
    /// In upload answers: true for a new version (201), false for the same bytes (200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
}

/// A function's effective settings: its own, or the server's defaults, within its tenant's ceilings.
#[derive(Serialize, ToSchema)]
pub struct Settings {
    pub memory_limit_mb: u64,
    pub activation_timeout_secs: f64,
    pub execution_timeout_secs: u64,
    pub retention_secs: u64,
    // Flow control (DESIGN 10): `null` is no limit.
    /// Activations at once (per `concurrency_key` value when set).
    pub max_concurrency: Option<u32>,
    /// The JSON pointer into the input that `max_concurrency` applies per value of.
    pub concurrency_key: Option<String>,
    /// The start rate of new executions.
    pub throttle: Option<Throttle>,
    /// Executions waiting in the run queue beyond which invoke answers 429 `backlog_full`.
    pub max_queued: Option<u32>,
    /// Automatic redrive of failed executions; null: off.
    pub redrive_policy: Option<RedrivePolicy>,
}

/// A start rate: `per_second` on average, at most `burst` at once.
#[derive(Serialize, ToSchema)]
pub struct Throttle {
    pub per_second: f64,
    pub burst: u32,
}

/// A function's automatic redrive of failed executions.
#[derive(Serialize, ToSchema)]
pub struct RedrivePolicy {
    pub max_redrives: u32,
    pub delay_secs: u64,
}

impl From<Limits> for Settings {
    fn from(l: Limits) -> Self {
        Self {
            memory_limit_mb: (l.memory_limit_bytes / (1024 * 1024)) as u64,
            activation_timeout_secs: l.activation_timeout.as_secs_f64(),
            execution_timeout_secs: l.execution_timeout.as_secs(),
            retention_secs: l.retention.as_secs(),
            max_concurrency: None,
            concurrency_key: None,
            throttle: None,
            max_queued: None,
            redrive_policy: l.redrive_policy.map(|p| RedrivePolicy {
                max_redrives: p.max_redrives,
                delay_secs: p.delay_secs,
            }),
        }
    }
}

impl Settings {
    /// With the function's flow-control settings (they have no server default).
    pub fn with_flow(mut self, s: &crate::db::FunctionSettings) -> Self {
        self.max_concurrency = s.max_concurrency;
        self.concurrency_key = s.concurrency_key.clone();
        self.throttle = s.throttle.map(|t| Throttle {
            per_second: t.per_second,
            burst: t.burst,
        });
        self.max_queued = s.max_queued;
        self
    }
}

#[derive(Serialize, ToSchema)]
pub struct Function {
    pub name: String,
    pub latest_version: u32,
    pub created_at: String,
    pub settings: Settings,
    pub versions: Vec<Version>,
}

#[derive(Serialize, ToSchema)]
pub struct FunctionList {
    pub functions: Vec<Function>,
}

/// An execution. `output` is set once it succeeded, `error` once it failed, timed out or
/// was stopped.
#[derive(Serialize, ToSchema)]
pub struct Execution {
    pub execution_id: String,
    pub function: String,
    pub version: u32,
    /// running, suspended, succeeded, failed, timed_out or stopped.
    pub status: &'static str,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Error>,
    pub created_at: String,
    pub updated_at: String,
    /// When it reached its terminal status (RFC 3339 UTC with milliseconds); null while it
    /// runs or is suspended.
    pub ended_at: Option<String>,
    /// How many times it was redriven.
    pub redrive_count: u32,
    /// The execution it was forked from, if any.
    pub forked_from: Option<String>,
    /// The execution whose `invoke` started it (DESIGN 11), if any.
    pub parent_execution_id: Option<String>,
    /// The W3C trace id (32 hex digits) its OTLP spans carry (`--otlp-endpoint`): the one
    /// of the `traceparent` it was invoked with, else derived from its id.
    #[schema(example = "0193e4a7c2f04b8e9d1a2b3c4d5e6f70")]
    pub trace_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExecutionPage {
    /// Newest first.
    pub executions: Vec<Execution>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An error as AWS durable functions report them.
#[derive(Serialize, ToSchema)]
pub struct Error {
    pub error_type: String,
    pub error_message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_data: Option<Value>,
}

/// One history event (see DESIGN.md section 3): `details` depends on the event type.
#[derive(Serialize, ToSchema)]
pub struct HistoryEvent {
    pub event_id: u32,
    pub event_type: &'static str,
    pub sub_type: Option<&'static str>,
    /// The operation id ("1", "2", "1.1" in a child context).
    pub id: Option<String>,
    pub parent_id: Option<String>,
    pub name: Option<String>,
    pub timestamp: String,
    pub details: Value,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct LogLine {
    pub timestamp: String,
    /// debug, info, warn or error.
    pub level: &'static str,
    /// log (the replay-aware logger), stdout or stderr.
    pub stream: &'static str,
    pub message: String,
    pub operation_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Logs {
    pub logs: Vec<LogLine>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The answer to a callback completion or heartbeat.
#[derive(Serialize, ToSchema)]
pub struct CallbackAnswer {
    pub callback_id: String,
    /// succeeded, failed or pending (after a heartbeat).
    pub status: &'static str,
}

/// The body of `GET /v1/functions/{name}` errors and every other error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// bad_request, invalid_json, invalid_component, not_found, conflict,
    /// payload_too_large or internal.
    pub code: String,
    pub message: String,
}

fn error(e: &ErrorObject) -> Error {
    Error {
        error_type: e.error_type.clone(),
        error_message: e.error_message.clone(),
        error_data: e.error_data.as_deref().map(payload),
    }
}

pub fn version(name: &str, v: &VersionRecord) -> Version {
    Version {
        name: name.to_string(),
        version: v.version,
        sha256: v.sha256.clone(),
        size_bytes: v.size_bytes,
        created_at: timestamp(v.created_ms),
        settings: None,
        created: None,
    }
}

pub fn function(f: &FunctionRecord, versions: &[VersionRecord], limits: Limits) -> Function {
    Function {
        name: f.name.clone(),
        latest_version: f.latest_version,
        created_at: timestamp(f.created_ms),
        settings: Settings::from(limits).with_flow(&f.settings),
        versions: versions.iter().map(|v| version(&f.name, v)).collect(),
    }
}

pub fn execution(r: &ExecutionRecord) -> Execution {
    Execution {
        execution_id: ids::execution_id_to_string(&r.id),
        function: r.function.clone(),
        version: r.version,
        status: r.status.as_str(),
        input: payload(&r.input),
        output: r.output.as_deref().map(payload),
        error: r.error.as_ref().map(error),
        created_at: timestamp(r.created_ms),
        updated_at: timestamp(r.updated_ms),
        ended_at: r.end_ms().map(timestamp),
        redrive_count: r.redrive_count,
        forked_from: r.forked_from.as_ref().map(ids::execution_id_to_string),
        parent_execution_id: r
            .parent_execution_id
            .as_ref()
            .map(ids::execution_id_to_string),
        trace_id: hex::encode(r.trace.map_or(r.id, |t| t.trace_id)),
    }
}

pub fn event(e: &Event) -> HistoryEvent {
    let mut d = Map::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_string(), v);
    };
    match &e.kind {
        EventKind::ExecutionStarted { input } => put("input", payload(input)),
        EventKind::ExecutionStartedAt { input, start_ms } => {
            put("input", payload(input));
            put("start_at", json!(timestamp(*start_ms)));
        }
        EventKind::StepStarted { attempt, .. } | EventKind::ConditionStarted { attempt, .. } => {
            put("attempt", json!(attempt))
        }
        EventKind::ConditionSucceeded {
            state,
            attempt,
            next_attempt_delay_ms,
            ..
        } => {
            put("result", payload(state));
            put("attempt", json!(attempt));
            if let Some(ms) = next_attempt_delay_ms {
                put("next_attempt_delay_ms", json!(ms));
            }
        }
        EventKind::ConditionFailed {
            error: err,
            attempt,
            ..
        } => {
            put("error", json!(error(err)));
            put("attempt", json!(attempt));
        }
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
            put("error", json!(error(err)));
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
        | EventKind::ExecutionStopped { error: err } => put("error", json!(error(err))),
        EventKind::ContextStarted { .. } => {}
        EventKind::BatchStarted {
            count,
            max_concurrency,
            policy,
            ..
        } => {
            put("count", json!(count));
            if let Some(m) = max_concurrency {
                put("max_concurrency", json!(m));
            }
            let mut completion = serde_json::Map::new();
            if let Some(n) = policy.min_successful {
                completion.insert("min_successful".into(), json!(n));
            }
            if let Some(n) = policy.tolerated_failure_count {
                completion.insert("tolerated_failure_count".into(), json!(n));
            }
            if let Some(p) = policy.tolerated_failure_percentage {
                completion.insert("tolerated_failure_percentage".into(), json!(p));
            }
            if !completion.is_empty() {
                put("completion", Value::Object(completion));
            }
        }
        EventKind::InvocationCompleted {
            started_ms,
            error: err,
        } => {
            put("start", json!(timestamp(*started_ms)));
            put("end", json!(timestamp(e.at_ms)));
            if let Some(err) = err {
                put("error", json!(error(err)));
            }
        }
        EventKind::ExecutionSucceeded { output } => put("result", payload(output)),
        EventKind::ExecutionRedriven {
            key_id,
            trigger,
            from_version,
            to_version,
            redrive_count,
        } => {
            put("key_id", json!(key_id));
            put("trigger", json!(trigger.as_str()));
            if let RedriveTrigger::Job(job) = trigger {
                put("job_id", json!(job));
            }
            put("from_version", json!(from_version));
            put("to_version", json!(to_version));
            put("redrive_count", json!(redrive_count));
        }
        EventKind::ChainedInvokeStarted {
            function,
            input,
            version,
            callee,
            tenant_id,
            ..
        } => {
            put("function_name", json!(function));
            put("input", payload(input));
            if let Some(v) = version {
                put("executed_version", json!(v));
            }
            if let Some(c) = callee {
                put("durable_execution_id", json!(c));
            }
            if let Some(t) = tenant_id {
                put("tenant_id", json!(t));
            }
        }
        EventKind::ChainedInvokeSucceeded { result, .. } => put("result", payload(result)),
        EventKind::ChainedInvokeFailed { error: err, .. }
        | EventKind::ChainedInvokeTimedOut { error: err, .. }
        | EventKind::ChainedInvokeStopped { error: err, .. } => put("error", json!(error(err))),
    }
    let op = e.kind.op();
    HistoryEvent {
        event_id: e.seq,
        event_type: e.kind.event_type(),
        sub_type: e.kind.sub_type(),
        id: op.map(|o| o.id.clone()),
        parent_id: op.and_then(|o| o.parent.clone()),
        name: op.and_then(|o| o.name.clone()),
        timestamp: timestamp(e.at_ms),
        details: Value::Object(d),
    }
}

pub fn log(l: &LogRecord) -> LogLine {
    LogLine {
        timestamp: timestamp(l.at_ms),
        level: l.level.as_str(),
        stream: l.stream.as_str(),
        message: l.message.clone(),
        operation_id: l.op_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_milliseconds_and_saturate_at_the_last_representable_time() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_764_590_400_123, "2025-12-01T12:00:00.123Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (253_402_300_800_000, "9999-12-31T23:59:59.999Z"),
            (u64::MAX, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, expected) in cases {
            assert_eq!(timestamp(ms), expected, "{ms}");
        }
    }

    #[test]
    fn a_delayed_execution_started_event_shows_its_start_time() {
        let e = Event {
            seq: 1,
            at_ms: 0,
            kind: EventKind::ExecutionStartedAt {
                input: "{}".into(),
                start_ms: 1_764_590_400_123,
            },
        };
        let v = serde_json::to_value(event(&e)).unwrap();
        assert_eq!(v["event_type"], "ExecutionStarted");
        assert_eq!(
            v["details"],
            json!({"input": {}, "start_at": "2025-12-01T12:00:00.123Z"})
        );
    }
}
