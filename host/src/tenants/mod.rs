//! Tenants and API keys: who a request is (`authenticate`), what it may do (`role`), and
//! what its tenant may hold (`quota`).
//!
//! Every tenant and key is kept in memory, loaded at start and changed only here: a change
//! is committed (fsynced) first and applied to memory before the request that made it is
//! answered, so a revoked key is refused from the next request on and no cache outlives
//! the record it copies. Authenticating a request is a read lock, a map lookup and one
//! SHA-256 of the presented secret, compared in constant time; an unknown key id costs the
//! same digest and comparison, against a key that cannot match.
//!
//! Quotas are enforced with `usage` (the counts, kept in memory and derived from the store
//! at start), `rate` (the invocation token buckets) and the scheduler's shares
//! (`max_concurrent_activations`, set here whenever a tenant's quotas change).
//!
//! Invariant: every stored key names a stored tenant; deleting a tenant deletes its keys and
//! everything it owned in one batch.

pub mod key;
pub mod quota;
pub mod rate;
pub mod role;
pub mod usage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use quota::{Bounds, Quotas};
pub use role::{Action, Role};

use crate::db::{self, ApiKeyRecord, Batch, Durability, Status, Store, TenantRecord};
use crate::scheduler::Scheduler;
use crate::timer::Clock;

/// The tenant created on first start, which owns whatever the host held before tenants.
pub const DEFAULT_TENANT: &str = "default";

/// The file, in the data directory, that holds the bootstrap admin key.
pub const ADMIN_KEY_FILE: &str = "admin.key";

/// Who is making a request, once authenticated.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The tenant the request acts in: the key's, or for an admin key the one it named.
    pub tenant: Arc<str>,
    pub role: Role,
    /// `None` when authentication is off (`--insecure-no-auth`).
    pub key_id: Option<String>,
}

impl Caller {
    /// Go on only if this caller's role may do `a`.
    pub fn require(&self, a: Action) -> Result<(), Error> {
        if self.role.may(a) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "a key with role {:?} may not {}",
                self.role.as_str(),
                a.describe()
            )))
        }
    }

    /// For logs of administrative actions.
    pub fn key_id(&self) -> &str {
        self.key_id.as_deref().unwrap_or("-")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No key, a key that is not one, unknown, revoked, expired, or a wrong secret (401).
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Storage(#[from] db::Error),
}

#[derive(Default)]
struct Cache {
    tenants: HashMap<String, TenantRecord>,
    keys: HashMap<String, ApiKeyRecord>,
}

/// The tenants and keys service. Cheap to share behind an `Arc`.
pub struct Tenants {
    db: Store,
    clock: Arc<dyn Clock>,
    cache: RwLock<Cache>,
    /// One change at a time: a check (does the tenant exist?) and its commit are not
    /// interleaved with another change.
    writes: tokio::sync::Mutex<()>,
    /// The quotas of a tenant that set none.
    pub defaults: Quotas,
    pub bounds: Bounds,
    /// `--insecure-no-auth`: every request is an admin of the tenant it names (default:
    /// `default`).
    insecure: bool,
    /// What an unknown key id is compared against, so that it costs what a known one does.
    decoy: [u8; 32],
    /// What each tenant uses of its counted quotas.
    pub usage: usage::Counters,
    /// The invocation rate of each tenant.
    pub rates: rate::Buckets,
    /// Told each tenant's `max_concurrent_activations`.
    scheduler: Scheduler,
}

/// Tenant names: 1-63 of `[a-z0-9-]`, starting with a letter or digit.
pub fn check_tenant_name(name: &str) -> Result<(), Error> {
    let ok = (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid tenant name {name:?}: use 1-63 lowercase letters, digits or '-', not \
             starting with '-'"
        )))
    }
}

fn not_found(tenant: &str) -> Error {
    Error::NotFound(format!("tenant {tenant:?} not found"))
}

