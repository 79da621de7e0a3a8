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
    /// Latency histograms per function that has run here since the host started (bounded
    /// like the flow series: at most the tenant's functions, dropped with the tenant).
    functions: Named<FunctionMetrics>,
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

    /// `function`'s histograms, created at first use. Look them up once per activation.
    pub fn function(&self, function: &str) -> Arc<FunctionMetrics> {
        entry(&self.functions, function)
    }

    /// Every function's histograms, by name.
    pub fn functions(&self) -> Vec<(Arc<str>, Arc<FunctionMetrics>)> {
        by_name(&self.functions)
    }
}

/// A map of series by name (tenants, functions).
type Named<V> = RwLock<HashMap<Arc<str>, Arc<V>>>;

/// `name`'s entry of `map`, created at first use (a shared lock when it exists).
fn entry<V: Default>(map: &Named<V>, name: &str) -> Arc<V> {
    if let Some(v) = map.read().expect("metrics").get(name) {
        return v.clone();
    }
    map.write()
        .expect("metrics")
        .entry(name.into())
        .or_default()
        .clone()
}

/// Every entry of `map`, sorted by name.
fn by_name<V>(map: &Named<V>) -> Vec<(Arc<str>, Arc<V>)> {
    let mut all: Vec<_> = map
        .read()
        .expect("metrics")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
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
        entry(&self.tenants, tenant)
    }

    /// Every tenant's counters, by name.
    pub fn tenants(&self) -> Vec<(Arc<str>, Arc<TenantMetrics>)> {
        by_name(&self.tenants)
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
    let name = "durable_queue_wait_seconds";
    histogram_header(
        out,
        name,
        "From an execution's wake (or enqueue) to its activation starting, by tenant and function.",
    );
    for f in stats {
        let labels = format!(
            "tenant=\"{}\",function=\"{}\"",
            label_value(&f.tenant),
            label_value(&f.function)
        );
        f.queue_wait.render(out, name, &labels);
    }
}

/// Latency buckets (upper bounds, ns) of activations, step attempts and queue waits: 100 us
/// to 60 s. A queue wait on an idle host and a replay-only activation take well under a
/// millisecond, a guest step that calls out takes tens of milliseconds to seconds, and an
/// activation may run up to its limit (tens of seconds); roughly 1-2.5-5 per decade keeps
/// the relative error of a quantile near a factor of 2 over the whole range with 18 buckets.
#[rustfmt::skip]
pub const LATENCY_BOUNDS_NS: [u64; 18] = [
    100_000, 250_000, 500_000, // sub-millisecond
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, // ms
    100_000_000, 250_000_000, 500_000_000,
    1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000, 30_000_000_000, 60_000_000_000, // s
];

/// Storage buckets (upper bounds, ns) of group commits and fdatasyncs: 50 us to 1 s. A
/// commit without a sync or an fdatasync on NVMe takes tens of microseconds, a disk with a
/// volatile cache a few milliseconds, a loaded or rotating disk tens to hundreds; over a
/// second is a storage problem whatever the cause, so it needs no finer bucket than +Inf.
#[rustfmt::skip]
pub const STORAGE_BOUNDS_NS: [u64; 14] = [
    50_000, 100_000, 250_000, 500_000, // sub-millisecond
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, // ms
    100_000_000, 250_000_000, 500_000_000, 1_000_000_000,
];

/// Instantiation buckets (upper bounds, ns): 10 us to 100 ms. A small Rust component
/// instantiates in tens of microseconds, a Python one (componentize-py, ~19 MB) in about a
/// millisecond; beyond 100 ms the host is starved whatever the component.
#[rustfmt::skip]
pub const INSTANTIATE_BOUNDS_NS: [u64; 11] = [
    10_000, 25_000, 50_000, 100_000, 250_000, 500_000, // us
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 100_000_000, // ms
];

/// A Prometheus histogram of durations: one atomic per bucket (not cumulative: an
/// observation touches one bucket and the sum, relaxed), made cumulative when rendered, so
/// `+Inf` and `_count` are the same number by construction. The sum is an `f64` of seconds
/// (its bits in an `AtomicU64`, added with a compare-and-swap): a sum of nanoseconds in a
/// `u64` would wrap after 584 years of summed time, about 200 days of a busy host's
/// activations.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// `counts[i]`: observations in `(bounds[i-1], bounds[i]]`; the last one above every
    /// bound (`+Inf`).
    counts: Box<[AtomicU64]>,
    /// The bits of an `f64`: seconds observed in all.
    sum_seconds: AtomicU64,
}

impl Default for Histogram {
    /// A latency histogram (`LATENCY_BOUNDS_NS`).
    fn default() -> Self {
        Histogram::new(&LATENCY_BOUNDS_NS)
    }
}

