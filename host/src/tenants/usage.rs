//! What each tenant uses of its counted quotas, kept in memory so that a check costs a lock
//! and a lookup whatever the number of executions, and refused requests (429
//! `quota_exceeded`) are refused before anything is written.
//!
//! What is counted:
//! - `max_functions`: functions not deleted (an upload under a deleted name counts again).
//! - `max_active_executions`: executions running or suspended.
//! - `max_stored_bytes`: the component bytes of every stored version of its functions
//!   (`size_bytes`; a deleted function's versions stay stored, for the executions that run
//!   on them, and count until the tenant is deleted), plus, of each of its executions, the
//!   bytes of its stored record, history events and log lines (the encoded values, see
//!   `db::sizes`). Not counted: keys, and the bookkeeping records whose number other limits
//!   bound (timers, callback records, idempotency claims, stop and expiry entries, log
//!   replay markers).
//!
//! Exact across restarts and crashes: `load` derives every count from the stored records
//! at start (after recovery has written what it writes, before any activation runs), and
//! after that each change is counted right after the commit that makes it: an upload
//! (`Reservation::uploaded`), an invocation (`Reservation::invoked`: its record and first
//! event, as its batch writes them), each activation's end (`settle`: the record, and the
//! history and log entries appended since the last settle), a function's deletion and an
//! execution's deletion (`removed`, measured from the store just before). Between an
//! activation's start and its end, what it has written so far is not yet counted.
//!
//! Concurrent requests cannot overshoot a count: a request reserves what it will add
//! (`Reservation`) under the same lock that checks it, and gives the reservation back when
//! dropped unless it was kept.
//!
//! Memory: per tenant, its function names; per execution running or suspended, five
//! numbers (finished executions only add to the tenant's total).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::quota::{Quotas, Usage};
use crate::db::{self, ExecId, Store};

/// `n` and the noun, singular or plural.
fn counted(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Over a count or size quota: the message names the quota, its limit and the usage.
#[derive(Debug, PartialEq, Eq)]
pub struct Exceeded(pub String);

/// The bytes one execution takes in the store, as last counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecBytes {
    pub record: u64,
    pub history: u64,
    /// The last history event counted.
    pub history_seq: u32,
    pub logs: u64,
    /// The last log line counted.
    pub log_seq: u32,
}

impl From<db::Written> for ExecBytes {
    fn from(w: db::Written) -> Self {
        ExecBytes {
            record: w.record,
            history: w.history.bytes,
            history_seq: w.history.last_seq,
            logs: w.logs.bytes,
            log_seq: w.logs.last_seq,
        }
    }
}

impl ExecBytes {
    pub fn total(&self) -> u64 {
        self.record + self.history + self.logs
    }

    /// Everything `id` holds in the store now (`None`: no such execution).
    pub fn measure(db: &Store, tenant: &str, id: &ExecId) -> db::Result<Option<ExecBytes>> {
        let Some(record) = db.execution_size(tenant, id)? else {
            return Ok(None);
        };
        let h = db.history_bytes_after(id, 0)?;
        let l = db.log_bytes_after(id, 0)?;
        Ok(Some(ExecBytes {
            record,
            history: h.bytes,
            history_seq: h.last_seq,
            logs: l.bytes,
            log_seq: l.last_seq,
        }))
    }
}

#[derive(Default)]
struct TenantUsage {
    /// Its functions (not deleted), by name.
    functions: HashSet<String>,
    /// New names being uploaded, with how many uploads of each are under way: they count
    /// against `max_functions` until they end.
    uploading: HashMap<String, usize>,
    stored_bytes: u64,
    /// Bytes that uploads and invocations under way will add (at most).
    reserved_bytes: u64,
    /// Executions running or suspended.
    active: u64,
    /// Invocations past the check whose execution is not written yet.
    reserved_active: u64,
    /// The executions running or suspended, with their bytes as last counted.
    live: HashMap<ExecId, ExecBytes>,
}

impl TenantUsage {
    /// New names under way that are not (yet) functions.
    fn uploads_of_new_names(&self) -> usize {
        self.uploading
            .keys()
            .filter(|n| !self.functions.contains(*n))
            .count()
    }

