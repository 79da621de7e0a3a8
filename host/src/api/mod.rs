//! The HTTP edge: the only module that knows axum and the JSON shapes of the API.
//!
//! Handlers validate input, call the services, and render records. Every error is
//! `{"error": {"code", "message"}}` via `ApiError`.

mod error;
mod serve;
mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use serve::serve;

use crate::callbacks::Completion;
use crate::db::{
    Batch, Durability, ExecId, ExecutionRecord, FunctionRecord, IdempotencyRecord, Status,
    StopRecord, StorageState, TimerKind, TimerRecord,
};
use crate::journal::{ErrorObject, EventKind, Journal};
use crate::scheduler::ExecKey;
use crate::{ids, settings, Host, DEFAULT_TENANT};

type AppState = State<Arc<Host>>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// The longest `?wait=` honoured: a client that wants longer polls again.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The default for the deepest nesting of arrays and objects accepted in an input or a
/// callback result (`--max-json-depth`). The guest SDK parses them with serde_json, whose
/// recursion limit (128) refuses deeper ones inside the guest, after the API accepted them;
/// half of it leaves a guest room to embed a value it received in its own (an output, a
/// step result) and still parse it.
pub const MAX_JSON_DEPTH: usize = 64;
/// The most `--max-json-depth` may be: the SDK's parser refuses 128 levels.
pub const MAX_JSON_DEPTH_LIMIT: usize = 127;

/// axum's `Path`, with its rejection in the JSON envelope: a path that does not decode
/// (not UTF-8) names nothing, so it is a 404.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
struct Path<T>(T);

/// axum's `Query`, with its rejection in the JSON envelope (400).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
struct ApiQuery<T>(T);

/// The API and its OpenAPI description, built from the same registrations: a route cannot
/// be served without being described.
pub fn router(host: Arc<Host>) -> Router {
    let spec = Arc::new(openapi(&host));
    let (router, _) = routes(&host).split_for_parts();
    router
        .route(
            "/v1/openapi.json",
            get(move || async move { Json(spec.as_ref().clone()) }),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::MethodNotAllowed(format!(
                "{method} is not allowed here: see /v1/openapi.json"
            ))
        })
        .with_state(host)
}

/// The OpenAPI description of the API (what `GET /v1/openapi.json` serves).
pub fn openapi(host: &Arc<Host>) -> utoipa::openapi::OpenApi {
    let mut spec = routes(host).split_for_parts().1;
    settings_bounds(&mut spec, &host.opts.runtime.defaults);
    spec
}

/// The ranges of the settings fields (`settings::Patch`), which depend on the server's
/// memory limit and so cannot be static attributes.
fn settings_bounds(spec: &mut utoipa::openapi::OpenApi, d: &settings::Defaults) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let max_mb = (d.memory_limit_bytes / (1024 * 1024)) as u64;
    let bounds = [
        ("memory_limit_mb", max_mb),
        (
            "activation_timeout_secs",
            settings::MAX_ACTIVATION_TIMEOUT_SECS,
        ),
        (
            "execution_timeout_secs",
            settings::MAX_EXECUTION_TIMEOUT_SECS,
        ),
        ("retention_secs", settings::MAX_RETENTION_SECS),
    ];
    let Some(RefOr::T(Schema::Object(patch))) = spec
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("Patch"))
    else {
        return;
    };
    for (field, max) in bounds {
        if let Some(RefOr::T(Schema::Object(o))) = patch.properties.get_mut(field) {
            o.minimum = Some(1.into());
            o.maximum = Some(max.into());
        }
    }
}

