//! The checkpoint manifest: what sled held at the last checkpoint, so that a start can tell
//! a sled file that lost acknowledged writes (truncated, restored from an old copy, damaged)
//! from a healthy one.
//!
//! Written beside sled's files (`<data-dir>/db/manifest`) at every checkpoint, after sled is
//! flushed and fdatasynced and before the write-ahead log is emptied: the write-ahead log
//! sequence sled had reached, and the number of keys under each tag of the `data` tree.
//! The counts are kept by the commit thread as it applies writes (each put or delete knows
//! whether its key existed), so a checkpoint writes a few hundred bytes and does no work
//! proportional to the store. Format: `MAGIC | seq u64 LE | n u16 LE | (tag u8, count u64
//! LE)* | crc32 u32 LE`; replaced atomically (temporary file, fsync, rename, fsync of the
//! directory).
//!
//! Architecture invariant: a manifest names only a state sled held durably (it is written
//! after sled's fdatasync); it is never written by anything but a checkpoint.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"DHM1";
const NAME: &str = "manifest";

/// Keys per tag (the first byte of a `data` key).
pub type Counts = BTreeMap<u8, u64>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The write-ahead log sequence sled held at the checkpoint (`keys::WAL_SEQ`).
    pub seq: u64,
    pub counts: Counts,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.seq.to_le_bytes());
        let n = u16::try_from(self.counts.len()).expect("at most 256 tags");
        out.extend_from_slice(&n.to_le_bytes());
        for (tag, count) in &self.counts {
            out.push(*tag);
            out.extend_from_slice(&count.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let rest = body.strip_prefix(MAGIC)?;
        let seq = u64::from_le_bytes(rest.get(0..8)?.try_into().ok()?);
        let n = u16::from_le_bytes(rest.get(8..10)?.try_into().ok()?) as usize;
        let entries = rest.get(10..)?;
        if entries.len() != n * 9 {
            return None;
        }
        let counts = entries
            .chunks_exact(9)
            .map(|c| {
                (
                    c[0],
                    u64::from_le_bytes(c[1..].try_into().expect("8 bytes")),
                )
            })
            .collect();
        Some(Self { seq, counts })
    }

    /// The manifest in `dir`: `Ok(None)` if there is none (a new store, or one written
    /// before manifests existed); an error if it is unreadable.
    pub fn read(dir: &Path) -> io::Result<Option<Self>> {
        let path = path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes).map(Some).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a valid manifest (bad checksum)", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replace the manifest in `dir` atomically and durably.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let path = path(dir);
        let tmp = path.with_extension("tmp");
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), None);
        let m = Manifest {
            seq: 42,
            counts: [(b'X', 970), (b'F', 1), (b'H', 12_345)]
                .into_iter()
                .collect(),
        };
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), Some(m.clone()));
        let mut bytes = std::fs::read(path(dir.path())).unwrap();
        bytes[6] ^= 1;
        std::fs::write(path(dir.path()), &bytes).unwrap();
        assert!(Manifest::read(dir.path()).is_err());
        std::fs::write(path(dir.path()), b"").unwrap();
        assert!(Manifest::read(dir.path()).is_err());
    }
}
