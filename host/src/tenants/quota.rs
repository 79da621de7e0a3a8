//! Quotas: what one tenant may hold and do. A tenant's record keeps only the values an
//! admin set; each other quota takes the server's default (the `--tenant-*` serve flags and
//! the server-wide limits), so changing a default reaches every tenant that did not set it.
//! A quota that is `None` after that has no limit.
//!
//! Invariant: a stored `Quotas` was validated against the server's bounds here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
