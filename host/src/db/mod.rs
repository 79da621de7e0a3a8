//! Persistence: the only module that imports sled.
//!
//! Owns the on-disk layout (one `data` tree with tagged keys, see `keys`; one `components`
//! tree for content-addressed component bytes, in chunks), record encoding, atomic batches
//! and group commit. Every write goes through the one commit thread: it appends the batch to
//! the write-ahead log (`wal`) and applies it to sled (one `apply_batch`, atomic);
//! `Durability::Sync` returns once the log is fdatasynced, and concurrent durable writers
//! share one fdatasync. sled itself is flushed only at checkpoints, which write the
//! `manifest` (what sled then holds, checked at the next start) and empty the log.
//!
//! Durability at the point of output: most writes are applied without waiting for the disk
//! (`Durability::Lazy`, `commit_unawaited`), and what depends on them leaves the host only
//! after `Store::durable_barrier`, which returns once every write handed to the store
//! before it is on disk (at once when that is already so; concurrent callers share one
//! fdatasync). `Positions` counts the requests handed to the commit thread and how many of
//! them are durable; the log's order makes a later fdatasync cover every earlier group.
//!
//! Faults: a write refused for lack of space is `Error::Full` and nothing of it was applied;
//! the store takes writes again by itself once space returns (`storage_state`,
//! `space_available`). Other write and sync failures are fail-stop until a restart. A start
//! refuses (`Error::LostData`) a sled that holds less than the last checkpoint recorded.
//!
//! Files: this one is the `Store` (opening sled, the read API, the write API that hands work
//! to the commit thread), `Error`, `Durability`, `Watch` and storage health; `batch`, the
//! `Batch` of writes and record encoding; `commit`, the commit thread (grouping, log write,
//! apply, checkpoints, recovery, free-space probing); `sizes`, the reads of the tenants'
//! quotas (bytes stored per execution); `keys`, `records`, `wal`, `manifest`.
//!
//! Architecture invariant: callers never see sled types; nothing writes to sled except the
//! commit thread; durability is explicit (`commit` with `Durability::Sync` returns only
//! after fsync, `durable_barrier` only once everything handed over before it is on disk).

mod batch;
mod commit;
pub mod keys;
mod manifest;
mod records;
mod sizes;
mod wal;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::journal::Event;
pub use batch::Batch;
use batch::{decode, encode};
use commit::{is_no_space, no_space_message, sled_no_space};
use commit::{Applied, CommitRequest, Committer, Mode, Work};
pub use keys::ExecId;
pub use records::*;
pub use sizes::{Appended, Written};

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
    /// A write refused for lack of space: nothing of it was applied, and the store takes
    /// writes again once space returns (no restart).
    #[error("storage full: {0}")]
    Full(String),
    /// The store lost or damaged writes it had acknowledged, and refuses to serve what is
    /// left (the message says what was expected, what was found and what to do).
    #[error("storage: {0}")]
    LostData(String),
}

impl Error {
    /// A write refused for lack of space (it may be tried again once space returns).
    pub fn is_full(&self) -> bool {
        matches!(self, Error::Full(_))
    }

