//! The write-ahead log that makes commits durable with one fdatasync.
//!
//! sled's own flush writes its log buffers through a pool of io threads and ends in
//! `sync_file_range`, so a durable commit through it cost two syncs' worth of time and most
//! of a core in context switches. Instead, the commit thread appends every batch to this file
//! (one `write` per group commit) and fdatasyncs it; sled applies the same batch in memory
//! and is flushed only at checkpoints, after which the file is emptied.
//!
//! Each record carries a sequence number, and every batch applied to sled writes the same
//! number under `keys::WAL_SEQ` atomically with its contents. Recovery reads sled's number
//! and applies only the records after it, so it is exact whichever of sled and the log got
//! further before a crash. Record: `len u32 LE | crc32 u32 LE | payload`, payload =
//! `seq u64 LE | op*`, op = `kind u8 | key_len u32 LE | key | [value_len u32 LE | value]`.
//! A torn tail (the last record incomplete, as a crash mid-write leaves it) ends the log and
//! is cut off. A record that fails its checksum while a valid record follows it is not a
//! torn tail but damage to records that were acknowledged: `open` refuses the log rather
//! than cut them (only one record is ever being written, at the end, so nothing valid can
//! legitimately follow a bad one).
//!
//! Fault injection for crash tests: with `DURABLE_FAULT_LOSE_UNSYNCED_LOG=1` in the
//! environment, records stay in memory until they are fdatasynced (`write` keeps them,
//! `sync` writes and syncs them), so that a kill -9 loses every record no fdatasync covered,
//! as a power loss may. Never set it in production: it only makes the log less durable.
//!
//! Architecture invariant: a record is on disk (written and fdatasynced) before any durable
//! commit it contains is acknowledged; the file is emptied only after sled is flushed and
//! fdatasynced.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One write, on one of the two trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
    /// Content-addressed component bytes (the `components` tree); idempotent.
    PutComponent(Vec<u8>, Vec<u8>),
}

const PUT: u8 = 1;
const DEL: u8 = 2;
const PUT_COMPONENT: u8 = 3;
const HEADER: usize = 8;

#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub ops: Vec<Op>,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A bad record with valid ones after it: acknowledged writes are damaged.
    #[error(
        "the write-ahead log {path} is corrupt in the middle: the record at byte {offset} \
         fails its checksum, yet a valid record (sequence {next_seq}) follows at byte \
         {next_offset}; cutting the log there would drop acknowledged writes, so the store \
         refuses to start. Keep a copy of the file for diagnosis; restore the data directory \
         from a backup, or, to accept the loss of every write from byte {offset} on, truncate \
         the file to {offset} bytes and start again"
    )]
    Corrupt {
        path: String,
        offset: usize,
        next_seq: u64,
        next_offset: usize,
    },
}

/// How the valid records of a log end.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// At the end of the bytes.
    Clean,
    /// In an incomplete or bad last record (or a gap in sequence numbers): cut off.
    Torn,
    /// In a bad record that a valid one follows (at `next_offset`, with `next_seq`).
    Corrupt { next_seq: u64, next_offset: usize },
}

/// The most buffer kept between writes: more than a group of ordinary records needs.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

pub struct Wal {
    file: File,
    /// Bytes in the file (all of them complete records).
    len: u64,
    /// Records appended since the last `write`.
    buf: Vec<u8>,
    /// `DURABLE_FAULT_LOSE_UNSYNCED_LOG`: records are written only by `sync`.
    write_at_sync: bool,
}

/// The fault-injection switch (see the module header).
pub const LOSE_UNSYNCED: &str = "DURABLE_FAULT_LOSE_UNSYNCED_LOG";

