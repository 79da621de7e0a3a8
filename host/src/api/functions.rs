//! The functions resource: upload (`PUT`, with the body spooled to a temporary file as it
//! arrives), list, get, settings change (`PATCH`) and delete. The name, the settings and
//! the tenant's quotas are checked here (`max_functions`, `max_component_bytes`,
//! `max_stored_bytes`: 429 before anything is stored; the `memory_limit_mb` and
//! `activation_timeout_secs` ceilings: 400); validating, hashing and compiling the
//! component, and storing versions, belong to the registry.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{check_name, effective, object_body, views, ApiError, ApiResult, AppState, Path};
use crate::db::FunctionRecord;
use crate::registry::{Pending, UploadStatus};
use crate::tenants::{Action, Caller, Quotas};
use crate::{settings, Host};

/// Settings as upload query parameters: each a number, or `default`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SettingsQuery {
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    memory_limit_mb: Option<String>,
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    activation_timeout_secs: Option<String>,
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    execution_timeout_secs: Option<String>,
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    retention_secs: Option<String>,
    // Flow control (DESIGN 10).
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    max_concurrency: Option<String>,
    /// A JSON pointer into the input (e.g. `/user_id`), or `default` (none).
    concurrency_key: Option<String>,
    /// Starts per second (e.g. `0.5`), or `default` (no throttle).
    throttle_per_second: Option<String>,
    /// The throttle's burst (default 1); only with `throttle_per_second`.
    #[param(pattern = "^[0-9]{1,19}$")]
    throttle_burst: Option<String>,
    #[param(pattern = "^([0-9]{1,19}|default)$")]
    max_queued: Option<String>,
    /// `true`: answer 202 once the body is received and compile in the background (poll
    /// the `Location`). Default: answer once compiled.
    r#async: Option<bool>,
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
            max_concurrency: field("max_concurrency", &self.max_concurrency)?,
            concurrency_key: self
                .concurrency_key
                .as_deref()
                .map(|k| (k != "default").then(|| k.to_string())),
            throttle: self.throttle()?,
            max_queued: field("max_queued", &self.max_queued)?,
            redrive_policy: None,
        })
    }

    /// `throttle_per_second` (with `throttle_burst`) as a patch of `throttle`.
    fn throttle(&self) -> ApiResult<Option<Option<settings::ThrottlePatch>>> {
        let burst = match self.throttle_burst.as_deref() {
            None => None,
            Some(b) => Some(b.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("throttle_burst={b:?}: expected a whole number"))
            })?),
        };
        match (self.throttle_per_second.as_deref(), burst) {
            (None, None) => Ok(None),
            (None | Some("default"), Some(_)) => Err(ApiError::BadRequest(
                "throttle_burst: only with a throttle_per_second".into(),
            )),
            (Some("default"), None) => Ok(Some(None)),
            (Some(r), burst) => {
                let per_second = r.parse::<f64>().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "throttle_per_second={r:?}: expected a number or \"default\""
                    ))
                })?;
                Ok(Some(Some(settings::ThrottlePatch { per_second, burst })))
            }
        }
    }
}

/// A settings change within the server's bounds and the tenant's ceilings.
fn checked(host: &Host, quotas: &Quotas, patch: settings::Patch) -> ApiResult<settings::Patch> {
    patch
        .validate(&host.opts.runtime.defaults)
        .map_err(ApiError::BadRequest)?;
    quotas
        .check_settings(&patch)
        .map_err(ApiError::BadRequest)?;
    Ok(patch)
}

/// A function's settings in force: its own within its tenant's ceilings (what its next
/// activation runs with).
fn in_force(host: &Host, quotas: &Quotas, f: &FunctionRecord) -> settings::Limits {
    quotas.ceil(effective(host, f))
}

/// The scheduler enforces a function's flow control from its stored settings: after every
/// change (and at start, `Host::start`).
fn push_flow_limits(host: &Host, tenant: &str, f: &FunctionRecord) {
    host.scheduler
        .set_limits(tenant, &f.name, settings::flow_limits(&f.settings));
}