    /// `Full` if writing `path` failed with `e` for lack of space (for files the host keeps
    /// beside the store, e.g. uploads being received), so that callers answer it alike.
    pub fn no_space(path: &Path, e: &std::io::Error) -> Option<Self> {
        is_no_space(e).then(|| {
            let dir = path.parent().unwrap_or(path);
            Error::Full(format!("{}: {}", path.display(), no_space_message(dir)))
        })
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Applied before `commit` returns; on disk at the next fdatasync (any durable commit
    /// or `durable_barrier`) or checkpoint (<= 1 s).
    Lazy,
    /// On disk before `commit` returns.
    Sync,
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
    health: Arc<Health>,
    positions: Arc<Positions>,
}

/// How far writes have got, counted in requests to the commit thread. The channel is FIFO
/// and the commit thread takes requests in that order, so "the first `durable` requests it
/// took are on disk" and "`submitted` was read after my request was sent" together mean
/// that my request is on disk whenever `durable >= submitted`: a request sent before
/// another is never taken after it, and every send is counted before it happens.
#[derive(Default)]
pub(crate) struct Positions {
    /// Requests handed to the commit thread (counted before each is sent).
    submitted: AtomicU64,
    /// Requests the commit thread has taken (in order) and applied or refused.
    applied: AtomicU64,
    /// The first this many requests it took are on disk: set after each fdatasync of the
    /// log and each checkpoint (which makes sled hold everything applied).
    durable: AtomicU64,
}

impl Positions {
    /// The commit thread took `n` more requests and applied (or refused) them.
    pub(crate) fn applied(&self, n: usize) -> u64 {
        self.applied.fetch_add(n as u64, Ordering::SeqCst) + n as u64
    }

    /// Everything up to `applied` (a value `applied` returned) is on disk.
    pub(crate) fn durable_through(&self, applied: u64) {
        self.durable.fetch_max(applied, Ordering::SeqCst);
    }
}

/// Whether the store takes writes (`/healthz`, metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageState {
    Ok,
    /// Writes are refused for lack of space; they are taken again once space returns.
    Full,
    /// A write or sync failed in a way only a restart recovers from (fail-stop).
    Failed,
}

/// Set by the commit thread, read by everyone.
struct Health {
    /// Writes are refused for lack of space (a watch, so that waiters hear when it clears).
    full: tokio::sync::watch::Sender<bool>,
    failed: AtomicBool,
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

/// Remove the snapshots sled left half-written (`snap.*.generating`) in `dir`.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, fsyncs it and only then renames
/// it to `snap.<lsn>`, and removes older snapshots only after that rename; but at start it
/// reads the last snapshot file by name *including* `.generating` ones, so a start that
/// failed mid-write (a full disk leaves 0 bytes) makes every later start fail with "Read
/// corrupted data". A `.generating` file is by construction one whose write never
/// completed: the snapshot before it (or, if none, sled's log from the start) is intact,
/// and is what sled recovers from when a crash hits the same moment. Safe to remove while
/// no process has sled open, which sled's exclusive lock on its `db` file tells.
fn remove_incomplete_snapshots(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // a new store
    };
    let leftovers: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snap.") && n.ends_with(".generating"))
        })
        .collect();
    if leftovers.is_empty() {
        return Ok(());
    }
    let io = |what: String, e: std::io::Error| Error::Sync(format!("{what}: {e}"));
    let lock = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("db"))
    {
        Ok(f) => {
            use std::os::fd::AsRawFd;
            // The lock sled takes (fs2's `try_lock_exclusive`); released when `f` closes.
            // SAFETY: a valid open descriptor.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(Error::Sync(format!(
                        "the store in {} is open in another process",
                        dir.display()
                    )));
                }
                return Err(io(format!("lock {}", dir.join("db").display()), e));
            }
            Some(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(format!("open {}", dir.join("db").display()), e)),
    };
    for path in leftovers {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        tracing::warn!(
            path = %path.display(),
            size,
            "removing a snapshot sled never finished writing (an earlier start or \
             checkpoint failed mid-write)"
        );
        std::fs::remove_file(&path).map_err(|e| io(format!("remove {}", path.display()), e))?;
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(format!("fsync {}", dir.display()), e))?;
    drop(lock); // unlocks
    Ok(())
}

/// An error from opening sled: a full disk says so, naming it; damage says what to do.
fn opening(dir: &Path, e: sled::Error) -> Error {
    if sled_no_space(&e) {
        Error::Full(format!(
            "cannot open the store: {} ({e})",
            no_space_message(dir)
        ))
    } else if matches!(e, sled::Error::Corruption { .. }) {
        damaged(dir, &e.to_string())
    } else if matches!(&e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound) {
        // A file sled's own log points to (a blob, a segment) is missing: what a cut or
        // damaged file reads as when the bytes left parse but name what is not there.
        damaged(dir, &format!("{e}: a file they refer to is missing"))
    } else {
        Error::Sled(e)
    }
}

fn damaged(dir: &Path, why: &str) -> Error {
    Error::LostData(format!(
        "sled's files in {} are damaged and cannot be read ({why}); the store refuses to \
         start. Keep a copy of the directory for diagnosis and restore the data directory \
         from a backup",
        dir.display()
    ))
}

