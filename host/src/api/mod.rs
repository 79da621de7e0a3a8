//! The HTTP edge: the only module that knows axum and the JSON shapes of the API.
//!
//! Handlers validate input, call the services, and render records. Every error is
//! `{"error": {"code", "message"}}` via `ApiError`.

mod error;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub use error::ApiError;

use crate::callbacks::Completion;
use crate::db::{
    Batch, Durability, ExecId, ExecutionRecord, IdempotencyRecord, Status, StopRecord,
};
use crate::journal::{ErrorObject, EventKind, Journal};
use crate::scheduler::ExecKey;
use crate::{ids, Host, DEFAULT_TENANT};

type AppState = State<Arc<Host>>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// The longest `?wait=` honoured: a client that wants longer polls again.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

pub fn router(host: Arc<Host>) -> Router {
    let upload_limit = host.opts.max_upload_bytes;
    // JSON bodies: a payload at the limit, plus room for the envelope.
    let json_limit = host.opts.payload.max_payload_bytes + 64 * 1024;
    let functions = Router::new()
        .route(
            "/v1/functions/{name}",
            put(put_function).get(get_function).delete(delete_function),
        )
        .layer(DefaultBodyLimit::max(upload_limit));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/v1/functions", get(list_functions))
        .route("/v1/functions/{name}/invoke", post(invoke))
        .route("/v1/executions", get(list_executions))
        .route("/v1/executions/{id}", get(get_execution))
        .route("/v1/executions/{id}/history", get(history))
        .route("/v1/executions/{id}/logs", get(logs))
        .route("/v1/executions/{id}/stop", post(stop))
        .route("/v1/callbacks/{id}/succeed", post(callback_succeed))
        .route("/v1/callbacks/{id}/fail", post(callback_fail))
        .route("/v1/callbacks/{id}/heartbeat", post(callback_heartbeat))
        .layer(DefaultBodyLimit::max(json_limit))
        .merge(functions)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(host)
}

/// The tenant of a request. One tenant for now; API keys will select it.
fn tenant() -> &'static str {
    DEFAULT_TENANT
}

fn body(b: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    b.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("the request body is too large: {}", r.body_text()))
        } else {
            ApiError::BadRequest(r.body_text())
        }
    })
}

/// A JSON body as text (empty means `null`), checked against the payload limit.
fn json_text(host: &Host, b: &Bytes, what: &str) -> ApiResult<String> {
    let max = host.opts.payload.max_payload_bytes;
    if b.len() > max {
        return Err(ApiError::TooLarge(format!(
            "the {what} is {} bytes; the limit is {max} bytes",
            b.len()
        )));
    }
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok("null".into());
    }
    let text = std::str::from_utf8(b)
        .map_err(|_| ApiError::InvalidJson(format!("the {what} is not UTF-8")))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::InvalidJson(format!("the {what} is not valid JSON: {e}")))?;
    Ok(text.to_string())
}

/// Function names: 1-64 of `[A-Za-z0-9_.-]`, not starting with a dot.
fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid function name {name:?}: use 1-64 letters, digits, '_', '-' or '.'"
        )))
    }
}

fn exec_id(s: &str) -> ApiResult<ExecId> {
    ids::parse_execution_id(s)
        .ok_or_else(|| ApiError::NotFound(format!("execution {s:?} not found")))
}

fn load_execution(host: &Host, id: &str) -> ApiResult<ExecutionRecord> {
    let eid = exec_id(id)?;
    host.db
        .execution(tenant(), &eid)?
        .ok_or_else(|| ApiError::NotFound(format!("execution {id:?} not found")))
}

async fn put_function(
    State(host): AppState,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    check_name(&name)?;
    let b = body(b)?;
    let up = host.registry.upload(tenant(), &name, b.to_vec()).await?;
    let status = if up.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(views::version(&name, &up.version))).into_response())
}

async fn list_functions(State(host): AppState) -> ApiResult {
    let mut out = Vec::new();
    for f in host.db.functions(tenant())? {
        if !f.deleted {
            let versions = host.db.versions(tenant(), &f.name)?;
            out.push(views::function(&f, &versions));
        }
    }
    Ok(Json(json!({ "functions": out })).into_response())
}

async fn get_function(State(host): AppState, Path(name): Path<String>) -> ApiResult {
    let f = host
        .db
        .function(tenant(), &name)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| ApiError::NotFound(format!("function {name:?} not found")))?;
    let versions = host.db.versions(tenant(), &name)?;
    Ok(Json(views::function(&f, &versions)).into_response())
}

async fn delete_function(State(host): AppState, Path(name): Path<String>) -> ApiResult {
    let mut f = host
        .db
        .function(tenant(), &name)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| ApiError::NotFound(format!("function {name:?} not found")))?;
    f.deleted = true;
    let mut batch = Batch::new();
    batch.put_function(tenant(), &f);
    host.db.commit(batch, Durability::Sync).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct InvokeQuery {
    wait: Option<String>,
}

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 256;

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_string()))
}

