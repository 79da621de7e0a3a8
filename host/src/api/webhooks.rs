//! The webhooks resource (DESIGN 9): create (the only answer with the secret), list, get,
//! change, delete, a webhook's deliveries, a manual retry and the test event. What they do
//! is `crate::webhooks`' (`manage.rs`); this file parses bodies and renders records.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{object_body, views, ApiError, ApiQuery, ApiResult, AppState, Path};
use crate::db::{DeliveryRecord, DeliveryStatus, WebhookFormat, WebhookRecord};
use crate::tenants::{Action, Caller};
use crate::webhooks::manage::{Change, Spec, MAX_DELIVERY_PAGE};
use crate::Host;

/// What a webhook sends.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The Standard Webhooks body `{type, timestamp, data}`, signed.
    Standard,
    /// A Slack incoming-webhook message `{"text": ...}`.
    Slack,
}

impl From<Format> for WebhookFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Standard => WebhookFormat::Standard,
            Format::Slack => WebhookFormat::Slack,
        }
    }
}

impl From<WebhookFormat> for Format {
    fn from(f: WebhookFormat) -> Self {
        match f {
            WebhookFormat::Standard => Format::Standard,
            WebhookFormat::Slack => Format::Slack,
        }
    }
}

/// An event a webhook may receive.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
pub enum Event {
    #[serde(rename = "execution.succeeded")]
    Succeeded,
    #[serde(rename = "execution.failed")]
    Failed,
    #[serde(rename = "execution.timed_out")]
    TimedOut,
    #[serde(rename = "execution.stopped")]
    Stopped,
    #[serde(rename = "execution.redriven")]
    Redriven,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Succeeded => "execution.succeeded",
            Event::Failed => "execution.failed",
            Event::TimedOut => "execution.timed_out",
            Event::Stopped => "execution.stopped",
            Event::Redriven => "execution.redriven",
        }
    }
}

