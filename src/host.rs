//! What amosync asks of the operating system for itself: background threads at a
//! lower CPU priority, and an allocator that hands memory back after a burst.
//! Both are Linux (glibc) facilities; elsewhere these functions do nothing.

use std::time::Duration;

use crate::lifecycle::Lifecycle;

/// Nice value of the background runtime's threads (webhook apply, sync rounds,
/// reconciliation). When the CPUs are full, request threads win: a webhook
/// acknowledgement (AmoCRM gives up after about 2 s) is never queued behind the
/// mirror catching up, and the mirror catches up once the burst is over, since the
/// inbox already holds every delivery it acknowledged. Niceness only weighs CPU
/// shares: with CPU to spare, background work runs at full speed.
const BACKGROUND_NICE: i32 = 10;

/// glibc arenas for the whole process. By default glibc gives threads that contend
/// for the heap arenas of their own, up to eight per CPU, and each keeps what was
/// freed in it: after a burst, every blocking thread's arena held memory. A few
/// shared arenas (each thread still has its own small cache in front of them) cost
/// nothing measurable at two CPUs and keep the footprint close to what is live.
const MALLOC_ARENAS: i32 = 2;

/// Allocations from this size get pages of their own, handed back when freed.
/// glibc's default threshold starts at 128 KiB but rises to the largest block freed
/// so far (up to 32 MiB): after the first inbox claim or large delivery, megabyte
/// buffers came out of the arenas and the pages they left stayed with the process.
/// A fixed threshold also stops that rise.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// How often free heap pages are handed back to the OS.
const TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Lowers the calling thread's CPU priority to `BACKGROUND_NICE` (Linux keeps a
/// nice value per thread). Meant for `on_thread_start` of the background runtime.
pub fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; raising one's own
    // nice value needs no privilege. A failure only leaves the priority as it was.
    unsafe {
        let thread = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, thread as libc::id_t, BACKGROUND_NICE);
    }
}

/// Caps glibc's arenas and fixes its mmap threshold. Call first thing in `main`,
/// before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Hands free pages of every arena back to the OS (glibc keeps them otherwise,
/// and the process looks as big at rest as at its busiest).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes each arena's lock itself; it frees nothing in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Releases free memory every `TRIM_INTERVAL` until the service drains, on a
/// blocking thread (a trim walks every arena's free lists).
pub async fn trim_memory(lifecycle: std::sync::Arc<Lifecycle>) {
    while !lifecycle.is_draining() {
        lifecycle.pause(TRIM_INTERVAL).await;
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
