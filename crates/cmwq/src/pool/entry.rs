//! Entries of a pool's lists, and how they move (the kernel's `insert_work`,
//! `move_linked_works`, `pwq_activate_first_inactive`, `pwq_dec_nr_in_flight`; kernel-notes §2.2,
//! §3.1, §3.4).
//!
//! Every entry lives in the pool's node arena and is on exactly one list: the worklist, its
//! pwq's inactive list, or a worker's scheduled list ([`Loc`]). An entry is a work item, a
//! one-shot closure, a flush barrier or a rescuer cursor. A barrier is linked behind its
//! target (`linked` on the entry before it), so the chain moves as one: activation moves the item with its barriers to the worklist,
//! dispatch moves them to the worker's scheduled list, and the barrier completes right after
//! its target has run. Barriers count in their colour's in-flight count (so a workqueue flush
//! waits for them) but never in `nr_active`.

use super::{PoolGuard, PoolLocked};
use crate::completion::Completion;
use crate::sync::Arc;
use crate::work::job::Job;
use crate::work::{Work, NO_NODE};
use crate::worklist::{List, Nodes, NIL};

/// What an entry is.
pub(crate) enum Item {
    /// A queued work item (the list's handle on it).
    Work(Work),
    /// A one-shot closure from `Workqueue::spawn`: an anonymous item nobody else can name, so
    /// it has no state word, cannot be cancelled or flushed on its own, and cannot collide
    /// with itself (it is counted, coloured and run like any item).
    Once(Job),
    /// A flush barrier (`wq_barrier`): completes when dispatched, i.e. after what it is linked
    /// behind.
    Barrier(Arc<Completion>),
    /// The rescuer cursor of pwq `Entry::pwq` (`mayday_cursor`): only ever on the worklist,
    /// never run, never counted; a normal worker that meets it at the head just unlinks it.
    Cursor,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Work(w) => f.debug_tuple("Work").field(w).finish(),
            Item::Once(_) => f.write_str("Once"),
            Item::Barrier(b) => f.debug_tuple("Barrier").field(b).finish(),
            Item::Cursor => f.write_str("Cursor"),
        }
    }
}

/// What `assign_work` did with an entry.
#[derive(Debug)]
pub(super) enum Dispatch {
    /// Unlinked for the caller to run now (an item alone).
    Run(Entry),
    /// Moved to the caller's scheduled list, with what is linked behind it.
    Scheduled,
    /// Not for the caller: punted to the worker running the same item, or a cursor unlinked.
    Skipped,
}

/// The list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loc {
    /// The pool worklist.
    Worklist,
    /// Its pwq's inactive list.
    Inactive,
    /// The scheduled list of this worker (its id; `u32` keeps an entry within 48 bytes).
    Scheduled(u32),
}

impl Loc {
    /// The scheduled list of worker `id`.
    pub(super) fn scheduled(id: usize) -> Loc {
        Loc::Scheduled(u32::try_from(id).expect("worker ids fit in u32"))
    }
}

/// One entry of a pool list. L.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) item: Item,
    /// The pwq's slot in the pool.
    pub(super) pwq: u32,
    /// The flush colour it counts in.
    pub(super) color: u8,
    /// It does not count in `nr_active` (`WORK_STRUCT_INACTIVE`): an inactive item or a barrier.
    pub(super) inactive: bool,
    /// The next entry on the same list belongs to this one (`WORK_STRUCT_LINKED`).
    pub(super) linked: bool,
    /// The list it is on.
    pub(super) loc: Loc,
}

impl PoolLocked {
    /// Runs `f` on the list `loc` (of pwq `pwq` for the inactive list) and the arena.
    pub(super) fn with_list<R>(&mut self, loc: Loc, pwq: u32, f: impl FnOnce(&mut List, &mut Nodes<Entry>) -> R) -> R {
        match loc {
            Loc::Worklist => f(&mut self.worklist, &mut self.nodes),
            Loc::Inactive => f(&mut self.pwqs[pwq as usize].inactive, &mut self.nodes),
            Loc::Scheduled(w) => f(&mut self.workers[w as usize].scheduled, &mut self.nodes),
        }
    }

