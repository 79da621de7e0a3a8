//! Key encoding for the one `data` tree. Every key starts with a one-byte table tag; numbers
//! are big-endian so that byte order is numeric order (timers sort by due time, history by
//! sequence). Tenant-owned tables (functions, versions, executions) start with the tenant;
//! per-execution tables start with the 16-byte execution id, which is global and random.
//!
//! Names and tenants never contain a NUL byte (the API validates them), so NUL separates
//! variable-length parts unambiguously.

pub const FUNCTION: u8 = b'F';
pub const VERSION: u8 = b'V';
pub const EXECUTION: u8 = b'X';
pub const HISTORY: u8 = b'H';
pub const LOG: u8 = b'L';
pub const LOG_SEEN: u8 = b'K';
pub const TIMER: u8 = b'T';
pub const CALLBACK: u8 = b'C';
pub const IDEMPOTENCY: u8 = b'I';
pub const STOP: u8 = b'S';
pub const EXPIRY: u8 = b'R';
pub const META: u8 = b'M';
pub const TENANT: u8 = b'N';
pub const API_KEY: u8 = b'A';
pub const WEBHOOK: u8 = b'W';
pub const DELIVERY: u8 = b'D';
pub const OUTBOX: u8 = b'Q';
pub const SCHEDULE: u8 = b'Y';
pub const SCHEDULE_DUE: u8 = b'Z';
pub const JOB: u8 = b'J';

/// The sequence number of the last write-ahead log record applied (written with each batch).
pub const WAL_SEQ: &[u8] = b"Mwal-seq";

/// An execution id: a ULID (48-bit millisecond time, 80 random bits) as 16 bytes.
pub type ExecId = [u8; 16];

fn tagged(tag: u8, cap: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(cap + 1);
    k.push(tag);
    k
}

