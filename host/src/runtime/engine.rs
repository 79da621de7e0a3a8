//! The process-wide wasmtime `Engine` (component model, epoch interruption, pooling
//! allocator) and `Linker` (WASI, wasi:http, the durable interface): built once at start.

use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
};

use crate::host_api::bindings::DurableFunction;
use crate::host_api::HostState;
use crate::settings::Defaults;

#[derive(Clone, Debug)]
pub struct Options {
    /// What functions run with unless their settings say otherwise.
    pub defaults: Defaults,
    /// Instances the pooling allocator keeps room for (an upper bound on residency).
    pub max_instances: u32,
    /// Bytes of each pool slot's linear memory (and of its tables) that stay resident when
    /// an instance is dropped: the pages the instance wrote are found with the kernel's
    /// `PAGEMAP_SCAN` (Linux 6.7 and later) and copied back from the module's memory image,
    /// so the next instance of the same component in that slot does not fault them in
    /// again. 0: every page goes back to the kernel (wasmtime's default).
    pub keep_resident_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            defaults: Defaults::default(),
            max_instances: 1_000,
            keep_resident_bytes: KEEP_RESIDENT_BYTES,
        }
    }
}

/// What `Options::keep_resident_bytes` is unless set: 256 pages, above what the scan finds
/// after one activation of a Python component (its first 32 runs of written pages: under
/// 100) or of a Rust one (a few). What a slot keeps is at most what its instance wrote.
pub const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// How often the epoch advances: a busy guest yields to others at this interval.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide engine: component model, epoch interruption, pooling allocator.
pub fn engine(opts: &Options) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    let mut pool = PoolingAllocationConfig::default();
    let n = opts.max_instances.max(1);
    pool.total_component_instances(n);
    // A component built from Rust has a handful of core instances (the module plus
    // adapter shims); leave generous room.
    pool.max_core_instances_per_component(32);
    pool.total_core_instances(n * 8);
    pool.max_memories_per_component(8);
    pool.total_memories(n * 2);
    pool.max_tables_per_component(8);
    pool.total_tables(n * 4);
    pool.total_stacks(n);
    // Above the per-store limit, so the store limiter (with a clear error) bites first.
    pool.max_memory_size(
        opts.defaults
            .memory_limit_bytes
            .saturating_mul(2)
            .max(64 << 20),
    );
    // When an instance is dropped, the pages it wrote (found with `PAGEMAP_SCAN`, which
    // wasmtime stops at 32 runs of dirty pages) are reset from the memory image and stay
    // resident, and the rest goes back to the kernel. A Python component touches ~350 pages
    // of its 11 MB snapshot per activation, each a page fault (most a copy-on-write copy)
    // when nothing is kept. Without the scan, `keep_resident` would instead copy the whole
    // image prefix back at every drop (tried: slower) and hold that much per slot ever used,
    // so an older kernel keeps nothing. What this holds: at most `keep_resident_bytes` per
    // slot ever used (the most instances alive at once plus wasmtime's 100 warm unused
    // slots), in practice what one activation wrote: a few dozen pages for a Rust guest,
    // under 100 for a Python one. Measured (bench figure 6, 64 clients): +10 MiB RSS, once
    // (not per execution), for resumes 30% (Rust) and 10-15% (Python) cheaper.
    if opts.keep_resident_bytes > 0 && PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes);
        pool.linear_memory_keep_resident(opts.keep_resident_bytes);
        pool.table_keep_resident(opts.keep_resident_bytes);
    }
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))
}

/// The process-wide linker: WASI (no preopens, no env, no sockets), wasi:http outgoing
/// requests (allowlisted by the store's hooks) and the durable `context` interface.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    DurableFunction::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok(linker)
}
