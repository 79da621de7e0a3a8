//! The host-wide memory budget (`--memory-budget-mb`): the linear memory that all resident
//! instances together may reserve. An activation reserves its function's memory limit
//! before it instantiates, waiting in line (first come, first served) until that fits, and
//! holds the `Reservation` in its store's state, so it is released when the store drops.
//!
//! Architecture invariant: only resident instances hold reservations; a reservation never
//! asks for more than the whole budget (so every waiter is eventually served), and waiting
//! holds nothing but a place in the line (so it can be cancelled at any moment: a stop or a
//! deadline drops the wait).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget's unit: a wasm page. Linear memory grows in pages, and a budget counted in
/// them fits the semaphore's `u32` requests up to 256 TiB.
const PAGE_BYTES: u64 = 64 * 1024;

/// Of the machine's memory, the part guests may reserve unless `--memory-budget-mb` says
/// otherwise: half. The host needs the rest for itself (sled's page cache, compiles, HTTP
/// buffers, the write-ahead log) and the kernel's page cache under the store's files, and
/// the budget counts limits, which resident guests rarely fill; an operator who knows the
/// guests' real use can set more.
const DEFAULT_SHARE: (u64, u64) = (1, 2);

/// The memory all resident instances may reserve, and who waits for it.
pub struct MemoryBudget {
    pages: Arc<Semaphore>,
    total_pages: u64,
    reserved_bytes: Arc<AtomicU64>,
    waiting: AtomicU64,
}

/// Memory reserved for one instance; released when dropped.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    reserved_bytes: Arc<AtomicU64>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Counts a waiter for as long as it waits (also when its wait is dropped).
struct Waiting<'a>(&'a AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_BYTES)
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded down to whole pages, at least one).
    pub fn new(bytes: u64) -> Self {
        let total_pages = (bytes / PAGE_BYTES).clamp(1, u64::from(u32::MAX));
        Self {
            pages: Arc::new(Semaphore::new(total_pages as usize)),
            total_pages,
            reserved_bytes: Arc::new(AtomicU64::new(0)),
            waiting: AtomicU64::new(0),
        }
    }

    /// Reserve `bytes` for one instance, waiting until they fit. Waiters are served in the
    /// order they came (tokio's semaphore is fair, also for multi-permit requests), so a
    /// large request is not overtaken forever by small ones, nor a small one by large ones.
    /// A request above the whole budget asks for the whole budget (it then runs alone).
    pub async fn reserve(&self, bytes: u64) -> Reservation {
        let want = pages(bytes).clamp(1, self.total_pages);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waiting = Waiting(&self.waiting);
        let permit = self
            .pages
            .clone()
            .acquire_many_owned(want as u32)
            .await
            .expect("the budget's semaphore is never closed");
        drop(waiting);
        let bytes = want * PAGE_BYTES;
        self.reserved_bytes.fetch_add(bytes, Ordering::SeqCst);
        Reservation {
            _permit: permit,
            bytes,
            reserved_bytes: self.reserved_bytes.clone(),
        }
    }

    pub fn budget_bytes(&self) -> u64 {
        self.total_pages * PAGE_BYTES
    }

    /// What resident instances hold now.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved_bytes.load(Ordering::SeqCst)
    }

    /// Activations waiting for their reservation.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// The default budget: `DEFAULT_SHARE` of this machine's memory, but room for at least one
/// instance of `per_instance` bytes (a small machine still runs guests, one at a time).
/// Where the machine's memory cannot be read, the bound the host had without a budget:
/// `instances` (the residency bound) times `per_instance`.
pub fn default_bytes(per_instance: u64, instances: u64) -> u64 {
    match machine_default_bytes() {
        Some(share) => share.max(per_instance),
        None => per_instance.saturating_mul(instances.max(1)),
    }
}

/// `DEFAULT_SHARE` of the memory the host may use (the smaller of `MemTotal` and the
/// cgroup's `memory.max`), or `None` when neither can be read.
fn machine_default_bytes() -> Option<u64> {
    let total = mem_total_bytes();
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok()); // "max" (no limit) does not parse
    let usable = match (total, cgroup) {
        (Some(t), Some(c)) => t.min(c),
        (t, c) => t.or(c)?,
    };
    Some(usable / DEFAULT_SHARE.1 * DEFAULT_SHARE.0)
}

/// `MemTotal` from `/proc/meminfo`.
fn mem_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&info)
}

fn parse_mem_total(info: &str) -> Option<u64> {
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_mem_total() {
        let info = "MemTotal:       24576000 kB\nMemFree:  100 kB\n";
        assert_eq!(parse_mem_total(info), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order_and_a_dropped_wait_leaves_no_trace() {
        let budget = Arc::new(MemoryBudget::new(4 * PAGE_BYTES));
        let first = budget.reserve(3 * PAGE_BYTES).await;
        assert_eq!(budget.reserved_bytes(), 3 * PAGE_BYTES);
        // A large request waits; a small one behind it must not overtake it forever, and
        // does not: it waits its turn.
        let b = budget.clone();
        let large = tokio::spawn(async move { b.reserve(4 * PAGE_BYTES).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = budget.clone();
        let small = tokio::spawn(async move { b.reserve(PAGE_BYTES).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(budget.waiting(), 2);
        assert!(
            !small.is_finished(),
            "the small request overtook the large one"
        );
        drop(first);
        let large = tokio::time::timeout(Duration::from_secs(2), large)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(budget.reserved_bytes(), 4 * PAGE_BYTES);
        drop(large);
        let small = tokio::time::timeout(Duration::from_secs(2), small)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(budget.waiting(), 0);
        // A cancelled wait (stop, deadline) is no longer counted and takes nothing.
        let cancelled =
            tokio::time::timeout(Duration::from_millis(20), budget.reserve(4 * PAGE_BYTES)).await;
        assert!(cancelled.is_err());
        assert_eq!(budget.waiting(), 0);
        drop(small);
        assert_eq!(budget.reserved_bytes(), 0);
        // More than the budget asks for all of it, rather than waiting forever.
        let all = budget.reserve(100 * PAGE_BYTES).await;
        assert_eq!(budget.reserved_bytes(), budget.budget_bytes());
        drop(all);
    }
}
