//! Persistence: the only module that imports sled.
//!
//! Owns the on-disk layout (one `data` tree with tagged keys, see `keys`; one `components`
//! tree for content-addressed component bytes), record encoding, atomic batches and group
//! commit. A `Batch` is applied atomically (one sled `apply_batch` on one tree) by the one
//! commit thread; `Durability::Sync` returns once it is on disk (sled flush + fdatasync of
//! its log), and concurrent durable writers share one flush.
//!
//! Architecture invariant: callers never see sled types; durability is explicit (`commit`
//! with `Durability::Sync` returns only after fsync).

pub mod keys;
mod records;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::oneshot;

use crate::journal::Event;
pub use keys::ExecId;
pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: corrupt record under {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("storage: the sync task has stopped")]
    SyncStopped,
    #[error("storage: fsync failed: {0}")]
    Sync(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Record encoding: one format byte, then postcard. The byte lets a later release read
/// records written by this one.
const FORMAT: u8 = 1;

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_stdvec(v).expect("records always serialize"));
    out
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown format {v}"))),
        None => Err(corrupt("empty".into())),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Applied in memory; on disk at the next sync (or sled's background flush).
    Lazy,
    /// On disk before `commit` returns.
    Sync,
}

/// Writes applied together, atomically.
#[derive(Default)]
pub struct Batch {
    inner: sled::Batch,
    len: usize,
    /// Executions whose history or record this batch changes: their watchers are told.
    touched: Vec<ExecId>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn put<T: Serialize>(&mut self, key: Vec<u8>, v: &T) {
        self.inner.insert(key, encode(v));
        self.len += 1;
    }

    fn del(&mut self, key: Vec<u8>) {
        self.inner.remove(key);
        self.len += 1;
    }

    pub fn put_event(&mut self, id: &ExecId, e: &Event) {
        self.put(keys::history(id, e.seq), e);
        self.touch(id);
    }

    pub fn put_execution(&mut self, rec: &ExecutionRecord) {
        self.put(keys::execution(&rec.tenant, &rec.id), rec);
        self.touch(&rec.id);
    }

    fn touch(&mut self, id: &ExecId) {
        if !self.touched.contains(id) {
            self.touched.push(*id);
        }
    }

    pub fn put_function(&mut self, tenant: &str, rec: &FunctionRecord) {
        self.put(keys::function(tenant, &rec.name), rec);
    }

    pub fn put_version(&mut self, tenant: &str, name: &str, rec: &VersionRecord) {
        self.put(keys::version(tenant, name, rec.version), rec);
    }

    pub fn put_timer(&mut self, due_ms: u64, id: &ExecId, op_id: &str, rec: &TimerRecord) {
        self.put(keys::timer(due_ms, id, op_id), rec);
    }

    pub fn del_timer(&mut self, due_ms: u64, id: &ExecId, op_id: &str) {
        self.del(keys::timer(due_ms, id, op_id));
    }

    pub fn put_callback(&mut self, callback_id: &str, rec: &CallbackRecord) {
        self.put(keys::callback(callback_id), rec);
    }

    /// A stop request: who asked, for the `ExecutionStopped` event.
    pub fn put_stop(&mut self, id: &ExecId, rec: &StopRecord) {
        self.put(keys::stop(id), rec);
    }

    pub fn del_stop(&mut self, id: &ExecId) {
        self.del(keys::stop(id));
    }

    /// Delete the finished execution `id` at `at_ms` (its retention).
    pub fn put_expiry(&mut self, at_ms: u64, id: &ExecId, rec: &ExpiryRecord) {
        self.put(keys::expiry(at_ms, id), rec);
    }

    pub fn put_log(&mut self, id: &ExecId, seq: u32, rec: &LogRecord) {
        self.put(keys::log(id, seq), rec);
        self.inner
            .insert(keys::log_seen(id, &rec.position), &[][..]);
        self.len += 1;
    }
}

