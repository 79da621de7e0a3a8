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
//! A torn or corrupt tail ends the log.
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

/// The most buffer kept between writes: more than a group of ordinary records needs.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

pub struct Wal {
    file: File,
    /// Bytes in the file (all of them complete records).
    len: u64,
    /// Records appended since the last `write`.
    buf: Vec<u8>,
}

impl Wal {
    /// Open (or create) the log and read its complete records; a torn tail is cut off.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<Record>)> {
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
        let (records, valid) = parse(&bytes);
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
        let wal = Self {
            file,
            len: valid as u64,
            buf: Vec::new(),
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
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Bytes written to the file since it was last emptied.
    pub fn len(&self) -> u64 {
        self.len
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

/// The complete records at the start of `bytes`, and how many bytes they take.
fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, size)) = parse_one(&bytes[at..]) {
        // Sequence numbers are consecutive within one log.
        if records
            .last()
            .is_some_and(|prev: &Record| prev.seq.checked_add(1) != Some(record.seq))
        {
            break;
        }
        records.push(record);
        at += size;
    }
    (records, at)
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
        let (records, whole) = parse(&full);
        assert_eq!((records.len(), whole), (3, full.len()));
        // Every cut inside the last record keeps exactly the first two (and the bytes the
        // first two take are where a cut log's valid part ends).
        let (_, two_len) = parse(&full[..full.len() - 1]);
        for cut in two_len..full.len() {
            assert_eq!(parse(&full[..cut]).0.len(), 2, "cut at {cut}");
        }
        // A flipped byte in the second record ends the log after the first.
        let mut bad = full.clone();
        bad[two_len - 3] ^= 0xff;
        assert_eq!(parse(&bad).0.len(), 1);
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
