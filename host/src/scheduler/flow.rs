//! Flow control per function (DESIGN 10): what the run queue needs to know of each queued
//! execution (its `Class`: function, concurrency-key value, whether it has started), the
//! limits a function sets (`FlowLimits`: `max_concurrency`, per key value when the function
//! has a `concurrency_key`; a start `throttle`), the throttle's token bucket, and the
//! per-function counters behind the queue metrics.
//!
//! A tenant's queued work is split into lanes, one per (function, key value): each lane is
//! served in order, and a lane at its function's `max_concurrency` (or whose next new
//! execution has no throttle token) is skipped, as a tenant at its share is, so that it
//! never holds a slot or blocks another lane, function or tenant. Within a lane, executions
//! that have started (resumes) and new ones wait apart and the older of the two heads goes
//! first: the throttle delays starts only, never a resume.
//!
//! Pure: time comes in as an argument (`Instant`), so the rules are tested without sleeping.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::{Duration, Instant};

use super::ExecKey;

/// What the run queue knows of an execution: its function, the value of its function's
/// `concurrency_key` in its input, and whether it has yet to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    pub function: Arc<str>,
    /// The concurrency-key value (canonical JSON text of what the pointer found); `None`
    /// when the function has no `concurrency_key`, or the input has nothing there (those
    /// executions share one lane).
    pub key: Option<Arc<str>>,
    /// Its first activation has not begun: the throttle applies to it.
    pub fresh: bool,
}

impl Class {
    /// The class of an execution the scheduler cannot classify (none was given and there
    /// is no classifier, or its record is gone): no function, no limits.
    pub fn unknown() -> Class {
        Class {
            function: "".into(),
            key: None,
            fresh: false,
        }
    }
}

/// A start rate: `per_second` on average, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throttle {
    pub per_second: f64,
    pub burst: u32,
}

/// What a function asks of the run queue. The default limits nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowLimits {
    /// Activations at once, per lane (per key value with a `concurrency_key`).
    pub max_concurrency: Option<usize>,
    /// The pointer executions are keyed by; a change re-classifies them at their next wake.
    pub concurrency_key: Option<Arc<str>>,
    pub throttle: Option<Throttle>,
}

/// A token bucket: `burst` tokens at most, refilled at `per_second`. Starts full.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Slack for floating-point rounding in token counts.
const EPSILON: f64 = 1e-9;

impl Bucket {
    pub(super) fn full(t: Throttle, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(t.burst.max(1)),
            at: now,
        }
    }

    /// Tokens available at `now`.
    pub(super) fn tokens(&self, t: Throttle, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * t.per_second).min(f64::from(t.burst.max(1)))
    }

    /// Take a token at `now` if there is one.
    pub(super) fn take(&mut self, t: Throttle, now: Instant) -> bool {
        let tokens = self.tokens(t, now);
        if tokens < 1.0 - EPSILON {
            return false;
        }
        self.tokens = (tokens - 1.0).max(0.0);
        self.at = self.at.max(now);
        true
    }

    /// When the next token is there (`now` if one is).
    pub(super) fn next_token(&self, t: Throttle, now: Instant) -> Instant {
        let missing = 1.0 - self.tokens(t, now);
        if missing <= EPSILON {
            return now;
        }
        now + Duration::from_secs_f64(missing / t.per_second)
    }
}

/// One function's flow state in one tenant: its limits, its throttle, its counters.
#[derive(Debug, Default)]
pub(super) struct Function {
    pub(super) limits: FlowLimits,
    /// Bumped when `concurrency_key` changes: classes of an older generation are stale.
    pub(super) generation: u64,
    pub(super) bucket: Option<Bucket>,
    /// Its executions in the run queue (new and resumed).
    pub(super) queued: usize,
    /// Of those, new ones (not yet started).
    pub(super) fresh_queued: usize,
    /// Invocations admitted by `max_queued` and not yet queued (`Reserved`).
    pub(super) reserved: usize,
    /// New executions that had to wait for a throttle token.
    pub(super) throttled_total: u64,
    /// Invocations refused with `backlog_full`.
    pub(super) refused_total: u64,
    /// From queued to taken, per activation (`durable_queue_wait_seconds`).
    pub(super) queue_wait: crate::metrics::Histogram,
}