/// Refused for the tenant's `max_component_bytes` (`size`: the whole upload's, when known).
fn over_component_quota(size: Option<u64>, limit: u64) -> ApiError {
    ApiError::QuotaExceeded(match size {
        Some(n) => format!(
            "max_component_bytes: the component is {n} bytes, the tenant's limit is {limit}"
        ),
        None => format!(
            "max_component_bytes: the upload is larger than the tenant's limit of {limit} \
             bytes"
        ),
    })
}

/// Upload a component: a new immutable version, or (same bytes as the latest) the latest.
/// Settings may be set in the query (a number, or `default`). With `async=true` (or
/// `Prefer: respond-async`) it answers 202 once the body is received and checked against
/// the quotas, and compiles in the background: poll the `Location` (an upload record) until
/// it is `ready` or `failed`. A version exists only once its component compiled and linked.
#[utoipa::path(put, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"), SettingsQuery,
        ("Prefer" = Option<String>, Header, description = "`respond-async`: as `async=true`")),
    request_body(description = "The component's bytes", content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 201, description = "A new version", body = views::Version),
        (status = 200, description = "The same bytes as the latest version", body = views::Version),
        (status = 202, description = "Background upload (async=true or Prefer: respond-async): compiling; poll the Location", body = UploadView,
            headers(("Location" = String, description = "/v1/functions/{name}/uploads/{upload_id}"))),
        (status = 400, description = "Not a valid component (code invalid_component), a bad setting, or one over the tenant's ceiling", body = views::ErrorBody),
        (status = 413, description = "Larger than --max-upload-bytes", body = views::ErrorBody),
        (status = 429, description = "Over a quota of the tenant (code quota_exceeded): max_functions, max_component_bytes or max_stored_bytes; nothing was stored", body = views::ErrorBody)))]
