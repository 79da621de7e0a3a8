//! An upload on its way in: its bytes go to a temporary file under the data directory,
//! hashed as they arrive and refused as soon as they pass the upload limit, so that a
//! request holds no more than a buffer of memory however large its body is (finding 12 of
//! issue 8). The registry reads the file back only under its in-memory bound.
//!
//! Architecture invariant: the temporary file goes with its owner (`Spool` or `Spooled`):
//! an upload that failed, was refused or was stored leaves nothing behind.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{artifact, Error};

/// Bytes buffered before a write to the file: few writes, and little memory per upload.
const BUFFER_BYTES: usize = 256 * 1024;

/// Removes the file when dropped.
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "removing an upload's temporary file");
            }
        }
    }
}

/// An upload being received.
pub struct Spool {
    out: tokio::io::BufWriter<tokio::fs::File>,
    file: TempFile,
    hasher: Sha256,
    len: u64,
    limit: u64,
}

/// A whole upload in its temporary file.
#[derive(Debug)]
pub struct Spooled {
    file: TempFile,
    pub sha256: String,
    pub len: u64,
}

/// A spool file's I/O error; lack of space is the store's `Full` (507, as for every write
/// the disk holding the data directory refuses), anything else a spool error.
fn io(path: &Path, e: std::io::Error) -> Error {
    match crate::db::Error::no_space(path, &e) {
        Some(full) => Error::Storage(full),
        None => Error::Spool(format!("{}: {e}", path.display())),
    }
}

impl Spool {
    /// A new temporary file in `dir` for an upload of at most `limit` bytes.
    pub async fn create(dir: &Path, limit: u64) -> Result<Spool, Error> {
        let path = artifact::unique_tmp(dir, "upload");
        let f = tokio::fs::File::create(&path)
            .await
            .map_err(|e| io(&path, e))?;
        Ok(Spool {
            out: tokio::io::BufWriter::with_capacity(BUFFER_BYTES, f),
            file: TempFile(path),
            hasher: Sha256::new(),
            len: 0,
            limit,
        })
    }

    /// Append a piece of the body; `TooLarge` as soon as the whole passes the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(Error::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        self.out
            .write_all(chunk)
            .await
            .map_err(|e| io(&self.file.0, e))
    }

    /// The body has ended. (Not fsynced: a crash loses the upload, which was not answered.)
    pub async fn finish(mut self) -> Result<Spooled, Error> {
        self.out.flush().await.map_err(|e| io(&self.file.0, e))?;
        Ok(Spooled {
            file: self.file,
            sha256: hex::encode(self.hasher.finalize()),
            len: self.len,
        })
    }
}

impl Spooled {
    /// The bytes, read back into memory.
    pub async fn read(&self) -> Result<Vec<u8>, Error> {
        let bytes = tokio::fs::read(&self.file.0)
            .await
            .map_err(|e| io(&self.file.0, e))?;
        if bytes.len() as u64 != self.len {
            return Err(Error::Spool(format!(
                "{}: {} bytes were written, {} read back",
                self.file.0.display(),
                self.len,
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_hashes_what_it_stores_refuses_past_its_limit_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let count = || std::fs::read_dir(dir.path()).unwrap().count();

        let mut s = Spool::create(dir.path(), 10).await.unwrap();
        s.write(b"hello ").await.unwrap();
        s.write(b"wasm").await.unwrap();
        let done = s.finish().await.unwrap();
        assert_eq!(done.len, 10);
        assert_eq!(done.sha256, super::super::sha256_hex(b"hello wasm"));
        assert_eq!(done.read().await.unwrap(), b"hello wasm");
        assert_eq!(count(), 1);
        drop(done);
        assert_eq!(count(), 0, "a stored upload leaves nothing");

        let mut s = Spool::create(dir.path(), 10).await.unwrap();
        s.write(b"0123456789").await.unwrap();
        assert!(matches!(
            s.write(b"x").await,
            Err(Error::TooLarge { limit: 10 })
        ));
        drop(s);
        assert_eq!(count(), 0, "a refused upload leaves nothing");
    }
}
