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
//! Architecture invariant: the scheduler knows nothing of wasm or storage; it runs whatever
//! activation function it is given.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify, Semaphore};

use crate::db::ExecId;

/// An execution, addressed with its tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExecKey {
    pub tenant: Arc<str>,
    pub id: ExecId,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Queued,
    Running { woken: bool },
}

type Activate = Arc<dyn Fn(ExecKey) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// One tenant's share of the run queue.
#[derive(Default)]
struct TenantQueue {
    /// Its queued executions, oldest first.
    queue: VecDeque<ExecKey>,
    /// Its activations in progress (the count a `max_concurrent_activations` share limits).
    resident: usize,
}

/// Everything the scheduler decides under one lock, so that a slot's state and its place in
/// the queue never disagree.
#[derive(Default)]
struct State {
    slots: HashMap<ExecKey, Slot>,
    tenants: HashMap<Arc<str>, TenantQueue>,
    /// Tenants with queued work, in round-robin order: each activation is taken from the
    /// front tenant, which then goes to the back if it has more. Each tenant is here at most
    /// once, exactly while its queue is non-empty.
    ring: VecDeque<Arc<str>>,
    /// The most activations a tenant may have in progress at once; a tenant not here may
    /// use every slot. Kept apart from `tenants`, whose entries come and go with work.
    shares: HashMap<Arc<str>, usize>,
}

impl State {
    /// Queue `key` behind its tenant's other work (the caller has marked its slot `Queued`).
    fn enqueue(&mut self, key: ExecKey) {
        let t = self.tenants.entry(key.tenant.clone()).or_default();
        if t.queue.is_empty() {
            self.ring.push_back(key.tenant.clone());
        }
        t.queue.push_back(key);
    }

    /// Take the next execution to activate: the oldest of the first tenant in the ring that
    /// may start one more, which then moves to the back. Marks it running.
    fn take_next(&mut self) -> Option<ExecKey> {
        for _ in 0..self.ring.len() {
            let tenant = self.ring.pop_front()?;
            let t = self
                .tenants
                .get_mut(&tenant)
                .expect("a tenant in the ring has a queue");
            if !has_share(t, self.shares.get(&tenant).copied()) {
                self.ring.push_back(tenant);
                continue;
            }
            let key = t.queue.pop_front().expect("a tenant in the ring has work");
            t.resident += 1;
            if !t.queue.is_empty() {
                self.ring.push_back(tenant);
            }
            self.slots
                .insert(key.clone(), Slot::Running { woken: false });
            return Some(key);
        }
        None
    }

    /// `key`'s activation ended; forget its tenant once it has neither work nor residents.
    /// Returns whether the tenant still has queued work.
    fn left(&mut self, key: &ExecKey) -> bool {
        let Some(t) = self.tenants.get_mut(&key.tenant) else {
            return false;
        };
        t.resident -= 1;
        let waiting = !t.queue.is_empty();
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
            }),
        }
    }

    /// Ask for an activation of `key`.
    pub fn wake(&self, key: ExecKey) {
        let mut state = self.inner.state.lock().expect("scheduler state");
        match state.slots.get_mut(&key) {
            None => {
                state.slots.insert(key.clone(), Slot::Queued);
                self.inner.queued.fetch_add(1, Ordering::Relaxed);
                state.enqueue(key);
                drop(state);
                self.inner.ready.notify_one();
            }
            Some(Slot::Queued) => {}
            Some(Slot::Running { woken }) => *woken = true,
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
        let mut state = self.inner.state.lock().expect("scheduler state");
        let woken = matches!(state.slots.get(&key), Some(Slot::Running { woken: true }));
        let again = match outcome {
            Outcome::Again => true,
            // A wake while it finished: it may have been sent back to running meanwhile
            // (a redrive); the next activation sees (and ends at once if it is not).
            Outcome::Suspended | Outcome::Finished => woken,
        };
        let mut waiting = state.left(&key);
        if again {
            state.slots.insert(key.clone(), Slot::Queued);
            self.inner.queued.fetch_add(1, Ordering::Relaxed);
            state.enqueue(key.clone());
            waiting = true;
        } else {
            state.slots.remove(&key);
        }
        drop(state);
        if waiting {
            // Its tenant may now have a share again (or has new work).
            self.inner.ready.notify_one();
        }
        if outcome == Outcome::Finished {
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
                .take_next();
            if let Some(key) = taken {
                self.inner.queued.fetch_sub(1, Ordering::Relaxed);
                return key;
            }
            // `notify_one` stores a permit when nobody waits, so work queued between the
            // look above and this wait is not missed.
            self.inner.ready.notified().await;
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