impl Tenants {
    /// Load every tenant and key, and give `scheduler` each tenant's share.
    pub fn load(
        db: Store,
        clock: Arc<dyn Clock>,
        defaults: Quotas,
        bounds: Bounds,
        insecure: bool,
        scheduler: Scheduler,
    ) -> Result<Tenants, Error> {
        let mut cache = Cache::default();
        for t in db.tenants()? {
            cache.tenants.insert(t.name.clone(), t);
        }
        for k in db.api_keys()? {
            cache.keys.insert(k.key_id.clone(), k);
        }
        let tenants = Tenants {
            db,
            clock,
            cache: RwLock::new(cache),
            writes: tokio::sync::Mutex::new(()),
            defaults,
            bounds,
            insecure,
            decoy: key::generate().digest,
            usage: usage::Counters::default(),
            rates: rate::Buckets::default(),
            scheduler,
        };
        for t in tenants.list() {
            tenants.share(&t.name);
        }
        Ok(tenants)
    }

    /// Give the scheduler `tenant`'s `max_concurrent_activations` as it is now.
    fn share(&self, tenant: &str) {
        let share = self
            .tenant(tenant)
            .and_then(|_| self.quotas(tenant).max_concurrent_activations)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        self.scheduler.set_share(tenant, share);
    }

