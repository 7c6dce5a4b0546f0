//! The rescuer: forward progress for `mem_reclaim` workqueues when no worker can be created
//! (spec §5, the 2025-26 series; docs/design.md §11).
//!
//! Each `mem_reclaim` workqueue has one rescuer thread (`kworker/R-<name>`), created with the
//! workqueue, never counted as running. Pools that cannot get a worker put the workqueue's
//! pwqs on its mayday list (`pool::mayday`); the rescuer loop (spec §5.7):
//!
//! ```text
//! loop:
//!   stop := should_stop                      (sampled before the list is emptied)
//!   while a pwq can be taken off the mayday list:
//!     attach to its pool (CPU affinity of the pool; a worker record, PREP forever)
//!     count := 0
//!     while assign_one(pwq):                 (one item and its linked barriers)
//!       run the rescuer's scheduled list to completion
//!       count += 1
//!       if count > RESCUER_BATCH and other pwqs wait and pwq.nr_active > 0
//!          and the pool needs a worker: send_mayday(pwq) (tail), break
//!     if the cursor is linked and the pwq is not on the mayday list: unlink it
//!     kick the pool; detach; drop the mayday reference
//!   if stop: exit          (the list is empty)
//!   sleep until woken
//! ```
//!
//! `assign_one(pwq)` refuses when the pwq has nothing active, or when the pool no longer needs a
//! worker unless its manager is still busy creating one and no other pwq waits (the "extra
//! works" case); otherwise it scans the worklist from just after the pwq's cursor (or from the
//! head) for the first entry of this pwq that can be assigned to the rescuer, counts it in
//! `rescued`, and moves the cursor to just before the entry that followed it. Entries of other
//! pwqs are never touched (each workqueue is its own forward-progress domain); collisions (the
//! item runs on another worker) are punted to that worker and stepped over.
//!
//! Two older algorithms stay available behind [`RescuerAlgorithm`] so the change can be
//! measured: the pre-2025 one (take every matching item at once, run them all) and a
//! cursor-less one that rescans from the head for every item.

use crate::pool::{flags, worker, Item, Loc, PoolGuard, PoolLocked, WorkerPool, WorkerRec};
use crate::pwq::Pwq;
use crate::spawn::{SpawnRequest, ThreadKind};
use crate::sync::{thread, Arc, AtomicBool, Mutex, Ordering, Parker, Unparker};
use crate::work::Work;
use crate::worklist::NIL;
use std::collections::VecDeque;
use std::fmt;

/// Items per turn while other pwqs wait: the rescuer yields after more than this many, so
/// up to 17 (`RESCUER_BATCH`).
pub const RESCUER_BATCH: usize = 16;

/// Which rescuer algorithm a runtime's rescuers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RescuerAlgorithm {
    /// The v7.0 algorithm (default): one item at a time behind a cursor, a batch limit while
    /// others wait, extra items while the manager still struggles.
    #[default]
    Cursor,
    /// Like `Cursor`, but every scan starts from the head of the worklist (the quadratic
    /// variant the cursor was introduced to avoid; for measurements only).
    RescanFromHead,
    /// The pre-2025 rescuer: take every matching item into the rescuer at once and run them
    /// all; requeue the pwq if it still needs help (for measurements only).
    Legacy,
}

/// The mayday list of one workqueue, behind its mayday lock (`wq_mayday_lock`, taken inside
/// pool locks).
#[derive(Debug, Default)]
pub(crate) struct MaydayLocked {
    /// Pwqs asking for help, FIFO; each at most once, each holding a reference.
    pub(crate) list: VecDeque<Pwq>,
}

impl MaydayLocked {
    pub(crate) fn contains(&self, pool: &Arc<WorkerPool>, slot: u32) -> bool {
        self.list.iter().any(|p| p.slot == slot && Arc::ptr_eq(&p.pool, pool))
    }
}

/// A workqueue's rescuer, as the pool side and the workqueue see it.
pub(crate) struct Rescuer {
    /// The mayday list.
    pub(crate) maydays: Mutex<MaydayLocked>,
    /// Wakes the rescuer thread.
    unparker: Unparker,
    /// Set by destroy (`kthread_stop`).
    stop: AtomicBool,
    /// I: which algorithm it runs.
    algorithm: RescuerAlgorithm,
    /// The thread, joined by `stop`.
    handle: Mutex<Option<thread::JoinHandle<()>>>,
}

