//! Per-function settings: what a function may set, the bounds, and how its own values
//! combine with the server's defaults.
//!
//! Invariant: a stored `FunctionSettings` was validated here; `resolve` never fails.

use std::time::Duration;

use serde::Deserialize;

use crate::db::{FunctionSettings, RedrivePolicy};

/// The longest execution timeout: 366 days, as AWS durable functions allow one year.
pub const MAX_EXECUTION_TIMEOUT_SECS: u64 = 366 * 24 * 3600;
/// The longest activation: one hour (waits, not long activations, are how functions pause).
pub const MAX_ACTIVATION_TIMEOUT_SECS: u64 = 3600;
/// The longest retention of a finished execution: 366 days.
pub const MAX_RETENTION_SECS: u64 = 366 * 24 * 3600;
/// The most automatic redrives a `redrive_policy` may ask for: each replays the whole
/// journal, and a function that fails this often in a row needs a person, not a retry.
pub const MAX_REDRIVES: u32 = 100;
/// The longest delay before an automatic redrive: one day (a longer outage is better
/// recovered by a bulk redrive once it is over).
pub const MAX_REDRIVE_DELAY_SECS: u64 = 24 * 3600;

/// The server-wide defaults, which also bound what a function may ask for (memory).
#[derive(Clone, Debug)]
pub struct Defaults {
    /// Linear memory one instance may use; functions may set less, never more (the pooling
    /// allocator's slots are sized for it).
    pub memory_limit_bytes: usize,
    pub activation_timeout: Duration,
    pub execution_timeout: Duration,
    pub retention: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 128 * 1024 * 1024,
            activation_timeout: Duration::from_secs(300),
            execution_timeout: Duration::from_secs(MAX_EXECUTION_TIMEOUT_SECS),
            retention: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// What one function runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub memory_limit_bytes: usize,
    pub activation_timeout: Duration,
    pub execution_timeout: Duration,
    pub retention: Duration,
    /// Automatic redrive of failed executions (no server default: off).
    pub redrive_policy: Option<RedrivePolicy>,
}

pub fn resolve(s: &FunctionSettings, d: &Defaults) -> Limits {
    Limits {
        memory_limit_bytes: s
            .memory_limit_mb
            .map_or(d.memory_limit_bytes, |mb| (mb as usize) * 1024 * 1024),
        activation_timeout: s
            .activation_timeout_secs
            .map_or(d.activation_timeout, Duration::from_secs),
        execution_timeout: s
            .execution_timeout_secs
            .map_or(d.execution_timeout, Duration::from_secs),
        retention: s.retention_secs.map_or(d.retention, Duration::from_secs),
        redrive_policy: s.redrive_policy,
    }
}

/// `redrive_policy` as the API takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedrivePolicyPatch {
    /// Redrives of one execution at most (1-100), counting every redrive it had.
    #[schema(minimum = 1, maximum = 100)]
    pub max_redrives: u32,
    /// Seconds after the failure (0-86400).
    #[schema(minimum = 0, maximum = 86400)]
    pub delay_secs: u64,
}

/// A change to settings: an absent field stays as it is, `null` returns it to the default.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    #[serde(default, deserialize_with = "present")]
    pub memory_limit_mb: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub activation_timeout_secs: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub execution_timeout_secs: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    pub retention_secs: Option<Option<u64>>,
    /// Redrive a failed execution automatically, `delay_secs` after it failed, up to
    /// `max_redrives` times; only its last failure is notified as `execution.failed`.
    /// `null`: never (the default).
    #[serde(default, deserialize_with = "present_policy")]
    pub redrive_policy: Option<Option<RedrivePolicyPatch>>,
}