    /// Count every tenant's usage from the store (at start, once recovery is done and
    /// before any activation or request).
    pub fn count_usage(&self) -> Result<(), Error> {
        let names: Vec<String> = self.read().tenants.keys().cloned().collect();
        self.usage
            .load(&self.db, names.iter().map(String::as_str))?;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// On a store without tenants (a new one, or one from before tenants): create tenant
    /// `default` and an admin key, and write the key to `<data_dir>/admin.key` (mode 0600).
    /// Returns the file's path when it wrote one.
    pub async fn bootstrap(&self, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
        let _w = self.writes.lock().await;
        if !self.read().tenants.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let tenant = TenantRecord {
            name: DEFAULT_TENANT.into(),
            created_ms: now,
            quotas: Quotas::default(),
        };
        let generated = key::generate();
        let rec = ApiKeyRecord {
            key_id: generated.key_id.clone(),
            tenant: DEFAULT_TENANT.into(),
            role: Role::Admin,
            name: "bootstrap admin".into(),
            secret_sha256: generated.digest,
            created_ms: now,
            expires_ms: None,
        };
        // The file first: a key only in the store would lock everyone out.
        let path = data_dir.join(ADMIN_KEY_FILE);
        write_private(&path, format!("{}\n", generated.key).as_bytes())?;
        let mut batch = Batch::new();
        batch.put_tenant(&tenant);
        batch.put_api_key(&rec);
        self.db.commit(batch, Durability::Sync).await?;
        let mut c = self.write();
        c.tenants.insert(tenant.name.clone(), tenant);
        c.keys.insert(rec.key_id.clone(), rec);
        drop(c);
        self.share(DEFAULT_TENANT);
        Ok(Some(path))
    }

    /// Who presents `authorization` (the header's value), acting in `acting` (the
    /// `Durable-Tenant` header) if given.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        acting: Option<&str>,
    ) -> Result<Caller, Error> {
        if self.insecure {
            let tenant = acting.unwrap_or(DEFAULT_TENANT);
            if !self.read().tenants.contains_key(tenant) {
                return Err(not_found(tenant));
            }
            return Ok(Caller {
                tenant: tenant.into(),
                role: Role::Admin,
                key_id: None,
            });
        }
        let Some(header) = authorization else {
            return Err(Error::Unauthorized(
                "this request needs an API key: Authorization: Bearer dh_<key_id>_<secret>".into(),
            ));
        };
        let invalid = || {
            Error::Unauthorized(
                "the API key is not valid: unknown, revoked, expired or mistyped".into(),
            )
        };
        let presented = std::str::from_utf8(header)
            .ok()
            .and_then(|h| {
                let (scheme, token) = h.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim_matches(' '))
            })
            .and_then(key::parse)
            .ok_or_else(invalid)?;
        let cache = self.read();
        let found = cache.keys.get(presented.key_id);
        let expected = found.map_or(&self.decoy, |k| &k.secret_sha256);
        let matches = key::same(&presented.digest, expected);
        let rec = found.filter(|_| matches).ok_or_else(invalid)?;
        if rec.expires_ms.is_some_and(|at| self.clock.now_ms() >= at) {
            return Err(invalid());
        }
        let tenant = match acting {
            None => rec.tenant.as_str(),
            Some(t) if t == rec.tenant => t,
            Some(t) if rec.role == Role::Admin => {
                if !cache.tenants.contains_key(t) {
                    return Err(not_found(t));
                }
                t
            }
            Some(_) => {
                return Err(Error::Forbidden(
                    "only an admin key may act in another tenant (Durable-Tenant)".into(),
                ))
            }
        };
        Ok(Caller {
            tenant: tenant.into(),
            role: rec.role,
            key_id: Some(rec.key_id.clone()),
        })
    }

    // ---- tenants ----

    /// Go on if `caller` may see `tenant`'s own records (its keys, its view): an admin may
    /// see every tenant, anyone else only its own. Another tenant is not found.
    fn visible(&self, caller: &Caller, tenant: &str, a: Action) -> Result<(), Error> {
        if caller.role == Role::Admin {
            return self
                .read()
                .tenants
                .contains_key(tenant)
                .then_some(())
                .ok_or_else(|| not_found(tenant));
        }
        if *caller.tenant != *tenant {
            return Err(not_found(tenant));
        }
        caller.require(a)
    }

    pub fn tenant(&self, name: &str) -> Option<TenantRecord> {
        self.read().tenants.get(name).cloned()
    }

    pub fn list(&self) -> Vec<TenantRecord> {
        let mut v: Vec<_> = self.read().tenants.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The quotas in force for `tenant` (the server's defaults for one that does not exist).
    pub fn quotas(&self, tenant: &str) -> Quotas {
        match self.read().tenants.get(tenant) {
            Some(t) => t.quotas.over(&self.defaults),
            None => Quotas::default().over(&self.defaults),
        }
    }

    /// A tenant's view for `caller`: an admin sees every tenant; an owner its own.
    pub fn get(&self, caller: &Caller, name: &str) -> Result<TenantRecord, Error> {
        self.visible(caller, name, Action::ManageKeys)?;
        self.tenant(name).ok_or_else(|| not_found(name))
    }

    pub async fn create(
        &self,
        caller: &Caller,
        name: &str,
        quotas: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<TenantRecord, Error> {
        caller.require(Action::Administer)?;
        check_tenant_name(name)?;
        let quotas = Quotas::default()
            .patched(quotas, &self.bounds)
            .map_err(Error::BadRequest)?;
        let _w = self.writes.lock().await;
        if self.read().tenants.contains_key(name) {
            return Err(Error::Conflict(format!("tenant {name:?} already exists")));
        }
        let rec = TenantRecord {
            name: name.into(),
            created_ms: self.clock.now_ms(),
            quotas,
        };
        let mut batch = Batch::new();
        batch.put_tenant(&rec);
        self.db.commit(batch, Durability::Sync).await?;
        self.write().tenants.insert(rec.name.clone(), rec.clone());
        self.share(name);
        tracing::info!(tenant = name, by = caller.key_id(), "tenant created");
        Ok(rec)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        name: &str,
        quotas: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<TenantRecord, Error> {
        caller.require(Action::Administer)?;
        let _w = self.writes.lock().await;
        let mut rec = self.tenant(name).ok_or_else(|| not_found(name))?;
        rec.quotas = rec
            .quotas
            .patched(quotas, &self.bounds)
            .map_err(Error::BadRequest)?;
        let mut batch = Batch::new();
        batch.put_tenant(&rec);
        self.db.commit(batch, Durability::Sync).await?;
        self.write().tenants.insert(rec.name.clone(), rec.clone());
        self.share(name);
        tracing::info!(tenant = name, by = caller.key_id(), quotas = %serde_json::Value::Object(quotas.clone()), "tenant quotas changed");
        Ok(rec)
    }

    /// Delete a tenant that owns no function and no live execution, with its keys and
    /// what is left of it (finished executions, deleted functions, idempotency keys).
    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<(), Error> {
        caller.require(Action::Administer)?;
        let _w = self.writes.lock().await;
        if !self.read().tenants.contains_key(name) {
            return Err(not_found(name));
        }
        let functions = self.db.functions(name)?;
        let live_functions = functions.iter().filter(|f| !f.deleted).count();
        if live_functions > 0 {
            return Err(Error::Conflict(format!(
                "tenant {name:?} owns {live_functions} function(s): delete them first"
            )));
        }
        let mut finished = Vec::new();
        for e in self.db.executions(name) {
            let e = e?;
            if matches!(e.status, Status::Running | Status::Suspended) {
                return Err(Error::Conflict(format!(
                    "tenant {name:?} has executions running or suspended: stop them or let \
                     them end first"
                )));
            }
            finished.push(e.id);
        }
        if caller.tenant.as_ref() == name {
            return Err(Error::Conflict(
                "a key may not delete the tenant it belongs to".into(),
            ));
        }
        for id in finished {
            self.db.delete_execution(name, &id, 0).await?;
        }
        let key_ids: Vec<String> = self
            .read()
            .keys
            .values()
            .filter(|k| k.tenant == name)
            .map(|k| k.key_id.clone())
            .collect();
        let mut batch = self.db.tenant_leftovers(name)?;
        for k in &key_ids {
            batch.del_api_key(k);
        }
        batch.del_tenant(name);
        self.db.commit(batch, Durability::Sync).await?;
        let mut c = self.write();
        c.tenants.remove(name);
        for k in &key_ids {
            c.keys.remove(k);
        }
        drop(c);
        self.usage.forget(name);
        self.rates.forget(name);
        self.scheduler.set_share(name, None);
        tracing::info!(tenant = name, by = caller.key_id(), "tenant deleted");
        Ok(())
    }

    // ---- keys ----

    /// Create a key of `role` in `tenant`; returns its record and the whole key (shown once).
    pub async fn create_key(
        &self,
        caller: &Caller,
        tenant: &str,
        role: Role,
        name: &str,
        expires_ms: Option<u64>,
    ) -> Result<(ApiKeyRecord, String), Error> {
        self.visible(caller, tenant, Action::ManageKeys)?;
        if role == Role::Admin && caller.role != Role::Admin {
            return Err(Error::Forbidden(
                "only an admin key may create admin keys".into(),
            ));
        }
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(Error::BadRequest(
                "a key's name is 1-128 characters, none of them control characters".into(),
            ));
        }
        let now = self.clock.now_ms();
        if expires_ms.is_some_and(|at| at <= now) {
            return Err(Error::BadRequest("expires_at is in the past".into()));
        }
        let _w = self.writes.lock().await;
        if !self.read().tenants.contains_key(tenant) {
            return Err(not_found(tenant));
        }
        let generated = loop {
            let g = key::generate();
            if !self.read().keys.contains_key(&g.key_id) {
                break g;
            }
        };
        let rec = ApiKeyRecord {
            key_id: generated.key_id,
            tenant: tenant.into(),
            role,
            name: name.into(),
            secret_sha256: generated.digest,
            created_ms: now,
            expires_ms,
        };
        let mut batch = Batch::new();
        batch.put_api_key(&rec);
        self.db.commit(batch, Durability::Sync).await?;
        self.write().keys.insert(rec.key_id.clone(), rec.clone());
        tracing::info!(tenant, key = %rec.key_id, role = role.as_str(), by = caller.key_id(), "API key created");
        Ok((rec, generated.key))
    }

    /// The keys of `tenant`, oldest first.
    pub fn keys(&self, caller: &Caller, tenant: &str) -> Result<Vec<ApiKeyRecord>, Error> {
        self.visible(caller, tenant, Action::ManageKeys)?;
        let mut v: Vec<_> = self
            .read()
            .keys
            .values()
            .filter(|k| k.tenant == tenant)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.created_ms, &a.key_id).cmp(&(b.created_ms, &b.key_id)));
        Ok(v)
    }

    /// Revoke a key: refused from the next request on.
    pub async fn revoke_key(
        &self,
        caller: &Caller,
        tenant: &str,
        key_id: &str,
    ) -> Result<(), Error> {
        self.visible(caller, tenant, Action::ManageKeys)?;
        let _w = self.writes.lock().await;
        let gone = || Error::NotFound(format!("key {key_id:?} not found"));
        let rec = self
            .read()
            .keys
            .get(key_id)
            .filter(|k| k.tenant == tenant)
            .cloned()
            .ok_or_else(gone)?;
        if rec.role == Role::Admin && caller.role != Role::Admin {
            return Err(Error::Forbidden(
                "only an admin key may revoke admin keys".into(),
            ));
        }
        let mut batch = Batch::new();
        batch.del_api_key(key_id);
        self.db.commit(batch, Durability::Sync).await?;
        self.write().keys.remove(key_id);
        tracing::info!(
            tenant,
            key = key_id,
            by = caller.key_id(),
            "API key revoked"
        );
        Ok(())
    }
}

/// Write `bytes` to a new file at `path` readable only by its owner, durably: a temporary
/// file, fsynced, renamed over `path`, and the directory fsynced.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
