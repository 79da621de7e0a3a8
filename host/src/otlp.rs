//! OTLP traces (`serve --otlp-endpoint URL`): one trace per execution, across all its
//! activations and restarts.
//!
//! The trace of an execution is drawn from its history, the one record of what it did, when
//! an activation ends: a span for the execution (from its creation to its terminal event,
//! exported when it ends), a span per activation, and under them a span per step attempt
//! (and per check of a `wait_for_condition`), per wait and per callback, each with its
//! recorded start and end times. So a span is exported once, after its end is journaled,
//! and an activation that crashed leaves no half-open span: its operations show under the
//! activation that recorded their end.
//!
//! Ids: the trace id is the execution's (a ULID is 16 bytes, like a trace id) unless the
//! invocation carried a W3C `traceparent`, whose trace is continued (kept on the execution
//! record, `TraceRef`). Span ids of the execution and of its operations are derived from
//! the execution id and the operation's position, so they are the same in every
//! activation and after a restart: a guest's outbound request during a step attempt
//! carries a `traceparent` naming that attempt's span before the span is exported.
//!
//! Architecture invariant: tracing reads history and never writes it; with no endpoint
//! configured nothing here runs (`Shared::tracer` is `None`) and no history is re-read.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer};
use sha2::{Digest, Sha256};

use crate::db::{ExecId, TraceRef};
use crate::journal::{ErrorObject, Event, EventKind, OpRef};

/// How often finished spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_millis(500);

/// The exporter and the tracer spans are built with.
pub struct Tracer {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Tracer {
    /// Traces to the OTLP/HTTP (protobuf) collector at `endpoint`: a base URL
    /// (`http://host:4318`) gets the standard `/v1/traces` path; a URL with a path is used
    /// as given.
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        use opentelemetry_otlp::{Protocol, WithExportConfig};
        let url = traces_url(endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(10))
            .build()?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(EXPORT_INTERVAL)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("durable-host")
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("durable-host");
        Ok(Self { provider, tracer })
    }

