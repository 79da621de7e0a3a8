//! Time: the injected `Clock`, and the timer service that turns durable timer records into
//! wake-ups.
//!
//! Timer records live in `db` (written by whoever schedules them, in the same batch as the
//! event that needs them) and stay there until their effect is journaled; this service keeps
//! an in-memory index of those due within a horizon (`HORIZON` ahead; a year-long wait or an
//! execution deadline costs no memory until it is near), and emits each one once when due.
//! The host reloads the next window from the database every half horizon (`lib.rs`). It
//! never writes to the database itself.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::db::{ExecId, TimerRecord};

/// RFC 3339 UTC with milliseconds. A time past the last representable one (year 9999,
/// e.g. the end of a wait of `u64::MAX` ms) is shown as that last one, not as 1970.
pub fn rfc3339(ms: u64) -> String {
    let last = time::macros::datetime!(9999-12-31 23:59:59.999 UTC);
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_or(last, |t| t.min(last));
    // Always three fractional digits, so timestamps also sort as strings.
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// Wall-clock time in unix milliseconds.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        Self(AtomicU64::new(start_ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A timer that came due.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    pub due_ms: u64,
    pub execution: ExecId,
    pub op_id: String,
    pub record: TimerRecord,
}

type Entry = Reverse<(u64, ExecId, String)>;
/// Due order, and the records by key (a removed timer stays in the heap until it surfaces).
type Index = (
    BinaryHeap<Entry>,
    std::collections::HashMap<(u64, ExecId, String), TimerRecord>,
);

struct Inner {
    heap: Mutex<Index>,
    /// The index holds timers due at or before this; later ones wait in the database.
    horizon_ms: AtomicU64,
    changed: Notify,
    clock: Arc<dyn Clock>,
}

/// A cheap handle to the timer index.
#[derive(Clone)]
pub struct Timers {
    inner: Arc<Inner>,
}

/// How far ahead the in-memory index reaches. The window is reloaded every half horizon and
/// a reload covers the whole window, so a timer skipped by `add` (beyond the horizon at that
/// moment) is indexed by a later reload well before it is due.
pub const HORIZON: Duration = Duration::from_secs(600);

/// The longest the service sleeps before looking at the clock again, so a clock that jumps
/// (or a manual clock in tests) is noticed.
const MAX_SLEEP: Duration = Duration::from_millis(250);

impl Timers {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                heap: Mutex::new(Default::default()),
                horizon_ms: AtomicU64::new(u64::MAX),
                changed: Notify::new(),
                clock,
            }),
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Index only timers due at or before `until_ms` from now on (the host then reloads
    /// the window from the database as time passes). Without a call, everything is indexed.
    pub fn set_horizon(&self, until_ms: u64) {
        self.inner.horizon_ms.store(until_ms, Ordering::SeqCst);
    }

    /// Index a timer whose record is (or is about to be) durable; one beyond the horizon is
    /// left to the reload that reaches it.
    pub fn add(&self, due_ms: u64, execution: ExecId, op_id: String, record: TimerRecord) {
        if due_ms > self.inner.horizon_ms.load(Ordering::SeqCst) {
            return;
        }
        let key = (due_ms, execution, op_id);
        let mut g = self.inner.heap.lock().expect("timer lock");
        if g.1.insert(key.clone(), record).is_none() {
            g.0.push(Reverse(key));
        }
        drop(g);
        self.inner.changed.notify_one();
    }

    /// Forget a timer (its effect was journaled or its execution ended).
    pub fn remove(&self, due_ms: u64, execution: ExecId, op_id: &str) {
        let mut g = self.inner.heap.lock().expect("timer lock");
        g.1.remove(&(due_ms, execution, op_id.to_string()));
    }

    pub fn len(&self) -> usize {
        self.inner.heap.lock().expect("timer lock").1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every timer due now, removed from the index.
    fn take_due(&self, now_ms: u64) -> (Vec<Fired>, Option<u64>) {
        let mut g = self.inner.heap.lock().expect("timer lock");
        let (heap, records) = &mut *g;
        let mut fired = Vec::new();
        while let Some(Reverse((due, _, _))) = heap.peek() {
            if *due > now_ms {
                break;
            }
            let Reverse(key) = heap.pop().expect("peeked");
            if let Some(record) = records.remove(&key) {
                fired.push(Fired {
                    due_ms: key.0,
                    execution: key.1,
                    op_id: key.2,
                    record,
                });
            }
        }
        // Skip entries that were removed.
        while let Some(Reverse(key)) = heap.peek() {
            if records.contains_key(key) {
                break;
            }
            heap.pop();
        }
        let next = heap.peek().map(|Reverse((due, _, _))| *due);
        (fired, next)
    }

    /// Emit timers as they come due, until `shutdown` fires.
    pub async fn run(self, out: mpsc::UnboundedSender<Fired>, shutdown: Arc<Notify>) {
        loop {
            let now = self.inner.clock.now_ms();
            let (fired, next) = self.take_due(now);
            for f in fired {
                if out.send(f).is_err() {
                    return;
                }
            }
            let sleep = next
                .map(|due| Duration::from_millis(due.saturating_sub(now)))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.inner.changed.notified() => {}
                _ = shutdown.notified() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::TimerKind;

    fn rec() -> TimerRecord {
        TimerRecord {
            tenant: "default".into(),
            kind: TimerKind::Wake,
        }
    }

    #[tokio::test]
    async fn fires_in_due_order_once_and_not_before_due() {
        let clock = Arc::new(ManualClock::new(1_000));
        let timers = Timers::new(clock.clone());
        timers.add(1_500, [2; 16], "1".into(), rec());
        timers.add(1_200, [1; 16], "1".into(), rec());
        timers.add(1_200, [1; 16], "1".into(), rec()); // duplicate: indexed once
        timers.add(1_300, [3; 16], "1".into(), rec());
        timers.remove(1_300, [3; 16], "1");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shutdown = Arc::new(Notify::new());
        let task = tokio::spawn(timers.clone().run(tx, shutdown.clone()));

        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(rx.try_recv().is_err(), "nothing is due yet");
        clock.advance(300);
        let first = rx.recv().await.unwrap();
        assert_eq!((first.due_ms, first.execution), (1_200, [1; 16]));
        clock.advance(300);
        let second = rx.recv().await.unwrap();
        assert_eq!((second.due_ms, second.execution), (1_500, [2; 16]));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            rx.try_recv().is_err(),
            "removed and duplicate timers never fire"
        );
        assert!(timers.is_empty());
        shutdown.notify_one();
        task.await.unwrap();
    }

    #[test]
    fn timers_beyond_the_horizon_are_left_to_a_reload() {
        let timers = Timers::new(Arc::new(ManualClock::new(0)));
        timers.set_horizon(1_000);
        timers.add(1_000, [1; 16], "1".into(), rec());
        timers.add(1_001, [2; 16], "1".into(), rec());
        assert_eq!(timers.len(), 1);
        timers.set_horizon(2_000);
        timers.add(1_001, [2; 16], "1".into(), rec());
        timers.add(1_000, [1; 16], "1".into(), rec()); // a reload covers it again: once
        assert_eq!(timers.len(), 2);
    }
}
