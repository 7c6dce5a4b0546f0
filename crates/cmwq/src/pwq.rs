//! Pool-workqueues: the link between one workqueue and one pool, where all per-(wq, pool)
//! accounting lives (spec §1.2, §3.1).
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
//! pool lock, as the kernel's `pool_workqueue` fields are; [`Pwq`] is the immutable handle a
//! workqueue keeps.

use crate::pool::inbox::Queued;
use crate::pool::WorkerPool;
use crate::stats::PwqStats;
use crate::sync::Arc;
use crate::worklist::List;
use crate::workqueue::WqInfo;
use std::collections::VecDeque;

/// Number of flush colours (`WORK_NR_COLORS`).
pub(crate) const NR_COLORS: usize = 16;

/// A workqueue's handle on one of its pwqs.
#[derive(Debug, Clone)]
pub(crate) struct Pwq {
    /// The pool this pwq feeds.
    pub(crate) pool: Arc<WorkerPool>,
    /// The pwq's slot in `pool`'s locked state.
    pub(crate) slot: u32,
}

/// The pool-locked state of one pwq. L: every field is guarded by the pool lock.
#[derive(Debug)]
pub(crate) struct PwqLocked {
    /// I: the workqueue this pwq belongs to.
    pub(crate) wq: Arc<WqInfo>,
    /// Items of this pwq on the worklist or running, counted against `max_active`.
    pub(crate) nr_active: usize,
    /// The active limit for this pwq (the workqueue's `max_active`).
    pub(crate) max_active: usize,
    /// Items waiting for an active slot, oldest first (entries of the pool's node arena); all
    /// older than those in `parked`.
    pub(crate) inactive: List,
    /// Younger items waiting for an active slot, in runs, oldest first: work items here are
    /// QUEUED with no node (`NO_NODE`). A run is never empty (it is dropped with its last
    /// item), so "anything parked" is `!parked.is_empty()`.
    pub(crate) parked: VecDeque<Parked>,
    /// Queued or running items per flush colour. Changed only by `inc_in_flight` and
    /// `dec_in_flight`, which keep `nr_in_flight_total` with it.
    pub(crate) nr_in_flight: [u32; NR_COLORS],
    /// The sum of `nr_in_flight`: read after every completion (has the pwq drained?), where
    /// summing the array right after storing into it stalls on store forwarding (`perf`
    /// showed it as a third of `dec_nr_in_flight` on B1).
    nr_in_flight_total: u32,
    /// The colour new items get.
    pub(crate) work_color: u8,
    /// The colour being flushed on this pwq, if any (the kernel's -1 is `None`).
    pub(crate) flush_color: Option<u8>,
    /// The counters of this pwq.
    pub(crate) stats: PwqStats,
    /// The rescuer's cursor: a worklist entry of its own kind marking where the next rescue
    /// scan resumes (`mayday_cursor`), if it is linked.
    pub(crate) cursor: Option<u32>,
    /// References held by mayday-list entries (one per time the pwq is on its workqueue's
    /// mayday list; the kernel's `get_pwq` in `send_mayday`, put by the rescuer).
    pub(crate) mayday_refs: u32,
}

impl PwqLocked {
    pub(crate) fn new(wq: Arc<WqInfo>, max_active: usize) -> PwqLocked {
        PwqLocked {
            wq,
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
        }
    }

    /// Whether another item may become active now (`pwq_tryinc_nr_active` for one node).
    pub(crate) fn may_activate(&self) -> bool {
        self.nr_active < self.max_active
    }

    /// Whether any item waits for an active slot.
    pub(crate) fn has_inactive(&self) -> bool {
        !self.inactive.is_empty() || !self.parked.is_empty()
    }

    /// Items waiting for an active slot (introspection: counts the parked runs).
    pub(crate) fn nr_inactive(&self) -> usize {
        self.inactive.len() + self.parked.iter().map(|run| run.items.len()).sum::<usize>()
    }

    /// Whether a newly queued item must wait (inactive): older ones wait, or no slot is free.
    pub(crate) fn must_wait(&self) -> bool {
        self.has_inactive() || !self.may_activate()
    }

    /// `n` more items (or barriers) in flight with `color`.
    pub(crate) fn add_in_flight(&mut self, color: u8, n: u32) {
        self.nr_in_flight[color as usize] += n;
        self.nr_in_flight_total += n;
    }

    /// Items queued or running, all colours.
    pub(crate) fn in_flight(&self) -> u32 {
        debug_assert_eq!(self.nr_in_flight_total, self.nr_in_flight.iter().sum::<u32>());
        self.nr_in_flight_total
    }

    /// One more item (or barrier) in flight with `color`.
    pub(crate) fn inc_in_flight(&mut self, color: u8) {
        self.add_in_flight(color, 1);
    }

    /// One item (or barrier) of `color` left; returns how many of that colour remain.
    pub(crate) fn dec_in_flight(&mut self, color: u8) -> u32 {
        self.nr_in_flight_total -= 1;
        let left = &mut self.nr_in_flight[color as usize];
        *left -= 1;
        *left
    }
}

/// A run of inactive items parked without nodes, all of one flush colour (`PwqLocked::parked`).
#[derive(Debug)]
pub(crate) struct Parked {
    /// The items, oldest first (with their pwq slot, as the inbox held them).
    pub(crate) items: VecDeque<Queued>,
    /// Their flush colour.
    pub(crate) color: u8,
}