    /// Sends what is buffered and stops the exporter (at shutdown).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP exporter shutdown");
        }
    }

    /// Begin tracing an activation of `exec` (of `function` of `tenant`), whose history so
    /// far is `history`.
    pub fn begin(
        &self,
        exec: Ids,
        tenant: &str,
        function: &str,
        history: &[Event],
    ) -> ActivationTrace {
        let mut starts = Starts::default();
        for e in history {
            starts.note(e);
        }
        let attrs = vec![
            KeyValue::new(
                "execution_id",
                crate::ids::execution_id_to_string(&exec.execution),
            ),
            KeyValue::new("function", function.to_string()),
            KeyValue::new("tenant", tenant.to_string()),
        ];
        ActivationTrace {
            exec,
            attrs,
            after_seq: history.last().map_or(0, |e| e.seq),
            started: SystemTime::now(),
            span_id: SpanId::from_bytes(rand::random::<[u8; 8]>()),
            starts,
        }
    }

    /// End an activation: its span, and the spans of what it recorded (`new`, the events
    /// after those `begin` saw), the execution's own once it ended.
    pub fn end(&self, mut act: ActivationTrace, new: &[Event], outcome: &str) {
        let attrs = std::mem::take(&mut act.attrs);
        let attrs = attrs.as_slice();
        // The activation ends now; an execution that ended in it ends with it.
        let ended = SystemTime::now().max(act.started);
        let exec_cx = act.exec.execution_context();
        let act_cx = Context::new().with_remote_span_context(SpanContext::new(
            act.exec.trace_id,
            act.span_id,
            act.exec.flags,
            false,
            TraceState::default(),
        ));
        let with = |extra: Vec<KeyValue>| attrs.iter().cloned().chain(extra).collect::<Vec<_>>();
        for e in new {
            let at = time(e.at_ms);
            if let Some(end) = Ended::of(&e.kind) {
                let op = end.op;
                // A step attempt runs inside its activation; a wait or a callback spans
                // activations, so it belongs to the execution.
                let (parent, id, start) = match end.attempt {
                    Some(n) => (
                        &act_cx,
                        act.exec.step_span(&op.id, n),
                        act.starts.step(&op.id, n),
                    ),
                    None => (
                        &exec_cx,
                        act.exec.op_span(end.kind, &op.id),
                        act.starts.other(&op.id),
                    ),
                };
                let name = op_name(end.kind, op);
                let attrs = with(op_attrs(op, end.attempt));
                self.span(parent, id, name, start.unwrap_or(at), at, attrs, end.error);
            }
            match &e.kind {
                EventKind::ExecutionSucceeded { .. } => {
                    self.execution_span(&act.exec, ended.max(at), attrs, None);
                }
                EventKind::ExecutionFailed { error }
                | EventKind::ExecutionTimedOut { error }
                | EventKind::ExecutionStopped { error } => {
                    self.execution_span(&act.exec, ended.max(at), attrs, Some(error));
                }
                _ => {}
            }
            act.starts.note(e);
        }
        let mut span = self
            .tracer
            .span_builder("activation")
            .with_kind(SpanKind::Internal)
            .with_span_id(act.span_id)
            .with_start_time(act.started)
            .with_attributes(with(vec![KeyValue::new("outcome", outcome.to_string())]))
            .start_with_context(&self.tracer, &exec_cx);
        span.end_with_timestamp(ended);
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &self,
        parent: &Context,
        id: SpanId,
        name: String,
        start: SystemTime,
        end: SystemTime,
        attrs: Vec<KeyValue>,
        error: Option<&ErrorObject>,
    ) {
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_span_id(id)
            .with_start_time(start)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, parent);
        if let Some(e) = error {
            span.set_attribute(KeyValue::new("error.type", e.error_type.clone()));
            span.set_status(Status::error(e.error_message.clone()));
        }
        span.end_with_timestamp(end.max(start));
    }

    fn execution_span(
        &self,
        exec: &Ids,
        end: SystemTime,
        attrs: &[KeyValue],
        error: Option<&ErrorObject>,
    ) {
        let parent = match exec.remote_parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                exec.trace_id,
                p,
                exec.flags,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let mut span = self
            .tracer
            .span_builder("execution")
            .with_kind(SpanKind::Internal)
            .with_trace_id(exec.trace_id)
            .with_span_id(exec.span_id())
            .with_start_time(time(exec.created_ms))
            .with_attributes(attrs.to_vec())
            .start_with_context(&self.tracer, &parent);
        if let Some(e) = error {
            span.set_attribute(KeyValue::new("error.type", e.error_type.clone()));
            span.set_status(Status::error(e.error_message.clone()));
        }
        span.end_with_timestamp(end.max(time(exec.created_ms)));
    }
}

/// `endpoint` as the URL spans are POSTed to.
fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => anyhow::bail!("--otlp-endpoint {endpoint:?}: expected an http:// or https:// URL"),
    }
    if uri.authority().is_none() {
        anyhow::bail!("--otlp-endpoint {endpoint:?}: no host");
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_string(),
    })
}

/// The trace identity of one execution.
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    pub execution: ExecId,
    pub trace_id: TraceId,
    /// The span of the `traceparent` it was invoked with.
    pub remote_parent: Option<SpanId>,
    pub flags: TraceFlags,
    pub created_ms: u64,
}

impl Ids {
    pub fn of(execution: ExecId, trace: Option<&TraceRef>, created_ms: u64) -> Self {
        match trace {
            Some(t) => Ids {
                execution,
                trace_id: TraceId::from_bytes(t.trace_id),
                remote_parent: Some(SpanId::from_bytes(t.parent_span_id)),
                flags: TraceFlags::new(t.flags),
                created_ms,
            },
            None => Ids {
                execution,
                trace_id: TraceId::from_bytes(execution),
                remote_parent: None,
                flags: TraceFlags::SAMPLED,
                created_ms,
            },
        }
    }

    /// The execution's span: the parent of its activations, waits and callbacks.
    fn span_id(&self) -> SpanId {
        self.derive(&["execution"])
    }

