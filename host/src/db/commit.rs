//! The commit thread: the only writer of sled and of the write-ahead log.
//!
//! `Store` sends it `CommitRequest`s (a `Work`, a `Mode`, who to answer). It takes them in
//! arrival order, in groups of at most `MAX_GROUP_BYTES` (`take_group`); runs each request
//! against the writes of the requests before it in the group (`perform`: compare-and-swap
//! and idempotency claims read here, so their read and write are atomic); writes the group
//! as one log record; applies it to sled; and answers, durable requests after one shared
//! fdatasync (none when everything written is on disk already). After each fdatasync and
//! checkpoint it moves the store's durable position (`Positions`) to what it has taken. Also here: checkpoints (flush sled, fsync its blob files and its file, write
//! the `manifest`, empty the log), recovery at start (check the manifest, replay the log),
//! and storage health: free-space probing (`MIN_FREE_BYTES`, every `SPACE_PROBE_EVERY` while
//! full), refusal of writes for lack of space, fail-stop.
//!
//! Architecture invariant: a group's record is written to the log before sled is touched,
//! and fdatasynced before any durable request in it is answered; a group refused for lack
//! of space wrote and applied nothing; after any other log write, fdatasync or sled apply
//! failure nothing more is written (no checkpoint either), so that a restart recovers
//! exactly from the log.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{component_chunk_key, COMPONENT_CHUNK_BYTES};
use super::{
    keys, manifest, wal, Durability, Error, ExecId, Health, Positions, Result, SyncStats, Watchers,
};

/// Work for the commit thread, and who to tell when it is applied (and, for
/// `Durability::Sync`, on disk).
pub(super) struct CommitRequest {
    pub(super) work: Work,
    pub(super) touched: Vec<ExecId>,
    pub(super) mode: Mode,
    pub(super) done: oneshot::Sender<std::result::Result<Applied, Failure>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Answered once applied (`Store::commit_unawaited` sends one and waits for nothing).
    Lazy,
    /// Answered once applied and on disk.
    Sync,
}

impl From<Durability> for Mode {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Lazy => Mode::Lazy,
            Durability::Sync => Mode::Sync,
        }
    }
}

pub(super) enum Work {
    /// Nothing to write: a sync point.
    Nothing,
    Batch(Vec<wal::Op>),
    /// Write `new` under `key` if it holds `expected` (`None`: absent). The commit thread is
    /// the only writer, so its read and write are atomic.
    CompareAndSwap {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    /// Write `claim` under `key` and `ops` with it if `key` is absent; otherwise write
    /// nothing and answer with what `key` holds. Claim and creation are one request, so one
    /// group: no reader or crash can see the claim without what it names.
    Claim {
        key: Vec<u8>,
        claim: Vec<u8>,
        ops: Vec<wal::Op>,
        /// A claim that counts as free (see `Store::claim_idempotency`).
        replace: Option<Vec<u8>>,
    },
}

pub(super) enum Applied {
    Done,
    /// A compare-and-swap found this instead.
    Conflict(Option<sled::IVec>),
}

/// Why the commit thread refused or failed a request.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    message: String,
    /// For lack of space, with nothing applied: not fail-stop.
    full: bool,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            full: false,
        }
    }

    /// `what` failed with `e`: for lack of space (`full`) if the error says so.
    fn io(what: &str, e: &std::io::Error) -> Self {
        Self {
            message: format!("{what}: {e}"),
            full: is_no_space(e),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        if f.full {
            Error::Full(f.message)
        } else {
            Error::Sync(f.message)
        }
    }
}

/// The commit thread's state: the only writer of sled and of the write-ahead log.
pub(super) struct Committer {
    db: sled::Db,
    data: sled::Tree,
    components: sled::Tree,
    /// sled's log file, fdatasynced at checkpoints.
    sled_file: std::fs::File,
    /// sled's directory: values over ~128 KiB live in files under `blobs/`, which sled
    /// never fsyncs; checkpoints do.
    dir: std::path::PathBuf,
    /// Blob files (by name) already fsynced.
    synced_blobs: std::collections::HashSet<std::ffi::OsString>,
    /// Set when a log write (other than for lack of space), fdatasync or sled apply failed:
    /// from then on every request is refused and nothing more is written (no checkpoint
    /// either), so that a restart recovers exactly from the log (fail-stop: after a failed
    /// fdatasync the kernel may have dropped the pages, and a later one can report success).
    failed: Option<String>,
    /// Sequence number of the last record appended to the log (and applied to sled).
    seq: u64,
    /// The last sequence number on disk (log fdatasynced, or sled checkpointed past it):
    /// a durable request finding `synced == seq` needs no fdatasync.
    synced: u64,
    /// Requests taken so far (`Positions::applied`), and the store's positions.
    taken: u64,
    positions: Arc<Positions>,
    wal: wal::Wal,
    last_checkpoint: std::time::Instant,
    stats: Arc<SyncStats>,
    /// Keys in the `data` tree per tag (`keys::META` not counted), kept as writes are
    /// applied and written to the manifest at checkpoints.
    counts: [u64; 256],
    health: Arc<Health>,
}

/// A checkpoint (flush sled, empty the log) happens at least this often while writes come...
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// ...and as soon as the log holds this much.
const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// The most bytes of writes one group commit takes (a single larger request is a group of
/// its own). Without a cap the commit thread drained its whole queue into one record, so a
/// writer queued behind one execution's burst of large batches waited for all of it to be
/// written and synced; with it a small write waits for at most the groups ahead of it, each
/// of which costs about one 4 MiB write and fdatasync (a few ms on an SSD). Small writers
/// still share one fdatasync: hundreds of them fit in a group.
const MAX_GROUP_BYTES: usize = 4 * 1024 * 1024;
/// Writes are refused (507) while the filesystem has less free than this. It is room for
/// the checkpoint to flush to sled what sled holds only in memory (at most about one
/// checkpoint's worth of log, `CHECKPOINT_BYTES`, which sled writes out with some
/// overhead): sled 0.34 treats a failed write of its own as fatal until the process
/// restarts, so it must never be the one to find the disk full; the log is.
const MIN_FREE_BYTES: u64 = 2 * CHECKPOINT_BYTES;
/// While writes are refused for lack of space, the free space is checked this often, so
/// that the store takes writes again by itself (and `space_available` waiters wake).
const SPACE_PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Work {
    /// Bytes of writes, for `MAX_GROUP_BYTES`.
    fn bytes(&self) -> usize {
        match self {
            Work::Nothing => 0,
            Work::Batch(ops) => ops.iter().map(op_bytes).sum(),
            Work::CompareAndSwap { key, new, .. } => key.len() + new.len(),
            Work::Claim {
                key, claim, ops, ..
            } => key.len() + claim.len() + ops.iter().map(op_bytes).sum::<usize>(),
        }
    }
}

