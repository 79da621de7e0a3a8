//! The tenants resource (create, list, get with usage, change quotas, delete), its API
//! keys (create, list, revoke) and `whoami`. Who may do what, and keeping memory and store
//! in step, is `crate::tenants`' job; this file parses bodies and renders records.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{object_body, views, ApiError, ApiResult, AppState, Path};
use crate::db::{ApiKeyRecord, TenantRecord};
use crate::tenants::{key, Action, Caller, Quotas, Role};
use crate::Host;

/// A tenant, with the quotas in force and its usage of those it counts.
#[derive(Serialize, ToSchema)]
pub struct Tenant {
    pub name: String,
    pub created_at: String,
    /// Every quota's value in force: the tenant's own, else the server's default; `null`:
    /// no limit (for `outbound_allowlist`: the server's `--allow-outbound`).
    pub quotas: Quotas,
    /// What the tenant uses now of each quota that counts something, under the quota's name.
    pub usage: crate::tenants::quota::Usage,
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// An API key, without its secret.
#[derive(Serialize, ToSchema)]
pub struct ApiKey {
    pub key_id: String,
    pub tenant: String,
    pub role: Role,
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// A new API key: the only answer that holds the whole key.
#[derive(Serialize, ToSchema)]
pub struct NewApiKey {
    pub key_id: String,
    /// `dh_<key_id>_<secret>`: shown this once, never stored.
    pub key: String,
    pub tenant: String,
    pub role: Role,
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKey>,
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    pub tenant: String,
    pub role: Role,
    /// `null` when the server runs with `--insecure-no-auth`.
    pub key_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// Quotas to set (others take the server's defaults).
    #[schema(value_type = Option<Quotas>)]
    quotas: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TenantChange {
    /// Quotas to change; `null` returns one to the server's default.
    #[schema(value_type = Option<Quotas>)]
    quotas: Option<Map<String, Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    role: Role,
    /// For people: 1-128 characters, no control characters.
    #[schema(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,128}$")]
    name: String,
    /// RFC 3339, in the future; after it the key is refused.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

fn tenant_view(host: &Host, t: &TenantRecord) -> ApiResult<Tenant> {
    Ok(Tenant {
        name: t.name.clone(),
        created_at: views::timestamp(t.created_ms),
        quotas: host.tenants.quotas(&t.name),
        usage: host.usage(&t.name)?,
    })
}

fn key_view(k: &ApiKeyRecord) -> ApiKey {
    ApiKey {
        key_id: k.key_id.clone(),
        tenant: k.tenant.clone(),
        role: k.role,
        name: k.name.clone(),
        created_at: views::timestamp(k.created_ms),
        expires_at: k.expires_ms.map(views::timestamp),
    }
}

/// A JSON object body of type `T`.
fn parse<T: serde::de::DeserializeOwned>(
    host: &Host,
    b: Result<Bytes, BytesRejection>,
    what: &str,
) -> ApiResult<T> {
    let text = object_body(host, b, what)?;
    let mut v: Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::InvalidJson(format!("the {what} is not valid JSON: {e}")))?;
    if let Some(Value::Object(q)) = v.get_mut("quotas") {
        super::integral_fields(q, &["invocations_per_second"]);
    }
    serde_json::from_value(v).map_err(|e| ApiError::BadRequest(format!("the {what}: {e}")))
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants",
    request_body(content = NewTenant, description = "The tenant's name and the quotas it sets"),
    responses((status = 201, description = "Created", body = Tenant), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 409, description = "It exists", body = views::ErrorBody)))]
pub(super) async fn create_tenant(
    State(host): AppState,
    caller: Caller,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::Administer)?;
    let req: NewTenant = parse(&host, b, "tenant")?;
    let t = host
        .tenants
        .create(&caller, &req.name, &req.quotas.unwrap_or_default())
        .await?;
    // Its series exist from now on, at zero.
    host.metrics.tenant(&t.name);
    Ok((StatusCode::CREATED, Json(tenant_view(&host, &t)?)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, description = "Every tenant (admin keys only)", body = TenantList)))]
