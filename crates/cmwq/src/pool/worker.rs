//! The worker thread (`worker_thread`, `process_one_work`; kernel-notes §4.2, §2.2).
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

use super::entry::{Dispatch, Entry};
use super::{flags, Item, PoolGuard, PoolLocked, WorkerPool};
use crate::sync::{thread, Arc, Parker, Unparker};
use crate::sys::ThreadProbe;
use crate::work::Work;
use crate::worklist::List;
use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Why a busy worker does not count as running although its flags say it could.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sleeping {
    /// It runs (or we have not noticed otherwise).
    No,
    /// Inside `cmwq::blocking` (the hint; acts at once, like `wq_worker_sleeping`).
    Hint,
    /// The monitor saw it sleeping (CPU clock stopped and state S or D).
    Seen,
}

/// What a busy worker runs. L.
#[derive(Debug)]
pub(super) struct Current {
    /// The item's identity (the busy-table key), 0 for a one-shot closure (never an address,
    /// so it matches no item). The running worker holds a handle, so the address cannot be
    /// reused while it runs.
    pub(super) work_id: usize,
    /// Its name for warnings (`Work::name`, or a fixed one for a one-shot closure).
    pub(super) name: &'static str,
    /// Its pwq slot.
    pub(super) pwq: u32,
    /// The flush colour it was queued with (a flush barrier behind it takes this colour).
    pub(super) color: u8,
    /// Per-pool sequence number of this execution, so the monitor can tell items apart.
    pub(super) seq: u64,
}

/// A worker as its pool sees it. L: every field is guarded by the pool lock.
pub(super) struct WorkerRec {
    /// Worker flags (`flags::*`).
    pub(super) flags: u8,
    /// Whether the worker sleeps or blocks inside an item (see [`Sleeping`]).
    pub(super) sleeping: Sleeping,
    /// Wakes the worker thread.
    pub(super) unparker: Unparker,
    /// The item being run, if busy.
    pub(super) current: Option<Current>,
    /// Entries assigned to this worker and not started yet, in the pool's node arena: the
    /// item it is about to run with its linked barriers, collisions punted to it while it runs
    /// the same item, and flush barriers for its current item (the kernel's
    /// `worker->scheduled`).
    pub(super) scheduled: List,
    /// When the worker last became idle.
    pub(super) last_active: Instant,
    /// The thread, for joining after it exits.
    pub(super) handle: Option<thread::JoinHandle<()>>,
    /// Run-time probe of the worker's thread, for the monitor (None if /proc is unreadable).
    pub(super) probe: Option<Arc<crate::sys::ThreadProbe>>,
    /// The worker's switch event (per-CPU pools with `Detector::Switch`; None where it could
    /// not be opened: the monitor samples this worker instead).
    pub(super) switch: Option<Arc<crate::monitor::switch::WorkerSwitch>>,
    /// Monitor state.
    pub(super) mon: crate::monitor::MonSample,
}

impl WorkerRec {
    /// A worker record with these flags, not busy, not idle yet.
    pub(super) fn new(flags: u8, unparker: Unparker, now: Instant) -> WorkerRec {
        WorkerRec {
            flags,
            sleeping: Sleeping::No,
            unparker,
            current: None,
            scheduled: List::default(),
            last_active: now,
            handle: None,
            probe: None,
            switch: None,
            mon: crate::monitor::MonSample::default(),
        }
    }
}

impl fmt::Debug for WorkerRec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerRec")
            .field("flags", &self.flags)
            .field("sleeping", &self.sleeping)
            .field("current", &self.current)
            .field("scheduled", &self.scheduled.len())
            .finish()
    }
}

crate::sync::thread_local! {
    /// The pool and worker id of the worker running on this thread, if it is one.
    static CURRENT: RefCell<Option<(Arc<WorkerPool>, usize)>> = RefCell::new(None);
}

/// The name warnings give a closure run by `Workqueue::spawn` (it has no `Work`).
pub(super) const SPAWNED_NAME: &str = "a closure spawned by Workqueue::spawn";

/// The pool and worker id of the calling thread, if it is a cmwq worker.
pub(crate) fn current_worker() -> Option<(Arc<WorkerPool>, usize)> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Sets (or clears) the calling thread's worker identity (a rescuer attaching to a pool).
pub(super) fn set_current(cur: Option<(Arc<WorkerPool>, usize)>) {
    CURRENT.with(|c| *c.borrow_mut() = cur);
}