    fn execution_context(&self) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            self.span_id(),
            self.flags,
            false,
            TraceState::default(),
        ))
    }

    /// The span of attempt `attempt` of step `op`.
    pub fn step_span(&self, op: &str, attempt: u32) -> SpanId {
        self.derive(&["step", op, &attempt.to_string()])
    }

    fn op_span(&self, kind: &str, op: &str) -> SpanId {
        self.derive(&[kind, op])
    }

    /// The `traceparent` header naming `span` in this execution's trace.
    pub fn traceparent(&self, span: SpanId) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, span, self.flags.to_u8())
    }

    fn derive(&self, parts: &[&str]) -> SpanId {
        let mut h = Sha256::new();
        h.update(self.execution);
        for p in parts {
            h.update([0]);
            h.update(p.as_bytes());
        }
        let digest = h.finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        // The all-zero span id is invalid; a digest that starts so is astronomically rare.
        if id == [0; 8] {
            id[7] = 1;
        }
        SpanId::from_bytes(id)
    }
}

/// A W3C `traceparent` header value (`00-<trace id>-<span id>-<flags>`), read as the
/// invocation's parent; `None` for anything else (the specification says to ignore an
/// invalid one and start a new trace).
pub fn parse_traceparent(value: &str) -> Option<TraceRef> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let hex_of = |s: &str, n: usize| -> Option<Vec<u8>> {
        (s.len() == 2 * n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| hex::decode(s).ok())
        .flatten()
    };
    let trace_id: [u8; 16] = hex_of(trace, 16)?.try_into().ok()?;
    let parent_span_id: [u8; 8] = hex_of(span, 8)?.try_into().ok()?;
    let flags = *hex_of(flags, 1)?.first()?;
    if trace_id == [0; 16] || parent_span_id == [0; 8] {
        return None;
    }
    Some(TraceRef {
        trace_id,
        parent_span_id,
        flags: flags & 1,
    })
}

/// An activation being traced.
pub struct ActivationTrace {
    pub exec: Ids,
    /// `execution_id`, `function`, `tenant`: on every span.
    attrs: Vec<KeyValue>,
    /// The last event before the activation began: what it records comes after.
    pub after_seq: u32,
    started: SystemTime,
    span_id: SpanId,
    starts: Starts,
}

impl ActivationTrace {
    /// What the activation's outbound requests name as their parent.
    pub fn parent(&self) -> Parent {
        Parent {
            exec: self.exec,
            activation: self.span_id,
        }
    }
}

/// The spans a guest's outbound request may name as its parent.
#[derive(Clone, Copy, Debug)]
pub struct Parent {
    exec: Ids,
    activation: SpanId,
}

impl Parent {
    /// The `traceparent` a guest's outbound request carries now: the live step attempt's
    /// span, else the activation's.
    pub fn traceparent(&self, live_step: Option<(&str, u32)>) -> String {
        let span = match live_step {
            Some((op, attempt)) => self.exec.step_span(op, attempt),
            None => self.activation,
        };
        self.exec.traceparent(span)
    }
}

/// An event that ends an operation's span: a step attempt (`attempt`), a wait or a
/// callback.
struct Ended<'a> {
    kind: &'static str,
    op: &'a OpRef,
    attempt: Option<u32>,
    error: Option<&'a ErrorObject>,
}

impl<'a> Ended<'a> {
    fn of(kind: &'a EventKind) -> Option<Self> {
        let (kind, op, attempt, error) = match kind {
            EventKind::StepSucceeded { op, attempt, .. }
            | EventKind::ConditionSucceeded { op, attempt, .. } => {
                ("step", op, Some(*attempt), None)
            }
            EventKind::StepFailed {
                op, attempt, error, ..
            }
            | EventKind::ConditionFailed { op, attempt, error } => {
                ("step", op, Some(*attempt), Some(error))
            }
            EventKind::WaitSucceeded { op, .. } => ("wait", op, None, None),
            EventKind::CallbackSucceeded { op, .. } => ("callback", op, None, None),
            EventKind::CallbackFailed { op, error } | EventKind::CallbackTimedOut { op, error } => {
                ("callback", op, None, Some(error))
            }
            _ => return None,
        };
        Some(Ended {
            kind,
            op,
            attempt,
            error,
        })
    }
}