/// The database: cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    data: sled::Tree,
    components: sled::Tree,
    committer: std::sync::mpsc::Sender<CommitRequest>,
    stats: Arc<SyncStats>,
    watchers: Arc<Watchers>,
}

/// Per-execution change counters, bumped by the commit thread after it applies a batch that
/// touches the execution: live history streams wait on them instead of polling.
type Watchers = std::sync::Mutex<HashMap<ExecId, tokio::sync::watch::Sender<u64>>>;

/// A subscription to one execution's changes; `changed` returns after a batch that appends
/// to its history or rewrites its record has been applied.
pub struct Watch {
    id: ExecId,
    rx: tokio::sync::watch::Receiver<u64>,
    watchers: Arc<Watchers>,
}

impl Watch {
    /// Mark everything so far as seen; the next `changed` waits for a later batch.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    pub async fn changed(&mut self) {
        // The sender lives in the map until the last watch is dropped.
        let _ = self.rx.changed().await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        // Our own receiver is still counted.
        if map.get(&self.id).is_some_and(|tx| tx.receiver_count() <= 1) {
            map.remove(&self.id);
        }
    }
}

/// A batch (possibly empty) for the commit thread, and who to tell when it is applied (and,
/// for `Durability::Sync`, on disk).
struct CommitRequest {
    batch: Option<sled::Batch>,
    touched: Vec<ExecId>,
    durability: Durability,
    done: oneshot::Sender<std::result::Result<(), String>>,
}

