//! The memory allocator of burst's programs: jemalloc. Each program's `main.rs` installs it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: burst_proto::alloc::Allocator = burst_proto::alloc::Allocator;
//! ```
//!
//! The controller makes and drops several small allocations per job and state change (ids, records, RPC
//! messages); glibc's malloc spent about 35% of `burst bench --workload w4`'s CPU in its own bookkeeping
//! (`_int_malloc`, `malloc_consolidate`, `unlink_chunk`, `_int_free`), and kept the memory of a drained queue
//! resident in fragments. jemalloc keeps per-thread caches and size classes that suit this churn, and counts
//! what is in use, which [`allocated_bytes`] reads.

pub use tikv_jemallocator::Jemalloc as Allocator;

/// Bytes the program has allocated and not freed, when jemalloc is its allocator (0 otherwise).
pub fn allocated_bytes() -> u64 {
    // The statistics are a snapshot taken when the epoch advances.
    if tikv_jemalloc_ctl::epoch::advance().is_err() {
        return 0;
    }
    tikv_jemalloc_ctl::stats::allocated::read().map_or(0, |b| b as u64)
}
