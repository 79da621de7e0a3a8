//! Per-function settings: what a function may set, the bounds, and how its own values
//! combine with the server's defaults.
//!
//! Invariant: a stored `FunctionSettings` was validated here; `resolve` never fails.

use std::time::Duration;

use serde::Deserialize;

use crate::db::FunctionSettings;

/// The longest execution timeout: 366 days, as AWS durable functions allow one year.
pub const MAX_EXECUTION_TIMEOUT_SECS: u64 = 366 * 24 * 3600;
/// The longest activation: one hour (waits, not long activations, are how functions pause).
pub const MAX_ACTIVATION_TIMEOUT_SECS: u64 = 3600;
/// The longest retention of a finished execution: 366 days.
pub const MAX_RETENTION_SECS: u64 = 366 * 24 * 3600;

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
    }
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
}
