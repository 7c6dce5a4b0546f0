//! Model (c): a delayed item's timer firing (`DelayedTimer::timer_fn`, called by the timer
//! service's `fire_due`, the timer thread's step) against `grab_pending` (`cancel`) and
//! against `fire_now` (`flush`). Real runtime (`build_for_model`: no service threads; one
//! real worker on CPU 0's pool), real workqueue, the public `DelayedWork` API.
//!
//! * `cancel_vs_firing_timer`: the cancel either takes the armed timer, or finds the item in
//!   transit (the callback holds PENDING) and waits for it to land, then steals it from the
//!   pool, or finds it run. accepted = ran + cancelled, PENDING never owned twice (the state
//!   word's transitions assert it).
//! * `flush_vs_firing_timer`: `flush` returns only once the item has run, whoever queued it.

use super::check;
use super::{counted_work_fn, Fixture, Runs};
use crate::pool::create_worker;
use crate::sync::plant::Bug;
use crate::sync::Arc;
use crate::{DelayedWork, ManualClock, Runtime, Workqueue};
use std::time::Duration;

/// A model runtime with one real worker, a workqueue on it, a delayed item armed for 1 ms and
/// the clock moved past it (so the next `fire_due` fires it).
fn armed() -> (Runtime, Workqueue, DelayedWork, Arc<Runs>) {
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(1).pin_workers(false).clock(&clock).build_for_model();
    let pool = rt.shared().cpu_pools[0].clone();
    Fixture::reserve(&pool, true);
    create_worker(&pool).expect("create the worker");
    let wq = rt.workqueue("loom").build().expect("the workqueue");
    let runs = Arc::new(Runs::default());
    let d = DelayedWork::new(counted_work_fn(&runs));
    assert!(wq.queue_delayed(&d, Duration::from_millis(1)));
    clock.advance(Duration::from_millis(1));
    (rt, wq, d, runs)
}

/// Fires the due timer on a modelled timer thread.
fn fire(rt: &Runtime) -> loom::thread::JoinHandle<()> {
    let shared = rt.shared().clone();
    loom::thread::spawn(move || {
        let (fired, _) = shared.env.timers.fire_due().expect("not stopped");
        assert!(fired <= 1);
    })
}

fn cancel_vs_firing_timer() {
    let (rt, wq, d, runs) = armed();
    let timer = fire(&rt);
    let cancelled = usize::from(d.cancel());
    timer.join().unwrap();
    runs.wait_for(1 - cancelled);
    drop(wq);
    drop(rt);
    assert_eq!(runs.get(), 1 - cancelled, "accepted = ran + cancelled");
    assert!(!d.is_pending(), "PENDING left owned by nobody");
}

fn flush_vs_firing_timer() {
    let (rt, wq, d, runs) = armed();
    let timer = fire(&rt);
    let waited = d.flush();
    assert_eq!(runs.get(), 1, "flush returned before the armed item ran");
    assert!(waited, "flush of an armed item says it did not wait");
    timer.join().unwrap();
    drop(wq);
    drop(rt);
    assert_eq!(runs.get(), 1);
}

#[test]
fn loom_delayed_cancel_vs_firing_timer() {
    check("delayed_cancel_vs_firing_timer", 2, None, cancel_vs_firing_timer);
}

#[test]
#[should_panic(expected = "of an unowned item")] // set_target / set_queued / release_claim
fn loom_delayed_cancel_planted_in_transit_as_stolen() {
    check(
        "delayed_cancel_vs_firing_timer (planted: in transit taken as stolen)",
        2,
        Some(Bug::GrabInTransitAsStolen),
        cancel_vs_firing_timer,
    );
}

#[test]
fn loom_delayed_flush_vs_firing_timer() {
    check("delayed_flush_vs_firing_timer", 2, None, flush_vs_firing_timer);
}

#[test]
#[should_panic(expected = "flush returned before the armed item ran")]
fn loom_delayed_flush_planted_fire_now_no_wait() {
    check(
        "delayed_flush_vs_firing_timer (planted: fire_now does not wait)",
        2,
        Some(Bug::FireNowNoWait),
        flush_vs_firing_timer,
    );
}
