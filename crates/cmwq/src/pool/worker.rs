//! The worker thread (`worker_thread`, `process_one_work`; spec §4.2, §2.2).
//!
//! Loop of one worker:
//! 1. Woken, take the pool lock. If told to die, unregister and exit.
//! 2. Leave the idle list.
//! 3. If the pool needs no more workers (no item waits, or another worker runs), go idle.
//! 4. If no other worker is idle in reserve and nobody manages the pool, become the manager
//!    and create one (`pool::manager`), then re-check.
//! 5. Count as running, then take items from the head of the worklist while this worker is
//!    the only one running (`keep_working`), each through `assign_work` so that an item
//!    already running elsewhere in the pool goes to the worker running it.
//! 6. Go idle: push onto the idle list (LIFO), drop the lock, park.
//!
//! Running one item: record it in the busy table, clear its PENDING (from here on it may be
//! queued again), drop the lock, call the function under `catch_unwind`, retake the lock,
//! undo the bookkeeping and release the item's active slot, which may activate the next
//! inactive item. The item's handle is dropped only after the lock is released again, since
//! dropping the last handle runs the user's destructors.

use super::{flags, Current, Item, PoolGuard, PoolLocked, Sleeping, WorkerPool};
use crate::sync::{Arc, Parker};
use crate::sys::ThreadProbe;
use crate::work::Work;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

crate::sync::thread_local! {
    /// The pool and worker id of the worker running on this thread, if it is one.
    static CURRENT: RefCell<Option<(Arc<WorkerPool>, usize)>> = RefCell::new(None);
}

/// The name warnings give a closure run by `Workqueue::spawn` (it has no `Work`).
pub(crate) const SPAWNED_NAME: &str = "a closure spawned by Workqueue::spawn";

/// The pool and worker id of the calling thread, if it is a cmwq worker.
pub(crate) fn current_worker() -> Option<(Arc<WorkerPool>, usize)> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Sets (or clears) the calling thread's worker identity (a rescuer attaching to a pool).
pub(crate) fn set_current(cur: Option<(Arc<WorkerPool>, usize)>) {
    CURRENT.with(|c| *c.borrow_mut() = cur);
}

/// The body of a worker thread. `parker` is unparked by the creator once the worker is
/// registered as idle.
pub(crate) fn worker_thread(pool: Arc<WorkerPool>, me: usize, parker: Parker) {
    parker.park();
    CURRENT.with(|c| *c.borrow_mut() = Some((pool.clone(), me)));
    if let Some(cpu) = pool.cpu {
        if pool.env.config.pin_workers {
            crate::sys::pin_current_thread(cpu);
        }
    }
    if pool.highpri {
        crate::sys::set_current_nice(crate::sys::HIGH_NICE);
    }
    let probe = ThreadProbe::open_current(pool.is_cm()).map(Arc::new);
    // The last item run, dropped only while no lock is held.
    let mut deferred: Option<Work> = None;
    let mut g = pool.lock();
    g.workers[me].probe = probe;
    loop {
        if g.workers[me].flags & flags::DIE != 0 {
            let rec = g.workers.remove(me);
            g.idle_list.retain(|&w| w != me);
            if let Some(h) = rec.handle {
                g.exited.push(h);
            }
            drop(g);
            drop(deferred.take());
            CURRENT.with(|c| *c.borrow_mut() = None);
            return;
        }
        pool.worker_leave_idle(&mut g, me);
        loop {
            // A worker told to die goes back to the top: in a dying pool with items left
            // (a workqueue dropped during a panic does not drain) it would otherwise manage
            // forever, creation returning at once, and the shutdown's join never return.
            if !g.need_more_worker() || g.workers[me].flags & flags::DIE != 0 {
                break;
            }
            if !g.may_start_working() && !g.manager_active {
                g = super::manager::manage_workers(&pool, g);
                continue;
            }
            g.worker_clr_flags(me, flags::PREP);
            while let Some(head) = g.worklist.front() {
                if let Some(e) = g.take_alone(head, me) {
                    g.progress += 1;
                    g = process_one_work(&pool, g, me, e.item, e.pwq, e.color, e.inactive, &mut deferred);
                    if !g.workers[me].scheduled.is_empty() {
                        // Items that collided with the one just run were handed to this worker.
                        g = process_scheduled_works(&pool, g, me, &mut deferred);
                    }
                } else if g.assign_work(head, me) {
                    g = process_scheduled_works(&pool, g, me, &mut deferred);
                }
                if !g.keep_working() {
                    break;
                }
            }
            g.worker_set_flags(me, flags::PREP);
            break;
        }
        #[cfg(loom)]
        if crate::sync::plant::is(crate::sync::plant::Bug::WorkerIdleAfterUnlock) {
            drop(g);
            g = pool.lock();
        }
        pool.worker_enter_idle(&mut g, me);
        drop(g);
        drop(deferred.take());
        parker.park();
        g = pool.lock();
    }
}