/// The body of a worker thread. `parker` is unparked by the creator once the worker is
/// registered as idle.
pub(super) fn worker_thread(pool: Arc<WorkerPool>, me: usize, parker: Parker) {
    parker.park();
    set_current(Some((pool.clone(), me)));
    if let Some(cpu) = pool.cpu() {
        if pool.env().config.pin_workers {
            crate::sys::pin_current_thread(cpu);
        }
    }
    if pool.highpri() {
        crate::sys::set_current_nice(crate::sys::HIGH_NICE);
    }
    let probe = ThreadProbe::open_current(pool.is_cm()).map(Arc::new);
    let switch = if pool.is_cm() { pool.env().monitor.open_switch(&pool, me) } else { None };
    // The last item run, dropped only while no lock is held.
    let mut deferred: Option<Work> = None;
    let mut g = pool.lock();
    g.workers[me].probe = probe;
    g.workers[me].switch = switch.clone();
    loop {
        if g.workers[me].flags & flags::DIE != 0 {
            let rec = g.workers.remove(me);
            g.idle_list.retain(|&w| w != me);
            if let Some(h) = rec.handle {
                g.exited.push(h);
            }
            drop(g);
            if let Some(ws) = &switch {
                pool.env().monitor.close_switch(ws);
            }
            drop(deferred.take());
            set_current(None);
            return;
        }
        g.worker_leave_idle(me);
        loop {
            // A worker told to die goes back to the top: in a dying pool with items left
            // (a workqueue dropped during a panic does not drain) it would otherwise manage
            // forever, creation returning at once, and the shutdown's join never return.
            if !g.need_more_worker() || g.workers[me].flags & flags::DIE != 0 {
                break;
            }
            if !g.may_start_working() && !g.manager_active {
                g = super::manager::manage_workers(g);
                continue;
            }
            g.worker_clr_flags(me, flags::PREP);
            while let Some(head) = g.worklist.front() {
                g = dispatch(g, head, me, &mut deferred);
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
        g.worker_enter_idle(me);
        drop(g);
        drop(deferred.take());
        if let Some(ws) = &switch {
            // Read what the busy spell left in the ring, so that records of short items
            // never fill it (a full ring drops records: monitor::switch).
            ws.drain();
        }
        parker.park();
        g = pool.lock();
    }
}

/// Takes worklist entry `idx` for worker `me` (`assign_work`) and runs what that gave it:
/// the entry itself, or its scheduled list (the entry with its linked barriers, or items
/// that collided with the one it runs). The one dispatch path of workers and rescuers.
pub(super) fn dispatch<'a>(mut g: PoolGuard<'a>, idx: u32, me: usize, deferred: &mut Option<Work>) -> PoolGuard<'a> {
    match g.assign_work(idx, me) {
        Dispatch::Run(e) => {
            g = process_one_work(g, me, e, deferred);
            if !g.workers[me].scheduled.is_empty() {
                // Items that collided with the one just run were handed to this worker.
                g = process_scheduled_works(g, me, deferred);
            }
            g
        }
        Dispatch::Scheduled => process_scheduled_works(g, me, deferred),
        Dispatch::Skipped => g,
    }
}

/// Runs worker `me`'s scheduled list until it is empty (`process_scheduled_works`).
pub(super) fn process_scheduled_works<'a>(
    mut g: PoolGuard<'a>,
    me: usize,
    deferred: &mut Option<Work>,
) -> PoolGuard<'a> {
    while let Some(idx) = g.workers[me].scheduled.front() {
        let e = g.remove_entry(idx);
        match e.item {
            Item::Work(_) | Item::Once(_) => g = process_one_work(g, me, e, deferred),
            Item::Barrier(done) => {
                // `wq_barrier_func`: what it was linked behind has run.
                done.complete();
                let ev = g.pwq_dec_nr_in_flight(e.pwq, e.color, true);
                g.forward(e.pwq, ev);
            }
            Item::Cursor => unreachable!("a rescuer cursor on a scheduled list"),
        }
    }
    g
}

