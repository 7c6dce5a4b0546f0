//! Model (f): `nr_active` and inactive promotion (`pool::pwq`'s `insert_work`,
//! `pwq_activate_first_inactive`, `pwq_dec_nr_in_flight`; the kernel's `pwq_dec_nr_active` and
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
use crate::pool::WorkerPool;
use crate::sync::plant::Bug;
use crate::sync::Arc;
use crate::work::Work;
use crate::workqueue::cancel;
use loom::thread;

/// The pwq's active limit in the model: one active item, the others wait.
const MAX_ACTIVE: usize = 1;

/// Checks `nr_active` of pwq `slot` against the items that are really active (work items of
/// the pwq on the worklist or on a worker's scheduled list, and workers running one of its
/// items), under one hold of the pool lock. Returns what the pwq counted then: `nr_active`,
/// its inactive items, its entries in flight.
fn check_active(pool: &Arc<WorkerPool>, slot: u32) -> (usize, usize, u32) {
    let c = pool.model_pwq_census(slot);
    let active = c.active;
    assert!(active <= c.max_active, "max_active exceeded: {active} items active, max_active {}", c.max_active);
    assert_eq!(c.nr_active, active, "nr_active out of step with the items active");
    (c.nr_active, c.nr_inactive, c.in_flight)
}

/// A work item that counts its runs on `runs` and checks the pwq's accounting while it runs.
fn checked_work(pool: &Arc<WorkerPool>, slot: u32, runs: &Arc<Runs>) -> Work {
    let (pool, runs) = (pool.clone(), runs.clone());
    Work::new(move |_w: &Work| {
        check_active(&pool, slot);
        runs.add();
    })
}

/// Items `[a, b, c]` queued in this order on a pwq with `max_active` 1 (`a` active, the others
/// waiting); a canceller takes item `victim` away while the worker runs them.
fn cancel_vs_promotion(victim: usize) {
    let fx = Fixture::new(true);
    let slot = fx.pwq.slot();
    fx.pool.model_store_max_active(slot, MAX_ACTIVE);
    let runs: [Arc<Runs>; 3] = Default::default();
    let [a, b, c] = [0, 1, 2].map(|i| checked_work(&fx.pool, slot, &runs[i]));
    for w in [&a, &b, &c] {
        assert!(fx.queue(w), "a fresh item is not pending");
    }
    let canceller = {
        let (pool, w) = (fx.pool.clone(), [&a, &b, &c][victim].clone());
        thread::spawn(move || {
            let cancelled = cancel::cancel(&w, None);
            check_active(&pool, slot);
            cancelled
        })
    };
    let cancelled = canceller.join().expect("the canceller");
    let expected: [usize; 3] = std::array::from_fn(|i| usize::from(i != victim || !cancelled));
    for (r, &n) in runs.iter().zip(&expected) {
        r.wait_for(n);
    }
    // The worker's accounting after the last run is done once it has exited.
    let pool = fx.pool.clone();
    fx.shutdown();
    let (active, inactive, in_flight) = check_active(&pool, slot);
    assert_eq!((active, inactive, in_flight), (0, 0, 0), "the pwq is not empty (active, inactive, in flight)");
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