pub fn function(tenant: &str, name: &str) -> Vec<u8> {
    let mut k = tagged(FUNCTION, tenant.len() + name.len() + 1);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn functions_of(tenant: &str) -> Vec<u8> {
    let mut k = tagged(FUNCTION, tenant.len() + 1);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

pub fn versions_of(tenant: &str, name: &str) -> Vec<u8> {
    let mut k = tagged(VERSION, tenant.len() + name.len() + 2);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

pub fn version(tenant: &str, name: &str, version: u32) -> Vec<u8> {
    let mut k = versions_of(tenant, name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub fn executions_of(tenant: &str) -> Vec<u8> {
    let mut k = tagged(EXECUTION, tenant.len() + 17);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

pub fn execution(tenant: &str, id: &ExecId) -> Vec<u8> {
    let mut k = executions_of(tenant);
    k.extend_from_slice(id);
    k
}

/// The execution id at the end of an execution key.
pub fn execution_id_of(key: &[u8]) -> Option<ExecId> {
    key.len()
        .checked_sub(16)
        .and_then(|at| key[at..].try_into().ok())
}

pub fn history_of(id: &ExecId) -> Vec<u8> {
    let mut k = tagged(HISTORY, 20);
    k.extend_from_slice(id);
    k
}

pub fn history(id: &ExecId, seq: u32) -> Vec<u8> {
    let mut k = history_of(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn logs_of(id: &ExecId) -> Vec<u8> {
    let mut k = tagged(LOG, 20);
    k.extend_from_slice(id);
    k
}

pub fn log(id: &ExecId, seq: u32) -> Vec<u8> {
    let mut k = logs_of(id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn log_seen(id: &ExecId, position: &str) -> Vec<u8> {
    let mut k = tagged(LOG_SEEN, 16 + position.len());
    k.extend_from_slice(id);
    k.extend_from_slice(position.as_bytes());
    k
}

pub fn log_seen_of(id: &ExecId) -> Vec<u8> {
    let mut k = tagged(LOG_SEEN, 16);
    k.extend_from_slice(id);
    k
}

pub fn timers() -> Vec<u8> {
    vec![TIMER]
}

/// A timer: due time first, so a scan yields timers in due order.
pub fn timer(due_ms: u64, id: &ExecId, op_id: &str) -> Vec<u8> {
    let mut k = tagged(TIMER, 24 + op_id.len());
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(id);
    k.extend_from_slice(op_id.as_bytes());
    k
}

/// (due, execution id, op id) of a timer key.
pub fn parse_timer(key: &[u8]) -> Option<(u64, ExecId, String)> {
    if key.len() < 25 || key[0] != TIMER {
        return None;
    }
    let due = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let id: ExecId = key[9..25].try_into().ok()?;
    let op = std::str::from_utf8(&key[25..]).ok()?.to_string();
    Some((due, id, op))
}

pub fn callback(callback_id: &str) -> Vec<u8> {
    let mut k = tagged(CALLBACK, callback_id.len());
    k.extend_from_slice(callback_id.as_bytes());
    k
}

/// An idempotency key, scoped to a tenant's function.
pub fn idempotency(tenant: &str, function: &str, key: &str) -> Vec<u8> {
    let mut k = tagged(IDEMPOTENCY, tenant.len() + function.len() + key.len() + 2);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(function.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// A pending stop request of an execution.
pub fn stop(id: &ExecId) -> Vec<u8> {
    let mut k = tagged(STOP, 16);
    k.extend_from_slice(id);
    k
}

/// A finished execution's deletion time: sorts by time, so a sweep reads only what is due.
pub fn expiry(at_ms: u64, id: &ExecId) -> Vec<u8> {
    let mut k = tagged(EXPIRY, 24);
    k.extend_from_slice(&at_ms.to_be_bytes());
    k.extend_from_slice(id);
    k
}

pub fn parse_expiry(key: &[u8]) -> Option<(u64, ExecId)> {
    let rest = key.strip_prefix(&[EXPIRY])?;
    let at = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id = rest.get(8..24)?.try_into().ok()?;
    Some((at, id))
}

pub fn tenant(name: &str) -> Vec<u8> {
    let mut k = tagged(TENANT, name.len());
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn tenants() -> Vec<u8> {
    vec![TENANT]
}

/// An API key's record, under its public id (the secret is never part of a key).
pub fn api_key(key_id: &str) -> Vec<u8> {
    let mut k = tagged(API_KEY, key_id.len());
    k.extend_from_slice(key_id.as_bytes());
    k
}

pub fn api_keys() -> Vec<u8> {
    vec![API_KEY]
}

pub fn stops() -> Vec<u8> {
    vec![STOP]
}

pub fn callbacks() -> Vec<u8> {
    vec![CALLBACK]
}

/// Prefix `tag`, tenant, NUL: what one tenant owns in a tenant-keyed table.
fn of_tenant(tag: u8, tenant: &str, cap: usize) -> Vec<u8> {
    let mut k = tagged(tag, tenant.len() + 1 + cap);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

pub fn webhooks_of(tenant: &str) -> Vec<u8> {
    of_tenant(WEBHOOK, tenant, 0)
}

pub fn webhook(tenant: &str, id: &str) -> Vec<u8> {
    let mut k = of_tenant(WEBHOOK, tenant, id.len());
    k.extend_from_slice(id.as_bytes());
    k
}

/// A webhook's deliveries (ids are ULIDs, so they sort by creation).
pub fn deliveries_of(tenant: &str, webhook: &str) -> Vec<u8> {
    let mut k = of_tenant(DELIVERY, tenant, webhook.len() + 1);
    k.extend_from_slice(webhook.as_bytes());
    k.push(0);
    k
}

pub fn delivery(tenant: &str, webhook: &str, id: &str) -> Vec<u8> {
    let mut k = deliveries_of(tenant, webhook);
    k.extend_from_slice(id.as_bytes());
    k
}

/// A pending delivery's outbox entry: due time first, so a scan yields them in due order.
pub fn outbox(due_ms: u64, delivery: &str) -> Vec<u8> {
    let mut k = tagged(OUTBOX, 8 + delivery.len());
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(delivery.as_bytes());
    k
}

pub fn parse_outbox(key: &[u8]) -> Option<(u64, String)> {
    let rest = key.strip_prefix(&[OUTBOX])?;
    let due = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id = std::str::from_utf8(rest.get(8..)?).ok()?.to_string();
    Some((due, id))
}

pub fn schedules_of(tenant: &str) -> Vec<u8> {
    of_tenant(SCHEDULE, tenant, 0)
}

pub fn schedule(tenant: &str, name: &str) -> Vec<u8> {
    let mut k = of_tenant(SCHEDULE, tenant, name.len());
    k.extend_from_slice(name.as_bytes());
    k
}

/// When the schedules service next looks at a schedule: due time first, so a scan yields
/// the schedules in due order.
pub fn schedule_due(due_ms: u64, tenant: &str, name: &str) -> Vec<u8> {
    let mut k = tagged(SCHEDULE_DUE, 8 + tenant.len() + 1 + name.len());
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// (due, tenant, name) of a schedule's due key.
pub fn parse_schedule_due(key: &[u8]) -> Option<(u64, String, String)> {
    let rest = key.strip_prefix(&[SCHEDULE_DUE])?;
    let due = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let rest = std::str::from_utf8(rest.get(8..)?).ok()?;
    let (tenant, name) = rest.split_once('\0')?;
    Some((due, tenant.to_string(), name.to_string()))
}

/// A tenant's job records (`J`, tenant, NUL, `r`, job id), apart from their items.
pub fn jobs_of(tenant: &str) -> Vec<u8> {
    let mut k = of_tenant(JOB, tenant, 1);
    k.push(b'r');
    k
}

pub fn job(tenant: &str, id: &str) -> Vec<u8> {
    let mut k = jobs_of(tenant);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The executions a job matched (`J`, tenant, NUL, `i`, job id, NUL, position u32 BE).
pub fn job_items(tenant: &str, id: &str) -> Vec<u8> {
    let mut k = of_tenant(JOB, tenant, id.len() + 6);
    k.push(b'i');
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k
}

pub fn job_item(tenant: &str, id: &str, n: u32) -> Vec<u8> {
    let mut k = job_items(tenant, id);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_records_and_items_do_not_overlap_and_items_sort_by_position() {
        assert!(job("t", "job_1").starts_with(&jobs_of("t")));
        assert!(!job_item("t", "job_1", 0).starts_with(&jobs_of("t")));
        assert!(!job("ta", "j").starts_with(&jobs_of("t")));
        assert!(job_item("t", "j", 255) < job_item("t", "j", 256));
        assert!(job_item("t", "j", 7).starts_with(&job_items("t", "j")));
        assert!(!job_item("t", "j1", 7).starts_with(&job_items("t", "j")));
    }

    #[test]
    fn timers_sort_by_due_time_and_round_trip() {
        let a = [1u8; 16];
        let b = [0u8; 16];
        let early = timer(5, &a, "9");
        let late = timer(256, &b, "1");
        assert!(early < late, "due time dominates the order");
        assert_eq!(parse_timer(&late), Some((256, b, "1".to_string())));
        assert_eq!(parse_timer(&early), Some((5, a, "9".to_string())));
        assert_eq!(parse_timer(b"Tshort"), None);
    }

    #[test]
    fn outbox_sorts_by_due_time_and_round_trips() {
        let early = outbox(5, "msg_b");
        let late = outbox(256, "msg_a");
        assert!(early < late, "due time dominates the order");
        assert_eq!(parse_outbox(&late), Some((256, "msg_a".to_string())));
        assert_eq!(parse_outbox(b"Q12"), None);
        assert!(!webhook("ab", "c").starts_with(&webhooks_of("a")));
        assert!(delivery("t", "wh_1", "msg_1").starts_with(&deliveries_of("t", "wh_1")));
        assert!(!delivery("t", "wh_12", "m").starts_with(&deliveries_of("t", "wh_1")));
    }

    #[test]
    fn schedule_due_keys_sort_by_due_time_and_round_trip() {
        let early = schedule_due(5, "zz", "b");
        let late = schedule_due(256, "a", "a");
        assert!(early < late, "due time dominates the order");
        assert_eq!(
            parse_schedule_due(&late),
            Some((256, "a".to_string(), "a".to_string()))
        );
        assert_eq!(parse_schedule_due(b"Z123"), None);
        assert!(!schedule("ab", "c").starts_with(&schedules_of("a")));
        assert!(schedule("a", "bc").starts_with(&schedules_of("a")));
    }

    #[test]
    fn history_sorts_by_sequence() {
        let id = [7u8; 16];
        assert!(history(&id, 2) < history(&id, 10));
        assert!(history(&id, 255) < history(&id, 256));
        assert!(history(&id, 1).starts_with(&history_of(&id)));
    }

    #[test]
    fn tenants_and_functions_do_not_overlap() {
        // "ab" + "c" must not share a prefix scan with "a" + "bc".
        assert!(!function("ab", "c").starts_with(&functions_of("a")));
        assert!(!version("t", "f", 1).starts_with(&versions_of("t", "")));
        assert!(version("t", "f", 1).starts_with(&versions_of("t", "f")));
        assert!(version("t", "f", 1) < version("t", "f", 2));
        let id = [3u8; 16];
        assert_eq!(execution_id_of(&execution("t", &id)), Some(id));
        assert!(!execution("t2", &id).starts_with(&executions_of("t")));
    }
}
