//! Background uploads (`PUT /v1/functions/{name}?async=true`): the record of an upload that
//! was answered 202 before its component compiled, which the client polls
//! (`GET /v1/functions/{name}/uploads/{id}`) until it is `ready` (with its version) or
//! `failed` (with the reason).
//!
//! An upload record is not a version record: the registry's invariant stands (a version
//! exists only for a component that compiled and linked); the pending state lives here.
//! Each record is a small JSON file under `uploads/status/`, written to a unique temporary
//! file and renamed. At start, an upload still `compiling` (the process stopped under it)
//! is marked `failed` ("upload again"): its spooled bytes were never made durable, and its
//! client was told nothing but 202. Finished records are kept for `KEEP_MS`.
//!
//! Architecture invariant: a record is scoped by its tenant (another tenant's id is unknown).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::artifact;

/// How long a finished upload's record is kept (then its id is unknown).
pub const KEEP_MS: u64 = 24 * 3600 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Compiling,
    Ready,
    Failed,
}

/// One background upload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub status: Status,
    pub sha256: String,
    pub size_bytes: u64,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    /// Once ready: the version, and whether it is new (false: the latest had these bytes).
    pub version: Option<u32>,
    pub created: Option<bool>,
    /// Once failed: the error's code and message, as the synchronous upload would answer.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// The upload records, in memory and on disk.
pub struct Uploads {
    dir: PathBuf,
    records: Mutex<HashMap<String, Pending>>,
}

fn write(dir: &Path, p: &Pending) {
    let path = dir.join(format!("{}.json", p.id));
    let tmp = artifact::unique_tmp(dir, &p.id);
    let written = serde_json::to_vec(p)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "writing an upload's record failed");
    }
}

impl Uploads {
    /// Load the records of `dir`: those still compiling are marked failed (the process
    /// stopped under them), those finished before `now - KEEP_MS` removed.
    pub fn open(dir: PathBuf, now: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        artifact::remove_leftovers(&dir)?;
        let mut records = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Pending>(&b).ok());
            let Some(mut p) = parsed else {
                tracing::warn!(path = %path.display(), "unreadable upload record; removed");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if p.status == Status::Compiling {
                p.status = Status::Failed;
                p.finished_ms = Some(now);
                p.error_code = Some("interrupted".into());
                p.error_message = Some(
                    "the server stopped while this upload compiled; nothing was stored: \
                     upload again"
                        .into(),
                );
                write(&dir, &p);
            } else if p.finished_ms.is_some_and(|f| f + KEEP_MS < now) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            records.insert(p.id.clone(), p);
        }
        Ok(Self {
            dir,
            records: Mutex::new(records),
        })
    }

    /// A new upload, compiling.
    pub fn start(&self, tenant: &str, name: &str, sha256: &str, size: u64, now: u64) -> Pending {
        let p = Pending {
            id: ulid::Ulid::new().to_string().to_lowercase(),
            tenant: tenant.into(),
            name: name.into(),
            status: Status::Compiling,
            sha256: sha256.into(),
            size_bytes: size,
            started_ms: now,
            finished_ms: None,
            version: None,
            created: None,
            error_code: None,
            error_message: None,
        };
        write(&self.dir, &p);
        let mut records = self.records.lock().expect("uploads");
        records.retain(|_, r| r.finished_ms.is_none_or(|f| f + KEEP_MS >= now));
        records.insert(p.id.clone(), p.clone());
        p
    }

    /// The upload has ended: ready with `version`, or failed with `(code, message)`.
    pub fn finish(&self, id: &str, now: u64, outcome: Result<(u32, bool), (String, String)>) {
        let mut records = self.records.lock().expect("uploads");
        let Some(p) = records.get_mut(id) else {
            return;
        };
        p.finished_ms = Some(now);
        match outcome {
            Ok((version, created)) => {
                p.status = Status::Ready;
                p.version = Some(version);
                p.created = Some(created);
            }
            Err((code, message)) => {
                p.status = Status::Failed;
                p.error_code = Some(code);
                p.error_message = Some(message);
            }
        }
        write(&self.dir, p);
    }

    /// `tenant`'s upload `id` of function `name`.
    pub fn get(&self, tenant: &str, name: &str, id: &str) -> Option<Pending> {
        self.records
            .lock()
            .expect("uploads")
            .get(id)
            .filter(|p| p.tenant == tenant && p.name == name)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_cut_short_by_a_restart_is_failed_and_others_are_kept_or_expire() {
        let dir = tempfile::tempdir().unwrap();
        let u = Uploads::open(dir.path().into(), 1_000).unwrap();
        let cut = u.start("t", "f", "aa", 10, 1_000);
        let done = u.start("t", "f", "bb", 10, 1_000);
        u.finish(&done.id, 2_000, Ok((3, true)));
        let old = u.start("t", "g", "cc", 10, 1_000);
        u.finish(
            &old.id,
            1_000,
            Err(("invalid_component".into(), "bad".into())),
        );
        assert!(u.get("other", "f", &done.id).is_none(), "tenant scoped");
        assert!(u.get("t", "g", &done.id).is_none(), "function scoped");

        let u = Uploads::open(dir.path().into(), 1_001 + KEEP_MS).unwrap();
        let c = u.get("t", "f", &cut.id).unwrap();
        assert_eq!(c.status, Status::Failed);
        assert_eq!(c.error_code.as_deref(), Some("interrupted"));
        let d = u.get("t", "f", &done.id).unwrap();
        assert_eq!(
            (d.status, d.version, d.created),
            (Status::Ready, Some(3), Some(true))
        );
        assert!(u.get("t", "g", &old.id).is_none(), "expired");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
