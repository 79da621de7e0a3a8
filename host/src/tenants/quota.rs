//! Quotas: what one tenant may hold and do. A tenant's record keeps only the values an
//! admin set; each other quota takes the server's default (the `--tenant-*` serve flags and
//! the server-wide limits), so changing a default reaches every tenant that did not set it.
//! A quota that is `None` after that has no limit.
//!
//! The ceilings (`memory_limit_mb`, `activation_timeout_secs`) bound what a function's
//! settings may ask for (`check_settings`, at upload and PATCH) and what an activation runs
//! with (`ceil`, the smaller of the function's value and the tenant's, read at each
//! activation, so that lowering a ceiling reaches running executions at their next one);
//! `max_history_events` is the journal limit of the tenant's executions (`journal`).
//!
//! Invariant: a stored `Quotas` was validated against the server's bounds here.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::journal;
use crate::settings::{self, Limits};

/// The burst of a tenant with a rate and no burst: two seconds' worth, at least one, so
/// that a client keeping to the rate is never refused for the jitter of its requests.
pub fn default_burst(rate: f64) -> u64 {
    ((2.0 * rate).ceil() as u64).max(1)
}

/// Every quota of DESIGN.md section 8. In a tenant's record: its overrides; from
/// `over`: the values in force.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Functions it may have (deleted ones do not count).
    pub max_functions: Option<u64>,
    /// Largest component it may upload, in bytes.
    pub max_component_bytes: Option<u64>,
    /// Bytes it may store: components, and executions with their histories and logs.
    pub max_stored_bytes: Option<u64>,
    /// Executions running or suspended at once.
    pub max_active_executions: Option<u64>,
    /// Its share of the resident instances (`--max-resident`).
    pub max_concurrent_activations: Option<u64>,
    /// Invocations per second, refilled continuously (a token bucket).
    pub invocations_per_second: Option<f64>,
    /// Invocations it may make at once after being idle (the bucket's size).
    pub invocation_burst: Option<u64>,
    /// The most linear memory its functions may ask for, in MiB.
    pub memory_limit_mb: Option<u64>,
    /// The longest activation its functions may ask for, in seconds.
    pub activation_timeout_secs: Option<u64>,
    /// History events one of its executions may record.
    pub max_history_events: Option<u64>,
    /// HOST:PORT its guests may reach; only those the server's `--allow-outbound` also
    /// allows. `None`: the server's list.
    pub outbound_allowlist: Option<Vec<String>>,
}

/// What a tenant uses of the quotas that count something, under each quota's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Functions (not deleted).
    pub max_functions: u64,
    /// Bytes stored.
    pub max_stored_bytes: u64,
    /// Executions running or suspended.
    pub max_active_executions: u64,
    /// Activations resident now.
    pub max_concurrent_activations: u64,
}

/// The bounds no tenant's quota may exceed: the server's own limits.
#[derive(Clone, Debug)]
pub struct Bounds {
    pub max_component_bytes: u64,
    pub max_concurrent_activations: u64,
    pub memory_limit_mb: u64,
    pub activation_timeout_secs: u64,
    pub max_history_events: u64,
}

impl Quotas {
    /// These values where set, else `defaults`'.
    pub fn over(&self, defaults: &Quotas) -> Quotas {
        fn or<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        Quotas {
            max_functions: or(&self.max_functions, &defaults.max_functions),
            max_component_bytes: or(&self.max_component_bytes, &defaults.max_component_bytes),
            max_stored_bytes: or(&self.max_stored_bytes, &defaults.max_stored_bytes),
            max_active_executions: or(&self.max_active_executions, &defaults.max_active_executions),
            max_concurrent_activations: or(
                &self.max_concurrent_activations,
                &defaults.max_concurrent_activations,
            ),
            invocations_per_second: or(
                &self.invocations_per_second,
                &defaults.invocations_per_second,
            ),
            invocation_burst: or(&self.invocation_burst, &defaults.invocation_burst),
            memory_limit_mb: or(&self.memory_limit_mb, &defaults.memory_limit_mb),
            activation_timeout_secs: or(
                &self.activation_timeout_secs,
                &defaults.activation_timeout_secs,
            ),
            max_history_events: or(&self.max_history_events, &defaults.max_history_events),
            outbound_allowlist: or(&self.outbound_allowlist, &defaults.outbound_allowlist),
        }
        .with_burst()
    }

    /// A rate without a burst gets the default burst: two seconds' worth, at least one.
    fn with_burst(mut self) -> Quotas {
        if let (Some(rate), None) = (self.invocations_per_second, self.invocation_burst) {
            self.invocation_burst = Some(default_burst(rate));
        }
        self
    }

