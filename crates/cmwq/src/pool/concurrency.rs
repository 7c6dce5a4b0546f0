//! Concurrency management: who counts in `nr_running`, and the `blocking` hint (kernel-notes §4.1,
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

use super::{flags, PoolGuard, PoolLocked, Sleeping};
use crate::monitor::switch::{self, Seen, Verdict, WorkerSwitch};
use crate::monitor::MonSample;
use crate::sync::{Arc, Ordering};
use crate::sys::ThreadProbe;

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
    pub(super) fn worker_set_flags(&mut self, id: usize, f: u8) {
        let before = self.counts(id);
        self.workers[id].flags |= f;
        let after = self.counts(id);
        self.adjust_running(before, after);
    }

    /// Clears worker flags, joining `nr_running` when the last NOT_RUNNING flag goes.
    pub(super) fn worker_clr_flags(&mut self, id: usize, f: u8) {
        let before = self.counts(id);
        self.workers[id].flags &= !f;
        let after = self.counts(id);
        self.adjust_running(before, after);
    }

    /// Marks worker `id` as sleeping (for the given reason) or running again.
    pub(super) fn worker_set_sleeping(&mut self, id: usize, s: Sleeping) {
        let before = self.counts(id);
        self.workers[id].sleeping = s;
        let after = self.counts(id);
        self.adjust_running(before, after);
    }

    /// Calls `f` with every busy worker that the monitor can sample (it has a run-time probe):
    /// the monitor's snapshot, taken under the lock.
    pub(crate) fn for_each_busy(&self, mut f: impl FnMut(BusyView<'_>)) {
        for (id, w) in self.workers.iter() {
            let (Some(cur), Some(probe)) = (&w.current, &w.probe) else { continue };
            f(BusyView {
                id,
                seq: cur.seq,
                probe,
                counts: w.flags & flags::NOT_RUNNING == 0,
                sleeping: w.sleeping,
                mon: &w.mon,
                switch: w.switch.as_ref(),
            });
        }
    }
}

/// A busy worker as the monitor sees it (`PoolLocked::for_each_busy`).
#[derive(Debug)]
pub(crate) struct BusyView<'a> {
    /// The worker's id in its pool.
    pub(crate) id: usize,
    /// The execution it runs (`Current::seq`).
    pub(crate) seq: u64,
    /// Its thread's run-time probe.
    pub(crate) probe: &'a Arc<ThreadProbe>,
    /// No NOT_RUNNING flag is set (it may count as running).
    pub(crate) counts: bool,
    /// Whether, and why, it is taken as sleeping.
    pub(crate) sleeping: Sleeping,
    /// What the monitor remembered of it.
    pub(crate) mon: &'a MonSample,
    /// Its switch event (`Detector::Switch`), if it has one.
    pub(crate) switch: Option<&'a Arc<WorkerSwitch>>,
}