fn routes(host: &Arc<Host>) -> OpenApiRouter<Arc<Host>> {
    let upload_limit = host.opts.max_upload_bytes;
    // JSON bodies: a payload at the limit, plus room for the envelope.
    let json_limit = host.opts.payload.max_payload_bytes + 64 * 1024;
    let mut info = utoipa::openapi::Info::new("durable-host", env!("CARGO_PKG_VERSION"));
    info.description = Some(
        "Upload WebAssembly components, invoke them as durable executions, follow their \
         history, and complete their callbacks. Errors are {\"error\": {\"code\", \"message\"}}."
            .into(),
    );
    let functions = OpenApiRouter::new()
        .routes(routes!(
            put_function,
            get_function,
            patch_function,
            delete_function
        ))
        .layer(DefaultBodyLimit::max(upload_limit));
    OpenApiRouter::with_openapi(utoipa::openapi::OpenApiBuilder::new().info(info).build())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(list_functions))
        .routes(routes!(invoke))
        .routes(routes!(list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(history))
        .routes(routes!(logs))
        .routes(routes!(events))
        .routes(routes!(stop))
        .routes(routes!(callback_succeed))
        .routes(routes!(callback_fail))
        .routes(routes!(callback_heartbeat))
        .layer(DefaultBodyLimit::max(json_limit))
        .merge(functions)
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The host is up: {\"status\": \"ok\"}"),
        (status = 503, description = "The host serves reads but refuses writes: {\"status\": \"degraded\", \"storage\": \"full\", \"message\"} (until space returns, by itself) or {\"status\": \"failed\", \"storage\": \"failed\", \"message\"} (until a restart)")))]
async fn healthz(State(host): AppState) -> Response {
    match host.db.storage_state() {
        StorageState::Ok => Json(json!({"status": "ok"})).into_response(),
        StorageState::Full => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "degraded",
                "storage": "full",
                "message": "the disk holding the store is full: writes are refused (507) \
                            until space is freed, then taken again without a restart",
            })),
        )
            .into_response(),
        StorageState::Failed => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "failed",
                "storage": "failed",
                "message": "a write or fsync of the store failed: every write is refused \
                            until the host is restarted (it recovers from its \
                            write-ahead log); see the host's log",
            })),
        )
            .into_response(),
    }
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
    let max_depth = host.opts.max_json_depth;
    if let Some(depth) = too_deep(b, max_depth) {
        return Err(ApiError::BadRequest(format!(
            "the {what} nests arrays and objects {depth} levels deep; the limit is \
             {max_depth} levels (--max-json-depth)"
        )));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::InvalidJson(format!("the {what} is not valid JSON: {e}")))?;
    Ok(text.to_string())
}

/// The nesting depth of JSON text if it exceeds `max` (counted without recursion, up to
/// the first level past `max`), else `None`. Brackets inside strings do not count.
fn too_deep(text: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// A JSON body that must be an object (settings, a callback failure): anything else is
/// refused before serde, which would also take an array for a struct.
fn json_object(text: &str, what: &str) -> ApiResult<()> {
    if text.trim_start().starts_with('{') {
        Ok(())
    } else {
        Err(ApiError::InvalidJson(format!(
            "the {what} must be a JSON object"
        )))
    }
}

/// A settings object with its whole-number floats (`44.0`, an integer in JSON Schema) as
/// integers, which serde's `u64` would refuse.
fn integral_numbers(text: &str) -> serde_json::Result<Value> {
    let mut v: Value = serde_json::from_str(text)?;
    if let Value::Object(fields) = &mut v {
        for field in fields.values_mut() {
            if let Some(f) = field
                .as_f64()
                .filter(|f| field.is_f64() && f.fract() == 0.0)
            {
                if (0.0..=u64::MAX as f64).contains(&f) {
                    *field = Value::from(f as u64);
                }
            }
        }
    }
    Ok(v)
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

/// Settings as upload query parameters: each a number, or `default`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SettingsQuery {
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    memory_limit_mb: Option<String>,
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    activation_timeout_secs: Option<String>,
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    execution_timeout_secs: Option<String>,
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    retention_secs: Option<String>,
}

impl SettingsQuery {
    fn patch(&self) -> ApiResult<settings::Patch> {
        let field = |name: &str, v: &Option<String>| -> ApiResult<Option<Option<u64>>> {
            match v.as_deref() {
                None => Ok(None),
                Some("default") => Ok(Some(None)),
                Some(s) => s.parse().map(|n| Some(Some(n))).map_err(|_| {
                    ApiError::BadRequest(format!(
                        "{name}={s:?}: expected a whole number or \"default\""
                    ))
                }),
            }
        };
        Ok(settings::Patch {
            memory_limit_mb: field("memory_limit_mb", &self.memory_limit_mb)?,
            activation_timeout_secs: field(
                "activation_timeout_secs",
                &self.activation_timeout_secs,
            )?,
            execution_timeout_secs: field("execution_timeout_secs", &self.execution_timeout_secs)?,
            retention_secs: field("retention_secs", &self.retention_secs)?,
        })
    }
}

fn checked(host: &Host, patch: settings::Patch) -> ApiResult<settings::Patch> {
    patch
        .validate(&host.opts.runtime.defaults)
        .map_err(ApiError::BadRequest)?;
    Ok(patch)
}

/// Upload a component: a new immutable version, or (same bytes as the latest) the latest.
/// Settings may be set in the query (a number, or `default`).
#[utoipa::path(put, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"), SettingsQuery),
    request_body(description = "The component's bytes", content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 201, description = "A new version", body = views::Version),
        (status = 200, description = "The same bytes as the latest version", body = views::Version),
        (status = 400, description = "Not a valid component (code invalid_component), or a bad setting", body = views::ErrorBody),
        (status = 413, description = "Too large", body = views::ErrorBody)))]
