//! Function uploads: validate, content-hash, compile once, persist the compiled artifact,
//! and cache one pre-linked `InstancePre` per version.
//!
//! An upload is a new immutable version unless its bytes equal the latest version's. The
//! component bytes are stored by sha256; the compiled artifact is a file named by sha256 and
//! the engine's compatibility hash, so a restart (or another version with the same bytes)
//! loads it in about a millisecond instead of compiling for hundreds.
//!
//! Architecture invariant: nothing is stored for an upload that failed validation; a version
//! record exists only once its component compiled and linked against the host's imports.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use crate::db::{self, Batch, Durability, FunctionRecord, Store, VersionRecord};
use crate::host_api::bindings::DurableFunctionPre;
use crate::host_api::HostState;
use crate::settings;
use crate::timer::Clock;

pub type Pre = DurableFunctionPre<HostState>;

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
    fingerprint: String,
    cache: Mutex<HashMap<String, Arc<Pre>>>,
    /// Uploads are rare and must assign version numbers one at a time.
    upload_lock: tokio::sync::Mutex<()>,
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
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&artifacts)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            engine,
            linker,
            db,
            clock,
            artifacts,
            fingerprint: format!("{:016x}", h.finish()),
            cache: Mutex::new(HashMap::new()),
            upload_lock: tokio::sync::Mutex::new(()),
        })
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

    /// Compile and link: the component, and its pre-linked form.
    async fn compile(&self, bytes: Arc<[u8]>) -> Result<(Component, Pre), Error> {
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?
            .map_err(|e| Error::Invalid(format!("{e:#}")))?;
        let pre = self.link(&component)?;
        Ok((component, pre))
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

    fn save_artifact(&self, sha256: &str, component: &Component) -> Result<(), Error> {
        let bytes = component
            .serialize()
            .map_err(|e| Error::Artifact(e.to_string()))?;
        let path = self.artifact_path(sha256);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| match crate::db::Error::no_space(&path, &e) {
                Some(full) => Error::Storage(full), // 507, not 500
                None => Error::Artifact(format!("{}: {e}", path.display())),
            })
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
        Self::precheck(&bytes)?;
        let sha = sha256_hex(&bytes);
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
        let bytes: Arc<[u8]> = bytes.into();
        let (component, pre) = self.compile(bytes.clone()).await?;
        self.save_artifact(&sha, &component)?;
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
        batch.put_component(&sha, &bytes);
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

    pub async fn pre_by_hash(&self, sha256: &str) -> Result<Arc<Pre>, Error> {
        if let Some(p) = self.cache.lock().expect("cache").get(sha256) {
            return Ok(p.clone());
        }
        let path = self.artifact_path(sha256);
        let component = if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of this host with the
            // same engine configuration (its name carries the engine's compatibility hash),
            // under the host's own data directory.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unusable artifact; recompiling");
                    None
                }
            }
        } else {
            None
        };
        let pre = match component {
            Some(c) => self.link(&c)?,
            None => {
                let bytes = self
                    .db
                    .component(sha256)?
                    .ok_or_else(|| Error::Artifact(format!("component {sha256} is missing")))?;
                let (component, pre) = self.compile(bytes.into()).await?;
                self.save_artifact(sha256, &component)?;
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