    /// `limits` (a function's, resolved) within this tenant's ceilings.
    pub fn ceil(&self, limits: Limits) -> Limits {
        let mut l = limits;
        if let Some(mb) = self.memory_limit_mb {
            let bytes = usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
            l.memory_limit_bytes = l.memory_limit_bytes.min(bytes);
        }
        if let Some(secs) = self.activation_timeout_secs {
            l.activation_timeout = l.activation_timeout.min(Duration::from_secs(secs));
        }
        l
    }

    /// The journal limits of this tenant's executions: the server's, with its
    /// `max_history_events`.
    pub fn journal(&self, server: &journal::Limits) -> journal::Limits {
        let mut j = server.clone();
        if let Some(n) = self.max_history_events {
            j.max_history_events = u32::try_from(n).unwrap_or(u32::MAX);
        }
        j
    }

    /// Refuse a settings change that asks for more than a ceiling; the message names the
    /// setting and the tenant's ceiling. Settings the change does not name are not checked
    /// (a lowered ceiling bounds them at activation instead).
    pub fn check_settings(&self, patch: &settings::Patch) -> Result<(), String> {
        let checks = [
            (
                "memory_limit_mb",
                patch.memory_limit_mb.flatten(),
                self.memory_limit_mb,
            ),
            (
                "activation_timeout_secs",
                patch.activation_timeout_secs.flatten(),
                self.activation_timeout_secs,
            ),
        ];
        for (name, asked, ceiling) in checks {
            if let (Some(v), Some(max)) = (asked, ceiling) {
                if v > max {
                    return Err(format!(
                        "{name} = {v}: the tenant's ceiling is {max} (its quota {name})"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Apply a change given as a JSON object: a quota named with a value sets it, with
    /// `null` returns it to the server's default; quotas not named stay as they are. The
    /// result is checked against `bounds`; the message names the quota.
    pub fn patched(&self, change: &Map<String, Value>, bounds: &Bounds) -> Result<Quotas, String> {
        let Value::Object(mut fields) = serde_json::to_value(self).expect("quotas serialize")
        else {
            unreachable!("a struct serializes to an object")
        };
        for (name, value) in change {
            if !fields.contains_key(name) {
                return Err(format!(
                    "unknown quota {name:?}; the quotas are: {}",
                    fields.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            fields.insert(name.clone(), value.clone());
        }
        let q: Quotas = serde_json::from_value(Value::Object(fields))
            .map_err(|e| format!("invalid quotas: {e}"))?;
        q.validate(bounds)?;
        Ok(q)
    }

    /// Check every value set against its bounds.
    pub fn validate(&self, b: &Bounds) -> Result<(), String> {
        // Unbounded quotas stop at the largest integer of the API description (int64).
        const UNBOUNDED: u64 = i64::MAX as u64;
        let ranges = [
            ("max_functions", self.max_functions, 0, UNBOUNDED),
            (
                "max_component_bytes",
                self.max_component_bytes,
                1,
                b.max_component_bytes,
            ),
            ("max_stored_bytes", self.max_stored_bytes, 0, UNBOUNDED),
            (
                "max_active_executions",
                self.max_active_executions,
                0,
                UNBOUNDED,
            ),
            (
                "max_concurrent_activations",
                self.max_concurrent_activations,
                1,
                b.max_concurrent_activations,
            ),
            ("invocation_burst", self.invocation_burst, 1, UNBOUNDED),
            (
                "memory_limit_mb",
                self.memory_limit_mb,
                1,
                b.memory_limit_mb,
            ),
            (
                "activation_timeout_secs",
                self.activation_timeout_secs,
                1,
                b.activation_timeout_secs,
            ),
            (
                "max_history_events",
                self.max_history_events,
                1,
                b.max_history_events,
            ),
        ];
        for (name, value, lo, hi) in ranges {
            if let Some(v) = value {
                if !(lo..=hi).contains(&v) {
                    return Err(format!("{name} = {v}: expected {lo} to {hi}"));
                }
            }
        }
        if let Some(r) = self.invocations_per_second {
            if !(r.is_finite() && r > 0.0) {
                return Err(format!(
                    "invocations_per_second = {r}: expected a positive number"
                ));
            }
        }
        if let Some(list) = &self.outbound_allowlist {
            crate::host_api::outbound::Allowlist::check_entries(list)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bounds() -> Bounds {
        Bounds {
            max_component_bytes: 1 << 20,
            max_concurrent_activations: 8,
            memory_limit_mb: 128,
            activation_timeout_secs: 3600,
            max_history_events: 1000,
        }
    }

    #[test]
    fn set_values_win_over_defaults_and_null_returns_to_them() {
        let defaults = Quotas {
            max_functions: Some(100),
            memory_limit_mb: Some(128),
            ..Default::default()
        };
        let own = Quotas::default()
            .patched(
                json!({"max_functions": 3, "invocations_per_second": 2.5})
                    .as_object()
                    .unwrap(),
                &bounds(),
            )
            .unwrap();
        let q = own.over(&defaults);
        assert_eq!(q.max_functions, Some(3));
        assert_eq!(q.memory_limit_mb, Some(128));
        assert_eq!(q.invocations_per_second, Some(2.5));
        assert_eq!(q.max_stored_bytes, None, "no default, no limit");
        let back = own
            .patched(
                json!({"max_functions": null}).as_object().unwrap(),
                &bounds(),
            )
            .unwrap();
        assert_eq!(back.over(&defaults).max_functions, Some(100));
        assert_eq!(back.invocations_per_second, Some(2.5), "not named: kept");
    }

    #[test]
    fn a_rate_without_a_burst_gets_two_seconds_worth() {
        let cases = [
            (Some(2.5), None, None, Some(5)),
            (Some(0.1), None, None, Some(1)),
            (Some(10.0), Some(3), None, Some(3)),
            (Some(10.0), None, Some(7), Some(7)),
            (None, None, None, None),
        ];
        for (rate, own_burst, default_burst, expected) in cases {
            let own = Quotas {
                invocations_per_second: rate,
                invocation_burst: own_burst,
                ..Default::default()
            };
            let defaults = Quotas {
                invocation_burst: default_burst,
                ..Default::default()
            };
            assert_eq!(
                own.over(&defaults).invocation_burst,
                expected,
                "{rate:?} {own_burst:?} {default_burst:?}"
            );
        }
    }

    #[test]
    fn ceilings_bound_settings_and_activations() {
        let q = Quotas {
            memory_limit_mb: Some(64),
            activation_timeout_secs: Some(10),
            max_history_events: Some(50),
            ..Default::default()
        };
        let patch = |text: &str| serde_json::from_str::<settings::Patch>(text).unwrap();
        let cases = [
            (r#"{"memory_limit_mb": 64}"#, None),
            (
                r#"{"memory_limit_mb": 65}"#,
                Some("memory_limit_mb = 65: the tenant's ceiling is 64"),
            ),
            (
                r#"{"activation_timeout_secs": 11, "memory_limit_mb": 1}"#,
                Some("activation_timeout_secs = 11: the tenant's ceiling is 10"),
            ),
            (
                r#"{"memory_limit_mb": null, "retention_secs": 99999}"#,
                None,
            ),
        ];
        for (text, expected) in cases {
            let got = q.check_settings(&patch(text)).err();
            match expected {
                None => assert_eq!(got, None, "{text}"),
                Some(e) => assert!(got.as_deref().unwrap_or("").contains(e), "{text}: {got:?}"),
            }
        }
        let function = Limits {
            memory_limit_bytes: 128 << 20,
            activation_timeout: Duration::from_secs(5),
            execution_timeout: Duration::from_secs(60),
            retention: Duration::from_secs(60),
            redrive_policy: None,
        };
        let l = q.ceil(function);
        assert_eq!(l.memory_limit_bytes, 64 << 20, "the tenant's is smaller");
        assert_eq!(
            l.activation_timeout,
            Duration::from_secs(5),
            "the function's is"
        );
        assert_eq!(l.execution_timeout, function.execution_timeout);
        let j = q.journal(&journal::Limits::default());
        assert_eq!(j.max_history_events, 50);
        assert_eq!(
            j.max_context_depth,
            journal::Limits::default().max_context_depth
        );
    }

    #[test]
    fn bad_changes_name_the_quota() {
        let cases = [
            (
                json!({"max_functionz": 1}),
                "unknown quota \"max_functionz\"",
            ),
            (json!({"memory_limit_mb": 4096}), "memory_limit_mb = 4096"),
            (
                json!({"max_concurrent_activations": 0}),
                "max_concurrent_activations",
            ),
            (json!({"max_functions": -1}), "invalid quotas"),
            (json!({"max_functions": "ten"}), "invalid quotas"),
            (
                json!({"invocations_per_second": 0}),
                "invocations_per_second",
            ),
            (
                json!({"outbound_allowlist": ["nohost"]}),
                "outbound_allowlist",
            ),
            (
                json!({"activation_timeout_secs": 3601}),
                "activation_timeout_secs",
            ),
        ];
        for (change, expected) in cases {
            let e = Quotas::default()
                .patched(change.as_object().unwrap(), &bounds())
                .unwrap_err();
            assert!(e.contains(expected), "{change}: {e}");
        }
    }
}
