//! Guest imports: the per-activation `HostState` and one file per WIT interface.
//!
//! `bindings` holds the generated code and nothing else. `context` implements the durable
//! operations by asking `journal` what to do and performing its effects against `db`;
//! `stdio` captures stdout/stderr into the execution's logs; `outbound` enforces the HTTP
//! allowlist; `memory` is the host-wide memory budget instances reserve from. Suspension is
//! a typed trap (`Suspend`), never a string.
//!
//! Architecture invariant: a guest reaches only what is added here: the `context` interface,
//! WASI clocks/random/stdio (no filesystem, environment, sockets or stdin), and `wasi:http`
//! outgoing requests filtered by the allowlist.

pub mod bindings;
mod context;
pub use context::callback_timer_op;
pub mod memory;
pub mod outbound;
pub mod stdio;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::db::{self, Batch, ExecId, LogLevel, LogRecord, LogStream, Store};
use crate::journal::{self, Activation, SuspendReason};
use crate::timer::Timers;

/// The host's own trap: the guest has been suspended and must be unloaded. The runtime
/// finds it with `downcast_ref`; the guest never observes it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("execution suspended ({0:?})")]
pub struct Suspend(pub SuspendReason);

/// The host could not do its part (storage failed): the activation stops without recording
/// anything about the guest, which resumes from its last checkpoint later.
#[derive(Debug, thiserror::Error)]
#[error("host failure: {0}")]
pub struct HostFailure(#[from] pub db::Error);

/// The host's own trap: a user stopped this execution while it was resident.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("execution stopped by request")]
pub struct Stopped;

/// Limits that apply to guest-controlled payloads.
#[derive(Clone, Debug)]
pub struct PayloadLimits {
    /// The largest step result, context result, callback result or output, in bytes.
    pub max_payload_bytes: usize,
    /// Log lines longer than this are cut (with a marker), so a guest cannot fill the disk
    /// through one call.
    pub max_log_line_bytes: usize,
    /// At most this many log lines are kept per activation; the rest are counted and a
    /// marker says how many were dropped.
    pub max_log_lines_per_activation: u32,
    /// An execution keeps at most this many bytes of log messages (the `log` import and
    /// stdout/stderr together, across all its activations); once a line does not fit, one
    /// marker line says how much was dropped and every later line is dropped.
    pub max_log_bytes_per_execution: u64,
    /// The same, in lines.
    pub max_log_lines_per_execution: u32,
    /// Counts and sizes the journal enforces (depth, names, errors, callbacks, events,
    /// waits).
    pub journal: journal::Limits,
}

/// Pending log lines are written out (unawaited, like any log write) once they hold this
/// many bytes, so the memory one activation holds for its log stays small whatever it logs
/// between two durable calls.
const LOG_FLUSH_BYTES: usize = 256 * 1024;

/// The first words of the line that says an execution's log is full: a later activation
/// that finds it last knows to drop its lines without another marker.
const LOG_FULL_MARKER: &str = "log limit reached:";

impl Default for PayloadLimits {
    fn default() -> Self {
        Self {
            max_payload_bytes: 1024 * 1024,
            max_log_line_bytes: 16 * 1024,
            max_log_lines_per_activation: 10_000,
            // Enough for a chatty execution (100,000 lines of ~80 bytes); an execution
            // that logs more is a flood, and its logs would be unreadable anyway.
            max_log_bytes_per_execution: 8 * 1024 * 1024,
            max_log_lines_per_execution: 100_000,
            journal: journal::Limits::default(),
        }
    }
}

/// What every activation shares with the rest of the host.
pub struct Shared {
    pub db: Store,
    pub timers: Timers,
    pub limits: PayloadLimits,
    pub outbound: Arc<outbound::Allowlist>,
    /// Live wasm instances (`durable_resident_instances`).
    pub resident: AtomicI64,
    /// Executions with a pending stop request (mirrors the durable stop records), checked
    /// on every epoch tick and host call of a resident guest.
    pub stops: std::sync::Mutex<std::collections::HashSet<ExecId>>,
    /// The stop signal of each execution with an activation in progress (see `StopWatch`):
    /// what reaches a guest that awaits a host future and so never ticks nor calls.
    /// (Several when its batch runs on several instances.)
    pub stop_signals: Mutex<HashMap<ExecId, Vec<Arc<Notify>>>>,
    /// The linear memory resident instances may reserve together (`--memory-budget-mb`).
    pub memory: memory::MemoryBudget,
    /// What executions logged so far, as their last activations left it.
    pub log_totals: LogTotalsCache,
    /// Tenants and their quotas: the per-tenant policy an activation runs under.
    pub tenants: Arc<crate::tenants::Tenants>,
    /// The OTLP exporter (`--otlp-endpoint`); `None`: activations are not traced.
    pub tracer: Option<Arc<crate::otlp::Tracer>>,
    /// The run queue, for what an activation starts or wakes itself (an `invoke`'s callee,
    /// a caller its callee's end wakes: `runtime::invoke`).
    pub scheduler: crate::scheduler::Scheduler,
    /// The host's metrics (a callee counts as created like any invocation).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// What functions run with unless their settings say otherwise (a callee's timeout).
    pub defaults: crate::settings::Defaults,
    /// Batches running on branch instances, by execution (`runtime::fanout`).
    pub fan_outs: crate::runtime::fanout::FanOuts,
}

/// An execution's log totals as its last activation left them, so that the next activation
/// knows how much it may still log without scanning the log (up to the per-execution limit
/// of bytes, at every activation that logs). An entry is used only when its line count is
/// the store's, so a stale one (a crash, a failed write) costs one scan, never a wrong
/// answer.
#[derive(Default)]
pub struct LogTotalsCache(std::sync::Mutex<std::collections::HashMap<ExecId, CachedLogTotals>>);

#[derive(Clone, Copy, Debug)]
pub struct CachedLogTotals {
    lines: u64,
    bytes: u64,
    full: bool,
}

/// The cache is emptied when it reaches this many entries (~50 bytes each), so its memory
/// stays bounded however many executions log; a miss costs one scan.
const LOG_TOTALS_CACHE_ENTRIES: usize = 100_000;

impl LogTotalsCache {
    fn get(&self, id: &ExecId, lines: u64) -> Option<CachedLogTotals> {
        let map = self.0.lock().expect("log totals");
        map.get(id).copied().filter(|t| t.lines == lines)
    }

    fn put(&self, id: ExecId, t: CachedLogTotals) {
        let mut map = self.0.lock().expect("log totals");
        if map.len() >= LOG_TOTALS_CACHE_ENTRIES && !map.contains_key(&id) {
            map.clear();
        }
        map.insert(id, t);
    }
}

impl Shared {
    /// The journal limits of `tenant`'s executions: the server's, with the tenant's
    /// `max_history_events`.
    pub fn journal_limits(&self, tenant: &str) -> journal::Limits {
        self.tenants.quotas(tenant).journal(&self.limits.journal)
    }

    pub fn request_stop(&self, id: ExecId) {
        self.stops.lock().expect("stops").insert(id);
        // After the insert: a watch registered before this sees the signal, one registered
        // after sees the insert (see `watch_stop`).
        if let Some(signals) = self.stop_signals.lock().expect("stop signals").get(&id) {
            for signal in signals {
                signal.notify_one();
            }
        }
    }

    pub fn stop_requested(&self, id: &ExecId) -> bool {
        self.stops.lock().expect("stops").contains(id)
    }

    pub fn clear_stop(&self, id: &ExecId) {
        self.stops.lock().expect("stops").remove(id);
    }

    /// Watch for a stop of `id` for as long as the returned guard lives (one activation).
    /// A stop requested before the watch began is signalled at once.
    pub fn watch_stop(self: &Arc<Self>, id: ExecId) -> StopWatch {
        let signal = Arc::new(Notify::new());
        self.stop_signals
            .lock()
            .expect("stop signals")
            .entry(id)
            .or_default()
            .push(signal.clone());
        if self.stop_requested(&id) {
            signal.notify_one(); // kept as a permit until someone waits
        }
        StopWatch {
            shared: self.clone(),
            id,
            signal,
        }
    }
}

/// The stop signal of one activation; unregistered when dropped.
pub struct StopWatch {
    shared: Arc<Shared>,
    id: ExecId,
    signal: Arc<Notify>,
}

impl StopWatch {
    /// Resolves once a stop of this execution is requested (at once if it already was).
    pub async fn stopped(&self) {
        self.signal.notified().await
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        let mut signals = self.shared.stop_signals.lock().expect("stop signals");
        if let Some(list) = signals.get_mut(&self.id) {
            list.retain(|s| !Arc::ptr_eq(s, &self.signal));
            if list.is_empty() {
                signals.remove(&self.id);
            }
        }
    }
}

/// Counts a live instance for as long as its store exists.
pub struct ResidentGuard(Arc<Shared>);

impl ResidentGuard {
    pub fn new(shared: Arc<Shared>) -> Self {
        shared.resident.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for ResidentGuard {
    fn drop(&mut self) {
        self.0.resident.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What an execution has logged, against its per-execution limits.
#[derive(Debug, Default)]
struct LogTotals {
    lines: u64,
    bytes: u64,
    /// A line did not fit: everything from here on is dropped.
    full: bool,
    /// The marker saying so is stored (by this or an earlier activation).
    marked: bool,
    dropped_lines: u64,
    dropped_bytes: u64,
}

/// The `T` of `Store<T>`: one activation of one execution.
pub struct HostState {
    pub shared: Arc<Shared>,
    pub tenant: Arc<str>,
    pub execution: ExecId,
    pub act: Activation,
    /// Steps this activation replayed (their recorded result returned again), for the
    /// tenant's `durable_steps_replayed_total`.
    pub steps_replayed: u64,
    /// Times this activation's step attempts (`durable_step_attempt_duration_seconds`).
    pub step_timer: crate::metrics::StepTimer,
    /// Log lines waiting to be written with the next batch.
    pending_logs: Vec<LogRecord>,
    pending_log_bytes: usize,
    next_log_seq: u32,
    logs_this_activation: u32,
    logs_dropped: u32,
    /// The execution's log so far (loaded from the store at the first line).
    log_totals: Option<LogTotals>,
    /// Set by the final `drain_stdio`: the next flush is the activation's last.
    ending: bool,
    stdio: stdio::Capture,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: outbound::Hooks,
    table: ResourceTable,
    pub limits: StoreLimits,
    _resident: ResidentGuard,
    /// This instance's share of the memory budget (`with_memory`), released with the store.
    memory: Option<memory::Reservation>,
    /// What its outbound requests name in their `traceparent` (with `--otlp-endpoint`).
    pub trace: Option<crate::otlp::Parent>,
    /// In a branch's instance: the fan-out and the branch it runs.
    pub focus: Option<Focus>,
    /// Set by the execution's own instance when it hands a batch to branch instances:
    /// the batch's id and options (`runtime::fanout`).
    pub fan_out: Option<(String, crate::journal::BatchSpec)>,
    /// Set by a branch's instance at its batch's `batch-finish`: its branch is done.
    pub branch_done: bool,
    /// The fan-out's counters, held by a branch's instance from a journal decision until
    /// its commit is applied (`lock_journal`).
    journal_guard: Option<tokio::sync::OwnedMutexGuard<crate::runtime::fanout::Counters>>,
}

/// What a branch's instance runs.
pub struct Focus {
    pub fan: Arc<crate::runtime::fanout::FanOut>,
    pub index: u32,
}

/// What `tenant`'s guests may reach: the server's `--allow-outbound` restricted to the
/// tenant's `outbound_allowlist`. A stored list the host no longer parses allows nothing
/// (it was checked when it was set; failing closed keeps the sandbox a sandbox).
pub fn tenant_allowlist(shared: &Shared, tenant: &str) -> outbound::Allowlist {
    let quotas = shared.tenants.quotas(tenant);
    shared
        .outbound
        .restricted_to(quotas.outbound_allowlist.as_deref())
        .unwrap_or_else(|e| {
            tracing::error!(tenant, error = %e, "the tenant's outbound_allowlist: nothing allowed");
            shared
                .outbound
                .restricted_to(Some(&[]))
                .expect("an empty list parses")
        })
}

impl HostState {
    /// `act` comes with its tenant's journal limits set (`Shared::journal_limits`): the
    /// runtime sets them once, before anything can end the activation early.
    pub fn new(
        shared: Arc<Shared>,
        tenant: Arc<str>,
        execution: ExecId,
        act: Activation,
        next_log_seq: u32,
        limits: StoreLimits,
    ) -> Self {
        let stdio = stdio::Capture::default();
        let wasi = WasiCtx::builder()
            .stdout(stdio.stdout())
            .stderr(stdio.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let hooks = outbound::Hooks::new(
            Arc::new(tenant_allowlist(&shared, &tenant)),
            shared.db.clone(),
        );
        Self {
            _resident: ResidentGuard::new(shared.clone()),
            shared,
            tenant,
            execution,
            act,
            steps_replayed: 0,
            step_timer: Default::default(),
            pending_logs: Vec::new(),
            pending_log_bytes: 0,
            next_log_seq,
            logs_this_activation: 0,
            logs_dropped: 0,
            log_totals: None,
            ending: false,
            stdio,
            wasi,
            http: WasiHttpCtx::new(),
            hooks,
            table: ResourceTable::new(),
            limits,
            memory: None,
            trace: None,
            focus: None,
            fan_out: None,
            branch_done: false,
            journal_guard: None,
        }
    }

    /// In a branch's instance: take the fan-out's counters (waiting for a sibling's commit
    /// to be applied), so that what this instance records next is numbered after
    /// everything its siblings recorded. Held until `unlock_journal`; a no-op elsewhere
    /// or when already held.
    pub async fn lock_journal(&mut self) {
        let Some(focus) = &self.focus else {
            return;
        };
        if self.journal_guard.is_some() {
            return;
        }
        let guard = focus.fan.counters.clone().lock_owned().await;
        guard.number(&mut self.act);
        self.next_log_seq = self.next_log_seq.max(guard.log);
        self.journal_guard = Some(guard);
    }

    /// Give the counters back, advanced past what this instance recorded (its commits
    /// are queued, so they apply before any later one).
    pub fn unlock_journal(&mut self) {
        if let Some(mut guard) = self.journal_guard.take() {
            guard.advance(&self.act);
            guard.log = guard.log.max(self.next_log_seq);
        }
    }

    /// The number the next log line takes.
    pub fn next_log_seq(&self) -> u32 {
        self.next_log_seq
    }

    /// Hold `reservation` for as long as this state (and so its store) lives.
    pub fn with_memory(mut self, reservation: memory::Reservation) -> Self {
        self.memory = Some(reservation);
        self
    }

    pub fn now_ms(&self) -> u64 {
        self.shared.timers.clock().now_ms()
    }

    /// The execution's log totals, read from the store once per activation (only when it
    /// has logged before).
    fn log_totals(&mut self) -> Result<&mut LogTotals, HostFailure> {
        if self.log_totals.is_none() {
            let mut t = LogTotals::default();
            let stored = self.next_log_seq.saturating_sub(1);
            let cached = self
                .shared
                .log_totals
                .get(&self.execution, u64::from(stored));
            if let Some(c) = cached {
                (t.lines, t.bytes, t.full, t.marked) = (c.lines, c.bytes, c.full, c.full);
            } else if stored > 0 {
                let last = self.shared.db.logs_after(&self.execution, stored - 1, 1)?;
                t.marked = last
                    .first()
                    .is_some_and(|(_, l)| l.message.starts_with(LOG_FULL_MARKER));
                t.full = t.marked;
                t.lines = u64::from(stored);
                if !t.full {
                    t.bytes = self.shared.db.log_totals(&self.execution)?.1;
                }
            }
            self.log_totals = Some(t);
        }
        Ok(self.log_totals.as_mut().expect("loaded"))
    }

    /// Record a log line at the guest's current replay position, unless a previous run
    /// recorded it already. Over a limit the line is dropped (never an error): the guest's
    /// logging must not fail its execution.
    pub fn log_line(
        &mut self,
        level: LogLevel,
        stream: LogStream,
        mut message: String,
    ) -> Result<(), HostFailure> {
        let position = self.act.next_log_key();
        let max_bytes = self.shared.limits.max_log_bytes_per_execution;
        let max_lines = u64::from(self.shared.limits.max_log_lines_per_execution);
        let totals = self.log_totals()?;
        if totals.full {
            // Checked before the store is asked anything: a flood past the limit costs
            // the host no reads or writes.
            totals.dropped_lines += 1;
            totals.dropped_bytes += message.len() as u64;
            return Ok(());
        }
        if self.shared.db.log_seen(&self.execution, &position)? {
            return Ok(());
        }
        if self.logs_this_activation >= self.shared.limits.max_log_lines_per_activation {
            self.logs_dropped += 1;
            return Ok(());
        }
        journal::cut_with_marker(&mut message, self.shared.limits.max_log_line_bytes);
        let totals = self.log_totals.as_mut().expect("loaded");
        if totals.lines + 1 > max_lines || totals.bytes + message.len() as u64 > max_bytes {
            totals.full = true;
            totals.dropped_lines += 1;
            totals.dropped_bytes += message.len() as u64;
            return Ok(());
        }
        totals.lines += 1;
        totals.bytes += message.len() as u64;
        self.logs_this_activation += 1;
        let op_id = self.act.live_step().map(|(id, _)| id.to_string());
        self.push_log(LogRecord {
            at_ms: self.now_ms(),
            level,
            stream,
            message,
            op_id,
            position,
        });
        if self.pending_log_bytes >= LOG_FLUSH_BYTES {
            let mut batch = Batch::new();
            self.flush_logs_into(&mut batch);
            self.shared.db.commit_unawaited(batch)?;
        }
        Ok(())
    }

    fn push_log(&mut self, rec: LogRecord) {
        self.next_log_seq += 1;
        self.pending_log_bytes += rec.message.len();
        self.pending_logs.push(rec);
    }

    /// Move captured stdout/stderr lines into the log, at the current position.
    pub fn drain_stdio(&mut self, at_end: bool) -> Result<(), HostFailure> {
        for (stream, line) in self.stdio.take_lines(at_end) {
            let level = if stream == LogStream::Stderr {
                LogLevel::Warn
            } else {
                LogLevel::Info
            };
            self.log_line(level, stream, line)?;
        }
        self.ending |= at_end;
        Ok(())
    }

    /// Put pending log lines into `batch`; at the activation's end, with the markers of
    /// what was dropped: lines over the per-activation count, and the one line that says
    /// the execution's log is full.
    pub fn flush_logs_into(&mut self, batch: &mut Batch) {
        if self.logs_dropped > 0 && self.ending {
            let dropped = std::mem::take(&mut self.logs_dropped);
            let message = format!(
                "{dropped} log lines dropped: over {} lines in one activation",
                self.shared.limits.max_log_lines_per_activation
            );
            self.marker(message);
        }
        if let Some(t) = self
            .log_totals
            .as_mut()
            .filter(|t| self.ending && t.full && !t.marked)
        {
            t.marked = true;
            let message = format!(
                "{LOG_FULL_MARKER} {} lines ({} bytes) dropped; an execution keeps at most \
                 {} bytes and {} lines of log (max_log_bytes_per_execution, \
                 max_log_lines_per_execution), later lines are dropped too",
                t.dropped_lines,
                t.dropped_bytes,
                self.shared.limits.max_log_bytes_per_execution,
                self.shared.limits.max_log_lines_per_execution,
            );
            self.marker(message);
        }
        let first = self.next_log_seq - self.pending_logs.len() as u32;
        for (i, rec) in self.pending_logs.drain(..).enumerate() {
            batch.put_log(&self.execution, first + i as u32, &rec);
        }
        self.pending_log_bytes = 0;
    }

    /// A line the host writes about the log itself (not counted against the byte limit).
    fn marker(&mut self, message: String) {
        if let Some(t) = self.log_totals.as_mut() {
            t.lines += 1;
        }
        let position = self.act.next_log_key();
        let rec = LogRecord {
            at_ms: self.now_ms(),
            level: LogLevel::Warn,
            stream: LogStream::Log,
            message,
            op_id: None,
            position,
        };
        self.push_log(rec);
    }
}

impl Drop for HostState {
    /// The activation is over: its log totals are what the next one starts from. Only
    /// complete when every pending line was flushed (the runtime's last flush); otherwise
    /// the line count no longer matches the store and the entry is not used.
    fn drop(&mut self) {
        if let Some(t) = &self.log_totals {
            let cached = CachedLogTotals {
                lines: t.lines,
                bytes: t.bytes,
                full: t.full && t.marked,
            };
            self.shared.log_totals.put(self.execution, cached);
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        // The request the guest may send next is part of its live step attempt, if any.
        self.hooks.traceparent = self.trace.map(|t| t.traceparent(self.act.live_step()));
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shared(dir: &std::path::Path) -> Arc<Shared> {
        let clock: Arc<dyn crate::timer::Clock> = Arc::new(crate::timer::ManualClock::new(0));
        let db = Store::open(dir, 1 << 20).unwrap();
        let bounds = crate::tenants::Bounds {
            max_component_bytes: 1 << 20,
            max_concurrent_activations: 1,
            memory_limit_mb: 128,
            activation_timeout_secs: 60,
            max_history_events: 1000,
        };
        let tenants = crate::tenants::Tenants::load(
            db.clone(),
            clock.clone(),
            Default::default(),
            bounds,
            false,
            crate::scheduler::Scheduler::new(),
        )
        .unwrap();
        Arc::new(Shared {
            db,
            tenants: Arc::new(tenants),
            tracer: None,
            timers: Timers::new(clock),
            limits: PayloadLimits::default(),
            outbound: Arc::default(),
            resident: AtomicI64::new(0),
            stops: Default::default(),
            stop_signals: Default::default(),
            memory: memory::MemoryBudget::new(1 << 30),
            log_totals: Default::default(),
            scheduler: crate::scheduler::Scheduler::new(),
            metrics: Default::default(),
            defaults: Default::default(),
            fan_outs: Default::default(),
        })
    }

    /// Resolves within a bound, or says it did not.
    async fn signalled(watch: &StopWatch) -> bool {
        tokio::time::timeout(Duration::from_millis(50), watch.stopped())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_stop_reaches_a_watch_whether_it_came_before_or_after_the_watch_began() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let (early, late, other) = ([1; 16], [2; 16], [3; 16]);

        shared.request_stop(early);
        let watch = shared.watch_stop(early);
        assert!(signalled(&watch).await, "a stop before the watch is missed");
        drop(watch);

        let watch = shared.watch_stop(late);
        assert!(!signalled(&watch).await, "signalled without a stop");
        shared.request_stop(late);
        assert!(signalled(&watch).await, "a stop during the watch is missed");
        drop(watch);
        assert!(shared.stop_signals.lock().unwrap().is_empty());

        let watch = shared.watch_stop(other);
        shared.request_stop(late); // not this execution's stop
        assert!(!signalled(&watch).await);
    }
}
