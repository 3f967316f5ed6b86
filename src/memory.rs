//! The C allocator's set-up for a small daemon that runs for months (issue 12's RSS goal).
//!
//! Why: glibc's malloc gives threads that allocate at the same time arenas of their own (up to
//! 8 per core) and returns freed memory to the system only from the top of the main heap. A
//! burst (many control connections at once, their lookups on blocking-pool threads; thousands
//! of scans) thus leaves several arenas holding freed pages for the rest of the process's life.
//! Two arenas are enough for the executor thread plus the blocking pool, and [`trim`] after a
//! burst gives the free pages back: on a timer, and soon after the last connection of a burst
//! closes ([`trim_soon`], called by the control socket's server). The figures, before and after, are in BENCHMARKS.md
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

/// How long the trimmer waits after [`trim_soon`] before it looks: the burst's last tasks
/// and buffers are freed by the executor just after the last connection's slot.
pub const TRIM_SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The trimmer's thread and whether a trim was asked for, once [`spawn_trimmer`] ran.
static TRIMMER: std::sync::OnceLock<(std::thread::Thread, std::sync::Arc<AtomicBool>)> =
    std::sync::OnceLock::new();

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Trims the trimmer has made.
static TRIMS: AtomicU64 = AtomicU64::new(0);

/// How many times the trimmer has trimmed since the process started.
pub fn trims() -> u64 {
    TRIMS.load(Ordering::SeqCst)
}

/// Asks the trimmer to look within [`TRIM_SETTLE`] rather than at its next round: the end of
/// a burst (the last of many control connections closed). Never blocks; without a trimmer
/// (tests, the library in another program) it does nothing.
pub fn trim_soon() {
    if let Some((thread, asked)) = TRIMMER.get() {
        asked.store(true, Ordering::SeqCst);
        thread.unpark();
    }
}

/// Starts a thread that every [`TRIM_EVERY`], and [`TRIM_SETTLE`] after [`trim_soon`], gives
/// the arenas' free memory back to the system when more than 1 MiB of it has piled up (after
/// a burst of connections or scans; an idle till never trims). Off the runtime: a trim walks
/// every arena under its lock.
pub fn spawn_trimmer() -> std::io::Result<()> {
    let asked = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&asked);
    let thread = std::thread::Builder::new()
        .name("malloc-trim".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut next = std::time::Instant::now() + TRIM_EVERY;
            loop {
                std::thread::park_timeout(
                    next.saturating_duration_since(std::time::Instant::now()),
                );
                let now = std::time::Instant::now();
                if flag.swap(false, Ordering::SeqCst) {
                    std::thread::sleep(TRIM_SETTLE);
                } else if now < next {
                    // A spurious wake-up.
                    continue;
                }
                next = std::time::Instant::now() + TRIM_EVERY;
                if free_bytes() >= TRIM_AT {
                    trim();
                    TRIMS.fetch_add(1, Ordering::SeqCst);
                }
            }
        })?;
    let _ = TRIMMER.set((thread.thread().clone(), asked));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a burst is trimmed within [`TRIM_SETTLE`], not at the next round
    /// [`TRIM_EVERY`] (10 s) later.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn trim_soon_trims_before_the_next_round() {
        spawn_trimmer().unwrap();
        // 2 MiB freed in holes between blocks that stay (past tcache's sizes, so into the
        // arena's bins): free inside the arena, which free() cannot give back by itself.
        let blocks: Vec<Box<[u8]>> = (0..2048).map(|_| vec![1u8; 2048].into()).collect();
        let (guard, freed): (Vec<_>, Vec<_>) = blocks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        drop(freed);
        assert!(free_bytes() >= TRIM_AT, "{} bytes free", free_bytes());
        let before = trims();
        trim_soon();
        let deadline = std::time::Instant::now() + TRIM_EVERY / 2;
        while trims() == before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(trims() > before, "no trim within {:?}", TRIM_EVERY / 2);
        drop(guard);
    }
}
