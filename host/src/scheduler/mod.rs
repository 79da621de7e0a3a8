//! The run queue: which executions are activated, when, and how many at once.
//!
//! `wake(key)` is the only way an execution gets activated: on invoke, when a timer fires,
//! when a callback completes, and at start-up recovery. Each execution is at most once in the
//! queue and at most once resident; a wake that arrives while it is resident is remembered
//! and answered by another activation if the resident one suspends (no lost wake-ups).
//! Concurrency is bounded by a semaphore (`max_resident`): excess work waits in the queue
//! as a small key, not as a live instance.
//!
//! Fairness (DESIGN 8): the queue is one FIFO per tenant, and a free slot goes to the next
//! tenant with work in round-robin order, so a tenant with a backlog of any size delays
//! another tenant's next activation by at most one activation per other tenant with work.
//! The run loop takes a free slot first and only then chooses the execution, so the choice
//! sees every tenant queued at that moment. A per-tenant concurrency share
//! (`max_concurrent_activations`, given by `set_share`) is the one check in `has_share`: a
//! tenant at its share keeps its place in the ring and its turn passes to the next tenant,
//! so the slots it may not use go to the others. Slots, per-tenant queues, shares and the
//! ring live under one lock.
//!
//! Flow control per function (DESIGN 10, `flow.rs`): each queued execution has a `Class`
//! (its function, its concurrency-key value, whether it has started), given with `classify`
//! by whoever creates it (invoke) or, for an execution the scheduler has not seen since it
//! started (after a restart: recovery's wakes, timers, callbacks), asked once of the
//! classifier the host installs (`set_classifier`, which reads the stored execution), then
//! kept in memory until the execution finishes, so a wake costs no storage read. A tenant's
//! queue is one lane per (function, key value), served round robin and each in order; a lane
//! at its `max_concurrency`, or whose next new execution has no throttle token, is skipped
//! like a tenant at its share, so it holds no slot and blocks no other lane, function or
//! tenant. When only the throttle holds work back, the run loop sleeps until the next token.
//! `max_queued` is checked with `reserve_backlog` before an invoke writes anything.
//!
//! Architecture invariant: the scheduler knows nothing of wasm or storage; it runs whatever
//! activation function it is given.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify, Semaphore};
use tokio::time::Instant;

use crate::db::ExecId;

mod flow;

pub use flow::{BacklogFull, Class, FlowLimits, FunctionStats, Throttle};
use flow::{Functions, LaneId, TenantQueue};

/// An activation's address: an execution with its tenant, and which of its instances.
/// `branch` is `None` for the execution's own instance, `Some(i)` for the instance that
/// runs branch `i` of the batch the execution has fanned out (`runtime::fanout`): each is
/// queued and resident on its own, so one execution may have several instances at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExecKey {
    pub tenant: Arc<str>,
    pub id: ExecId,
    pub branch: Option<u32>,
}

impl ExecKey {
    /// The execution's own instance.
    pub fn new(tenant: Arc<str>, id: ExecId) -> Self {
        Self {
            tenant,
            id,
            branch: None,
        }
    }

    /// The instance of branch `index` of its fanned-out batch.
    pub fn branch(&self, index: u32) -> Self {
        Self {
            branch: Some(index),
            ..self.clone()
        }
    }

    /// The execution's own instance, from any of its instances.
    pub fn execution(&self) -> Self {
        Self {
            branch: None,
            ..self.clone()
        }
    }
}

/// How an activation ended, as far as scheduling goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded, failed, stopped, or nothing to do.
    Finished,
    /// Nothing resident; a timer or callback will wake it.
    Suspended,
    /// Run it again now (e.g. a step must be retried at once after a trap).
    Again,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    Queued,
    /// Resident, charged to `lane`.
    Running {
        woken: bool,
        lane: LaneId,
    },
}

type Activate = Arc<dyn Fn(ExecKey) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// Finds the class of an execution the scheduler was not told about (see `set_classifier`).
pub type Classifier = Arc<dyn Fn(&ExecKey) -> Option<Class> + Send + Sync>;

/// A class as the scheduler keeps it: with the generation of its function's
/// `concurrency_key` it was computed under.
#[derive(Clone, Debug)]
struct Known {
    class: Class,
    generation: u64,
}

/// Everything the scheduler decides under one lock, so that a slot's state and its place in
/// the queue never disagree.
#[derive(Default)]
struct State {
    slots: HashMap<ExecKey, Slot>,
    tenants: HashMap<Arc<str>, TenantQueue>,
    /// Tenants with queued work, in round-robin order: each activation is taken from the
    /// front tenant, which then goes to the back if it has more. Each tenant is here at most
    /// once, exactly while it has queued work.
    ring: VecDeque<Arc<str>>,
    /// The most activations a tenant may have in progress at once; a tenant not here may
    /// use every slot. Kept apart from `tenants`, whose entries come and go with work.
    shares: HashMap<Arc<str>, usize>,
    /// Each tenant's functions' limits and counters (kept: they are settings and totals).
    functions: HashMap<Arc<str>, Functions>,
    /// The class of every live execution the scheduler has seen.
    classes: HashMap<ExecKey, Known>,
    /// Stamps queued executions in arrival order.
    seq: u64,
}

impl State {
    /// The class of `key` if known and current.
    fn known(&self, key: &ExecKey) -> Option<Class> {
        let k = self.classes.get(key)?;
        let generation = self
            .functions
            .get(&key.tenant)
            .and_then(|f| f.get(&k.class.function))
            .map_or(0, |f| f.generation);
        (k.generation == generation).then(|| k.class.clone())
    }

