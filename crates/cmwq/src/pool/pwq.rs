//! Pool-workqueues: the link between one workqueue and one pool, where all per-(wq, pool)
//! accounting lives, and its transitions (kernel-notes §1.2, §3.1).
//!
//! * `nr_active` counts this workqueue's items on the pool worklist or running; it never
//!   exceeds `max_active`. An item queued while the limit is reached, or while older items wait,
//!   goes to the pwq's inactive list (the kernel's `inactive_works`) and is activated, oldest
//!   first, when an active item finishes. This keeps queueing order per pwq.
//! * The inactive list comes in two parts, oldest first: entries of the pool's node arena
//!   (`inactive`), then runs of items parked without nodes (`parked`). A block of the inbox
//!   that holds one workqueue's flood is parked whole when it is drained (no item moves; the
//!   arena keeps only what is active), and items that go inactive while blocks are parked
//!   join them, to keep the order. An operation that must reach one inactive item in the
//!   middle (cancel, a flush barrier behind it) first gives the parked items nodes
//!   (`PoolLocked::unpark_all`; docs/design.md §3).
//! * `nr_in_flight[colour]` counts queued and running items by flush colour.
//!
//! The mutable part ([`PwqLocked`]) lives inside its pool's locked state and is guarded by the
//! pool lock, as the kernel's `pool_workqueue` fields are; [`Pwq`] is the handle a workqueue
//! keeps. The transitions are methods of the pool guard, named after the kernel's functions
//! (`insert_work`, `pwq_activate_first_inactive`, `pwq_dec_nr_in_flight`, ...). They never call
//! up into the workqueue: a transition that completes something returns a [`PwqEvent`], which
//! the caller forwards to the pwq's [`PwqOwner`] (the workqueue).
//!
//! A pwq can be *retired* (its workqueue replaced it with another, `apply_workqueue_attrs`):
//! it takes no new items but runs what it has; once nothing is in flight and no mayday entry
//! holds it, its owner releases it (`pwq_release`; docs/design.md §7).

use super::entry::{Item, Loc};
use super::inbox::Queued;
use super::{PoolGuard, WorkerPool};
use crate::introspect::PwqInfo;
use crate::stats::PwqStats;
use crate::sync::Arc;
use crate::work::{Work, NO_NODE};
use crate::worklist::{List, NIL};
use std::any::Any;
use std::collections::VecDeque;
use std::fmt;

/// Number of flush colours (`WORK_NR_COLORS`).
pub(crate) const NR_COLORS: usize = 16;

/// What a pwq knows of the workqueue it belongs to: implemented by the workqueue's shared
/// info. The pool side asks it only what it cannot decide itself, and forwards its events to
/// it, so the pool module does not depend on the workqueue module.
pub(crate) trait PwqOwner: Send + Sync + fmt::Debug {
    /// The workqueue's runtime-unique id.
    fn id(&self) -> u32;
    /// The workqueue's name.
    fn name(&self) -> &Arc<str>;
    /// A `mem_reclaim` workqueue (`check_flush_dependency`).
    fn mem_reclaim(&self) -> bool;
    /// A transition of one of its pwqs completed something (a flush colour, the pwq's
    /// in-flight count). Pool lock held.
    fn pwq_event(&self, ev: PwqEvent);
    /// A caught panic of one of its items. No lock held.
    fn report_panic(&self, work: Option<&Work>, payload: Box<dyn Any + Send>);
    /// Puts `pwq` on the workqueue's mayday list and wakes its rescuer (`send_mayday`);
    /// `false` if it has no rescuer or the pwq is on the list already. Pool lock held.
    fn send_mayday(&self, pwq: Pwq) -> bool;
    /// Whether `pwq` is on the workqueue's mayday list.
    fn on_mayday(&self, pwq: &Pwq) -> bool;
    /// The owner as `Any`, to get back the workqueue's own type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl dyn PwqOwner {
    /// Forwards `ev` if it says anything (`PwqEvent::any`). Pool lock held.
    pub(crate) fn pwq_event_if(&self, ev: PwqEvent) {
        if ev.any() {
            self.pwq_event(ev);
        }
    }
}

/// What a transition of a pwq completed, for its owner (`PwqOwner::pwq_event`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use = "forward it to the pwq's owner"]
pub(crate) struct PwqEvent {
    /// The colour a workqueue flush waits on drained in this pwq (`nr_pwqs_to_flush` drops).
    pub(crate) flushed: bool,
    /// Nothing of this pwq is in flight any more (a destroyer may go on).
    pub(crate) empty: bool,
    /// The pwq is retired and holds nothing any more: its owner may release it.
    pub(crate) release: bool,
}

