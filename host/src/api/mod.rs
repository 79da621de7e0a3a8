//! The HTTP edge: the only module that knows axum and the JSON shapes of the API.
//!
//! Handlers validate input, call the services, and render records. Every error is
//! `{"error": {"code", "message"}}` via `ApiError`.
//!
//! One file per resource holds its handlers, each with its `#[utoipa::path]`:
//! `functions` (upload, list, get, settings, delete), `executions` (invoke, list, get,
//! history, the live event stream, logs, stop), `callbacks` (succeed, fail, heartbeat) and
//! `operations` (health, metrics), `tenants` (tenants, keys, whoami), `webhooks`
//! (webhooks, their deliveries, retry, test), `schedules` (cron schedules, pause,
//! trigger) and `recovery` (redrive, fork, bulk redrive jobs). This file assembles the
//! router and its OpenAPI description from them, and holds what more than one of them
//! uses: the extractors, the body and JSON checks, the name check. `views` renders records, `error` maps every
//! error to a status, `serve` serves connections, `ui` serves the web console at `/ui`.

mod auth;
mod callbacks;
mod error;
mod executions;
mod functions;
mod operations;
mod recovery;
mod schedules;
mod serve;
mod tenants;
mod ui;
mod views;
mod webhooks;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub use executions::{
    MAX_EXECUTION_PAGE, MAX_HISTORY_PAGE, MAX_LOG_PAGE, MAX_LOG_PAGE_BYTES, MAX_WAIT,
};
pub use serve::{serve, serve_metrics};

use crate::db::FunctionRecord;
use crate::{settings, Host};

type AppState = State<Arc<Host>>;
type ApiResult<T = Response> = Result<T, ApiError>;

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
            // Any valid key, whatever its role: the description holds no tenant's data,
            // but DESIGN 8 leaves only /healthz open.
            get(move |_: crate::tenants::Caller| async move { Json(spec.as_ref().clone()) }),
        )
        .merge(ui::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::MethodNotAllowed(format!(
                "{method} is not allowed here: see /v1/openapi.json"
            ))
        })
        // Durability at the point of output: no response leaves before what it shows is on disk.
        .layer(axum::middleware::from_fn_with_state(
            host.clone(),
            serve::durable_output,
        ))
        .with_state(host)
}

/// The OpenAPI description of the API (what `GET /v1/openapi.json` serves).
pub fn openapi(host: &Arc<Host>) -> utoipa::openapi::OpenApi {
    let mut spec = routes(host).split_for_parts().1;
    settings_bounds(&mut spec, host);
    auth::describe(&mut spec, &["/healthz"]);
    spec
}

/// The ranges of the settings fields (`settings::Patch`) and of the quotas
/// (`tenants::Quotas`), some of which depend on the server's own limits and so cannot be
/// static attributes.
fn settings_bounds(spec: &mut utoipa::openapi::OpenApi, host: &Host) {
    let d = &host.opts.runtime.defaults;
    let max_mb = (d.memory_limit_bytes / (1024 * 1024)) as u64;
    set_ranges(
        spec,
        "Patch",
        &[
            ("memory_limit_mb", 1, max_mb),
            (
                "activation_timeout_secs",
                1,
                settings::MAX_ACTIVATION_TIMEOUT_SECS,
            ),
            (
                "execution_timeout_secs",
                1,
                settings::MAX_EXECUTION_TIMEOUT_SECS,
            ),
            ("retention_secs", 1, settings::MAX_RETENTION_SECS),
        ],
    );
    let b = &host.tenants.bounds;
    set_ranges(
        spec,
        "Quotas",
        &[
            ("max_component_bytes", 1, b.max_component_bytes),
            (
                "max_concurrent_activations",
                1,
                b.max_concurrent_activations,
            ),
            ("max_functions", 0, MAX_JSON_INTEGER),
            ("max_stored_bytes", 0, MAX_JSON_INTEGER),
            ("max_active_executions", 0, MAX_JSON_INTEGER),
            ("invocation_burst", 1, MAX_JSON_INTEGER),
            ("memory_limit_mb", 1, b.memory_limit_mb),
            ("activation_timeout_secs", 1, b.activation_timeout_secs),
            ("max_history_events", 1, b.max_history_events),
        ],
    );
    use utoipa::openapi::schema::{ArrayItems, Schema};
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(Schema::Object(quotas))) = spec
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("Quotas"))
    else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(o))) = quotas.properties.get_mut("invocations_per_second") {
        o.exclusive_minimum = Some(0.into());
    }
    if let Some(RefOr::T(Schema::Array(a))) = quotas.properties.get_mut("outbound_allowlist") {
        if let ArrayItems::RefOrSchema(item) = &mut a.items {
            if let RefOr::T(Schema::Object(o)) = item.as_mut() {
                o.pattern = Some(crate::host_api::outbound::HOST_PORT_PATTERN.into());
            }
        }
    }
}