    fn remember(&mut self, key: &ExecKey, class: Class) {
        let generation = self
            .functions
            .get(&key.tenant)
            .and_then(|f| f.get(&class.function))
            .map_or(0, |f| f.generation);
        self.classes
            .insert(key.clone(), Known { class, generation });
    }

    /// Queue `key` in its class's lane behind its tenant's other work there (the caller has
    /// marked its slot `Queued`).
    fn enqueue(&mut self, key: ExecKey, now: Instant) {
        let class = self
            .classes
            .get(&key)
            .map_or_else(Class::unknown, |k| k.class.clone());
        let f = self
            .functions
            .entry(key.tenant.clone())
            .or_default()
            .entry(class.function.clone())
            .or_default();
        f.queued += 1;
        if class.fresh {
            f.fresh_queued += 1;
            if f.limits.throttle.is_some() && f.tokens(now) < f.fresh_queued as f64 {
                f.throttled_total += 1;
            }
        }
        let t = self.tenants.entry(key.tenant.clone()).or_default();
        if !t.has_work() {
            self.ring.push_back(key.tenant.clone());
        }
        self.seq += 1;
        let seq = self.seq;
        t.push((class.function, class.key), class.fresh, (key, seq, now));
    }

    /// Take the next execution to activate at `now`: from the first tenant in the ring
    /// that may start one more and has a lane that may, which then moves to the back. Marks
    /// it running. `Err` with when a throttle token would let something start, if that is
    /// all that holds work back.
    fn take_next(&mut self, now: Instant) -> Result<ExecKey, Option<Instant>> {
        let mut wake_at = None;
        for _ in 0..self.ring.len() {
            let Some(tenant) = self.ring.pop_front() else {
                break;
            };
            let t = self
                .tenants
                .get_mut(&tenant)
                .expect("a tenant in the ring has a queue");
            if !has_share(t, self.shares.get(&tenant).copied()) {
                self.ring.push_back(tenant);
                continue;
            }
            let functions = self.functions.entry(tenant.clone()).or_default();
            let Some((lane, q, fresh)) = t.take(functions, now, &mut wake_at) else {
                self.ring.push_back(tenant);
                continue;
            };
            if t.has_work() {
                self.ring.push_back(tenant);
            }
            if let Some(f) = functions.get(&lane.0) {
                f.queue_wait.observe(now.saturating_duration_since(q.at));
            }
            if fresh {
                // It starts now: its later activations are resumes.
                if let Some(k) = self.classes.get_mut(&q.key) {
                    k.class.fresh = false;
                }
            }
            self.slots
                .insert(q.key.clone(), Slot::Running { woken: false, lane });
            return Ok(q.key);
        }
        Err(wake_at)
    }

    /// `key`'s activation (charged to `lane`) ended; forget its tenant once it has neither
    /// work nor residents. Returns whether the tenant still has queued work.
    fn left(&mut self, key: &ExecKey, lane: &LaneId) -> bool {
        let Some(t) = self.tenants.get_mut(&key.tenant) else {
            return false;
        };
        t.left(lane);
        let waiting = t.has_work();
        if !waiting && t.resident == 0 {
            self.tenants.remove(&key.tenant);
        }
        waiting
    }
}

/// Whether a tenant may start another activation now. The single place for a per-tenant
/// concurrency share (DESIGN 8, `max_concurrent_activations`): below its share, or without
/// one (then every free slot is its to take).
fn has_share(t: &TenantQueue, share: Option<usize>) -> bool {
    share.is_none_or(|cap| t.resident < cap)
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when work is queued or a tenant's activation ends; the run loop, holding a
    /// free slot, then looks for work again.
    ready: Notify,
    started: AtomicBool,
    finished: Mutex<HashMap<ExecId, Vec<oneshot::Sender<()>>>>,
    queued: AtomicUsize,
    resident: AtomicUsize,
    classifier: Mutex<Option<Classifier>>,
}

/// A cheap handle to the scheduler.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}

/// A place in a function's backlog, held by an invoke from its `max_queued` check until its
/// execution is queued (or the invoke fails): concurrent invokes cannot overshoot the limit.
pub struct Reserved {
    scheduler: Scheduler,
    tenant: Arc<str>,
    function: Arc<str>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut state = self.scheduler.inner.state.lock().expect("scheduler state");
        if let Some(f) = state
            .functions
            .get_mut(&self.tenant)
            .and_then(|fs| fs.get_mut(&self.function))
        {
            f.reserved = f.reserved.saturating_sub(1);
        }
    }
}