impl fmt::Debug for Rescuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rescuer").field("maydays", &self.maydays.lock().list.len()).finish()
    }
}

impl Rescuer {
    /// Creates the rescuer thread of workqueue `name` (`init_rescuer`).
    pub(crate) fn start(env: &crate::runtime::Env, name: &str, nr_pwqs: usize) -> std::io::Result<Arc<Rescuer>> {
        let parker = Parker::new();
        let r = Arc::new(Rescuer {
            // Room for every pwq, so a mayday never allocates.
            maydays: Mutex::new(MaydayLocked { list: VecDeque::with_capacity(nr_pwqs + 1) }),
            unparker: parker.unparker().clone(),
            stop: AtomicBool::new(false),
            algorithm: env.config.rescuer_algorithm,
            handle: Mutex::new(None),
        });
        let r2 = r.clone();
        let h = env.spawner.spawn(SpawnRequest {
            name: format!("kworker/R-{name}"),
            kind: ThreadKind::Rescuer,
            stack_size: env.config.worker_stack_size,
            body: Box::new(move || {
                crate::sys::set_current_nice(crate::sys::HIGH_NICE);
                rescuer_thread(&r2, &parker)
            }),
        })?;
        *r.handle.lock() = Some(h);
        Ok(r)
    }

    pub(crate) fn wake(&self) {
        self.unparker.unpark();
    }

    /// Stops the rescuer after it has emptied its mayday list, and joins it (`kthread_stop`).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(h) = self.handle.lock().take() {
            let _ = h.join();
        }
    }

    fn maydays_empty(&self) -> bool {
        self.maydays.lock().list.is_empty()
    }

    fn on_maydays(&self, pwq: &Pwq) -> bool {
        self.maydays.lock().contains(&pwq.pool, pwq.slot)
    }
}

/// The rescuer thread (`rescuer_thread`).
fn rescuer_thread(r: &Arc<Rescuer>, parker: &Parker) {
    loop {
        // Sampled before the list is emptied: a stop requested meanwhile is seen next round.
        let should_stop = r.stop.load(Ordering::Acquire);
        loop {
            let Some(pwq) = r.maydays.lock().list.pop_front() else { break };
            rescue_pwq(r, &pwq);
        }
        #[cfg(loom)]
        let should_stop = if crate::sync::plant::is(crate::sync::plant::Bug::RescuerStopSampledLate) {
            r.stop.load(Ordering::Acquire)
        } else {
            should_stop
        };
        if should_stop {
            return;
        }
        parker.park();
    }
}

/// One turn on one pwq: attach, rescue, leave.
fn rescue_pwq(r: &Arc<Rescuer>, pwq: &Pwq) {
    let pool = &pwq.pool;
    let now = pool.env.clock.now();
    let me = pool.lock().workers.insert(WorkerRec::new(flags::PREP | flags::RESCUER, r.unparker.clone(), now));
    // Attach: the pool's CPU affinity, and the worker identity for flush, blocking, chaining.
    match pool.cpu {
        Some(cpu) if pool.env.config.pin_workers => crate::sys::pin_current_thread(cpu),
        _ => crate::sys::unpin_current_thread(),
    }
    worker::set_current(Some((pool.clone(), me)));
    let mut deferred: Option<Work> = None;
    let mut g = pool.lock();
    match r.algorithm {
        RescuerAlgorithm::Legacy => g = rescue_legacy(r, pwq, g, me, &mut deferred),
        algo => {
            let mut count = 0;
            while assign_rescuer_work(r, pwq, &mut g, me, algo == RescuerAlgorithm::RescanFromHead) {
                g = worker::process_scheduled_works(pool, g, me, &mut deferred);
                count += 1;
                if count > RESCUER_BATCH
                    && !r.maydays_empty()
                    && g.pwqs[pwq.slot as usize].nr_active > 0
                    && g.need_to_create_worker()
                {
                    // Others wait: go to the back of the line, the cursor stays.
                    pool.send_mayday(&mut g, pwq.slot);
                    break;
                }
            }
            // The cursor cannot be left behind without the rescuer watching it.
            if let Some(c) = g.pwqs[pwq.slot as usize].cursor {
                if !r.on_maydays(pwq) {
                    g.unlink_cursor(c);
                }
            }
        }
    }
    // Leave this pool; wake a regular worker, or it may end up with no concurrency.
    pool.kick_pool(&mut g);
    let rec = g.workers.remove(me);
    debug_assert!(rec.scheduled.is_empty() && rec.current.is_none());
    g.pwqs[pwq.slot as usize].mayday_refs -= 1;
    drop(g);
    drop(deferred);
    worker::set_current(None);
    crate::sys::unpin_current_thread();
}