fn op_bytes(op: &wal::Op) -> usize {
    match op {
        wal::Op::Put(k, v) | wal::Op::PutComponent(k, v) => k.len() + v.len(),
        wal::Op::Del(k) => k.len(),
    }
}

/// Take the next group from the front of `backlog`: requests in arrival order while their
/// writes stay within `max_bytes` (the first one always, whatever its size).
fn take_group(backlog: &mut VecDeque<CommitRequest>, max_bytes: usize) -> Vec<CommitRequest> {
    let mut group = Vec::new();
    let mut bytes = 0usize;
    while let Some(next) = backlog.front() {
        let size = next.work.bytes();
        if !group.is_empty() && bytes.saturating_add(size) > max_bytes {
            break;
        }
        bytes = bytes.saturating_add(size);
        group.extend(backlog.pop_front());
    }
    group
}

impl Committer {
    /// Open sled's file and the write-ahead log of the store in `dir` (sled itself is open),
    /// and recover: sled is then up to date with the log and the log is empty. An error of
    /// sled's own comes back as `Error::Sled`, for the caller to name.
    pub(super) fn open(
        db: &sled::Db,
        data: &sled::Tree,
        components: &sled::Tree,
        dir: &Path,
        stats: Arc<SyncStats>,
        health: Arc<Health>,
        positions: Arc<Positions>,
    ) -> Result<Self> {
        let io = |what: &str, e: std::io::Error| -> Error {
            if is_no_space(&e) {
                Error::Full(format!("{what}: {}", no_space_message(dir)))
            } else {
                Error::Sync(format!("{what}: {e}"))
            }
        };
        // sled's own flush ends in sync_file_range, which neither flushes the device cache
        // nor the file's metadata: a checkpoint fdatasyncs its log file as well.
        let sled_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("db"))
            .map_err(|e| io(&format!("open {}", dir.join("db").display()), e))?;
        let wal_path = dir.join("wal");
        let (wal, records) = wal::Wal::open(&wal_path).map_err(|e| match e {
            wal::OpenError::Io(e) => io(&format!("open {}", wal_path.display()), e),
            corrupt @ wal::OpenError::Corrupt { .. } => Error::LostData(corrupt.to_string()),
        })?;
        let mut committer = Committer {
            db: db.clone(),
            data: data.clone(),
            components: components.clone(),
            sled_file,
            dir: dir.to_path_buf(),
            synced_blobs: Default::default(),
            failed: None,
            seq: 0,
            synced: 0,
            taken: 0,
            positions,
            wal,
            last_checkpoint: std::time::Instant::now(),
            stats,
            counts: [0; 256],
            health,
        };
        committer.recover(records)?;
        Ok(committer)
    }

    /// Check the manifest against what sled holds, bring sled up to date with the log (the
    /// rule is below), then checkpoint so that the log starts empty.
    fn recover(&mut self, records: Vec<wal::Record>) -> Result<()> {
        self.seq = match self.data.get(keys::WAL_SEQ)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| Error::Corrupt {
                key: "wal-seq".into(),
                reason: format!("{} bytes", v.len()),
            })?),
            None => 0,
        };
        let counted = self.check_manifest(records.is_empty())?;
        // Every write to sled since the last checkpoint is in the log as an absolute put or
        // delete. When the log reaches as far as sled, replaying all of it in order gives
        // exactly the state after its last record, whatever part of it sled kept (after a
        // power loss sled's own recovery need not be a prefix). Only when sled is further
        // (lazy writes it kept but the log lost) are the records it holds skipped.
        let log_end = records.last().map_or(0, |r| r.seq);
        let from = if log_end >= self.seq { 0 } else { self.seq };
        let (mut replayed, mut skipped) = (0, 0);
        for record in records {
            if record.seq <= from {
                skipped += 1;
                continue;
            }
            if from > 0 && record.seq != self.seq + 1 {
                // The log was emptied only after sled held everything in it, so this means
                // the store lost writes it had acknowledged: say so, and keep what is left.
                tracing::error!(
                    sled = self.seq,
                    log = record.seq,
                    "the write-ahead log does not continue the store's sequence"
                );
            }
            self.seq = record.seq;
            self.apply(record.ops)?;
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(replayed, skipped, "write-ahead log replayed");
        }
        if !counted {
            // After a crash (or on a store without a manifest): count once, then keep count.
            self.counts = self.count_keys()?;
        }
        self.checkpoint().map_err(|f| {
            if f.full {
                Error::Full(format!(
                    "cannot start: {} ({})",
                    no_space_message(&self.dir),
                    f.message
                ))
            } else {
                Error::from(f)
            }
        })
    }

    /// Refuse to serve a sled that lost what it held at the last checkpoint: its sequence
    /// went back, or (when nothing happened since, which `log_empty` and an equal sequence
    /// say) its records per tag differ. Returns whether `counts` were set (verified).
    fn check_manifest(&mut self, log_empty: bool) -> Result<bool> {
        let path = manifest::path(&self.dir);
        let what_to_do = format!(
            "Stop here and keep a copy of {dir} for diagnosis. Restore the data directory from \
             a backup; or, to serve what is left and accept the loss, delete {manifest} and \
             start again.",
            dir = self.dir.display(),
            manifest = path.display()
        );
        let m = match manifest::Manifest::read(&self.dir) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(false),
            Err(e) => {
                return Err(Error::LostData(format!(
                    "the checkpoint manifest is unreadable ({e}), so the store cannot tell \
                     whether sled's files are whole. {what_to_do}"
                )))
            }
        };
        if self.seq < m.seq {
            return Err(Error::LostData(format!(
                "sled's files in {dir} lost acknowledged writes: expected them to hold \
                 write-ahead log sequence {expected} (what the last checkpoint left), found \
                 {found} (truncated, damaged or replaced by an older copy?). The store \
                 refuses to serve what is left. {what_to_do}",
                dir = self.dir.display(),
                expected = m.seq,
                found = self.seq,
            )));
        }
        if !(log_empty && self.seq == m.seq) {
            // sled went on after the checkpoint: the counts at the checkpoint no longer
            // describe it (what the log replays is checked by its checksums).
            return Ok(false);
        }
        let found = self.count_keys()?;
        let mut diffs = Vec::new();
        for tag in 0..=255u8 {
            let expected = m.counts.get(&tag).copied().unwrap_or(0);
            if found[tag as usize] != expected {
                diffs.push(format!(
                    "{}: {expected} expected, {} found",
                    tag_name(tag),
                    found[tag as usize]
                ));
            }
        }
        if !diffs.is_empty() {
            return Err(Error::LostData(format!(
                "sled's files in {dir} do not hold what the last checkpoint left in them \
                 ({diffs}). The store refuses to serve what is left. {what_to_do}",
                dir = self.dir.display(),
                diffs = diffs.join("; "),
            )));
        }
        self.counts = found;
        Ok(true)
    }

    /// Keys in the `data` tree per tag: one pass over the tree, at start only.
    fn count_keys(&self) -> Result<[u64; 256]> {
        let started = std::time::Instant::now();
        let mut counts = [0u64; 256];
        for k in self.data.iter().keys() {
            let k = k?;
            if let Some(&tag) = k.first().filter(|t| **t != keys::META) {
                counts[tag as usize] += 1;
            }
        }
        tracing::debug!(
            keys = counts.iter().sum::<u64>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store records counted"
        );
        Ok(counts)
    }

    /// A key went from `existed` to `exists`: keep the counts.
    fn count(&mut self, key: &[u8], existed: bool, exists: bool) {
        if let Some(&tag) = key.first().filter(|t| **t != keys::META) {
            let n = &mut self.counts[tag as usize];
            match (existed, exists) {
                (false, true) => *n += 1,
                (true, false) => *n = n.saturating_sub(1),
                _ => {}
            }
        }
    }

    /// Apply one record's writes to sled, with its sequence number, atomically.
    fn apply(&mut self, ops: Vec<wal::Op>) -> sled::Result<()> {
        // sled's batch does not say which keys it created or removed: look them up (one
        // lookup per distinct key; later writes in the group see earlier ones).
        let mut now: HashMap<&[u8], bool> = HashMap::new();
        let mut changes = Vec::new();
        for op in &ops {
            let (key, exists) = match op {
                wal::Op::Put(k, _) => (k, true),
                wal::Op::Del(k) => (k, false),
                wal::Op::PutComponent(..) => continue,
            };
            let existed = match now.get(key.as_slice()) {
                Some(e) => *e,
                None => self.data.contains_key(key)?,
            };
            now.insert(key, exists);
            changes.push((key[0], existed, exists));
        }
        for (tag, existed, exists) in changes {
            self.count(&[tag], existed, exists);
        }
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                wal::Op::Put(k, v) => batch.insert(k, v),
                wal::Op::Del(k) => batch.remove(k),
                // Content-addressed, so writing it ahead of the batch is harmless.
                wal::Op::PutComponent(k, v) => put_component_chunks(&self.components, &k, &v)?,
            }
        }
        batch.insert(keys::WAL_SEQ, &self.seq.to_be_bytes()[..]);
        self.data.apply_batch(batch)
    }

    /// What `key` holds for a request of this group: the last write to it earlier in the
    /// group, else what sled holds.
    fn current(
        &self,
        group: &[wal::Op],
        key: &[u8],
    ) -> std::result::Result<Option<sled::IVec>, Failure> {
        let in_group = group.iter().rev().find_map(|op| match op {
            wal::Op::Put(k, v) if k == key => Some(Some(sled::IVec::from(&v[..]))),
            wal::Op::Del(k) if k == key => Some(None),
            _ => None,
        });
        match in_group {
            Some(held) => Ok(held),
            None => self.data.get(key).map_err(|e| Failure::new(e.to_string())),
        }
    }

    /// Add one request's writes to the group's: a compare-and-swap sees the writes of the
    /// requests before it, in the group as in sled.
    fn perform(
        &self,
        work: Work,
        group: &mut Vec<wal::Op>,
    ) -> std::result::Result<Applied, Failure> {
        match work {
            Work::Nothing => {}
            Work::Batch(ops) => group.extend(ops),
            Work::CompareAndSwap { key, expected, new } => {
                let current = self.current(group, &key)?;
                if current.as_deref() != expected.as_deref() {
                    return Ok(Applied::Conflict(current));
                }
                group.push(wal::Op::Put(key, new));
            }
            Work::Claim {
                key,
                claim,
                ops,
                replace,
            } => {
                let held = self.current(group, &key)?;
                if held.is_some() && held.as_deref() != replace.as_deref() {
                    return Ok(Applied::Conflict(held));
                }
                group.extend(ops);
                group.push(wal::Op::Put(key, claim));
            }
        }
        Ok(Applied::Done)
    }

    /// Log the group's writes as one record (written, not yet synced) and apply them to sled
    /// as one atomic batch. sled writes its io buffer out around every batch, so one batch
    /// per group instead of per request is what keeps its io threads from dominating.
    fn log_and_apply(&mut self, group: Vec<wal::Op>) -> std::result::Result<(), Failure> {
        if group.is_empty() {
            return Ok(());
        }
        self.log(&group)?;
        self.apply(group).map_err(|e| Failure::new(e.to_string()))
    }

    /// Log the group's writes as one record, fdatasync it, then apply them to sled one by
    /// one, without sled's batch (and so without its io). Safe because the record is
    /// durable first: whatever part of the group sled holds after a crash, recovery applies
    /// the whole record again (the sequence number is written last).
    fn log_sync_and_apply(&mut self, group: Vec<wal::Op>) -> std::result::Result<(), Failure> {
        if !group.is_empty() {
            self.log(&group)?;
        }
        // If the fdatasync fails the record may still reach the disk (and recovery would
        // apply it), so sled applies it too and stays what replaying the log would give;
        // the waiting callers get the error.
        let synced = self.sync_log_if_needed();
        let applied = if group.is_empty() {
            Ok(())
        } else {
            self.apply_each(group)
                .map_err(|e| Failure::new(e.to_string()))
        };
        synced.and(applied)
    }

    /// Apply one record's writes to sled one by one, then its sequence number.
    fn apply_each(&mut self, ops: Vec<wal::Op>) -> sled::Result<()> {
        for op in ops {
            match op {
                wal::Op::Put(k, v) => {
                    let old = self.data.insert(&k, v)?;
                    self.count(&k, old.is_some(), true);
                }
                wal::Op::Del(k) => {
                    let old = self.data.remove(&k)?;
                    self.count(&k, old.is_some(), false);
                }
                wal::Op::PutComponent(k, v) => put_component_chunks(&self.components, &k, &v)?,
            }
        }
        self.data
            .insert(keys::WAL_SEQ, &self.seq.to_be_bytes()[..])?;
        Ok(())
    }

    /// Append the group as the next record and write it. A failed write leaves neither the
    /// record nor its sequence number behind (a gap would end the log at recovery), so a
    /// write refused for lack of space acknowledged nothing and can simply be refused.
    fn log(&mut self, group: &[wal::Op]) -> std::result::Result<(), Failure> {
        self.wal.append(self.seq + 1, group);
        self.wal.write().map_err(|e| {
            let mut f = Failure::io("write-ahead log", &e);
            if f.full {
                f.message = no_space_message(&self.dir);
            }
            f
        })?;
        self.seq += 1;
        Ok(())
    }

    /// fdatasync the log unless everything in it is on disk already; then everything taken
    /// so far is durable.
    fn sync_log_if_needed(&mut self) -> std::result::Result<(), Failure> {
        if self.seq > self.synced {
            self.sync_log()?;
            self.synced = self.seq;
        }
        self.positions.durable_through(self.taken);
        Ok(())
    }

    fn sync_log(&mut self) -> std::result::Result<(), Failure> {
        self.stats
            .fsyncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Never `full`: after a failed fdatasync the pages may be gone, whatever the errno.
        let started = std::time::Instant::now();
        let synced = self.wal.sync();
        self.stats.fsync_seconds.observe(started.elapsed());
        synced.map_err(|e| Failure::new(format!("write-ahead log fdatasync: {e}")))
    }

    /// Is there room for a group's writes? Sets (and clears) the full state.
    fn check_space(&mut self) -> std::result::Result<(), Failure> {
        // Unknown: let the write itself find out.
        let free = free_bytes(&self.dir).unwrap_or(u64::MAX);
        let full = free < MIN_FREE_BYTES;
        self.set_full(full);
        if full {
            Err(Failure {
                message: no_space_message(&self.dir),
                full: true,
            })
        } else {
            Ok(())
        }
    }

    fn set_full(&self, full: bool) {
        self.health.full.send_if_modified(|f| {
            if *f == full {
                return false;
            }
            *f = full;
            if full {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "storage full: writes are refused until space returns"
                );
            } else {
                tracing::info!(dir = %self.dir.display(), "storage has space again: writes resume");
            }
            true
        });
    }

    /// Flush sled and fdatasync its file: everything applied is now durable in sled, so the
    /// manifest can say so and the log can be emptied.
    fn checkpoint(&mut self) -> std::result::Result<(), Failure> {
        // Whatever happens, the next attempt is a second away (no retry storm).
        self.last_checkpoint = std::time::Instant::now();
        self.db.flush().map_err(|e| Failure {
            message: format!("sled flush: {e}"),
            full: sled_no_space(&e),
        })?;
        self.sync_blobs()
            .map_err(|e| Failure::io("fsync of sled's blobs", &e))?;
        self.sled_file
            .sync_data()
            .map_err(|e| Failure::io("fdatasync of sled's file", &e))?;
        let manifest = manifest::Manifest {
            seq: self.seq,
            counts: (0..=255u8)
                .filter(|t| self.counts[*t as usize] > 0)
                .map(|t| (t, self.counts[t as usize]))
                .collect(),
        };
        manifest
            .write(&self.dir)
            .map_err(|e| Failure::io("checkpoint manifest", &e))?;
        // sled holds everything applied, on disk: so is everything taken.
        self.synced = self.seq;
        self.positions.durable_through(self.taken);
        self.wal
            .reset()
            .map_err(|e| Failure::io("write-ahead log reset", &e))?;
        Ok(())
    }

    /// fsync the blob files sled wrote since the last checkpoint, and the directories that
    /// name them.
    fn sync_blobs(&mut self) -> std::io::Result<()> {
        let blobs = self.dir.join("blobs");
        let Ok(entries) = std::fs::read_dir(&blobs) else {
            return Ok(()); // no blob written yet
        };
        let mut present = std::collections::HashSet::new();
        let mut new = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match std::fs::File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    // Collected by sled in between: nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            std::fs::File::open(&blobs)?.sync_all()?;
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        self.synced_blobs = present;
        Ok(())
    }

    /// The group commit: take the pending requests (up to `MAX_GROUP_BYTES`), log and apply
    /// them in arrival order, answer the lazy ones, then write the log with one `write`
    /// and, if any request is durable and the log holds anything not yet on disk, one
    /// fdatasync, and answer the rest. A request that arrives during a sync is served by a
    /// later round, so every write applied before a durable request was made is on disk
    /// when it is answered (the log is in order: one fdatasync covers every earlier group).
    pub(super) fn run(mut self, rx: std::sync::mpsc::Receiver<CommitRequest>, watchers: &Watchers) {
        let mut backlog = VecDeque::new();
        let mut durable = Vec::new();
        let mut durable_touched = Vec::new();
        // Watchers hear of a change once readers can see it and, for a durable batch, once
        // it is on disk: a live stream never shows what a crash could take back.
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
        loop {
            if backlog.is_empty() {
                let first = match self.next_wakeup() {
                    None => rx.recv().ok(),
                    Some(wait) => match rx.recv_timeout(wait) {
                        Ok(req) => Some(req),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            self.tick();
                            continue;
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
                    },
                };
                let Some(first) = first else { break };
                backlog.push_back(first);
            }
            backlog.extend(rx.try_iter());
            if let Some(failed) = &self.failed {
                for req in backlog.drain(..) {
                    let _ = req.done.send(Err(Failure::new(format!(
                        "the store stopped writing after: {failed}"
                    ))));
                }
                continue;
            }
            let mut pending = take_group(&mut backlog, MAX_GROUP_BYTES);
            // Counted as taken before anything is refused or written: a refused request
            // wrote nothing, so it is as durable as the writes before it.
            self.taken = self.positions.applied(pending.len());
            // The group's commit: from taken (after any hold) to every writer answered.
            let commit_started = std::time::Instant::now();
            // No room: refuse every request that writes, before anything is logged (a sync
            // point alone still syncs what is applied).
            if pending.iter().any(|r| !matches!(r.work, Work::Nothing)) {
                if let Err(full) = self.check_space() {
                    pending.retain_mut(|r| {
                        if matches!(r.work, Work::Nothing) {
                            return true;
                        }
                        let (done, _) = oneshot::channel();
                        let _ = std::mem::replace(&mut r.done, done).send(Err(full.clone()));
                        self.stats.full_refusals.fetch_add(1, Ordering::Relaxed);
                        false
                    });
                    if pending.is_empty() {
                        continue;
                    }
                }
            }
            let mut group = Vec::new();
            let mut lazy = Vec::new();
            for req in pending {
                let applied = self.perform(req.work, &mut group);
                match (applied, req.mode) {
                    (Ok(applied), Mode::Sync) => {
                        durable.push((req.done, applied));
                        durable_touched.extend(req.touched);
                    }
                    (Ok(applied), Mode::Lazy) => lazy.push((req.done, applied, req.touched)),
                    (Err(e), _) => {
                        let _ = req.done.send(Err(e));
                    }
                }
            }
            // Lazy writes reach the page cache now (a process crash keeps them) and are
            // answered once readers see them; durable ones wait for the fdatasync too.
            let lazy_count = lazy.len();
            let res = if lazy.is_empty() && !durable.is_empty() {
                // Nobody waits for sled alone: sync first, then apply cheaply.
                self.log_sync_and_apply(group)
            } else {
                let mut res = self.log_and_apply(group);
                for (done, applied, touched) in lazy {
                    if res.is_ok() {
                        notify(&touched);
                    }
                    let _ = done.send(res.clone().map(|()| applied));
                }
                if !durable.is_empty() {
                    res = res.and_then(|()| self.sync_log_if_needed());
                }
                res
            };
            match &res {
                Ok(()) => notify(&durable_touched),
                // The log write was refused for lack of space: it was cut back, nothing was
                // applied or acknowledged, so the group is refused and writing goes on.
                Err(f) if f.full => {
                    self.set_full(true);
                    let refused = (durable.len() + lazy_count) as u64;
                    self.stats
                        .full_refusals
                        .fetch_add(refused, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "commit failed: the store refuses every write from now on; restart \
                         the host to recover from its write-ahead log"
                    );
                    self.failed = Some(e.message.clone());
                    self.health.failed.store(true, Ordering::Relaxed);
                }
            }
            durable_touched.clear();
            for (done, applied) in durable.drain(..) {
                let _ = done.send(res.clone().map(|()| applied));
            }
            self.stats.commit_seconds.observe(commit_started.elapsed());
            if self.failed.is_none()
                && (self.wal.len() >= CHECKPOINT_BYTES
                    || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
            {
                self.checkpoint_or_log();
            }
        }
        // Every handle is gone: leave sled complete and the log empty.
        self.checkpoint_or_log();
    }

    /// How long the thread may wait for a request: until the next checkpoint is due while
    /// the log holds anything, and the next free-space check while full.
    fn next_wakeup(&self) -> Option<std::time::Duration> {
        if self.failed.is_some() {
            return None;
        }
        let checkpoint = (self.wal.len() > 0)
            .then(|| CHECKPOINT_EVERY.saturating_sub(self.last_checkpoint.elapsed()));
        let probe = (*self.health.full.borrow()).then_some(SPACE_PROBE_EVERY);
        checkpoint.into_iter().chain(probe).min()
    }

    /// No request came in time: check the free space (while full), checkpoint (when due).
    fn tick(&mut self) {
        if *self.health.full.borrow() {
            let _ = self.check_space();
        }
        if self.wal.len() > 0 && self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            self.checkpoint_or_log();
        }
    }

    fn checkpoint_or_log(&mut self) {
        if self.failed.is_some() {
            return; // the log is what a restart recovers from
        }
        if self.check_space().is_err() {
            // Postponed: sled must not meet a full disk (its own write errors are fatal to
            // it), and the log still holds everything; the next tick tries again.
            return;
        }
        // Either way the log still holds everything; the next checkpoint tries again.
        match self.checkpoint() {
            Ok(()) => {}
            Err(f) if f.full => {
                self.set_full(true);
                tracing::warn!(error = %f, "checkpoint postponed: storage full");
            }
            Err(f) => tracing::error!(error = %f, "checkpoint failed"),
        }
    }
}