pub(super) async fn list_tenants(State(host): AppState, caller: Caller) -> ApiResult {
    caller.require(Action::Administer)?;
    let tenants = host
        .tenants
        .list()
        .iter()
        .map(|t| tenant_view(&host, t))
        .collect::<ApiResult<_>>()?;
    Ok(Json(TenantList { tenants }).into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    responses((status = 200, description = "The tenant, its quotas and usage (admin keys, or an owner key of this tenant)", body = Tenant), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn get_tenant(
    State(host): AppState,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult {
    let t = host.tenants.get(&caller, &tenant)?;
    Ok(Json(tenant_view(&host, &t)?).into_response())
}

#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    request_body(content = TenantChange, description = "Quotas to change; null returns one to the server's default"),
    responses((status = 200, description = "The tenant", body = Tenant), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn patch_tenant(
    State(host): AppState,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::Administer)?;
    let req: TenantChange = parse(&host, b, "tenant change")?;
    let t = host
        .tenants
        .update(&caller, &tenant, &req.quotas.unwrap_or_default())
        .await?;
    Ok(Json(tenant_view(&host, &t)?).into_response())
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    responses((status = 204, description = "Deleted, with its keys and finished executions"), (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "It owns functions or live executions, or it is the caller's own", body = views::ErrorBody)))]
pub(super) async fn delete_tenant(
    State(host): AppState,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult {
    caller.require(Action::Administer)?;
    host.tenants.delete(&caller, &tenant).await?;
    host.metrics.forget(&tenant);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    request_body(content = KeyRequest, description = "The key's role, a name for people, and when it expires"),
    responses((status = 201, description = "Created: the whole key, shown this once", body = NewApiKey), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown tenant", body = views::ErrorBody)))]
pub(super) async fn create_key(
    State(host): AppState,
    caller: Caller,
    Path(tenant): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ManageKeys)?;
    let req: KeyRequest = parse(&host, b, "key request")?;
    let expires_ms = req
        .expires_at
        .as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()
                .and_then(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "expires_at {s:?}: expected an RFC 3339 time, e.g. 2027-01-31T00:00:00Z"
                    ))
                })
        })
        .transpose()?;
    let (rec, key) = host
        .tenants
        .create_key(&caller, &tenant, req.role, &req.name, expires_ms)
        .await?;
    let v = key_view(&rec);
    let created = NewApiKey {
        key_id: v.key_id,
        key,
        tenant: v.tenant,
        role: v.role,
        name: v.name,
        created_at: v.created_at,
        expires_at: v.expires_at,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/keys", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")),
    responses((status = 200, description = "The tenant's keys, oldest first, without secrets", body = ApiKeyList), (status = 404, description = "Unknown tenant", body = views::ErrorBody)))]
pub(super) async fn list_keys(
    State(host): AppState,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult {
    caller.require(Action::ManageKeys)?;
    let keys = host.tenants.keys(&caller, &tenant)?;
    Ok(Json(ApiKeyList {
        keys: keys.iter().map(key_view).collect(),
    })
    .into_response())
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/keys/{key_id}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name", pattern = "^[a-z0-9][a-z0-9-]{0,62}$"),
        ("key_id" = String, Path, description = "The key's id", pattern = "^[0-9a-f]{12}$")),
    responses((status = 204, description = "Revoked: refused from the next request on"), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn revoke_key(
    State(host): AppState,
    caller: Caller,
    Path((tenant, key_id)): Path<(String, String)>,
) -> ApiResult {
    caller.require(Action::ManageKeys)?;
    if !key::is_key_id(&key_id) {
        // Checked after the tenant, so that another tenant's name still answers 404 alike.
        host.tenants.keys(&caller, &tenant)?;
        return Err(ApiError::NotFound(format!("key {key_id:?} not found")));
    }
    host.tenants.revoke_key(&caller, &tenant, &key_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/whoami", tag = "tenants",
    responses((status = 200, description = "The caller's tenant, role and key id", body = WhoAmI)))]
pub(super) async fn whoami(caller: Caller) -> Response {
    Json(WhoAmI {
        tenant: caller.tenant.to_string(),
        role: caller.role,
        key_id: caller.key_id,
    })
    .into_response()
}
