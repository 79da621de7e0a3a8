//! Invocation rates: one token bucket per tenant (`invocations_per_second` refills it
//! continuously up to `invocation_burst`; each invocation takes a token). A tenant without a
//! rate has no bucket and costs no lock.
//!
//! Buckets live in memory only: after a restart every tenant starts with a full bucket,
//! which lets it make at most one burst more than its rate in the second after a restart. A
//! bucket follows the tenant's quotas as they are at each request, so a changed rate or burst
//! applies from the next invocation (a smaller burst also drops the tokens above it).
//!
//! Time is the host's `Clock` in milliseconds, passed in, so that the arithmetic is tested
//! without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;

/// Refused: no token until `retry_after_secs` have passed (whole seconds, at least 1).
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
    pub message: String,
}

/// Slack for floating-point rounding in token counts and waits.
const EPSILON: f64 = 1e-9;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// Every tenant's bucket.
#[derive(Default)]
pub struct Buckets {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Buckets {
    /// Take a token from `tenant`'s bucket at `now_ms`, under a rate of `rate` invocations per
    /// second and a bucket of `burst` tokens (both the tenant's quotas in force; no rate: no
    /// limit).
    pub fn take(
        &self,
        tenant: &str,
        rate: Option<f64>,
        burst: Option<u64>,
        now_ms: u64,
    ) -> Result<(), Limited> {
        let Some(rate) = rate.filter(|r| r.is_finite() && *r > 0.0) else {
            return Ok(());
        };
        let burst = burst
            .unwrap_or_else(|| super::quota::default_burst(rate))
            .max(1) as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.get(tenant).copied().unwrap_or(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        // A clock that steps back refills nothing (and does not take tokens away).
        let elapsed = now_ms.saturating_sub(b.at_ms) as f64 / 1000.0;
        let tokens = (b.tokens + elapsed * rate).min(burst);
        // The bucket changes only when a token is taken, so refusals cost the tenant nothing
        // and the refill is computed from one point, without rounding piling up.
        if tokens >= 1.0 - EPSILON {
            let taken = Bucket {
                tokens: (tokens - 1.0).max(0.0),
                at_ms: b.at_ms.max(now_ms),
            };
            match buckets.get_mut(tenant) {
                Some(b) => *b = taken,
                None => {
                    buckets.insert(tenant.to_string(), taken);
                }
            }
            return Ok(());
        }
        let wait = (1.0 - tokens) / rate;
        let retry_after_secs = ((wait - EPSILON).ceil() as u64).max(1);
        Err(Limited {
            retry_after_secs,
            message: format!(
                "invocations_per_second: the tenant may invoke {rate} times a second (a burst \
                 of {burst}), and it has used them all; try again in {retry_after_secs} s"
            ),
        })
    }

    /// Forget a deleted tenant's bucket.
    pub fn forget(&self, tenant: &str) {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ms since the start, expected: Ok, or the Retry-After seconds), for a rate of 2 a
    /// second and a burst of 3.
    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let steps: &[(u64, Result<(), u64>)] = &[
            (0, Ok(())),
            (0, Ok(())),
            (0, Ok(())),
            // Empty: the next token is 500 ms away, said as a whole second.
            (0, Err(1)),
            (499, Err(1)),
            (500, Ok(())),
            (500, Err(1)),
            // Idle for long: full again, never more than the burst.
            (60_000, Ok(())),
            (60_000, Ok(())),
            (60_000, Ok(())),
            (60_000, Err(1)),
            // A clock that steps back refills nothing.
            (59_000, Err(1)),
        ];
        let b = Buckets::default();
        for (i, (at, expected)) in steps.iter().enumerate() {
            let got = b
                .take("t", Some(2.0), Some(3), *at)
                .map_err(|l| l.retry_after_secs);
            assert_eq!(got, *expected, "step {i} at {at} ms");
        }
        // Another tenant has its own bucket.
        assert_eq!(b.take("u", Some(2.0), Some(3), 0), Ok(()));
    }

    #[test]
    fn retry_after_is_whole_seconds_to_the_next_token() {
        let b = Buckets::default();
        assert_eq!(b.take("t", Some(0.2), Some(1), 0), Ok(()));
        let e = b.take("t", Some(0.2), Some(1), 1_000).unwrap_err();
        // 0.2 of a token refilled in 1 s; 0.8 more takes 4 s.
        assert_eq!(e.retry_after_secs, 4);
        assert!(
            e.message.starts_with("invocations_per_second: "),
            "{}",
            e.message
        );
        assert!(e.message.contains("0.2 times a second"), "{}", e.message);
    }

    #[test]
    fn no_rate_is_no_limit_and_a_smaller_burst_drops_tokens() {
        let b = Buckets::default();
        for _ in 0..10_000 {
            assert_eq!(b.take("t", None, Some(1), 0), Ok(()));
        }
        for _ in 0..10 {
            assert_eq!(b.take("u", Some(1.0), Some(10), 0), Ok(()));
        }
        // Refilled to 10 after 10 s; the burst is now 2.
        assert_eq!(b.take("u", Some(1.0), Some(2), 10_000), Ok(()));
        assert_eq!(b.take("u", Some(1.0), Some(2), 10_000), Ok(()));
        assert!(b.take("u", Some(1.0), Some(2), 10_000).is_err());
    }
}