async fn put_function(
    State(host): AppState,
    Path(name): Path<String>,
    q: Result<Query<SettingsQuery>, QueryRejection>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Response {
    let uploaded = async {
        check_name(&name)?;
        let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let patch = checked(&host, q.patch()?)?;
        let spooled = spool_upload(&host, &headers, b).await?;
        let up = host
            .registry
            .upload_spooled(tenant(), &name, spooled, &patch)
            .await?;
        let status = if up.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let mut v = views::version(&name, &up.version);
        v.settings = Some(effective(&host, &up.function).into());
        v.created = Some(up.created);
        ApiResult::Ok((status, Json(v)).into_response())
    };
    match uploaded.await {
        Ok(resp) => resp,
        // The body may be unread (a bad name or setting is refused before it is streamed,
        // an over-limit one part way): the connection cannot carry another request, so say
        // so, or a client that reuses it finds it closed under its next request.
        Err(e) => {
            let mut resp = e.into_response();
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            resp
        }
    }
}

/// Stream an upload's body into a temporary file (hashed as it arrives): memory stays at a
/// buffer whatever the body's size, and a body past `--max-upload-bytes` is refused (413)
/// as soon as it passes the limit, or before it is read when its Content-Length says so.
async fn spool_upload(
    host: &Host,
    headers: &HeaderMap,
    b: axum::body::Body,
) -> ApiResult<crate::registry::Spooled> {
    use futures::StreamExt;
    let limit = host.opts.max_upload_bytes as u64;
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(crate::registry::Error::TooLarge { limit }.into());
    }
    let mut spool = host.registry.spool(limit).await?;
    let mut stream = b.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        spool.write(&chunk).await?;
    }
    Ok(spool.finish().await?)
}

fn effective(host: &Host, f: &FunctionRecord) -> settings::Limits {
    settings::resolve(&f.settings, &host.opts.runtime.defaults)
}

/// Change a function's settings: a JSON object of the fields to change (`null` returns a
/// field to the server default). Answers with the function.
#[utoipa::path(patch, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    request_body(content = settings::Patch, description = "Fields to change; null returns one to the default"),
    responses((status = 200, description = "The function", body = views::Function), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
async fn patch_function(
    State(host): AppState,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b = body(b)?;
    let text = json_text(&host, &b, "settings")?;
    json_object(&text, "settings")?;
    let patch: settings::Patch = integral_numbers(&text)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ApiError::InvalidJson(format!(
                "expected an object of memory_limit_mb, activation_timeout_secs, \
             execution_timeout_secs, retention_secs: {e}"
            ))
        })?;
    let patch = checked(&host, patch)?;
    let f = host.registry.configure(tenant(), &name, &patch).await?;
    let versions = host.db.versions(tenant(), &name)?;
    Ok(Json(views::function(&f, &versions, effective(&host, &f))).into_response())
}

