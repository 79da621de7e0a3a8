//! OTLP traces end to end: a local OTLP/HTTP collector (protobuf, decoded with the
//! OpenTelemetry protocol types) receives what `serve --otlp-endpoint` exports, and the
//! span tree of each execution is checked: one trace per execution across its activations
//! and a restart, continuing the `traceparent` it was invoked with; a span per activation
//! under the execution's; a span per step attempt under its activation, and per wait under
//! the execution; `execution_id`, `function`, `tenant` and `operation_id` attributes; and
//! a guest's outbound request carrying the `traceparent` of the step attempt that sent it.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::{json, Value};
use support::*;

/// One exported span, as the collector decoded it.
#[derive(Clone, Debug)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    start_ns: u64,
    end_ns: u64,
    attrs: HashMap<String, String>,
    error: bool,
    service: String,
}

/// A local OTLP/HTTP collector, and a route that records the headers of requests sent to
/// it (a guest's outbound call).
struct Collector {
    addr: String,
    spans: Arc<Mutex<Vec<Span>>>,
    headers: Arc<Mutex<Vec<HashMap<String, String>>>>,
    _rt: tokio::runtime::Runtime,
}

impl Collector {
    fn start() -> Collector {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        type S = (
            Arc<Mutex<Vec<Span>>>,
            Arc<Mutex<Vec<HashMap<String, String>>>>,
        );
        async fn traces(State((spans, _)): State<S>, body: Bytes) -> StatusCode {
            let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                return StatusCode::BAD_REQUEST;
            };
            let mut out = spans.lock().unwrap();
            for rs in req.resource_spans {
                let service = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        out.push(Span {
                            trace_id: hex::encode(&s.trace_id),
                            span_id: hex::encode(&s.span_id),
                            parent: hex::encode(&s.parent_span_id),
                            name: s.name,
                            start_ns: s.start_time_unix_nano,
                            end_ns: s.end_time_unix_nano,
                            attrs: s
                                .attributes
                                .iter()
                                .map(|kv| {
                                    (
                                        kv.key.clone(),
                                        text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                                    )
                                })
                                .collect(),
                            // STATUS_CODE_ERROR
                            error: s.status.is_some_and(|st| st.code == 2),
                            service: service.clone(),
                        });
                    }
                }
            }
            StatusCode::OK
        }
        async fn echo(State((_, headers)): State<S>, h: HeaderMap) -> &'static str {
            headers.lock().unwrap().push(
                h.iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
            );
            "{}"
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let headers: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(traces))
            .route("/echo", axum::routing::post(echo))
            .with_state((spans.clone(), headers.clone()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector {
            addr,
            spans,
            headers,
            _rt: rt,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans of `trace_id` once `done` says they are all there (at most 15 s).
    fn wait_for(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let start = Instant::now();
        loop {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "spans of {trace_id} incomplete after 15 s: {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn has_execution_span(spans: &[Span]) -> bool {
    !named(spans, "execution").is_empty()
}

#[test]
fn an_execution_is_one_trace_across_its_activations_and_a_restart_continuing_its_traceparent() {
    let collector = Collector::start();
    let mut s = Server::start_with(&["--otlp-endpoint", &collector.url()]);
    s.deploy("hello", "hello");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = s
        .client()
        .post(format!("{}/v1/functions/hello/invoke", s.url))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text());
    let ex: Value = r.json().unwrap();
    let id = ex["execution_id"].as_str().unwrap().to_string();
    assert_eq!(ex["trace_id"], trace_id, "{ex}");

    // The first activation (step 1, then the wait) is exported while the guest is
    // unloaded; then the host is killed and the execution ends after a restart.
    collector.wait_for(trace_id, |sp| !named(sp, "activation").is_empty());
    s.crash_and_restart();
    let done = s.wait_done(&id);
    assert_eq!(done["status"], "succeeded", "{done}");
    let spans = collector.wait_for(trace_id, has_execution_span);

    let execution = named(&spans, "execution");
    assert_eq!(execution.len(), 1, "{spans:#?}");
    let execution = execution[0];
    assert_eq!(
        execution.parent, caller_span,
        "the caller's span is the parent"
    );
    assert!(!execution.error);
    assert_eq!(execution.service, "durable-host");
    for span in &spans {
        assert_eq!(span.attrs["execution_id"], id, "{span:?}");
        assert_eq!(span.attrs["function"], "hello", "{span:?}");
        assert_eq!(span.attrs["tenant"], "default", "{span:?}");
        assert!(span.end_ns >= span.start_ns, "{span:?}");
    }
    let activations = named(&spans, "activation");
    // The first, which suspended on the wait; the one after the restart, which finished.
    assert!(activations.len() >= 2, "{activations:#?}");
    for a in &activations {
        assert_eq!(a.parent, execution.span_id, "{a:?}");
    }
    let outcomes: Vec<&str> = activations
        .iter()
        .map(|a| a.attrs["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"suspended") && outcomes.contains(&"finished"),
        "{outcomes:?}"
    );

    let history = s.history(&id);
    let op_of = |name: &str| {
        history
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {history:#?}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for step in ["Step #1", "Step #2"] {
        let found = named(&spans, &format!("step {step}"));
        assert_eq!(found.len(), 1, "one attempt of {step}: {spans:#?}");
        let span = found[0];
        assert_eq!(span.attrs["operation_id"], op_of(step));
        assert_eq!(span.attrs["attempt"], "1");
        assert!(
            activations.iter().any(|a| a.span_id == span.parent),
            "{step} under an activation: {span:?}"
        );
    }
    // The wait spans activations (and here the restart): under the execution, about 1 s.
    let wait = named(&spans, "wait");
    assert_eq!(wait.len(), 1, "{spans:#?}");
    assert_eq!(wait[0].parent, execution.span_id);
    let wait_ms = (wait[0].end_ns - wait[0].start_ns) / 1_000_000;
    assert!(
        (1_000..30_000).contains(&wait_ms),
        "the wait took {wait_ms} ms"
    );
    // The execution spans all of it.
    for span in &spans {
        assert!(
            span.start_ns >= execution.start_ns && span.end_ns <= execution.end_ns,
            "{span:?} inside {execution:?}"
        );
    }
    // No span twice (ids are derived per position, so a replay exports none again).
    let mut ids: Vec<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "{spans:#?}");
}

#[test]
fn a_guests_outbound_request_carries_its_step_attempts_traceparent_and_failures_are_marked() {
    let collector = Collector::start();
    let allow = collector.addr.clone();
    let s = Server::start_with(&[
        "--otlp-endpoint",
        &collector.url(),
        "--allow-outbound",
        &allow,
    ]);
    s.deploy("conf", "conformance_guest");
    let id = s.invoke(
        "conf",
        &scenario(
            "step-http",
            json!({"url": format!("{}/echo", collector.url()), "method": "POST", "body": {"a": 1}}),
        ),
    );
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let trace_id = ex["trace_id"].as_str().unwrap().to_string();
    let spans = collector.wait_for(&trace_id, has_execution_span);
    let execution = named(&spans, "execution")[0].clone();
    assert_eq!(execution.parent, "", "no traceparent: a root span");
    let step = named(&spans, "step http");
    assert_eq!(step.len(), 1, "{spans:#?}");
    let headers = collector.headers.lock().unwrap().clone();
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(
        headers[0]["traceparent"],
        format!("00-{trace_id}-{}-01", step[0].span_id),
        "the request names the attempt's span"
    );

    // A failing execution: its span and the failed step attempts' spans are errors.
    let id = s.invoke(
        "conf",
        &scenario(
            "step-retry",
            json!({"fail_times": 5, "max_attempts": 2, "delay_ms": 10}),
        ),
    );
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    let trace_id = ex["trace_id"].as_str().unwrap().to_string();
    let spans = collector.wait_for(&trace_id, has_execution_span);
    let execution = named(&spans, "execution")[0];
    assert!(execution.error, "{execution:?}");
    // Each attempt is its own span, and both failed.
    let attempts = named(&spans, "step flaky");
    let mut numbers: Vec<&str> = attempts
        .iter()
        .map(|a| a.attrs["attempt"].as_str())
        .collect();
    numbers.sort();
    assert_eq!(numbers, ["1", "2"], "{attempts:#?}");
    for a in attempts {
        assert!(a.error, "{a:?}");
        assert_eq!(a.attrs["error.type"], "TransientError", "{a:?}");
    }
}
