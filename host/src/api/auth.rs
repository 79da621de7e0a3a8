//! Authentication at the edge: the `Caller` of every route but `/healthz`, from its
//! `Authorization: Bearer` key (and, for admin keys, the `Durable-Tenant` it acts in), and
//! the OpenAPI description of that: the bearer scheme, and the 401/403 every secured
//! operation may answer.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;
use crate::tenants::Caller;
use crate::Host;

/// The header an admin key names the tenant it acts in with.
pub const TENANT_HEADER: &str = "durable-tenant";

impl FromRequestParts<Arc<Host>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, host: &Arc<Host>) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let acting = match parts.headers.get(TENANT_HEADER) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::BadRequest("the Durable-Tenant header is not a tenant name".into())
            })?),
        };
        Ok(host.tenants.authenticate(authorization, acting)?)
    }
}

/// The name of the bearer scheme in the OpenAPI description.
const SCHEME: &str = "api_key";

/// Describe the bearer key on every operation but those in `open` (paths), with the 401
/// and 403 answers it brings.
pub fn describe(spec: &mut utoipa::openapi::OpenApi, open: &[&str]) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    use utoipa::openapi::{ResponseBuilder, SecurityRequirement};
    let components = spec.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        SCHEME.into(),
        utoipa::openapi::RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("dh_<key_id>_<secret>")
                .description(Some(
                    "An API key: `Authorization: Bearer dh_<key_id>_<secret>`. Admin keys may \
                     act in another tenant with `Durable-Tenant: <name>`.",
                ))
                .build(),
        )),
    );
    spec.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for (path, item) in spec.paths.paths.iter_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            if open.contains(&path.as_str()) {
                op.security = Some(vec![SecurityRequirement::default()]);
                continue;
            }
            let r = &mut op.responses.responses;
            r.entry("401".into()).or_insert_with(|| {
                error("No API key, or one that is unknown, revoked or expired (with WWW-Authenticate: Bearer)").into()
            });
            r.entry("403".into())
                .or_insert_with(|| error("The key's role may not do this").into());
        }
    }
}
