//! Tenants, API keys, roles and quotas, end to end: a real server, real HTTP, several
//! tenants. One module per area; the isolation and role matrices take their routes from
//! the server's own /v1/openapi.json, so a new route cannot escape them.

#[path = "../support/mod.rs"]
mod support;

mod fairness;
mod isolation;
mod keys;
mod quotas;
mod roles;
