//! durable-host: a WebAssembly host for sandboxed durable functions.
//!
//! Data flow (see ARCHITECTURE.md): upload → `registry` (validate, compile once, cache the
//! pre-linked component) → invoke (`api`) → `scheduler` → `runtime` instantiates → the guest
//! calls `host_api` imports → `journal` decides replay or live → `db` commits (group fsync)
//! → on a wait: typed `Suspend` trap, store dropped → `timer` or `callbacks` wake →
//! `scheduler` → re-instantiate → replay → ... → result.
//!
//! `Host` wires the services together; `Host::start` runs them.

pub mod api;
pub mod callbacks;
pub mod db;
pub mod host_api;
pub mod ids;
/// The replay core lives in its own crate (`crates/journal`), shared with the guest SDK's
/// local test runner; the host names it `journal` as before.
pub use durable_journal as journal;
pub mod metrics;
pub mod otlp;
pub mod recovery;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod schedules;
pub mod settings;
pub mod tenants;
pub mod timer;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::db::{Batch, Durability, Status, Store};
use crate::host_api::{outbound::Allowlist, PayloadLimits, Shared};
use crate::journal::{error_types, ErrorObject, EventKind, Journal};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::Runtime;
use crate::scheduler::{ExecKey, Outcome, Scheduler};
use crate::tenants::Tenants;
use crate::timer::{Clock, SystemClock, Timers};

/// Everything the host is configured with.
#[derive(Clone, Debug)]
pub struct Options {
    pub data_dir: PathBuf,
    pub allow_outbound: Vec<String>,
    pub runtime: runtime::Options,
    pub payload: PayloadLimits,
    /// Largest component upload accepted.
    pub max_upload_bytes: usize,
    /// Activations running at once; more wait in the queue.
    pub max_resident: usize,
    /// How far ahead timers are held in memory (see `timer::HORIZON`).
    pub timer_horizon: std::time::Duration,
    /// sled's page cache, in bytes: the memory the store may keep of what it read or wrote.
    pub db_cache_bytes: u64,
    /// The linear memory all resident instances may reserve together (each reserves its
    /// function's memory limit); activations wait for it in line. Default: see
    /// `host_api::memory::default_bytes`.
    pub memory_budget_bytes: u64,
    /// How long a connection may wait for a complete request head, whether new or kept
    /// alive between requests (then it is closed).
    pub header_read_timeout: std::time::Duration,
    /// The deepest nesting of arrays and objects accepted in an input or callback result.
    pub max_json_depth: usize,
    /// `--insecure-no-auth`: no API keys; every request is an admin's (loopback only).
    pub insecure_no_auth: bool,
    /// The quotas of tenants that set none (`None`: no limit; for the ceilings
    /// `memory_limit_mb`, `activation_timeout_secs`, `max_history_events` and
    /// `max_component_bytes`, the server's own).
    pub tenant_quotas: tenants::Quotas,
    /// The addresses this host's listeners are bound to (the API, `--metrics-listen`):
    /// guests may not reach them through an allowlisted name (`host_api::outbound`). A
    /// wildcard address stands for every local address. Empty: nothing is protected (a host
    /// used in-process, without listeners).
    pub api_listen: Vec<std::net::SocketAddr>,
    /// Webhook deliveries: retry schedule, concurrency, attempt timeout.
    pub webhooks: webhooks::Options,
    /// Bytes the compiled artifact files may take on disk (`None`: unbounded); beyond it
    /// the least recently used are removed and compiled again at their next load.
    pub artifact_cache_bytes: Option<u64>,
    /// Where OTLP/HTTP traces go (`--otlp-endpoint`); `None`: no tracing.
    pub otlp_endpoint: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("durable-data"),
            allow_outbound: Vec::new(),
            runtime: runtime::Options::default(),
            payload: PayloadLimits::default(),
            max_upload_bytes: 64 * 1024 * 1024,
            max_resident: 256,
            timer_horizon: timer::HORIZON,
            db_cache_bytes: 64 * 1024 * 1024,
            memory_budget_bytes: host_api::memory::default_bytes(
                settings::Defaults::default().memory_limit_bytes as u64,
                256, // max_resident, above
            ),
            header_read_timeout: std::time::Duration::from_secs(10),
            max_json_depth: api::MAX_JSON_DEPTH,
            insecure_no_auth: false,
            tenant_quotas: tenants::Quotas::default(),
            api_listen: Vec::new(),
            webhooks: webhooks::Options::default(),
            artifact_cache_bytes: None,
            otlp_endpoint: None,
        }
    }
}

