//! Model (f): `nr_active` and inactive promotion (`pwq.rs`; `pool::entry`'s `insert_work`,
//! `activate_first_inactive`, `dec_nr_in_flight`; the kernel's `pwq_dec_nr_active` and
//! `pwq_activate_first_inactive`). A pwq with `max_active` 1, three items queued on it (the
//! first active, two inactive), the real worker running them, and a canceller taking the
//! middle one away while it is inactive, active or already run, whichever the schedule gives.
//!
//! Checked, under the pool lock, by every work function while it runs, by the canceller after
//! its cancel, and at the end: no more items of the pwq are active (on the worklist, on a
//! worker's scheduled list, or running) than `max_active`, and `nr_active` counts exactly
//! those. No item is stranded: the test waits for every run the ledger expects (accepted =
//! ran + cancelled), and a promotion that never comes leaves every thread blocked, which
//! loom reports as a deadlock. At the end the pwq is empty: nothing active, inactive or in
//! flight.

use super::{check, Fixture, Runs};
use crate::pool::{Item, PoolLocked, WorkerPool};
use crate::sync::plant::Bug;
use crate::sync::Arc;
use crate::work::{cancel, Work};
use loom::thread;

/// The pwq's active limit in the model: one active item, the others wait.
const MAX_ACTIVE: usize = 1;

/// Checks `nr_active` of pwq `slot` against the items that are really active. Pool lock held.
fn check_active(g: &PoolLocked, slot: u32) {
    let is_item = |idx: &&u32| {
        let e = g.nodes.get(**idx);
        e.pwq == slot && matches!(e.item, Item::Work(_))
    };
    let queued = g.worklist.indices(&g.nodes).iter().filter(is_item).count();
    let scheduled: usize =
        g.workers.iter().map(|(_, w)| w.scheduled.indices(&g.nodes).iter().filter(is_item).count()).sum();
    let running = g.workers.iter().filter(|(_, w)| w.current.as_ref().is_some_and(|c| c.pwq == slot)).count();
    let active = queued + scheduled + running;
    let pwq = &g.pwqs[slot as usize];
    assert!(active <= pwq.max_active, "max_active exceeded: {active} items active, max_active {}", pwq.max_active);
    assert_eq!(pwq.nr_active, active, "nr_active out of step with the items active");
}

/// A work item that counts its runs on `runs` and checks the pwq's accounting while it runs.
fn checked_work(pool: &Arc<WorkerPool>, slot: u32, runs: &Arc<Runs>) -> Work {
    let (pool, runs) = (pool.clone(), runs.clone());
    Work::new(move |_w: &Work| {
        check_active(&pool.lock(), slot);
        runs.add();
    })
}

/// Items `[a, b, c]` queued in this order on a pwq with `max_active` 1 (`a` active, the others
/// waiting); a canceller takes item `victim` away while the worker runs them.
fn cancel_vs_promotion(victim: usize) {
    let fx = Fixture::new(true);
    fx.pool.lock().pwqs[fx.slot as usize].max_active = MAX_ACTIVE;
    let runs: [Arc<Runs>; 3] = Default::default();
    let [a, b, c] = [0, 1, 2].map(|i| checked_work(&fx.pool, fx.slot, &runs[i]));
    for w in [&a, &b, &c] {
        assert!(fx.queue(w), "a fresh item is not pending");
    }
    let canceller = {
        let (pool, slot, w) = (fx.pool.clone(), fx.slot, [&a, &b, &c][victim].clone());
        thread::spawn(move || {
            let cancelled = cancel::cancel(&w, None);
            check_active(&pool.lock(), slot);
            cancelled
        })
    };
    let cancelled = canceller.join().expect("the canceller");
    let expected: [usize; 3] = std::array::from_fn(|i| usize::from(i != victim || !cancelled));
    for (r, &n) in runs.iter().zip(&expected) {
        r.wait_for(n);
    }
    // The worker's accounting after the last run is done once it has exited.
    let (pool, slot) = (fx.pool.clone(), fx.slot);
    fx.shutdown();
    {
        let g = pool.lock();
        check_active(&g, slot);
        let pwq = &g.pwqs[slot as usize];
        let (active, inactive, in_flight) = (pwq.nr_active, pwq.nr_inactive(), pwq.in_flight());
        assert_eq!((active, inactive, in_flight), (0, 0, 0), "the pwq is not empty (active, inactive, in flight)");
    }
    let ran = runs.each_ref().map(|r| r.get());
    assert_eq!(ran, expected, "accepted = ran + cancelled, each item at most once");
}

/// The active item cancelled (from the worklist, before the worker takes it, or too late):
/// its slot goes to the next inactive item.
fn cancel_active_vs_promotion() {
    cancel_vs_promotion(0);
}

/// An inactive item cancelled (while it waits, or once promoted, or too late): it never held
/// an active slot, so it frees none.
fn cancel_inactive_vs_promotion() {
    cancel_vs_promotion(1);
}

#[test]
fn loom_nr_active_cancel_active() {
    check("nr_active_cancel_active", 2, None, cancel_active_vs_promotion);
}

#[test]
fn loom_nr_active_cancel_inactive() {
    check("nr_active_cancel_inactive", 2, None, cancel_inactive_vs_promotion);
}

#[test]
#[should_panic(expected = "deadlock")]
fn loom_nr_active_planted_no_promotion() {
    check(
        "nr_active_cancel_active (planted: no promotion when a slot frees)",
        2,
        Some(Bug::ActiveNoPromotion),
        cancel_active_vs_promotion,
    );
}

#[test]
#[should_panic(expected = "max_active exceeded")]
fn loom_nr_active_planted_cancelled_inactive_frees_a_slot() {
    check(
        "nr_active_cancel_inactive (planted: a cancelled inactive item frees an active slot)",
        2,
        Some(Bug::InactiveCountedActive),
        cancel_inactive_vs_promotion,
    );
}
