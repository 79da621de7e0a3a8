//! Step configuration (semantics and retry strategy) and the [`StepContext`] a step body
//! receives. Owns the mapping of these types onto the WIT `step-options`; does no IO. The
//! attempt loop itself lives in `context.rs`.

use std::time::Duration;

use crate::log::Logger;
use crate::wit;

/// When the host records the start of a step attempt, and so what happens to an attempt
/// that was cut short by a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepSemantics {
    /// The default. The start is recorded without waiting for disk; after a crash
    /// mid-attempt the attempt runs again, so the body may run more than once per retry.
    /// Make the body idempotent (e.g. pass [`StepContext::operation_id`] as an idempotency
    /// key).
    #[default]
    AtLeastOncePerRetry,
    /// The start is on disk before the body runs; after a crash mid-attempt the attempt
    /// counts as failed with `StepInterrupted` and the retry policy decides. The body runs at
    /// most once per retry.
    AtMostOncePerRetry,
}

/// Randomisation applied to a computed retry delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Exactly the computed delay.
    None,
    /// Uniform in `[0, delay]` (the default, as in AWS).
    #[default]
    Full,
    /// Uniform in `[delay/2, delay]`.
    Half,
}

/// How the host retries a failed step.
///
/// Attempt `n` (1-based) that fails is followed, if the policy allows another attempt, by a
/// delay of `initial * rate^(n-1)` (exponential) or `initial + increment * (n-1)` (linear),
/// capped at `max_delay`, then jittered. Between attempts the execution is suspended, not
/// sleeping in memory. An error type listed in [`retry_on`](Self::retry_on) (when that list
/// is not empty) retries; one listed in [`never_retry_on`](Self::never_retry_on) never does.
///
/// ```
/// use std::time::Duration;
/// use durable_sdk::{Jitter, RetryStrategy};
///
/// let policy = RetryStrategy::exponential(5, Duration::from_secs(1), 2.0, Duration::from_secs(30))
///     .jitter(Jitter::None)
///     .retry_on(["TransientError"]);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetryStrategy {
    /// `None`: the host's default policy.
    policy: Option<Policy>,
}

#[derive(Debug, Clone, PartialEq)]
struct Policy {
    max_attempts: u32,
    initial_delay_ms: u64,
    max_delay_ms: u64,
    backoff: Backoff,
    jitter: Jitter,
    retry_on: Vec<String>,
    never_retry_on: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backoff {
    Exponential(f64),
    Linear(u64),
}

impl Policy {
    /// The host's default policy, spelled out: 6 attempts, 5 s initial delay, 2x backoff,
    /// 60 s max delay, full jitter (as in AWS durable functions).
    fn host_default() -> Self {
        Self {
            max_attempts: 6,
            initial_delay_ms: 5_000,
            max_delay_ms: 60_000,
            backoff: Backoff::Exponential(2.0),
            jitter: Jitter::Full,
            retry_on: Vec::new(),
            never_retry_on: Vec::new(),
        }
    }
}

impl RetryStrategy {
    /// No retry: one attempt; the first failure is final.
    pub fn none() -> Self {
        Self::from_policy(Policy {
            max_attempts: 1,
            initial_delay_ms: 0,
            max_delay_ms: 0,
            backoff: Backoff::Exponential(1.0),
            jitter: Jitter::None,
            retry_on: Vec::new(),
            never_retry_on: Vec::new(),
        })
    }

    /// Exponential backoff: up to `max_attempts` attempts in total (including the first);
    /// the delay after attempt `n` is `initial * rate^(n-1)`, capped at `max_delay`. Jitter
    /// defaults to [`Jitter::Full`].
    pub fn exponential(
        max_attempts: u32,
        initial: Duration,
        rate: f64,
        max_delay: Duration,
    ) -> Self {
        Self::from_policy(Policy {
            max_attempts,
            initial_delay_ms: millis(initial),
            max_delay_ms: millis(max_delay),
            backoff: Backoff::Exponential(rate),
            jitter: Jitter::Full,
            retry_on: Vec::new(),
            never_retry_on: Vec::new(),
        })
    }

    /// Linear backoff: up to `max_attempts` attempts in total; the delay after attempt `n`
    /// is `initial + increment * (n-1)`, capped at `max_delay`. Jitter defaults to
    /// [`Jitter::Full`].
    pub fn linear(
        max_attempts: u32,
        initial: Duration,
        increment: Duration,
        max_delay: Duration,
    ) -> Self {
        Self::from_policy(Policy {
            max_attempts,
            initial_delay_ms: millis(initial),
            max_delay_ms: millis(max_delay),
            backoff: Backoff::Linear(millis(increment)),
            jitter: Jitter::Full,
            retry_on: Vec::new(),
            never_retry_on: Vec::new(),
        })
    }

    /// The same delay between every attempt, without jitter: up to `max_attempts` attempts.
    pub fn fixed(max_attempts: u32, delay: Duration) -> Self {
        Self::exponential(max_attempts, delay, 1.0, delay).jitter(Jitter::None)
    }