/// The quotas of tenants that set none, with the server's ceilings filled in, and the
/// bounds no tenant's quota may exceed.
fn tenant_defaults(opts: &Options) -> (tenants::Quotas, tenants::Bounds) {
    let bounds = tenants::Bounds {
        max_component_bytes: opts.max_upload_bytes as u64,
        max_concurrent_activations: opts.max_resident as u64,
        memory_limit_mb: (opts.runtime.defaults.memory_limit_bytes / (1024 * 1024)) as u64,
        activation_timeout_secs: settings::MAX_ACTIVATION_TIMEOUT_SECS,
        max_history_events: u64::from(opts.payload.journal.max_history_events),
    };
    let mut q = opts.tenant_quotas.clone();
    q.max_component_bytes
        .get_or_insert(bounds.max_component_bytes);
    q.memory_limit_mb.get_or_insert(bounds.memory_limit_mb);
    q.activation_timeout_secs
        .get_or_insert(bounds.activation_timeout_secs);
    q.max_history_events
        .get_or_insert(bounds.max_history_events);
    (q, bounds)
}

/// How often finished executions past their retention are looked for.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

pub use tenants::DEFAULT_TENANT;

/// The assembled host. Cheap to share behind an `Arc`.
pub struct Host {
    pub opts: Options,
    pub db: Store,
    pub registry: Arc<Registry>,
    pub runtime: Arc<Runtime>,
    pub scheduler: Scheduler,
    pub timers: Timers,
    pub metrics: Arc<Metrics>,
    pub tenants: Arc<Tenants>,
    /// The webhook delivery worker (its `outbox` handle is the runtime's too).
    pub webhooks: Arc<webhooks::Service>,
    /// Cron schedules and the service that fires them.
    pub schedules: Arc<schedules::Service>,
    pub clock: Arc<dyn Clock>,
    pub shutdown: Arc<Notify>,
    /// Set when the host stops, for its OS threads.
    pub stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Redrives under way and bulk redrive workers (`recovery`).
    pub recovery: recovery::Recovery,
    /// The OTLP exporter, with `--otlp-endpoint` (`shutdown` sends what it buffers).
    pub tracer: Option<Arc<otlp::Tracer>>,
}

impl Host {
    /// Open the store and build the engine. Call inside a tokio runtime.
    pub fn open(opts: Options) -> anyhow::Result<Arc<Host>> {
        Self::open_with_clock(opts, Arc::new(SystemClock))
    }

