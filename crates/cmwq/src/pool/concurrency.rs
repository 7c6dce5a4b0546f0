//! Concurrency management: who counts in `nr_running`, and the `blocking` hint (spec §4.1,
//! §4.3; DESIGN.md §3).
//!
//! A worker of a per-CPU pool counts as running unless a NOT_RUNNING flag is set (PREP,
//! CPU_INTENSIVE, UNBOUND) or it is known to sleep. `nr_running` changes only through the
//! transitions below, which compare "counts" before and after, as the kernel's
//! `worker_set_flags`/`worker_clr_flags` and its sleeping/running hooks do.
//!
//! Userspace has no scheduler hooks, so "this worker went to sleep" comes from two sources:
//! * the hint [`blocking`](crate::blocking): acts at once, like `wq_worker_sleeping` followed
//!   later by `wq_worker_running`;
//! * the monitor (`crate::monitor`), which samples busy workers' CPU clocks and thread states
//!   while items wait, and marks a stopped worker as sleeping (then running again when its
//!   clock moves).
//!
//! When the last running worker of a pool stops counting, the pool is kicked: an idle worker
//! wakes and takes the next item, counted as a `cm_wakeup` of the item that slept.

use super::{flags, PoolLocked, Sleeping, WorkerPool};
use crate::sync::{Arc, Ordering};

impl PoolLocked {
    /// Whether worker `id` counts toward `nr_running`.
    fn counts(&self, id: usize) -> bool {
        let w = &self.workers[id];
        w.flags & flags::NOT_RUNNING == 0 && w.sleeping == Sleeping::No
    }

    fn adjust_running(&mut self, before: bool, after: bool) {
        match (before, after) {
            (true, false) => self.nr_running -= 1,
            (false, true) => self.nr_running += 1,
            _ => return,
        }
        // Relaxed: the store happens under the pool lock, and a queuer's reading of it is
        // ordered by the `SeqCst` fences of the inbox protocol (`pool::inbox`, step 3).
        self.nr_running_pub.store(self.nr_running, Ordering::Relaxed);
    }

    /// Sets worker flags, leaving `nr_running` when the first NOT_RUNNING flag is set.
    pub(crate) fn worker_set_flags(&mut self, id: usize, f: u8) {
        let before = self.counts(id);
        self.workers[id].flags |= f;
        let after = self.counts(id);
        self.adjust_running(before, after);
    }

    /// Clears worker flags, joining `nr_running` when the last NOT_RUNNING flag goes.
    pub(crate) fn worker_clr_flags(&mut self, id: usize, f: u8) {
        let before = self.counts(id);
        self.workers[id].flags &= !f;
        let after = self.counts(id);
        self.adjust_running(before, after);
    }

    /// Marks worker `id` as sleeping (for the given reason) or running again.
    pub(crate) fn worker_set_sleeping(&mut self, id: usize, s: Sleeping) {
        let before = self.counts(id);
        self.workers[id].sleeping = s;
        let after = self.counts(id);
        self.adjust_running(before, after);
    }
}

impl WorkerPool {
    /// Worker `me` stopped counting (slept, blocked, or hogged the CPU): wake another worker
    /// if the pool now needs one, and count the wake-up against the item `me` runs.
    pub(crate) fn cm_kick(&self, g: &mut PoolLocked, me: usize) {
        if self.kick_pool(g) {
            if let Some(cur) = &g.workers[me].current {
                let slot = cur.pwq as usize;
                g.pwqs[slot].stats.cm_wakeup += 1;
            }
        }
    }
}

/// Runs `f`, a section that may sleep or block, telling the pool first: on a per-CPU pool the
/// calling worker stops counting as running while `f` runs, so another worker can start the
/// next item at once (the kernel's sleeping/running scheduler hooks). Outside a cmwq worker, or
/// on an unbound pool, it just runs `f`.
///
/// ```
/// cmwq::blocking(|| std::thread::sleep(std::time::Duration::from_millis(1)));
/// ```
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let Some((pool, me)) = super::worker::current_worker() else {
        return f();
    };
    if !pool.is_cm() {
        return f();
    }
    let entered = {
        let mut g = pool.lock();
        let w = &g.workers[me];
        // Only a worker that counts can stop counting: not a rescuer, nor a CPU-intensive one
        // (`wq_worker_sleeping` returns early for NOT_RUNNING workers).
        if w.current.is_some() && w.sleeping == Sleeping::No && w.flags & super::flags::NOT_RUNNING == 0 {
            g.worker_set_sleeping(me, Sleeping::Hint);
            pool.cm_kick(&mut g, me);
            true
        } else {
            false
        }
    };
    /// Restores the worker's running state even if `f` unwinds.
    struct Running<'a>(&'a Arc<WorkerPool>, usize, bool);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            if !self.2 {
                return;
            }
            let mut g = self.0.lock();
            if g.workers[self.1].sleeping != Sleeping::No {
                g.worker_set_sleeping(self.1, Sleeping::No);
            }
            // Restart the CPU-hog clock, as `wq_worker_running` resets `current_at`.
            g.workers[self.1].mon.hog_valid = false;
        }
    }
    let _running = Running(&pool, me, entered);
    f()
}