impl PwqEvent {
    /// Whether there is anything to forward.
    fn any(self) -> bool {
        self.flushed || self.empty || self.release
    }
}

/// A workqueue's handle on one of its pwqs.
#[derive(Debug, Clone)]
pub(crate) struct Pwq {
    /// The pool this pwq feeds.
    pool: Arc<WorkerPool>,
    /// The pwq's slot in `pool`'s locked state.
    slot: u32,
}

impl Pwq {
    /// A new pwq of `owner` on `pool`, with the active limit `max_active` and the flush colour
    /// `work_color` for new items (the workqueue's current one: `init_pwq`, `link_pwq`).
    pub(crate) fn new(
        pool: &Arc<WorkerPool>,
        owner: Arc<dyn PwqOwner>,
        cpu_intensive: bool,
        max_active: usize,
        work_color: u8,
    ) -> Pwq {
        let mut pwq = PwqLocked::new(owner, cpu_intensive, max_active);
        pwq.work_color = work_color;
        let slot = pool.lock().pwqs.insert(pwq) as u32;
        Pwq { pool: pool.clone(), slot }
    }

    /// The handle of pwq `slot` of `pool`.
    pub(super) fn new_handle(pool: &Arc<WorkerPool>, slot: u32) -> Pwq {
        Pwq { pool: pool.clone(), slot }
    }

    /// The pool this pwq feeds.
    pub(crate) fn pool(&self) -> &Arc<WorkerPool> {
        &self.pool
    }

    /// Its slot in the pool.
    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// Whether `self` and `other` are the same pwq.
    pub(crate) fn same(&self, other: &Pwq) -> bool {
        self.slot == other.slot && Arc::ptr_eq(&self.pool, &other.pool)
    }

    /// Takes the pool lock: every operation on the pwq goes through the guard, with this slot.
    pub(crate) fn lock(&self) -> PoolGuard<'_> {
        self.pool.lock()
    }

    /// Queues `work`, whose PENDING the caller owns, on this pwq without waiting for the pool
    /// lock (the inbox, `pool::inbox`).
    #[inline]
    pub(crate) fn submit_work(&self, work: Work) {
        self.pool.submit_work(self.slot, work);
    }

    /// Queues a one-shot closure on this pwq (the inbox).
    pub(crate) fn submit_job(&self, job: crate::work::job::Job) {
        self.pool.submit(self.slot, Item::Once(job));
    }
}

/// The pool-locked state of one pwq. L: every field is guarded by the pool lock, private to
/// the `pool` module.
#[derive(Debug)]
pub(super) struct PwqLocked {
    /// I: the workqueue this pwq belongs to.
    pub(super) owner: Arc<dyn PwqOwner>,
    /// I: the workqueue is `cpu_intensive` (its items never count as running).
    pub(super) cpu_intensive: bool,
    /// Items of this pwq on the worklist or running, counted against `max_active`.
    pub(super) nr_active: usize,
    /// The active limit for this pwq (the workqueue's `max_active`, 0 while frozen).
    pub(super) max_active: usize,
    /// Items waiting for an active slot, oldest first (entries of the pool's node arena); all
    /// older than those in `parked`.
    pub(super) inactive: List,
    /// Younger items waiting for an active slot, in runs, oldest first: work items here are
    /// QUEUED with no node (`NO_NODE`). A run is never empty (it is dropped with its last
    /// item), so "anything parked" is `!parked.is_empty()`.
    pub(super) parked: VecDeque<Parked>,
    /// Queued or running items per flush colour. Changed only by `add_in_flight` and
    /// `dec_in_flight`, which keep `nr_in_flight_total` with it.
    nr_in_flight: [u32; NR_COLORS],
    /// The sum of `nr_in_flight`: read after every completion (has the pwq drained?), where
    /// summing the array right after storing into it stalls on store forwarding (`perf`
    /// showed it as a third of `dec_nr_in_flight` on B1).
    nr_in_flight_total: u32,
    /// The colour new items get.
    work_color: u8,
    /// The colour being flushed on this pwq, if any (the kernel's -1 is `None`).
    flush_color: Option<u8>,
    /// The counters of this pwq.
    pub(super) stats: PwqStats,
    /// The rescuer's cursor: a worklist entry of its own kind marking where the next rescue
    /// scan resumes (`mayday_cursor`), if it is linked.
    pub(super) cursor: Option<u32>,
    /// References held by mayday-list entries (one per time the pwq is on its workqueue's
    /// mayday list; the kernel's `get_pwq` in `send_mayday`, put by the rescuer).
    pub(super) mayday_refs: u32,
    /// Replaced by another pwq of its workqueue: takes no new items, released once empty.
    retired: bool,
}

