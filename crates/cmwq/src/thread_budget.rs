//! The budget of threads [`ThreadSpawner`](crate::ThreadSpawner) may have alive at once, so
//! that creating threads fails cleanly instead of aborting the process.
//!
//! Every thread costs memory mappings (VMAs): glibc maps its stack with a guard page (2), and
//! std maps a signal stack with a guard page for stack-overflow reports (2). A process has at
//! most `vm.max_map_count` of them (65530 by default). When they run out, `pthread_create`
//! fails cleanly, but the signal stack is mapped inside the new thread, where std panics
//! ("failed to allocate an alternative stack") outside any `catch_unwind` and the process
//! aborts. Seen with `cpus(8192)` on the 2-core development machine: 16,374 boot-time workers
//! started, then the abort. So the default spawner refuses a thread (an ordinary failed
//! creation, `EAGAIN`, which the pools retry and rescuers cover) once its threads alive would
//! use more than three quarters of the limit, leaving the rest to the program.

use crate::sync::global::OnceLock;
use crate::sync::Ordering;
use std::io;

/// Memory mappings one thread costs: stack and guard page (glibc), signal stack and guard page
/// (std).
const VMAS_PER_THREAD: usize = 4;

/// `vm.max_map_count` when it cannot be read: the kernel's default (`DEFAULT_MAX_MAP_COUNT`,
/// include/linux/mm.h).
const DEFAULT_MAX_MAP_COUNT: usize = 65530;

/// Threads of the default spawner alive now, process-wide (a real atomic in every build: it
/// counts OS threads, which outlive a model execution). Relaxed: a counter, ordering
/// nothing; `fetch_update` keeps it within the limit.
#[allow(clippy::disallowed_types)] // The real atomic on purpose (crate::sync::global).
static LIVE: crate::sync::global::AtomicU64 = crate::sync::global::AtomicU64::new(0);

/// The most threads of the default spawner alive at once: three quarters of
/// `vm.max_map_count`, over [`VMAS_PER_THREAD`].
fn max_threads() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(|| (crate::sys::max_map_count().unwrap_or(DEFAULT_MAX_MAP_COUNT) / 4 * 3 / VMAS_PER_THREAD) as u64)
}

/// One thread's share of the budget; given back when dropped (at the end of the thread's body,
/// or at once if the thread could not be created).
#[derive(Debug)]
pub(crate) struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a share of the budget, or fails as a thread limit would (`WouldBlock`, `EAGAIN`).
pub(crate) fn acquire() -> io::Result<Slot> {
    let max = max_threads();
    match LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1)) {
        Ok(_) => Ok(Slot(())),
        Err(n) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{n} cmwq threads alive: more would exhaust vm.max_map_count and abort the process"),
        )),
    }
}