/// Takes at most one item of `pwq` for the rescuer (`assign_rescuer_work`, v7.0). Pool lock
/// held.
fn assign_rescuer_work(r: &Rescuer, pwq: &Pwq, g: &mut PoolLocked, me: usize, rescan: bool) -> bool {
    let slot = pwq.slot;
    if g.pwqs[slot as usize].nr_active == 0 {
        return false;
    }
    if !g.need_to_create_worker() {
        // Workers are available again, unless the manager is still stuck creating one
        // (memory pressure goes on) and no other pwq waits for the rescuer.
        if !g.manager_active || !r.maydays_empty() {
            return false;
        }
    }
    let cursor = if rescan { None } else { g.pwqs[slot as usize].cursor };
    let mut cur = match cursor {
        Some(c) => g.worklist.next(&g.nodes, c),
        None => g.worklist.front(),
    };
    let mut visits = 0u64;
    while let Some(idx) = cur {
        visits += 1;
        // Where the scan resumes: past idx and its linked chain.
        let next = after_chain(g, idx);
        let e = g.nodes.get(idx);
        if e.pwq == slot && !matches!(e.item, Item::Cursor) && g.assign_work(idx, me) {
            let p = &mut g.pwqs[slot as usize];
            p.stats.rescued += 1;
            p.stats.rescuer_visits += visits;
            if !rescan {
                place_cursor(g, slot, next.unwrap_or(NIL));
            }
            return true;
        }
        cur = next;
    }
    g.pwqs[slot as usize].stats.rescuer_visits += visits;
    false
}

/// The worklist entry after `idx` and the entries linked behind it.
fn after_chain(g: &PoolLocked, idx: u32) -> Option<u32> {
    let mut end = idx;
    while g.nodes.get(end).linked {
        end = g.worklist.next(&g.nodes, end).expect("a linked entry has a follower");
    }
    g.worklist.next(&g.nodes, end)
}

/// Moves (or inserts) pwq `slot`'s cursor to just before `before` (`NIL` = the tail).
fn place_cursor(g: &mut PoolLocked, slot: u32, before: u32) {
    match g.pwqs[slot as usize].cursor {
        Some(c) => g.worklist.move_before(&mut g.nodes, c, before),
        None => {
            let e = crate::pool::Entry {
                item: Item::Cursor,
                pwq: slot,
                color: 0,
                inactive: true,
                linked: false,
                loc: Loc::Worklist,
            };
            let idx = g.worklist.insert_before(&mut g.nodes, before, e);
            g.pwqs[slot as usize].cursor = Some(idx);
        }
    }
}

/// The pre-2025 rescuer turn: take every matching item at once, run them all, and requeue
/// the pwq if it still needs help.
fn rescue_legacy<'a>(
    r: &Rescuer,
    pwq: &'a Pwq,
    mut g: PoolGuard<'a>,
    me: usize,
    deferred: &mut Option<Work>,
) -> PoolGuard<'a> {
    let slot = pwq.slot;
    let mut cur = g.worklist.front();
    let mut visits = 0u64;
    while let Some(idx) = cur {
        visits += 1;
        let next = after_chain(&g, idx);
        let e = g.nodes.get(idx);
        if e.pwq == slot && !matches!(e.item, Item::Cursor) && g.assign_work(idx, me) {
            g.pwqs[slot as usize].stats.rescued += 1;
        }
        cur = next;
    }
    g.pwqs[slot as usize].stats.rescuer_visits += visits;
    if !g.workers[me].scheduled.is_empty() {
        g = worker::process_scheduled_works(&pwq.pool, g, me, deferred);
        // Items that just ran may have activated more: do not make them wait for the timer.
        if g.pwqs[slot as usize].nr_active > 0 && g.need_to_create_worker() {
            let mut m = r.maydays.lock();
            if !m.contains(&pwq.pool, slot) && !r.stop.load(Ordering::Acquire) {
                g.pwqs[slot as usize].mayday_refs += 1;
                m.list.push_back(pwq.clone());
            }
        }
    }
    g
}