async fn invoke(
    State(host): AppState,
    Path(name): Path<String>,
    Query(q): Query<InvokeQuery>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    check_name(&name)?;
    let wait = match q.wait.as_deref() {
        None => None,
        Some(s) => {
            let secs: f64 = s
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("wait={s:?}: expected a number of seconds"))
                })?;
            Some(Duration::from_secs_f64(secs).min(MAX_WAIT))
        }
    };
    let key = idempotency_key(&headers)?;
    let b = body(b)?;
    let input = json_text(&host, &b, "input")?;
    let f = host
        .db
        .function(tenant(), &name)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| ApiError::NotFound(format!("function {name:?} not found")))?;
    let id = ids::new_execution_id();
    if let Some(key) = key {
        // The same JSON value, whatever its spacing: hash its canonical form.
        let canonical = serde_json::from_str::<Value>(&input)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| input.clone());
        let claim = IdempotencyRecord {
            execution: id,
            input_sha256: crate::registry::sha256_hex(canonical.as_bytes()),
        };
        let mut stale = None;
        while let Some(held) = host
            .db
            .claim_idempotency(tenant(), &name, &key, &claim, stale.as_ref())
            .await?
        {
            if held.input_sha256 != claim.input_sha256 {
                return Err(ApiError::Conflict(format!(
                    "Idempotency-Key {key:?} was used for {name} with a different input"
                )));
            }
            match host.db.execution(tenant(), &held.execution)? {
                Some(rec) => return respond(&host, rec, wait).await,
                // Claimed by an invocation that never created its execution (a crash in
                // between): take the key over.
                None => stale = Some(held),
            }
        }
    }
    let now = host.clock.now_ms();
    let rec = ExecutionRecord {
        id,
        tenant: tenant().to_string(),
        function: name,
        version: f.latest_version,
        status: Status::Running,
        input: input.clone(),
        output: None,
        error: None,
        created_ms: now,
        updated_ms: now,
    };
    let mut journal = Journal::from_events(&[]);
    let started = journal.record(now, EventKind::ExecutionStarted { input });
    let mut batch = Batch::new();
    batch.put_execution(&rec);
    batch.put_event(&id, &started);
    host.db.commit(batch, Durability::Sync).await?;
    host.metrics.created();
    let finished = wait.map(|_| host.scheduler.on_finished(id));
    host.scheduler.wake(ExecKey {
        tenant: tenant().into(),
        id,
    });
    match (wait, finished) {
        (Some(wait), Some(rx)) => {
            let _ = tokio::time::timeout(wait, rx).await;
            let rec = host.db.execution(tenant(), &id)?.unwrap_or(rec);
            Ok(execution_response(&rec))
        }
        _ => Ok(execution_response(&rec)),
    }
}

/// An execution as the answer to an invoke: 200 once it has ended, else 202.
fn execution_response(rec: &ExecutionRecord) -> Response {
    let status = if rec.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(views::execution(rec))).into_response()
}

/// Answer with an existing execution, waiting for its end up to `wait`.
async fn respond(host: &Host, rec: ExecutionRecord, wait: Option<Duration>) -> ApiResult {
    let Some(wait) = wait.filter(|_| !rec.status.is_terminal()) else {
        return Ok(execution_response(&rec));
    };
    let rx = host.scheduler.on_finished(rec.id);
    // It may have ended between the read above and registering.
    let now = host.db.execution(tenant(), &rec.id)?.unwrap_or(rec);
    if !now.status.is_terminal() {
        let _ = tokio::time::timeout(wait, rx).await;
    }
    let rec = host.db.execution(tenant(), &now.id)?.unwrap_or(now);
    Ok(execution_response(&rec))
}

#[derive(Deserialize)]
struct ListQuery {
    function: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_executions(State(host): AppState, Query(q): Query<ListQuery>) -> ApiResult {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status={s:?}: expected one of running, suspended, succeeded, failed, timed_out, stopped"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(ids::parse_execution_id(c).ok_or_else(|| {
            ApiError::BadRequest(format!("cursor={c:?} is not a cursor from this API"))
        })?),
    };
    let mut out = Vec::new();
    let mut next = None;
    for rec in host.db.executions(tenant()) {
        let rec = rec?;
        if cursor.is_some_and(|c| rec.id >= c) {
            continue;
        }
        if q.function.as_deref().is_some_and(|f| f != rec.function)
            || status.is_some_and(|s| s != rec.status)
        {
            continue;
        }
        if out.len() == limit {
            next = out
                .last()
                .and_then(|v: &Value| v["execution_id"].as_str().map(str::to_string));
            break;
        }
        out.push(views::execution(&rec));
    }
    Ok(Json(json!({ "executions": out, "next_cursor": next })).into_response())
}

async fn get_execution(State(host): AppState, Path(id): Path<String>) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    Ok(Json(views::execution(&rec)).into_response())
}

