//! The pool lock (the kernel's `pool->lock`) and what it guards.
//!
//! [`PoolLocked`] holds every mutable field of a pool; its fields are private to the `pool`
//! module. Code outside the module reaches a pool only through a [`PoolGuard`], which knows
//! its pool, so an operation can never be handed the guard of one pool with another pool: every
//! transition that needs the lock is a method of the guard (`insert_work`, `kick_pool`,
//! `pwq_dec_nr_in_flight`, `send_mayday`, ...), named after its kernel function.
//!
//! Acquiring the lock moves the submission inbox onto the pool's lists, and releasing it looks
//! at the inbox again (`pool::inbox`, docs/design.md §1.1). The lock is never held while user
//! code runs.

use super::entry::Entry;
use super::inbox;
use super::pwq::PwqLocked;
use super::worker::WorkerRec;
use super::WorkerPool;
use crate::sync::{thread, Arc, AtomicUsize, MutexGuard, Unparker};
use crate::timer::TimerId;
use crate::work::Work;
use crate::worklist::{List, Nodes};
use slab::Slab;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};

/// A pool's mutable state: the kernel's fields tagged `L:`. Every field is guarded by the
/// pool lock and private to the `pool` module.
#[derive(Debug)]
pub(crate) struct PoolLocked {
    /// Every list entry of this pool (worklist, inactive lists, scheduled lists).
    pub(super) nodes: Nodes<Entry>,
    /// Items ready to run, FIFO, all workqueues mixed.
    pub(super) worklist: List,
    /// The pool-workqueues feeding this pool (the slab key is the pwq's slot).
    pub(super) pwqs: Slab<PwqLocked>,
    /// Workers attached to this pool (the slab key is the worker id).
    pub(super) workers: Slab<WorkerRec>,
    /// Idle workers, LIFO: the last one went idle most recently.
    pub(super) idle_list: Vec<usize>,
    /// Workers that count toward concurrency (per-CPU pools only).
    pub(super) nr_running: usize,
    /// `nr_running`, published for queuers, who do not take the lock (`Inbox::running`):
    /// stored by `adjust_running`, the one transition that changes `nr_running`.
    pub(super) nr_running_pub: Arc<AtomicUsize>,
    /// Workers alive (not told to die).
    pub(super) nr_workers: usize,
    /// Busy workers by the item they run (work id → worker id); one-shot closures, which
    /// cannot collide, are not in it.
    pub(super) busy: BusyTable,
    /// A worker is acting as manager (`POOL_MANAGER_ACTIVE`).
    pub(super) manager_active: bool,
    /// The idle-cull timer is armed.
    pub(super) idle_timer_armed: bool,
    /// The worker-creation retry timer is armed (pools that have no worker to manage them).
    pub(super) create_timer_armed: bool,
    /// Next execution sequence number (`Current::seq`).
    pub(super) next_seq: u64,
    /// Threads of exited workers, to be joined outside the lock.
    pub(super) exited: Vec<thread::JoinHandle<()>>,
    /// The runtime is shutting down: workers exit once idle.
    pub(super) dying: bool,
    /// Creation failures seen (for logging once).
    pub(super) create_failures: u64,
    /// The armed mayday timer, if any, and the generation it was armed with; the manager bumps
    /// the generation to delete it (a callback of an older generation does nothing).
    pub(super) mayday_timer: Option<(TimerId, u64)>,
    /// The next mayday timer generation.
    pub(super) mayday_gen: u64,
    /// Reused by the mayday timer to collect the pwqs it calls for.
    pub(super) mayday_scratch: Vec<u32>,
    /// The worker to wake once the lock is released (`wake_after_unlock`).
    pub(super) pending_wake: Option<(usize, Unparker)>,
    /// Reused by the inbox drain: the inbox is swapped into it, then moved onto the lists
    /// (empty between drains; kept for its capacity so that a drain allocates nothing).
    pub(super) inbox_batch: inbox::Blocks,
}

impl PoolLocked {
    /// The state of a new pool; `running` is where `nr_running` is published.
    pub(super) fn new(running: Arc<AtomicUsize>) -> PoolLocked {
        PoolLocked {
            nodes: Nodes::new(),
            worklist: List::default(),
            pwqs: Slab::new(),
            workers: Slab::new(),
            idle_list: Vec::new(),
            nr_running: 0,
            nr_running_pub: running,
            nr_workers: 0,
            busy: BusyTable::default(),
            manager_active: false,
            idle_timer_armed: false,
            create_timer_armed: false,
            next_seq: 0,
            exited: Vec::new(),
            dying: false,
            create_failures: 0,
            mayday_timer: None,
            mayday_gen: 0,
            mayday_scratch: Vec::new(),
            pending_wake: None,
            inbox_batch: inbox::Blocks::default(),
        }
    }

    /// Wakes worker `id` once the pool lock is released (`PoolGuard`'s drop). Woken at once,
    /// the worker would often preempt the waker on its CPU only to find the lock still held and
    /// yield back (the kernel wakes under a spinlock with preemption off, which userspace
    /// cannot do). One wake-up is kept pending: repeated kicks within one lock hold pick the
    /// same idle worker, which stays on the idle list until it runs; a different one (rare)
    /// has the earlier one woken at once.
    pub(super) fn wake_after_unlock(&mut self, id: usize) {
        if self.pending_wake.as_ref().is_some_and(|(w, _)| *w == id) {
            return;
        }
        let unparker = self.workers[id].unparker.clone();
        if let Some((_, earlier)) = self.pending_wake.replace((id, unparker)) {
            earlier.unpark();
        }
    }