    /// Sets the jitter. On [`RetryStrategy::default`] this spells out the host's default
    /// policy (6 attempts, 5 s, 2x, 60 s) with this jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy_mut().jitter = jitter;
        self
    }

    /// Retry only errors of these types (an empty list, the default, retries every type).
    pub fn retry_on<I, S>(mut self, error_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.policy_mut().retry_on = error_types.into_iter().map(Into::into).collect();
        self
    }

    /// Never retry errors of these types (checked after [`retry_on`](Self::retry_on)).
    pub fn never_retry_on<I, S>(mut self, error_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.policy_mut().never_retry_on = error_types.into_iter().map(Into::into).collect();
        self
    }

    fn from_policy(policy: Policy) -> Self {
        Self {
            policy: Some(policy),
        }
    }

    fn policy_mut(&mut self) -> &mut Policy {
        self.policy.get_or_insert_with(Policy::host_default)
    }

    fn to_wit(&self) -> Option<wit::RetryPolicy> {
        self.policy.as_ref().map(|p| wit::RetryPolicy {
            max_attempts: p.max_attempts,
            initial_delay_ms: p.initial_delay_ms,
            max_delay_ms: p.max_delay_ms,
            backoff: match p.backoff {
                Backoff::Exponential(rate) => wit::Backoff::Exponential(rate),
                Backoff::Linear(increment) => wit::Backoff::Linear(increment),
            },
            jitter: match p.jitter {
                Jitter::None => wit::Jitter::None,
                Jitter::Full => wit::Jitter::Full,
                Jitter::Half => wit::Jitter::Half,
            },
            retry_on: p.retry_on.clone(),
            never_retry_on: p.never_retry_on.clone(),
        })
    }
}

/// How a step runs: its [`StepSemantics`] and its [`RetryStrategy`].
///
/// ```
/// use durable_sdk::{RetryStrategy, StepConfig};
///
/// let config = StepConfig::default().at_most_once().retry(RetryStrategy::none());
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepConfig {
    /// At-least-once (the default) or at-most-once per retry.
    pub semantics: StepSemantics,
    /// The retry policy; the host's default when not set.
    pub retry: RetryStrategy,
}

impl StepConfig {
    /// The default: at-least-once per retry, the host's default retry policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the semantics.
    pub fn semantics(mut self, semantics: StepSemantics) -> Self {
        self.semantics = semantics;
        self
    }

    /// Shorthand for `.semantics(StepSemantics::AtMostOncePerRetry)`.
    pub fn at_most_once(self) -> Self {
        self.semantics(StepSemantics::AtMostOncePerRetry)
    }

    /// Sets the retry strategy.
    pub fn retry(mut self, retry: RetryStrategy) -> Self {
        self.retry = retry;
        self
    }

    pub(crate) fn to_wit(&self) -> wit::StepOptions {
        wit::StepOptions {
            semantics: match self.semantics {
                StepSemantics::AtLeastOncePerRetry => wit::StepSemantics::AtLeastOncePerRetry,
                StepSemantics::AtMostOncePerRetry => wit::StepSemantics::AtMostOncePerRetry,
            },
            retry: self.retry.to_wit(),
        }
    }
}

/// What a step body receives: the attempt number, the step's operation id and a logger.
///
/// A step body cannot reach the [`Context`](crate::Context) (it is borrowed for the
/// duration of the step), so durable operations cannot be nested inside a step by mistake;
/// use [`Context::run_in_child_context`](crate::Context::run_in_child_context) to group
/// operations.
#[derive(Debug)]
pub struct StepContext {
    pub(crate) operation_id: String,
    pub(crate) attempt: u32,
}

impl StepContext {
    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The step's operation id: stable across attempts and replays of this execution (but
    /// not unique across executions), e.g. part of an idempotency key.
    pub fn operation_id(&self) -> &str {
        &self.operation_id
    }

    /// A replay-aware logger.
    pub fn logger(&self) -> Logger {
        Logger::new()
    }
}

/// Whole milliseconds in `d`, rounding a sub-millisecond remainder up (so a non-zero
/// duration never becomes zero) and saturating at `u64::MAX`.
pub(crate) fn millis(d: Duration) -> u64 {
    let rounded = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_rounds_up_sub_millisecond_remainders() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn default_strategy_is_the_host_default() {
        assert!(RetryStrategy::default().to_wit().is_none());
    }

    #[test]
    fn modifiers_on_the_default_spell_out_the_host_default() {
        let p = RetryStrategy::default()
            .retry_on(["TransientError"])
            .to_wit()
            .unwrap();
        assert_eq!(p.max_attempts, 6);
        assert_eq!(p.initial_delay_ms, 5_000);
        assert_eq!(p.retry_on, vec!["TransientError".to_string()]);
    }

    #[test]
    fn none_is_one_attempt() {
        assert_eq!(RetryStrategy::none().to_wit().unwrap().max_attempts, 1);
    }
}