async fn history(State(host): AppState, Path(id): Path<String>) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    let events: Vec<Value> = host.db.history(&rec.id)?.iter().map(views::event).collect();
    Ok(Json(json!({ "events": events })).into_response())
}

async fn logs(State(host): AppState, Path(id): Path<String>) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    let logs: Vec<Value> = host.db.logs(&rec.id)?.iter().map(views::log).collect();
    Ok(Json(json!({ "logs": logs })).into_response())
}

/// How long `stop` waits for a resident guest to be interrupted before answering 202.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Stop a running or suspended execution: the request is durable (it survives a crash) and
/// the execution's next activation, or its resident guest at the next epoch tick or host
/// call, carries it out. 200 with the stopped execution, 202 if it is still stopping, 409
/// if it had already ended.
async fn stop(State(host): AppState, Path(id): Path<String>) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    if rec.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "execution {id} has already ended ({})",
            rec.status.as_str()
        )));
    }
    let mut batch = Batch::new();
    batch.put_stop(
        &rec.id,
        &StopRecord {
            tenant: tenant().to_string(),
            requested_ms: host.clock.now_ms(),
        },
    );
    host.db.commit(batch, Durability::Sync).await?;
    host.runtime.shared.request_stop(rec.id);
    let rx = host.scheduler.on_finished(rec.id);
    host.scheduler.wake(ExecKey {
        tenant: tenant().into(),
        id: rec.id,
    });
    let _ = tokio::time::timeout(STOP_WAIT, rx).await;
    let rec = host.db.execution(tenant(), &rec.id)?.unwrap_or(rec);
    Ok(execution_response(&rec))
}

async fn callback_succeed(
    State(host): AppState,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b = body(b)?;
    let result = json_text(&host, &b, "callback result")?;
    host.callbacks()
        .complete(tenant(), &id, Completion::Succeeded(result))
        .await?;
    Ok(Json(json!({"callback_id": id, "status": "succeeded"})).into_response())
}

#[derive(Deserialize)]
struct FailBody {
    error_type: Option<String>,
    error_message: Option<String>,
    error_data: Option<Value>,
}

async fn callback_fail(
    State(host): AppState,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b = body(b)?;
    let text = json_text(&host, &b, "callback failure")?;
    let f: FailBody = serde_json::from_str(&text).map_err(|e| {
        ApiError::InvalidJson(format!(
            "expected {{\"error_type\", \"error_message\", \"error_data\"?}}: {e}"
        ))
    })?;
    let error = ErrorObject {
        error_type: f.error_type.unwrap_or_else(|| "CallbackFailed".into()),
        error_message: f.error_message.unwrap_or_default(),
        error_data: f.error_data.map(|d| d.to_string()),
    };
    host.callbacks()
        .complete(tenant(), &id, Completion::Failed(error))
        .await?;
    Ok(Json(json!({"callback_id": id, "status": "failed"})).into_response())
}

async fn callback_heartbeat(State(host): AppState, Path(id): Path<String>) -> ApiResult {
    host.callbacks()
        .heartbeat(tenant(), &id, host.clock.now_ms())
        .await?;
    Ok(Json(json!({"callback_id": id, "status": "pending"})).into_response())
}

async fn metrics(State(host): AppState) -> Response {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let m = &host.metrics;
    let mut s = String::new();
    let _ = writeln!(s, "# HELP durable_resident_instances Live wasm instances.");
    let _ = writeln!(s, "# TYPE durable_resident_instances gauge");
    let _ = writeln!(
        s,
        "durable_resident_instances {}",
        host.resident_instances()
    );
    let _ = writeln!(s, "# HELP durable_executions Executions by status.");
    let _ = writeln!(s, "# TYPE durable_executions gauge");
    for st in Status::ALL {
        let _ = writeln!(
            s,
            "durable_executions{{status=\"{}\"}} {}",
            st.as_str(),
            m.count(st)
        );
    }
    let counters = [
        (
            "durable_activations_total",
            "Guest activations.",
            m.activations.load(Relaxed),
        ),
        (
            "durable_suspensions_total",
            "Activations that ended suspended.",
            m.suspensions.load(Relaxed),
        ),
        (
            "durable_traps_total",
            "Activations that ended in a trap or timeout.",
            m.traps.load(Relaxed),
        ),
        (
            "durable_fsyncs_total",
            "Group-commit fsyncs.",
            host.db.sync_stats().fsyncs.load(Relaxed),
        ),
        (
            "durable_sync_requests_total",
            "Writers that waited for an fsync.",
            host.db.sync_stats().sync_requests.load(Relaxed),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let gauges = [
        (
            "durable_queued_activations",
            "Executions waiting for a free slot.",
            host.scheduler.queued() as u64,
        ),
        (
            "durable_timers",
            "Timers waiting to fire.",
            host.timers.len() as u64,
        ),
        (
            "durable_db_bytes",
            "Size of the sled store on disk.",
            host.db.size_on_disk(),
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s,
    )
        .into_response()
}