impl Function {
    /// Take a start token at `now` (always, without a throttle).
    fn take_token(&mut self, now: Instant) -> bool {
        let Some(t) = self.limits.throttle else {
            return true;
        };
        self.bucket
            .get_or_insert_with(|| Bucket::full(t, now))
            .take(t, now)
    }

    /// When a token is there for the next start.
    fn next_token(&self, now: Instant) -> Instant {
        match (self.limits.throttle, &self.bucket) {
            (Some(t), Some(b)) => b.next_token(t, now),
            _ => now,
        }
    }

    /// Tokens at `now` (`f64::INFINITY` without a throttle).
    pub(super) fn tokens(&self, now: Instant) -> f64 {
        match (self.limits.throttle, &self.bucket) {
            (Some(t), Some(b)) => b.tokens(t, now),
            (Some(t), None) => f64::from(t.burst.max(1)),
            (None, _) => f64::INFINITY,
        }
    }
}

/// Every function's flow state of one tenant, by name.
pub(super) type Functions = HashMap<Arc<str>, Function>;

/// A lane: one function's (and key value's) queued executions and its activations.
pub(super) type LaneId = (Arc<str>, Option<Arc<str>>);

/// A queued execution, stamped with its place in the whole queue and when it was queued.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) key: ExecKey,
    seq: u64,
    pub(super) at: Instant,
}

#[derive(Debug, Default)]
pub(super) struct Lane {
    /// New executions, oldest first.
    pub(super) fresh: VecDeque<Queued>,
    /// Executions that have started, oldest first.
    pub(super) resumed: VecDeque<Queued>,
    /// Activations in progress (what `max_concurrency` bounds).
    pub(super) resident: usize,
}

impl Lane {
    fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.resumed.is_empty()
    }

    /// When its oldest execution was queued.
    pub(super) fn oldest(&self) -> Option<Instant> {
        match (self.fresh.front(), self.resumed.front()) {
            (Some(a), Some(b)) => Some(a.at.min(b.at)),
            (a, b) => a.or(b).map(|q| q.at),
        }
    }
}

/// One tenant's queued work, in lanes served round robin, and its activations.
#[derive(Debug, Default)]
pub(super) struct TenantQueue {
    pub(super) lanes: HashMap<LaneId, Lane>,
    /// Lanes with queued work, each once, in round-robin order.
    ring: VecDeque<LaneId>,
    /// Its activations in progress (the count a `max_concurrent_activations` share limits).
    pub(super) resident: usize,
}

impl TenantQueue {
    pub(super) fn has_work(&self) -> bool {
        !self.ring.is_empty()
    }

    /// Queue `key` in its lane (behind the lane's others of its kind).
    pub(super) fn push(&mut self, lane: LaneId, fresh: bool, q: (ExecKey, u64, Instant)) {
        let (key, seq, at) = q;
        let l = self.lanes.entry(lane.clone()).or_default();
        if l.is_empty() {
            self.ring.push_back(lane);
        }
        let q = Queued { key, seq, at };
        if fresh {
            l.fresh.push_back(q)
        } else {
            l.resumed.push_back(q)
        }
    }

    /// Take the next execution this tenant may start at `now`: from the first lane in the
    /// ring below its function's `max_concurrency`, the older of its next resumed execution
    /// and (with a throttle token, which it takes) its next new one. The lane is charged and
    /// goes to the back if it has more. `None` if every lane is at its limit; then
    /// `wake_at` is lowered to when a throttle token would let a lane go.
    pub(super) fn take(
        &mut self,
        functions: &mut Functions,
        now: Instant,
        wake_at: &mut Option<Instant>,
    ) -> Option<(LaneId, Queued, bool)> {
        for _ in 0..self.ring.len() {
            let id = self.ring.pop_front()?;
            let lane = self.lanes.get_mut(&id).expect("a lane in the ring exists");
            let f = functions.entry(id.0.clone()).or_default();
            if f.limits
                .max_concurrency
                .is_some_and(|cap| lane.resident >= cap)
            {
                self.ring.push_back(id);
                continue;
            }
            let fresh_first = match (lane.fresh.front(), lane.resumed.front()) {
                (Some(a), Some(b)) => a.seq < b.seq,
                (Some(_), None) => true,
                _ => false,
            };
            let fresh = if fresh_first && !f.take_token(now) {
                let at = f.next_token(now);
                *wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                if lane.resumed.is_empty() {
                    self.ring.push_back(id);
                    continue;
                }
                false
            } else {
                fresh_first
            };
            let q = if fresh {
                f.fresh_queued -= 1;
                lane.fresh.pop_front()
            } else {
                lane.resumed.pop_front()
            }
            .expect("the chosen side has work");
            f.queued -= 1;
            lane.resident += 1;
            self.resident += 1;
            if !lane.is_empty() {
                self.ring.push_back(id.clone());
            }
            return Some((id, q, fresh));
        }
        None
    }