pub(super) fn is_no_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

pub(super) fn sled_no_space(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(e) if is_no_space(e))
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `path` is a NUL-terminated string and `st` a plain struct statvfs fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The mount point of the filesystem holding `dir` (where the operator frees space).
fn mount_point(dir: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let Ok(mut at) = dir.canonicalize() else {
        return dir.to_path_buf();
    };
    let Ok(dev) = std::fs::metadata(&at).map(|m| m.dev()) else {
        return at;
    };
    while let Some(parent) = at.parent() {
        if std::fs::metadata(parent).map(|m| m.dev()).ok() != Some(dev) {
            break;
        }
        at = parent.to_path_buf();
    }
    at
}

/// What the operator reads when the disk is full: which filesystem, how much is free.
pub(super) fn no_space_message(dir: &Path) -> String {
    let free = free_bytes(dir).map_or_else(|e| format!("unknown ({e})"), |b| b.to_string());
    format!(
        "no space left for the store in {} (the filesystem mounted at {}, {free} bytes free; \
         writes need {MIN_FREE_BYTES}): free space there; writes are taken again once it \
         returns",
        dir.display(),
        mount_point(dir).display()
    )
}

/// Write a component as chunks. Content-addressed and idempotent: a replay rewrites the
/// same chunks.
fn put_component_chunks(tree: &sled::Tree, sha256: &[u8], bytes: &[u8]) -> sled::Result<()> {
    for (n, chunk) in bytes.chunks(COMPONENT_CHUNK_BYTES).enumerate() {
        tree.insert(component_chunk_key(sha256, n as u32), chunk)?;
    }
    Ok(())
}