/// Components are stored in chunks this small: sled keeps larger values in blob files and
/// its page cache does not count their size, so it never evicted whole components from
/// memory (16 uploads of 32 MiB stayed resident, 512 MiB). Below sled's blob threshold
/// (about 128 KiB), each chunk is counted against `--db-cache-mb` like any other value.
const COMPONENT_CHUNK_BYTES: usize = 32 * 1024;

/// The key of a component's `n`th chunk: its sha256, `/`, `n` big-endian (chunks sort in
/// order, and no sha256 key of the unchunked layout starts with another's).
fn component_chunk_key(sha256: &[u8], n: u32) -> Vec<u8> {
    [sha256, b"/", &n.to_be_bytes()].concat()
}

/// Group-commit counters, for metrics and benchmarks.
#[derive(Default)]
pub struct SyncStats {
    pub fsyncs: std::sync::atomic::AtomicU64,
    pub sync_requests: std::sync::atomic::AtomicU64,
    /// Requests refused for lack of space.
    pub full_refusals: std::sync::atomic::AtomicU64,
    /// One group commit each (`durable_commit_duration_seconds`).
    pub commit_seconds: crate::metrics::StorageHistogram,
    /// One write-ahead log fdatasync each (`durable_fsync_duration_seconds`): as many as
    /// `fsyncs` counts.
    pub fsync_seconds: crate::metrics::StorageHistogram,
}

