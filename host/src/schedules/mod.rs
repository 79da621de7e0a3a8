//! Schedules (DESIGN 10): a tenant's cron schedules of a function, and the service that
//! fires them. Each firing is an invoke of the function's latest version, with the
//! idempotency key `schedule:<name>:<fire time>`, so that no crash fires one twice.
//!
//! Durable state: the schedule record (`db::keys::schedule`) holds its cursor (the
//! earliest fire time not handled yet), a buffered firing, the latest firings and the
//! latest refusal; a due entry (`db::keys::schedule_due`, due time first) says when the
//! service looks at it next. A firing's execution, its idempotency claim and the schedule's
//! advanced cursor are one group (`Store::claim_idempotency`), so after a crash the cursor
//! is past every firing that happened, and the key refuses one that happened anyway.
//!
//! The service (`run`) sleeps until the earliest due entry (at most a second, or until a
//! change), then looks at each due schedule (`plan::plan`): fire times since the host
//! started fire, those it missed while down follow `catch_up`; `overlap` decides about a
//! firing whose previous execution has not ended. A firing takes a token of the tenant's
//! rate and a place in its quotas like any invoke; a refusal is recorded on the schedule
//! (`last_error`, a `refused` firing) and counted, never dropped silently.
//!
//! Must not: fire a paused schedule from its cron (a manual trigger fires it), or write
//! anything outside its own records and the executions it creates.

pub mod plan;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};

use crate::db::{
    self, Batch, CatchUp, Durability, ExecId, FiringOutcome, FiringRecord, IdempotencyRecord,
    Overlap, ScheduleDueRecord, ScheduleRecord, Store,
};
use crate::metrics::Metrics;
use crate::runtime::create::{input_sha256, NewExecution, Refusal};
use crate::scheduler::{BacklogFull, ExecKey, Scheduler};
use crate::tenants::rate::Limited;
use crate::tenants::usage::ExecBytes;
use crate::tenants::Tenants;
use crate::timer::{rfc3339, Clock, Timers};
use crate::{ids, settings};

pub use plan::{Spec, LATE_GRACE_MS, MAX_CATCH_UP};

/// The most schedules one tenant may have: each costs the service a look per firing.
pub const MAX_SCHEDULES_PER_TENANT: usize = 100;

/// The latest firings a schedule keeps (fired, skipped or refused), for `GET`.
pub const MAX_FIRINGS: usize = 50;

/// The upcoming fire times `GET /v1/schedules/{name}` shows.
pub const NEXT_SHOWN: usize = 5;

/// The longest the service sleeps before it looks at the due entries again, so that a
/// clock that jumps is noticed within a second.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How often a schedule with a buffered firing looks whether the running execution ended.
const BUFFER_POLL_MS: u64 = 250;

/// The time zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The schedule's function is gone (a trigger cannot fire).
    #[error("{0}")]
    Conflict(String),
    /// Over `MAX_SCHEDULES_PER_TENANT`, or the tenant's execution quotas (a firing).
    #[error("{0}")]
    Quota(String),
    /// The tenant's invocation rate (a firing).
    #[error("{}", .0.message)]
    RateLimited(Limited),
    /// The function's `max_queued` (a firing).
    #[error("{0}")]
    BacklogFull(BacklogFull),
    #[error(transparent)]
    Storage(#[from] db::Error),
}

/// What `PUT /v1/schedules/{name}` sets.
#[derive(Clone, Debug)]
pub struct Definition {
    pub function: String,
    pub cron: String,
    pub timezone: String,
    /// JSON text.
    pub input: String,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub paused: bool,
}

/// The idempotency key of the firing of schedule `name` at `fire_ms`.
pub fn idempotency_key(name: &str, fire_ms: u64) -> String {
    format!("schedule:{name}:{}", rfc3339(fire_ms))
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("schedule {name:?} not found"))
}

fn push_firing(rec: &mut ScheduleRecord, f: FiringRecord) {
    rec.firings.push(f);
    let over = rec.firings.len().saturating_sub(MAX_FIRINGS);
    rec.firings.drain(..over);
}