/// Names of the tags, for messages about lost records.
fn tag_name(tag: u8) -> String {
    match tag {
        keys::FUNCTION => "functions".into(),
        keys::VERSION => "function versions".into(),
        keys::EXECUTION => "executions".into(),
        keys::HISTORY => "history events".into(),
        keys::LOG => "log lines".into(),
        keys::LOG_SEEN => "log markers".into(),
        keys::TIMER => "timers".into(),
        keys::CALLBACK => "callbacks".into(),
        keys::IDEMPOTENCY => "idempotency keys".into(),
        keys::STOP => "stop requests".into(),
        keys::EXPIRY => "retention entries".into(),
        keys::WEBHOOK => "webhooks".into(),
        keys::DELIVERY => "webhook deliveries".into(),
        keys::OUTBOX => "webhook outbox entries".into(),
        keys::SCHEDULE => "schedules".into(),
        keys::SCHEDULE_DUE => "schedule due entries".into(),
        keys::JOB => "jobs".into(),
        t => format!("records tagged {:?}", t as char),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::batch::encode;
    use crate::db::{Batch, FunctionRecord, FunctionSettings, IdempotencyRecord, Store};

    const CACHE: u64 = 1 << 20;

    fn function(name: &str, latest_version: u32) -> FunctionRecord {
        FunctionRecord {
            name: name.into(),
            created_ms: 1,
            latest_version,
            deleted: false,
            settings: FunctionSettings::default(),
        }
    }

    /// Wait until a dropped store's commit thread has finished its last checkpoint: it lets
    /// go of sled (and so of sled's file lock) only then.
    fn wait_closed(dir: &Path) {
        for _ in 0..500 {
            if sled::Config::new().path(dir).open().is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the store was not closed");
    }

    fn reopen(dir: &Path) -> Store {
        wait_closed(dir);
        Store::open(dir, CACHE).unwrap()
    }

    fn latest(store: &Store, name: &str) -> Option<u32> {
        store.function("t", name).unwrap().map(|f| f.latest_version)
    }

    /// Write `records` as the log of the closed store in `dir`.
    fn write_log(dir: &Path, records: &[(u64, Vec<wal::Op>)]) {
        let (mut wal, _) = wal::Wal::open(&dir.join("wal")).unwrap();
        for (seq, ops) in records {
            wal.append(*seq, ops);
        }
        wal.write().unwrap();
    }

    fn put(name: &str, v: u32) -> wal::Op {
        wal::Op::Put(keys::function("t", name), encode(&function(name, v)))
    }

    #[tokio::test]
    async fn recovery_replays_the_log_in_order_and_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        for name in ["a", "b"] {
            let mut batch = Batch::new();
            batch.put_function("t", &function(name, 1));
            store.commit(batch, Durability::Sync).await.unwrap();
        }
        drop(store);
        // Shutting down checkpointed: sled holds records 1 and 2, the log is empty.
        let store = reopen(dir.path());
        assert_eq!(
            (latest(&store, "a"), latest(&store, "b")),
            (Some(1), Some(1))
        );
        drop(store);
        wait_closed(dir.path());
        let wal_path = dir.path().join("wal");
        assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), 0);

        // A log that reaches past sled (as a crash leaves it): replayed whole, in order,
        // whatever part of it sled kept. Records 1 and 2 are replayed too; record 3 then
        // deletes what record 2 wrote.
        write_log(
            dir.path(),
            &[
                (1, vec![put("a", 100), put("e", 100)]),
                (2, vec![put("b", 100)]),
                (3, vec![put("a", 3), wal::Op::Del(keys::function("t", "b"))]),
                (4, vec![put("c", 4)]),
            ],
        );
        let store = reopen(dir.path());
        assert_eq!(latest(&store, "a"), Some(3));
        assert_eq!(latest(&store, "b"), None);
        assert_eq!(latest(&store, "c"), Some(4));
        assert_eq!(latest(&store, "e"), Some(100));
        // Recovery checkpointed and emptied the log; new writes continue the sequence.
        assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), 0);
        let mut batch = Batch::new();
        batch.put_function("t", &function("d", 5));
        store.commit(batch, Durability::Sync).await.unwrap();
        let (_, records) = wal::Wal::open(&wal_path).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
        drop(store);
        wait_closed(dir.path());

        // sled further than the log (it kept lazy writes whose records were lost): the
        // records it already holds are not applied again.
        write_log(dir.path(), &[(4, vec![put("f", 1), put("c", 40)])]);
        let store = reopen(dir.path());
        assert_eq!((latest(&store, "f"), latest(&store, "c")), (None, Some(4)));
        assert_eq!(latest(&store, "d"), Some(5));
    }

    #[tokio::test]
    async fn large_values_live_in_blob_files_that_checkpoints_keep() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut batch = Batch::new();
        batch.put(b"Xbig".to_vec(), &bytes);
        batch.put_component("abc", bytes.clone());
        store.commit(batch, Durability::Sync).await.unwrap();
        drop(store);
        let store = reopen(dir.path());
        // sled keeps values over ~128 KiB in their own files, which it never fsyncs: the
        // checkpoint at shutdown did (sync_blobs), and the bytes are back.
        let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
        assert!(blobs > 0, "the value was expected in a blob file");
        assert_eq!(store.get::<Vec<u8>>(b"Xbig").unwrap(), Some(bytes.clone()));
        // Components are stored in chunks below the blob threshold (so that sled's cache
        // counts them), and read back whole.
        assert_eq!(store.component("abc").unwrap(), Some(bytes));
        assert_eq!(store.component("abd").unwrap(), None);
    }

    #[tokio::test]
    async fn unawaited_and_lazy_writes_are_applied_in_order_and_made_durable_by_a_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        let fsyncs = || {
            store
                .sync_stats()
                .fsyncs
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        // Nothing written: the barrier is free.
        let before = fsyncs();
        store.durable_barrier().await.unwrap();
        assert!(store.is_durable());
        assert_eq!(
            fsyncs(),
            before,
            "a barrier with nothing to sync costs no fsync"
        );
        // Unawaited then lazy: applied in order, neither waits for the disk.
        let mut batch = Batch::new();
        batch.put_function("t", &function("u", 1));
        store.commit_unawaited(batch).unwrap();
        let mut batch = Batch::new();
        batch.put_function("t", &function("u", 2));
        store.commit(batch, Durability::Lazy).await.unwrap();
        assert_eq!(latest(&store, "u"), Some(2));
        assert_eq!(
            fsyncs(),
            before,
            "lazy and unawaited writes wait for no fsync"
        );
        assert!(!store.is_durable());
        // Concurrent barriers share one fdatasync; a later one finds nothing to do.
        let (a, b, c) = tokio::join!(
            store.durable_barrier(),
            store.durable_barrier(),
            store.durable_barrier()
        );
        a.and(b).and(c).unwrap();
        assert!(store.is_durable());
        assert_eq!(fsyncs(), before + 1, "three barriers, one fsync");
        store.durable_barrier().await.unwrap();
        assert_eq!(fsyncs(), before + 1);
        // A durable commit after it syncs once; a barrier right after it is free.
        let mut batch = Batch::new();
        batch.put_function("t", &function("w", 1));
        store.commit(batch, Durability::Sync).await.unwrap();
        store.durable_barrier().await.unwrap();
        assert_eq!(fsyncs(), before + 2);
        // An unawaited write no one waits for is made durable by the next checkpoint
        // (<= 1 s), without an fsync of the log.
        let mut batch = Batch::new();
        batch.put_function("t", &function("u", 3));
        store.commit_unawaited(batch).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !store.is_durable() {
            assert!(std::time::Instant::now() < deadline, "never made durable");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(fsyncs(), before + 2, "a checkpoint, not a log fsync");
        assert_eq!(latest(&store, "u"), Some(3));
        // An empty batch is not sent at all.
        store.commit_unawaited(Batch::new()).unwrap();
        assert!(store.is_durable());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_barrier_waits_for_every_write_sent_before_it_and_concurrent_ones_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        let before = store.sync_stats().fsyncs.load(Ordering::Relaxed);
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.spawn(async move {
                for n in 0..25 {
                    let name = format!("w{w}-{n}");
                    let mut batch = Batch::new();
                    batch.put_function("t", &function(&name, 1));
                    if n % 2 == 0 {
                        store.commit_unawaited(batch).unwrap();
                    } else {
                        store.commit(batch, Durability::Lazy).await.unwrap();
                    }
                    store.durable_barrier().await.unwrap();
                    // Applied (readable) and counted durable once the barrier returns.
                    assert_eq!(latest(&store, &name), Some(1), "{name}");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let fsyncs = store.sync_stats().fsyncs.load(Ordering::Relaxed) - before;
        assert!(
            (1..=200).contains(&fsyncs),
            "{fsyncs} fsyncs for 200 barriers"
        );
    }

    #[tokio::test]
    async fn one_claim_of_a_key_wins_and_only_its_writes_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        let claim = |n: u8| IdempotencyRecord {
            execution: [n; 16],
            input_sha256: format!("input-{n}"),
        };
        let create = |n: u8| {
            let store = store.clone();
            async move {
                let mut batch = Batch::new();
                batch.put_function("t", &function(&format!("f{n}"), 1));
                store
                    .claim_idempotency("t", "f", "key", &claim(n), batch, None)
                    .await
            }
        };
        // Sent together, so that the commit thread takes them as one group.
        let (a, b, c) = tokio::join!(create(1), create(2), create(3));
        assert_eq!(a.unwrap(), None);
        assert_eq!(b.unwrap(), Some(claim(1)));
        assert_eq!(c.unwrap(), Some(claim(1)));
        // Later, after the group: still the first claim.
        assert_eq!(create(4).await.unwrap(), Some(claim(1)));
        let written: Vec<_> = (1..=4).map(|n| latest(&store, &format!("f{n}"))).collect();
        assert_eq!(written, [Some(1), None, None, None]);
        // After a restart too.
        drop(store);
        let store = reopen(dir.path());
        let mut batch = Batch::new();
        batch.put_function("t", &function("f5", 1));
        let held = store
            .claim_idempotency("t", "f", "key", &claim(5), batch, None)
            .await
            .unwrap();
        assert_eq!(held, Some(claim(1)));
        assert_eq!(latest(&store, "f5"), None);
        // Replacing a claim that is no longer there is refused; replacing the one there
        // takes the key over, with its writes.
        let take_over = |n: u8, replace: IdempotencyRecord| {
            let store = store.clone();
            async move {
                let mut batch = Batch::new();
                batch.put_function("t", &function(&format!("f{n}"), 1));
                store
                    .claim_idempotency("t", "f", "key", &claim(n), batch, Some(&replace))
                    .await
            }
        };
        assert_eq!(take_over(6, claim(9)).await.unwrap(), Some(claim(1)));
        let (a, b) = tokio::join!(take_over(7, claim(1)), take_over(8, claim(1)));
        assert_eq!(a.unwrap(), None);
        assert_eq!(b.unwrap(), Some(claim(7)));
        assert_eq!(latest(&store, "f7"), Some(1));
        assert_eq!(latest(&store, "f8"), None);
    }

    #[tokio::test]
    async fn compare_and_swap_sees_earlier_writes_of_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        let key = keys::callback("cb");
        let (v1, v2) = (b"one".to_vec(), b"two".to_vec());
        let cas = |expected: Option<Vec<u8>>, new: Vec<u8>| Work::CompareAndSwap {
            key: key.clone(),
            expected,
            new,
        };
        // Sent together, so that the commit thread takes them as one group.
        let (a, b, c) = tokio::join!(
            store.submit(cas(None, v1.clone()), Vec::new(), Durability::Sync),
            store.submit(
                cas(Some(v1.clone()), v2.clone()),
                Vec::new(),
                Durability::Sync
            ),
            store.submit(cas(None, v1.clone()), Vec::new(), Durability::Lazy),
        );
        assert!(matches!(a.unwrap(), Applied::Done));
        assert!(matches!(b.unwrap(), Applied::Done));
        match c.unwrap() {
            Applied::Conflict(Some(current)) => assert_eq!(current.as_ref(), &v2[..]),
            _ => panic!("a swap expecting nothing must see the value written before it"),
        }
        assert_eq!(store.data.get(&key).unwrap().unwrap().as_ref(), &v2[..]);
    }

    fn request(work: Work) -> CommitRequest {
        CommitRequest {
            work,
            touched: Vec::new(),
            mode: Mode::Sync,
            done: oneshot::channel().0,
        }
    }

    fn batch_of(bytes: usize) -> Work {
        Work::Batch(vec![wal::Op::Put(b"Xk".to_vec(), vec![0; bytes - 2])])
    }

    #[test]
    fn a_group_takes_small_writers_together_and_caps_large_ones() {
        // (sizes queued, groups expected): a large batch is a group of its own, and the
        // small writers queued behind it are not held back by the ones behind them.
        let big = MAX_GROUP_BYTES;
        let cases: &[(&[usize], &[usize])] = &[
            (&[100; 500], &[500]),
            (&[big, 100, 100], &[1, 2]),
            (&[100, big, 100], &[1, 1, 1]),
            (&[3 * big, 3 * big, 100], &[1, 1, 1]),
            (&[big / 2, big / 2, big / 2, 100], &[2, 2]),
            (&[big / 2, big / 2 + 1, 100], &[1, 2]),
        ];
        for (sizes, expected) in cases {
            let mut backlog: VecDeque<CommitRequest> =
                sizes.iter().map(|&n| request(batch_of(n))).collect();
            let mut groups = Vec::new();
            while !backlog.is_empty() {
                let group = take_group(&mut backlog, MAX_GROUP_BYTES);
                assert!(
                    group.len() == 1 || group.iter().map(|r| r.work.bytes()).sum::<usize>() <= big,
                    "{sizes:?}"
                );
                groups.push(group.len());
            }
            assert_eq!(&groups[..], *expected, "{sizes:?}");
        }
    }

    /// Open `dir`'s sled directly (the store closed), as a damaged disk or a careless
    /// operator would leave it.
    fn tamper(dir: &Path, f: impl FnOnce(&sled::Tree)) {
        wait_closed(dir);
        let db = sled::Config::new().path(dir).open().unwrap();
        f(&db.open_tree("data").unwrap());
        db.flush().unwrap();
    }

    async fn put_functions(store: &Store, names: &[&str], durability: Durability) {
        for name in names {
            let mut batch = Batch::new();
            batch.put_function("t", &function(name, 1));
            store.commit(batch, durability).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_sled_that_lost_acknowledged_writes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        // Both apply paths (durable: one by one; lazy: sled's batch), overwrites and a
        // delete: the counts kept as they go match a recount at the next start.
        put_functions(&store, &["a", "b", "c"], Durability::Sync).await;
        put_functions(&store, &["c", "d", "e"], Durability::Lazy).await;
        let mut batch = Batch::new();
        batch.del(keys::function("t", "a"));
        batch.del(keys::function("t", "nothing"));
        store.commit(batch, Durability::Lazy).await.unwrap();
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(store.functions("t").unwrap().len(), 4);
        drop(store);

        // A record gone behind the store's back (a lost page): refused, and saying how many.
        tamper(dir.path(), |data| {
            data.remove(keys::function("t", "b")).unwrap();
        });
        let err = Store::open(dir.path(), CACHE).err().expect("refused");
        let msg = err.to_string();
        assert!(matches!(err, Error::LostData(_)), "{msg}");
        assert!(msg.contains("functions: 4 expected, 3 found"), "{msg}");
        assert!(msg.contains("delete") && msg.contains("manifest"), "{msg}");
        // Refused again (nothing was changed by the refusal).
        assert!(matches!(
            Store::open(dir.path(), CACHE),
            Err(Error::LostData(_))
        ));

        // Sled behind the checkpoint's sequence (a truncated or older file): refused.
        tamper(dir.path(), |data| {
            data.insert(keys::function("t", "b"), encode(&function("b", 1)))
                .unwrap();
            data.insert(keys::WAL_SEQ, &1u64.to_be_bytes()[..]).unwrap();
        });
        let msg = Store::open(dir.path(), CACHE)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains("sequence 7 (what the last checkpoint left), found 1"),
            "{msg}"
        );

        // The operator accepts the loss by deleting the manifest: the store opens, and
        // checks again from its next checkpoint on.
        std::fs::remove_file(manifest::path(dir.path())).unwrap();
        let store = Store::open(dir.path(), CACHE).unwrap();
        assert_eq!(store.functions("t").unwrap().len(), 4);
        drop(store);
        assert!(reopen(dir.path()).functions("t").is_ok());
    }
}
