//! The C allocator's set-up for a small daemon that runs for months (issue 12's RSS goal).
//!
//! Why: glibc's malloc gives threads that allocate at the same time arenas of their own (up to
//! 8 per core) and returns freed memory to the system only from the top of the main heap. A
//! burst (many control connections at once, each checked on a blocking-pool thread; thousands
//! of scans) thus leaves several arenas holding freed pages for the rest of the process's life.
//! Two arenas are enough for two runtime workers plus the blocking pool, and [`trim`] after a
//! burst gives the free pages back. The figures, before and after, are in BENCHMARKS.md
//! ("Issue 12", "RSS"), measured with `WXCARDD_BENCH_ONLY=rss cargo bench --bench daemon`.
//!
//! Elsewhere than on glibc (musl) these do nothing.

/// Arenas malloc may create (`M_ARENA_MAX`). glibc's default on 64-bit is 8 per core.
pub const ARENAS: i32 = 2;

/// Limits malloc's arenas to [`ARENAS`]. Call first thing in `main`, before any thread starts
/// (arenas already made stay).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Returns free memory in every arena to the system (`malloc_trim(0)`); true if some was.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim walks the allocator's own free lists under its locks.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Free bytes in malloc's arenas, less what sits at the top of the main heap (which free
/// already gives back past `M_TRIM_THRESHOLD`).
fn free_bytes() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics under its locks.
        let info = unsafe { libc::mallinfo2() };
        info.fordblks.saturating_sub(info.keepcost)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

/// Free memory inside the arenas worth a trim.
const TRIM_AT: usize = 1024 * 1024;

/// How often the trimmer looks.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts a thread that every [`TRIM_EVERY`] gives the arenas' free memory back to the
/// system when more than 1 MiB of it has piled up (after a burst of connections or scans;
/// an idle till never trims). Off the runtime: a trim walks every arena under its lock.
pub fn spawn_trimmer() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("malloc-trim".into())
        .stack_size(64 * 1024)
        .spawn(|| {
            loop {
                std::thread::sleep(TRIM_EVERY);
                if free_bytes() >= TRIM_AT {
                    trim();
                }
            }
        })
        .map(drop)
}
