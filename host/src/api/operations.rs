//! Operations endpoints: `GET /healthz` (up, or degraded/failed storage as a 503) and
//! `GET /metrics` (Prometheus text). They read the host's state and counters; they change
//! nothing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiResult, AppState};
use crate::db::{Status, StorageState};
use crate::tenants::{Action, Caller};

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
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s,
    )
        .into_response())
}
