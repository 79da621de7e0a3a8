//! Operations endpoints: `GET /healthz` (up, or degraded/failed storage as a 503) and
//! `GET /metrics` (Prometheus text), the latter on the API and, through `metrics_router`,
//! on the `--metrics-listen` listener; both render with `render`. They read the host's
//! state and counters; they change nothing.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, ApiResult, AppState};
use crate::db::{Status, StorageState};
use crate::metrics::TenantMetrics;
use crate::tenants::{Action, Caller};
use crate::Host;

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The host is up: {\"status\": \"ok\"}"),
        (status = 503, description = "The host serves reads but refuses writes: {\"status\": \"degraded\", \"storage\": \"full\", \"message\"} (until space returns, by itself) or {\"status\": \"failed\", \"storage\": \"failed\", \"message\"} (until a restart)")))]
pub(super) async fn healthz(State(host): AppState) -> Response {
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

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn metrics(State(host): AppState, caller: Caller) -> ApiResult {
    caller.require(Action::Administer)?;
    Ok(exposition(&host))
}

/// The router of `--metrics-listen`: `GET /metrics` and nothing else, without
/// authentication (the listener is refused unless it is a loopback address).
pub fn metrics_router(host: Arc<Host>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(host): AppState| async move { exposition(&host) }),
        )
        .fallback(|| async { ApiError::NotFound("this listener serves GET /metrics only".into()) })
        .with_state(host)
}

/// `GET /metrics` as both listeners answer it.
fn exposition(host: &Host) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        render(host),
    )
        .into_response()
}

/// The Prometheus text of the host's metrics: per-tenant series with a `tenant` label, then
/// the host-wide ones.
pub fn render(host: &Host) -> String {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let m = &host.metrics;
    let tenants: Vec<(String, _)> = m
        .tenants()
        .into_iter()
        .map(|(name, t)| (crate::metrics::label_value(&name), t))
        .collect();
    let mut s = String::new();
    let _ = writeln!(s, "# HELP durable_resident_instances Live wasm instances.");
    let _ = writeln!(s, "# TYPE durable_resident_instances gauge");
    let _ = writeln!(
        s,
        "durable_resident_instances {}",
        host.resident_instances()
    );
    let _ = writeln!(
        s,
        "# HELP durable_executions Executions by tenant and status."
    );
    let _ = writeln!(s, "# TYPE durable_executions gauge");
    for (tenant, t) in &tenants {
        for st in Status::ALL {
            let _ = writeln!(
                s,
                "durable_executions{{tenant=\"{tenant}\",status=\"{}\"}} {}",
                st.as_str(),
                t.count(st)
            );
        }
    }
    type Counter = fn(&TenantMetrics) -> &AtomicU64;
    let per_tenant: [(&str, &str, Counter); 5] = [
        (
            "durable_activations_total",
            "Guest activations.",
            |t| &t.activations,
        ),
        (
            "durable_suspensions_total",
            "Activations that ended suspended.",
            |t| &t.suspensions,
        ),
        (
            "durable_traps_total",
            "Activations that ended in a trap or timeout.",
            |t| &t.traps,
        ),
        (
            "durable_steps_replayed_total",
            "Steps whose recorded result was returned to the guest again (replays).",
            |t| &t.steps_replayed,
        ),
        (
            "durable_host_failures_total",
            "Activations that failed in the host (storage, loading) and were scheduled to run again.",
            |t| &t.host_failures,
        ),
    ];
    for (name, help, counter) in per_tenant {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        for (tenant, t) in &tenants {
            let v = counter(t).load(Relaxed);
            let _ = writeln!(s, "{name}{{tenant=\"{tenant}\"}} {v}");
        }
    }
    let _ = writeln!(
        s,
        "# HELP durable_webhook_deliveries_total Webhook deliveries by tenant and result: \
         delivered (2xx), failed (for good), retried (an attempt failed, another is scheduled).\n\
         # TYPE durable_webhook_deliveries_total counter"
    );
    for (tenant, t) in &tenants {
        for (result, v) in [
            ("delivered", &t.webhooks_delivered),
            ("failed", &t.webhooks_failed),
            ("retried", &t.webhook_retries),
        ] {
            let _ = writeln!(
                s,
                "durable_webhook_deliveries_total{{tenant=\"{tenant}\",result=\"{result}\"}} {}",
                v.load(Relaxed)
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP durable_schedule_firings_total Schedule firings by tenant and result: fired \
         (an execution was created), skipped (overlap, or missed and not caught up), refused \
         (the tenant's rate or quotas, or the function is gone).\n\
         # TYPE durable_schedule_firings_total counter"
    );
    for (tenant, t) in &tenants {
        for (result, v) in [
            ("fired", &t.schedule_fired),
            ("skipped", &t.schedule_skipped),
            ("refused", &t.schedule_refused),
        ] {
            let _ = writeln!(
                s,
                "durable_schedule_firings_total{{tenant=\"{tenant}\",result=\"{result}\"}} {}",
                v.load(Relaxed)
            );
        }
    }
    let counters = [
        (
            "durable_compiles_total",
            "Components compiled: uploads, and loads that found no usable artifact.",
            m.compiles.load(Relaxed),
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
        (
            "durable_artifact_cache_bytes",
            "Bytes of compiled artifact files on disk (bounded by --artifact-cache-mb).",
            host.metrics.artifact_bytes.load(Relaxed),
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    crate::metrics::render_flow(&mut s, &host.scheduler.flow_stats());
    crate::metrics::render_latency(&mut s, &tenants, host.db.sync_stats());
    s
}