impl Histogram {
    /// A histogram with these upper bounds (ascending, in nanoseconds).
    pub fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_seconds: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Count one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // The first bound at or above `ns` (Prometheus buckets are `le`).
        let i = self.bounds.partition_point(|&b| b < ns);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let secs = d.as_secs_f64();
        let _ = self
            .sum_seconds
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + secs).to_bits())
            });
    }

    /// Its counts now, cumulative as Prometheus has them.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum_seconds: f64::from_bits(self.sum_seconds.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram's counts at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    bounds: &'static [u64],
    /// Observations at or below each bound, then all of them (`+Inf`).
    pub cumulative: Vec<u64>,
    pub sum_seconds: f64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Histogram::default().snapshot()
    }
}

impl HistogramSnapshot {
    /// Every observation.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Add the series of one histogram (`labels` is empty or `k="v",...`, escaped) to `out`;
    /// the `# HELP`/`# TYPE` lines are the caller's.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        let sep = if labels.is_empty() { "" } else { "," };
        let les = self
            .bounds
            .iter()
            .map(|&b| (b as f64 / 1e9).to_string())
            .chain(["+Inf".to_string()]);
        for (le, n) in les.zip(&self.cumulative) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// The `# HELP` and `# TYPE` lines of a histogram.
pub fn histogram_header(out: &mut String, name: &str, help: &str) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
}

/// Group commits and fdatasyncs of the commit thread (`SyncStats`): storage buckets.
#[derive(Debug)]
pub struct StorageHistogram(pub Histogram);

impl Default for StorageHistogram {
    fn default() -> Self {
        StorageHistogram(Histogram::new(&STORAGE_BOUNDS_NS))
    }
}

impl std::ops::Deref for StorageHistogram {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

/// One function's latency histograms within its tenant (`TenantMetrics::function`).
#[derive(Debug)]
pub struct FunctionMetrics {
    /// One activation: from before its instance is created to its end recorded.
    pub activation_seconds: Histogram,
    /// One step attempt: from its `step-start` (answered "run") to its `step-succeed` or
    /// `step-fail`.
    pub step_attempt_seconds: Histogram,
    /// One activation's instantiation of its component (from the cached pre-linked one):
    /// the part of `activation_seconds` that grows with the component (a Python one takes
    /// ~1 ms, a Rust one tens of microseconds).
    pub instantiate_seconds: Histogram,
}

impl Default for FunctionMetrics {
    fn default() -> Self {
        FunctionMetrics {
            activation_seconds: Histogram::default(),
            step_attempt_seconds: Histogram::default(),
            instantiate_seconds: Histogram::new(&INSTANTIATE_BOUNDS_NS),
        }
    }
}

/// Observes one activation's duration when dropped (every way out of an activation).
pub struct ActivationTimer {
    function: Arc<FunctionMetrics>,
    started: std::time::Instant,
}

impl ActivationTimer {
    pub fn start(function: Arc<FunctionMetrics>) -> Self {
        ActivationTimer {
            function,
            started: std::time::Instant::now(),
        }
    }
}

impl ActivationTimer {
    /// Await `instantiation`, observing how long it took into `instantiate_seconds`.
    pub async fn instantiate<T>(&self, instantiation: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let instance = instantiation.await;
        self.function.instantiate_seconds.observe(started.elapsed());
        instance
    }
}

impl Drop for ActivationTimer {
    fn drop(&mut self) {
        self.function
            .activation_seconds
            .observe(self.started.elapsed());
    }
}

/// The step attempts running in one activation, by operation id, and where they count.
#[derive(Debug, Default)]
pub struct StepTimer {
    function: Option<Arc<FunctionMetrics>>,
    running: HashMap<String, std::time::Instant>,
}

impl StepTimer {
    pub fn new(function: Arc<FunctionMetrics>) -> Self {
        StepTimer {
            function: Some(function),
            running: HashMap::new(),
        }
    }

    /// Step `id` begins an attempt.
    pub fn started(&mut self, id: &str) {
        if self.function.is_some() {
            self.running
                .insert(id.to_string(), std::time::Instant::now());
        }
    }