    fn check_bytes(&self, limit: Option<u64>, adds: u64, what: &str) -> Result<(), Exceeded> {
        let Some(max) = limit else { return Ok(()) };
        let used = self.stored_bytes + self.reserved_bytes;
        if used.saturating_add(adds) <= max {
            return Ok(());
        }
        let pending = match self.reserved_bytes {
            0 => String::new(),
            n => format!(" (and {n} more are being written)"),
        };
        Err(Exceeded(format!(
            "max_stored_bytes: the tenant stores {} bytes{pending} and {what} adds {adds}, its \
             limit is {max}",
            self.stored_bytes
        )))
    }
}

/// Every tenant's usage.
#[derive(Default)]
pub struct Counters {
    tenants: Mutex<HashMap<String, TenantUsage>>,
}

impl Counters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantUsage>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with<R>(&self, tenant: &str, f: impl FnOnce(&mut TenantUsage) -> R) -> R {
        let mut all = self.lock();
        match all.get_mut(tenant) {
            Some(t) => f(t),
            None => f(all.entry(tenant.to_string()).or_default()),
        }
    }

    /// Count everything from the store: the functions and versions of `tenants`, and every
    /// execution. Replaces what was counted before.
    pub fn load<'a>(
        &self,
        db: &Store,
        tenants: impl IntoIterator<Item = &'a str>,
    ) -> db::Result<()> {
        let mut all: HashMap<String, TenantUsage> = HashMap::new();
        for tenant in tenants {
            let t = all.entry(tenant.to_string()).or_default();
            for f in db.functions(tenant)? {
                for v in db.versions(tenant, &f.name)? {
                    t.stored_bytes += v.size_bytes;
                }
                if !f.deleted {
                    t.functions.insert(f.name);
                }
            }
        }
        for r in db.all_executions_sized() {
            let (rec, record) = r?;
            let h = db.history_bytes_after(&rec.id, 0)?;
            let l = db.log_bytes_after(&rec.id, 0)?;
            let bytes = ExecBytes {
                record,
                history: h.bytes,
                history_seq: h.last_seq,
                logs: l.bytes,
                log_seq: l.last_seq,
            };
            let t = all.entry(rec.tenant).or_default();
            t.stored_bytes += bytes.total();
            if !rec.status.is_terminal() {
                t.active += 1;
                t.live.insert(rec.id, bytes);
            }
        }
        *self.lock() = all;
        Ok(())
    }

    /// What `tenant` uses now (`max_concurrent_activations` is the scheduler's to say).
    pub fn usage(&self, tenant: &str) -> Usage {
        let all = self.lock();
        let Some(t) = all.get(tenant) else {
            return Usage::default();
        };
        Usage {
            max_functions: t.functions.len() as u64,
            max_stored_bytes: t.stored_bytes,
            max_active_executions: t.active,
            max_concurrent_activations: 0,
        }
    }

    /// Reserve what an upload of `name` adds: a function, if the name is new, and
    /// `bytes` (the announced size, when known) of storage.
    pub fn reserve_upload(
        &self,
        tenant: &str,
        name: &str,
        bytes: Option<u64>,
        q: &Quotas,
    ) -> Result<Reservation<'_>, Exceeded> {
        let new_name = self.with(tenant, |t| {
            let new_name = !t.functions.contains(name);
            if new_name && !t.uploading.contains_key(name) {
                if let Some(max) = q.max_functions {
                    let (has, starting) = (t.functions.len(), t.uploads_of_new_names());
                    if (has + starting) as u64 >= max {
                        let starting = match starting {
                            0 => String::new(),
                            n => format!(" and {n} more being uploaded"),
                        };
                        let has = counted(has as u64, "function", "functions");
                        return Err(Exceeded(format!(
                            "max_functions: the tenant has {has}{starting}, its limit is {max}"
                        )));
                    }
                }
            }
            let bytes = bytes.unwrap_or(0);
            t.check_bytes(q.max_stored_bytes, bytes, "this upload")?;
            t.reserved_bytes += bytes;
            if new_name {
                *t.uploading.entry(name.to_string()).or_default() += 1;
            }
            Ok(new_name)
        })?;
        Ok(Reservation {
            counters: self,
            tenant: tenant.to_string(),
            name: Some(name.to_string()),
            new_name,
            bytes: bytes.unwrap_or(0),
            active: 0,
        })
    }

    /// Reserve what an invocation adds: an active execution, and `input_bytes` of storage
    /// (its record and first event hold the input; the exact bytes are counted once they
    /// are written).
    pub fn reserve_execution(
        &self,
        tenant: &str,
        input_bytes: u64,
        q: &Quotas,
    ) -> Result<Reservation<'_>, Exceeded> {
        self.with(tenant, |t| {
            if let Some(max) = q.max_active_executions {
                let n = t.active + t.reserved_active;
                if n >= max {
                    let n = counted(n, "execution", "executions");
                    return Err(Exceeded(format!(
                        "max_active_executions: the tenant has {n} running or suspended, its \
                         limit is {max}"
                    )));
                }
            }
            t.check_bytes(q.max_stored_bytes, input_bytes, "the input")?;
            t.reserved_active += 1;
            t.reserved_bytes += input_bytes;
            Ok(())
        })?;
        Ok(Reservation {
            counters: self,
            tenant: tenant.to_string(),
            name: None,
            new_name: false,
            bytes: input_bytes,
            active: 1,
        })
    }

    /// Count what an activation of `id` changed: its record now, and what it appended to
    /// its history and logs. An execution that has `ended` (the activation said so, or its
    /// record is gone) stops counting as active; its bytes stay until it is deleted. Call
    /// once the activation has ended, so that no other activation of `id` runs meanwhile
    /// (the scheduler's guarantee). Costs a read of the record's size and two range reads
    /// of what is new, no decoding.
    pub fn settle(&self, db: &Store, tenant: &str, id: &ExecId, ended: bool) -> db::Result<()> {
        let Some(before) = self
            .lock()
            .get(tenant)
            .and_then(|t| t.live.get(id).copied())
        else {
            return Ok(()); // not active (already ended, or not counted)
        };
        let record = db.execution_size(tenant, id)?;
        // Ended, unless it was redriven since (`recovery`): then it is active still.
        let ended = ended
            && db
                .execution(tenant, id)?
                .is_none_or(|r| r.status.is_terminal());
        let h = db.history_bytes_after(id, before.history_seq)?;
        let l = db.log_bytes_after(id, before.log_seq)?;
        let mut all = self.lock();
        let Some(t) = all.get_mut(tenant) else {
            return Ok(());
        };
        // Deleted meanwhile, or counted by another settle: that one's count stands.
        if t.live.get(id) != Some(&before) {
            return Ok(());
        }
        let (ended, after) = match record {
            None => (true, ExecBytes::default()),
            Some(record) => (
                ended,
                ExecBytes {
                    record,
                    history: before.history + h.bytes,
                    history_seq: h.last_seq,
                    logs: before.logs + l.bytes,
                    log_seq: l.last_seq,
                },
            ),
        };
        t.stored_bytes = (t.stored_bytes + after.total()).saturating_sub(before.total());
        if ended {
            t.live.remove(id);
            t.active = t.active.saturating_sub(1);
        } else {
            t.live.insert(*id, after);
        }
        Ok(())
    }

    /// A finished execution taking `bytes` was deleted (its retention ended).
    pub fn removed(&self, tenant: &str, id: &ExecId, bytes: u64) {
        self.with(tenant, |t| {
            if t.live.remove(id).is_some() {
                t.active = t.active.saturating_sub(1);
            }
            t.stored_bytes = t.stored_bytes.saturating_sub(bytes);
        });
    }

    /// `name` was deleted (its versions stay stored, and counted).
    pub fn function_deleted(&self, tenant: &str, name: &str) {
        self.with(tenant, |t| t.functions.remove(name));
    }

    /// Forget a deleted tenant.
    pub fn forget(&self, tenant: &str) {
        self.lock().remove(tenant);
    }
}

