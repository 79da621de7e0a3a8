//! The callbacks resource: succeed, fail and heartbeat a callback an execution waits for.
//! Completing it (and refusing a late or repeated one) is `crate::callbacks`' job; this
//! file parses the body and renders the answer.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{body, json_text, object_body, views, ApiError, ApiResult, AppState, Path};
use crate::callbacks::Completion;
use crate::journal::ErrorObject;
use crate::tenants::{Action, Caller};

#[utoipa::path(post, path = "/v1/callbacks/{id}/succeed", tag = "callbacks",
    params(("id" = String, Path, description = "Callback id (from the CallbackStarted event)", pattern = "^cb_[0-9a-f]{32}$")),
    request_body(content = Option<Value>, description = "The result (JSON; empty means null)"),
    responses((status = 200, description = "Recorded", body = views::CallbackAnswer), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "Already completed or timed out, or its execution ended", body = views::ErrorBody), (status = 413, description = "Too large", body = views::ErrorBody)))]
pub(super) async fn callback_succeed(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::Callbacks)?;
    let b = body(b)?;
    let result = json_text(&host, &b, "callback result")?;
    host.callbacks()
        .complete(&caller.tenant, &id, Completion::Succeeded(result))
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
pub(super) async fn callback_fail(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::Callbacks)?;
    let text = object_body(&host, b, "callback failure")?;
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
        .complete(&caller.tenant, &id, Completion::Failed(error))
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
pub(super) async fn callback_heartbeat(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Action::Callbacks)?;
    host.callbacks()
        .heartbeat(&caller.tenant, &id, host.clock.now_ms())
        .await?;
    Ok(Json(views::CallbackAnswer {
        callback_id: id,
        status: "pending",
    })
    .into_response())
}