impl Scheduler {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                ready: Notify::new(),
                started: AtomicBool::new(false),
                finished: Mutex::new(HashMap::new()),
                queued: AtomicUsize::new(0),
                resident: AtomicUsize::new(0),
                classifier: Mutex::new(None),
            }),
        }
    }

    /// Install what classifies an execution woken without a class (after a restart, those
    /// that recovery, timers and callbacks wake): called once per such execution, outside
    /// the scheduler's lock; `None` (it is gone) runs it without limits.
    pub fn set_classifier(&self, c: Classifier) {
        *self.inner.classifier.lock().expect("classifier") = Some(c);
    }

    /// Tell the scheduler `key`'s class (before waking it), so that no wake of it needs the
    /// classifier.
    pub fn classify(&self, key: &ExecKey, class: Class) {
        self.inner
            .state
            .lock()
            .expect("scheduler state")
            .remember(key, class);
    }

    /// Make sure `key`'s class is known and current, asking the classifier if need be.
    fn ensure_class(&self, key: &ExecKey) {
        if self
            .inner
            .state
            .lock()
            .expect("scheduler state")
            .known(key)
            .is_some()
        {
            return;
        }
        let classifier = self.inner.classifier.lock().expect("classifier").clone();
        let class = classifier
            .and_then(|c| c(key))
            .unwrap_or_else(Class::unknown);
        self.classify(key, class);
    }

    /// Ask for an activation of `key`.
    pub fn wake(&self, key: ExecKey) {
        self.ensure_class(&key);
        let mut state = self.inner.state.lock().expect("scheduler state");
        match state.slots.get_mut(&key) {
            None => {
                state.slots.insert(key.clone(), Slot::Queued);
                self.inner.queued.fetch_add(1, Ordering::Relaxed);
                state.enqueue(key, Instant::now());
                drop(state);
                self.inner.ready.notify_one();
            }
            Some(Slot::Queued) => {}
            Some(Slot::Running { woken, .. }) => *woken = true,
        }
    }

    /// Let `tenant` have at most `share` activations in progress at once (`None`: no share
    /// of its own, every free slot). Activations already running are not cut short; a
    /// larger share takes effect at once (the run loop looks for work again).
    pub fn set_share(&self, tenant: &str, share: Option<usize>) {
        let mut state = self.inner.state.lock().expect("scheduler state");
        match share {
            Some(cap) => state.shares.insert(tenant.into(), cap),
            None => state.shares.remove(tenant),
        };
        drop(state);
        self.inner.ready.notify_one();
    }

    /// Set `function`'s flow limits (its settings, at start and after every change).
    /// Activations already running are not cut short; raised limits take effect at once. A
    /// changed `concurrency_key` re-classifies each execution at its next wake (those queued
    /// now run once more under their old key).
    pub fn set_limits(&self, tenant: &str, function: &str, limits: FlowLimits) {
        let mut state = self.inner.state.lock().expect("scheduler state");
        let f = state
            .functions
            .entry(tenant.into())
            .or_default()
            .entry(function.into())
            .or_default();
        if f.limits.concurrency_key != limits.concurrency_key {
            f.generation += 1;
        }
        if f.limits.throttle != limits.throttle {
            f.bucket = None;
        }
        f.limits = limits;
        drop(state);
        self.inner.ready.notify_one();
    }

    /// Hold a place in `function`'s backlog for an invocation, unless it has `max_queued`
    /// executions waiting already (queued, plus places held): then `BacklogFull`, counted.
    /// Without a `max_queued`, always.
    pub fn reserve_backlog(
        &self,
        tenant: &str,
        function: &str,
        max_queued: Option<u32>,
    ) -> Result<Option<Reserved>, BacklogFull> {
        let Some(max) = max_queued else {
            return Ok(None);
        };
        let mut state = self.inner.state.lock().expect("scheduler state");
        let f = state
            .functions
            .entry(tenant.into())
            .or_default()
            .entry(function.into())
            .or_default();
        let waiting = f.queued + f.reserved;
        if waiting >= max as usize {
            f.refused_total += 1;
            return Err(BacklogFull {
                queued: f.queued,
                max_queued: max,
                retry_after_secs: flow::retry_after(&f.limits),
            });
        }
        f.reserved += 1;
        Ok(Some(Reserved {
            scheduler: self.clone(),
            tenant: tenant.into(),
            function: function.into(),
        }))
    }

    /// The queue metrics of every function that has had work or limits, by tenant and name.
    pub fn flow_stats(&self) -> Vec<FunctionStats> {
        let now = Instant::now();
        let state = self.inner.state.lock().expect("scheduler state");
        let mut oldest: HashMap<(&str, &str), Instant> = HashMap::new();
        for (tenant, t) in &state.tenants {
            for ((function, _), lane) in &t.lanes {
                if let Some(at) = lane.oldest() {
                    let o = oldest.entry((tenant, function)).or_insert(at);
                    *o = (*o).min(at);
                }
            }
        }
        let mut out: Vec<FunctionStats> = state
            .functions
            .iter()
            .flat_map(|(tenant, fs)| {
                fs.iter()
                    .filter(|(name, _)| !name.is_empty())
                    .map(|(name, f)| FunctionStats {
                        tenant: tenant.clone(),
                        function: name.clone(),
                        queued: f.queued,
                        oldest: oldest
                            .get(&(&**tenant, &**name))
                            .map_or(Default::default(), |at| now.saturating_duration_since(*at)),
                        throttled_total: f.throttled_total,
                        refused_total: f.refused_total,
                        queue_wait: f.queue_wait.snapshot(),
                    })
            })
            .collect();
        out.sort_by(|a, b| (&a.tenant, &a.function).cmp(&(&b.tenant, &b.function)));
        out
    }

    /// Executions waiting for a free slot.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// `tenant`'s activations in progress.
    pub fn resident_of(&self, tenant: &str) -> usize {
        let state = self.inner.state.lock().expect("scheduler state");
        state.tenants.get(tenant).map_or(0, |t| t.resident)
    }

    /// Activations in progress.
    pub fn active(&self) -> usize {
        self.inner.resident.load(Ordering::Relaxed)
    }

    /// Resolves once `id` finishes (see `notify_finished`). Register before waking, then
    /// check the stored status, so that a finish in between is not missed.
    pub fn on_finished(&self, id: ExecId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut f = self.inner.finished.lock().expect("finished");
        let list = f.entry(id).or_default();
        list.retain(|s| !s.is_closed());
        list.push(tx);
        rx
    }

    pub fn notify_finished(&self, id: &ExecId) {
        if let Some(list) = self.inner.finished.lock().expect("finished").remove(id) {
            for tx in list {
                let _ = tx.send(());
            }
        }
    }

    fn done(&self, key: ExecKey, outcome: Outcome) {
        if outcome != Outcome::Finished {
            // It may run again: under its current class (a changed key re-classifies).
            self.ensure_class(&key);
        }
        let mut state = self.inner.state.lock().expect("scheduler state");
        let Some(Slot::Running { woken, lane }) = state.slots.get(&key).cloned() else {
            unreachable!("an activation that ends was running");
        };
        let again = match outcome {
            Outcome::Again => true,
            // A wake while it finished: it may have been sent back to running meanwhile
            // (a redrive); the next activation sees (and ends at once if it is not).
            Outcome::Suspended | Outcome::Finished => woken,
        };
        // Its lane may go again (below its limit now), or its tenant has other work.
        let mut waiting = state.left(&key, &lane);
        if again {
            state.slots.insert(key.clone(), Slot::Queued);
            self.inner.queued.fetch_add(1, Ordering::Relaxed);
            state.enqueue(key.clone(), Instant::now());
            waiting = true;
        } else {
            state.slots.remove(&key);
            if outcome == Outcome::Finished {
                state.classes.remove(&key);
            }
        }
        drop(state);
        if waiting {
            // Its tenant may now have a share again (or has new work).
            self.inner.ready.notify_one();
        }
        // A branch's instance finishing is not its execution finishing.
        if outcome == Outcome::Finished && key.branch.is_none() {
            self.notify_finished(&key.id);
        }
    }

    /// The next execution to activate, once there is one.
    async fn next(&self) -> ExecKey {
        loop {
            let taken = self
                .inner
                .state
                .lock()
                .expect("scheduler state")
                .take_next(Instant::now());
            match taken {
                Ok(key) => {
                    self.inner.queued.fetch_sub(1, Ordering::Relaxed);
                    return key;
                }
                // `notify_one` stores a permit when nobody waits, so work queued between
                // the look above and this wait is not missed.
                Err(None) => self.inner.ready.notified().await,
                // Only a throttle holds work back: look again when its token is there.
                Err(Some(at)) => {
                    tokio::select! {
                        _ = self.inner.ready.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
            }
        }
    }

    /// Run activations, at most `max_resident` at a time, for as long as the host runs.
    /// A slot is taken first and the execution chosen when it is free, so the choice sees
    /// every tenant that has work at that moment.
    pub async fn run<F, Fut>(self, max_resident: usize, activate: F)
    where
        F: Fn(ExecKey) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let activate: Activate = Arc::new(move |k| Box::pin(activate(k)));
        assert!(
            !self.inner.started.swap(true, Ordering::SeqCst),
            "Scheduler::run is called once"
        );
        let permits = Arc::new(Semaphore::new(max_resident.max(1)));
        loop {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            let key = self.next().await;
            self.inner.resident.fetch_add(1, Ordering::Relaxed);
            let this = self.clone();
            let activate = activate.clone();
            tokio::spawn(async move {
                let outcome = activate(key.clone()).await;
                this.inner.resident.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
                this.done(key, outcome);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;
    use tokio::sync::mpsc;

    fn key(n: u8) -> ExecKey {
        ExecKey {
            tenant: "t".into(),
            id: [n; 16],
            branch: None,
        }
    }

    #[tokio::test]
    async fn a_wake_during_an_activation_that_suspends_runs_it_again() {
        let s = Scheduler::new();
        let runs = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let (r, g, s2) = (runs.clone(), gate.clone(), s.clone());
        tokio::spawn(s.clone().run(4, move |k| {
            let (r, g, s2) = (r.clone(), g.clone(), s2.clone());
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    // A callback completes while we are resident...
                    s2.wake(k.clone());
                    g.notified().await;
                    Outcome::Suspended // ...and we suspend anyway: must run again.
                } else {
                    Outcome::Finished
                }
            }
        }));
        let done = s.on_finished(key(1).id);
        s.wake(key(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.wake(key(1)); // also absorbed while running
        gate.notify_one();
        tokio::time::timeout(Duration::from_secs(2), done)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "exactly one more activation"
        );
    }

    #[tokio::test]
    async fn a_wake_during_an_activation_that_finishes_runs_it_again() {
        let s = Scheduler::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (r, s2) = (runs.clone(), s.clone());
        tokio::spawn(s.clone().run(4, move |k| {
            let (r, s2) = (r.clone(), s2.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    s2.wake(k); // redriven just after it ended
                }
                Outcome::Finished
            }
        }));
        let first = s.on_finished(key(1).id);
        s.wake(key(1));
        tokio::time::timeout(Duration::from_secs(2), first)
            .await
            .unwrap()
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while runs.load(Ordering::SeqCst) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "exactly one more activation"
        );
    }

    #[tokio::test]
    async fn concurrency_is_bounded() {
        let s = Scheduler::new();
        let live = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let (l, p) = (live.clone(), peak.clone());
        tokio::spawn(s.clone().run(3, move |_| {
            let (l, p) = (l.clone(), p.clone());
            async move {
                let now = l.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                l.fetch_sub(1, Ordering::SeqCst);
                Outcome::Finished
            }
        }));
        let waits: Vec<_> = (0..12).map(|n| s.on_finished(key(n).id)).collect();
        for n in 0..12 {
            s.wake(key(n));
        }
        for w in waits {
            tokio::time::timeout(Duration::from_secs(2), w)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    fn tenant_key(tenant: &str, n: u32) -> ExecKey {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        ExecKey {
            tenant: tenant.into(),
            id,
            branch: None,
        }
    }

    /// Tenant A wakes 1,000 executions and fills every slot; then tenant B wakes 5. B's first
    /// activation must follow at most one more of A's (on one FIFO it followed all 1,000), and
    /// the two alternate after that.
    #[tokio::test]
    async fn a_backlogged_tenant_delays_another_by_at_most_one_activation() {
        const BACKLOG: u32 = 1_000;
        const LATE: u32 = 5;
        for max_resident in [1usize, 2] {
            let s = Scheduler::new();
            let (started_tx, mut started) = mpsc::unbounded_channel::<Arc<str>>();
            let (open, gate) = tokio::sync::watch::channel(false);
            for n in 0..BACKLOG {
                s.wake(tenant_key("a", n));
            }
            tokio::spawn(s.clone().run(max_resident, move |k| {
                let (started_tx, mut gate) = (started_tx.clone(), gate.clone());
                async move {
                    let _ = started_tx.send(k.tenant.clone());
                    gate.wait_for(|open| *open).await.expect("gate");
                    Outcome::Finished
                }
            }));
            let mut order = Vec::new();
            while order.len() < max_resident {
                order.push(started.recv().await.expect("an activation of a"));
            }
            for n in 0..LATE {
                s.wake(tenant_key("b", n));
            }
            open.send(true).expect("gate");
            while order.iter().filter(|t| &***t == "b").count() < LATE as usize {
                let next = tokio::time::timeout(Duration::from_secs(5), started.recv());
                order.push(next.await.expect("b runs").expect("activations"));
            }
            let first_b = order.iter().position(|t| &**t == "b").expect("b ran");
            assert!(
                first_b - max_resident <= 1,
                "max_resident {max_resident}: b started after {} more of a's activations",
                first_b - max_resident
            );
            assert!(
                order.len() <= max_resident + 2 * LATE as usize,
                "max_resident {max_resident}: a and b alternate, got {} activations for b's 5",
                order.len()
            );
        }
    }

    /// Tenants with work take one activation each in turn, in the order they first had work;
    /// a tenant whose queue empties leaves the ring. `queued()` counts every tenant's work.
    #[tokio::test]
    async fn tenants_with_work_take_turns() {
        let cases: &[(&[(&str, u32)], &str)] = &[
            (&[("a", 3), ("b", 3), ("c", 3)], "abcabcabc"),
            (&[("a", 3), ("b", 1), ("c", 2)], "abcaca"),
            (&[("c", 2), ("a", 4)], "cacaaa"),
            (&[("a", 4)], "aaaa"),
        ];
        for (wakes, expected) in cases {
            let s = Scheduler::new();
            let total: u32 = wakes.iter().map(|(_, n)| n).sum();
            for (tenant, count) in *wakes {
                for n in 0..*count {
                    s.wake(tenant_key(tenant, n));
                    s.wake(tenant_key(tenant, n)); // at most once queued
                }
            }
            assert_eq!(s.queued(), total as usize, "{wakes:?}");
            let order = Arc::new(Mutex::new(String::new()));
            let all = Arc::new(tokio::sync::Notify::new());
            let (o, a) = (order.clone(), all.clone());
            tokio::spawn(s.clone().run(1, move |k| {
                let (o, a) = (o.clone(), a.clone());
                async move {
                    let mut o = o.lock().unwrap();
                    o.push_str(&k.tenant);
                    if o.len() == total as usize {
                        a.notify_one();
                    }
                    Outcome::Finished
                }
            }));
            tokio::time::timeout(Duration::from_secs(2), all.notified())
                .await
                .unwrap();
            assert_eq!(*order.lock().unwrap(), *expected, "{wakes:?}");
            assert_eq!(s.queued(), 0, "{wakes:?}");
        }
    }

    /// Tenant a has a share of 2 of 6 slots and b none, both with backlogs: once every slot
    /// is taken, a holds exactly 2 and b the other 4, and a never has more than 2 in
    /// progress while everything drains. A larger share takes effect at once, not at the
    /// next activation's end.
    #[tokio::test]
    async fn a_capped_tenant_never_exceeds_its_share_and_others_take_the_free_slots() {
        const EACH: u32 = 10;
        let s = Scheduler::new();
        s.set_share("a", Some(2));
        let live: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let (open, gate) = tokio::sync::watch::channel(false);
        let waits: Vec<_> = ["a", "b"]
            .iter()
            .flat_map(|t| (0..EACH).map(move |n| tenant_key(t, n)))
            .map(|k| {
                let rx = s.on_finished(k.id);
                s.wake(k);
                rx
            })
            .collect();
        let l = live.clone();
        tokio::spawn(s.clone().run(6, move |k| {
            let (l, started_tx, mut gate) = (l.clone(), started_tx.clone(), gate.clone());
            async move {
                {
                    let mut l = l.lock().unwrap();
                    let (now, peak) = l.entry(k.tenant.to_string()).or_default();
                    *now += 1;
                    *peak = (*peak).max(*now);
                }
                let _ = started_tx.send(());
                gate.wait_for(|open| *open).await.expect("gate");
                l.lock().unwrap().get_mut(&*k.tenant).unwrap().0 -= 1;
                Outcome::Finished
            }
        }));
        for _ in 0..6 {
            started.recv().await.expect("an activation");
        }
        {
            let l = live.lock().unwrap();
            assert_eq!(l["a"].0, 2, "a at its share");
            assert_eq!(l["b"].0, 4, "b took the slots a may not use");
        }
        assert_eq!(s.resident_of("a"), 2);
        open.send(true).expect("gate");
        for w in waits {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .expect("every activation ran")
                .unwrap();
        }
        {
            let l = live.lock().unwrap();
            assert_eq!(l["a"].1, 2, "a's peak");
            assert!(l["b"].1 >= 4, "b's peak {}", l["b"].1);
        }

        // A share raised while its tenant waits: the waiting work starts without waiting for
        // a slot to be given back.
        let s = Scheduler::new();
        s.set_share("a", Some(1));
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let (_open, gate) = tokio::sync::watch::channel(false);
        for n in 0..3 {
            s.wake(tenant_key("a", n));
        }
        tokio::spawn(s.clone().run(3, move |_| {
            let (started_tx, mut gate) = (started_tx.clone(), gate.clone());
            async move {
                let _ = started_tx.send(());
                let _ = gate.wait_for(|open| *open).await;
                Outcome::Finished
            }
        }));
        started.recv().await.expect("the first activation");
        let more = tokio::time::timeout(Duration::from_millis(100), started.recv()).await;
        assert!(
            more.is_err(),
            "a second activation started past the share of 1"
        );
        s.set_share("a", Some(3));
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(2), started.recv())
                .await
                .expect("the raised share lets the rest start")
                .expect("activations");
        }
        assert_eq!(s.resident_of("a"), 3);
    }

    /// Concurrent wakers on three tenants against activations that suspend or ask to run
    /// again: every wake is answered by a later activation, an execution is never resident
    /// twice, and the queue never holds an execution twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_wake_up_is_lost_under_concurrent_wakers() {
        const TENANTS: [&str; 3] = ["a", "b", "c"];
        const KEYS_PER_TENANT: u32 = 20;
        const WAKERS: u32 = 4;
        const WAKES_PER_WAKER: u32 = 25_000;
        const TOTAL: usize = (WAKERS * WAKES_PER_WAKER) as usize;
        let keys = TENANTS.len() * KEYS_PER_TENANT as usize;
        let index = move |k: &ExecKey| {
            let t = TENANTS.iter().position(|t| **t == *k.tenant).unwrap();
            let n = u32::from_le_bytes(k.id[..4].try_into().unwrap()) as usize;
            t * KEYS_PER_TENANT as usize + n
        };
        let pending: Arc<Vec<AtomicUsize>> = Arc::new((0..keys).map(|_| 0.into()).collect());
        let live: Arc<Vec<AtomicU32>> = Arc::new((0..keys).map(|_| 0.into()).collect());
        let consumed = Arc::new(AtomicUsize::new(0));
        let violations = Arc::new(AtomicU32::new(0));
        let drained = Arc::new(tokio::sync::Notify::new());
        let s = Scheduler::new();
        let (p, l, c, v, d, s2) = (
            pending.clone(),
            live.clone(),
            consumed.clone(),
            violations.clone(),
            drained.clone(),
            s.clone(),
        );
        let activations = Arc::new(AtomicU32::new(0));
        tokio::spawn(s.clone().run(3, move |k| {
            let (p, l, c, v, d, s2) = (
                p.clone(),
                l.clone(),
                c.clone(),
                v.clone(),
                d.clone(),
                s2.clone(),
            );
            let nth = activations.fetch_add(1, Ordering::Relaxed);
            async move {
                let i = index(&k);
                if l[i].fetch_add(1, Ordering::SeqCst) != 0 || s2.queued() > keys {
                    v.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                let n = p[i].swap(0, Ordering::SeqCst);
                if n > 0 && c.fetch_add(n, Ordering::SeqCst) + n == TOTAL {
                    d.notify_one();
                }
                tokio::task::yield_now().await;
                l[i].fetch_sub(1, Ordering::SeqCst);
                if nth % 5 == 0 {
                    Outcome::Again
                } else {
                    Outcome::Suspended
                }
            }
        }));
        let wakers: Vec<_> = (0..WAKERS)
            .map(|w| {
                let (s, pending) = (s.clone(), pending.clone());
                tokio::spawn(async move {
                    for n in 0..WAKES_PER_WAKER {
                        let i = ((w * 7919 + n * 31) as usize) % keys;
                        let tenant = TENANTS[i / KEYS_PER_TENANT as usize];
                        pending[i].fetch_add(1, Ordering::SeqCst);
                        s.wake(tenant_key(tenant, (i % KEYS_PER_TENANT as usize) as u32));
                        if n % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for w in wakers {
            w.await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), drained.notified())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "lost wake-ups: {} of {TOTAL} answered",
                    consumed.load(Ordering::SeqCst)
                )
            });
        assert_eq!(violations.load(Ordering::SeqCst), 0);
    }

    /// One step of a flow-control script, run against `State` with a clock in the test's
    /// hands: `Wake(n, function, key, fresh)` queues execution n; `Take(Some(n))` expects n
    /// next, `Take(None)` nothing startable; `Done(n)` ends n's activation; `Advance(ms)`.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Wake(u32, &'static str, Option<&'static str>, bool),
        Take(Option<u32>),
        Done(u32),
        Advance(u64),
    }
    use Op::{Advance, Done, Take, Wake};

    fn limits(max: Option<usize>, throttle: Option<(f64, u32)>) -> FlowLimits {
        FlowLimits {
            max_concurrency: max,
            concurrency_key: None,
            throttle: throttle.map(|(per_second, burst)| Throttle { per_second, burst }),
        }
    }

    #[test]
    fn flow_control_rules() {
        type Case = (&'static str, &'static [(&'static str, FlowLimits)], Vec<Op>);
        let cases: Vec<Case> = vec![
            (
                "max_concurrency 2: the third waits for an end",
                &[],
                vec![Wake(1, "f", None, true), Wake(2, "f", None, true), Wake(3, "f", None, true),
                     Take(Some(1)), Take(Some(2)), Take(None), Done(1), Take(Some(3)), Take(None)],
            ),
            (
                "concurrency_key: two keys side by side, one key never twice",
                &[],
                vec![Wake(1, "k", Some("a"), true), Wake(2, "k", Some("a"), true), Wake(3, "k", Some("b"), true),
                     Wake(4, "k", Some("b"), true), Take(Some(1)), Take(Some(3)), Take(None),
                     Done(3), Take(Some(4)), Take(None), Done(1), Take(Some(2))],
            ),
            (
                "inputs without the key share one key value",
                &[],
                vec![Wake(1, "k", None, true), Wake(2, "k", None, true), Wake(3, "k", Some("a"), true),
                     Take(Some(1)), Take(Some(3)), Take(None), Done(1), Take(Some(2))],
            ),
            (
                "a function at its limit does not block another",
                &[],
                vec![Wake(1, "one", None, true), Wake(2, "one", None, true), Wake(3, "g", None, true),
                     Wake(4, "g", None, true), Take(Some(1)), Take(Some(3)), Take(Some(4)), Take(None)],
            ),
            (
                "lanes with work take turns, each in order",
                &[],
                vec![Wake(1, "g", None, true), Wake(2, "g", None, true), Wake(3, "h", None, true),
                     Wake(4, "g", None, true), Take(Some(1)), Take(Some(3)), Take(Some(2)), Take(Some(4))],
            ),
            (
                "throttle 1/s burst 1: starts a second apart",
                &[],
                vec![Wake(1, "t1", None, true), Wake(2, "t1", None, true), Wake(3, "t1", None, true),
                     Take(Some(1)), Take(None), Advance(999), Take(None), Advance(1), Take(Some(2)),
                     Advance(500), Take(None), Advance(500), Take(Some(3))],
            ),
            (
                "throttle 2/s burst 2: two at once, then every 500 ms",
                &[],
                vec![Wake(1, "t2", None, true), Wake(2, "t2", None, true), Wake(3, "t2", None, true),
                     Wake(4, "t2", None, true), Take(Some(1)), Take(Some(2)), Take(None),
                     Advance(500), Take(Some(3)), Take(None), Advance(500), Take(Some(4))],
            ),
            (
                "the throttle delays starts, never a resume",
                &[],
                vec![Wake(1, "t1", None, true), Wake(2, "t1", None, true), Wake(3, "t1", None, false),
                     Take(Some(1)), Take(Some(3)), Take(None)],
            ),
            (
                "an execution that started is not throttled again",
                &[],
                vec![Wake(1, "t1", None, true), Take(Some(1)), Done(1), Wake(1, "t1", None, false),
                     Take(Some(1))],
            ),
            (
                "within a lane, new and resumed executions go in arrival order",
                &[],
                vec![Wake(1, "g", None, false), Wake(2, "g", None, true), Wake(3, "g", None, false),
                     Take(Some(1)), Take(Some(2)), Take(Some(3))],
            ),
            (
                "a function at its limit does not hold back its tenant's other functions behind a throttle",
                &[],
                vec![Wake(1, "t1", None, true), Wake(2, "t1", None, true), Wake(3, "one", None, true),
                     Wake(4, "one", None, true), Wake(5, "g", None, true), Take(Some(1)), Take(Some(3)),
                     Take(Some(5)), Take(None), Advance(1000), Take(Some(2)), Take(None), Done(3), Take(Some(4))],
            ),
        ];
        let defaults: &[(&str, FlowLimits)] = &[
            ("f", limits(Some(2), None)),
            (
                "k",
                FlowLimits {
                    concurrency_key: Some("/u".into()),
                    ..limits(Some(1), None)
                },
            ),
            ("one", limits(Some(1), None)),
            ("t1", limits(None, Some((1.0, 1)))),
            ("t2", limits(None, Some((2.0, 2)))),
        ];
        for (name, extra, ops) in cases {
            let mut st = State::default();
            let mut now = Instant::now();
            for (f, l) in defaults.iter().chain(extra.iter()) {
                st.functions
                    .entry("t".into())
                    .or_default()
                    .entry((*f).into())
                    .or_default()
                    .limits = l.clone();
            }
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Wake(n, f, key, fresh) => {
                        let k = tenant_key("t", n);
                        let class = Class {
                            function: f.into(),
                            key: key.map(Into::into),
                            fresh,
                        };
                        st.remember(&k, class);
                        st.slots.insert(k.clone(), Slot::Queued);
                        st.enqueue(k, now);
                    }
                    Take(expected) => {
                        let got = st
                            .take_next(now)
                            .ok()
                            .map(|k| u32::from_le_bytes(k.id[..4].try_into().unwrap()));
                        assert_eq!(got, expected, "{name}: step {i} {op:?}");
                    }
                    Done(n) => {
                        let k = tenant_key("t", n);
                        let Some(Slot::Running { lane, .. }) = st.slots.remove(&k) else {
                            panic!("{name}: step {i}: {n} is not running");
                        };
                        st.left(&k, &lane);
                    }
                    Advance(ms) => now += Duration::from_millis(ms),
                }
            }
        }
    }

    #[test]
    fn a_throttled_queue_says_when_its_next_token_is_due() {
        let mut st = State::default();
        let now = Instant::now();
        st.functions
            .entry("t".into())
            .or_default()
            .entry("f".into())
            .or_default()
            .limits = limits(None, Some((4.0, 1)));
        for n in 0..2 {
            let k = tenant_key("t", n);
            st.remember(
                &k,
                Class {
                    function: "f".into(),
                    key: None,
                    fresh: true,
                },
            );
            st.slots.insert(k.clone(), Slot::Queued);
            st.enqueue(k, now);
        }
        assert!(st.take_next(now).is_ok());
        let at = st
            .take_next(now)
            .expect_err("throttled")
            .expect("a token time");
        assert_eq!(at.duration_since(now), Duration::from_millis(250));
        // Every queued new execution beyond the bucket's tokens counted as throttled.
        assert_eq!(st.functions["t"]["f"].throttled_total, 1);
    }

    /// `max_queued`: places held by invokes count with queued executions; a refusal is
    /// counted; a released place is free again.
    #[test]
    fn max_queued_counts_queued_executions_and_held_places() {
        let s = Scheduler::new();
        assert!(
            s.reserve_backlog("t", "f", None).unwrap().is_none(),
            "no limit: no place held"
        );
        let a = s.reserve_backlog("t", "f", Some(2)).unwrap();
        s.wake(tenant_key("t", 1)); // an unknown class: not f's
        let k = tenant_key("t", 2);
        s.classify(
            &k,
            Class {
                function: "f".into(),
                key: None,
                fresh: true,
            },
        );
        s.wake(k);
        let refused = s.reserve_backlog("t", "f", Some(2)).err().expect("full");
        assert_eq!(
            (refused.queued, refused.max_queued, refused.retry_after_secs),
            (1, 2, 1)
        );
        assert!(
            s.reserve_backlog("t", "g", Some(2)).is_ok(),
            "another function has its own"
        );
        drop(a);
        let _b = s
            .reserve_backlog("t", "f", Some(2))
            .expect("a place was released");
        let stats = s.flow_stats();
        let f = stats.iter().find(|f| &*f.function == "f").unwrap();
        assert_eq!((f.queued, f.refused_total), (1, 1));
        assert!(
            stats.iter().all(|f| !f.function.is_empty()),
            "unclassified work is not a function"
        );
    }

    /// The classifier is asked once per execution the scheduler does not know, not per wake;
    /// a changed `concurrency_key` asks again.
    #[tokio::test]
    async fn an_unknown_execution_is_classified_once() {
        let s = Scheduler::new();
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        s.set_classifier(Arc::new(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Some(Class {
                function: "f".into(),
                key: None,
                fresh: false,
            })
        }));
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        tokio::spawn(s.clone().run(2, move |_| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Outcome::Suspended
            }
        }));
        for _ in 0..5 {
            s.wake(key(1));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(runs.load(Ordering::SeqCst) >= 1);
        s.set_limits(
            "t",
            "f",
            FlowLimits {
                concurrency_key: Some("/u".into()),
                ..Default::default()
            },
        );
        s.wake(key(1));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "re-classified under the new key"
        );
    }

    /// The run loop sleeps until the throttle's next token (nothing else wakes it) and
    /// starts new executions at the rate: never early, and not much later on a busy machine.
    #[tokio::test]
    async fn the_run_loop_starts_throttled_work_at_the_rate() {
        let s = Scheduler::new();
        s.set_limits("t", "f", limits(None, Some((20.0, 1))));
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in 0..5 {
            let k = tenant_key("t", n);
            s.classify(
                &k,
                Class {
                    function: "f".into(),
                    key: None,
                    fresh: true,
                },
            );
            s.wake(k);
        }
        let t0 = Instant::now();
        tokio::spawn(s.clone().run(4, move |_| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Instant::now());
                Outcome::Finished
            }
        }));
        let mut starts = Vec::new();
        for _ in 0..5 {
            let at = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            starts.push(at.expect("started").unwrap().duration_since(t0));
        }
        for (i, w) in starts.windows(2).enumerate() {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_millis(49),
                "start {} came {gap:?} after the one before: {starts:?}",
                i + 1
            );
        }
        assert!(starts[4] < Duration::from_secs(2), "{starts:?}");
    }

    /// Scheduler overhead per activation: `BENCH_ACTIVATIONS` no-op activations of distinct
    /// executions through `max_resident = 8`. Prints the figure (`--nocapture`); asserts only
    /// that every activation ran, since time on a shared machine is not a test result.
    #[tokio::test]
    async fn overhead_per_activation_is_printed() {
        const BENCH_ACTIVATIONS: u32 = 100_000;
        let s = Scheduler::new();
        let ran = Arc::new(AtomicU32::new(0));
        let all = Arc::new(tokio::sync::Notify::new());
        let (r, a) = (ran.clone(), all.clone());
        let start = std::time::Instant::now();
        for n in 0..BENCH_ACTIVATIONS {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            s.wake(ExecKey {
                tenant: ["a", "b", "c"][n as usize % 3].into(),
                id,
                branch: None,
            });
        }
        tokio::spawn(s.clone().run(8, move |_| {
            let (r, a) = (r.clone(), a.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) + 1 == BENCH_ACTIVATIONS {
                    a.notify_one();
                }
                Outcome::Finished
            }
        }));
        tokio::time::timeout(Duration::from_secs(60), all.notified())
            .await
            .expect("every activation ran");
        let took = start.elapsed();
        assert_eq!(ran.load(Ordering::SeqCst), BENCH_ACTIVATIONS);
        println!(
            "scheduler overhead: {BENCH_ACTIVATIONS} no-op activations in {took:?}, {:.0} ns each",
            took.as_nanos() as f64 / f64::from(BENCH_ACTIVATIONS)
        );
    }
}
