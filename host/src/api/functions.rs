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
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::{check_name, effective, object_body, views, ApiError, ApiResult, AppState, Path};
use crate::db::FunctionRecord;
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
/// Settings may be set in the query (a number, or `default`).
#[utoipa::path(put, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"), SettingsQuery),
    request_body(description = "The component's bytes", content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 201, description = "A new version", body = views::Version),
        (status = 200, description = "The same bytes as the latest version", body = views::Version),
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
    let uploaded = async {
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
        let up = host
            .registry
            .upload_spooled(&caller.tenant, &name, spooled, &patch)
            .await?;
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