#[utoipa::path(get, path = "/v1/functions", tag = "functions",
    responses((status = 200, description = "Every function with its versions", body = views::FunctionList)))]
async fn list_functions(State(host): AppState) -> ApiResult {
    let mut out = Vec::new();
    for f in host.db.functions(tenant())? {
        if !f.deleted {
            let versions = host.db.versions(tenant(), &f.name)?;
            out.push(views::function(&f, &versions, effective(&host, &f)));
        }
    }
    Ok(Json(views::FunctionList { functions: out }).into_response())
}

#[utoipa::path(get, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    responses((status = 200, description = "The function with its versions and settings", body = views::Function), (status = 404, description = "Unknown", body = views::ErrorBody)))]
async fn get_function(State(host): AppState, Path(name): Path<String>) -> ApiResult {
    let f = host
        .db
        .function(tenant(), &name)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| ApiError::NotFound(format!("function {name:?} not found")))?;
    let versions = host.db.versions(tenant(), &name)?;
    Ok(Json(views::function(&f, &versions, effective(&host, &f))).into_response())
}

/// Delete a function: new invocations are refused (404); running executions finish on
/// their version.
#[utoipa::path(delete, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Unknown", body = views::ErrorBody)))]
async fn delete_function(State(host): AppState, Path(name): Path<String>) -> ApiResult {
    host.registry.delete(tenant(), &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct InvokeQuery {
    /// Seconds to wait for the end (longer waits are cut to 300): 200 if it ended, else 202.
    #[param(value_type = Option<f64>, minimum = 0)]
    wait: Option<String>,
}

/// The headers `invoke` reads (for the description only: `idempotency_key` reads them).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct InvokeHeaders {
    /// Same key and input: the same execution; a different input: 409.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 256,
        pattern = "^[!-~]([ -~]*[!-~])?$"
    )]
    idempotency_key: Option<String>,
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

/// Start an execution of the function's latest version.
#[utoipa::path(post, path = "/v1/functions/{name}/invoke", tag = "executions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"), InvokeQuery, InvokeHeaders),
    request_body(content = Option<Value>, description = "The input (JSON; empty means null)"),
    responses(
        (status = 202, description = "Started (or still running after ?wait)", body = views::Execution),
        (status = 200, description = "Ended within ?wait", body = views::Execution),
        (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody), (status = 409, description = "Conflict", body = views::ErrorBody), (status = 413, description = "Too large", body = views::ErrorBody)))]