impl PoolGuard<'_> {
    /// Worker `me` stopped counting (slept, blocked, or hogged the CPU): wake another worker
    /// if the pool now needs one, and count the wake-up against the item `me` runs. The kick
    /// must see the items still in the inbox too.
    fn cm_kick(&mut self, me: usize) {
        self.drain_inbox();
        if self.kick_pool() {
            if let Some(cur) = &self.workers[me].current {
                let slot = cur.pwq as usize;
                self.pwqs[slot].stats.cm_wakeup += 1;
            }
        }
    }

    /// Busy worker `me` went to sleep (`wq_worker_sleeping`): it stops counting as running
    /// and the pool is kicked. One transition, whatever noticed it: the `blocking` hint or the
    /// monitor (`how`). Returns whether it counted before (nothing changes otherwise: a
    /// rescuer, a CPU-intensive or an already sleeping worker).
    pub(crate) fn worker_sleeping(&mut self, me: usize, how: Sleeping) -> bool {
        let w = &self.workers[me];
        if w.current.is_none() || w.sleeping != Sleeping::No || w.flags & flags::NOT_RUNNING != 0 {
            return false;
        }
        self.worker_set_sleeping(me, how);
        self.cm_kick(me);
        true
    }

    /// Worker `me` runs again (`wq_worker_running`): it counts again if no flag says
    /// otherwise, and its CPU-hog clock restarts (the kernel resets `current_at`).
    pub(crate) fn worker_running(&mut self, me: usize, now_ns: Option<u64>) {
        if self.workers[me].sleeping != Sleeping::No {
            self.worker_set_sleeping(me, Sleeping::No);
        }
        self.workers[me].mon.restart_hog(now_ns);
    }

    /// Busy worker `me` used the CPU past the CPU-intensive threshold (`wq_worker_tick`): it
    /// is marked CPU_INTENSIVE, stops counting, and the pool is kicked.
    pub(crate) fn worker_hogged(&mut self, me: usize) {
        self.worker_set_flags(me, flags::CPU_INTENSIVE);
        if let Some(cur) = &self.workers[me].current {
            let slot = cur.pwq as usize;
            self.pwqs[slot].stats.cpu_intensive += 1;
        }
        self.cm_kick(me);
    }

    /// What worker `me`'s switch records say now (`seen`), applied if `ws` is still its event
    /// and it is busy: the switch detector's source of `worker_sleeping` (a blocking
    /// switch-out of a counted worker) and `worker_running` (a switch-in of a worker marked
    /// sleeping; `now_ns`: its run time, if known). Returns what was done, if anything.
    pub(crate) fn worker_switched(
        &mut self,
        me: usize,
        ws: &Arc<WorkerSwitch>,
        seen: Seen,
        now_ns: Option<u64>,
    ) -> Option<Verdict> {
        let w = self.workers.get(me)?;
        if w.current.is_none() || !w.switch.as_ref().is_some_and(|s| Arc::ptr_eq(s, ws)) {
            return None;
        }
        match switch::verdict(seen, w.sleeping == Sleeping::Seen) {
            Verdict::Sleeping if w.sleeping == Sleeping::No => {
                self.worker_sleeping(me, Sleeping::Seen).then_some(Verdict::Sleeping)
            }
            Verdict::Running => {
                self.worker_running(me, now_ns);
                Some(Verdict::Running)
            }
            _ => None,
        }
    }

    /// Whether worker `me`'s switch records are worth waking for: it is busy and either counts
    /// while items wait behind running workers (a block must start the next item) or is
    /// marked sleeping (its switch-in must count it again).
    pub(crate) fn switch_wanted(&self, me: usize) -> bool {
        let Some(w) = self.workers.get(me) else { return false };
        w.current.is_some()
            && (w.sleeping == Sleeping::Seen
                || (w.flags & flags::NOT_RUNNING == 0
                    && w.sleeping == Sleeping::No
                    && self.items_wait_behind_running()))
    }

    /// What the monitor remembers of worker `id`, if it still runs execution `seq`, with the
    /// CPU time since the last sample charged to the item's pwq (`PWQ_STAT_CPU_TIME`).
    pub(crate) fn sample_of(&mut self, id: usize, seq: u64, cpu_ns: u64) -> Option<&mut MonSample> {
        let slot = self.workers.get(id)?.current.as_ref().filter(|c| c.seq == seq)?.pwq;
        self.pwqs[slot as usize].stats.cpu_time_ns += cpu_ns;
        Some(&mut self.workers[id].mon)
    }

    /// Whether items wait behind running workers (per-CPU pools): on the worklist, or in the
    /// inbox, which a running worker drains at its next lock.
    pub(crate) fn items_wait_behind_running(&self) -> bool {
        self.pool.is_cm() && self.nr_running > 0 && (!self.worklist.is_empty() || !self.pool.inbox_is_empty())
    }

    /// Worker `id` as the monitor reads it now: `(counts, sleeping)`, if it exists.
    pub(crate) fn worker_state(&self, id: usize) -> Option<(bool, Sleeping)> {
        let w = self.workers.get(id)?;
        Some((w.flags & flags::NOT_RUNNING == 0, w.sleeping))
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
    let entered = pool.lock().worker_sleeping(me, Sleeping::Hint);
    /// Restores the worker's running state even if `f` unwinds.
    struct Running<'a>(&'a Arc<super::WorkerPool>, usize, bool);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            if self.2 {
                self.0.lock().worker_running(self.1, None);
            }
        }
    }
    let _running = Running(&pool, me, entered);
    f()
}