    /// Some worker (or attached rescuer) is running an item.
    pub(crate) fn any_busy(&self) -> bool {
        self.workers.iter().any(|(_, w)| w.current.is_some())
    }

    /// Items wait and nobody runs (`need_more_worker`).
    pub(super) fn need_more_worker(&self) -> bool {
        !self.worklist.is_empty() && self.nr_running == 0
    }

    /// An idle worker is in reserve (`may_start_working`).
    pub(super) fn may_start_working(&self) -> bool {
        !self.idle_list.is_empty()
    }

    /// The current worker should take another item (`keep_working`).
    pub(super) fn keep_working(&self) -> bool {
        !self.worklist.is_empty() && self.nr_running <= 1
    }

    /// Items wait, nobody runs, and nobody is idle (`need_to_create_worker`).
    pub(super) fn need_to_create_worker(&self) -> bool {
        self.need_more_worker() && !self.may_start_working()
    }

    /// More idle workers than the kernel keeps (`too_many_workers`, ratio
    /// `MAX_IDLE_WORKERS_RATIO` = 4).
    pub(super) fn too_many_workers(&self) -> bool {
        let idle = self.idle_list.len() + usize::from(self.manager_active);
        let busy = self.nr_workers.saturating_sub(idle);
        idle > 2 && (idle - 2) * MAX_IDLE_WORKERS_RATIO >= busy
    }

    /// The worker running `work`, if any (the busy-table lookup of `find_worker_executing_work`).
    pub(super) fn find_worker_executing(&self, work: &Work) -> Option<usize> {
        let id = *self.busy.get(&work.id())?;
        let cur = self.workers[id].current.as_ref()?;
        (cur.work_id == work.id()).then_some(id)
    }

    /// Tells worker `id` to exit (`WORKER_DIE`): it no longer counts in `nr_workers`. Returns
    /// whether it was not told before.
    pub(super) fn mark_die(&mut self, id: usize) -> bool {
        let w = &mut self.workers[id];
        if w.flags & super::flags::DIE != 0 {
            return false;
        }
        w.flags |= super::flags::DIE;
        w.unparker.unpark();
        self.nr_workers -= 1;
        true
    }
}

/// The busy table (`busy_hash`): work identity (an address) → worker id.
pub(super) type BusyTable = HashMap<usize, usize, BuildHasherDefault<AddrHasher>>;

/// Hashes a work item's address: Fibonacci hashing of the pointer, with the low bits (always
/// zero from alignment) shifted out. SipHash would cost more than the rest of the lookup.
#[derive(Default)]
pub(super) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Keep at most one idle worker per four busy ones, plus two (`MAX_IDLE_WORKERS_RATIO`).
const MAX_IDLE_WORKERS_RATIO: usize = 4;

/// The pool lock, held, with the pool it belongs to. Dereferences to the state it guards;
/// acquiring and releasing it also move the inbox (`pool::inbox`).
pub(crate) struct PoolGuard<'a> {
    pub(super) pool: &'a Arc<WorkerPool>,
    /// Always `Some` until the guard is dropped.
    pub(super) g: Option<MutexGuard<'a, PoolLocked>>,
}

impl fmt::Debug for PoolGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolGuard").field(self.pool).finish()
    }
}

impl WorkerPool {
    /// Takes the pool lock (`raw_spin_lock_irq(&pool->lock)`) and moves the inbox onto the
    /// pool's lists (inbox protocol step 1).
    pub(crate) fn lock(self: &Arc<Self>) -> PoolGuard<'_> {
        let mut g = PoolGuard { pool: self, g: Some(self.lock.lock()) };
        g.drain_inbox();
        g
    }

    /// Takes the pool lock without moving the inbox first: for the monitor, which only looks
    /// at the workers and counts a non-empty inbox as items waiting. Draining there put the
    /// monitor in the way of the worker it watches (a whole flood's backlog moved under the
    /// lock at one tick). The release follows step 2 as every release does.
    pub(crate) fn lock_to_inspect(self: &Arc<Self>) -> PoolGuard<'_> {
        PoolGuard { pool: self, g: Some(self.lock.lock()) }
    }
}

impl<'a> PoolGuard<'a> {
    /// The pool this guard locks.
    pub(super) fn pool(&self) -> &'a Arc<WorkerPool> {
        self.pool
    }

    /// Wakes an idle worker if the pool needs one (`kick_pool`). Returns whether it woke one.
    pub(super) fn kick_pool(&mut self) -> bool {
        if !self.need_more_worker() {
            return false;
        }
        match self.idle_list.last() {
            Some(&id) => {
                self.wake_after_unlock(id);
                true
            }
            None => false,
        }
    }
}

impl Deref for PoolGuard<'_> {
    type Target = PoolLocked;
    fn deref(&self) -> &PoolLocked {
        self.g.as_ref().expect("pool guard used after release")
    }
}

impl DerefMut for PoolGuard<'_> {
    fn deref_mut(&mut self) -> &mut PoolLocked {
        self.g.as_mut().expect("pool guard used after release")
    }
}
