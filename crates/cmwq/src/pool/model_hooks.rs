//! What the loom models (`crate::loom_models`) need of a pool's insides, and nothing else
//! uses: compiled only under `--cfg loom` in the crate's tests.
//!
//! Each hook takes the pool lock once (through the real [`WorkerPool::lock`], so with the
//! inbox moves of its acquire and release) and does under it what a model's fixture or check
//! did on the pool's fields before they became private to this module, no more: the models
//! explore the same schedules, and never hold a [`PoolGuard`](super::PoolGuard) themselves.
//! Where a model needs a transition it goes through the real method.

use super::worker::WorkerRec;
use super::{flags, Item, WorkerPool};
use crate::sync::{thread, Arc, Parker, Unparker};

/// One pwq's counts and the items of it that are really active, read in one lock hold
/// ([`WorkerPool::model_pwq_census`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PwqCensus {
    /// Work items of the pwq on the worklist or on a worker's scheduled list, plus the workers
    /// running an item of the pwq: what `nr_active` should count.
    pub(crate) active: usize,
    /// The pwq's `nr_active`.
    pub(crate) nr_active: usize,
    /// The pwq's `max_active`.
    pub(crate) max_active: usize,
    /// Items waiting for an active slot: on the inactive list and in parked runs (counted as
    /// `PwqLocked::nr_inactive` counts them, which is private to `pool::pwq`).
    pub(crate) nr_inactive: usize,
    /// Entries in flight, all colours.
    pub(crate) in_flight: u32,
    /// References held by mayday-list entries.
    pub(crate) mayday_refs: u32,
    /// Items run by a rescuer (`PwqStats::rescued`).
    pub(crate) rescued: u64,
}

impl WorkerPool {
    /// Takes the pool lock and releases it at once: a lock holder's acquire and release
    /// (inbox protocol steps 1 and 2), nothing else.
    pub(crate) fn model_lock_and_release(self: &Arc<Self>) {
        drop(self.lock());
    }

    /// Whether items wait in the inbox (not yet on the pool's lists). No lock.
    pub(crate) fn model_inbox_is_empty(&self) -> bool {
        self.inbox.is_empty()
    }

    /// Registers a worker record without a thread (the fixture's reserve), counted in
    /// `nr_workers`, with PREP (so it counts as running once PREP is cleared), idle if `idle`
    /// (through the real `worker_enter_idle`). Returns its id.
    pub(crate) fn model_add_threadless_worker(self: &Arc<Self>, idle: bool) -> usize {
        let parker = Parker::new();
        let now = self.env.clock.now();
        let mut g = self.lock();
        let id = g.workers.insert(WorkerRec::new(flags::PREP, parker.unparker().clone(), now));
        g.nr_workers += 1;
        if idle {
            g.worker_enter_idle(id);
        }
        id
    }

    /// Takes the thread of the pool's worker that has one (the real worker `create_worker`
    /// made; the reserve has none): its id and join handle.
    pub(crate) fn model_take_worker_thread(self: &Arc<Self>) -> (usize, thread::JoinHandle<()>) {
        let mut g = self.lock();
        let (id, rec) = g.workers.iter_mut().find(|(_, w)| w.handle.is_some()).expect("the new worker");
        (id, rec.handle.take().expect("its thread"))
    }

    /// Sets DIE on worker `id` (only the flag: no `nr_workers` accounting, no wake-up) and
    /// returns its unparker, for the caller to wake it after the unlock (the fixture's
    /// shutdown).
    pub(crate) fn model_tell_worker_to_exit(self: &Arc<Self>, id: usize) -> Unparker {
        let mut g = self.lock();
        let w = &mut g.workers[id];
        w.flags |= flags::DIE;
        w.unparker.clone()
    }

    /// The real `worker_set_flags` (leaves `nr_running` when the first NOT_RUNNING flag is set).
    pub(crate) fn model_worker_set_flags(self: &Arc<Self>, id: usize, f: u8) {
        self.lock().worker_set_flags(id, f);
    }

    /// The real `worker_clr_flags` (joins `nr_running` when the last NOT_RUNNING flag goes).
    pub(crate) fn model_worker_clr_flags(self: &Arc<Self>, id: usize, f: u8) {
        self.lock().worker_clr_flags(id, f);
    }

    /// The real `worker_leave_idle`: takes worker `id` off the idle list.
    pub(crate) fn model_worker_leave_idle(self: &Arc<Self>, id: usize) {
        self.lock().worker_leave_idle(id);
    }

    /// Stores pwq `slot`'s active limit and nothing else: no activation, no kick (unlike
    /// [`WorkerPool::model_set_max_active`]).
    pub(crate) fn model_store_max_active(self: &Arc<Self>, slot: u32, max: usize) {
        self.lock().pwqs[slot as usize].max_active = max;
    }

    /// The real `pwq_set_max_active`: the limit, the activations it allows, a kick.
    pub(crate) fn model_set_max_active(self: &Arc<Self>, slot: u32, max: usize) {
        self.lock().pwq_set_max_active(slot, max);
    }

    /// The real `send_mayday` of pwq `slot` (the mayday timer's step for it), then `then`,
    /// still under the same lock hold (a model's look at the mayday list).
    pub(crate) fn model_send_mayday(self: &Arc<Self>, slot: u32, then: impl FnOnce()) {
        let mut g = self.lock();
        g.send_mayday(slot);
        then();
        drop(g);
    }

    /// Pwq `slot`'s counts and its really active items (see [`PwqCensus`]).
    pub(crate) fn model_pwq_census(self: &Arc<Self>, slot: u32) -> PwqCensus {
        let g = self.lock();
        let is_item = |idx: &&u32| {
            let e = g.nodes.get(**idx);
            e.pwq == slot && matches!(e.item, Item::Work(_))
        };
        let queued = g.worklist.indices(&g.nodes).iter().filter(is_item).count();
        let scheduled: usize =
            g.workers.iter().map(|(_, w)| w.scheduled.indices(&g.nodes).iter().filter(is_item).count()).sum();
        let running = g.workers.iter().filter(|(_, w)| w.current.as_ref().is_some_and(|c| c.pwq == slot)).count();
        let pwq = &g.pwqs[slot as usize];
        PwqCensus {
            active: queued + scheduled + running,
            nr_active: pwq.nr_active,
            max_active: pwq.max_active,
            nr_inactive: pwq.inactive.len() + pwq.parked.iter().map(|run| run.items.len()).sum::<usize>(),
            in_flight: g.pwq_in_flight(slot),
            mayday_refs: pwq.mayday_refs,
            rescued: pwq.stats.rescued,
        }
    }
}