/// The largest integer the description allows (`format: int64`).
const MAX_JSON_INTEGER: u64 = i64::MAX as u64;

/// Set `minimum`/`maximum` of integer fields of the schema `name`.
fn set_ranges(spec: &mut utoipa::openapi::OpenApi, name: &str, ranges: &[(&str, u64, u64)]) {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(Schema::Object(schema))) = spec
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name))
    else {
        return;
    };
    for &(field, min, max) in ranges {
        if let Some(RefOr::T(Schema::Object(o))) = schema.properties.get_mut(field) {
            o.minimum = Some(min.into());
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
            functions::put_function,
            functions::get_function,
            functions::patch_function,
            functions::delete_function
        ))
        .layer(DefaultBodyLimit::max(upload_limit));
    OpenApiRouter::with_openapi(utoipa::openapi::OpenApiBuilder::new().info(info).build())
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::metrics))
        .routes(routes!(functions::list_functions))
        .routes(routes!(functions::get_upload))
        .routes(routes!(executions::invoke))
        .routes(routes!(executions::list_executions))
        .routes(routes!(executions::get_execution))
        .routes(routes!(executions::history))
        .routes(routes!(executions::logs))
        .routes(routes!(executions::events))
        .routes(routes!(executions::stop))
        .routes(routes!(callbacks::callback_succeed))
        .routes(routes!(callbacks::callback_fail))
        .routes(routes!(callbacks::callback_heartbeat))
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(
            tenants::get_tenant,
            tenants::patch_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(tenants::create_key, tenants::list_keys))
        .routes(routes!(tenants::revoke_key))
        .routes(routes!(tenants::whoami))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::patch_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retry_delivery))
        .routes(routes!(webhooks::test_webhook))
        .routes(routes!(schedules::list_schedules))
        .routes(routes!(
            schedules::put_schedule,
            schedules::get_schedule,
            schedules::patch_schedule,
            schedules::delete_schedule
        ))
        .routes(routes!(schedules::trigger_schedule))
        .merge(recovery::routes())
        .layer(DefaultBodyLimit::max(json_limit))
        .merge(functions)
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

/// A body that must be a JSON object, as text checked by `json_text` (size, depth,
/// validity) and `json_object`.
fn object_body(host: &Host, b: Result<Bytes, BytesRejection>, what: &str) -> ApiResult<String> {
    let b = body(b)?;
    let text = json_text(host, &b, what)?;
    json_object(&text, what)?;
    Ok(text)
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

/// Whole-number floats (`44.0`, an integer in JSON Schema) among `fields` as integers,
/// which serde's `u64` would refuse; `except` names fields that are numbers, not integers.
fn integral_fields(fields: &mut serde_json::Map<String, serde_json::Value>, except: &[&str]) {
    for (name, field) in fields.iter_mut() {
        if except.contains(&name.as_str()) {
            continue;
        }
        if let Some(f) = field
            .as_f64()
            .filter(|f| field.is_f64() && f.fract() == 0.0)
        {
            if (0.0..=u64::MAX as f64).contains(&f) {
                *field = serde_json::Value::from(f as u64);
            }
        }
    }
}

/// Names of functions (and schedules): 1-64 of `[A-Za-z0-9_.-]`, not starting with a dot.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Function names: see `is_name`.
fn check_name(name: &str) -> ApiResult<()> {
    if is_name(name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid function name {name:?}: use 1-64 letters, digits, '_', '-' or '.'"
        )))
    }
}

fn effective(host: &Host, f: &FunctionRecord) -> settings::Limits {
    settings::resolve(&f.settings, &host.opts.runtime.defaults)
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
