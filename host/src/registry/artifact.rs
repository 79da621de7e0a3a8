//! The compiled-artifact file: wasmtime's serialized component behind a header that carries
//! its length and sha256, so that a load verifies the whole file before wasmtime sees it.
//!
//! `Component::deserialize*` is unsafe: it trusts its input as machine code. A flipped bit
//! on disk would otherwise crash the host at every start (finding 2 of issue 8). This module
//! only reads, checks and writes bytes; it knows nothing of wasmtime.
//!
//! Architecture invariant: a file is written under a name no other writer uses, fsynced, and
//! renamed into place, so a reader sees a whole artifact or none (and a crash leaves at most
//! a `*.tmp` file, removed at the next start).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The first bytes of every artifact this host writes; the digit is the format's version.
const MAGIC: &[u8; 8] = b"DURCWSM1";
/// Magic, payload length (u64, little endian), payload sha256.
pub const HEADER_LEN: usize = 8 + 8 + 32;

/// Why an artifact file cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Bad {
    #[error("{0} bytes: shorter than the artifact header")]
    Short(usize),
    #[error("not an artifact of this format (written by another version of the host?)")]
    Magic,
    #[error("the header announces {announced} bytes but {found} follow (truncated or extended)")]
    Length { announced: u64, found: u64 },
    #[error("its sha256 does not match the one written with it (the file is damaged)")]
    Checksum,
}

fn header(payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[16..].copy_from_slice(&Sha256::digest(payload));
    h
}

/// The payload of a whole artifact file, once its length and checksum match.
pub fn verify(file: &[u8]) -> Result<&[u8], Bad> {
    if file.len() < HEADER_LEN {
        return Err(Bad::Short(file.len()));
    }
    let (head, payload) = file.split_at(HEADER_LEN);
    if &head[..8] != MAGIC {
        return Err(Bad::Magic);
    }
    let announced = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    if announced != payload.len() as u64 {
        return Err(Bad::Length {
            announced,
            found: payload.len() as u64,
        });
    }
    if Sha256::digest(payload).as_slice() != &head[16..] {
        return Err(Bad::Checksum);
    }
    Ok(payload)
}

/// A name in `dir` that no other write uses: this process's id and a counter.
pub fn unique_tmp(dir: &Path, stem: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{stem}.{}.{n}.tmp", std::process::id()))
}

/// Write `payload` as the artifact at `path`: to a unique temporary file, fsynced, then
/// renamed into place (and the directory fsynced, so that the rename survives a crash).
pub fn write(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("an artifact path has a directory");
    let stem = path
        .file_name()
        .expect("an artifact path has a name")
        .to_string_lossy();
    let tmp = unique_tmp(dir, &stem);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&header(payload))?;
        f.write_all(payload)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Remove the temporary files that writes cut short by a crash left in `dir`. Call only
/// while no write can run (at start, with the store's lock held).
pub fn remove_leftovers(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Mark an artifact as just used (its modification time orders `evict`). Best effort.
pub fn touch(path: &Path) {
    let _ = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
}

/// The artifacts (`*.cwasm`) of `dir`: path, bytes and last use, least recently used first.
fn artifacts(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64, std::time::SystemTime)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "cwasm") {
            continue;
        }
        // A file removed meanwhile (another eviction) is simply not counted.
        if let Ok(m) = entry.metadata() {
            out.push((path, m.len(), m.modified()?));
        }
    }
    out.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}

/// Remove the least recently used artifacts of `dir` until they take at most `limit`
/// bytes; `keep` (the one just written or loaded) is never removed, even alone over the
/// limit. An evicted artifact is compiled again at its next load. Returns the bytes left
/// and the files removed.
pub fn evict(dir: &Path, limit: Option<u64>, keep: &Path) -> std::io::Result<(u64, usize)> {
    let all = artifacts(dir)?;
    let mut total: u64 = all.iter().map(|a| a.1).sum();
    let mut removed = 0;
    let Some(limit) = limit else {
        return Ok((total, 0));
    };
    for (path, len, _) in all {
        if total <= limit {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= len,
            Err(e) => return Err(e),
        }
    }
    Ok((total, removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payload: &[u8]) -> Vec<u8> {
        [&header(payload)[..], payload].concat()
    }

    #[test]
    fn a_written_artifact_verifies_and_every_damage_is_named() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let good = file(&payload);
        assert_eq!(verify(&good), Ok(&payload[..]));
        let flip = |at: usize| {
            let mut f = good.clone();
            for b in &mut f[at..at + 64] {
                *b = !*b;
            }
            f
        };
        let cases: Vec<(&str, Vec<u8>, Bad)> = vec![
            ("empty", vec![], Bad::Short(0)),
            ("half a header", good[..20].to_vec(), Bad::Short(20)),
            ("flipped payload", flip(good.len() / 2), Bad::Checksum),
            ("flipped header", flip(0), Bad::Magic),
            ("flipped checksum", flip(16), Bad::Checksum),
            (
                "truncated",
                good[..good.len() / 2].to_vec(),
                Bad::Length {
                    announced: payload.len() as u64,
                    found: (good.len() / 2 - HEADER_LEN) as u64,
                },
            ),
            (
                "extended",
                [&good[..], b"x"].concat(),
                Bad::Length {
                    announced: payload.len() as u64,
                    found: payload.len() as u64 + 1,
                },
            ),
            ("old format (no header)", payload.clone(), Bad::Magic),
        ];
        for (what, bytes, want) in cases {
            assert_eq!(verify(&bytes), Err(want), "{what}");
        }
    }

    #[test]
    fn writes_replace_the_file_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        write(&path, b"first").unwrap();
        write(&path, b"second, longer").unwrap();
        assert_eq!(
            verify(&std::fs::read(&path).unwrap()),
            Ok(&b"second, longer"[..])
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.cwasm"]);
        // A crash between create and rename leaves a unique temporary file; a start removes it.
        std::fs::write(unique_tmp(dir.path(), "a.cwasm"), b"partial").unwrap();
        assert_eq!(remove_leftovers(dir.path()).unwrap(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn eviction_removes_the_least_recently_used_beyond_the_bound_but_never_the_kept_one() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, secs: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![0u8; 100]).unwrap();
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + secs);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            p
        };
        let a = at("a.cwasm", 1);
        let b = at("b.cwasm", 2);
        let c = at("c.cwasm", 3);
        std::fs::write(dir.path().join("other.tmp"), vec![0u8; 1000]).unwrap();
        assert_eq!(evict(dir.path(), None, &c).unwrap(), (300, 0), "unbounded");
        touch(&a); // a is now the most recently used
        assert_eq!(evict(dir.path(), Some(250), &c).unwrap(), (200, 1));
        assert!(!b.exists() && a.exists() && c.exists());
        // Alone over the bound, the kept one stays.
        assert_eq!(evict(dir.path(), Some(50), &c).unwrap(), (100, 1));
        assert!(!a.exists() && c.exists());
    }
}
