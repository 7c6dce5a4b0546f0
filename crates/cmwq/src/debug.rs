//! Debug-build checks from the kernel (kernel-notes §3.4): `check_flush_dependency` warns when an item
//! of a `mem_reclaim` workqueue flushes a workqueue (or an item of one) without a rescuer: the
//! flush could wait for a worker that can never be created, which breaks the forward-progress
//! guarantee of the flushing workqueue. Like the kernel's `WARN_ONCE`, each pair of workqueues
//! is reported once; the number of reports is counted for tests.

use crate::pool::PwqOwner;
use crate::sync::global::OnceLock;
use crate::sync::{Arc, Ordering, Weak};

/// Reports so far.
#[allow(clippy::disallowed_types)] // Process-wide: the real atomic (crate::sync::global).
static WARNINGS: crate::sync::global::AtomicU64 = crate::sync::global::AtomicU64::new(0);

/// Number of flush-dependency warnings printed by this process (debug builds only).
#[doc(hidden)]
pub fn flush_dependency_warnings() -> u64 {
    WARNINGS.load(Ordering::Relaxed)
}

/// The workqueue of the item the calling worker runs, if the caller is a worker.
pub(crate) fn current_wq() -> Option<Arc<dyn PwqOwner>> {
    let (pool, me) = crate::pool::current_worker()?;
    let owner = pool.lock().current_owner(me);
    owner
}

/// A reported pair: the flusher, and the target's address.
type Reported = (Weak<dyn PwqOwner>, usize);

/// `check_flush_dependency`: `current` (the flusher's workqueue, if it is a worker) flushes
/// `target`.
pub(crate) fn check_flush_dependency(current: Option<&Arc<dyn PwqOwner>>, target: &Arc<dyn PwqOwner>) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(cur) = current else { return };
    if !cur.mem_reclaim() || target.mem_reclaim() {
        return;
    }
    // The pairs already reported: the flusher by a weak reference (its allocation stays, so
    // the pointer cannot be reused while the entry lives; entries of dead flushers are
    // dropped), the target by address. Not by workqueue id: ids are unique only within a
    // runtime, so a pair reported in one runtime silenced the same ids in every other
    // runtime of the process (one test's leftovers deciding another's warning).
    #[allow(clippy::disallowed_types)] // Process-wide: the real lock (crate::sync::global).
    static SEEN: OnceLock<crate::sync::global::Mutex<Vec<Reported>>> = OnceLock::new();
    let mut seen = SEEN.get_or_init(Default::default).lock();
    seen.retain(|(w, _)| w.strong_count() > 0);
    let key = (Arc::downgrade(cur), Arc::as_ptr(target) as *const u8 as usize);
    if seen.iter().any(|(w, t)| Weak::ptr_eq(w, &key.0) && *t == key.1) {
        return;
    }
    seen.push(key);
    WARNINGS.fetch_add(1, Ordering::Relaxed);
    eprintln!(
        "cmwq: WARNING: mem_reclaim workqueue {:?} is flushing !mem_reclaim workqueue {:?}: \
         this can deadlock when no worker can be created (check_flush_dependency)",
        cur.name(),
        target.name()
    );
}
