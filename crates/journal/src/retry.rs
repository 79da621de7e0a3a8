//! Step retry policies: whether a failed attempt retries, and after how long.
//!
//! Pure arithmetic; the random draw for jitter is passed in so decisions are testable.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Backoff {
    /// delay(n) = initial * rate^(n-1)
    Exponential(f64),
    /// delay(n) = initial + increment_ms * (n-1)
    Linear(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Jitter {
    None,
    Full,
    Half,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first.
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    pub backoff: Backoff,
    pub jitter: Jitter,
    /// When not empty, only these error types retry.
    pub retry_on: Vec<String>,
    /// These error types never retry.
    pub never_retry_on: Vec<String>,
}

/// The cap on any single retry delay a guest may ask for: a year, the longest an execution
/// is meant to live. Larger values are clamped, not rejected.
pub const MAX_RETRY_DELAY_MS: u64 = 366 * 24 * 3600 * 1000;

/// The cap on attempts a guest may ask for, so a bad policy cannot grow a journal forever.
pub const MAX_ATTEMPTS: u32 = 1_000;

impl Default for RetryPolicy {
    /// The AWS durable-functions default: 6 attempts, 5 s initial delay, 2x backoff, 60 s
    /// max delay, full jitter.
    fn default() -> Self {
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

impl RetryPolicy {
    /// The delay before attempt `failed_attempt + 1`, or `None` when the failure is final.
    /// `unit_random` is a draw from [0, 1) used only for jitter.
    pub fn next_delay_ms(
        &self,
        failed_attempt: u32,
        error_type: &str,
        unit_random: f64,
    ) -> Option<u64> {
        if failed_attempt >= self.max_attempts.min(MAX_ATTEMPTS) {
            return None;
        }
        if !self.retry_on.is_empty() && !self.retry_on.iter().any(|t| t == error_type) {
            return None;
        }
        if self.never_retry_on.iter().any(|t| t == error_type) {
            return None;
        }
        let n = failed_attempt.saturating_sub(1);
        let base = match self.backoff {
            Backoff::Exponential(rate) => {
                let rate = if rate.is_finite() && rate >= 0.0 {
                    rate
                } else {
                    1.0
                };
                self.initial_delay_ms as f64 * rate.powi(n as i32)
            }
            Backoff::Linear(increment) => {
                self.initial_delay_ms as f64 + increment as f64 * f64::from(n)
            }
        };
        let cap = self.max_delay_ms.min(MAX_RETRY_DELAY_MS) as f64;
        let delay = if base.is_finite() { base.min(cap) } else { cap };
        let r = unit_random.clamp(0.0, 1.0);
        let delay = match self.jitter {
            Jitter::None => delay,
            Jitter::Full => delay * r,
            Jitter::Half => delay / 2.0 + delay / 2.0 * r,
        };
        Some(delay.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(max: u32, initial: u64, rate: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max,
            initial_delay_ms: initial,
            max_delay_ms: 60_000,
            backoff: Backoff::Exponential(rate),
            jitter: Jitter::None,
            retry_on: vec![],
            never_retry_on: vec![],
        }
    }

    #[test]
    fn exponential_backoff_without_jitter_matches_conformance_1_14() {
        let p = fixed(5, 2_000, 3.0);
        assert_eq!(p.next_delay_ms(1, "E", 0.5), Some(2_000));
        assert_eq!(p.next_delay_ms(2, "E", 0.5), Some(6_000));
        assert_eq!(p.next_delay_ms(3, "E", 0.5), Some(18_000));
    }

    #[test]
    fn exhaustion_after_max_attempts() {
        let p = fixed(4, 1_000, 1.0);
        assert_eq!(p.next_delay_ms(3, "E", 0.0), Some(1_000));
        assert_eq!(p.next_delay_ms(4, "E", 0.0), None);
        assert_eq!(fixed(1, 1_000, 1.0).next_delay_ms(1, "E", 0.0), None);
    }

    #[test]
    fn default_policy_full_jitter_stays_in_range_conformance_1_13() {
        let p = RetryPolicy::default();
        for i in 0..100 {
            let r = i as f64 / 100.0;
            assert!(p.next_delay_ms(1, "E", r).unwrap() <= 5_000);
            assert!(p.next_delay_ms(2, "E", r).unwrap() <= 10_000);
            assert!(p.next_delay_ms(5, "E", r).unwrap() <= 60_000);
        }
        assert_eq!(p.next_delay_ms(6, "E", 0.3), None);
    }

    #[test]
    fn error_type_filters() {
        let mut p = fixed(3, 10, 1.0);
        p.retry_on = vec!["TransientError".into()];
        assert_eq!(p.next_delay_ms(1, "TransientError", 0.0), Some(10));
        assert_eq!(p.next_delay_ms(1, "Other", 0.0), None);
        let mut q = fixed(3, 10, 1.0);
        q.never_retry_on = vec!["TransientError".into()];
        assert_eq!(q.next_delay_ms(1, "TransientError", 0.0), None);
        assert_eq!(q.next_delay_ms(1, "Other", 0.0), Some(10));
    }

    #[test]
    fn linear_and_caps() {
        let p = RetryPolicy {
            backoff: Backoff::Linear(500),
            max_delay_ms: 1_800,
            ..fixed(10, 1_000, 1.0)
        };
        assert_eq!(p.next_delay_ms(1, "E", 0.0), Some(1_000));
        assert_eq!(p.next_delay_ms(2, "E", 0.0), Some(1_500));
        assert_eq!(p.next_delay_ms(3, "E", 0.0), Some(1_800));
        let huge = fixed(10, u64::MAX, f64::INFINITY);
        assert_eq!(huge.next_delay_ms(2, "E", 0.0), Some(60_000));
    }

    #[test]
    fn half_jitter_is_between_half_and_full() {
        let p = RetryPolicy {
            jitter: Jitter::Half,
            ..fixed(3, 1_000, 1.0)
        };
        assert_eq!(p.next_delay_ms(1, "E", 0.0), Some(500));
        assert_eq!(p.next_delay_ms(1, "E", 1.0), Some(1_000));
    }
}
