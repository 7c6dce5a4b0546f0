//! Flush barriers and `Work::flush` (the kernel's `wq_barrier`, `insert_wq_barrier`,
//! `start_flush_work`; spec §3.4).
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
use crate::pool::{registry, Entry, Item, Loc};
use crate::sync::Arc;
use crate::work::{Work, NO_NODE};
use crate::worklist::NIL;

/// Inserts a barrier behind the last instance of `work`; returns its completion, or `None` if
/// the item is idle.
pub(crate) fn start_flush_work(work: &Work) -> Option<Arc<Completion>> {
    let pool = registry::lookup(work.state().load().last_pool()?)?;
    // Taken before the target's pool lock: it may be the same pool.
    let current = if cfg!(debug_assertions) { crate::debug::current_wq() } else { None };
    let mut g = pool.lock();
    let snap = work.state().load();
    let done = Arc::new(Completion::new());
    let target = if snap.is_queued() && snap.last_pool() == Some(pool.id) {
        if work.node() == NO_NODE {
            // Parked in an inactive run: give it a node to link the barrier to.
            g.unpark_all();
        }
        let idx = work.node();
        let (pwq, color, linked, loc) = {
            let e = g.nodes.get(idx);
            (e.pwq, e.color, e.linked, e.loc)
        };
        g.nodes.get_mut(idx).linked = true;
        let barrier = Entry { item: Item::Barrier(done.clone()), pwq, color, inactive: true, linked, loc };
        g.with_list(loc, pwq, |l, n| l.insert_after(n, idx, barrier));
        g.pwqs[pwq as usize].inc_in_flight(color);
        pwq
    } else if let Some(wk) = g.find_worker_executing(work) {
        if crate::pool::worker::current_worker().is_some_and(|(p, me)| Arc::ptr_eq(&p, &pool) && me == wk) {
            // Flushing (or cancel_sync-ing) an item from its own function would wait for
            // itself forever.
            eprintln!("cmwq: {work:?} flushed from its own function: not waiting for itself");
            return None;
        }
        let cur = g.workers[wk].current.as_ref().expect("busy worker has a current item");
        let (pwq, color) = (cur.pwq, cur.color);
        let loc = Loc::scheduled(wk);
        let barrier = Entry { item: Item::Barrier(done.clone()), pwq, color, inactive: true, linked: false, loc };
        let head = g.workers[wk].scheduled.front().unwrap_or(NIL);
        g.with_list(loc, pwq, |l, n| l.insert_before(n, head, barrier));
        g.pwqs[pwq as usize].inc_in_flight(color);
        pwq
    } else {
        return None;
    };
    crate::debug::check_flush_dependency(current.as_ref(), &g.pwqs[target as usize].wq);
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