/// Runs worker `me`'s scheduled list until it is empty (`process_scheduled_works`).
pub(crate) fn process_scheduled_works<'a>(
    pool: &'a Arc<WorkerPool>,
    mut g: PoolGuard<'a>,
    me: usize,
    deferred: &mut Option<Work>,
) -> PoolGuard<'a> {
    g.progress += 1;
    while let Some(idx) = g.workers[me].scheduled.front() {
        let e = g.remove_entry(idx);
        match e.item {
            Item::Work(_) | Item::Once(_) => {
                g = process_one_work(pool, g, me, e.item, e.pwq, e.color, e.inactive, deferred)
            }
            Item::Barrier(done) => {
                // `wq_barrier_func`: what it was linked behind has run.
                done.complete();
                pool.dec_nr_in_flight(&mut g, e.pwq, e.color, true);
            }
            Item::Cursor => unreachable!("a rescuer cursor on a scheduled list"),
        }
    }
    g
}

/// Runs one item, a work item or a one-shot closure (`process_one_work`). The lock is
/// released around the function.
#[allow(clippy::too_many_arguments)]
fn process_one_work<'a>(
    pool: &'a Arc<WorkerPool>,
    mut g: PoolGuard<'a>,
    me: usize,
    item: Item,
    slot: u32,
    color: u8,
    inactive: bool,
    deferred: &mut Option<Work>,
) -> PoolGuard<'a> {
    let seq = g.next_seq;
    g.next_seq += 1;
    // A one-shot closure has no identity to collide on: it stays out of the busy table.
    let (work_id, name) = match &item {
        Item::Work(work) => {
            g.busy.insert(work.id(), me);
            (work.id(), work.name())
        }
        _ => (0, SPAWNED_NAME),
    };
    g.workers[me].current = Some(Current { work_id, name, pwq: slot, color, seq });
    let cpu_intensive = g.pwqs[slot as usize].wq.flags.cpu_intensive;
    if cpu_intensive {
        g.worker_set_flags(me, flags::CPU_INTENSIVE);
    }
    // Chain execution for workers that do not count in nr_running (unbound pools,
    // CPU-intensive items): if more items wait, wake another idle worker.
    pool.kick_pool(&mut g);
    if let Item::Work(work) = &item {
        work.state().release_for_run(pool.id);
    }
    g.pwqs[slot as usize].stats.started += 1;
    let waiting = pool.is_cm() && !g.worklist.is_empty() && g.nr_running > 0;
    drop(g);
    if waiting {
        // Items wait behind this worker: the monitor must watch for it sleeping.
        pool.env.monitor.note_waiting();
    }
    pool.env.monitor.note_busy();
    drop(deferred.take());

    let (work, panicked) = match item {
        Item::Work(work) => {
            let panicked = catch_unwind(AssertUnwindSafe(|| work.run())).err();
            (Some(work), panicked)
        }
        // The closure and what it captured are consumed (dropped) inside the call.
        Item::Once(job) => (None, catch_unwind(AssertUnwindSafe(|| job.run())).err()),
        Item::Barrier(_) | Item::Cursor => unreachable!("process_one_work of a barrier or cursor"),
    };

    let mut g = pool.lock();
    let pwq = &mut g.pwqs[slot as usize];
    pwq.stats.completed += 1;
    let report = panicked.map(|payload| {
        pwq.stats.panicked += 1;
        (pwq.wq.clone(), payload)
    });
    finish_current(&mut g, me);
    if let Some(work) = &work {
        g.busy.remove(&work.id());
    }
    pool.dec_nr_in_flight(&mut g, slot, color, inactive);
    if let Some((wq, payload)) = report {
        // The handler is user code: run it without the pool lock.
        drop(g);
        wq.report_panic(work.as_ref(), payload);
        g = pool.lock();
    }
    *deferred = work;
    g
}

/// Undoes a worker's per-item state after the function returned (or unwound).
fn finish_current(g: &mut PoolLocked, me: usize) {
    g.worker_clr_flags(me, flags::CPU_INTENSIVE);
    g.worker_set_sleeping(me, Sleeping::No);
    let w = &mut g.workers[me];
    w.current = None;
    w.mon.hog_valid = false;
}

impl WorkerPool {
    /// Puts worker `me` on the idle list (`worker_enter_idle`), arming the idle-cull timer
    /// when the pool has more idle workers than it keeps.
    pub(crate) fn worker_enter_idle(self: &Arc<Self>, g: &mut PoolLocked, me: usize) {
        let now = self.env.clock.now();
        let w = &mut g.workers[me];
        debug_assert!(w.flags & flags::IDLE == 0);
        w.flags |= flags::IDLE;
        w.last_active = now;
        g.idle_list.push(me);
        if g.too_many_workers() && !g.idle_timer_armed {
            g.idle_timer_armed = true;
            super::manager::arm_idle_timer(self, crate::clock::add_saturating(now, self.env.config.idle_timeout));
        }
    }

    /// Takes worker `me` off the idle list if it is on it (`worker_leave_idle`).
    pub(crate) fn worker_leave_idle(&self, g: &mut PoolLocked, me: usize) {
        let w = &mut g.workers[me];
        if w.flags & flags::IDLE == 0 {
            return;
        }
        w.flags &= !flags::IDLE;
        if let Some(pos) = g.idle_list.iter().rposition(|&x| x == me) {
            g.idle_list.remove(pos);
        }
    }
}