impl Store {
    /// Open (or create) the database under `dir` with a page cache of `cache_bytes`, recover
    /// from its write-ahead log, and start its commit thread.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        remove_incomplete_snapshots(dir)?;
        let config = sled::Config::new()
            .path(dir)
            // Durability comes from the write-ahead log; sled is flushed at checkpoints.
            .flush_every_ms(None)
            .cache_capacity(cache_bytes);
        // sled 0.34 panics on some damaged files (e.g. cut inside a segment) instead of
        // returning its corruption error: treat the panic as that error.
        let db = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()))
            .map_err(|_| damaged(dir, "sled panicked reading them"))?
            .map_err(|e| opening(dir, e))?;
        let data = db.open_tree("data").map_err(|e| opening(dir, e))?;
        let components = db.open_tree("components").map_err(|e| opening(dir, e))?;
        let health = Arc::new(Health {
            full: tokio::sync::watch::channel(false).0,
            failed: AtomicBool::new(false),
        });
        let stats = Arc::new(SyncStats::default());
        // Recovery reads sled: an error of sled's own there names a full or damaged disk too.
        let sled_error = |e: Error| match e {
            Error::Sled(e) => opening(dir, e),
            e => e,
        };
        let positions = Arc::new(Positions::default());
        let committer = Committer::open(
            &db,
            &data,
            &components,
            dir,
            stats.clone(),
            health.clone(),
            positions.clone(),
        )
        .map_err(sled_error)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let watchers = Arc::new(Watchers::default());
        {
            let watchers = watchers.clone();
            std::thread::Builder::new()
                .name("db-commit".into())
                .spawn(move || committer.run(rx, &watchers))
                .map_err(|e| Error::Sync(e.to_string()))?;
        }
        Ok(Self {
            db,
            data,
            components,
            committer: tx,
            stats,
            watchers,
            health,
            positions,
        })
    }

    /// Whether the store takes writes.
    pub fn storage_state(&self) -> StorageState {
        if self.health.failed.load(Ordering::Relaxed) {
            StorageState::Failed
        } else if *self.health.full.borrow() {
            StorageState::Full
        } else {
            StorageState::Ok
        }
    }

    /// Return once the store is not refusing writes for lack of space (at once if it is
    /// not). The commit thread checks the free space every `SPACE_PROBE_EVERY` while full.
    pub async fn space_available(&self) {
        let mut rx = self.health.full.subscribe();
        let _ = rx.wait_for(|full| !*full).await;
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

    /// Return once every write handed to the store before this call (by anyone: committed,
    /// lazily or unawaited) is on disk, so that whatever depends on it may leave the host:
    /// an HTTP response, a frame of a live stream, a guest's outbound request, a webhook.
    /// Free when that is already so (two atomic loads); otherwise one request to the commit
    /// thread, and concurrent callers share one fdatasync (group commit). An error means it
    /// may never be durable (fail-stop): nothing that depends on it may leave.
    pub async fn durable_barrier(&self) -> Result<()> {
        let target = self.positions.submitted.load(Ordering::SeqCst);
        if self.positions.durable.load(Ordering::SeqCst) >= target {
            return Ok(());
        }
        self.submit(Work::Nothing, Vec::new(), Durability::Sync)
            .await
            .map(|_| ())
    }

    /// Whether everything handed to the store so far is on disk (what `durable_barrier`
    /// would return at once for).
    pub fn is_durable(&self) -> bool {
        let target = self.positions.submitted.load(Ordering::SeqCst);
        self.positions.durable.load(Ordering::SeqCst) >= target
    }

    /// Hand one request to the commit thread, counted first (see `Positions`).
    fn send(&self, req: CommitRequest) -> Result<()> {
        self.positions.submitted.fetch_add(1, Ordering::SeqCst);
        self.committer.send(req).map_err(|_| Error::SyncStopped)
    }

    /// Apply a batch atomically; with `Durability::Sync`, return once it is on disk.
    ///
    /// Batches are applied by one commit thread, never on the async executor: sled blocks a
    /// writer while it flushes, and an executor thread must not wait on a disk.
    pub async fn commit(&self, batch: Batch, durability: Durability) -> Result<()> {
        if batch.is_empty() && durability == Durability::Lazy {
            return Ok(());
        }
        let work = if batch.is_empty() {
            Work::Nothing
        } else {
            Work::Batch(batch.ops)
        };
        self.submit(work, batch.touched, durability)
            .await
            .map(|_| ())
    }

    /// Returns once every commit queued before this call is applied (visible to readers);
    /// waits for no fsync. For a reader in another task that must see what this task
    /// queued without awaiting (`commit_unawaited`).
    pub async fn applied(&self) -> Result<()> {
        self.submit(Work::Nothing, Vec::new(), Durability::Lazy)
            .await
            .map(|_| ())
    }

    /// Queue a batch and return at once (the start of an at-least-once step, log lines):
    /// applied before any later request, like a lazy commit, and on disk at the next
    /// fdatasync or checkpoint (`durable_barrier` covers it). Readers see it once applied.
    pub fn commit_unawaited(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (done, _) = oneshot::channel();
        self.send(CommitRequest {
            work: Work::Batch(batch.ops),
            touched: batch.touched,
            mode: Mode::Lazy,
            done,
        })
    }

    async fn submit(
        &self,
        work: Work,
        touched: Vec<ExecId>,
        durability: Durability,
    ) -> Result<Applied> {
        if durability == Durability::Sync {
            self.stats
                .sync_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (done, rx) = oneshot::channel();
        self.send(CommitRequest {
            work,
            touched,
            mode: durability.into(),
            done,
        })?;
        rx.await
            .map_err(|_| Error::SyncStopped)?
            .map_err(Error::from)
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

    /// A component's bytes (the caller checks them against their sha256): its chunks in
    /// order, or the whole value of a store written before components were chunked.
    pub fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        let prefix = component_chunk_key(sha256.as_bytes(), 0);
        let prefix = &prefix[..prefix.len() - 4];
        let mut bytes = Vec::new();
        let mut chunks = 0u32;
        for kv in self.components.scan_prefix(prefix) {
            let (k, v) = kv?;
            if k[prefix.len()..] != chunks.to_be_bytes() {
                // A gap: a write of these bytes was cut short; the log rewrites it whole.
                return Ok(None);
            }
            bytes.extend_from_slice(&v);
            chunks += 1;
        }
        if chunks > 0 {
            return Ok(Some(bytes));
        }
        Ok(self.components.get(sha256.as_bytes())?.map(|v| v.to_vec()))
    }

    // ---- tenants and API keys ----

    pub fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.scan(&keys::tenants())
            .map(|r| r.map(|(_, v)| v))
            .collect()
    }

    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.scan(&keys::api_keys())
            .map(|r| r.map(|(_, v)| v))
            .collect()
    }

    /// A batch deleting what a tenant leaves behind once it has no live function or
    /// execution: its function and version records and idempotency keys, webhooks and
    /// their deliveries, schedules and their due entries. (Components are
    /// shared by content; executions are deleted one by one, with `delete_execution`.)
    pub fn tenant_leftovers(&self, tenant: &str) -> Result<Batch> {
        let mut batch = Batch::new();
        for tag in [
            keys::FUNCTION,
            keys::VERSION,
            keys::IDEMPOTENCY,
            keys::WEBHOOK,
            keys::DELIVERY,
            keys::JOB,
        ] {
            let mut prefix = vec![tag];
            prefix.extend_from_slice(tenant.as_bytes());
            prefix.push(0);
            for k in self.data.scan_prefix(&prefix).keys() {
                batch.del(k?.to_vec());
            }
        }
        for s in self.schedules(tenant)? {
            batch.del_schedule(&s);
        }
        Ok(batch)
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

    /// Up to `limit` log lines after sequence number `after`, with their sequence numbers
    /// (a page of the logs).
    pub fn logs_after(
        &self,
        id: &ExecId,
        after: u32,
        limit: usize,
    ) -> Result<Vec<(u32, LogRecord)>> {
        let Some(from) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let prefix = keys::logs_of(id);
        self.data
            .range(keys::log(id, from)..)
            .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .take(limit)
            .map(|r| {
                let (k, v) = r?;
                let seq = u32::from_be_bytes(k[k.len() - 4..].try_into().expect("4 bytes"));
                Ok((seq, decode(&k, &v)?))
            })
            .collect()
    }

    /// How many log lines an execution holds and the bytes of their messages.
    pub fn log_totals(&self, id: &ExecId) -> Result<(u64, u64)> {
        let mut totals = (0, 0);
        for r in self.scan::<LogRecord>(&keys::logs_of(id)) {
            let (_, rec) = r?;
            totals.0 += 1;
            totals.1 += rec.message.len() as u64;
        }
        Ok(totals)
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

    /// The expiry entry of finished execution `id` whose record does not say when it
    /// expires (written before `expires_ms`): found by a scan of the retention index.
    pub fn expiry_of(&self, id: &ExecId) -> Result<Option<u64>> {
        for k in self.data.scan_prefix([keys::EXPIRY]).keys() {
            let k = k?;
            if let Some((at, of)) = keys::parse_expiry(&k) {
                if of == *id {
                    return Ok(Some(at));
                }
            }
        }
        Ok(None)
    }

    // ---- jobs (`crate::recovery::jobs`) ----

    pub fn job(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>> {
        self.get(&keys::job(tenant, id))
    }

    /// A tenant's jobs, oldest first (ids are ULIDs).
    pub fn jobs(&self, tenant: &str) -> impl DoubleEndedIterator<Item = Result<JobRecord>> + '_ {
        self.scan(&keys::jobs_of(tenant)).map(|r| r.map(|(_, v)| v))
    }

    /// Add the deletion of a job's items (the executions it matched) to `batch`.
    pub fn del_job_items(&self, tenant: &str, id: &str, batch: &mut Batch) -> Result<()> {
        for k in self.data.scan_prefix(keys::job_items(tenant, id)).keys() {
            batch.del(k?.to_vec());
        }
        Ok(())
    }

    /// The execution at position `n` of a job's matches.
    pub fn job_item(&self, tenant: &str, id: &str, n: u32) -> Result<Option<ExecId>> {
        self.get(&keys::job_item(tenant, id, n))
    }

    // ---- webhooks (`crate::webhooks`) ----

    pub fn webhook(&self, tenant: &str, id: &str) -> Result<Option<WebhookRecord>> {
        self.get(&keys::webhook(tenant, id))
    }

    /// A tenant's webhooks, oldest first.
    pub fn webhooks(&self, tenant: &str) -> Result<Vec<WebhookRecord>> {
        self.scan(&keys::webhooks_of(tenant))
            .map(|r| r.map(|(_, v)| v))
            .collect()
    }

    pub fn delivery(
        &self,
        tenant: &str,
        webhook: &str,
        id: &str,
    ) -> Result<Option<DeliveryRecord>> {
        self.get(&keys::delivery(tenant, webhook, id))
    }

    /// A webhook's deliveries, newest first.
    pub fn deliveries(
        &self,
        tenant: &str,
        webhook: &str,
    ) -> impl Iterator<Item = Result<DeliveryRecord>> + '_ {
        self.scan(&keys::deliveries_of(tenant, webhook))
            .rev()
            .map(|r| r.map(|(_, v)| v))
    }

    /// Outbox entries in due order (the earliest first), from the start.
    pub fn outbox(&self) -> impl Iterator<Item = Result<(u64, String, OutboxRecord)>> + '_ {
        self.data.scan_prefix([keys::OUTBOX]).map(|r| {
            let (k, v) = r?;
            let (due, id) = keys::parse_outbox(&k).ok_or_else(|| Error::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: "bad outbox key".into(),
            })?;
            Ok((due, id, decode(&k, &v)?))
        })
    }

    // ---- schedules (`crate::schedules`) ----

    pub fn schedule(&self, tenant: &str, name: &str) -> Result<Option<ScheduleRecord>> {
        self.get(&keys::schedule(tenant, name))
    }

    /// A tenant's schedules, by name.
    pub fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleRecord>> {
        self.scan(&keys::schedules_of(tenant))
            .map(|r| r.map(|(_, v)| v))
            .collect()
    }

    /// Due entries in due order (the earliest first), from the start: (due, entry).
    pub fn schedules_due(&self) -> impl Iterator<Item = Result<(u64, ScheduleDueRecord)>> + '_ {
        self.data.scan_prefix([keys::SCHEDULE_DUE]).map(|r| {
            let (k, v) = r?;
            let (due, _, _) = keys::parse_schedule_due(&k).ok_or_else(|| Error::Corrupt {
                key: String::from_utf8_lossy(&k).into_owned(),
                reason: "bad schedule due key".into(),
            })?;
            Ok((due, decode(&k, &v)?))
        })
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
    pub async fn swap_callback(
        &self,
        callback_id: &str,
        expected: &CallbackRecord,
        new: &CallbackRecord,
        durability: Durability,
    ) -> Result<bool> {
        let work = Work::CompareAndSwap {
            key: keys::callback(callback_id),
            expected: Some(encode(expected)),
            new: encode(new),
        };
        let applied = self.submit(work, Vec::new(), durability).await?;
        Ok(matches!(applied, Applied::Done))
    }

    /// Create under an idempotency key, atomically: if the key is free, write the claim
    /// `rec` together with `batch` (the execution it names: record, first event, deadline
    /// timer) as one group, fsynced, and return `Ok(None)`; if another invocation holds the
    /// key, write nothing and return its claim. A claim therefore never exists without its
    /// execution, and concurrent invocations with one key create exactly one execution.
    /// When the holder is answered, everything its claim came with is applied (readable).
    /// With `replace`, a key that still holds exactly that claim counts as free: a claim
    /// whose execution does not exist (one left by an older release, which wrote the claim
    /// and its execution apart) is taken over atomically, by one invocation only.
    pub async fn claim_idempotency(
        &self,
        tenant: &str,
        function: &str,
        key: &str,
        rec: &IdempotencyRecord,
        batch: Batch,
        replace: Option<&IdempotencyRecord>,
    ) -> Result<Option<IdempotencyRecord>> {
        let k = keys::idempotency(tenant, function, key);
        let work = Work::Claim {
            key: k.clone(),
            claim: encode(rec),
            ops: batch.ops,
            replace: replace.map(encode),
        };
        match self.submit(work, batch.touched, Durability::Sync).await? {
            Applied::Done => Ok(None),
            Applied::Conflict(held) => match held {
                Some(held) => decode(&k, &held).map(Some),
                // `perform` answers a claim with a conflict only when the key is held.
                None => Err(Error::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "a claim was refused, yet the key is free".into(),
                }),
            },
        }
    }

    /// Bytes on disk (for metrics).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHE: u64 = 1 << 20;

    #[tokio::test]
    async fn components_written_before_chunking_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        store
            .components
            .insert("old", &b"\0asm old layout"[..])
            .unwrap();
        assert_eq!(
            store.component("old").unwrap().as_deref(),
            Some(&b"\0asm old layout"[..])
        );
    }
}