async fn invoke(
    State(host): AppState,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<InvokeQuery>,
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
            // Capped before the conversion, which panics past u64::MAX seconds.
            Some(Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
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
    // The same JSON value, whatever its spacing: hash its canonical form.
    let input_sha256 = key.as_ref().map(|_| {
        let canonical = serde_json::from_str::<Value>(&input)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| input.clone());
        crate::registry::sha256_hex(canonical.as_bytes())
    });
    // A second try only if the key's holder was deleted (its retention ended) between our
    // claim and our read of it: the key was released with it.
    let mut stale: Option<IdempotencyRecord> = None;
    for _ in 0..3 {
        let now = host.clock.now_ms();
        let timeout = effective(&host, &f).execution_timeout;
        let deadline = now.saturating_add(timeout.as_millis() as u64);
        let id = ids::new_execution_id();
        let rec = ExecutionRecord {
            id,
            tenant: tenant().to_string(),
            function: name.clone(),
            version: f.latest_version,
            status: Status::Running,
            input: input.clone(),
            output: None,
            error: None,
            created_ms: now,
            updated_ms: now,
            deadline_ms: Some(deadline),
            idempotency_key: key.clone(),
        };
        let mut journal = Journal::from_events(&[]);
        let started = journal.record(
            now,
            EventKind::ExecutionStarted {
                input: input.clone(),
            },
        );
        let mut batch = Batch::new();
        batch.put_execution(&rec);
        batch.put_event(&id, &started);
        let timer = TimerRecord {
            tenant: tenant().to_string(),
            kind: TimerKind::Deadline,
        };
        batch.put_timer(deadline, &id, crate::runtime::DEADLINE_OP, &timer);
        match (&key, &input_sha256) {
            (Some(key), Some(input_sha256)) => {
                let claim = IdempotencyRecord {
                    execution: id,
                    input_sha256: input_sha256.clone(),
                };
                // The claim, the execution, its first event and its deadline: one group.
                let held = host
                    .db
                    .claim_idempotency(tenant(), &name, key, &claim, batch, stale.as_ref())
                    .await?;
                if let Some(held) = held {
                    match host.db.execution(tenant(), &held.execution)? {
                        Some(_) if held.input_sha256 != claim.input_sha256 => {
                            return Err(ApiError::Conflict(format!(
                                "Idempotency-Key {key:?} was used for {name} with a different input"
                            )));
                        }
                        Some(rec) => return respond(&host, rec, wait).await,
                        // Its execution was deleted by retention just now (which releases
                        // the key), or the claim was left without its execution by an
                        // older release: take the key over, atomically.
                        None => {
                            stale = Some(held);
                            continue;
                        }
                    }
                }
            }
            _ => host.db.commit(batch, Durability::Sync).await?,
        }
        host.timers
            .add(deadline, id, crate::runtime::DEADLINE_OP.to_string(), timer);
        host.metrics.created();
        let finished = wait.map(|_| host.scheduler.on_finished(id));
        host.scheduler.wake(ExecKey {
            tenant: tenant().into(),
            id,
        });
        return match (wait, finished) {
            (Some(wait), Some(rx)) => {
                let _ = tokio::time::timeout(wait, rx).await;
                let rec = host.db.execution(tenant(), &id)?.unwrap_or(rec);
                Ok(execution_response(&rec))
            }
            _ => Ok(execution_response(&rec)),
        };
    }
    // A takeover lost to a concurrent one names the winner's execution, which exists; a
    // key that keeps naming missing executions is a damaged store.
    Err(ApiError::Internal(format!(
        "Idempotency-Key {:?} of {name} names an execution that does not exist",
        key.unwrap_or_default()
    )))
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

/// The most executions one page holds.
pub const MAX_EXECUTION_PAGE: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this function's executions.
    function: Option<String>,
    /// Only executions in this status (running, suspended, succeeded, failed, timed_out,
    /// stopped).
    #[param(pattern = "^(running|suspended|succeeded|failed|timed_out|stopped)$")]
    status: Option<String>,
    /// Executions per page (1-1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/executions", tag = "executions",
    params(ListQuery),
    responses((status = 200, description = "A page of executions, newest first", body = views::ExecutionPage), (status = 400, description = "Bad input", body = views::ErrorBody)))]
async fn list_executions(State(host): AppState, ApiQuery(q): ApiQuery<ListQuery>) -> ApiResult {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status={s:?}: expected one of running, suspended, succeeded, failed, timed_out, stopped"
            ))
        })?),
    };
    let limit = page_limit(q.limit, 50, MAX_EXECUTION_PAGE)?;
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
                .map(|v: &views::Execution| v.execution_id.clone());
            break;
        }
        out.push(views::execution(&rec));
    }
    let page = views::ExecutionPage {
        executions: out,
        next_cursor: next,
    };
    Ok(Json(page).into_response())
}

#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    responses((status = 200, description = "The execution", body = views::Execution), (status = 404, description = "Unknown", body = views::ErrorBody)))]
async fn get_execution(State(host): AppState, Path(id): Path<String>) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    Ok(Json(views::execution(&rec)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// Events per page (1-1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page (an `event_id`).
    #[param(pattern = "^[0-9]{1,9}$")]
    cursor: Option<String>,
}

/// The most events one history page holds (and the default page size).
pub const MAX_HISTORY_PAGE: usize = 1000;

/// A page size: `default` when absent, else 1 to `max` (what the spec declares).
fn page_limit(limit: Option<u64>, default: usize, max: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit={n}: expected 1 to {max}"
        ))),
    }
}