/// A webhook, without its secret.
#[derive(Serialize, ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// Only executions of these functions; `null`: every function.
    pub functions: Option<Vec<String>>,
    pub format: Format,
    pub enabled: bool,
    /// Why it was disabled (its destination answered 410, or a request), if it is.
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new webhook: the only answer that holds its secret.
#[derive(Serialize, ToSchema)]
pub struct NewWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_<base64 of 32 bytes>`: verifies `webhook-signature` (Standard Webhooks).
    /// Shown this once.
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// One event for one webhook, and what its attempts came to.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    /// The `webhook-id` header, the same on every attempt.
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub execution_id: Option<String>,
    /// pending, delivered or failed.
    pub status: String,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    /// http:// or https://; its host and port must be in the tenant's outbound allowlist.
    #[schema(max_length = 2048)]
    url: String,
    #[schema(min_items = 1)]
    events: Vec<Event>,
    /// Only executions of these functions (default: every function).
    functions: Option<Vec<String>>,
    /// Default: standard.
    format: Option<Format>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookChange {
    #[schema(max_length = 2048)]
    url: Option<String>,
    #[schema(min_items = 1)]
    events: Option<Vec<Event>>,
    /// `null`: every function.
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(default)]
    functions: Option<Value>,
    format: Option<Format>,
    /// `true` re-enables a disabled webhook.
    enabled: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveriesQuery {
    /// Only deliveries in this status.
    #[param(pattern = "^(pending|delivered|failed)$")]
    status: Option<String>,
    /// At most this many (1-1000, default 100), newest first.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

fn webhook_view(w: &WebhookRecord) -> Webhook {
    Webhook {
        id: w.id.clone(),
        url: w.url.clone(),
        events: w.events.clone(),
        functions: w.functions.clone(),
        format: w.format.into(),
        enabled: w.enabled,
        disabled_reason: w.disabled_reason.clone(),
        created_at: views::timestamp(w.created_ms),
        updated_at: views::timestamp(w.updated_ms),
    }
}

fn delivery_view(d: &DeliveryRecord) -> Delivery {
    Delivery {
        id: d.id.clone(),
        webhook_id: d.webhook.clone(),
        event: d.event.clone(),
        execution_id: d.execution.clone(),
        status: d.status.as_str().to_string(),
        attempts: d.attempts,
        last_status_code: d.last_status_code,
        last_error: d.last_error.clone(),
        next_attempt_at: d.next_attempt_ms.map(views::timestamp),
        delivered_at: d.delivered_ms.map(views::timestamp),
        created_at: views::timestamp(d.created_ms),
    }
}

/// A JSON object body of type `T`.
fn parse<T: serde::de::DeserializeOwned>(
    host: &Host,
    b: Result<Bytes, BytesRejection>,
    what: &str,
) -> ApiResult<T> {
    let text = object_body(host, b, what)?;
    serde_json::from_str(&text).map_err(|e| ApiError::BadRequest(format!("the {what}: {e}")))
}

fn events(e: Vec<Event>) -> Vec<String> {
    e.into_iter().map(|e| e.as_str().to_string()).collect()
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body(content = WebhookRequest, description = "Where to send which events"),
    responses((status = 201, description = "Created: with its secret, shown this once", body = NewWebhook),
        (status = 400, description = "Bad input, or a destination outside the outbound allowlist", body = views::ErrorBody),
        (status = 429, description = "The tenant has as many webhooks as it may", body = views::ErrorBody)))]
pub(super) async fn create_webhook(
    State(host): AppState,
    caller: Caller,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    let req: WebhookRequest = parse(&host, b, "webhook")?;
    let spec = Spec {
        url: req.url,
        events: events(req.events),
        functions: req.functions,
        format: req.format.unwrap_or(Format::Standard).into(),
    };
    let (rec, secret) = host.webhooks.create(&caller.tenant, spec).await?;
    let created = NewWebhook {
        webhook: webhook_view(&rec),
        secret,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "The tenant's webhooks, oldest first", body = WebhookList)))]
pub(super) async fn list_webhooks(State(host): AppState, caller: Caller) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    let webhooks = host.webhooks.list(&caller.tenant)?;
    Ok(Json(WebhookList {
        webhooks: webhooks.iter().map(webhook_view).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id", pattern = "^wh_[0-9A-HJKMNP-TV-Z]{26}$")),
    responses((status = 200, description = "The webhook", body = Webhook), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn get_webhook(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    let w = host.webhooks.get(&caller.tenant, &id)?;
    Ok(Json(webhook_view(&w)).into_response())
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id", pattern = "^wh_[0-9A-HJKMNP-TV-Z]{26}$")),
    request_body(content = WebhookChange, description = "Fields to change"),
    responses((status = 200, description = "The webhook", body = Webhook), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn patch_webhook(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    let req: WebhookChange = parse(&host, b, "webhook change")?;
    let functions = match req.functions {
        None => None,
        Some(Value::Null) => Some(None),
        Some(v) => Some(Some(serde_json::from_value(v).map_err(|e| {
            ApiError::BadRequest(format!("functions: expected a list of names or null: {e}"))
        })?)),
    };
    let change = Change {
        url: req.url,
        events: req.events.map(events),
        functions,
        format: req.format.map(Into::into),
        enabled: req.enabled,
    };
    let w = host.webhooks.update(&caller.tenant, &id, change).await?;
    Ok(Json(webhook_view(&w)).into_response())
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id", pattern = "^wh_[0-9A-HJKMNP-TV-Z]{26}$")),
    responses((status = 204, description = "Deleted, with its deliveries (pending ones are not sent)"), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn delete_webhook(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    host.webhooks.delete(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id", pattern = "^wh_[0-9A-HJKMNP-TV-Z]{26}$"), DeliveriesQuery),
    responses((status = 200, description = "The webhook's deliveries, newest first", body = DeliveryList), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn list_deliveries(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status={s:?}: expected one of pending, delivered, failed"
            ))
        })?),
    };
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=MAX_DELIVERY_PAGE as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "limit={n}: expected 1 to {MAX_DELIVERY_PAGE}"
            )))
        }
    };
    let ds = host
        .webhooks
        .deliveries(&caller.tenant, &id, status, limit)?;
    Ok(Json(DeliveryList {
        deliveries: ds.iter().map(delivery_view).collect(),
    })
    .into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id", pattern = "^wh_[0-9A-HJKMNP-TV-Z]{26}$"),
        ("delivery" = String, Path, description = "Delivery id", pattern = "^msg_[0-9A-HJKMNP-TV-Z]{26}$")),
    responses((status = 202, description = "Pending: one more attempt, now", body = Delivery), (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "The delivery is pending already, or the webhook is disabled", body = views::ErrorBody)))]
pub(super) async fn retry_delivery(
    State(host): AppState,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    let d = host.webhooks.retry(&caller.tenant, &id, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery_view(&d))).into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id", pattern = "^wh_[0-9A-HJKMNP-TV-Z]{26}$")),
    responses((status = 202, description = "A webhook.test delivery, pending", body = Delivery), (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "The webhook is disabled", body = views::ErrorBody)))]
pub(super) async fn test_webhook(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Action::ManageWebhooks)?;
    let d = host.webhooks.test(&caller.tenant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery_view(&d))).into_response())
}
