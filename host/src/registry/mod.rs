//! Function uploads: validate, content-hash, compile once, persist the compiled artifact,
//! and cache one pre-linked `InstancePre` per version.
//!
//! An upload is a new immutable version unless its bytes equal the latest version's. The
//! component bytes are stored by sha256; the compiled artifact is a file named by sha256 and
//! the engine's compatibility hash, so a restart (or another version with the same bytes)
//! loads it in about a millisecond instead of compiling for hundreds.
//!
//! An upload's body is spooled to a temporary file (`spool`) and read back into memory only
//! under a host-wide bound (`MAX_UPLOADS_IN_MEMORY`). An artifact carries its own sha256
//! (`artifact`) and is verified before wasmtime deserializes it; a damaged one is compiled
//! and written again. Loads of one component share one compile (single flight), and at most
//! `MAX_CONCURRENT_COMPILES` compiles run at once.
//!
//! Architecture invariant: nothing is stored for an upload that failed validation; a version
//! record exists only once its component compiled and linked against the host's imports.
//! An artifact is a cache: failing to write one never fails an upload or a load.

mod artifact;
mod pending;
mod spool;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use crate::db::{self, Batch, Durability, FunctionRecord, Store, VersionRecord};
use crate::host_api::bindings::DurableFunctionPre;
use crate::host_api::HostState;
use crate::metrics::Metrics;
use crate::settings;
use crate::timer::Clock;

pub use pending::{Pending, Status as UploadStatus, Uploads};
pub use spool::{Spool, Spooled};

pub type Pre = DurableFunctionPre<HostState>;

/// Compiles running at once, host-wide. One compile already spreads over every core
/// (wasmtime compiles functions in parallel), so more at once only multiply the memory a
/// compile takes and delay each other; two let a small component pass a large one.
pub const MAX_CONCURRENT_COMPILES: usize = 2;

/// Uploads whose bytes are in memory at once (read back from their temporary file,
/// compiled, stored). Each holds its component about three times over while it is stored
/// (the bytes, the log record, sled's copy): this bounds the memory of any number of
/// concurrent uploads. One, because uploads compile and assign versions one at a time
/// (`upload_lock`) anyway: a second would only wait with its bytes in memory.
pub const MAX_UPLOADS_IN_MEMORY: usize = 1;

