//! Debug-build checks from the kernel (spec §3.4): `check_flush_dependency` warns when an item
//! of a `mem_reclaim` workqueue flushes a workqueue (or an item of one) without a rescuer: the
//! flush could wait for a worker that can never be created, which breaks the forward-progress
//! guarantee of the flushing workqueue. Like the kernel's `WARN_ONCE`, each pair of workqueues
//! is reported once; the number of reports is counted for tests.

use crate::sync::global::OnceLock;
use crate::sync::{Arc, Ordering};
use crate::workqueue::WqInfo;

/// Reports so far.
#[allow(clippy::disallowed_types)] // Process-wide: the real atomic (crate::sync::global).
static WARNINGS: crate::sync::global::AtomicU64 = crate::sync::global::AtomicU64::new(0);

/// Number of flush-dependency warnings printed by this process (debug builds only).
#[doc(hidden)]
pub fn flush_dependency_warnings() -> u64 {
    WARNINGS.load(Ordering::Relaxed)
}

/// The workqueue of the item the calling worker runs, if the caller is a worker.
pub(crate) fn current_wq() -> Option<Arc<WqInfo>> {
    let (pool, me) = crate::pool::worker::current_worker()?;
    let g = pool.lock();
    let cur = g.workers.get(me)?.current.as_ref()?;
    Some(g.pwqs.get(cur.pwq as usize)?.wq.clone())
}

/// `check_flush_dependency`: `current` (the flusher's workqueue, if it is a worker) flushes
/// `target`.
pub(crate) fn check_flush_dependency(current: Option<&Arc<WqInfo>>, target: &WqInfo) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(cur) = current else { return };
    if !cur.flags.mem_reclaim || target.flags.mem_reclaim {
        return;
    }
    #[allow(clippy::disallowed_types)] // Process-wide: the real lock (crate::sync::global).
    static SEEN: OnceLock<crate::sync::global::Mutex<Vec<(u32, u32)>>> = OnceLock::new();
    let mut seen = SEEN.get_or_init(Default::default).lock();
    if seen.contains(&(cur.id, target.id)) {
        return;
    }
    seen.push((cur.id, target.id));
    WARNINGS.fetch_add(1, Ordering::Relaxed);
    eprintln!(
        "cmwq: WARNING: mem_reclaim workqueue {:?} is flushing !mem_reclaim workqueue {:?}: \
         this can deadlock when no worker can be created (check_flush_dependency)",
        cur.name, target.name
    );
}