    /// Step `id`'s attempt ended (succeeded or failed); one the host did not see start
    /// (started in an earlier activation) is not counted.
    pub fn ended(&mut self, id: &str) {
        if let (Some(f), Some(at)) = (&self.function, self.running.remove(id)) {
            f.step_attempt_seconds.observe(at.elapsed());
        }
    }
}

/// The latency histograms: per tenant and function (activations, step attempts; `tenants`
/// as `render` has them, names escaped), then the commit thread's (no label: every tenant
/// shares it).
pub fn render_latency(
    out: &mut String,
    tenants: &[(String, Arc<TenantMetrics>)],
    sync: &crate::db::SyncStats,
) {
    type Of = fn(&FunctionMetrics) -> &Histogram;
    let per_function: [(&str, &str, Of); 3] = [
        (
            "durable_activation_duration_seconds",
            "One activation, from creating its instance to its suspension or end recorded, by tenant and function.",
            |f| &f.activation_seconds,
        ),
        (
            "durable_step_attempt_duration_seconds",
            "One step attempt as the host sees it, from step-start to step-succeed or step-fail, by tenant and function.",
            |f| &f.step_attempt_seconds,
        ),
        (
            "durable_instantiate_duration_seconds",
            "One activation's instantiation of its component (part of the activation), by tenant and function.",
            |f| &f.instantiate_seconds,
        ),
    ];
    for (name, help, of) in per_function {
        histogram_header(out, name, help);
        for (tenant, t) in tenants {
            for (function, f) in t.functions() {
                let labels = format!(
                    "tenant=\"{tenant}\",function=\"{}\"",
                    label_value(&function)
                );
                of(&f).snapshot().render(out, name, &labels);
            }
        }
    }
    for (name, help, h) in [
        (
            "durable_commit_duration_seconds",
            "One group commit of the commit thread: its writes logged and applied, and fdatasynced when a writer waits.",
            &sync.commit_seconds,
        ),
        (
            "durable_fsync_duration_seconds",
            "One fdatasync of the write-ahead log (each one durable_fsyncs_total counts).",
            &sync.fsync_seconds,
        ),
    ] {
        histogram_header(out, name, help);
        h.snapshot().render(out, name, "");
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
            queue_wait: HistogramSnapshot::default(),
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
    fn an_observation_counts_in_the_first_bucket_at_or_above_it() {
        use std::time::Duration;
        static BOUNDS: [u64; 3] = [1_000, 2_000, 5_000];
        let h = Histogram::new(&BOUNDS);
        // (duration in ns, the bucket it lands in: 3 is +Inf)
        let table: [(u64, usize); 8] = [
            (0, 0),
            (999, 0),
            (1_000, 0), // le: a bound holds what equals it
            (1_001, 1),
            (2_000, 1),
            (4_999, 2),
            (5_001, 3),
            (3_600_000_000_000, 3), // an hour
        ];
        let mut per_bucket = [0u64; 4];
        for (ns, bucket) in table {
            let before = h.snapshot().cumulative;
            h.observe(Duration::from_nanos(ns));
            let after = h.snapshot().cumulative;
            for i in 0..4 {
                assert_eq!(
                    after[i] - before[i],
                    u64::from(i >= bucket),
                    "{ns} ns, le #{i}"
                );
            }
            per_bucket[bucket] += 1;
        }
        let snap = h.snapshot();
        let mut running = 0;
        let cumulative: Vec<u64> = per_bucket
            .iter()
            .map(|n| {
                running += n;
                running
            })
            .collect();
        assert_eq!(snap.cumulative, cumulative);
        assert_eq!(snap.count(), table.len() as u64);
        let sum_ns: u64 = table.iter().map(|(ns, _)| ns).sum();
        assert!((snap.sum_seconds - sum_ns as f64 / 1e9).abs() < 1e-6);
    }

    #[test]
    fn a_histogram_renders_cumulative_buckets_then_sum_and_count() {
        use std::time::Duration;
        static BOUNDS: [u64; 2] = [50_000, 1_000_000_000];
        let h = Histogram::new(&BOUNDS);
        for ms in [0, 2, 2_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.snapshot().render(&mut out, "x", "tenant=\"a\"");
        h.snapshot().render(&mut out, "y", "");
        let want = [
            "x_bucket{tenant=\"a\",le=\"0.00005\"} 1",
            "x_bucket{tenant=\"a\",le=\"1\"} 2",
            "x_bucket{tenant=\"a\",le=\"+Inf\"} 3",
            "x_sum{tenant=\"a\"} 2.002",
            "x_count{tenant=\"a\"} 3",
            "y_bucket{le=\"0.00005\"} 1",
            "y_bucket{le=\"1\"} 2",
            "y_bucket{le=\"+Inf\"} 3",
            "y_sum 2.002",
            "y_count 3",
        ];
        assert_eq!(out.lines().collect::<Vec<_>>(), want);
    }

    #[test]
    fn bucket_sets_ascend_and_span_their_ranges() {
        for (bounds, first, last) in [
            (&LATENCY_BOUNDS_NS[..], 100_000, 60_000_000_000),
            (&STORAGE_BOUNDS_NS[..], 50_000, 1_000_000_000),
        ] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
            assert_eq!((bounds[0], *bounds.last().unwrap()), (first, last));
        }
    }

    #[test]
    fn step_attempts_count_only_when_seen_to_start_and_once() {
        let f = Arc::new(FunctionMetrics::default());
        let mut t = StepTimer::new(f.clone());
        t.started("1");
        t.ended("1");
        t.ended("1"); // a second end of the same attempt counts nothing
        t.ended("2"); // started in an earlier activation
        assert_eq!(f.step_attempt_seconds.snapshot().count(), 1);
        {
            let _a = ActivationTimer::start(f.clone());
        }
        assert_eq!(f.activation_seconds.snapshot().count(), 1);
        let m = TenantMetrics::default();
        assert!(Arc::ptr_eq(&m.function("hello"), &m.function("hello")));
        m.function("a");
        let names: Vec<_> = m.functions().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [Arc::<str>::from("a"), "hello".into()]);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("acme"), "acme");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
