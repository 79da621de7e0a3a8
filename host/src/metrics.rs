//! Counters the host exports at `GET /metrics` (Prometheus text format; rendered by
//! `api::operations`). What belongs to a tenant (executions by status, activations,
//! suspensions, traps, replayed steps, host failures) is counted per tenant and exported
//! with a `tenant` label; what the host shares (compiles here; instances, storage, queue in
//! their own services) has no label.
//!
//! Hot path: an activation looks its tenant's `TenantMetrics` up once (`Metrics::tenant`, a
//! shared read lock and a hash lookup) and then only touches its atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::db::{Status, StorageState};

/// One tenant's counters.
#[derive(Debug, Default)]
pub struct TenantMetrics {
    by_status: [AtomicI64; 6],
    pub activations: AtomicU64,
    pub suspensions: AtomicU64,
    pub traps: AtomicU64,
    /// Steps whose recorded result was returned to the guest again (a replay).
    pub steps_replayed: AtomicU64,
    /// Activations that failed in the host (not the guest) and were scheduled to run again.
    pub host_failures: AtomicU64,
    /// Webhook deliveries that a receiver accepted (2xx).
    pub webhooks_delivered: AtomicU64,
    /// Webhook deliveries that failed for good (last attempt, 410, disabled webhook).
    pub webhooks_failed: AtomicU64,
    /// Webhook attempts that failed and were scheduled again.
    pub webhook_retries: AtomicU64,
    /// Schedule firings that created an execution.
    pub schedule_fired: AtomicU64,
    /// Schedule firings skipped (overlap, or missed and not caught up).
    pub schedule_skipped: AtomicU64,
    /// Schedule firings refused (rate, quotas, function gone).
    pub schedule_refused: AtomicU64,
}

fn idx(s: Status) -> usize {
    Status::ALL.iter().position(|x| *x == s).expect("listed")
}

impl TenantMetrics {
    /// Executions of this tenant in status `s`.
    pub fn count(&self, s: Status) -> i64 {
        self.by_status[idx(s)].load(Ordering::Relaxed)
    }