    /// Moves entry `idx` and the entries linked behind it to `dst`, before `before` (`NIL` =
    /// at the tail) (`move_linked_works`).
    pub(super) fn move_linked(&mut self, idx: u32, dst: Loc, before: u32) {
        let mut cur = idx;
        loop {
            let (src, pwq, linked) = {
                let e = self.nodes.get(cur);
                (e.loc, e.pwq, e.linked)
            };
            let (from, to, nodes) = self.two_lists(src, dst, pwq);
            let next = from.next(nodes, cur);
            from.move_to(nodes, cur, to, before);
            nodes.get_mut(cur).loc = dst;
            if !linked {
                return;
            }
            cur = next.expect("a linked entry has a follower");
        }
    }

    /// The lists `a` and `b` (two different lists; `pwq`'s for an inactive one) and the arena.
    fn two_lists(&mut self, a: Loc, b: Loc, pwq: u32) -> (&mut List, &mut List, &mut Nodes<Entry>) {
        let PoolLocked { nodes, worklist, pwqs, workers, .. } = self;
        let (x, y) = match (a, b) {
            (Loc::Worklist, Loc::Inactive) => (worklist, &mut pwqs[pwq as usize].inactive),
            (Loc::Inactive, Loc::Worklist) => (&mut pwqs[pwq as usize].inactive, worklist),
            (Loc::Worklist, Loc::Scheduled(w)) => (worklist, &mut workers[w as usize].scheduled),
            (Loc::Scheduled(w), Loc::Worklist) => (&mut workers[w as usize].scheduled, worklist),
            (Loc::Inactive, Loc::Scheduled(w)) => {
                (&mut pwqs[pwq as usize].inactive, &mut workers[w as usize].scheduled)
            }
            (Loc::Scheduled(w), Loc::Inactive) => {
                (&mut workers[w as usize].scheduled, &mut pwqs[pwq as usize].inactive)
            }
            (Loc::Scheduled(v), Loc::Scheduled(w)) => {
                let (x, y) = workers.get2_mut(v as usize, w as usize).expect("two different workers");
                (&mut x.scheduled, &mut y.scheduled)
            }
            _ => panic!("move_linked within one list ({a:?})"),
        };
        (x, y, nodes)
    }

    /// Unlinks entry `idx` from its list and frees its node.
    pub(super) fn remove_entry(&mut self, idx: u32) -> Entry {
        let (loc, pwq) = {
            let e = self.nodes.get(idx);
            (e.loc, e.pwq)
        };
        let e = self.with_list(loc, pwq, |l, n| l.remove(n, idx));
        if let Item::Work(w) = &e.item {
            w.set_node(NO_NODE);
        }
        e
    }

    /// Takes the worklist entry `idx` for worker `me` (`assign_work`), the one dispatch path
    /// of workers and rescuers:
    /// * a rescuer cursor is unlinked and skipped ([`Dispatch::Skipped`]); only normal workers
    ///   meet one, since a rescuer always scans after its own cursor;
    /// * if another worker of this pool already runs the same item, the entry (with its linked
    ///   barriers) goes to that worker's scheduled list, so the item never runs twice at once
    ///   ([`Dispatch::Skipped`]);
    /// * an item with nothing linked behind it, when `me` has nothing scheduled, is unlinked
    ///   and returned to run at once ([`Dispatch::Run`]): within one lock hold the same as
    ///   moving it to `me`'s scheduled list and taking it from there, without the detour;
    /// * anything else moves to `me`'s scheduled list with its chain ([`Dispatch::Scheduled`]),
    ///   for `process_scheduled_works`.
    pub(super) fn assign_work(&mut self, idx: u32, me: usize) -> Dispatch {
        let Some(to) = self.runner_of(idx, me) else {
            debug_assert!(self.workers[me].flags & super::flags::RESCUER == 0, "a rescuer met a cursor");
            self.unlink_cursor(idx);
            return Dispatch::Skipped;
        };
        let e = self.nodes.get(idx);
        if to == me && !e.linked && !matches!(e.item, Item::Barrier(_)) && self.workers[me].scheduled.is_empty() {
            return Dispatch::Run(self.remove_entry(idx));
        }
        self.move_linked(idx, Loc::scheduled(to), NIL);
        if to == me {
            Dispatch::Scheduled
        } else {
            Dispatch::Skipped
        }
    }