/// An event id from a query or header: the position to continue after.
fn event_position(what: &str, s: &str) -> ApiResult<u32> {
    s.trim().parse().map_err(|_| {
        ApiError::BadRequest(format!("{what}={s:?}: expected an event_id from this API"))
    })
}

/// History in pages of up to `limit` events; `next_cursor` (the last `event_id` sent) is
/// null on the last page, so a client pages until it is null.
#[utoipa::path(get, path = "/v1/executions/{id}/history", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), HistoryQuery),
    responses((status = 200, description = "A page of history events, oldest first", body = views::HistoryPage), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
async fn history(
    State(host): AppState,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    let limit = page_limit(q.limit, MAX_HISTORY_PAGE, MAX_HISTORY_PAGE)?;
    let after = match q.cursor.as_deref() {
        Some(c) => event_position("cursor", c)?,
        None => 0,
    };
    // One more than asked for tells whether another page follows.
    let mut events = host.db.history_after(&rec.id, after, limit + 1)?;
    let next = (events.len() > limit).then(|| {
        events.truncate(limit);
        events.last().map(|e| e.seq.to_string())
    });
    let page = views::HistoryPage {
        events: events.iter().map(views::event).collect(),
        next_cursor: next.flatten(),
    };
    Ok(Json(page).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Send only events after this event_id.
    #[param(pattern = "^[0-9]{1,9}$")]
    after: Option<String>,
}

/// History as Server-Sent Events, live: every event with `event_id` past `?after=` (or the
/// `Last-Event-ID` header of a reconnecting client), in order, each as `event: history` with
/// its `event_id` as the SSE id; once the execution has ended and everything is sent, one
/// `event: end` carrying the execution, and the stream closes.
#[utoipa::path(get, path = "/v1/executions/{id}/events", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), EventsQuery, EventsHeaders),
    responses((status = 200, description = "text/event-stream: `event: history` frames (data: a history event, id: its event_id), then one `event: end` (data: the execution)", content_type = "text/event-stream"), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
async fn events(
    State(host): AppState,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    // Both are checked; `?after=` wins.
    let header = match headers.get("last-event-id") {
        Some(h) => Some(event_position("Last-Event-ID", h.to_str().unwrap_or("?"))?),
        None => None,
    };
    let after = match q.after.as_deref() {
        Some(a) => event_position("after", a)?,
        None => header.unwrap_or(0),
    };
    let watch = host.db.watch(&rec.id);
    let state = LiveHistory {
        host,
        id: rec.id,
        after,
        watch,
        queue: std::collections::VecDeque::new(),
        opened: false,
        ended: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        let frame = s.next_frame().await?;
        Some((Ok::<_, std::convert::Infallible>(frame), s))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The headers `events` reads (for the description only).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct EventsHeaders {
    /// Resume after this event_id (what a reconnecting EventSource sends).
    #[param(rename = "Last-Event-ID", value_type = String, required = false, pattern = "^[0-9]{1,9}$")]
    last_event_id: Option<String>,
}

/// The state of one live history stream.
struct LiveHistory {
    host: Arc<Host>,
    id: ExecId,
    after: u32,
    watch: crate::db::Watch,
    queue: std::collections::VecDeque<crate::journal::Event>,
    /// The first frame is a comment, so a client (and any proxy) sees the stream open at
    /// once even when nothing happens for a while.
    opened: bool,
    ended: bool,
}

impl LiveHistory {
    /// The next frame, waiting for the execution to change if nothing is new; `None` once
    /// the end has been sent (or the store fails: the client reconnects with its last id).
    async fn next_frame(&mut self) -> Option<SseEvent> {
        if !self.opened {
            self.opened = true;
            return Some(SseEvent::default().comment("history of this execution follows"));
        }
        loop {
            if let Some(e) = self.queue.pop_front() {
                self.after = e.seq;
                let data = serde_json::to_string(&views::event(&e)).ok()?;
                return Some(
                    SseEvent::default()
                        .id(e.seq.to_string())
                        .event("history")
                        .data(data),
                );
            }
            if self.ended {
                return None;
            }
            self.watch.mark_seen();
            // The record first: when it is terminal, every event is already written.
            let rec = self.host.db.execution(tenant(), &self.id).ok()??;
            let batch = self
                .host
                .db
                .history_after(&self.id, self.after, MAX_HISTORY_PAGE)
                .ok()?;
            if !batch.is_empty() {
                self.queue.extend(batch);
                continue;
            }
            if rec.status.is_terminal() {
                self.ended = true;
                let data = serde_json::to_string(&views::execution(&rec)).ok()?;
                return Some(SseEvent::default().event("end").data(data));
            }
            self.watch.changed().await;
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// Lines per page (1-1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,9}$")]
    cursor: Option<String>,
}

/// The most lines one log page holds (and the default page size).
pub const MAX_LOG_PAGE: usize = 1000;
/// A page ends after the line that brings its messages to this many bytes, so one response
/// stays small whatever the lines' length (1,000 lines of 16 KiB would be 16 MiB).
pub const MAX_LOG_PAGE_BYTES: usize = 1024 * 1024;

/// Logs in pages of up to `limit` lines (and about 1 MiB); `next_cursor` is null on the
/// last page, so a client pages until it is null.
#[utoipa::path(get, path = "/v1/executions/{id}/logs", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), LogsQuery),
    responses((status = 200, description = "A page of the guest's log lines and stdout/stderr, once each, oldest first", body = views::Logs), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
async fn logs(
    State(host): AppState,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult {
    let rec = load_execution(&host, &id)?;
    let limit = page_limit(q.limit, MAX_LOG_PAGE, MAX_LOG_PAGE)?;
    let after = match q.cursor.as_deref() {
        Some(c) => c.trim().parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "cursor={c:?}: expected a next_cursor from this API"
            ))
        })?,
        None => 0,
    };
    // One more than asked for tells whether another page follows.
    let mut lines = host.db.logs_after(&rec.id, after, limit + 1)?;
    let mut bytes = 0;
    let keep = lines
        .iter()
        .position(|(_, l)| {
            bytes += l.message.len();
            bytes >= MAX_LOG_PAGE_BYTES
        })
        .map_or(limit, |i| (i + 1).min(limit));
    let next = (lines.len() > keep).then(|| {
        lines.truncate(keep);
        lines.last().map(|(seq, _)| seq.to_string())
    });
    let page = views::Logs {
        logs: lines.iter().map(|(_, l)| views::log(l)).collect(),
        next_cursor: next.flatten(),
    };
    Ok(Json(page).into_response())
}

/// How long `stop` waits for a resident guest to be interrupted before answering 202.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Stop a running or suspended execution: the request is durable (it survives a crash) and
/// the execution's next activation carries it out, or its activation in progress at once
/// (also when its guest waits in a host call, such as an HTTP request or a sleep, or the
/// activation waits for memory). 200 with the stopped execution, 202 if it is still
/// stopping, 409 if it had already ended.
#[utoipa::path(post, path = "/v1/executions/{id}/stop", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    responses(
        (status = 200, description = "Stopped", body = views::Execution),
        (status = 202, description = "Still stopping (the stop is durable)", body = views::Execution),
        (status = 404, description = "Unknown", body = views::ErrorBody), (status = 409, description = "Conflict", body = views::ErrorBody)))]
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

#[utoipa::path(post, path = "/v1/callbacks/{id}/succeed", tag = "callbacks",
    params(("id" = String, Path, description = "Callback id (from the CallbackStarted event)", pattern = "^cb_[0-9a-f]{32}$")),
    request_body(content = Option<Value>, description = "The result (JSON; empty means null)"),
    responses((status = 200, description = "Recorded", body = views::CallbackAnswer), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "Already completed or timed out, or its execution ended", body = views::ErrorBody), (status = 413, description = "Too large", body = views::ErrorBody)))]
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
    Ok(Json(views::CallbackAnswer {
        callback_id: id,
        status: "succeeded",
    })
    .into_response())
}

