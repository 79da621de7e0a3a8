//! The run queue: which executions are activated, when, and how many at once.
//!
//! `wake(key)` is the only way an execution gets activated: on invoke, when a timer fires,
//! when a callback completes, and at start-up recovery. Each execution is at most once in the
//! queue and at most once resident; a wake that arrives while it is resident is remembered
//! and answered by another activation if the resident one suspends (no lost wake-ups).
//! Concurrency is bounded by a semaphore (`max_resident`): excess work waits in the queue
//! as a small key, not as a live instance.
//!
//! Architecture invariant: the scheduler knows nothing of wasm or storage; it runs whatever
//! activation function it is given.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, Semaphore};

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

struct Inner {
    slots: Mutex<HashMap<ExecKey, Slot>>,
    queue: mpsc::UnboundedSender<ExecKey>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<ExecKey>>>,
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
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                slots: Mutex::new(HashMap::new()),
                queue: tx,
                rx: Mutex::new(Some(rx)),
                finished: Mutex::new(HashMap::new()),
                queued: AtomicUsize::new(0),
                resident: AtomicUsize::new(0),
            }),
        }
    }

    /// Ask for an activation of `key`.
    pub fn wake(&self, key: ExecKey) {
        let mut slots = self.inner.slots.lock().expect("slots");
        match slots.get_mut(&key) {
            None => {
                slots.insert(key.clone(), Slot::Queued);
                self.inner.queued.fetch_add(1, Ordering::Relaxed);
                let _ = self.inner.queue.send(key);
            }
            Some(Slot::Queued) => {}
            Some(Slot::Running { woken }) => *woken = true,
        }
    }

    /// Executions waiting for a free slot.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
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
        let mut slots = self.inner.slots.lock().expect("slots");
        let woken = matches!(slots.get(&key), Some(Slot::Running { woken: true }));
        let again = match outcome {
            Outcome::Again => true,
            Outcome::Suspended => woken,
            Outcome::Finished => false,
        };
        if again {
            slots.insert(key.clone(), Slot::Queued);
            self.inner.queued.fetch_add(1, Ordering::Relaxed);
            let _ = self.inner.queue.send(key.clone());
        } else {
            slots.remove(&key);
        }
        drop(slots);
        if outcome == Outcome::Finished {
            self.notify_finished(&key.id);
        }
    }

    /// Run activations, at most `max_resident` at a time, until the queue closes.
    pub async fn run<F, Fut>(self, max_resident: usize, activate: F)
    where
        F: Fn(ExecKey) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let activate: Activate = Arc::new(move |k| Box::pin(activate(k)));
        let mut rx = self
            .inner
            .rx
            .lock()
            .expect("rx")
            .take()
            .expect("Scheduler::run is called once");
        let permits = Arc::new(Semaphore::new(max_resident.max(1)));
        while let Some(key) = rx.recv().await {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            self.inner.queued.fetch_sub(1, Ordering::Relaxed);
            {
                let mut slots = self.inner.slots.lock().expect("slots");
                slots.insert(key.clone(), Slot::Running { woken: false });
            }
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
}
