//! How the binary's allocator (mimalloc, declared in `main.rs`) gives memory back.
//!
//! The operator's resident memory is part of its contract (5,000 Tenants in 64 MiB,
//! `BENCHMARKS.md`). mimalloc keeps freed pages for a second by default before it returns them
//! to the OS; during a resync, when thousands of reconciles build and drop their plans, those
//! pages add up to 15–20 MiB of RSS. Returning them at once cost no measurable CPU in the
//! scale benchmark.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// `mi_option_purge_delay` of `mimalloc.h`: the enum's order is stable across mimalloc
/// versions (retired options keep their slot), and the Rust bindings do not name this one.
const PURGE_DELAY: mi_option_t = 15;

/// Return freed memory to the OS at once. An explicit `MIMALLOC_PURGE_DELAY` in the
/// environment wins, so an operator can trade memory for fewer system calls.
pub fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mimalloc's options are atomics, valid to read and set from any thread at any
    // time, and PURGE_DELAY is a valid option index (the test below checks it is the purge
    // delay, not a neighbour).
    unsafe { mi_option_set(PURGE_DELAY, 0) }
}

#[cfg(test)]
mod tests {
    use libmimalloc_sys::mi_option_get;

    use super::*;

    /// The purge delay mimalloc uses now, in milliseconds.
    fn purge_delay_ms() -> std::os::raw::c_long {
        // SAFETY: as in `return_freed_memory_promptly`.
        unsafe { mi_option_get(PURGE_DELAY) }
    }

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // mimalloc's default purge delay is 1000 ms (v3; 10 ms in v2); its neighbours
        // (eager-commit delay, NUMA nodes) default to 1 and 0.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(purge_delay_ms() >= 10, "option {PURGE_DELAY} is not mimalloc's purge delay");
        }
        return_freed_memory_promptly();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay_ms(), 0);
        }
    }
}