    /// An activation charged to `lane` ended; the lane is forgotten once it has neither
    /// work nor residents.
    pub(super) fn left(&mut self, lane: &LaneId) {
        self.resident -= 1;
        if let Some(l) = self.lanes.get_mut(lane) {
            l.resident -= 1;
            if l.resident == 0 && l.is_empty() {
                self.lanes.remove(lane);
            }
        }
    }
}

/// The queue metrics of one function (`Scheduler::flow_stats`).
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionStats {
    pub tenant: Arc<str>,
    pub function: Arc<str>,
    /// Its executions in the run queue: waiting for a slot, their concurrency limit or a
    /// throttle token (what `max_queued` bounds).
    pub queued: usize,
    /// How long the oldest of them has waited.
    pub oldest: Duration,
    pub throttled_total: u64,
    pub refused_total: u64,
    pub queue_wait: crate::metrics::HistogramSnapshot,
}

/// Refused by `max_queued`: the function has `queued` executions waiting.
#[derive(Debug, PartialEq, Eq)]
pub struct BacklogFull {
    pub queued: usize,
    pub max_queued: u32,
    pub retry_after_secs: u64,
}

impl std::fmt::Display for BacklogFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "max_queued: the function has {} executions waiting to run, its limit is {}; \
             nothing was written",
            self.queued, self.max_queued
        )
    }
}

/// How long a refused invoker should wait: the time one queued execution takes to start
/// under the throttle, else a second (whole seconds, at least 1).
pub(super) fn retry_after(limits: &FlowLimits) -> u64 {
    limits
        .throttle
        .map_or(1, |t| ((1.0 / t.per_second - EPSILON).ceil() as u64).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_second: f64, burst: u32) -> Throttle {
        Throttle { per_second, burst }
    }

    /// (rate, burst, take attempts at these ms, which succeed)
    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        type Case = (f64, u32, &'static [u64], &'static [bool]);
        let cases: &[Case] = &[
            (
                1.0,
                1,
                &[0, 0, 500, 999, 1000, 1500, 2000],
                &[true, false, false, false, true, false, true],
            ),
            (
                2.0,
                3,
                &[0, 0, 0, 0, 499, 500, 1000, 1000],
                &[true, true, true, false, false, true, true, false],
            ),
            (
                10.0,
                1,
                &[0, 50, 100, 150, 200],
                &[true, false, true, false, true],
            ),
            // Idle time refills no more than the burst.
            (
                1.0,
                2,
                &[0, 0, 10_000, 10_000, 10_000],
                &[true, true, true, true, false],
            ),
            (0.5, 1, &[0, 1000, 1999, 2000], &[true, false, false, true]),
        ];
        let t0 = Instant::now();
        for (rate, burst, at, expected) in cases {
            let t = throttle(*rate, *burst);
            let mut b = Bucket::full(t, t0);
            let got: Vec<bool> = at
                .iter()
                .map(|ms| b.take(t, t0 + Duration::from_millis(*ms)))
                .collect();
            assert_eq!(&got, expected, "rate {rate} burst {burst} at {at:?}");
        }
    }

    #[test]
    fn the_next_token_is_when_the_bucket_has_one() {
        let t0 = Instant::now();
        let t = throttle(4.0, 1);
        let mut b = Bucket::full(t, t0);
        assert_eq!(b.next_token(t, t0), t0);
        assert!(b.take(t, t0));
        let next = b.next_token(t, t0);
        assert_eq!(next.duration_since(t0).as_millis(), 250);
        assert!(b.take(t, next));
    }

    #[test]
    fn retry_after_is_one_start_under_the_throttle() {
        let cases = [
            (None, 1),
            (Some(throttle(10.0, 1)), 1),
            (Some(throttle(0.25, 1)), 4),
            (Some(throttle(0.4, 2)), 3),
        ];
        for (t, secs) in cases {
            let l = FlowLimits {
                throttle: t,
                ..Default::default()
            };
            assert_eq!(retry_after(&l), secs, "{t:?}");
        }
    }
}