/// A run of inactive items parked without nodes, all of one flush colour (`PwqLocked::parked`).
#[derive(Debug)]
pub(super) struct Parked {
    /// The items, oldest first (with their pwq slot, as the inbox held them).
    pub(super) items: VecDeque<Queued>,
    /// Their flush colour.
    pub(super) color: u8,
}

impl PwqLocked {
    fn new(owner: Arc<dyn PwqOwner>, cpu_intensive: bool, max_active: usize) -> PwqLocked {
        PwqLocked {
            owner,
            cpu_intensive,
            nr_active: 0,
            max_active,
            inactive: List::default(),
            parked: VecDeque::new(),
            nr_in_flight: [0; NR_COLORS],
            nr_in_flight_total: 0,
            work_color: 0,
            flush_color: None,
            stats: PwqStats::default(),
            cursor: None,
            mayday_refs: 0,
            retired: false,
        }
    }

    /// Whether another item may become active now (`pwq_tryinc_nr_active` for one node).
    fn may_activate(&self) -> bool {
        self.nr_active < self.max_active
    }

    /// Whether any item waits for an active slot.
    fn has_inactive(&self) -> bool {
        !self.inactive.is_empty() || !self.parked.is_empty()
    }

    /// Items waiting for an active slot (introspection: counts the parked runs).
    fn nr_inactive(&self) -> usize {
        self.inactive.len() + self.parked.iter().map(|run| run.items.len()).sum::<usize>()
    }

    /// Whether a newly queued item must wait (inactive): older ones wait, or no slot is free.
    pub(super) fn must_wait(&self) -> bool {
        self.has_inactive() || !self.may_activate()
    }

    /// `n` more items (or barriers) in flight with `color`.
    fn add_in_flight(&mut self, color: u8, n: u32) {
        self.nr_in_flight[color as usize] += n;
        self.nr_in_flight_total += n;
    }

    /// Items queued or running, all colours.
    fn in_flight(&self) -> u32 {
        debug_assert_eq!(self.nr_in_flight_total, self.nr_in_flight.iter().sum::<u32>());
        self.nr_in_flight_total
    }

    /// One more item (or barrier) in flight with `color`.
    pub(super) fn inc_in_flight(&mut self, color: u8) {
        self.add_in_flight(color, 1);
    }

    /// One item (or barrier) of `color` left; returns how many of that colour remain.
    fn dec_in_flight(&mut self, color: u8) -> u32 {
        self.nr_in_flight_total -= 1;
        let left = &mut self.nr_in_flight[color as usize];
        *left -= 1;
        *left
    }

    /// Nothing active, nothing inactive (`pwq_is_empty`).
    fn is_empty(&self) -> bool {
        self.nr_active == 0 && !self.has_inactive()
    }
}

/// A work item queued on `pool` without a node: parked (`PwqLocked::parked`).
fn mark_parked(item: &Item, pool: u32) {
    if let Item::Work(work) = item {
        work.set_node(NO_NODE);
        work.state().set_queued(pool);
    }
}