/// What a request under way will add, counted against the quotas until it is kept (the
/// change was committed) or dropped (it was not: given back).
#[must_use]
pub struct Reservation<'a> {
    counters: &'a Counters,
    tenant: String,
    name: Option<String>,
    /// `name` is a new name this reservation counts in `uploading`.
    new_name: bool,
    bytes: u64,
    active: u64,
}

impl Reservation<'_> {
    /// Reserve `bytes` more (an upload's size, once known), within `max_stored_bytes`.
    pub fn add_bytes(&mut self, bytes: u64, q: &Quotas) -> Result<(), Exceeded> {
        self.counters.with(&self.tenant, |t| {
            t.check_bytes(q.max_stored_bytes, bytes, "this upload")?;
            t.reserved_bytes += bytes;
            Ok(())
        })?;
        self.bytes += bytes;
        Ok(())
    }

    /// The upload was stored: as a new version of `size_bytes` (`created`), or it was the
    /// latest version's bytes again (nothing added). The function exists either way.
    pub fn uploaded(self, created: bool, size_bytes: u64) {
        if let Some(name) = &self.name {
            self.counters.with(&self.tenant, |t| {
                t.functions.insert(name.clone());
                if created {
                    t.stored_bytes += size_bytes;
                }
            });
        }
    }

    /// The execution `id` was written, taking `bytes`: it counts as active from now on.
    pub fn invoked(self, id: ExecId, bytes: ExecBytes) {
        self.counters.with(&self.tenant, |t| {
            t.active += 1;
            t.stored_bytes += bytes.total();
            t.live.insert(id, bytes);
        });
    }
}