#[derive(Deserialize, ToSchema)]
struct FailBody {
    error_type: Option<String>,
    error_message: Option<String>,
    error_data: Option<Value>,
}

#[utoipa::path(post, path = "/v1/callbacks/{id}/fail", tag = "callbacks",
    params(("id" = String, Path, description = "Callback id (from the CallbackStarted event)", pattern = "^cb_[0-9a-f]{32}$")),
    request_body(content = FailBody, description = "The failure"),
    responses((status = 200, description = "Recorded", body = views::CallbackAnswer), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody), (status = 409, description = "Conflict", body = views::ErrorBody), (status = 413, description = "Too large", body = views::ErrorBody)))]
async fn callback_fail(
    State(host): AppState,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b = body(b)?;
    let text = json_text(&host, &b, "callback failure")?;
    json_object(&text, "callback failure")?;
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
    Ok(Json(views::CallbackAnswer {
        callback_id: id,
        status: "failed",
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/callbacks/{id}/heartbeat", tag = "callbacks",
    params(("id" = String, Path, description = "Callback id (from the CallbackStarted event)", pattern = "^cb_[0-9a-f]{32}$")),
    responses((status = 200, description = "The heartbeat timeout starts again", body = views::CallbackAnswer), (status = 404, description = "Unknown", body = views::ErrorBody), (status = 409, description = "Conflict", body = views::ErrorBody)))]
async fn callback_heartbeat(State(host): AppState, Path(id): Path<String>) -> ApiResult {
    host.callbacks()
        .heartbeat(tenant(), &id, host.clock.now_ms())
        .await?;
    Ok(Json(views::CallbackAnswer {
        callback_id: id,
        status: "pending",
    })
    .into_response())
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
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
            "durable_compiles_total",
            "Components compiled: uploads, and loads that found no usable artifact.",
            m.compiles.load(Relaxed),
        ),
        (
            "durable_host_failures_total",
            "Activations that failed in the host (storage, loading) and were scheduled to run again.",
            m.host_failures.load(Relaxed),
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
        (
            "durable_storage_refused_writes_total",
            "Writes refused for lack of disk space (answered 507, or retried by activations).",
            host.db.sync_stats().full_refusals.load(Relaxed),
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
            "Timers due within the next 10 minutes (the in-memory index; later ones wait on disk).",
            host.timers.len() as u64,
        ),
        (
            "durable_db_bytes",
            "Size of the sled store on disk.",
            host.db.size_on_disk(),
        ),
        (
            "durable_memory_budget_bytes",
            "Linear memory resident instances may reserve together (--memory-budget-mb).",
            host.runtime.shared.memory.budget_bytes(),
        ),
        (
            "durable_memory_reserved_bytes",
            "Linear memory reserved by resident instances (each its function's memory limit).",
            host.runtime.shared.memory.reserved_bytes(),
        ),
        (
            "durable_activations_waiting_for_memory",
            "Activations waiting in line for their share of the memory budget.",
            host.runtime.shared.memory.waiting(),
        ),
        (
            "durable_storage_full",
            "1 while writes are refused for lack of disk space (507), else 0.",
            crate::metrics::storage_full(host.db.storage_state()),
        ),
        (
            "durable_storage_failed",
            "1 once a store write or fsync failed and writes stop until a restart, else 0.",
            crate::metrics::storage_failed(host.db.storage_state()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_counts_brackets_outside_strings_only() {
        let cases: [(&str, usize, Option<usize>); 7] = [
            ("[[]]", 2, None),
            ("[[[]]]", 2, Some(3)),
            (r#"{"a":[{"b":1}]}"#, 3, None),
            (r#"{"a":[{"b":1}]}"#, 2, Some(3)),
            (r#"["[[[[", "]]]]"]"#, 1, None),
            // An escaped quote does not end the string; an escaped backslash does not escape.
            (r#"["\"[[[", 1]"#, 1, None),
            (r#"["\\", [[1]]]"#, 2, Some(3)),
        ];
        for (text, max, expected) in cases {
            assert_eq!(too_deep(text.as_bytes(), max), expected, "{text} max {max}");
        }
        // No recursion: a million levels are counted like three.
        assert_eq!(too_deep("[".repeat(1_000_000).as_bytes(), 64), Some(65));
    }
}