/// One load of a component, shared by everyone who needs it meanwhile.
type Flight = Arc<tokio::sync::OnceCell<Result<Arc<Pre>, Arc<Error>>>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the body is empty: send the component's bytes")]
    Empty,
    #[error("not a WebAssembly binary (it does not start with \\0asm)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build with \
         `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("the component imports something this host does not provide: {0}")]
    Link(String),
    #[error(
        "the component does not export the durable-function world's \
         `handle: func(event: string) -> result<string, error-object>`: {0}"
    )]
    Export(String),
    #[error("function {0:?} not found")]
    UnknownFunction(String),
    #[error("version {1} of function {0:?} not found")]
    UnknownVersion(String, u32),
    #[error(transparent)]
    Storage(#[from] db::Error),
    #[error("compiled artifact: {0}")]
    Artifact(String),
    #[error("the upload is too large: the limit is {limit} bytes (--max-upload-bytes)")]
    TooLarge { limit: u64 },
    #[error("spooling the upload: {0}")]
    Spool(String),
    #[error("the compile was interrupted: {0}")]
    Interrupted(String),
    /// The store gave back bytes that are not the component's: not the component's fault,
    /// and a restore of the store may repair it.
    #[error("{0}")]
    Damaged(String),
    /// The failure of a load that several callers waited for.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// A failure that may pass (storage, an interrupted compile): the caller tries again
    /// later instead of failing an execution for good. The others are the component's own.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Storage(_) | Error::Spool(_) | Error::Interrupted(_) | Error::Damaged(_) => true,
            Error::Shared(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// The outcome of an upload.
#[derive(Clone, Debug)]
pub struct Upload {
    pub version: VersionRecord,
    pub function: FunctionRecord,
    /// False when the bytes equal the latest version's (nothing new was stored).
    pub created: bool,
}

pub struct Registry {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    db: Store,
    clock: Arc<dyn Clock>,
    artifacts: PathBuf,
    /// Where uploads are spooled while they arrive.
    uploads: PathBuf,
    fingerprint: String,
    cache: Mutex<HashMap<String, Arc<Pre>>>,
    /// The loads under way, by sha256: one compile per component, however many wait.
    loading: Mutex<HashMap<String, Flight>>,
    compiles: tokio::sync::Semaphore,
    uploads_in_memory: tokio::sync::Semaphore,
    metrics: Arc<Metrics>,
    /// Uploads are rare and must assign version numbers one at a time.
    upload_lock: tokio::sync::Mutex<()>,
    /// The background uploads (`PUT ...?async=true`) and their outcome.
    pending: Uploads,
    /// `--artifact-cache-mb` in bytes; `u64::MAX`: unbounded.
    artifact_limit: AtomicU64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Registry {
    pub fn new(
        engine: Engine,
        linker: Arc<Linker<HostState>>,
        db: Store,
        clock: Arc<dyn Clock>,
        artifacts: PathBuf,
        uploads: PathBuf,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&artifacts)?;
        std::fs::create_dir_all(&uploads)?;
        // Writes cut short by a crash (the store's lock keeps other processes out).
        let removed =
            artifact::remove_leftovers(&artifacts)? + artifact::remove_leftovers(&uploads)?;
        if removed > 0 {
            tracing::info!(removed, "removed temporary files of writes cut short");
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            engine,
            linker,
            db,
            fingerprint: format!("{:016x}", h.finish()),
            cache: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            compiles: tokio::sync::Semaphore::new(MAX_CONCURRENT_COMPILES),
            uploads_in_memory: tokio::sync::Semaphore::new(MAX_UPLOADS_IN_MEMORY),
            pending: Uploads::open(uploads.join("status"), clock.now_ms())?,
            clock,
            artifacts,
            uploads,
            metrics,
            upload_lock: tokio::sync::Mutex::new(()),
            artifact_limit: AtomicU64::new(u64::MAX),
        })
    }

    /// Bound the artifact files to `bytes` (`None`: unbounded): beyond it, the least
    /// recently used are removed (and compiled again at their next load). Applies now.
    pub fn set_artifact_cache_bytes(&self, bytes: Option<u64>) -> std::io::Result<()> {
        self.artifact_limit
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.evict_artifacts(Path::new(""))
    }

    fn artifact_limit(&self) -> Option<u64> {
        Some(self.artifact_limit.load(Ordering::Relaxed)).filter(|l| *l != u64::MAX)
    }

    /// Apply the artifact bound, sparing `keep`; publish the bytes left.
    fn evict_artifacts(&self, keep: &Path) -> std::io::Result<()> {
        let (left, removed) = artifact::evict(&self.artifacts, self.artifact_limit(), keep)?;
        self.metrics.artifact_bytes.store(left, Ordering::Relaxed);
        if removed > 0 {
            tracing::info!(removed, left, "evicted least recently used artifacts");
        }
        Ok(())
    }

    /// The background uploads.
    pub fn uploads(&self) -> &Uploads {
        &self.pending
    }

    /// A temporary file for an upload of at most `limit` bytes.
    pub async fn spool(&self, limit: u64) -> Result<Spool, Error> {
        Spool::create(&self.uploads, limit).await
    }

    /// Cheap structural checks before spending a compile on the bytes.
    fn precheck(bytes: &[u8]) -> Result<(), Error> {
        if bytes.is_empty() {
            return Err(Error::Empty);
        }
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(Error::NotWasm);
        }
        // Core modules have version 1, layer 0; components have layer 1.
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(Error::CoreModule);
        }
        Ok(())
    }

    /// Compile and link: the component, its pre-linked form, and the bytes back. Waits for
    /// one of the `MAX_CONCURRENT_COMPILES` slots.
    async fn compile(&self, bytes: Vec<u8>) -> Result<(Component, Pre, Vec<u8>), Error> {
        let _slot = self.compiles.acquire().await.expect("never closed");
        self.metrics.compiles.fetch_add(1, Ordering::Relaxed);
        let engine = self.engine.clone();
        let (component, bytes) = tokio::task::spawn_blocking(move || {
            let c = Component::new(&engine, &bytes);
            (c, bytes)
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                Error::Invalid(format!("the compiler panicked: {e}"))
            } else {
                Error::Interrupted(e.to_string())
            }
        })?;
        let component = component.map_err(|e| Error::Invalid(format!("{e:#}")))?;
        let pre = self.link(&component)?;
        Ok((component, pre, bytes))
    }

    fn link(&self, component: &Component) -> Result<Pre, Error> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| Error::Link(format!("{e:#}")))?;
        DurableFunctionPre::new(pre).map_err(|e| Error::Export(format!("{e:#}")))
    }

    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.artifacts
            .join(format!("{sha256}-{}.cwasm", self.fingerprint))
    }

    /// Write the artifact for next time. It is a cache: a failure is logged, and the next
    /// process compiles again.
    async fn save_artifact(&self, sha256: &str, component: &Component) {
        let path = self.artifact_path(sha256);
        let bytes = match component.serialize() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "serializing the artifact failed");
                return;
            }
        };
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || artifact::write(&target, &bytes)).await;
        match written {
            Ok(Ok(())) => {
                let keep = path.clone();
                if let Err(e) = self.evict_artifacts(&keep) {
                    tracing::warn!(error = %e, "evicting artifacts failed");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "writing the artifact failed; the next start compiles again")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "writing the artifact was interrupted")
            }
        }
    }

    /// The component from its artifact file, if the file is there, whole and verified.
    /// A damaged one is reported (the caller compiles and rewrites it).
    async fn load_artifact(&self, sha256: &str) -> Option<Component> {
        let path = self.artifact_path(sha256);
        let file = match tokio::fs::read(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable artifact; recompiling");
                return None;
            }
        };
        let payload = match artifact::verify(&file) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "the artifact does not verify; recompiling and rewriting it");
                return None;
            }
        };
        // SAFETY: `payload` is, byte for byte, what `Component::serialize` of this host
        // produced (its length and sha256, written with it, match), under an engine with the
        // same configuration (the file's name carries the engine's compatibility hash).
        match unsafe { Component::deserialize(&self.engine, payload) } {
            Ok(c) => {
                artifact::touch(&path);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unusable artifact; recompiling");
                None
            }
        }
    }

    /// Store a new version of `name` from a spooled upload (see `upload`). Its bytes are
    /// read into memory only under one of the `MAX_UPLOADS_IN_MEMORY` slots.
    pub async fn upload_spooled(
        &self,
        tenant: &str,
        name: &str,
        spooled: Spooled,
        patch: &settings::Patch,
    ) -> Result<Upload, Error> {
        let _slot = self
            .uploads_in_memory
            .acquire()
            .await
            .expect("never closed");
        let bytes = spooled.read().await?;
        let sha = spooled.sha256.clone();
        drop(spooled);
        self.store_upload(tenant, name, bytes, sha, patch).await
    }

    /// Store a new version of `name` (or return the latest one if the bytes are the same),
    /// applying a (validated) settings change to the function in the same batch.
    pub async fn upload(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
        patch: &settings::Patch,
    ) -> Result<Upload, Error> {
        let _slot = self
            .uploads_in_memory
            .acquire()
            .await
            .expect("never closed");
        let sha = sha256_hex(&bytes);
        self.store_upload(tenant, name, bytes, sha, patch).await
    }

    async fn store_upload(
        &self,
        tenant: &str,
        name: &str,
        bytes: Vec<u8>,
        sha: String,
        patch: &settings::Patch,
    ) -> Result<Upload, Error> {
        Self::precheck(&bytes)?;
        let _guard = self.upload_lock.lock().await;
        let existing = self.db.function(tenant, name)?;
        if let Some(f) = existing.as_ref().filter(|f| !f.deleted) {
            if let Some(v) = self.db.version(tenant, name, f.latest_version)? {
                if v.sha256 == sha {
                    let function = self.save_settings(tenant, f.clone(), patch).await?;
                    return Ok(Upload {
                        version: v,
                        function,
                        created: false,
                    });
                }
            }
        }
        let size_bytes = bytes.len() as u64;
        // These very bytes compiled before by this engine (another name, another tenant,
        // a deleted function): the verified artifact saves the compile (seconds for a
        // component that bundles an interpreter).
        let (component, pre, bytes) = match self.load_artifact(&sha).await {
            Some(component) => {
                let pre = self.link(&component)?;
                (component, pre, bytes)
            }
            None => {
                let compiled = self.compile(bytes).await?;
                self.save_artifact(&sha, &compiled.0).await;
                compiled
            }
        };
        drop(component);
        let now = self.clock.now_ms();
        let version = existing.as_ref().map_or(1, |f| f.latest_version + 1);
        let rec = VersionRecord {
            version,
            sha256: sha.clone(),
            size_bytes,
            created_ms: now,
        };
        let mut func = FunctionRecord {
            name: name.to_string(),
            created_ms: existing
                .as_ref()
                .filter(|f| !f.deleted)
                .map_or(now, |f| f.created_ms),
            latest_version: version,
            deleted: false,
            settings: existing
                .as_ref()
                .filter(|f| !f.deleted)
                .map(|f| f.settings.clone())
                .unwrap_or_default(),
        };
        patch.apply(&mut func.settings);
        let mut batch = Batch::new();
        batch.put_component(&sha, bytes);
        batch.put_version(tenant, name, &rec);
        batch.put_function(tenant, &func);
        self.db.commit(batch, Durability::Sync).await?;
        self.cache.lock().expect("cache").insert(sha, Arc::new(pre));
        Ok(Upload {
            version: rec,
            function: func,
            created: true,
        })
    }

    /// Change a function's settings (validated by the caller); they apply from each
    /// execution's next activation (the execution timeout: from the next invocation).
    pub async fn configure(
        &self,
        tenant: &str,
        name: &str,
        patch: &settings::Patch,
    ) -> Result<FunctionRecord, Error> {
        let _guard = self.upload_lock.lock().await;
        let f = self
            .db
            .function(tenant, name)?
            .filter(|f| !f.deleted)
            .ok_or_else(|| Error::UnknownFunction(name.to_string()))?;
        self.save_settings(tenant, f, patch).await
    }

    /// Delete a function: new invocations are refused; its versions stay for the
    /// executions still running on them. An upload under the name starts it again.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), Error> {
        let _guard = self.upload_lock.lock().await;
        let mut f = self
            .db
            .function(tenant, name)?
            .filter(|f| !f.deleted)
            .ok_or_else(|| Error::UnknownFunction(name.to_string()))?;
        f.deleted = true;
        let mut batch = Batch::new();
        batch.put_function(tenant, &f);
        self.db.commit(batch, Durability::Sync).await?;
        Ok(())
    }

    async fn save_settings(
        &self,
        tenant: &str,
        mut f: FunctionRecord,
        patch: &settings::Patch,
    ) -> Result<FunctionRecord, Error> {
        if patch.is_empty() {
            return Ok(f);
        }
        patch.apply(&mut f.settings);
        let mut batch = Batch::new();
        batch.put_function(tenant, &f);
        self.db.commit(batch, Durability::Sync).await?;
        Ok(f)
    }

    /// The pre-linked component of a version: from memory, else from the artifact file,
    /// else compiled from the stored bytes (and the artifact written for next time).
    pub async fn pre(&self, tenant: &str, name: &str, version: u32) -> Result<Arc<Pre>, Error> {
        let v = self
            .db
            .version(tenant, name, version)?
            .ok_or_else(|| Error::UnknownVersion(name.to_string(), version))?;
        self.pre_by_hash(&v.sha256).await
    }

    /// The pre-linked component with these bytes. Callers that need one not yet in memory
    /// meanwhile share one load (and at most one compile).
    pub async fn pre_by_hash(&self, sha256: &str) -> Result<Arc<Pre>, Error> {
        if let Some(p) = self.cached(sha256) {
            return Ok(p);
        }
        let flight = self
            .loading
            .lock()
            .expect("loading")
            .entry(sha256.to_string())
            .or_default()
            .clone();
        let result = flight
            .get_or_init(|| async { self.load(sha256).await.map_err(Arc::new) })
            .await
            .clone();
        // Whoever comes first removes the flight: later callers find the cache, or after a
        // failure try again with a load of their own.
        let mut loading = self.loading.lock().expect("loading");
        if loading.get(sha256).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            loading.remove(sha256);
        }
        result.map_err(Error::Shared)
    }

    fn cached(&self, sha256: &str) -> Option<Arc<Pre>> {
        self.cache.lock().expect("cache").get(sha256).cloned()
    }

    /// From the verified artifact file, else compiled from the stored bytes (and the
    /// artifact written again); then cached.
    async fn load(&self, sha256: &str) -> Result<Arc<Pre>, Error> {
        // A flight that ended just before this one began may have filled the cache.
        if let Some(p) = self.cached(sha256) {
            return Ok(p);
        }
        let pre = match self.load_artifact(sha256).await {
            Some(c) => self.link(&c)?,
            None => {
                let bytes = self.db.component(sha256)?.ok_or_else(|| {
                    Error::Artifact(format!("component {sha256} is missing from the store"))
                })?;
                if sha256_hex(&bytes) != sha256 {
                    return Err(Error::Damaged(format!(
                        "the stored bytes of component {sha256} do not match their sha256"
                    )));
                }
                let (component, pre, _) = self.compile(bytes).await?;
                self.save_artifact(sha256, &component).await;
                pre
            }
        };
        let pre = Arc::new(pre);
        self.cache
            .lock()
            .expect("cache")
            .insert(sha256.to_string(), pre.clone());
        Ok(pre)
    }

    /// Forget cached pre-linked components (benchmarks use this to measure cold loads).
    pub fn clear_cache(&self) {
        self.cache.lock().expect("cache").clear();
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precheck_names_the_problem() {
        assert!(matches!(Registry::precheck(b""), Err(Error::Empty)));
        assert!(matches!(
            Registry::precheck(b"hello world"),
            Err(Error::NotWasm)
        ));
        assert!(matches!(
            Registry::precheck(b"\0asm\x01\0\0\0"),
            Err(Error::CoreModule)
        ));
        assert!(Registry::precheck(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