impl Reservation<'_> {
    /// The finished execution `id` was redriven (`recovery`): it counts as active again,
    /// and what the redrive wrote (its bytes `before` and `after` it) is counted.
    /// If the activation that ended it has not been settled yet, it still counts as active
    /// (and that settle, finding it running, keeps it so).
    pub fn redriven(self, id: ExecId, before: ExecBytes, after: ExecBytes) {
        self.counters.with(&self.tenant, |t| {
            let counted = match t.live.insert(id, after) {
                Some(live) => live,
                None => {
                    t.active += 1;
                    before
                }
            };
            t.stored_bytes = (t.stored_bytes + after.total()).saturating_sub(counted.total());
        });
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let (name, new_name, bytes, active) =
            (self.name.take(), self.new_name, self.bytes, self.active);
        self.counters.with(&self.tenant, |t| {
            t.reserved_bytes = t.reserved_bytes.saturating_sub(bytes);
            t.reserved_active = t.reserved_active.saturating_sub(active);
            if let (Some(name), true) = (name, new_name) {
                if let Some(n) = t.uploading.get_mut(&name) {
                    *n -= 1;
                    if *n == 0 {
                        t.uploading.remove(&name);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{
        Batch, Durability, ExecutionRecord, FunctionRecord, LogLevel, LogRecord, LogStream, Status,
        VersionRecord,
    };
    use crate::journal::{EventKind, Journal};

    fn quotas(f: impl FnOnce(&mut Quotas)) -> Quotas {
        let mut q = Quotas::default();
        f(&mut q);
        q
    }

    #[test]
    fn concurrent_invocations_never_pass_max_active_executions() {
        let c = Counters::default();
        let q = quotas(|q| q.max_active_executions = Some(5));
        let kept = std::sync::Mutex::new(Vec::new());
        let refused = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| match c.reserve_execution("t", 10, &q) {
                    Ok(r) => kept.lock().unwrap().push(r),
                    Err(e) => {
                        assert_eq!(
                            e.0,
                            "max_active_executions: the tenant has 5 executions running or \
                             suspended, its limit is 5"
                        );
                        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        let kept = kept.into_inner().unwrap();
        assert_eq!((kept.len(), refused.into_inner()), (5, 11));
        // Two were written, three failed: the three are given back.
        let mut kept = kept.into_iter();
        for n in 0..2u8 {
            kept.next().unwrap().invoked([n; 16], ExecBytes::default());
        }
        drop(kept);
        assert_eq!(c.usage("t").max_active_executions, 2);
        let more: Vec<_> = (0..3)
            .map(|_| c.reserve_execution("t", 10, &q).unwrap())
            .collect();
        assert!(c.reserve_execution("t", 10, &q).is_err());
        drop(more);
        // Another tenant counts on its own.
        assert!(c.reserve_execution("u", 10, &q).is_ok());
    }

    #[test]
    fn a_redriven_execution_counts_as_active_once_whether_or_not_its_end_was_settled() {
        let q = quotas(|q| q.max_active_executions = Some(1));
        let bytes = |history: u64| ExecBytes {
            record: 10,
            history,
            ..Default::default()
        };
        // (its end settled before the redrive, usage after the redrive)
        for settled in [true, false] {
            let c = Counters::default();
            c.reserve_execution("t", 0, &q)
                .unwrap()
                .invoked([1; 16], bytes(5));
            if settled {
                c.with("t", |t| {
                    t.live.remove(&[1; 16]);
                    t.active -= 1;
                    t.stored_bytes += 3; // its last activation's events
                });
                c.reserve_execution("t", 0, &q)
                    .expect("room: it has ended")
                    .redriven([1; 16], bytes(8), bytes(12));
            } else {
                // Still counted: no room for another, but a redrive's write is counted.
                let r = Reservation {
                    counters: &c,
                    tenant: "t".into(),
                    name: None,
                    new_name: false,
                    bytes: 0,
                    active: 0,
                };
                r.redriven([1; 16], bytes(8), bytes(12));
            }
            let u = c.usage("t");
            let got = (u.max_active_executions, u.max_stored_bytes);
            assert_eq!(got, (1, 22), "settled first: {settled}");
        }
    }

    #[test]
    fn a_function_name_counts_once_and_reuploads_need_no_room() {
        let c = Counters::default();
        let q = quotas(|q| {
            q.max_functions = Some(1);
            q.max_stored_bytes = Some(25);
        });
        let mut first = c.reserve_upload("t", "a", None, &q).unwrap();
        // The same new name twice at once takes one function.
        let second = c.reserve_upload("t", "a", None, &q).unwrap();
        let e = c.reserve_upload("t", "b", None, &q).err().unwrap();
        assert_eq!(
            e.0,
            "max_functions: the tenant has 0 functions and 1 more being uploaded, its limit is 1"
        );
        first.add_bytes(10, &q).unwrap();
        first.uploaded(true, 10);
        drop(second);
        assert_eq!(c.usage("t").max_functions, 1);
        assert_eq!(c.usage("t").max_stored_bytes, 10);
        let mut again = c.reserve_upload("t", "a", None, &q).expect("a re-upload");
        let e = again.add_bytes(16, &q).unwrap_err();
        assert_eq!(
            e.0,
            "max_stored_bytes: the tenant stores 10 bytes and this upload adds 16, its limit is 25"
        );
        again.add_bytes(15, &q).unwrap();
        drop(again); // failed: nothing stored
        assert_eq!(c.usage("t").max_stored_bytes, 10);
        let e = c.reserve_upload("t", "b", None, &q).err().unwrap();
        assert_eq!(
            e.0,
            "max_functions: the tenant has 1 function, its limit is 1"
        );
        c.function_deleted("t", "a");
        c.reserve_upload("t", "b", None, &q)
            .expect("room again")
            .uploaded(true, 5);
        let u = c.usage("t");
        assert_eq!(
            (u.max_functions, u.max_stored_bytes),
            (1, 15),
            "versions stay"
        );
    }

    /// One execution's life in the store, counted as it goes; at every step a count from
    /// the store (what a start after kill -9 does) must give the same usage.
    #[tokio::test]
    async fn counting_as_it_goes_agrees_with_counting_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = Store::open(dir.path(), 1 << 20).unwrap();
        let c = Counters::default();
        let q = Quotas::default();
        let agree = |c: &Counters, step: &str| {
            let fresh = Counters::default();
            fresh.load(&db, ["t"]).unwrap();
            assert_eq!(c.usage("t"), fresh.usage("t"), "after {step}");
            c.usage("t")
        };

        // A function with a version of 1,000 bytes.
        let r = c.reserve_upload("t", "f", Some(1000), &q).unwrap();
        let mut batch = Batch::new();
        let f = FunctionRecord {
            name: "f".into(),
            created_ms: 0,
            latest_version: 1,
            deleted: false,
            settings: Default::default(),
        };
        batch.put_function("t", &f);
        let v = VersionRecord {
            version: 1,
            sha256: "00".into(),
            size_bytes: 1000,
            created_ms: 0,
        };
        batch.put_version("t", "f", &v);
        db.commit(batch, Durability::Lazy).await.unwrap();
        r.uploaded(true, 1000);
        assert_eq!(agree(&c, "an upload").max_stored_bytes, 1000);

        // Invoked: its record and first event.
        let id = [4u8; 16];
        let mut rec = ExecutionRecord {
            id,
            tenant: "t".into(),
            function: "f".into(),
            version: 1,
            status: Status::Running,
            input: "\"in\"".into(),
            output: None,
            error: None,
            created_ms: 0,
            updated_ms: 0,
            deadline_ms: None,
            idempotency_key: None,
            ended_ms: None,
            redrive_count: 0,
            forked_from: None,
            expires_ms: None,
            trace: None,
            parent_execution_id: None,
        };
        let mut journal = Journal::from_events(&[]);
        let r = c.reserve_execution("t", 4, &q).unwrap();
        let mut batch = Batch::new();
        batch.put_execution(&rec);
        let e = journal.record(
            0,
            EventKind::ExecutionStarted {
                input: rec.input.clone(),
            },
        );
        batch.put_event(&id, &e);
        let written = batch.written_for("t", &id);
        db.commit(batch, Durability::Lazy).await.unwrap();
        assert_eq!(
            ExecBytes::from(written),
            ExecBytes::measure(&db, "t", &id).unwrap().unwrap(),
            "what the batch writes is what the store holds"
        );
        r.invoked(id, written.into());
        let u = agree(&c, "an invocation");
        assert_eq!(u.max_active_executions, 1);
        assert!(u.max_stored_bytes > 1000);

        // Activations: events and log lines appended, the record rewritten, then the end.
        let steps = [
            (Status::Suspended, 3, 2),
            (Status::Running, 1, 0),
            (Status::Succeeded, 2, 5),
        ];
        let mut log_seq = 0;
        for (n, (status, events, lines)) in steps.into_iter().enumerate() {
            let mut batch = Batch::new();
            for i in 0..events {
                let e = journal.record(
                    0,
                    EventKind::ExecutionStarted {
                        input: "x".repeat(i * 100),
                    },
                );
                batch.put_event(&id, &e);
            }
            for _ in 0..lines {
                log_seq += 1;
                let line = LogRecord {
                    at_ms: 0,
                    level: LogLevel::Info,
                    stream: LogStream::Log,
                    message: "y".repeat(log_seq as usize * 10),
                    op_id: None,
                    position: log_seq.to_string(),
                };
                batch.put_log(&id, log_seq, &line);
            }
            rec.status = status;
            if status == Status::Succeeded {
                rec.output = Some("\"a longer output than the input\"".into());
            }
            batch.put_execution(&rec);
            db.commit(batch, Durability::Lazy).await.unwrap();
            c.settle(&db, "t", &id, status.is_terminal()).unwrap();
            agree(&c, &format!("activation {n}"));
        }
        let u = c.usage("t");
        assert_eq!(u.max_active_executions, 0, "ended");
        let measured = ExecBytes::measure(&db, "t", &id).unwrap().unwrap();
        assert_eq!(u.max_stored_bytes, 1000 + measured.total());
        // A settle after the end changes nothing.
        c.settle(&db, "t", &id, true).unwrap();
        assert_eq!(c.usage("t"), u);

        // Its retention ends.
        db.delete_execution("t", &id, 0).await.unwrap().unwrap();
        c.removed("t", &id, measured.total());
        assert_eq!(agree(&c, "the deletion").max_stored_bytes, 1000);
    }
}
