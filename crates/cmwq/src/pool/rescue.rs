//! The pool side of a rescuer's turn on one pwq (`rescuer_thread`'s inner loop and
//! `assign_rescuer_work`, kernel-notes §5.7; docs/design.md §11).
//!
//! A [`RescueTurn`] is a rescuer attached to the pool of one pwq: a worker record of its own
//! (RESCUER and PREP for as long as it is attached, so it never counts as running), the pool's
//! CPU affinity and the worker identity (for flush, `blocking`, chained queueing). It takes the
//! pwq's items one at a time from just after the pwq's cursor, which it moves past each item
//! it takes, and runs them through the workers' one dispatch path. Entries of other pwqs are
//! never touched (each workqueue is its own forward-progress domain); collisions (the item runs
//! on another worker) are punted to that worker and stepped over. The rescuer thread and its
//! mayday list are in `crate::rescuer`.

use super::entry::{Entry, Item, Loc};
use super::worker::{dispatch, process_scheduled_works, set_current, WorkerRec};
use super::{flags, PoolGuard, PoolLocked, Pwq, PwqEvent};
use crate::sync::Unparker;
use crate::work::Work;
use crate::worklist::NIL;

/// A rescuer attached to the pool of one pwq, holding the pool lock between steps.
#[derive(Debug)]
pub(crate) struct RescueTurn<'a> {
    /// The pool lock (`None` only while a step runs an item).
    g: Option<PoolGuard<'a>>,
    /// The rescuer's worker id in the pool.
    me: usize,
    /// The pwq being rescued.
    slot: u32,
    /// The last item run, dropped only while no lock is held.
    deferred: Option<Work>,
}

impl Pwq {
    /// Attaches the calling rescuer thread to this pwq's pool (`worker_attach_to_pool`): a
    /// worker record, the pool's CPU affinity, the worker identity.
    pub(crate) fn attach_rescuer(&self, unparker: Unparker) -> RescueTurn<'_> {
        let pool = self.pool();
        let now = pool.env().clock.now();
        let me = pool.lock().workers.insert(WorkerRec::new(flags::PREP | flags::RESCUER, unparker, now));
        match pool.cpu() {
            Some(cpu) if pool.env().config.pin_workers => crate::sys::pin_current_thread(cpu),
            _ => crate::sys::unpin_current_thread(),
        }
        set_current(Some((pool.clone(), me)));
        RescueTurn { g: Some(pool.lock()), me, slot: self.slot(), deferred: None }
    }
}