    /// Who must run entry `idx` if worker `me` takes it: the worker already running the same
    /// item (the collision rule, so an item never runs twice at once), else `me`; `None` for
    /// a rescuer cursor, which is never run.
    fn runner_of(&self, idx: u32, me: usize) -> Option<usize> {
        match &self.nodes.get(idx).item {
            Item::Work(w) => Some(self.find_worker_executing(w).unwrap_or(me)),
            Item::Barrier(_) | Item::Once(_) => Some(me),
            Item::Cursor => None,
        }
    }

    /// Unlinks the cursor entry `idx` (no accounting: it never counted).
    pub(super) fn unlink_cursor(&mut self, idx: u32) {
        let e = self.remove_entry(idx);
        debug_assert!(matches!(e.item, Item::Cursor));
        self.pwqs[e.pwq as usize].cursor = None;
    }

    /// Gives every parked inactive item of this pool a node at the end of its pwq's inactive
    /// list, in order, so that a cancel or a flush can reach one: called when a queued work
    /// item has no node. Each item is moved at most once, so a run of such calls costs what
    /// was parked since the last one.
    pub(super) fn unpark_all(&mut self) {
        // By slot number (vacant slots give `None`), so that each item can be linked through
        // `link_new` while no borrow of the pwq table is held.
        for slot in 0..self.pwqs.capacity() as u32 {
            while let Some(run) = self.pwqs.get_mut(slot as usize).and_then(|pwq| pwq.parked.pop_front()) {
                for (_, item) in run.items {
                    self.link_new(Loc::Inactive, slot, item, run.color);
                }
            }
        }
    }

    /// Links a new entry for `item` of pwq `slot` with `color` at the tail of list `loc` (the
    /// worklist for an active item, the pwq's inactive list for one that waits) and gives a
    /// work item its node. Returns the node.
    pub(super) fn link_new(&mut self, loc: Loc, slot: u32, item: Item, color: u8) -> u32 {
        let entry = Entry { item, pwq: slot, color, inactive: loc == Loc::Inactive, linked: false, loc };
        let idx = self.with_list(loc, slot, |l, n| l.push_back(n, entry));
        if let Item::Work(work) = &self.nodes.get(idx).item {
            work.set_node(idx);
        }
        idx
    }
    /// The node of `work`, queued on this pool: a parked item (in an inactive run, without a
    /// node) first gets one, with every other parked item (`unpark_all`), so that it can be
    /// unlinked or have a barrier linked behind it.
    fn node_of(&mut self, work: &Work) -> u32 {
        if work.node() == NO_NODE {
            self.unpark_all();
        }
        work.node()
    }
}

/// A flush barrier just inserted: its completion, and the workqueue its pwq belongs to.
type Barrier = (Arc<Completion>, Arc<dyn super::PwqOwner>);