fn present_policy<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<RedrivePolicyPatch>>, D::Error> {
    Option::<RedrivePolicyPatch>::deserialize(d).map(Some)
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.memory_limit_mb.is_none()
            && self.activation_timeout_secs.is_none()
            && self.execution_timeout_secs.is_none()
            && self.retention_secs.is_none()
            && self.redrive_policy.is_none()
    }

    /// Check every value against its bounds; the message names the field and the range.
    pub fn validate(&self, d: &Defaults) -> Result<(), String> {
        let max_mb = (d.memory_limit_bytes / (1024 * 1024)) as u64;
        let checks = [
            ("memory_limit_mb", self.memory_limit_mb, 1, max_mb),
            (
                "activation_timeout_secs",
                self.activation_timeout_secs,
                1,
                MAX_ACTIVATION_TIMEOUT_SECS,
            ),
            (
                "execution_timeout_secs",
                self.execution_timeout_secs,
                1,
                MAX_EXECUTION_TIMEOUT_SECS,
            ),
            ("retention_secs", self.retention_secs, 1, MAX_RETENTION_SECS),
        ];
        for (name, value, lo, hi) in checks {
            if let Some(Some(v)) = value {
                if !(lo..=hi).contains(&v) {
                    return Err(format!("{name} = {v}: expected {lo} to {hi}"));
                }
            }
        }
        if let Some(Some(p)) = self.redrive_policy {
            if !(1..=MAX_REDRIVES).contains(&p.max_redrives) {
                return Err(format!(
                    "redrive_policy.max_redrives = {}: expected 1 to {MAX_REDRIVES}",
                    p.max_redrives
                ));
            }
            if p.delay_secs > MAX_REDRIVE_DELAY_SECS {
                return Err(format!(
                    "redrive_policy.delay_secs = {}: expected 0 to {MAX_REDRIVE_DELAY_SECS}",
                    p.delay_secs
                ));
            }
        }
        Ok(())
    }

    pub fn apply(&self, s: &mut FunctionSettings) {
        let fields = [
            (&mut s.memory_limit_mb, self.memory_limit_mb),
            (&mut s.activation_timeout_secs, self.activation_timeout_secs),
            (&mut s.execution_timeout_secs, self.execution_timeout_secs),
            (&mut s.retention_secs, self.retention_secs),
        ];
        for (field, change) in fields {
            if let Some(v) = change {
                *field = v;
            }
        }
        if let Some(p) = self.redrive_policy {
            s.redrive_policy = p.map(|p| RedrivePolicy {
                max_redrives: p.max_redrives,
                delay_secs: p.delay_secs,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_keeps_null_resets_value_sets() {
        let mut s = FunctionSettings {
            memory_limit_mb: Some(64),
            retention_secs: Some(60),
            ..Default::default()
        };
        let p: Patch =
            serde_json::from_str(r#"{"memory_limit_mb": null, "execution_timeout_secs": 5}"#)
                .unwrap();
        p.apply(&mut s);
        assert_eq!(s.memory_limit_mb, None);
        assert_eq!(s.retention_secs, Some(60));
        assert_eq!(s.execution_timeout_secs, Some(5));
        let l = resolve(&s, &Defaults::default());
        assert_eq!(l.memory_limit_bytes, 128 * 1024 * 1024);
        assert_eq!(l.execution_timeout, Duration::from_secs(5));
        assert_eq!(l.retention, Duration::from_secs(60));
    }

    #[test]
    fn out_of_bounds_and_unknown_fields_are_refused() {
        let d = Defaults::default();
        let p: Patch = serde_json::from_str(r#"{"memory_limit_mb": 4096}"#).unwrap();
        assert!(p.validate(&d).unwrap_err().contains("memory_limit_mb"));
        let p: Patch = serde_json::from_str(r#"{"retention_secs": 0}"#).unwrap();
        assert!(p.validate(&d).is_err());
        assert!(serde_json::from_str::<Patch>(r#"{"memory": 1}"#).is_err());
        assert!(serde_json::from_str::<Patch>(r#"{"retention_secs": -1}"#).is_err());
    }

    #[test]
    fn a_redrive_policy_is_set_bounded_and_reset() {
        let d = Defaults::default();
        let cases = [
            (r#"{"max_redrives": 2, "delay_secs": 0}"#, None),
            (
                r#"{"max_redrives": 0, "delay_secs": 1}"#,
                Some("max_redrives = 0"),
            ),
            (
                r#"{"max_redrives": 101, "delay_secs": 1}"#,
                Some("max_redrives = 101"),
            ),
            (
                r#"{"max_redrives": 1, "delay_secs": 86401}"#,
                Some("delay_secs = 86401"),
            ),
        ];
        for (policy, refused) in cases {
            let p: Patch =
                serde_json::from_str(&format!(r#"{{"redrive_policy": {policy}}}"#)).unwrap();
            match (p.validate(&d), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(part)) => assert!(e.contains(part), "{policy}: {e}"),
                (got, _) => panic!("{policy}: {got:?}"),
            }
        }
        let mut s = FunctionSettings::default();
        let set: Patch =
            serde_json::from_str(r#"{"redrive_policy": {"max_redrives": 3, "delay_secs": 5}}"#)
                .unwrap();
        set.apply(&mut s);
        let policy = RedrivePolicy {
            max_redrives: 3,
            delay_secs: 5,
        };
        assert_eq!(resolve(&s, &d).redrive_policy, Some(policy));
        let bad = r#"{"redrive_policy": {"max_redrives": 1, "delay_secs": 1, "x": 1}}"#;
        assert!(serde_json::from_str::<Patch>(bad).is_err());
        let reset: Patch = serde_json::from_str(r#"{"redrive_policy": null}"#).unwrap();
        reset.apply(&mut s);
        assert_eq!(s.redrive_policy, None);
    }
}
