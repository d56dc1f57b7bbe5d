//! The process's memory allocator, and how it gives memory back.

/// mimalloc rather than glibc's malloc. glibc's took a fifth of the webhook lane's
/// CPU (`malloc`, `_int_malloc`, `_int_free`, `malloc_consolidate`) and its arena
/// locks showed under checkout load; mimalloc's heaps are per thread. Measured against
/// glibc: checkouts 1.16–1.26× on SQLite and 1.07–1.12× on PostgreSQL, webhooks
/// 0.96–1.11× and 1.10–1.23×, the server's CPU per request 1–19 % less
/// (BENCHMARKS.md). Built with `no_thp`, as its eagerly committed memory, advised as
/// huge pages, raised the idle RSS from 32 to 58 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option `purge_delay` (`mi_option_purge_delay`; mimalloc keeps these numbers
/// stable, retiring an option rather than renumbering the others).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the system at once, not a second later. mimalloc purges
/// only when it is called again, so memory a thread freed just before it went idle
/// stayed resident: the RSS of a server idle after a load was 42 MiB, 38 with this.
/// An operator's own `MIMALLOC_PURGE_DELAY` (read by mimalloc at start) is kept.
pub fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets one option's value, which mimalloc reads each time it purges.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}