/// When each operation's current attempt (or wait, or callback) began, from the events.
#[derive(Default)]
struct Starts {
    steps: HashMap<(String, u32), u64>,
    others: HashMap<String, u64>,
}

impl Starts {
    fn note(&mut self, e: &Event) {
        match &e.kind {
            EventKind::StepStarted { op, attempt }
            | EventKind::ConditionStarted { op, attempt } => {
                self.steps.insert((op.id.clone(), *attempt), e.at_ms);
            }
            EventKind::StepSucceeded { op, attempt, .. }
            | EventKind::StepFailed { op, attempt, .. }
            | EventKind::ConditionSucceeded { op, attempt, .. }
            | EventKind::ConditionFailed { op, attempt, .. } => {
                self.steps.remove(&(op.id.clone(), *attempt));
            }
            EventKind::WaitStarted { op, .. } | EventKind::CallbackStarted { op, .. } => {
                self.others.insert(op.id.clone(), e.at_ms);
            }
            EventKind::WaitSucceeded { op, .. }
            | EventKind::CallbackSucceeded { op, .. }
            | EventKind::CallbackFailed { op, .. }
            | EventKind::CallbackTimedOut { op, .. } => {
                self.others.remove(&op.id);
            }
            _ => {}
        }
    }

    fn step(&self, op: &str, attempt: u32) -> Option<SystemTime> {
        self.steps
            .get(&(op.to_string(), attempt))
            .map(|&ms| time(ms))
    }

    fn other(&self, op: &str) -> Option<SystemTime> {
        self.others.get(op).map(|&ms| time(ms))
    }
}

fn op_name(kind: &str, op: &OpRef) -> String {
    match &op.name {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_string(),
    }
}

fn op_attrs(op: &OpRef, attempt: Option<u32>) -> Vec<KeyValue> {
    let mut v = vec![KeyValue::new("operation_id", op.id.clone())];
    if let Some(name) = &op.name {
        v.push(KeyValue::new("operation_name", name.clone()));
    }
    if let Some(parent) = &op.parent {
        v.push(KeyValue::new("parent_operation_id", parent.clone()));
    }
    if let Some(a) = attempt {
        v.push(KeyValue::new("attempt", i64::from(a)));
    }
    v
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_are_read_as_the_w3c_specification_says() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = parse_traceparent(ok).unwrap();
        assert_eq!(hex::encode(t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(t.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(t.flags, 1);
        let cases = [
            ("", false),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                true,
            ),
            // A later version may append fields; version 00 may not.
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
                false,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                false,
            ),
        ];
        for (value, valid) in cases {
            assert_eq!(parse_traceparent(value).is_some(), valid, "{value:?}");
        }
    }

    #[test]
    fn an_endpoint_without_a_path_gets_the_standard_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c.example/otlp/traces").unwrap(),
            "https://c.example/otlp/traces"
        );
        for bad in ["127.0.0.1:4318", "ftp://x/", "not a url"] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn span_ids_are_stable_per_position_and_distinct_between_positions() {
        let id = crate::ids::new_execution_id();
        let a = Ids::of(id, None, 0);
        let b = Ids::of(id, None, 0);
        assert_eq!(a.step_span("1", 1), b.step_span("1", 1));
        assert_ne!(a.step_span("1", 1), a.step_span("1", 2));
        assert_ne!(a.step_span("1", 1), a.op_span("wait", "1"));
        assert_ne!(a.span_id(), a.step_span("1", 1));
        assert_eq!(a.trace_id, TraceId::from_bytes(id));
        let other = Ids::of(crate::ids::new_execution_id(), None, 0);
        assert_ne!(a.step_span("1", 1), other.step_span("1", 1));
    }
}