/// When the service should look at `rec` next: its cursor, or soon while a firing is
/// buffered; never while paused.
fn due_of(rec: &ScheduleRecord, now: u64) -> Option<u64> {
    if rec.paused {
        return None;
    }
    let poll = rec.buffered_ms.map(|_| now + BUFFER_POLL_MS);
    match (rec.next_fire_ms, poll) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The tenants' schedules and the service that fires them. Cheap to share in an `Arc`.
pub struct Service {
    db: Store,
    tenants: Arc<Tenants>,
    scheduler: Scheduler,
    timers: Timers,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    defaults: settings::Defaults,
    /// Told of every change that may move the earliest due entry.
    changed: Notify,
    /// One change of schedule records at a time (requests and the service), so that no
    /// read-modify-write loses another's firing.
    writes: Mutex<()>,
    /// When this host started firing: fire times before it were missed.
    started_ms: AtomicU64,
}

impl Service {
    pub fn new(
        db: Store,
        tenants: Arc<Tenants>,
        scheduler: Scheduler,
        timers: Timers,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        defaults: settings::Defaults,
    ) -> Self {
        let started = clock.now_ms();
        Self {
            db,
            tenants,
            scheduler,
            timers,
            metrics,
            clock,
            defaults,
            changed: Notify::new(),
            writes: Mutex::new(()),
            started_ms: AtomicU64::new(started),
        }
    }

    /// Create or replace schedule `name` (a valid name: the API checks it); `true` if it
    /// was created. A replaced schedule keeps its firings and counts from now (nothing is
    /// caught up).
    pub async fn put(
        &self,
        tenant: &str,
        name: &str,
        def: Definition,
    ) -> Result<(ScheduleRecord, bool), Error> {
        let spec = Spec::parse(&def.cron, &def.timezone).map_err(Error::BadRequest)?;
        let _w = self.writes.lock().await;
        if self
            .db
            .function(tenant, &def.function)?
            .filter(|f| !f.deleted)
            .is_none()
        {
            return Err(Error::BadRequest(format!(
                "function {:?} not found: deploy it first",
                def.function
            )));
        }
        let now = self.clock.now_ms();
        let next = spec
            .next_after(now)
            .ok_or_else(|| Error::BadRequest(format!("cron {:?} never fires again", def.cron)))?;
        let old = self.db.schedule(tenant, name)?;
        if old.is_none() && self.db.schedules(tenant)?.len() >= MAX_SCHEDULES_PER_TENANT {
            return Err(Error::Quota(format!(
                "the tenant has {MAX_SCHEDULES_PER_TENANT} schedules, as many as it may"
            )));
        }
        let mut rec = ScheduleRecord {
            tenant: tenant.to_string(),
            name: name.to_string(),
            function: def.function,
            cron: def.cron,
            timezone: def.timezone,
            input: def.input,
            overlap: def.overlap,
            catch_up: def.catch_up,
            paused: def.paused,
            created_ms: old.as_ref().map_or(now, |o| o.created_ms),
            updated_ms: now,
            next_fire_ms: (!def.paused).then_some(next),
            due_ms: None,
            buffered_ms: None,
            last_execution: old.as_ref().and_then(|o| o.last_execution),
            last_error: old.as_ref().and_then(|o| o.last_error.clone()),
            last_error_ms: old.as_ref().and_then(|o| o.last_error_ms),
            firings: old.as_ref().map(|o| o.firings.clone()).unwrap_or_default(),
        };
        rec.due_ms = due_of(&rec, now);
        self.write(&rec, old.as_ref().and_then(|o| o.due_ms))
            .await?;
        Ok((rec, old.is_none()))
    }

    pub fn list(&self, tenant: &str) -> Result<Vec<ScheduleRecord>, Error> {
        Ok(self.db.schedules(tenant)?)
    }

    pub fn get(&self, tenant: &str, name: &str) -> Result<ScheduleRecord, Error> {
        self.db
            .schedule(tenant, name)?
            .ok_or_else(|| not_found(name))
    }

    /// Its next `n` fire times from now (none while paused).
    pub fn upcoming(&self, rec: &ScheduleRecord, n: usize) -> Vec<u64> {
        if rec.paused {
            return Vec::new();
        }
        Spec::parse(&rec.cron, &rec.timezone)
            .map(|s| s.upcoming(self.clock.now_ms(), n))
            .unwrap_or_default()
    }

    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), Error> {
        let _w = self.writes.lock().await;
        let rec = self.get(tenant, name)?;
        let mut batch = Batch::new();
        batch.del_schedule(&rec);
        self.db.commit(batch, Durability::Sync).await?;
        Ok(())
    }

    /// Pause (no firing from the cron, a buffered one dropped) or resume (firing from the
    /// next fire time after now: what it missed while paused is not caught up).
    pub async fn set_paused(
        &self,
        tenant: &str,
        name: &str,
        paused: bool,
    ) -> Result<ScheduleRecord, Error> {
        let _w = self.writes.lock().await;
        let mut rec = self.get(tenant, name)?;
        if rec.paused == paused {
            return Ok(rec);
        }
        let stored_due = rec.due_ms;
        let now = self.clock.now_ms();
        rec.paused = paused;
        rec.updated_ms = now;
        rec.buffered_ms = None;
        rec.next_fire_ms = if paused {
            None
        } else {
            Spec::parse(&rec.cron, &rec.timezone)
                .map_err(Error::BadRequest)?
                .next_after(now)
        };
        rec.due_ms = due_of(&rec, now);
        self.write(&rec, stored_due).await?;
        Ok(rec)
    }

    /// Fire now, whether paused or not and whatever the overlap policy: the firing, or
    /// why it was refused (recorded on the schedule too).
    pub async fn trigger(&self, tenant: &str, name: &str) -> Result<FiringRecord, Error> {
        let _w = self.writes.lock().await;
        let mut rec = self.get(tenant, name)?;
        let mut stored = rec.clone();
        let now = self.clock.now_ms();
        let fired = self
            .fire(&mut rec, &mut stored, now, true, false, now)
            .await;
        self.save(&rec, &mut stored).await?;
        fired
    }

    /// Write `rec`, moving its due entry from `stored_due`, and wake the service.
    async fn write(&self, rec: &ScheduleRecord, stored_due: Option<u64>) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put_schedule(rec, stored_due);
        self.db.commit(batch, Durability::Sync).await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Write `rec` if it differs from what is stored (`stored`, then updated).
    async fn save(&self, rec: &ScheduleRecord, stored: &mut ScheduleRecord) -> Result<(), Error> {
        if rec != stored {
            self.write(rec, stored.due_ms).await?;
            *stored = rec.clone();
        }
        Ok(())
    }

    /// Whether the execution of `rec`'s latest firing has not ended.
    fn busy(&self, rec: &ScheduleRecord) -> Result<Option<ExecId>, Error> {
        let Some(id) = rec.last_execution else {
            return Ok(None);
        };
        let running = self
            .db
            .execution(&rec.tenant, &id)?
            .is_some_and(|e| !e.status.is_terminal());
        Ok(running.then_some(id))
    }

    fn count(&self, tenant: &str, outcome: FiringOutcome, n: u64) {
        let m = self.metrics.tenant(tenant);
        let counter = match outcome {
            FiringOutcome::Fired => &m.schedule_fired,
            FiringOutcome::Skipped => &m.schedule_skipped,
            FiringOutcome::Refused => &m.schedule_refused,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Fire `rec` for `fire_ms`: create its execution (in one group with its idempotency
    /// claim and `rec` as it is after this firing: `stored` becomes that), or record why
    /// not. `Err(Storage)` changed nothing durable; other errors are refusals, recorded in
    /// `rec` (the caller saves it).
    async fn fire(
        &self,
        rec: &mut ScheduleRecord,
        stored: &mut ScheduleRecord,
        fire_ms: u64,
        manual: bool,
        missed: bool,
        now: u64,
    ) -> Result<FiringRecord, Error> {
        let firing = |outcome, execution, note| FiringRecord {
            fire_ms,
            at_ms: now,
            outcome,
            execution,
            manual,
            missed,
            note,
        };
        let tenant = rec.tenant.clone();
        let refuse = |rec: &mut ScheduleRecord, e: Error| {
            let note = e.to_string();
            push_firing(
                rec,
                firing(FiringOutcome::Refused, None, Some(note.clone())),
            );
            rec.last_error = Some(note);
            rec.last_error_ms = Some(now);
            self.count(&tenant, FiringOutcome::Refused, 1);
            Err(e)
        };
        let Some(f) = self
            .db
            .function(&tenant, &rec.function)?
            .filter(|f| !f.deleted)
        else {
            let e = Error::Conflict(format!("function {:?} not found", rec.function));
            return refuse(rec, e);
        };
        let quotas = self.tenants.quotas(&tenant);
        let rate = (quotas.invocations_per_second, quotas.invocation_burst);
        if let Err(l) = self.tenants.rates.take(&tenant, rate.0, rate.1, now) {
            return refuse(rec, Error::RateLimited(l));
        }
        let key = idempotency_key(&rec.name, fire_ms);
        let mut stale = None;
        if let Some(held) = self.db.idempotency(&tenant, &rec.function, &key)? {
            if self.db.execution(&tenant, &held.execution)?.is_some() {
                return Ok(self.already_fired(rec, firing, held.execution));
            }
            stale = Some(held); // its execution was deleted: take the key over
        }
        // A place in the function's backlog (`max_queued`), held until it is queued, and the
        // quota reservation.
        let admission = crate::runtime::create::admit(
            &self.tenants,
            &self.scheduler,
            &tenant,
            &rec.function,
            f.settings.max_queued,
            true,
            rec.input.len() as u64,
            &quotas,
        );
        let (backlog, reserved) = match admission {
            Ok(a) => (a.backlog, a.reserved),
            Err(Refusal::Backlog(e)) => return refuse(rec, Error::BacklogFull(e)),
            Err(Refusal::Quota(e)) => return refuse(rec, Error::Quota(e.0)),
        };
        let timeout = settings::resolve(&f.settings, &self.defaults).execution_timeout;
        let deadline = now.saturating_add(timeout.as_millis() as u64);
        let id = ids::new_execution_id();
        let created = NewExecution {
            id,
            tenant: tenant.clone(),
            function: rec.function.clone(),
            version: f.latest_version,
            input: rec.input.clone(),
            now_ms: now,
            deadline_ms: deadline,
            idempotency_key: Some(key.clone()),
            start_ms: None,
            fork: None,
            trace: None,
            parent: None,
        }
        .write();
        let (mut batch, timers) = (created.batch, created.timers);
        let written = batch.written_for(&tenant, &id);
        let mut next = rec.clone();
        let done = firing(FiringOutcome::Fired, Some(id), None);
        push_firing(&mut next, done.clone());
        next.last_execution = Some(id);
        batch.put_schedule(&next, stored.due_ms);
        let claim = IdempotencyRecord {
            execution: id,
            input_sha256: input_sha256(&rec.input),
        };
        let held = self
            .db
            .claim_idempotency(&tenant, &rec.function, &key, &claim, batch, stale.as_ref())
            .await?;
        if let Some(held) = held {
            return Ok(self.already_fired(rec, firing, held.execution));
        }
        *rec = next;
        *stored = rec.clone();
        reserved.invoked(id, ExecBytes::from(written));
        timers.add(&self.timers);
        self.metrics.created(&tenant);
        self.count(&tenant, FiringOutcome::Fired, 1);
        let key = ExecKey {
            tenant: tenant.as_str().into(),
            id,
            branch: None,
        };
        // Its flow-control class now, so that no wake of it reads the store.
        let class = settings::class(&rec.function, &f.settings, &rec.input, true);
        self.scheduler.classify(&key, class);
        self.scheduler.wake(key);
        drop(backlog);
        Ok(done)
    }

    /// The firing's key names an execution already: it happened (before a crash, or by a
    /// concurrent trigger in the same millisecond).
    fn already_fired(
        &self,
        rec: &mut ScheduleRecord,
        firing: impl Fn(FiringOutcome, Option<ExecId>, Option<String>) -> FiringRecord,
        execution: ExecId,
    ) -> FiringRecord {
        let f = firing(
            FiringOutcome::Fired,
            Some(execution),
            Some("fired already: its idempotency key names this execution".into()),
        );
        if !rec
            .firings
            .iter()
            .any(|g| g.fire_ms == f.fire_ms && g.execution == Some(execution))
        {
            push_firing(rec, f.clone());
        }
        rec.last_execution = Some(execution);
        f
    }

    /// Fire `rec` at `t` unless its overlap policy says otherwise.
    async fn fire_due(
        &self,
        rec: &mut ScheduleRecord,
        stored: &mut ScheduleRecord,
        t: u64,
        missed: bool,
        now: u64,
    ) -> Result<(), Error> {
        if let Some(running) = self.busy(rec)? {
            let note = match rec.overlap {
                Overlap::Allow => None,
                Overlap::BufferOne if rec.buffered_ms.is_none() => {
                    rec.buffered_ms = Some(t);
                    return Ok(());
                }
                Overlap::BufferOne => Some("overlap buffer_one: a firing is buffered already"),
                Overlap::Skip => Some("overlap skip"),
            };
            if let Some(note) = note {
                let running = ids::execution_id_to_string(&running);
                let f = FiringRecord {
                    fire_ms: t,
                    at_ms: now,
                    outcome: FiringOutcome::Skipped,
                    execution: None,
                    manual: false,
                    missed,
                    note: Some(format!("{note}: execution {running} has not ended")),
                };
                push_firing(rec, f);
                self.count(&rec.tenant, FiringOutcome::Skipped, 1);
                return Ok(());
            }
        }
        match self.fire(rec, stored, t, false, missed, now).await {
            Err(Error::Storage(e)) => Err(Error::Storage(e)),
            _ => Ok(()), // fired, or refused and recorded
        }
    }

    /// Look at schedule `entry`, due at `due`: fire what is due, move its cursor and due
    /// entry on.
    async fn look(&self, due: u64, entry: &ScheduleDueRecord) -> Result<(), Error> {
        let _w = self.writes.lock().await;
        let (tenant, name) = (&entry.tenant, &entry.name);
        let Some(mut rec) = self
            .db
            .schedule(tenant, name)?
            .filter(|r| r.due_ms == Some(due))
        else {
            // An entry its schedule no longer names (not written so by this release).
            let mut batch = Batch::new();
            batch.del_schedule_due(due, tenant, name);
            self.db.commit(batch, Durability::Sync).await?;
            return Ok(());
        };
        if self.tenants.tenant(tenant).is_none() {
            // Its tenant was deleted while this look was under way (which rewrote it).
            let mut batch = Batch::new();
            batch.del_schedule(&rec);
            self.db.commit(batch, Durability::Sync).await?;
            return Ok(());
        }
        let mut stored = rec.clone();
        let now = self.clock.now_ms();
        if let Some(buffered) = rec.buffered_ms.filter(|_| !rec.paused) {
            if self.busy(&rec)?.is_none() {
                rec.buffered_ms = None;
                rec.due_ms = due_of(&rec, now);
                if let Err(Error::Storage(e)) = self
                    .fire(&mut rec, &mut stored, buffered, false, false, now)
                    .await
                {
                    return Err(e.into());
                }
            }
        }
        match (rec.next_fire_ms.filter(|c| *c <= now), rec.paused) {
            (Some(cursor), false) => {
                let spec = Spec::parse(&rec.cron, &rec.timezone).map_err(Error::BadRequest)?;
                let started = self.started_ms.load(Ordering::Relaxed);
                let plan = plan::plan(&spec, rec.catch_up, cursor, now, started);
                if plan.skipped > 0 {
                    let policy = match rec.catch_up {
                        CatchUp::None => "none",
                        CatchUp::Latest => "latest",
                        CatchUp::All => "all",
                    };
                    let more = if plan.more { " or more" } else { "" };
                    let f = FiringRecord {
                        fire_ms: cursor,
                        at_ms: now,
                        outcome: FiringOutcome::Skipped,
                        execution: None,
                        manual: false,
                        missed: true,
                        note: Some(format!(
                            "catch_up {policy}: skipped {}{more} missed firings from {} on",
                            plan.skipped,
                            rfc3339(cursor)
                        )),
                    };
                    push_firing(&mut rec, f);
                    self.count(&rec.tenant, FiringOutcome::Skipped, plan.skipped as u64);
                }
                for (t, missed) in plan.fire {
                    // Progress first: the firing's group carries the cursor past it.
                    rec.next_fire_ms = spec.next_after(t);
                    rec.due_ms = due_of(&rec, now);
                    self.fire_due(&mut rec, &mut stored, t, missed, now).await?;
                }
                rec.next_fire_ms = plan.next;
            }
            (_, true) => rec.next_fire_ms = None,
            (None, false) => {}
        }
        rec.due_ms = due_of(&rec, now);
        self.save(&rec, &mut stored).await
    }

    /// Look at every due schedule; the earliest due entry left, if any.
    async fn tick(&self) -> Result<Option<u64>, Error> {
        let now = self.clock.now_ms();
        let mut due = Vec::new();
        for entry in self.db.schedules_due() {
            let (at, e) = entry?;
            if at > now {
                break;
            }
            due.push((at, e));
        }
        let mut failed = None;
        for (at, e) in due {
            if let Err(err) = self.look(at, &e).await {
                tracing::error!(tenant = %e.tenant, schedule = %e.name, error = %err, "a schedule's firing failed");
                failed = Some(err);
            }
        }
        if let Some(err) = failed {
            return Err(err);
        }
        Ok(match self.db.schedules_due().next() {
            Some(entry) => Some(entry?.0),
            None => None,
        })
    }

    /// Fire schedules until `shutdown`. Fire times before this call were missed.
    pub async fn run(self: Arc<Self>, shutdown: Arc<Notify>) {
        self.started_ms
            .store(self.clock.now_ms(), Ordering::Relaxed);
        loop {
            let sleep = match self.tick().await {
                Ok(Some(due)) => {
                    Duration::from_millis(due.saturating_sub(self.clock.now_ms())).min(MAX_SLEEP)
                }
                Ok(None) => MAX_SLEEP,
                // A storage failure: try again in a while, not in a busy loop.
                Err(_) => MAX_SLEEP,
            };
            tokio::select! {
                _ = shutdown.notified() => return,
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}