/// Group-commit counters, for metrics and benchmarks.
#[derive(Default)]
pub struct SyncStats {
    pub fsyncs: std::sync::atomic::AtomicU64,
    pub sync_requests: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Open (or create) the database under `dir`, and start its commit thread.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            // Durability comes from explicit syncs; the background flush only bounds how
            // much lazily-written data (logs, at-least-once step starts) a crash can lose.
            .flush_every_ms(Some(500))
            .cache_capacity(64 * 1024 * 1024)
            .open()?;
        let data = db.open_tree("data")?;
        let components = db.open_tree("components")?;
        // sled's own flush ends in sync_file_range, which neither flushes the device cache
        // nor the file's metadata: durability needs an fdatasync of its log file as well.
        let log_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("db"))
            .map_err(|e| Error::Sync(format!("open {}: {e}", dir.join("db").display())))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(SyncStats::default());
        let watchers = Arc::new(Watchers::default());
        {
            let (db, data, stats) = (db.clone(), data.clone(), stats.clone());
            let watchers = watchers.clone();
            std::thread::Builder::new()
                .name("db-commit".into())
                .spawn(move || commit_loop(db, data, log_file, rx, stats, &watchers))
                .map_err(|e| Error::Sync(e.to_string()))?;
        }
        Ok(Self {
            db,
            data,
            components,
            committer: tx,
            stats,
            watchers,
        })
    }

    /// Subscribe to changes of one execution's history and record.
    pub fn watch(&self, id: &ExecId) -> Watch {
        let mut map = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let rx = map
            .entry(*id)
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe();
        Watch {
            id: *id,
            rx,
            watchers: self.watchers.clone(),
        }
    }

    pub fn sync_stats(&self) -> &SyncStats {
        &self.stats
    }

    /// Make every write applied so far durable. Concurrent callers share one fsync.
    pub async fn sync(&self) -> Result<()> {
        self.submit(None, Vec::new(), Durability::Sync).await
    }

    /// Apply a batch atomically; with `Durability::Sync`, return once it is on disk.
    ///
    /// Batches are applied by one commit thread, never on the async executor: sled blocks a
    /// writer while it flushes, and an executor thread must not wait on a disk.
    pub async fn commit(&self, batch: Batch, durability: Durability) -> Result<()> {
        if batch.is_empty() && durability == Durability::Lazy {
            return Ok(());
        }
        let touched = batch.touched;
        let batch = (batch.len > 0).then_some(batch.inner);
        self.submit(batch, touched, durability).await
    }

    async fn submit(
        &self,
        batch: Option<sled::Batch>,
        touched: Vec<ExecId>,
        durability: Durability,
    ) -> Result<()> {
        if durability == Durability::Sync {
            self.stats
                .sync_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (done, rx) = oneshot::channel();
        self.committer
            .send(CommitRequest {
                batch,
                touched,
                durability,
                done,
            })
            .map_err(|_| Error::SyncStopped)?;
        rx.await
            .map_err(|_| Error::SyncStopped)?
            .map_err(Error::Sync)
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.data.get(key)? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(sled::IVec, T)>> + '_ {
        self.data.scan_prefix(prefix).map(|r| {
            let (k, v) = r?;
            let t = decode(&k, &v)?;
            Ok((k, t))
        })
    }

    // ---- components (content-addressed bytes) ----

    pub fn put_component(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        self.components.insert(sha256.as_bytes(), bytes)?;
        Ok(())
    }

    pub fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.components.get(sha256.as_bytes())?.map(|v| v.to_vec()))
    }

    // ---- functions and versions ----

    pub fn function(&self, tenant: &str, name: &str) -> Result<Option<FunctionRecord>> {
        self.get(&keys::function(tenant, name))
    }

    pub fn functions(&self, tenant: &str) -> Result<Vec<FunctionRecord>> {
        self.scan(&keys::functions_of(tenant))
            .map(|r| r.map(|(_, v)| v))
            .collect()
    }

    pub fn version(&self, tenant: &str, name: &str, version: u32) -> Result<Option<VersionRecord>> {
        self.get(&keys::version(tenant, name, version))
    }

    pub fn versions(&self, tenant: &str, name: &str) -> Result<Vec<VersionRecord>> {
        self.scan(&keys::versions_of(tenant, name))
            .map(|r| r.map(|(_, v)| v))
            .collect()
    }

    // ---- executions ----

    pub fn execution(&self, tenant: &str, id: &ExecId) -> Result<Option<ExecutionRecord>> {
        self.get(&keys::execution(tenant, id))
    }

    /// Every execution of `tenant`, newest first (ids are time-ordered).
    pub fn executions(&self, tenant: &str) -> impl Iterator<Item = Result<ExecutionRecord>> + '_ {
        self.scan(&keys::executions_of(tenant))
            .rev()
            .map(|r| r.map(|(_, v)| v))
    }

    /// Every execution of every tenant (start-up recovery and metrics).
    pub fn all_executions(&self) -> impl Iterator<Item = Result<ExecutionRecord>> + '_ {
        self.scan(&[keys::EXECUTION]).map(|r| r.map(|(_, v)| v))
    }

    pub fn history(&self, id: &ExecId) -> Result<Vec<Event>> {
        self.history_after(id, 0, usize::MAX)
    }

    /// Up to `limit` events with `event_id > after`, in order.
    pub fn history_after(&self, id: &ExecId, after: u32, limit: usize) -> Result<Vec<Event>> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.data
            .range(keys::history(id, from)..)
            .take_while(|r| {
                r.as_ref()
                    .map_or(true, |(k, _)| k.starts_with(&keys::history_of(id)))
            })
            .take(limit)
            .map(|r| {
                let (k, v) = r?;
                decode(&k, &v)
            })
            .collect()
    }

    // ---- logs ----

    pub fn logs(&self, id: &ExecId) -> Result<Vec<LogRecord>> {
        self.scan(&keys::logs_of(id))
            .map(|r| r.map(|(_, v)| v))
            .collect()
    }

    /// The sequence number for the next log line of an execution.
    pub fn next_log_seq(&self, id: &ExecId) -> Result<u32> {
        match self.data.scan_prefix(keys::logs_of(id)).next_back() {
            Some(r) => {
                let (k, _) = r?;
                let seq = u32::from_be_bytes(k[k.len() - 4..].try_into().expect("4 bytes"));
                Ok(seq + 1)
            }
            None => Ok(1),
        }
    }

    /// Whether a log line at this replay position was recorded already.
    pub fn log_seen(&self, id: &ExecId, position: &str) -> Result<bool> {
        Ok(self.data.contains_key(keys::log_seen(id, position))?)
    }

    // ---- timers ----

    /// Every timer, in due order.
    /// Timers due in `from_ms..=until_ms`, in due order.
    pub fn timers_between(
        &self,
        from_ms: u64,
        until_ms: u64,
    ) -> impl Iterator<Item = Result<(u64, ExecId, String, TimerRecord)>> + '_ {
        let at = |ms: u64| {
            let mut k = keys::timers();
            k.extend_from_slice(&ms.to_be_bytes());
            k
        };
        let range = match until_ms.checked_add(1) {
            Some(end) => self.data.range(at(from_ms)..at(end)),
            None => self.data.range(at(from_ms)..vec![keys::TIMER + 1]),
        };
        range.filter_map(|r| {
            let (k, v) = match r {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let (due, id, op) = keys::parse_timer(&k)?;
            Some(decode(&k, &v).map(|rec| (due, id, op, rec)))
        })
    }

    // ---- retention ----

    /// Up to `limit` executions whose retention ended at or before `now_ms`, oldest first.
    pub fn expired(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, ExecId, ExpiryRecord)>> {
        self.data
            .range(keys::expiry(0, &[0; 16])..keys::expiry(now_ms.saturating_add(1), &[0; 16]))
            .take(limit)
            .map(|r| {
                let (k, v) = r?;
                let (at, id) = keys::parse_expiry(&k).ok_or_else(|| Error::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "bad expiry key".into(),
                })?;
                Ok((at, id, decode(&k, &v)?))
            })
            .collect()
    }

    /// Delete a finished execution with everything it owns: record, history, logs, the
    /// callbacks it created, its idempotency key and its expiry entry. One atomic batch.
    /// Returns the status it had, or `None` if it was already gone.
    pub async fn delete_execution(
        &self,
        tenant: &str,
        id: &ExecId,
        expiry_ms: u64,
    ) -> Result<Option<Status>> {
        let mut batch = Batch::new();
        batch.del(keys::expiry(expiry_ms, id));
        let rec = self.execution(tenant, id)?;
        let Some(rec) = rec.filter(|r| r.status.is_terminal()) else {
            self.commit(batch, Durability::Lazy).await?;
            return Ok(None);
        };
        for prefix in [
            keys::history_of(id),
            keys::logs_of(id),
            keys::log_seen_of(id),
        ] {
            for k in self.data.scan_prefix(&prefix).keys() {
                batch.del(k?.to_vec());
            }
        }
        for e in self.history(id)? {
            if let crate::journal::EventKind::CallbackStarted { callback_id, .. } = &e.kind {
                batch.del(keys::callback(callback_id));
            }
        }
        if let Some(key) = &rec.idempotency_key {
            let k = keys::idempotency(tenant, &rec.function, key);
            // Only if the key still names this execution (a later one may have taken it over).
            if self
                .get::<IdempotencyRecord>(&k)?
                .is_some_and(|held| held.execution == *id)
            {
                batch.del(k);
            }
        }
        batch.del(keys::stop(id));
        batch.del(keys::execution(tenant, id));
        batch.touch(id);
        self.commit(batch, Durability::Lazy).await?;
        Ok(Some(rec.status))
    }

    // ---- stop requests ----

    pub fn stop_request(&self, id: &ExecId) -> Result<Option<StopRecord>> {
        self.get(&keys::stop(id))
    }

    /// Every pending stop request: (tenant, execution id).
    pub fn stop_requests(&self) -> impl Iterator<Item = Result<(ExecId, StopRecord)>> + '_ {
        self.scan(&keys::stops()).map(|r| {
            r.and_then(|(k, v): (sled::IVec, StopRecord)| {
                let id: ExecId = k[1..].try_into().map_err(|_| Error::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "bad stop key".into(),
                })?;
                Ok((id, v))
            })
        })
    }

    // ---- callbacks ----

    pub fn callback(&self, callback_id: &str) -> Result<Option<CallbackRecord>> {
        self.get(&keys::callback(callback_id))
    }

    pub fn callbacks(&self) -> impl Iterator<Item = Result<(String, CallbackRecord)>> + '_ {
        self.scan(&keys::callbacks())
            .map(|r| r.map(|(k, v)| (String::from_utf8_lossy(&k[1..]).into_owned(), v)))
    }

    /// Atomically replace a callback record if it still equals `expected` (compare and
    /// swap), so two completions racing for one callback cannot both win.
    pub fn swap_callback(
        &self,
        callback_id: &str,
        expected: &CallbackRecord,
        new: &CallbackRecord,
    ) -> Result<bool> {
        let key = keys::callback(callback_id);
        let res = self
            .data
            .compare_and_swap(key, Some(encode(expected)), Some(encode(new)))?;
        Ok(res.is_ok())
    }

    /// Claim an idempotency key for `rec` unless it is taken: `Ok(None)` when claimed
    /// (durably: fsynced), `Ok(Some(existing))` when another invocation holds it. With
    /// `replace`, a stale claim (its execution was never created, e.g. a crash in between) is
    /// taken over only if it still equals `replace`.
    pub async fn claim_idempotency(
        &self,
        tenant: &str,
        function: &str,
        key: &str,
        rec: &IdempotencyRecord,
        replace: Option<&IdempotencyRecord>,
    ) -> Result<Option<IdempotencyRecord>> {
        let k = keys::idempotency(tenant, function, key);
        let mut expected = replace.map(encode);
        loop {
            match self
                .data
                .compare_and_swap(&k, expected.take(), Some(encode(rec)))?
            {
                Ok(()) => {
                    self.sync().await?;
                    return Ok(None);
                }
                Err(cas) => match cas.current {
                    Some(v) => return decode(&k, &v).map(Some),
                    // The claim to replace vanished: claim a free key (this CAS expects
                    // nothing, so it cannot loop again on `None`).
                    None => expected = None,
                },
            }
        }
    }

    /// Bytes on disk (for metrics).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// The group commit: take every pending request, apply their batches in arrival order,
