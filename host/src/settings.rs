//! Per-function settings: what a function may set, the bounds, and how its own values
//! combine with the server's defaults.
//!
//! Flow control (DESIGN 10: `max_concurrency`, `concurrency_key`, `throttle`,
//! `max_queued`) has no server default (absent: no limit); `flow_limits` is what the
//! scheduler enforces and `class` what it needs to know of one execution.
//!
//! Invariant: a stored `FunctionSettings` was validated here; `resolve` never fails.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::db::{FunctionSettings, RedrivePolicy, Throttle};
use crate::scheduler;

/// The longest execution timeout: 366 days, as AWS durable functions allow one year.
pub use crate::journal::MAX_EXECUTION_TIMEOUT_SECS;

/// The longest activation: one hour (waits, not long activations, are how functions pause).
pub const MAX_ACTIVATION_TIMEOUT_SECS: u64 = 3600;
/// The longest retention of a finished execution: 366 days.
pub const MAX_RETENTION_SECS: u64 = 366 * 24 * 3600;
/// The largest `max_concurrency`: far above any `--max-resident` a host runs with.
pub const MAX_CONCURRENCY: u64 = 100_000;
/// The largest `max_queued`: a backlog the scheduler holds as small keys (~200 B each).
pub const MAX_QUEUED: u64 = 10_000_000;
/// The fastest `throttle.per_second` (and the largest burst): beyond it there is nothing
/// left to throttle on one host.
pub const MAX_THROTTLE_RATE: f64 = 100_000.0;
pub const MAX_THROTTLE_BURST: u64 = 100_000;
/// The longest `concurrency_key` pointer, in bytes.
pub const MAX_CONCURRENCY_KEY_BYTES: usize = 256;
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
    // Flow control (DESIGN 10).
    /// Activations of this function at once (per `concurrency_key` value when set); more
    /// wait in the queue.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 100_000)]
    pub max_concurrency: Option<Option<u64>>,
    /// A JSON pointer into the input (RFC 6901, e.g. `/user_id`): `max_concurrency`
    /// applies per value found there; inputs without it share one value.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^(/([^~]|~[01])*)+$", max_length = 256)]
    pub concurrency_key: Option<Option<String>>,
    /// New executions start at most at this rate; the rest wait in the queue.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ThrottlePatch>)]
    pub throttle: Option<Option<ThrottlePatch>>,
    /// Executions waiting in the run queue beyond which invoke answers 429 `backlog_full`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 10_000_000)]
    pub max_queued: Option<Option<u64>>,
    /// Redrive a failed execution automatically, `delay_secs` after it failed, up to
    /// `max_redrives` times; only its last failure is notified as `execution.failed`.
    /// `null`: never (the default).
    #[serde(default, deserialize_with = "present_policy")]
    pub redrive_policy: Option<Option<RedrivePolicyPatch>>,
}

/// A start rate as a patch gives it.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThrottlePatch {
    /// Starts per second on average (fractions allowed: 0.5 is one every 2 s).
    #[schema(exclusive_minimum = 0, maximum = 100_000)]
    pub per_second: f64,
    /// Starts at once after an idle spell (default 1: evenly spaced).
    #[schema(minimum = 1, maximum = 100_000)]
    pub burst: Option<u64>,
}

