//! Human renderings of the API's JSON: executions, functions, history events, log lines,
//! tenants, keys and the caller's identity.
//!
//! Pure functions from `serde_json::Value` to text, no IO. Missing fields render as empty
//! cells rather than failing, so a newer server with more or fewer fields still prints.
//! Timestamps are shown as the server sends them.

use serde_json::Value;

use super::table::{key_values, truncate, Table};
use super::Exit;

/// How much of a JSON value a table cell shows.
pub const CELL_CHARS: usize = 60;

/// The statuses an execution ends with that make `invoke` and `history --follow` exit 1.
const FAILED_STATUSES: [&str; 3] = ["failed", "timed_out", "stopped"];

/// A field as text: strings bare, numbers and the rest as compact JSON, absent or null
/// as empty.
pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Compact JSON cut to a table cell.
pub fn cell_json(v: &Value) -> String {
    truncate(&v.to_string(), CELL_CHARS)
}

fn pretty(v: Option<&Value>) -> String {
    let v = v.unwrap_or(&Value::Null);
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The exit an execution's status calls for.
pub fn exit_for(execution: &Value) -> Exit {
    let status = execution.get("status").and_then(Value::as_str);
    if status.is_some_and(|s| FAILED_STATUSES.contains(&s)) {
        Exit::ExecutionFailed
    } else {
        Exit::Success
    }
}

/// An execution in full: ids, status, timestamps, then input, output and error as
/// indented JSON.
pub fn execution(v: &Value) -> String {
    let mut pairs = vec![
        ("execution_id", field(v, "execution_id")),
        ("function", field(v, "function")),
        ("version", field(v, "version")),
        ("status", field(v, "status")),
        ("created_at", field(v, "created_at")),
        ("updated_at", field(v, "updated_at")),
        ("ended_at", field(v, "ended_at")),
        ("input", pretty(v.get("input"))),
        ("output", pretty(v.get("output"))),
        ("error", pretty(v.get("error"))),
    ];
    // A callee of an invoke names its caller.
    if v.get("parent_execution_id").is_some_and(|p| !p.is_null()) {
        pairs.push(("parent_execution_id", field(v, "parent_execution_id")));
    }
    key_values(&pairs)
}

/// An execution that has not ended: its id and status.
pub fn execution_brief(v: &Value) -> String {
    key_values(&[
        ("execution_id", field(v, "execution_id")),
        ("status", field(v, "status")),
    ])
}

/// One line on how an execution ended, with its error if it has one.
pub fn ending(v: &Value) -> String {
    let mut line = format!(
        "execution {} {}",
        field(v, "execution_id"),
        field(v, "status")
    );
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        line.push_str(&format!(
            ": {}: {}",
            field(e, "error_type"),
            field(e, "error_message")
        ));
    }
    line.push('\n');
    line
}

pub fn executions_table(executions: &[Value]) -> String {
    let mut t = Table::new(&[
        "ID", "FUNCTION", "VERSION", "STATUS", "CREATED", "UPDATED", "ENDED", "ERROR",
    ]);
    for e in executions {
        let mut row: Vec<String> = [
            "execution_id",
            "function",
            "version",
            "status",
            "created_at",
            "updated_at",
            "ended_at",
        ]
        .iter()
        .map(|k| field(e, k))
        .collect();
        row.push(
            e.get("error")
                .map(|e| field(e, "error_type"))
                .unwrap_or_default(),
        );
        t.push(row);
    }
    t.render()
}

pub fn functions_table(functions: &[Value]) -> String {
    let mut t = Table::new(&["NAME", "LATEST", "VERSIONS", "CREATED"]);
    for f in functions {
        let count = f.get("versions").and_then(Value::as_array).map(Vec::len);
        t.push(vec![
            field(f, "name"),
            field(f, "latest_version"),
            count.map(|n| n.to_string()).unwrap_or_default(),
            field(f, "created_at"),
        ]);
    }
    t.render()
}