/// answer the lazy ones, then make everything durable with one flush + fdatasync and answer
/// the rest. A request that arrives during a flush is served by the next round, so every
/// write applied before a durable request was made is on disk when it is answered.
fn commit_loop(
    db: sled::Db,
    data: sled::Tree,
    log_file: std::fs::File,
    rx: std::sync::mpsc::Receiver<CommitRequest>,
    stats: Arc<SyncStats>,
    watchers: &Watchers,
) {
    let mut durable = Vec::new();
    let mut durable_touched = Vec::new();
    // Watchers hear of a change once readers can see it and, for a durable batch, once it is
    // on disk: a live stream never shows what a crash could take back.
    let notify = |touched: &[ExecId]| {
        if touched.is_empty() {
            return;
        }
        let map = watchers.lock().unwrap_or_else(|p| p.into_inner());
        for id in touched {
            if let Some(tx) = map.get(id) {
                tx.send_modify(|n| *n += 1);
            }
        }
    };
    while let Ok(first) = rx.recv() {
        let mut pending = vec![first];
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        for req in pending {
            let applied = match req.batch {
                Some(b) => data.apply_batch(b).map_err(|e| e.to_string()),
                None => Ok(()),
            };
            match (applied, req.durability) {
                (Ok(()), Durability::Sync) => {
                    durable.push(req.done);
                    durable_touched.extend(req.touched);
                }
                (res, _) => {
                    if res.is_ok() {
                        notify(&req.touched);
                    }
                    let _ = req.done.send(res);
                }
            }
        }
        if durable.is_empty() {
            continue;
        }
        let res = db
            .flush()
            .map(|_| ())
            .map_err(|e| e.to_string())
            .and_then(|()| log_file.sync_data().map_err(|e| e.to_string()));
        stats
            .fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = &res {
            tracing::error!(error = %e, "fsync failed");
        }
        notify(&durable_touched);
        durable_touched.clear();
        for done in durable.drain(..) {
            let _ = done.send(res.clone());
        }
    }
}