impl PoolGuard<'_> {
    /// Unlinks a queued `work` from this pool, keeping its PENDING for the caller (step 3 of
    /// `try_to_grab_pending`): its linked barriers stay queued (moved to the worklist if it was
    /// inactive, so that flushers still return), and its accounting is undone, which may
    /// activate the next inactive item. `false` if the item is not queued here (it moved, or
    /// is in transit). Returns what the removal did to its pwq, for the caller to forward.
    pub(crate) fn steal_queued(&mut self, work: &Work) -> Option<(Arc<dyn super::PwqOwner>, super::PwqEvent, Item)> {
        let snap = work.state().load();
        #[cfg(loom)]
        let recheck = !crate::sync::plant::is(crate::sync::plant::Bug::CancelStealUnchecked);
        #[cfg(not(loom))]
        let recheck = true;
        if recheck && !(snap.is_queued() && snap.last_pool() == Some(self.pool.id())) {
            return None;
        }
        let idx = self.node_of(work);
        let (loc, linked, pwq) = {
            let e = self.nodes.get(idx);
            (e.loc, e.linked, e.pwq)
        };
        if linked && loc == Loc::Inactive {
            // Its barriers must still run: they go to the worklist (`move_linked_works`).
            let follower = self.with_list(loc, pwq, |l, n| l.next(n, idx)).expect("linked entry has a follower");
            self.move_linked(follower, Loc::Worklist, NIL);
        }
        let e = self.remove_entry(idx);
        let ev = self.pwq_dec_nr_in_flight(e.pwq, e.color, e.inactive);
        // The removal may have activated the next inactive item: make sure a worker sees it.
        self.kick_pool();
        work.state().steal_queued();
        Some((self.pwqs[e.pwq as usize].owner.clone(), ev, e.item))
    }

    /// Inserts a flush barrier behind the last instance of `work` on this pool
    /// (`insert_wq_barrier`): right behind it, linked, if it is queued (so it moves with the
    /// item and completes right after it has run, wherever that happens), or at the front of
    /// the running worker's scheduled list if it runs. Returns the barrier's completion and the
    /// owner of its pwq, or `None` if the item is neither queued nor running here, or runs on
    /// the calling thread itself (it would wait for itself: `Err` then).
    pub(crate) fn insert_barrier(&mut self, work: &Work) -> Result<Option<Barrier>, ()> {
        let snap = work.state().load();
        let done = Arc::new(Completion::new());
        let (pwq, color, loc, linked, before) = if snap.is_queued() && snap.last_pool() == Some(self.pool.id()) {
            let idx = self.node_of(work);
            let e = self.nodes.get_mut(idx);
            let (pwq, color, linked, loc) = (e.pwq, e.color, e.linked, e.loc);
            e.linked = true;
            let after = self.with_list(loc, pwq, |l, n| l.next(n, idx)).unwrap_or(NIL);
            (pwq, color, loc, linked, after)
        } else if let Some(wk) = self.find_worker_executing(work) {
            if super::current_worker().is_some_and(|(p, me)| Arc::ptr_eq(&p, self.pool) && me == wk) {
                return Err(());
            }
            let cur = self.workers[wk].current.as_ref().expect("busy worker has a current item");
            let (pwq, color) = (cur.pwq, cur.color);
            let head = self.workers[wk].scheduled.front().unwrap_or(NIL);
            (pwq, color, Loc::scheduled(wk), false, head)
        } else {
            return Ok(None);
        };
        let barrier = Entry { item: Item::Barrier(done.clone()), pwq, color, inactive: true, linked, loc };
        self.with_list(loc, pwq, |l, n| l.insert_before(n, before, barrier));
        self.pwqs[pwq as usize].inc_in_flight(color);
        Ok(Some((done, self.pwqs[pwq as usize].owner.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::job::Job;

    /// A queued item costs one arena node: 8 bytes of links and the entry. Kept within 48
    /// bytes, the node with the arena's own tag fills one 64-byte line (B1 queues a million
    /// of them, and the arena's fresh pages were a fifth of its profile).
    #[test]
    fn an_entry_fits_in_48_bytes() {
        assert_eq!(std::mem::size_of::<Job>(), 32);
        assert_eq!(std::mem::size_of::<Item>(), 32, "the item's tag lives in the job's");
        assert!(std::mem::size_of::<Entry>() <= 48, "{}", std::mem::size_of::<Entry>());
    }
}