pub(super) async fn put_function(
    State(host): AppState,
    caller: Result<Caller, ApiError>,
    Path(name): Path<String>,
    q: Result<Query<SettingsQuery>, QueryRejection>,
    headers: HeaderMap,
    b: axum::body::Body,
) -> Response {
    let background = q.as_ref().is_ok_and(|Query(q)| q.r#async == Some(true))
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    let uploaded = if background {
        // The upload runs on as a task of its own once it is accepted; the request ends there.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(upload(host, caller, name, q, headers, b, Some(tx)));
        match rx.await {
            Ok(p) => Ok(accepted(&p)),
            Err(_) => task
                .await
                .unwrap_or_else(|e| Err(ApiError::Internal(format!("the upload task: {e}")))),
        }
    } else {
        upload(host, caller, name, q, headers, b, None).await
    };
    match uploaded {
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

/// The upload itself. With `accepted`, a background upload: once the body is spooled and
/// within the quotas, an upload record (compiling) is created and sent there, and the
/// outcome is written to it.
async fn upload(
    host: std::sync::Arc<Host>,
    caller: Result<Caller, ApiError>,
    name: String,
    q: Result<Query<SettingsQuery>, QueryRejection>,
    headers: HeaderMap,
    b: axum::body::Body,
    accepted: Option<tokio::sync::oneshot::Sender<Pending>>,
) -> ApiResult {
    let caller = caller?;
    caller.require(Action::WriteFunctions)?;
    check_name(&name)?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let quotas = host.tenants.quotas(&caller.tenant);
    let patch = checked(&host, &quotas, q.patch()?)?;
    // A new name takes one of the tenant's functions from here until the upload ends.
    let usage = &host.tenants.usage;
    let mut reserved = usage.reserve_upload(&caller.tenant, &name, None, &quotas)?;
    let spooled = spool_upload(&host, &headers, &quotas, b).await?;
    // The same bytes as the latest version add nothing; others add their size.
    let latest = host
        .db
        .function(&caller.tenant, &name)?
        .filter(|f| !f.deleted)
        .map(|f| host.db.version(&caller.tenant, &name, f.latest_version))
        .transpose()?
        .flatten();
    if latest.is_none_or(|v| v.sha256 != spooled.sha256) {
        reserved.add_bytes(spooled.len, &quotas)?;
    }
    let pending = accepted.map(|tx| {
        let uploads = host.registry.uploads();
        let p = uploads.start(
            &caller.tenant,
            &name,
            &spooled.sha256,
            spooled.len,
            host.registry.now_ms(),
        );
        let id = p.id.clone();
        // A client gone meanwhile changes nothing: the upload goes on.
        let _ = tx.send(p);
        id
    });
    let up = host
        .registry
        .upload_spooled(&caller.tenant, &name, spooled, &patch)
        .await;
    let finish = |outcome| {
        if let Some(id) = &pending {
            host.registry
                .uploads()
                .finish(id, host.registry.now_ms(), outcome);
        }
    };
    let up = match up {
        Ok(up) => up,
        Err(e) => {
            let e = ApiError::from(e);
            if let Some(id) = &pending {
                tracing::warn!(function = %name, upload = %id, error = %e, "a background upload failed");
            }
            finish(Err((e.status_and_code().1.to_string(), e.to_string())));
            return Err(e);
        }
    };
    finish(Ok((up.version.version, up.created)));
    reserved.uploaded(up.created, up.version.size_bytes);
    push_flow_limits(&host, &caller.tenant, &up.function);
    let status = if up.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut v = views::version(&name, &up.version);
    v.settings = Some(
        views::Settings::from(in_force(&host, &quotas, &up.function))
            .with_flow(&up.function.settings),
    );
    v.created = Some(up.created);
    Ok((status, Json(v)).into_response())
}

/// A background upload (`PUT ...?async=true`).
#[derive(Serialize, ToSchema)]
pub(super) struct UploadView {
    pub upload_id: String,
    pub name: String,
    /// compiling, ready (`version` is the function's version) or failed (`error` says why).
    pub status: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// RFC 3339 UTC with milliseconds.
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Once ready: true for a new version, false for the same bytes as the latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<bool>,
    /// Once failed: what the synchronous upload would have answered (`interrupted`: the
    /// server stopped while it compiled; nothing was stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<views::ErrorDetail>,
    /// Where to poll: this record.
    pub location: String,
}

fn upload_location(p: &Pending) -> String {
    format!("/v1/functions/{}/uploads/{}", p.name, p.id)
}

fn upload_view(p: &Pending) -> UploadView {
    UploadView {
        upload_id: p.id.clone(),
        name: p.name.clone(),
        status: match p.status {
            UploadStatus::Compiling => "compiling",
            UploadStatus::Ready => "ready",
            UploadStatus::Failed => "failed",
        }
        .into(),
        sha256: p.sha256.clone(),
        size_bytes: p.size_bytes,
        started_at: views::timestamp(p.started_ms),
        finished_at: p.finished_ms.map(views::timestamp),
        version: p.version,
        created: p.created,
        error: p.error_code.clone().map(|code| views::ErrorDetail {
            code,
            message: p.error_message.clone().unwrap_or_default(),
        }),
        location: upload_location(p),
    }
}

/// 202 with the upload record and where to poll it.
fn accepted(p: &Pending) -> Response {
    let mut resp = (StatusCode::ACCEPTED, Json(upload_view(p))).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(&upload_location(p)) {
        h.insert(axum::http::header::LOCATION, v);
    }
    h.insert(
        "preference-applied",
        axum::http::HeaderValue::from_static("respond-async"),
    );
    resp
}

/// A background upload: compiling, ready (with its version) or failed (with the reason).
/// Kept for a day after it ended.
#[utoipa::path(get, path = "/v1/functions/{name}/uploads/{id}", tag = "functions",
    params(("name" = String, Path, description = "Function name"), ("id" = String, Path, description = "Upload id (from the 202)")),
    responses((status = 200, description = "The upload", body = UploadView), (status = 404, description = "Unknown (or another tenant's, or ended over a day ago)", body = views::ErrorBody)))]
pub(super) async fn get_upload(
    State(host): AppState,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    caller.require(Action::ReadFunctions)?;
    let p = host
        .registry
        .uploads()
        .get(&caller.tenant, &name, &id)
        .ok_or_else(|| {
            ApiError::NotFound(format!("upload {id:?} of function {name:?} not found"))
        })?;
    Ok(Json(upload_view(&p)).into_response())
}

/// Stream an upload's body into a temporary file (hashed as it arrives): memory stays at a
/// buffer whatever the body's size, and a body past `--max-upload-bytes` is refused (413),
/// or past the tenant's smaller `max_component_bytes` (429 `quota_exceeded`), as soon as it
/// passes the limit, or before it is read when its Content-Length says so.
async fn spool_upload(
    host: &Host,
    headers: &HeaderMap,
    quotas: &Quotas,
    b: axum::body::Body,
) -> ApiResult<crate::registry::Spooled> {
    use futures::StreamExt;
    let server = host.opts.max_upload_bytes as u64;
    // The tenant's limit, where it is the one that bites.
    let tenant = quotas.max_component_bytes.filter(|l| *l < server);
    let announced = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > server) {
        return Err(crate::registry::Error::TooLarge { limit: server }.into());
    }
    if let (Some(n), Some(l)) = (announced, tenant) {
        if n > l {
            return Err(over_component_quota(Some(n), l));
        }
    }
    let mut spool = host.registry.spool(tenant.unwrap_or(server)).await?;
    let mut stream = b.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        spool.write(&chunk).await.map_err(|e| match (e, tenant) {
            (crate::registry::Error::TooLarge { .. }, Some(l)) => over_component_quota(None, l),
            (e, _) => e.into(),
        })?;
    }
    Ok(spool.finish().await?)
}

