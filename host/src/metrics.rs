//! Counters the host exports at `GET /metrics` (Prometheus text format).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::db::{Status, StorageState};

#[derive(Default)]
pub struct Metrics {
    by_status: [AtomicI64; 6],
    pub activations: AtomicU64,
    pub suspensions: AtomicU64,
    pub traps: AtomicU64,
    pub steps_replayed: AtomicU64,
    /// Components compiled (uploads, and loads without a usable artifact).
    pub compiles: AtomicU64,
    /// Activations that failed in the host (not the guest) and were scheduled to run again.
    pub host_failures: AtomicU64,
}

fn idx(s: Status) -> usize {
    Status::ALL.iter().position(|x| *x == s).expect("listed")
}

impl Metrics {
    pub fn set(&self, s: Status, n: i64) {
        self.by_status[idx(s)].store(n, Ordering::Relaxed);
    }

    pub fn created(&self) {
        self.by_status[idx(Status::Running)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn transition(&self, from: Status, to: Status) {
        if from != to {
            self.by_status[idx(from)].fetch_sub(1, Ordering::Relaxed);
            self.by_status[idx(to)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A finished execution was deleted (its retention ended).
    pub fn removed(&self, s: Status) {
        self.by_status[idx(s)].fetch_sub(1, Ordering::Relaxed);
    }

    pub fn count(&self, s: Status) -> i64 {
        self.by_status[idx(s)].load(Ordering::Relaxed)
    }
}

/// The `durable_storage_full` gauge: 1 while writes are refused for lack of space.
pub fn storage_full(s: StorageState) -> u64 {
    u64::from(s == StorageState::Full)
}

/// The `durable_storage_failed` gauge: 1 once the store stopped writing (fail-stop).
pub fn storage_failed(s: StorageState) -> u64 {
    u64::from(s == StorageState::Failed)
}