impl Wal {
    /// Open (or create) the log and read its complete records; a torn tail is cut off, a
    /// corrupt record with valid ones after it refuses the log.
    pub fn open(path: &Path) -> Result<(Self, Vec<Record>), OpenError> {
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if created {
            // The file's name must survive a power loss as well as its contents.
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid, tail) = parse(&bytes);
        if let Tail::Corrupt {
            next_seq,
            next_offset,
        } = tail
        {
            return Err(OpenError::Corrupt {
                path: path.display().to_string(),
                offset: valid,
                next_seq,
                next_offset,
            });
        }
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = valid,
                dropped = bytes.len() - valid,
                "write-ahead log ends in a torn record; it is cut off"
            );
            file.set_len(valid as u64)?;
            file.sync_data()?;
        }
        let write_at_sync = std::env::var_os(LOSE_UNSYNCED).is_some_and(|v| v == "1");
        if write_at_sync {
            tracing::warn!(
                "{LOSE_UNSYNCED}=1: the write-ahead log writes records only when it syncs \
                 them (fault injection for tests; a crash loses unsynced writes)"
            );
        }
        let wal = Self {
            file,
            len: valid as u64,
            buf: Vec::new(),
            write_at_sync,
        };
        Ok((wal, records))
    }

    /// Append a record to the buffer (not yet written).
    pub fn append(&mut self, seq: u64, ops: &[Op]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        self.buf.extend_from_slice(&seq.to_le_bytes());
        for op in ops {
            let (kind, key, value) = match op {
                Op::Put(k, v) => (PUT, k, Some(v)),
                Op::Del(k) => (DEL, k, None),
                Op::PutComponent(k, v) => (PUT_COMPONENT, k, Some(v)),
            };
            self.buf.push(kind);
            put_bytes(&mut self.buf, key);
            if let Some(v) = value {
                put_bytes(&mut self.buf, v);
            }
        }
        let payload = &self.buf[start + HEADER..];
        let len = u32::try_from(payload.len()).expect("a record is under 4 GiB");
        let crc = crc32fast::hash(payload);
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// Write the buffered records (to the page cache: they survive a process crash).
    pub fn write(&mut self) -> io::Result<()> {
        if self.write_at_sync {
            return Ok(());
        }
        self.write_buffered()
    }

    fn write_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // At an explicit offset: a failed write or reset never leaves a later record in
        // the wrong place.
        let res = self.file.write_all_at(&self.buf, self.len);
        if res.is_ok() {
            self.len += self.buf.len() as u64;
        } else {
            // A partial write leaves a torn record: cut the file back to the last whole one
            // so that later records are not hidden behind it.
            let _ = self.file.set_len(self.len);
        }
        self.buf.clear();
        // A record with a large component would otherwise keep its size of memory for the
        // life of the process.
        self.buf.shrink_to(KEEP_BUFFER_BYTES);
        res
    }

    /// Make everything written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.write_at_sync {
            self.write_buffered()?;
        }
        self.file.sync_data()
    }

    /// Bytes of records since the log was last emptied (written, or held for `sync`).
    pub fn len(&self) -> u64 {
        self.len + self.buf.len() as u64
    }

    /// Empty the log: only after everything in it is durable elsewhere.
    pub fn reset(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.file.set_len(0)?;
        self.len = 0;
        self.file.sync_data()
    }
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("a key or value is under 4 GiB");
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(b);
}