    pub fn open_with_clock(opts: Options, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Host>> {
        std::fs::create_dir_all(&opts.data_dir)?;
        let db = Store::open(&opts.data_dir.join("db"), opts.db_cache_bytes)?;
        let engine = runtime::engine(&opts.runtime)?;
        let linker = Arc::new(runtime::linker(&engine)?);
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::new(
            engine.clone(),
            linker,
            db.clone(),
            clock.clone(),
            opts.data_dir.join("artifacts"),
            opts.data_dir.join("uploads"),
            metrics.clone(),
        )?);
        registry.set_artifact_cache_bytes(opts.artifact_cache_bytes)?;
        let timers = Timers::new(clock.clone());
        let (defaults, bounds) = tenant_defaults(&opts);
        let scheduler = Scheduler::new();
        let tenants = Arc::new(Tenants::load(
            db.clone(),
            clock.clone(),
            defaults,
            bounds,
            opts.insecure_no_auth,
            scheduler.clone(),
        )?);
        let outbound = Allowlist::parse(&opts.allow_outbound)
            .map_err(anyhow::Error::msg)?
            .protecting(&opts.api_listen);
        let tracer = match &opts.otlp_endpoint {
            Some(url) => Some(Arc::new(otlp::Tracer::new(url)?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            db: db.clone(),
            timers: timers.clone(),
            limits: opts.payload.clone(),
            outbound: Arc::new(outbound),
            resident: AtomicI64::new(0),
            stops: Default::default(),
            stop_signals: Default::default(),
            memory: host_api::memory::MemoryBudget::new(opts.memory_budget_bytes),
            log_totals: Default::default(),
            tenants: tenants.clone(),
            tracer: tracer.clone(),
            scheduler: scheduler.clone(),
            metrics: metrics.clone(),
            defaults: opts.runtime.defaults.clone(),
            fan_outs: Default::default(),
        });
        let outbox = webhooks::Outbox::new(&opts.webhooks);
        let webhooks = Arc::new(webhooks::Service::new(
            shared.clone(),
            metrics.clone(),
            opts.webhooks.clone(),
            outbox.clone(),
        ));
        let schedules = Arc::new(schedules::Service::new(
            db.clone(),
            tenants.clone(),
            scheduler.clone(),
            timers.clone(),
            metrics.clone(),
            clock.clone(),
            opts.runtime.defaults.clone(),
        ));
        let runtime = Arc::new(Runtime {
            webhooks: outbox,
            host_failures: Default::default(),
            engine,
            registry: registry.clone(),
            shared,
            metrics: metrics.clone(),
            opts: opts.runtime.clone(),
        });
        Ok(Arc::new(Host {
            opts,
            db,
            registry,
            runtime,
            scheduler,
            timers,
            metrics,
            tenants,
            webhooks,
            schedules,
            clock,
            shutdown: Arc::new(Notify::new()),
            stopped: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            recovery: Default::default(),
            tracer,
        }))
    }

    pub fn resident_instances(&self) -> i64 {
        self.runtime
            .shared
            .resident
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Recover after a start or a crash, then run the scheduler, timers and epoch ticker in
    /// the background.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        if let Some(path) = self.tenants.bootstrap(&self.opts.data_dir).await? {
            tracing::info!(
                path = %path.display(),
                "created tenant \"default\" and an admin API key; the key is in this file"
            );
        }
        for t in self.tenants.list() {
            self.metrics.tenant(&t.name); // every tenant's series, at zero if it has none
        }
        self.start_flow_control()?;
        let runnable = self.recover().await?;
        // After recovery's writes, before any activation or request changes anything.
        self.tenants.count_usage()?;

        let rt = self.runtime.clone();
        tokio::spawn(
            self.scheduler
                .clone()
                .run(self.opts.max_resident, move |key| {
                    let rt = rt.clone();
                    async move {
                        let outcome = rt.activate(key.clone()).await;
                        // What the activation wrote, counted against the tenant's quotas
                        // before the next activation of this execution; `Finished` is an
                        // execution that has ended (or is gone).
                        let usage = &rt.shared.tenants.usage;
                        let ended = outcome == Outcome::Finished;
                        let db = &rt.shared.db;
                        if let Err(e) = usage.settle(db, &key.tenant, &key.id, ended) {
                            tracing::error!(error = %e, "counting an activation's usage failed");
                        }
                        outcome
                    }
                }),
        );

        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(self.timers.clone().run(tx, self.shutdown.clone()));
        let host = self.clone();
        tokio::spawn(async move {
            while let Some(fired) = rx.recv().await {
                let key = ExecKey {
                    tenant: fired.record.tenant.as_str().into(),
                    id: fired.execution,
                    branch: None,
                };
                match &fired.record.kind {
                    db::TimerKind::Wake => {
                        let fan_outs = &host.runtime.shared.fan_outs;
                        fan_outs.wake_op(&host.scheduler, key, &fired.op_id)
                    }
                    db::TimerKind::Deadline => host.scheduler.wake(key),
                    db::TimerKind::Redrive { .. } => {
                        let host = host.clone();
                        tokio::spawn(async move {
                            if let Err(e) = recovery::automatic_redrive_fired(
                                &host,
                                fired.due_ms,
                                fired.execution,
                                &fired.record,
                            )
                            .await
                            {
                                tracing::warn!(error = %e, "automatic redrive refused");
                            }
                        });
                    }
                    _ => {
                        let cbs = host.callbacks();
                        if let Err(e) = cbs
                            .timer_fired(fired.due_ms, fired.execution, &fired.op_id, &fired.record)
                            .await
                        {
                            tracing::error!(error = %e, "callback timeout failed");
                        }
                    }
                }
            }
        });

        // The epoch ticks on its own OS thread: guests yield (and their time limit is
        // checked) on every tick, even when they occupy every executor thread.
        let engine = self.runtime.engine.clone();
        let stopped = self.stopped.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(runtime::EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;

        // Pending deliveries are on disk: the worker's first scan sends those left by a
        // crash or a stop.
        tokio::spawn(self.webhooks.clone().run(self.shutdown.clone()));
        // After recovery and the usage count: a firing is an invoke. Fire times from here
        // on are on time; earlier ones were missed and follow each schedule's catch_up.
        tokio::spawn(self.schedules.clone().run(self.shutdown.clone()));
        tokio::spawn(self.clone().sweep_expired());
        tokio::spawn(self.clone().reload_timers());

        for key in runnable {
            self.scheduler.wake(key);
        }
        let jobs = recovery::jobs::resume(self)?;
        if jobs > 0 {
            tracing::info!(jobs, "bulk redrive jobs resumed");
        }
        Ok(())
    }

    /// Flow control (DESIGN 10) from the stored settings: every function's limits, and the
    /// classifier for executions woken without a class (after a restart: recovery's wakes,
    /// timers, callbacks), which reads the execution once; the scheduler keeps the class.
    fn start_flow_control(&self) -> anyhow::Result<()> {
        for t in self.tenants.list() {
            for f in self.db.functions(&t.name)? {
                let limits = settings::flow_limits(&f.settings);
                self.scheduler.set_limits(&t.name, &f.name, limits);
            }
        }
        let db = self.db.clone();
        self.scheduler.set_classifier(Arc::new(move |key: &ExecKey| {
            let read = || -> db::Result<Option<scheduler::Class>> {
                let Some(rec) = db.execution(&key.tenant, &key.id)? else {
                    return Ok(None);
                };
                let s = db.function(&key.tenant, &rec.function)?;
                // Not started: nothing after its `ExecutionStarted` (event 1).
                let fresh = db.history_after(&key.id, 1, 1)?.is_empty();
                let s = s.map(|f| f.settings).unwrap_or_default();
                Ok(Some(settings::class(&rec.function, &s, &rec.input, fresh)))
            };
            read().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "classifying an execution for flow control failed; it runs without its function's limits this once");
                None
            })
        }));
        Ok(())
    }

    /// Index the timers due from `from_ms` to the end of the horizon: the horizon moves
    /// first, so a timer written meanwhile is either indexed by its writer or found here.
    fn load_timer_window(&self, from_ms: u64) -> anyhow::Result<()> {
        let until = self
            .clock
            .now_ms()
            .saturating_add(self.opts.timer_horizon.as_millis() as u64);
        self.timers.set_horizon(until);
        for t in self.db.timers_between(from_ms, until) {
            let (due, id, op, rec) = t?;
            self.timers.add(due, id, op, rec);
        }
        Ok(())
    }

    /// Move the timer window forward every half horizon.
    async fn reload_timers(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.notified() => return,
                _ = tokio::time::sleep(self.opts.timer_horizon / 2) => {}
            }
            // Not what is already due: earlier windows indexed it (and it may have fired).
            let from = self.clock.now_ms().saturating_add(1);
            if let Err(e) = self.load_timer_window(from) {
                tracing::error!(error = %e, "loading the timer window failed");
            }
        }
    }

    /// Delete finished executions whose retention is over, with their journals, once a
    /// second (the expiry index is sorted by time, so a sweep reads only what is due).
    async fn sweep_expired(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.notified() => return,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            if let Err(e) = self.delete_expired().await {
                tracing::error!(error = %e, "retention sweep failed");
            }
        }
    }

    /// One sweep; returns how many executions it deleted.
    pub async fn delete_expired(&self) -> anyhow::Result<usize> {
        let mut deleted = 0;
        loop {
            let due = self.db.expired(self.clock.now_ms(), 256)?;
            if due.is_empty() {
                return Ok(deleted);
            }
            for (at, id, rec) in due {
                // Measured before: nothing writes to a finished execution.
                let bytes = tenants::usage::ExecBytes::measure(&self.db, &rec.tenant, &id)?
                    .map_or(0, |b| b.total());
                if let Some(status) = self.db.delete_execution(&rec.tenant, &id, at).await? {
                    self.metrics.removed(&rec.tenant, status);
                    self.tenants.usage.removed(&rec.tenant, &id, bytes);
                    deleted += 1;
                }
            }
        }
    }

    /// What `tenant` uses of its counted quotas.
    pub fn usage(&self, tenant: &str) -> db::Result<tenants::quota::Usage> {
        let mut u = self.tenants.usage.usage(tenant);
        u.max_concurrent_activations = self.scheduler.resident_of(tenant) as u64;
        Ok(u)
    }

    pub fn callbacks(&self) -> callbacks::Callbacks<'_> {
        callbacks::Callbacks {
            db: &self.db,
            scheduler: &self.scheduler,
            timers: &self.timers,
            fan_outs: &self.runtime.shared.fan_outs,
        }
    }

    /// Load timers, count executions by status, note activations cut short by a crash, and
    /// return what must run: executions that were running, and suspended ones whose
    /// callback was resolved (its wake may have been lost in the crash).
    async fn recover(&self) -> anyhow::Result<Vec<ExecKey>> {
        self.load_timer_window(0)?;
        let mut counts = std::collections::HashMap::<(Arc<str>, Status), i64>::new();
        let mut runnable = Vec::new();
        let mut batch = Batch::new();
        let now = self.clock.now_ms();
        for rec in self.db.all_executions() {
            let rec = rec?;
            *counts
                .entry((rec.tenant.as_str().into(), rec.status))
                .or_default() += 1;
            // A callee that ended just before a crash may not have woken its caller.
            if let Some(parent) = runtime::invoke::parent_to_wake(&self.db, &rec)? {
                runnable.push(parent);
            }
            if rec.status != Status::Running {
                continue;
            }
            let history = self.db.history(&rec.id)?;
            let mut journal = Journal::from_events(&history);
            let cut_short = !matches!(
                journal.last_event_type(),
                None | Some("ExecutionStarted")
                    | Some("InvocationCompleted")
                    | Some("ExecutionRedriven")
            );
            if cut_short {
                let e = journal.record(
                    now,
                    EventKind::InvocationCompleted {
                        started_ms: now,
                        error: Some(ErrorObject::new(
                            error_types::HOST_RESTARTED,
                            "the host stopped while this activation ran; it resumes from its last checkpoint",
                        )),
                    },
                );
                batch.put_event(&rec.id, &e);
            }
            runnable.push(ExecKey {
                tenant: rec.tenant.as_str().into(),
                id: rec.id,
                branch: None,
            });
        }
        for stop in self.db.stop_requests() {
            let (id, rec) = stop?;
            self.runtime.shared.request_stop(id);
            runnable.push(ExecKey {
                tenant: rec.tenant.as_str().into(),
                id,
                branch: None,
            });
        }
        self.metrics.set_counts(&counts);
        // A callback resolved (and fsynced) just before a crash may not have woken its
        // execution: wake suspended executions whose journal still awaits a resolved one.
        let mut woken = std::collections::HashSet::new();
        for cb in self.db.callbacks() {
            let (callback_id, rec) = cb?;
            if rec.state == db::CallbackState::Pending || woken.contains(&rec.execution) {
                continue;
            }
            let suspended = self
                .db
                .execution(&rec.tenant, &rec.execution)?
                .is_some_and(|e| e.status == Status::Suspended);
            if !suspended {
                continue;
            }
            let journal = Journal::from_events(&self.db.history(&rec.execution)?);
            if journal
                .pending_callbacks()
                .iter()
                .any(|(_, id)| *id == callback_id)
            {
                woken.insert(rec.execution);
                runnable.push(ExecKey {
                    tenant: rec.tenant.as_str().into(),
                    id: rec.execution,
                    branch: None,
                });
            }
        }
        self.db.commit(batch, Durability::Sync).await?;
        tracing::info!(
            runnable = runnable.len(),
            timers = self.timers.len(),
            "recovered"
        );
        Ok(runnable)
    }
}
