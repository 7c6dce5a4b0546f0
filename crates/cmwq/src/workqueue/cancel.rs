//! Cancelling and disabling work items (the kernel's `try_to_grab_pending`, `cancel_work`,
//! `cancel_work_sync`, `disable_work`, `enable_work`; kernel-notes §3.6).
//!
//! Everything starts by *grabbing* PENDING, so the caller owns the item:
//! 1. a delayed item's armed timer is cancelled: the caller now owns PENDING;
//! 2. else PENDING is claimed if it was clear: the item was idle;
//! 3. else, if the item is queued in a pool, it is unlinked there under the pool lock (its
//!    linked barriers stay queued, moved to the worklist if it was inactive, so flushers still
//!    return) and its accounting undone: the caller now owns PENDING;
//! 4. else the item is in transit (a queuer or a timer holds PENDING between claiming it and
//!    putting it on a list): yield and retry. The window is a few instructions.
//!
//! `cancel_sync` raises the disable depth while it waits for a running instance, so every
//! queueing meanwhile (including the function queueing itself) fails; then lowers it again.

use crate::work::Work;

/// What grabbing found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grabbed {
    /// The item was idle.
    Idle,
    /// A pending instance (queued, or an armed timer) was taken away.
    Pending,
}

/// Something that may hold a delayed item's PENDING in an armed timer.
pub(crate) trait TimerSteal {
    /// Cancels the armed timer if there is one that has not fired; `true` if the caller now
    /// owns PENDING.
    fn steal_timer(&self) -> bool;
}

/// Takes PENDING of `work` for the caller (`try_to_grab_pending`, retried until it succeeds).
pub(super) fn grab_pending(work: &Work, timer: Option<&dyn TimerSteal>) -> Grabbed {
    loop {
        if timer.is_some_and(|t| t.steal_timer()) {
            return Grabbed::Pending;
        }
        if work.state().try_claim_pending() {
            return Grabbed::Idle;
        }
        if steal_queued(work) {
            return Grabbed::Pending;
        }
        #[cfg(loom)]
        if crate::sync::plant::is(crate::sync::plant::Bug::GrabInTransitAsStolen) {
            return Grabbed::Pending;
        }
        crate::sync::thread::yield_now();
    }
}

/// Unlinks a queued `work` from its pool, keeping PENDING. `false` if it is not queued.
fn steal_queued(work: &Work) -> bool {
    let snap = work.state().load();
    if !snap.is_pending() {
        return false;
    }
    let Some(pool) = snap.last_pool().and_then(crate::pool::lookup) else { return false };
    // Locking the pool moves its inbox, where a pending item in transit may sit.
    let mut g = pool.lock();
    let Some((owner, ev, entry)) = g.steal_queued(work) else { return false };
    owner.pwq_event_if(ev);
    drop(g);
    // `entry` holds a handle on the item; the caller holds another, so no user destructor
    // runs here, and anyway no lock is held any more.
    drop(entry);
    true
}

impl Work {
    /// Removes a pending instance (`cancel_work`). Returns whether one was pending. Does not
    /// wait for a running instance.
    pub fn cancel(&self) -> bool {
        cancel(self, None)
    }

    /// Cancels a pending instance and waits for a running one (`cancel_work_sync`): on return
    /// the item is neither pending nor running (unless queued again after the return). Queueing
    /// fails while it waits, so an item that queues itself is stopped too. Returns whether an
    /// instance was pending. Must not be called from the item itself (it would wait for
    /// itself).
    pub fn cancel_sync(&self) -> bool {
        cancel_sync(self, None)
    }

    /// Cancels a pending instance and raises the disable depth (`disable_work`): until as many
    /// `enable` calls, every queueing returns `false`. Returns whether an instance was pending.
    pub fn disable(&self) -> bool {
        disable(self, None)
    }

    /// `disable`, then waits for a running instance (`disable_work_sync`).
    pub fn disable_sync(&self) -> bool {
        let was = disable(self, None);
        self.flush();
        was
    }

    /// Lowers the disable depth (`enable_work`). Returns `true` when it reaches zero. Does not
    /// queue the item: queueings refused while it was disabled are gone. An `enable` without a
    /// matching `disable` warns and does nothing.
    pub fn enable(&self) -> bool {
        enable(self, None)
    }

    /// The disable depth.
    pub fn disable_depth(&self) -> u64 {
        self.state().load().disable_depth()
    }
}

pub(crate) fn cancel(work: &Work, timer: Option<&dyn TimerSteal>) -> bool {
    let g = grab_pending(work, timer);
    work.state().release_claim();
    g == Grabbed::Pending
}

pub(super) fn cancel_sync(work: &Work, timer: Option<&dyn TimerSteal>) -> bool {
    let g = grab_pending(work, timer);
    let raised = work.state().inc_disable();
    work.state().release_claim();
    work.flush();
    if raised {
        work.state().dec_disable();
    }
    g == Grabbed::Pending
}

pub(super) fn disable(work: &Work, timer: Option<&dyn TimerSteal>) -> bool {
    let g = grab_pending(work, timer);
    if !work.state().inc_disable() {
        eprintln!("cmwq: disable depth of {work:?} at its maximum ({})", crate::work::state::MAX_DISABLE);
    }
    work.state().release_claim();
    g == Grabbed::Pending
}

pub(super) fn enable(work: &Work, timer: Option<&dyn TimerSteal>) -> bool {
    let unbalanced = || {
        eprintln!("cmwq: enable of {work:?} that is not disabled");
        false
    };
    // Without a matching disable, nothing changes: grabbing PENDING first would cancel a
    // pending instance (the kernel's enable_work does, after its warning).
    if work.state().load().disable_depth() == 0 {
        return unbalanced();
    }
    grab_pending(work, timer);
    let depth = work.state().dec_disable();
    work.state().release_claim();
    match depth {
        Some(d) => d == 0,
        None => unbalanced(),
    }
}