/// A settings object with its whole-number floats as integers (see `integral_fields`).
fn integral_numbers(text: &str) -> serde_json::Result<Value> {
    let mut v: Value = serde_json::from_str(text)?;
    if let Value::Object(fields) = &mut v {
        super::integral_fields(fields, &[]);
    }
    Ok(v)
}

/// Change a function's settings: a JSON object of the fields to change (`null` returns a
/// field to the server default). Answers with the function.
#[utoipa::path(patch, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    request_body(content = settings::Patch, description = "Fields to change; null returns one to the default"),
    responses((status = 200, description = "The function", body = views::Function), (status = 400, description = "Bad input, or a setting over the tenant's ceiling", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn patch_function(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::WriteFunctions)?;
    let quotas = host.tenants.quotas(&caller.tenant);
    let text = object_body(&host, b, "settings")?;
    let patch: settings::Patch = integral_numbers(&text)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            ApiError::InvalidJson(format!(
                "expected an object of memory_limit_mb, activation_timeout_secs, \
             execution_timeout_secs, retention_secs, max_concurrency, concurrency_key, \
             throttle {{per_second, burst}}, max_queued, redrive_policy: {e}"
            ))
        })?;
    let patch = checked(&host, &quotas, patch)?;
    let f = host
        .registry
        .configure(&caller.tenant, &name, &patch)
        .await?;
    push_flow_limits(&host, &caller.tenant, &f);
    let versions = host.db.versions(&caller.tenant, &name)?;
    Ok(Json(views::function(&f, &versions, in_force(&host, &quotas, &f))).into_response())
}

#[utoipa::path(get, path = "/v1/functions", tag = "functions",
    responses((status = 200, description = "Every function with its versions", body = views::FunctionList)))]
pub(super) async fn list_functions(State(host): AppState, caller: Caller) -> ApiResult {
    caller.require(Action::ReadFunctions)?;
    let quotas = host.tenants.quotas(&caller.tenant);
    let mut out = Vec::new();
    for f in host.db.functions(&caller.tenant)? {
        if !f.deleted {
            let versions = host.db.versions(&caller.tenant, &f.name)?;
            out.push(views::function(&f, &versions, in_force(&host, &quotas, &f)));
        }
    }
    Ok(Json(views::FunctionList { functions: out }).into_response())
}

#[utoipa::path(get, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    responses((status = 200, description = "The function with its versions and settings", body = views::Function), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn get_function(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.require(Action::ReadFunctions)?;
    let f = host
        .db
        .function(&caller.tenant, &name)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| ApiError::NotFound(format!("function {name:?} not found")))?;
    let versions = host.db.versions(&caller.tenant, &name)?;
    let quotas = host.tenants.quotas(&caller.tenant);
    Ok(Json(views::function(&f, &versions, in_force(&host, &quotas, &f))).into_response())
}

/// Delete a function: new invocations are refused (404); running executions finish on
/// their version.
#[utoipa::path(delete, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn delete_function(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.require(Action::WriteFunctions)?;
    host.registry.delete(&caller.tenant, &name).await?;
    host.tenants.usage.function_deleted(&caller.tenant, &name);
    Ok(StatusCode::NO_CONTENT.into_response())
}