    /// An execution of this tenant moved from `from` to `to`.
    pub fn transition(&self, from: Status, to: Status) {
        if from != to {
            self.by_status[idx(from)].fetch_sub(1, Ordering::Relaxed);
            self.by_status[idx(to)].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The host's counters: per tenant, and the few it shares.
#[derive(Default)]
pub struct Metrics {
    tenants: RwLock<HashMap<Arc<str>, Arc<TenantMetrics>>>,
    /// Components compiled (uploads, and loads without a usable artifact).
    pub compiles: AtomicU64,
    /// Bytes of compiled artifact files on disk (bounded by `--artifact-cache-mb`).
    pub artifact_bytes: AtomicU64,
}

impl Metrics {
    /// `tenant`'s counters, created at first use. Look them up once per activation or
    /// request and keep the `Arc`.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantMetrics> {
        if let Some(m) = self.tenants.read().expect("metrics").get(tenant) {
            return m.clone();
        }
        self.tenants
            .write()
            .expect("metrics")
            .entry(tenant.into())
            .or_default()
            .clone()
    }

    /// Every tenant's counters, by name.
    pub fn tenants(&self) -> Vec<(Arc<str>, Arc<TenantMetrics>)> {
        let mut all: Vec<_> = self
            .tenants
            .read()
            .expect("metrics")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Drop a deleted tenant's series.
    pub fn forget(&self, tenant: &str) {
        self.tenants.write().expect("metrics").remove(tenant);
    }

    /// Set every tenant's execution counts (at start-up, from the store): `counts` has the
    /// non-zero ones; every other count becomes 0.
    pub fn set_counts(&self, counts: &HashMap<(Arc<str>, Status), i64>) {
        for ((tenant, _), _) in counts.iter() {
            self.tenant(tenant);
        }
        for (tenant, m) in self.tenants() {
            for s in Status::ALL {
                let n = counts.get(&(tenant.clone(), s)).copied().unwrap_or(0);
                m.by_status[idx(s)].store(n, Ordering::Relaxed);
            }
        }
    }

    /// A new execution of `tenant` (it starts running).
    pub fn created(&self, tenant: &str) {
        self.tenant(tenant).by_status[idx(Status::Running)].fetch_add(1, Ordering::Relaxed);
    }

    /// A finished execution of `tenant` was deleted (its retention ended).
    pub fn removed(&self, tenant: &str, s: Status) {
        self.tenant(tenant).by_status[idx(s)].fetch_sub(1, Ordering::Relaxed);
    }

    /// Executions in status `s`, all tenants together.
    pub fn count(&self, s: Status) -> i64 {
        self.tenants().iter().map(|(_, m)| m.count(s)).sum()
    }

    /// A per-tenant counter (`|m| &m.traps`), all tenants together.
    pub fn total(&self, counter: impl Fn(&TenantMetrics) -> &AtomicU64) -> u64 {
        self.tenants()
            .iter()
            .map(|(_, m)| counter(m).load(Ordering::Relaxed))
            .sum()
    }
}

/// The `durable_storage_full` gauge: 1 while writes are refused for lack of space.
pub fn storage_full(s: StorageState) -> u64 {
    u64::from(s == StorageState::Full)
}

/// The `durable_storage_failed` gauge: 1 once the store stopped writing (fail-stop).
pub fn storage_failed(s: StorageState) -> u64 {
    u64::from(s == StorageState::Failed)
}

/// The flow-control series (DESIGN 10), by tenant and function, from the scheduler's
/// `flow_stats`: queue depth and the oldest wait (gauges), new executions that waited for a
/// throttle token and invocations refused by `max_queued` (counters).
pub fn render_flow(out: &mut String, stats: &[crate::scheduler::FunctionStats]) {
    use std::fmt::Write;
    type Value = fn(&crate::scheduler::FunctionStats) -> String;
    let series: [(&str, &str, &str, Value); 4] = [
        (
            "durable_queue_depth",
            "gauge",
            "Executions in the run queue (waiting for a slot, their function's concurrency limit or a throttle token), by tenant and function.",
            |f| f.queued.to_string(),
        ),
        (
            "durable_queue_oldest_seconds",
            "gauge",
            "How long the oldest execution in the run queue has waited, by tenant and function (0 when none waits).",
            |f| format!("{:.3}", f.oldest.as_secs_f64()),
        ),
        (
            "durable_throttled_total",
            "counter",
            "New executions that waited for their function's throttle to start them.",
            |f| f.throttled_total.to_string(),
        ),
        (
            "durable_backlog_refused_total",
            "counter",
            "Invocations refused (429 backlog_full) because their function had max_queued executions waiting.",
            |f| f.refused_total.to_string(),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for f in stats {
            let _ = writeln!(
                out,
                "{name}{{tenant=\"{}\",function=\"{}\"}} {}",
                label_value(&f.tenant),
                label_value(&f.function),
                value(f)
            );
        }
    }
}

/// A Prometheus label value, escaped (`\`, `"`, newline).
pub fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_per_tenant_and_summed_for_totals() {
        let m = Metrics::default();
        m.created("a");
        m.created("a");
        m.created("b");
        m.tenant("a").transition(Status::Running, Status::Suspended);
        m.tenant("b").transition(Status::Running, Status::Succeeded);
        m.removed("b", Status::Succeeded);
        m.tenant("a").traps.fetch_add(2, Ordering::Relaxed);
        m.tenant("b").traps.fetch_add(1, Ordering::Relaxed);
        assert_eq!(m.tenant("a").count(Status::Running), 1);
        assert_eq!(m.tenant("a").count(Status::Suspended), 1);
        assert_eq!(m.tenant("b").count(Status::Running), 0);
        assert_eq!(m.tenant("b").count(Status::Succeeded), 0);
        assert_eq!(m.count(Status::Running), 1);
        assert_eq!(m.count(Status::Suspended), 1);
        assert_eq!(m.total(|t| &t.traps), 3);
        let names: Vec<String> = m.tenants().iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["a", "b"]);
        // The same counters every time.
        assert!(Arc::ptr_eq(&m.tenant("a"), &m.tenant("a")));
        m.forget("a");
        assert_eq!(m.total(|t| &t.traps), 1);
    }

    #[test]
    fn start_up_counts_replace_every_tenants_counts() {
        let m = Metrics::default();
        m.created("old");
        let counts = HashMap::from([
            ((Arc::<str>::from("a"), Status::Suspended), 3),
            ((Arc::<str>::from("b"), Status::Failed), 1),
        ]);
        m.set_counts(&counts);
        assert_eq!(m.tenant("a").count(Status::Suspended), 3);
        assert_eq!(m.tenant("b").count(Status::Failed), 1);
        assert_eq!(m.tenant("old").count(Status::Running), 0);
        assert_eq!(m.count(Status::Running), 0);
    }

    #[test]
    fn flow_series_carry_tenant_and_function() {
        let stats = [crate::scheduler::FunctionStats {
            tenant: "acme".into(),
            function: "f\"x".into(),
            queued: 3,
            oldest: std::time::Duration::from_millis(1500),
            throttled_total: 2,
            refused_total: 1,
        }];
        let mut out = String::new();
        render_flow(&mut out, &stats);
        for line in [
            "durable_queue_depth{tenant=\"acme\",function=\"f\\\"x\"} 3",
            "durable_queue_oldest_seconds{tenant=\"acme\",function=\"f\\\"x\"} 1.500",
            "durable_throttled_total{tenant=\"acme\",function=\"f\\\"x\"} 2",
            "durable_backlog_refused_total{tenant=\"acme\",function=\"f\\\"x\"} 1",
            "# TYPE durable_throttled_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in\n{out}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("acme"), "acme");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
