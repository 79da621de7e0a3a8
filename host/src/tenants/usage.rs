//! A tenant's usage of its counted quotas, read from what is stored and resident.

use super::quota::Usage;
use crate::db::{self, Status, Store};
use crate::scheduler::Scheduler;

/// Count `tenant`'s functions, stored bytes, live executions and resident activations.
pub fn usage(db: &Store, scheduler: &Scheduler, tenant: &str) -> db::Result<Usage> {
    let mut u = Usage::default();
    for f in db.functions(tenant)? {
        if !f.deleted {
            u.max_functions += 1;
        }
        for v in db.versions(tenant, &f.name)? {
            u.max_stored_bytes += v.size_bytes;
        }
    }
    for e in db.executions(tenant) {
        if matches!(e?.status, Status::Running | Status::Suspended) {
            u.max_active_executions += 1;
        }
    }
    u.max_concurrent_activations = scheduler.resident_of(tenant) as u64;
    Ok(u)
}
