//! Flush barriers and `Work::flush` (the kernel's `wq_barrier`, `insert_wq_barrier`,
//! `start_flush_work`; kernel-notes §3.4).
//!
//! To wait for the last instance of an item, a barrier entry is inserted right behind it:
//! * if the item is queued (on the worklist, an inactive list, or a worker's scheduled list),
//!   right after it on the same list, linked to it, so it moves with the item and completes
//!   right after the item has run, wherever that happens (another worker, later the rescuer);
//! * if the item is running, at the front of the running worker's scheduled list, so it
//!   completes right after the current execution.
//!
//! The barrier takes the item's flush colour and pwq (a workqueue flush waits for it too) and
//! never counts in `nr_active`. If the item is neither queued nor running there is nothing to
//! wait for.

use crate::completion::Completion;
use crate::sync::Arc;
use crate::work::Work;

/// Inserts a barrier behind the last instance of `work`; returns its completion, or `None` if
/// the item is idle (or runs on the calling thread: it would wait for itself).
fn start_flush_work(work: &Work) -> Option<Arc<Completion>> {
    let pool = crate::pool::lookup(work.state().load().last_pool()?)?;
    // Taken before the target's pool lock: it may be the same pool.
    let current = if cfg!(debug_assertions) { crate::debug::current_wq() } else { None };
    let (done, target) = match pool.lock().insert_barrier(work) {
        Ok(found) => found?,
        Err(()) => {
            // Flushing (or cancel_sync-ing) an item from its own function would wait for
            // itself forever.
            eprintln!("cmwq: {work:?} flushed from its own function: not waiting for itself");
            return None;
        }
    };
    crate::debug::check_flush_dependency(current.as_ref(), &target);
    Some(done)
}

impl Work {
    /// Waits until the last instance of this item that was pending or running at the call has
    /// finished (`flush_work`). Returns `true` if it waited, `false` if the item was idle.
    /// On return the item is idle unless it was queued again meanwhile.
    pub fn flush(&self) -> bool {
        match start_flush_work(self) {
            Some(done) => {
                done.wait();
                true
            }
            None => false,
        }
    }
}