/// A function with its versions.
pub fn function(f: &Value) -> String {
    let mut pairs = vec![
        ("name", field(f, "name")),
        ("latest_version", field(f, "latest_version")),
        ("created_at", field(f, "created_at")),
    ];
    if let Some(settings) = f.get("settings").filter(|s| !s.is_null()) {
        pairs.push(("settings", settings.to_string()));
    }
    let mut out = key_values(&pairs);
    let mut t = Table::new(&["VERSION", "SHA256", "SIZE", "CREATED"]);
    let versions = f.get("versions").and_then(Value::as_array);
    for v in versions.into_iter().flatten() {
        t.push(vec![
            field(v, "version"),
            field(v, "sha256"),
            field(v, "size_bytes"),
            field(v, "created_at"),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

/// The result of a deploy: created (201) or the same bytes as the latest version (200).
pub fn deployed(v: &Value, created: bool) -> String {
    let what = if created {
        "new version"
    } else {
        "unchanged: same bytes as the latest version"
    };
    let mut out = format!(
        "deployed {} version {} ({what})\n",
        field(v, "name"),
        field(v, "version")
    );
    out.push_str(&key_values(&[
        ("sha256", field(v, "sha256")),
        ("size", format!("{} bytes", field(v, "size_bytes"))),
        ("created_at", field(v, "created_at")),
    ]));
    out
}

/// The history table's columns.
pub const EVENT_HEADERS: [&str; 6] = ["EVENT", "TIMESTAMP", "TYPE", "ID", "NAME", "DETAILS"];

/// Column widths for events printed one by one as they arrive (`history --follow`): wide
/// enough for the usual ids, RFC 3339 timestamps and event types.
pub const EVENT_WIDTHS: [usize; 6] = [5, 24, 19, 6, 16, 0];

/// A history event as a table row.
pub fn event_row(e: &Value) -> Vec<String> {
    vec![
        field(e, "event_id"),
        field(e, "timestamp"),
        field(e, "event_type"),
        field(e, "id"),
        field(e, "name"),
        details_summary(e.get("details").unwrap_or(&Value::Null)),
    ]
}

pub fn events_table(events: &[Value]) -> String {
    let mut t = Table::new(&EVENT_HEADERS);
    for e in events {
        t.push(event_row(e));
    }
    t.render()
}

/// An event's details as `key=value` pairs (values as compact JSON), cut to a cell.
pub fn details_summary(details: &Value) -> String {
    let Some(map) = details.as_object() else {
        return if details.is_null() {
            String::new()
        } else {
            cell_json(details)
        };
    };
    let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    truncate(&pairs.join(" "), CELL_CHARS)
}

/// A log record as `timestamp level [stream] message`.
pub fn log_line(l: &Value) -> String {
    format!(
        "{} {} [{}] {}\n",
        field(l, "timestamp"),
        field(l, "level"),
        field(l, "stream"),
        field(l, "message")
    )
}

/// The quota whose `null` means the server's own list rather than no limit.
const ALLOWLIST_QUOTA: &str = "outbound_allowlist";

/// A quota's effective value: `unlimited` when the server sends none (for the allowlist,
/// the server's own `--allow-outbound`).
fn quota_value(name: &str, v: Option<&Value>) -> String {
    match v {
        None => String::new(),
        Some(Value::Null) if name == ALLOWLIST_QUOTA => "(the server's --allow-outbound)".into(),
        Some(Value::Null) => "unlimited".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "(none)".to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

/// `usage/limit` of one counted quota, `usage` alone when it has no limit.
fn usage_of(t: &Value, quota: &str) -> String {
    let usage = field(t.get("usage").unwrap_or(&Value::Null), quota);
    let limit = t.get("quotas").and_then(|q| q.get(quota));
    match limit {
        Some(l) if !l.is_null() && !usage.is_empty() => format!("{usage}/{l}"),
        _ => usage,
    }
}

/// A tenant: its name and creation time, then every quota with its usage beside it where
/// the server counts one.
pub fn tenant(t: &Value) -> String {
    let mut out = key_values(&[
        ("name", field(t, "name")),
        ("created_at", field(t, "created_at")),
    ]);
    let mut table = Table::new(&["QUOTA", "LIMIT", "USAGE"]);
    let usage = t.get("usage").unwrap_or(&Value::Null);
    if let Some(quotas) = t.get("quotas").and_then(Value::as_object) {
        for (name, value) in quotas {
            table.push(vec![
                name.clone(),
                quota_value(name, Some(value)),
                field(usage, name),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&table.render());
    out
}

pub fn tenants_table(tenants: &[Value]) -> String {
    let mut t = Table::new(&["NAME", "FUNCTIONS", "ACTIVE EXECUTIONS", "CREATED"]);
    for tenant in tenants {
        t.push(vec![
            field(tenant, "name"),
            usage_of(tenant, "max_functions"),
            usage_of(tenant, "max_active_executions"),
            field(tenant, "created_at"),
        ]);
    }
    t.render()
}

/// The answer to `keys create`: the whole key, with the warning that it is shown once.
pub fn created_key(tenant: &str, k: &Value) -> String {
    let expires = match field(k, "expires_at") {
        e if e.is_empty() => "never".to_string(),
        e => e,
    };
    let mut out = format!(
        "created {} key {} ({:?}) in tenant {tenant}\n",
        field(k, "role"),
        field(k, "key_id"),
        field(k, "name"),
    );
    out.push_str(&key_values(&[
        ("key", field(k, "key")),
        ("expires_at", expires),
    ]));
    out.push_str(
        "\nThis is the only time the key is shown: the server keeps only a hash of it. \
         Store it now (a secret store, or DURABLE_API_KEY for the client).\n",
    );
    out
}

pub fn keys_table(keys: &[Value]) -> String {
    let mut t = Table::new(&["KEY_ID", "ROLE", "NAME", "CREATED", "EXPIRES"]);
    for k in keys {
        let expires = match field(k, "expires_at") {
            e if e.is_empty() => "never".to_string(),
            e => e,
        };
        t.push(vec![
            field(k, "key_id"),
            field(k, "role"),
            field(k, "name"),
            field(k, "created_at"),
            expires,
        ]);
    }
    t.render()
}

/// `whoami`: the key's tenant, role and id, and where the client found the key.
pub fn whoami(w: &Value, key_from: Option<&str>) -> String {
    key_values(&[
        ("tenant", field(w, "tenant")),
        ("role", field(w, "role")),
        ("key_id", field(w, "key_id")),
        ("key_from", key_from.unwrap_or("(no key sent)").to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hello_execution() -> Value {
        json!({
            "execution_id": "01K0000000000000000000000A",
            "function": "hello",
            "version": 1,
            "status": "succeeded",
            "input": {},
            "output": {"statusCode": 200},
            "error": null,
            "created_at": "2025-01-01T00:00:00.000Z",
            "updated_at": "2025-01-01T00:00:01.000Z",
            "ended_at": "2025-01-01T00:00:01.000Z",
        })
    }

    #[test]
    fn an_execution_in_full() {
        assert_eq!(
            execution(&hello_execution()),
            "execution_id  01K0000000000000000000000A\n\
             function      hello\n\
             version       1\n\
             status        succeeded\n\
             created_at    2025-01-01T00:00:00.000Z\n\
             updated_at    2025-01-01T00:00:01.000Z\n\
             ended_at      2025-01-01T00:00:01.000Z\n\
             input         {}\n\
             output        {\n\
             \x20               \"statusCode\": 200\n\
             \x20             }\n\
             error         null\n"
        );
    }

    #[test]
    fn failed_timed_out_and_stopped_exit_1_and_the_rest_0() {
        for (status, exit) in [
            ("succeeded", Exit::Success),
            ("running", Exit::Success),
            ("suspended", Exit::Success),
            ("failed", Exit::ExecutionFailed),
            ("timed_out", Exit::ExecutionFailed),
            ("stopped", Exit::ExecutionFailed),
        ] {
            assert_eq!(exit_for(&json!({ "status": status })), exit, "{status}");
        }
    }

    #[test]
    fn an_ending_names_the_error() {
        let v = json!({"execution_id": "X", "status": "failed",
                       "error": {"error_type": "Boom", "error_message": "bad"}});
        assert_eq!(ending(&v), "execution X failed: Boom: bad\n");
        assert_eq!(
            ending(&hello_execution()).trim_end().rsplit(' ').next(),
            Some("succeeded")
        );
    }

    #[test]
    fn event_details_are_key_value_pairs_cut_to_a_cell() {
        let short = json!({"callback_id": "cb_0123", "timeout_ms": 5});
        assert_eq!(
            details_summary(&short),
            "callback_id=\"cb_0123\" timeout_ms=5"
        );
        let long = json!({"result": "x".repeat(100)});
        let s = details_summary(&long);
        assert_eq!(s.chars().count(), CELL_CHARS);
        assert!(s.starts_with("result=\"xxx") && s.ends_with('…'));
        assert_eq!(details_summary(&json!({})), "");
    }

    #[test]
    fn an_event_row_and_a_log_line() {
        let e = json!({"event_id": 3, "event_type": "StepSucceeded", "sub_type": "Step",
                       "id": "1", "parent_id": null, "name": "Step #1",
                       "timestamp": "2025-01-01T00:00:00.000Z",
                       "details": {"attempt": 1, "result": null}});
        assert_eq!(
            event_row(&e),
            [
                "3",
                "2025-01-01T00:00:00.000Z",
                "StepSucceeded",
                "1",
                "Step #1",
                "attempt=1 result=null"
            ]
        );
        let l = json!({"timestamp": "T", "level": "info", "stream": "log", "message": "hi",
                       "operation_id": "1"});
        assert_eq!(log_line(&l), "T info [log] hi\n");
    }

    #[test]
    fn missing_fields_render_empty() {
        assert_eq!(
            functions_table(&[json!({"name": "f"})]),
            "NAME  LATEST  VERSIONS  CREATED\nf\n"
        );
    }

    #[test]
    fn a_tenant_shows_every_quota_with_usage_beside_the_counted_ones() {
        let t = json!({
            "name": "acme",
            "created_at": "2025-01-01T00:00:00Z",
            "quotas": {
                "invocations_per_second": 2.5,
                "max_functions": 10,
                "memory_limit_mb": null,
                "outbound_allowlist": ["a:80", "b:443"],
                "max_stored_bytes": 1000,
            },
            "usage": {"max_functions": 3, "max_stored_bytes": 0},
        });
        assert_eq!(
            tenant(&t),
            "name        acme\n\
             created_at  2025-01-01T00:00:00Z\n\
             \n\
             QUOTA                   LIMIT        USAGE\n\
             invocations_per_second  2.5\n\
             max_functions           10           3\n\
             max_stored_bytes        1000         0\n\
             memory_limit_mb         unlimited\n\
             outbound_allowlist      a:80, b:443\n"
        );
    }

    #[test]
    fn the_tenants_table_shows_usage_over_limit() {
        let tenants = [
            json!({"name": "acme", "created_at": "T",
                   "quotas": {"max_functions": 10, "max_active_executions": null},
                   "usage": {"max_functions": 3, "max_active_executions": 7}}),
            json!({"name": "empty"}),
        ];
        assert_eq!(
            tenants_table(&tenants),
            "NAME   FUNCTIONS  ACTIVE EXECUTIONS  CREATED\n\
             acme   3/10       7                  T\n\
             empty\n"
        );
    }

    #[test]
    fn a_created_key_is_shown_once_with_a_warning_and_keys_are_listed_without_it() {
        let k = json!({"key_id": "0123456789ab", "key": "dh_0123456789ab_ff", "role": "invoker",
                       "name": "ci", "created_at": "T", "expires_at": null});
        let out = created_key("acme", &k);
        assert!(
            out.starts_with(
                "created invoker key 0123456789ab (\"ci\") in tenant acme\n\
                 key         dh_0123456789ab_ff\n\
                 expires_at  never\n\n\
                 This is the only time the key is shown"
            ),
            "{out}"
        );
        let listed = json!({"key_id": "0123456789ab", "role": "invoker", "name": "ci",
                            "created_at": "T", "expires_at": "2026-01-01T00:00:00Z"});
        assert_eq!(
            keys_table(&[listed]),
            "KEY_ID        ROLE     NAME  CREATED  EXPIRES\n\
             0123456789ab  invoker  ci    T        2026-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn whoami_names_where_the_key_came_from() {
        let w = json!({"tenant": "default", "role": "admin", "key_id": "0123456789ab"});
        assert_eq!(
            whoami(&w, Some("--api-key")),
            "tenant    default\n\
             role      admin\n\
             key_id    0123456789ab\n\
             key_from  --api-key\n"
        );
        assert!(whoami(&w, None).ends_with("key_from  (no key sent)\n"));
    }

    #[test]
    fn a_null_allowlist_is_the_servers_and_an_empty_one_reaches_nothing() {
        for (list, shown) in [
            (Value::Null, "(the server's --allow-outbound)"),
            (json!([]), "(none)"),
            (json!(["a:80"]), "a:80"),
        ] {
            let t = json!({"quotas": {"outbound_allowlist": list, "max_functions": null}});
            let out = tenant(&t);
            let row = out
                .lines()
                .find(|l| l.starts_with("outbound_allowlist"))
                .unwrap();
            assert_eq!(row.split_once("  ").unwrap().1.trim(), shown, "{out}");
            assert!(out.contains("max_functions       unlimited"), "{out}");
        }
    }
}