fn present_policy<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<RedrivePolicyPatch>>, D::Error> {
    Option::<RedrivePolicyPatch>::deserialize(d).map(Some)
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Whether `p` is a JSON pointer (RFC 6901) naming something inside the input: `/` then
/// reference tokens separated by `/`, where `~` is only `~0` or `~1`.
fn is_json_pointer(p: &str) -> bool {
    p.starts_with('/') && {
        let b = p.as_bytes();
        b.iter()
            .enumerate()
            .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
    }
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.memory_limit_mb.is_none()
            && self.activation_timeout_secs.is_none()
            && self.execution_timeout_secs.is_none()
            && self.retention_secs.is_none()
            && self.max_concurrency.is_none()
            && self.concurrency_key.is_none()
            && self.throttle.is_none()
            && self.max_queued.is_none()
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
            ("max_concurrency", self.max_concurrency, 1, MAX_CONCURRENCY),
            ("max_queued", self.max_queued, 1, MAX_QUEUED),
            (
                "throttle.burst",
                self.throttle.flatten().map(|t| t.burst),
                1,
                MAX_THROTTLE_BURST,
            ),
        ];
        for (name, value, lo, hi) in checks {
            if let Some(Some(v)) = value {
                if !(lo..=hi).contains(&v) {
                    return Err(format!("{name} = {v}: expected {lo} to {hi}"));
                }
            }
        }
        if let Some(Some(t)) = self.throttle {
            let r = t.per_second;
            if !(r.is_finite() && r > 0.0 && r <= MAX_THROTTLE_RATE) {
                return Err(format!(
                    "throttle.per_second = {r}: expected more than 0, at most {MAX_THROTTLE_RATE}"
                ));
            }
        }
        if let Some(Some(p)) = &self.concurrency_key {
            if p.len() > MAX_CONCURRENCY_KEY_BYTES || !is_json_pointer(p) {
                return Err(format!(
                    "concurrency_key = {p:?}: expected a JSON pointer into the input such as \
                     \"/user_id\" (RFC 6901: \"/\" then names separated by \"/\", ~0 for ~ \
                     and ~1 for /), at most {MAX_CONCURRENCY_KEY_BYTES} bytes"
                ));
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
        // Validated: the numbers fit.
        if let Some(v) = self.max_concurrency {
            s.max_concurrency = v.map(|n| n as u32);
        }
        if let Some(v) = &self.concurrency_key {
            s.concurrency_key = v.clone();
        }
        if let Some(v) = self.throttle {
            s.throttle = v.map(|t| Throttle {
                per_second: t.per_second,
                burst: t.burst.unwrap_or(1) as u32,
            });
        }
        if let Some(v) = self.max_queued {
            s.max_queued = v.map(|n| n as u32);
        }
        if let Some(p) = self.redrive_policy {
            s.redrive_policy = p.map(|p| RedrivePolicy {
                max_redrives: p.max_redrives,
                delay_secs: p.delay_secs,
            });
        }
    }
}

/// The limits the scheduler enforces for a function with these settings.
pub fn flow_limits(s: &FunctionSettings) -> scheduler::FlowLimits {
    scheduler::FlowLimits {
        max_concurrency: s.max_concurrency.map(|n| n as usize),
        concurrency_key: s.concurrency_key.as_deref().map(Arc::from),
        throttle: s.throttle.map(|t| scheduler::Throttle {
            per_second: t.per_second,
            burst: t.burst,
        }),
    }
}

/// What the scheduler needs to know of an execution of `function` (with these settings)
/// whose input is `input` (JSON text): the value its `concurrency_key` names, as canonical
/// JSON text (so `"1"` and `1` differ), or `None` when the function has no key or the input
/// has nothing there (such executions share one key value). `fresh`: it has not started.
/// The input is parsed only for a function with a `concurrency_key`.
pub fn class(function: &str, s: &FunctionSettings, input: &str, fresh: bool) -> scheduler::Class {
    let key = s.concurrency_key.as_deref().and_then(|p| {
        let v: serde_json::Value = serde_json::from_str(input).ok()?;
        v.pointer(p).map(|found| Arc::from(found.to_string()))
    });
    scheduler::Class {
        function: function.into(),
        key,
        fresh,
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

    /// (patch, error naming this field, or accepted)
    #[test]
    fn flow_control_settings_are_bounded() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"max_concurrency": 2}"#, None),
            (r#"{"max_concurrency": 0}"#, Some("max_concurrency")),
            (r#"{"max_concurrency": 100001}"#, Some("max_concurrency")),
            (r#"{"max_queued": 1}"#, None),
            (r#"{"max_queued": 0}"#, Some("max_queued")),
            (r#"{"throttle": {"per_second": 0.5}}"#, None),
            (r#"{"throttle": {"per_second": 5, "burst": 3}}"#, None),
            (
                r#"{"throttle": {"per_second": 0}}"#,
                Some("throttle.per_second"),
            ),
            (
                r#"{"throttle": {"per_second": -1}}"#,
                Some("throttle.per_second"),
            ),
            (
                r#"{"throttle": {"per_second": 1e9}}"#,
                Some("throttle.per_second"),
            ),
            (
                r#"{"throttle": {"per_second": 1, "burst": 0}}"#,
                Some("throttle.burst"),
            ),
            (r#"{"throttle": null}"#, None),
            (r#"{"concurrency_key": "/user_id"}"#, None),
            (r#"{"concurrency_key": "/a/0/b~1c~0d"}"#, None),
            (r#"{"concurrency_key": "/"}"#, None),
            (r#"{"concurrency_key": "user_id"}"#, Some("concurrency_key")),
            (r#"{"concurrency_key": ""}"#, Some("concurrency_key")),
            (r#"{"concurrency_key": "/a~2"}"#, Some("concurrency_key")),
            (r#"{"concurrency_key": "/a~"}"#, Some("concurrency_key")),
            (r#"{"concurrency_key": null}"#, None),
        ];
        let d = Defaults::default();
        for (text, refused) in cases {
            let p: Patch = serde_json::from_str(text).unwrap();
            match (p.validate(&d), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(field)) => assert!(e.starts_with(field), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, expected refusal of {want:?}"),
            }
        }
        let long = format!(r#"{{"concurrency_key": "/{}"}}"#, "a".repeat(256));
        let p: Patch = serde_json::from_str(&long).unwrap();
        assert!(p.validate(&d).is_err());
        assert!(serde_json::from_str::<Patch>(r#"{"throttle": {"rate": 1}}"#).is_err());
    }

    #[test]
    fn flow_settings_apply_and_reset() {
        let mut s = FunctionSettings::default();
        let p: Patch = serde_json::from_str(
            r#"{"max_concurrency": 3, "concurrency_key": "/u", "throttle": {"per_second": 2.5}, "max_queued": 9}"#,
        )
        .unwrap();
        assert!(!p.is_empty());
        p.apply(&mut s);
        assert_eq!(s.max_concurrency, Some(3));
        assert_eq!(s.concurrency_key.as_deref(), Some("/u"));
        assert_eq!(
            s.throttle,
            Some(Throttle {
                per_second: 2.5,
                burst: 1
            })
        );
        assert_eq!(s.max_queued, Some(9));
        let l = flow_limits(&s);
        assert_eq!(l.max_concurrency, Some(3));
        assert_eq!(l.throttle.map(|t| t.burst), Some(1));
        let p: Patch = serde_json::from_str(r#"{"throttle": null, "max_queued": null}"#).unwrap();
        p.apply(&mut s);
        assert_eq!(
            (s.throttle, s.max_queued, s.max_concurrency),
            (None, None, Some(3))
        );
    }

    /// (input, the key value it gets under `/user/id`)
    #[test]
    fn the_concurrency_key_is_the_canonical_json_of_what_the_pointer_finds() {
        let s = FunctionSettings {
            max_concurrency: Some(1),
            concurrency_key: Some("/user/id".into()),
            ..Default::default()
        };
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"user": {"id": "alice"}}"#, Some(r#""alice""#)),
            (r#"{"user": {"id": 7}}"#, Some("7")),
            (r#"{"user": {"id": "7"}}"#, Some(r#""7""#)),
            (
                r#"{"user": {"id": {"b": 1, "a": 2}}}"#,
                Some(r#"{"a":2,"b":1}"#),
            ),
            (r#"{"user": {"id": null}}"#, Some("null")),
            (r#"{"user": {}}"#, None),
            (r#"{"other": 1}"#, None),
            ("[1, 2]", None),
            ("null", None),
        ];
        for (input, key) in cases {
            let c = class("f", &s, input, true);
            assert_eq!(c.key.as_deref(), *key, "{input}");
            assert_eq!(&*c.function, "f");
        }
        // Without a key the input is not looked at.
        let c = class("f", &FunctionSettings::default(), "not json", false);
        assert_eq!((c.key, c.fresh), (None, false));
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