impl PoolGuard<'_> {
    /// Queues `item` (a work item whose PENDING the caller owns, or a one-shot closure) on pwq
    /// `slot` of this pool (`__queue_work` steps 5-8): active on the worklist if the pwq has a
    /// free slot and nothing waits before it, else at the end of the pwq's inactive list
    /// (parked behind parked runs, if there are any).
    pub(super) fn insert_work(&mut self, slot: u32, item: Item) {
        let pool = self.pool;
        let pwq = &mut self.pwqs[slot as usize];
        let color = pwq.work_color;
        pwq.inc_in_flight(color);
        if !pwq.parked.is_empty() {
            mark_parked(&item, pool.id());
            match pwq.parked.back_mut() {
                Some(run) if run.color == color => run.items.push_back((slot, item)),
                _ => pwq.parked.push_back(Parked { items: VecDeque::from([(slot, item)]), color }),
            }
            return;
        }
        let active = pwq.inactive.is_empty() && pwq.may_activate();
        if active {
            pwq.nr_active += 1;
        }
        let loc = if active { Loc::Worklist } else { Loc::Inactive };
        let idx = self.link_new(loc, slot, item, color);
        if let Item::Work(work) = &self.nodes.get(idx).item {
            work.state().set_queued(pool.id());
        }
        if active {
            self.kick_pool();
            if pool.is_cm() && self.nr_running > 0 {
                // Items wait behind running workers: the monitor must watch them.
                pool.env().monitor.note_waiting();
            }
        }
        if self.nr_workers == 0 {
            self.create_without_manager();
        }
    }

    /// Queues `work` (PENDING owned by the caller) on pwq `slot` under the lock held: the
    /// non-reentrancy redirect, which must land on the pwq where the item runs right now.
    pub(crate) fn insert_work_item(&mut self, slot: u32, work: Work) {
        self.insert_work(slot, Item::Work(work));
    }

    /// The pwq slot whose worker runs `work` right now, if one does and that pwq belongs to
    /// the workqueue `owner` (the check of `__queue_work`'s non-reentrancy redirect).
    pub(crate) fn running_in(&self, work: &Work, owner: u32) -> Option<u32> {
        let wk = self.find_worker_executing(work)?;
        let slot = self.workers[wk].current.as_ref()?.pwq;
        (self.pwqs.get(slot as usize)?.owner.id() == owner).then_some(slot)
    }

    /// Queues a run of items of pwq `slot` that must all wait (`must_wait`) at the end of its
    /// inactive list without moving them: an inbox block, parked whole (`works`: it holds
    /// work items, whose state words are updated; a run of closures is not read at all).
    pub(super) fn park_block(&mut self, slot: u32, items: VecDeque<Queued>, works: bool) {
        let pool_id = self.pool.id();
        let pwq = &mut self.pwqs[slot as usize];
        debug_assert!(pwq.must_wait());
        let color = pwq.work_color;
        pwq.add_in_flight(color, items.len() as u32);
        if works {
            for (_, item) in &items {
                mark_parked(item, pool_id);
            }
        }
        pwq.parked.push_back(Parked { items, color });
    }

    /// Activates the oldest inactive item of pwq `slot` with its linked barriers, if the pwq
    /// may activate one (`pwq_activate_first_inactive`). Returns whether it did.
    pub(super) fn pwq_activate_first_inactive(&mut self, slot: u32) -> bool {
        let pwq = &mut self.pwqs[slot as usize];
        if !pwq.may_activate() {
            return false;
        }
        if let Some(idx) = pwq.inactive.front() {
            pwq.nr_active += 1;
            self.nodes.get_mut(idx).inactive = false;
            self.move_linked(idx, Loc::Worklist, NIL);
            return true;
        }
        let Some(run) = pwq.parked.front_mut() else { return false };
        let color = run.color;
        let (_, item) = run.items.pop_front().expect("parked runs are not empty");
        if run.items.is_empty() {
            pwq.parked.pop_front();
        }
        pwq.nr_active += 1;
        self.link_new(Loc::Worklist, slot, item, color);
        true
    }

    /// Accounting after an entry of pwq `slot` with `color` finished or was removed
    /// (`pwq_dec_nr_in_flight`): frees its active slot (unless it was inactive), activating
    /// the next inactive item, and drops its in-flight count. Returns what that completed (a
    /// flush colour, the whole pwq), for the caller to forward to the pwq's owner.
    pub(super) fn pwq_dec_nr_in_flight(&mut self, slot: u32, color: u8, inactive: bool) -> PwqEvent {
        #[cfg(loom)]
        let inactive = inactive && !crate::sync::plant::is(crate::sync::plant::Bug::InactiveCountedActive);
        if !inactive {
            self.pwqs[slot as usize].nr_active -= 1;
            #[cfg(loom)]
            let promote = !crate::sync::plant::is(crate::sync::plant::Bug::ActiveNoPromotion);
            #[cfg(not(loom))]
            let promote = true;
            // No kick, as in the kernel's `pwq_dec_nr_active`: the caller is a worker that
            // goes on with the worklist (`keep_working`), or a canceller that kicks itself.
            if promote {
                self.pwq_activate_first_inactive(slot);
            }
        }
        let pwq = &mut self.pwqs[slot as usize];
        let left = pwq.dec_in_flight(color);
        let mut ev = PwqEvent::default();
        if pwq.flush_color == Some(color) && left == 0 {
            pwq.flush_color = None;
            ev.flushed = true;
        }
        ev.empty = pwq.in_flight() == 0;
        ev.release = ev.empty && self.pwq_releasable(slot);
        ev
    }

    /// Forwards `ev` of pwq `slot` to its owner, if it says anything.
    pub(super) fn forward(&self, slot: u32, ev: PwqEvent) {
        if ev.any() {
            self.pwqs[slot as usize].owner.pwq_event(ev);
        }
    }

    /// Sets pwq `slot`'s active limit (`pwq_adjust_max_active`; 0 freezes), activating what the
    /// new limit allows and kicking the pool for it.
    pub(crate) fn pwq_set_max_active(&mut self, slot: u32, max: usize) {
        self.pwqs[slot as usize].max_active = max;
        while self.pwq_activate_first_inactive(slot) {}
        self.kick_pool();
    }

    /// The flush-colour step of one pwq (`flush_workqueue_prep_pwqs`, pool side): if
    /// `flush_color` is given and the pwq has entries of it, marks the pwq as flushing it
    /// (returns `true`: the flusher must wait for it); if `work_color` is given, new items
    /// get that colour from now on. Workqueue flush lock held.
    pub(crate) fn pwq_flush_prep(&mut self, slot: u32, flush_color: Option<u8>, work_color: Option<u8>) -> bool {
        let pwq = &mut self.pwqs[slot as usize];
        let mut wait = false;
        if let Some(fc) = flush_color {
            assert!(pwq.flush_color.is_none(), "pwq already flushing");
            if pwq.nr_in_flight[fc as usize] > 0 {
                pwq.flush_color = Some(fc);
                wait = true;
            }
        }
        if let Some(wc) = work_color {
            assert_eq!(wc, (pwq.work_color + 1) % NR_COLORS as u8, "pwq work colour out of step");
            #[cfg(loom)]
            if crate::sync::plant::is(crate::sync::plant::Bug::FlushColourNotAdvanced) {
                return wait;
            }
            pwq.work_color = wc;
        }
        wait
    }

    /// Entries of pwq `slot` in flight (queued or running, items and barriers).
    pub(crate) fn pwq_in_flight(&self, slot: u32) -> u32 {
        self.pwqs[slot as usize].in_flight()
    }

    /// Whether pwq `slot` has nothing active and nothing inactive (`pwq_is_empty`).
    pub(crate) fn pwq_is_empty(&self, slot: u32) -> bool {
        self.pwqs[slot as usize].is_empty()
    }

    /// Whether pwq `slot` has an active item (`freeze_workqueues_busy`).
    pub(crate) fn pwq_busy(&self, slot: u32) -> bool {
        self.pwqs[slot as usize].nr_active > 0
    }

    /// The counters of pwq `slot`.
    pub(crate) fn pwq_stats(&self, slot: u32) -> PwqStats {
        self.pwqs[slot as usize].stats
    }

    /// A snapshot of pwq `slot` (`Workqueue::pwqs`).
    pub(crate) fn pwq_info(&self, slot: u32) -> PwqInfo {
        let pwq = &self.pwqs[slot as usize];
        PwqInfo {
            pool: self.pool.id(),
            cpu: self.pool.cpu(),
            nr_active: pwq.nr_active,
            nr_inactive: pwq.nr_inactive(),
            in_flight: pwq.in_flight(),
            work_color: pwq.work_color,
            flush_color: pwq.flush_color,
            on_mayday: pwq.owner.on_mayday(&Pwq::new_handle(self.pool, slot)),
            mayday_refs: pwq.mayday_refs,
            cursor_linked: pwq.cursor.is_some(),
            retired: pwq.retired,
        }
    }

    /// Retires pwq `slot` (its workqueue installed a replacement): it runs what it has and
    /// is released once [`PoolGuard::pwq_releasable`].
    #[cfg_attr(any(not(test), loom, shuttle), allow(dead_code))]
    pub(crate) fn pwq_retire(&mut self, slot: u32) {
        self.pwqs[slot as usize].retired = true;
    }

    /// Whether pwq `slot` is retired and holds nothing any more: nothing in flight, no mayday
    /// reference, no rescuer cursor (`pwq_release` may run).
    pub(crate) fn pwq_releasable(&self, slot: u32) -> bool {
        let pwq = &self.pwqs[slot as usize];
        pwq.retired && pwq.in_flight() == 0 && pwq.mayday_refs == 0 && pwq.cursor.is_none()
    }

    /// Removes pwq `slot` from the pool (`pwq_release`, or a destroyed workqueue's detach).
    /// Returns its counters, which its owner keeps. Only once nothing is in flight.
    pub(crate) fn pwq_unlink(&mut self, slot: u32) -> PwqStats {
        let pwq = self.pwqs.remove(slot as usize);
        debug_assert_eq!(pwq.in_flight(), 0, "unlinking a pwq with entries in flight");
        pwq.stats
    }
}
