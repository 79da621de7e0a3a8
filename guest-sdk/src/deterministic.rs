//! Deterministic values: [`Context::now`], [`Context::random`] and [`Context::uuid`]. Each is
//! an ordinary step with a reserved name (`durable.now`, `durable.random`, `durable.uuid`),
//! at-least-once and never retried, whose body reads the value inside the guest (WASI wall
//! clock, WASI random). The step's checkpoint records the value once per position; every
//! replay returns it from the journal. No host import beyond the step protocol.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Context, Error, RetryStrategy, StepConfig};

/// The reserved step name of [`Context::now`].
pub const NOW_STEP: &str = "durable.now";
/// The reserved step name of [`Context::random`].
pub const RANDOM_STEP: &str = "durable.random";
/// The reserved step name of [`Context::uuid`].
pub const UUID_STEP: &str = "durable.uuid";

/// `random()` records an integer in `[0, 2^53)` and divides it by `2^53`: exact in JSON, in
/// every language, and uniform over the doubles of that grid in `[0, 1)`.
const RANDOM_BITS: u32 = 53;

fn config() -> StepConfig {
    StepConfig::default().retry(RetryStrategy::none())
}

fn random_u64() -> u64 {
    crate::host::random_u64()
}

/// 16 random bytes as an RFC 9562 version 4 UUID, lowercase, hyphenated.
fn uuid_v4(a: u64, b: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Context {
    /// The wall-clock time, recorded once at this position (as whole milliseconds since the
    /// Unix epoch, in a step named `durable.now`): the first run reads the guest's clock,
    /// every replay returns the recorded instant. Use it instead of `SystemTime::now()`,
    /// which would differ on replay.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let started = ctx.now()?;
    /// ctx.wait(None, Duration::from_secs(60));
    /// // The same instant after the replay that follows the wait.
    /// let millis = started.duration_since(UNIX_EPOCH).unwrap().as_millis();
    /// # let _ = millis; Ok(()) }
    /// ```
    pub fn now(&mut self) -> Result<SystemTime, Error> {
        let millis: u64 =
            self.step_with(NOW_STEP, config(), |_| Ok(crate::host::wall_clock_ms()))?;
        Ok(UNIX_EPOCH + Duration::from_millis(millis))
    }

    /// A random number in `[0, 1)`, recorded once at this position (as an integer `n` in
    /// `[0, 2^53)`, in a step named `durable.random`; the value is `n / 2^53`): the first run
    /// draws it from the guest's random source, every replay returns the same number.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// let x = ctx.random()?;
    /// assert!((0.0..1.0).contains(&x));
    /// let dice = 1 + (x * 6.0) as u32; // the same roll on every replay
    /// # let _ = dice; Ok(()) }
    /// ```
    pub fn random(&mut self) -> Result<f64, Error> {
        let n: u64 = self.step_with(RANDOM_STEP, config(), |_| {
            Ok(random_u64() >> (64 - RANDOM_BITS))
        })?;
        Ok(n as f64 / (1u64 << RANDOM_BITS) as f64)
    }

    /// A random UUID (version 4, lowercase hyphenated text), recorded once at this position
    /// in a step named `durable.uuid`: the same UUID on every replay, so it can serve as an
    /// idempotency key or a stable identifier.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// let order_id = ctx.uuid()?;
    /// assert_eq!(order_id.len(), 36);
    /// # Ok(()) }
    /// ```
    pub fn uuid(&mut self) -> Result<String, Error> {
        self.step_with(UUID_STEP, config(), |_| {
            Ok(uuid_v4(random_u64(), random_u64()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::uuid_v4;

    #[test]
    fn uuid_v4_sets_version_and_variant() {
        for (a, b) in [(0, 0), (u64::MAX, u64::MAX), (0x0123_4567_89ab_cdef, 42)] {
            let u = uuid_v4(a, b);
            assert_eq!(u.len(), 36, "{u}");
            let parts: Vec<&str> = u.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'), "{u}");
            assert!("89ab".contains(&parts[3][..1]), "{u}");
            assert!(u
                .chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_eq!(uuid_v4(0, 0), "00000000-0000-4000-8000-000000000000");
    }
}