/// The complete records at the start of `bytes`, how many bytes they take, and how they end.
fn parse(bytes: &[u8]) -> (Vec<Record>, usize, Tail) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, size)) = parse_one(&bytes[at..]) {
        // Sequence numbers are consecutive within one log.
        if records
            .last()
            .is_some_and(|prev: &Record| prev.seq.checked_add(1) != Some(record.seq))
        {
            return (records, at, Tail::Torn);
        }
        records.push(record);
        at += size;
    }
    if at == bytes.len() {
        return (records, at, Tail::Clean);
    }
    // The record at `at` is bad. A torn tail: its header is whole (the sequence number that
    // comes next) and its length runs past the end of the file, as when a crash cut the
    // last write short; then nothing is looked for inside it (component bytes in its
    // payload may hold anything). Otherwise it is corrupt if a valid record follows.
    let claimed_seq = bytes
        .get(at + HEADER..at + HEADER + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let claimed_end = bytes
        .get(at..at + 4)
        .map(|b| at + HEADER + u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
    let expected = records.last().map(|r| r.seq + 1).or(claimed_seq);
    let cut_short = claimed_seq.is_some()
        && claimed_seq == expected
        && claimed_end.is_some_and(|end| end > bytes.len());
    let tail = match expected.filter(|_| !cut_short) {
        Some(seq) => match valid_record_after(bytes, at, seq) {
            Some((next_seq, next_offset)) => Tail::Corrupt {
                next_seq,
                next_offset,
            },
            None => Tail::Torn,
        },
        None => Tail::Torn,
    };
    (records, at, tail)
}

/// A valid record after the bad one at `bad` (whose sequence number should be `expected`):
/// its sequence number and offset. Every byte position is tried (the bad record's length
/// may be what is damaged), but the checksum is computed only where the sequence number
/// read there is one that could follow, so the scan stays linear.
fn valid_record_after(bytes: &[u8], bad: usize, expected: u64) -> Option<(u64, usize)> {
    // Each record takes at least its header and sequence number.
    let most_after = (bytes.len() - bad) as u64 / (HEADER as u64 + 8);
    for at in bad + 1..bytes.len().saturating_sub(HEADER + 8) + 1 {
        let seq = u64::from_le_bytes(bytes[at + HEADER..at + HEADER + 8].try_into().ok()?);
        if seq <= expected.saturating_sub(1) || seq > expected.saturating_add(most_after) {
            continue;
        }
        if let Some((record, _)) = parse_one(&bytes[at..]) {
            return Some((record.seq, at));
        }
    }
    None
}

fn parse_one(bytes: &[u8]) -> Option<(Record, usize)> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..HEADER)?.try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut r = Reader(payload);
    let seq = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let mut ops = Vec::new();
    while !r.0.is_empty() {
        let kind = r.take(1)?[0];
        let key = r.bytes()?;
        ops.push(match kind {
            PUT => Op::Put(key, r.bytes()?),
            DEL => Op::Del(key),
            PUT_COMPONENT => Op::PutComponent(key, r.bytes()?),
            _ => return None,
        });
    }
    Some((Record { seq, ops }, HEADER + len))
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(len).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(n: u8) -> Vec<Op> {
        vec![
            Op::Put(vec![b'X', n], vec![n; 100]),
            Op::Del(vec![b'T', n]),
            Op::PutComponent(vec![n], vec![7; 3]),
        ]
    }

    fn written(dir: &Path, seqs: std::ops::Range<u64>) -> std::path::PathBuf {
        let path = dir.join("wal");
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert!(records.is_empty());
        for seq in seqs {
            wal.append(seq, &ops(seq as u8));
        }
        wal.write().unwrap();
        wal.sync().unwrap();
        path
    }

    #[test]
    fn records_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), 5..9);
        let (wal, records) = Wal::open(&path).unwrap();
        assert_eq!(wal.len(), std::fs::metadata(&path).unwrap().len());
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [5, 6, 7, 8]);
        assert_eq!(records[2].ops, ops(7));
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_log_and_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), 1..4);
        let full = std::fs::read(&path).unwrap();
        let (records, whole, tail) = parse(&full);
        assert_eq!((records.len(), whole, tail), (3, full.len(), Tail::Clean));
        // Every cut inside the last record keeps exactly the first two (and the bytes the
        // first two take are where a cut log's valid part ends).
        let (_, two_len, _) = parse(&full[..full.len() - 1]);
        for cut in two_len + 1..full.len() {
            let (records, _, tail) = parse(&full[..cut]);
            assert_eq!((records.len(), tail), (2, Tail::Torn), "cut at {cut}");
        }
        // Damage anywhere in the last record (a bad write at the end) is a torn tail too.
        for at in [two_len, two_len + 5, two_len + HEADER + 3, full.len() - 1] {
            let mut bad = full.clone();
            bad[at] ^= 0xff;
            let (records, _, tail) = parse(&bad);
            assert_eq!((records.len(), tail), (2, Tail::Torn), "flipped at {at}");
        }
        // A zero-filled tail (a file extended but never written) is torn as well.
        let mut zeros = full.clone();
        zeros.extend_from_slice(&[0; 64]);
        assert_eq!(parse(&zeros).2, Tail::Torn);
        // Opening cuts the torn tail off, and appending continues after the whole records.
        std::fs::write(&path, &full[..full.len() - 5]).unwrap();
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(wal.len(), two_len as u64);
        wal.append(3, &ops(3));
        wal.write().unwrap();
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_bad_record_with_valid_ones_after_it_is_corruption_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), 1..5);
        let full = std::fs::read(&path).unwrap();
        let one = full.len() / 4; // the records are the same size
                                  // Damage in the length, the checksum, the sequence number or the payload of a
                                  // record in the middle (or of the first one): the valid records after it are found.
                                  // (Not found: a length damaged to reach past the end of the file, which looks just
                                  // like the last record cut short.)
        for at in [
            0,
            HEADER + 20,
            one,
            one + 4,
            one + HEADER,
            one + HEADER + 30,
            2 * one + 7,
            3 * one - 1,
        ] {
            let mut bad = full.clone();
            bad[at] ^= 0x5a;
            let (records, valid, tail) = parse(&bad);
            let first_bad = at / one;
            assert_eq!(
                (records.len(), valid),
                (first_bad, first_bad * one),
                "at {at}"
            );
            assert_eq!(
                tail,
                Tail::Corrupt {
                    next_seq: first_bad as u64 + 2,
                    next_offset: (first_bad + 1) * one
                },
                "flipped at {at}"
            );
        }
        // Opening refuses it, names the file and the offset, and leaves the file as it was.
        let mut bad = full.clone();
        bad[one + HEADER + 30] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        let err = Wal::open(&path)
            .err()
            .expect("a corrupt log must be refused");
        let msg = err.to_string();
        assert!(
            matches!(err, OpenError::Corrupt { offset, .. } if offset == one),
            "{msg}"
        );
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("truncate"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bad);
    }

    #[test]
    fn a_gap_in_sequence_numbers_ends_the_log_and_reset_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        for seq in [1, 2, 4] {
            wal.append(seq, &ops(1));
        }
        wal.write().unwrap();
        let (mut wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        wal.reset().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let (_, records) = Wal::open(&path).unwrap();
        assert!(records.is_empty());
    }
}
