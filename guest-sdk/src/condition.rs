//! [`WaitStrategy`]: when a `wait_for_condition` checks again, and when it gives up. The
//! strategy runs in the guest after each check; the host only journals what it decided
//! (the new state and the next delay). The check loop itself lives in `context.rs`.

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::step::{millis, Jitter};

/// The error type a `wait_for_condition` fails with when its strategy runs out of attempts.
pub const MAX_ATTEMPTS_EXCEEDED: &str = "WaitForCondition.MaxAttemptsExceeded";

/// How a [`Context::wait_for_condition`](crate::Context::wait_for_condition) polls: when
/// the state is done, how long to wait between checks, and how many checks to run.
///
/// After check `n` (1-based) whose state is not done, the next check follows a delay of
/// `initial_delay * backoff_rate^(n-1)`, capped at `max_delay`, then jittered. The
/// execution is suspended (the guest unloaded) meanwhile. When check `max_attempts` is not
/// done either, the operation fails with `WaitForCondition.MaxAttemptsExceeded`. The
/// defaults are AWS's: 60 attempts, 5 s initial delay, 1.5x backoff, 300 s max delay, full
/// jitter.
///
/// ```
/// use std::time::Duration;
/// use durable_sdk::WaitStrategy;
///
/// let strategy = WaitStrategy::until(|status: &String| status == "READY")
///     .fixed_delay(Duration::from_secs(2))
///     .max_attempts(10);
/// # let _ = strategy;
/// ```
pub struct WaitStrategy<S> {
    done: Box<dyn Fn(&S) -> bool>,
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
    backoff_rate: f64,
    jitter: Jitter,
}

impl<S> fmt::Debug for WaitStrategy<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitStrategy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_delay", &self.initial_delay)
            .field("max_delay", &self.max_delay)
            .field("backoff_rate", &self.backoff_rate)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

/// What the strategy decided after a check.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Stop,
    Again(u64),
    GiveUp(Error),
}

impl<S> WaitStrategy<S> {
    /// Poll until `done` says the state is done, with the default delays.
    pub fn until(done: impl Fn(&S) -> bool + 'static) -> Self {
        Self {
            done: Box::new(done),
            max_attempts: 60,
            initial_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
            backoff_rate: 1.5,
            jitter: Jitter::Full,
        }
    }

    /// Checks to run in all, including the first (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The delay after the first check that is not done.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// The longest delay between checks (before jitter).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Each delay is this many times the one before (1.0: constant).
    pub fn backoff_rate(mut self, rate: f64) -> Self {
        self.backoff_rate = rate;
        self
    }

    /// Randomisation of each delay.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The same delay `d` between every two checks: no backoff, no jitter.
    pub fn fixed_delay(self, d: Duration) -> Self {
        self.initial_delay(d)
            .max_delay(d)
            .backoff_rate(1.0)
            .jitter(Jitter::None)
    }

    /// The decision after check `attempt` returned `state`; `unit_random` in [0, 1) draws
    /// the jitter.
    pub(crate) fn decide(&self, state: &S, attempt: u32, unit_random: f64) -> Decision {
        if (self.done)(state) {
            return Decision::Stop;
        }
        if attempt >= self.max_attempts {
            return Decision::GiveUp(Error::new(
                MAX_ATTEMPTS_EXCEEDED,
                format!(
                    "the condition was not met after {attempt} checks (max_attempts = {})",
                    self.max_attempts
                ),
            ));
        }
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = millis(self.initial_delay) as f64 * self.backoff_rate.max(0.0).powi(exponent);
        let capped = base.min(millis(self.max_delay) as f64);
        let jittered = match self.jitter {
            Jitter::None => capped,
            Jitter::Full => capped * unit_random,
            Jitter::Half => capped / 2.0 + capped / 2.0 * unit_random,
        };
        // `as` saturates: NaN is 0, a huge delay is u64::MAX (the host refuses it).
        Decision::Again(jittered.round() as u64)
    }
}

/// A number in [0, 1) from the host's random source (WASI `random`; the test runner's
/// seeded generator). The delay drawn is journaled, so a replay never draws it again.
pub(crate) fn unit_random() -> f64 {
    (crate::host::random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_knobs() {
        let at = |s: WaitStrategy<u32>, state, n, r| s.decide(&state, n, r);
        let until3 = || WaitStrategy::until(|s: &u32| *s >= 3);
        let table: Vec<(&str, Decision, Decision)> = vec![
            ("done stops", at(until3(), 3, 1, 0.5), Decision::Stop),
            (
                "fixed delay",
                at(until3().fixed_delay(Duration::from_secs(2)), 1, 4, 0.9),
                Decision::Again(2000),
            ),
            (
                "backoff",
                at(
                    until3()
                        .initial_delay(Duration::from_secs(1))
                        .backoff_rate(2.0)
                        .jitter(Jitter::None),
                    0,
                    3,
                    0.0,
                ),
                Decision::Again(4000),
            ),
            (
                "max delay caps",
                at(
                    until3()
                        .initial_delay(Duration::from_secs(10))
                        .backoff_rate(10.0)
                        .max_delay(Duration::from_secs(30))
                        .jitter(Jitter::None),
                    0,
                    5,
                    0.0,
                ),
                Decision::Again(30_000),
            ),
            (
                "full jitter",
                at(until3().initial_delay(Duration::from_secs(1)), 0, 1, 0.25),
                Decision::Again(250),
            ),
            (
                "half jitter",
                at(
                    until3()
                        .initial_delay(Duration::from_secs(1))
                        .jitter(Jitter::Half),
                    0,
                    1,
                    0.5,
                ),
                Decision::Again(750),
            ),
        ];
        for (name, got, want) in table {
            assert_eq!(got, want, "{name}");
        }
        match at(until3().max_attempts(3), 1, 3, 0.0) {
            Decision::GiveUp(e) => assert_eq!(e.error_type, MAX_ATTEMPTS_EXCEEDED),
            other => panic!("{other:?}"),
        }
        let r = unit_random();
        assert!((0.0..1.0).contains(&r));
    }
}