impl<'a> RescueTurn<'a> {
    fn g(&mut self) -> &mut PoolGuard<'a> {
        self.g.as_mut().expect("rescue turn holds the pool lock")
    }

    /// Takes at most one item of the pwq and runs it (`assign_rescuer_work`, v7.0). Refuses
    /// when the pwq has nothing active, or when the pool no longer needs a worker unless its
    /// manager is still busy creating one and no other pwq waits (`others_wait`: the "extra
    /// works" case). The scan starts after the pwq's cursor, or at the head for `rescan` (the
    /// measurement-only variant without a cursor). Returns whether it ran one.
    pub(crate) fn rescue_one(&mut self, rescan: bool, others_wait: impl Fn() -> bool) -> bool {
        let (me, slot) = (self.me, self.slot);
        let g = self.g();
        if g.pwqs[slot as usize].nr_active == 0 {
            return false;
        }
        if !g.need_to_create_worker() {
            // Workers are available again, unless the manager is still stuck creating one
            // (memory pressure goes on) and no other pwq waits for the rescuer.
            if !g.manager_active || others_wait() {
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
            if e.pwq == slot && !matches!(e.item, Item::Cursor) && g.runs_here(idx, me) {
                let p = &mut g.pwqs[slot as usize];
                p.stats.rescued += 1;
                p.stats.rescuer_visits += visits;
                if !rescan {
                    place_cursor(g, slot, next.unwrap_or(NIL));
                }
                let g = self.g.take().expect("rescue turn holds the pool lock");
                self.g = Some(dispatch(g, idx, me, &mut self.deferred));
                return true;
            }
            cur = next;
        }
        g.pwqs[slot as usize].stats.rescuer_visits += visits;
        false
    }

    /// Whether the rescuer should give the other pwqs their turn after a batch: the pwq still
    /// has active items and the pool still needs a worker.
    pub(crate) fn still_needed(&mut self) -> bool {
        let slot = self.slot;
        let g = self.g();
        g.pwqs[slot as usize].nr_active > 0 && g.need_to_create_worker()
    }

    /// Puts the pwq back on its workqueue's mayday list (at the tail: others go first).
    pub(crate) fn requeue(&mut self) -> bool {
        let slot = self.slot;
        self.g().send_mayday(slot)
    }

    /// The pre-2025 rescuer turn: take every matching item at once into the rescuer and run
    /// them all. Returns whether it ran any.
    pub(crate) fn rescue_all_legacy(&mut self) -> bool {
        let (me, slot) = (self.me, self.slot);
        let g = self.g();
        let mut cur = g.worklist.front();
        let mut visits = 0u64;
        let mut taken = false;
        while let Some(idx) = cur {
            visits += 1;
            let next = after_chain(g, idx);
            let e = g.nodes.get(idx);
            if e.pwq == slot && !matches!(e.item, Item::Cursor) && g.runs_here(idx, me) {
                g.move_linked(idx, Loc::scheduled(me), NIL);
                g.pwqs[slot as usize].stats.rescued += 1;
                taken = true;
            }
            cur = next;
        }
        g.pwqs[slot as usize].stats.rescuer_visits += visits;
        if taken {
            let g = self.g.take().expect("rescue turn holds the pool lock");
            self.g = Some(process_scheduled_works(g, me, &mut self.deferred));
        }
        taken
    }

    /// Ends the turn: unlinks the cursor unless the pwq is still on the mayday list
    /// (`on_maydays`: the rescuer will come back to it), kicks the pool (a regular worker may be
    /// needed), detaches from the pool, drops the mayday list's reference.
    pub(crate) fn finish(mut self, on_maydays: impl FnOnce() -> bool) {
        let (me, slot) = (self.me, self.slot);
        let mut g = self.g.take().expect("rescue turn holds the pool lock");
        if let Some(c) = g.pwqs[slot as usize].cursor {
            if !on_maydays() {
                g.unlink_cursor(c);
            }
        }
        g.kick_pool();
        let rec = g.workers.remove(me);
        debug_assert!(rec.scheduled.is_empty() && rec.current.is_none());
        g.pwqs[slot as usize].mayday_refs -= 1;
        // The mayday reference may have been the last thing a retired pwq held.
        let ev = PwqEvent { release: g.pwq_releasable(slot), ..PwqEvent::default() };
        g.forward(slot, ev);
        drop(g);
        drop(self.deferred.take());
        set_current(None);
        crate::sys::unpin_current_thread();
    }
}

impl PoolLocked {
    /// Whether worker `me` would run entry `idx` itself: it is not a cursor, and the same item
    /// does not run on another worker (then it is punted there by `assign_work`).
    fn runs_here(&mut self, idx: u32, me: usize) -> bool {
        match &self.nodes.get(idx).item {
            Item::Work(w) => match self.find_worker_executing(w) {
                Some(other) if other != me => {
                    self.move_linked(idx, Loc::scheduled(other), NIL);
                    false
                }
                _ => true,
            },
            Item::Once(_) | Item::Barrier(_) => true,
            Item::Cursor => false,
        }
    }
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
            let e =
                Entry { item: Item::Cursor, pwq: slot, color: 0, inactive: true, linked: false, loc: Loc::Worklist };
            let idx = g.worklist.insert_before(&mut g.nodes, before, e);
            g.pwqs[slot as usize].cursor = Some(idx);
        }
    }
}