/// Runs one item, a work item or a one-shot closure (`process_one_work`). The lock is
/// released around the function.
fn process_one_work<'a>(mut g: PoolGuard<'a>, me: usize, e: Entry, deferred: &mut Option<Work>) -> PoolGuard<'a> {
    let pool = g.pool();
    let Entry { item, pwq: slot, color, inactive, .. } = e;
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
    if g.pwqs[slot as usize].cpu_intensive {
        g.worker_set_flags(me, flags::CPU_INTENSIVE);
    }
    // Chain execution for workers that do not count in nr_running (unbound pools,
    // CPU-intensive items): if more items wait, wake another idle worker.
    g.kick_pool();
    if let Item::Work(work) = &item {
        work.state().release_for_run(pool.id());
    }
    g.pwqs[slot as usize].stats.started += 1;
    let waiting = pool.is_cm() && !g.worklist.is_empty() && g.nr_running > 0;
    drop(g);
    if waiting {
        // Items wait behind this worker: the monitor must watch for it sleeping.
        pool.env().monitor.note_waiting();
    }
    pool.env().monitor.note_busy();
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
        (pwq.owner.clone(), payload)
    });
    finish_current(&mut g, me);
    if let Some(work) = &work {
        g.busy.remove(&work.id());
    }
    let ev = g.pwq_dec_nr_in_flight(slot, color, inactive);
    g.forward(slot, ev);
    if let Some((owner, payload)) = report {
        // The handler is user code: run it without the pool lock.
        drop(g);
        owner.report_panic(work.as_ref(), payload);
        g = pool.lock();
    }
    *deferred = work;
    g
}

/// Undoes a worker's per-item state after the function returned (or unwound).
fn finish_current(g: &mut PoolLocked, me: usize) {
    g.worker_clr_flags(me, flags::CPU_INTENSIVE);
    g.worker_set_sleeping(me, Sleeping::No);
    g.workers[me].current = None;
}

impl PoolGuard<'_> {
    /// Puts worker `me` on the idle list (`worker_enter_idle`), arming the idle-cull timer
    /// when the pool has more idle workers than it keeps.
    pub(super) fn worker_enter_idle(&mut self, me: usize) {
        let pool = self.pool;
        let now = pool.env().clock.now();
        let w = &mut self.workers[me];
        debug_assert!(w.flags & flags::IDLE == 0);
        w.flags |= flags::IDLE;
        w.last_active = now;
        self.idle_list.push(me);
        if self.too_many_workers() && !self.idle_timer_armed {
            self.idle_timer_armed = true;
            super::manager::arm_idle_timer(pool, crate::clock::add_saturating(now, pool.env().config.idle_timeout));
        }
    }

    /// Takes worker `me` off the idle list if it is on it (`worker_leave_idle`).
    pub(super) fn worker_leave_idle(&mut self, me: usize) {
        let w = &mut self.workers[me];
        if w.flags & flags::IDLE == 0 {
            return;
        }
        w.flags &= !flags::IDLE;
        if let Some(pos) = self.idle_list.iter().rposition(|&x| x == me) {
            self.idle_list.remove(pos);
        }
    }
}

impl PoolLocked {
    /// The item worker `me` runs, as the id of its workqueue and `name (id)`, if it is busy.
    pub(crate) fn current_item(&self, me: usize) -> Option<(u32, String)> {
        let cur = self.workers.get(me)?.current.as_ref()?;
        let owner = self.pwqs.get(cur.pwq as usize)?.owner.id();
        Some((owner, crate::work::describe(cur.name, cur.work_id)))
    }

    /// The workqueue of the item worker `me` runs, if it is busy.
    pub(crate) fn current_owner(&self, me: usize) -> Option<Arc<dyn super::PwqOwner>> {
        let cur = self.workers.get(me)?.current.as_ref()?;
        Some(self.pwqs.get(cur.pwq as usize)?.owner.clone())
    }

    /// Appends the items of pwq `slot` running or waiting on the worklist, as `name (id)
    /// running` or `name (id) queued`, until `out` holds `max` (for warnings; the kernel's
    /// `show_one_workqueue`).
    pub(crate) fn describe_pwq_items(&self, slot: u32, max: usize, out: &mut Vec<String>) {
        for (_, w) in self.workers.iter() {
            if let Some(cur) = w.current.as_ref().filter(|c| c.pwq == slot) {
                out.push(format!("{} running", crate::work::describe(cur.name, cur.work_id)));
            }
        }
        let mut cur = self.worklist.front();
        while let Some(idx) = cur {
            if out.len() >= max {
                return;
            }
            let e = self.nodes.get(idx);
            if e.pwq == slot {
                match &e.item {
                    Item::Work(w) => out.push(format!("{} queued", crate::work::describe(w.name(), w.id()))),
                    Item::Once(_) => out.push(format!("{SPAWNED_NAME} queued")),
                    Item::Barrier(_) | Item::Cursor => {}
                }
            }
            cur = self.worklist.next(&self.nodes, idx);
        }
    }
}
