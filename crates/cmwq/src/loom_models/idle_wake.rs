//! Model (d): the idle-to-busy worker hand-off (`pool::worker`, `kick_pool`,
//! `wake_after_unlock`): no lost wake-up. The real worker starts (created by the manager's
//! `create_worker`, which wakes it once), finds nothing, goes idle and parks, while the test
//! thread queues an item. Whatever the interleaving, the item runs: a lost wake-up leaves the
//! worker parked and the test waiting, which loom reports as a deadlock.
//!
//! Then the same with two queueings of one item, to see the worker clear PENDING while a
//! second queueing races it: the item runs once per accepted queueing.

use super::{check, counted_work, Fixture, Runs};
use crate::sync::plant::Bug;
use crate::sync::Arc;

fn queue_to_idle_worker() {
    let runs = Arc::new(Runs::default());
    let fx = Fixture::new(true);
    let w = counted_work(&runs);
    assert!(fx.queue(&w));
    runs.wait_for(1);
    fx.shutdown();
    assert_eq!(runs.get(), 1);
}

fn queue_twice_to_idle_worker() {
    let runs = Arc::new(Runs::default());
    let fx = Fixture::new(true);
    let w = counted_work(&runs);
    let accepted = usize::from(fx.queue(&w)) + usize::from(fx.queue(&w));
    runs.wait_for(accepted);
    fx.shutdown();
    assert_eq!(runs.get(), accepted, "every accepted queueing runs exactly once");
    assert!(!w.state().load().is_pending());
}

/// Two items queued at once from two threads onto the idle (or just idling) worker.
fn two_queuers_to_idle_worker() {
    let runs = Arc::new(Runs::default());
    let fx = Arc::new(Fixture::new(true));
    let (w1, w2) = (counted_work(&runs), counted_work(&runs));
    let queuer = {
        let fx = fx.clone();
        loom::thread::spawn(move || assert!(fx.queue(&w2)))
    };
    assert!(fx.queue(&w1));
    queuer.join().unwrap();
    runs.wait_for(2);
    Arc::try_unwrap(fx).ok().expect("the fixture is the test's alone now").shutdown();
    assert_eq!(runs.get(), 2);
}

#[test]
fn loom_idle_wake_queue_to_idle_worker() {
    check("idle_wake_queue_to_idle_worker", 3, None, queue_to_idle_worker);
}

#[test]
#[should_panic(expected = "deadlock")]
fn loom_idle_wake_planted_idle_after_unlock() {
    check(
        "idle_wake_queue_to_idle_worker (planted: idle after unlock)",
        3,
        Some(Bug::WorkerIdleAfterUnlock),
        queue_to_idle_worker,
    );
}

#[test]
fn loom_idle_wake_queue_twice() {
    check("idle_wake_queue_twice", 3, None, queue_twice_to_idle_worker);
}

#[test]
fn loom_idle_wake_two_queuers() {
    check("idle_wake_two_queuers", 2, None, two_queuers_to_idle_worker);
}

#[test]
#[should_panic(expected = "deadlock")]
fn loom_idle_wake_two_queuers_planted_idle_after_unlock() {
    check(
        "idle_wake_two_queuers (planted: idle after unlock)",
        2,
        Some(Bug::WorkerIdleAfterUnlock),
        two_queuers_to_idle_worker,
    );
}

#[test]
#[should_panic(expected = "deadlock")]
fn loom_idle_wake_queue_twice_planted_idle_after_unlock() {
    check(
        "idle_wake_queue_twice (planted: idle after unlock)",
        3,
        Some(Bug::WorkerIdleAfterUnlock),
        queue_twice_to_idle_worker,
    );
}
