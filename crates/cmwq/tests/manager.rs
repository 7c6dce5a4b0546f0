//! The manager: worker creation on demand, failure and the create cooldown, idle culling with
//! the kernel's ratio (kernel-notes §4.5, §4.6), driven deterministically by a manual clock and a
//! spawner that fails on command.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{FailMode, FailingSpawner, ManualClock, Runtime, Work};
use cmwq_testkit::{count_threads, unbound_pool};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{wait_for, Latch};

/// A failed creation neither panics nor loses work: the items stay queued, the manager retries
/// only after the cooldown (read on the runtime's clock), and everything runs once creation
/// works again.
#[test]
fn failed_creation_retries_after_cooldown_and_loses_nothing() {
    let clock = ManualClock::new();
    let fail = Arc::new(AtomicBool::new(false));
    let spawner = FailingSpawner::new(FailMode::While(fail.clone()));
    let rt = Runtime::builder().cpus(1).clock(&clock).spawner(spawner.clone()).build();
    let wq = rt.workqueue("nofork").unbound().build().unwrap();
    assert_eq!(unbound_pool(&rt).nr_workers, 1);
    fail.store(true, Ordering::SeqCst);
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let d = done.clone();
        assert!(wq.spawn(move || {
            d.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // The only worker becomes manager, cannot create its reserve worker, and waits out the
    // cooldown instead of running items (the kernel's maybe_create_worker).
    wait_for("a refused creation", || spawner.refused() >= 1);
    std::thread::sleep(Duration::from_millis(50));
    let refused = spawner.refused();
    assert_eq!(refused, 1, "no retry before the cooldown");
    assert_eq!(done.load(Ordering::SeqCst), 0);
    let p = unbound_pool(&rt);
    assert!(p.manager_active && p.nr_pending == 5, "{p:?}");
    // Half a cooldown: still no retry.
    clock.advance(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(spawner.refused(), refused);
    // The cooldown passes with creation still failing: exactly one more attempt.
    clock.advance(Duration::from_millis(500));
    wait_for("the second attempt", || spawner.refused() == 2);
    // Creation works again: the next retry succeeds and every item runs. The manager reads the
    // clock for its next deadline only after the refusal seen above, so one advance could land
    // before that read and leave the deadline ahead of the clock for good (seen under TSan:
    // "timed out after 20s waiting for all items"): keep time moving until the items ran.
    fail.store(false, Ordering::SeqCst);
    wait_for("all items", || {
        clock.advance(Duration::from_millis(100));
        done.load(Ordering::SeqCst) == 5
    });
    // `completed` is counted once the function has returned.
    wait_for("the completions", || wq.stats().completed == 5);
}

/// A per-CPU pool whose first worker could not be created gets one as soon as creation works,
/// retried by the timer service every cooldown.
#[test]
fn pool_without_workers_retries_on_the_clock() {
    let clock = ManualClock::new();
    let spawner = FailingSpawner::new(FailMode::Always);
    let rt = Runtime::builder().cpus(1).clock(&clock).spawner(spawner.clone()).build();
    assert_eq!(rt.nr_workers(), 0);
    let wq = rt.workqueue("late").build().unwrap();
    let ran = Latch::new();
    let r2 = ran.clone();
    assert!(wq.queue(&Work::new(move |_| r2.open())));
    wait_for("the first attempt", || spawner.refused() >= 3); // 2 at build + 1 on queueing
    spawner.set_mode(FailMode::Never);
    assert!(!ran.is_open());
    clock.advance(Duration::from_secs(1));
    wait_for("the item", || ran.is_open());
}

/// Idle workers beyond the kernel's ratio are culled after the idle timeout, not before; two
/// idle workers are always kept, and the culled workers' threads exit. The idle-cull timer is
/// armed while the pool keeps too many idle workers, and disarmed once it no longer does.
#[test]
fn idle_workers_are_culled_after_timeout_keeping_the_ratio() {
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(1).clock(&clock).idle_timeout(Duration::from_secs(300)).build();
    let wq = rt.workqueue("burst").unbound().max_active(8).build().unwrap();
    let gate = Latch::new();
    let _open = gate.opener();
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let (g, s) = (gate.clone(), started.clone());
        wq.spawn(move || {
            s.fetch_add(1, Ordering::SeqCst);
            g.wait();
        });
    }
    wait_for("8 concurrent items", || started.load(Ordering::SeqCst) == 8);
    let peak = unbound_pool(&rt).nr_workers;
    assert!(peak >= 9, "8 blocked items and a reserve worker, got {peak}");
    // This pool's workers, by their thread names (`kworker/u<pool>:<worker>`; pool ids are
    // unique in the process, so other tests' runtimes do not count). A thread is named once it
    // runs, which may be a moment after the pool counts its worker.
    let threads = format!("kworker/u{}:", unbound_pool(&rt).id);
    wait_for("every worker thread in /proc", || count_threads(&threads) == peak);
    gate.open();
    wait_for("idle", || unbound_pool(&rt).nr_idle == peak);
    assert!(unbound_pool(&rt).idle_timer_armed, "{} idle workers and no idle-cull timer", peak);
    clock.advance(Duration::from_secs(299));
    std::thread::sleep(Duration::from_millis(50));
    let p = unbound_pool(&rt);
    assert_eq!(p.nr_workers, peak, "culled before the idle timeout");
    assert!(p.idle_timer_armed, "the idle-cull timer went away before the idle timeout");
    assert_eq!(count_threads(&threads), peak, "a worker thread exited before the idle timeout");
    clock.advance(Duration::from_secs(2));
    wait_for("culling down to two idle workers", || unbound_pool(&rt).nr_workers == 2);
    // The pool forgets a culled worker when it tells it to exit; its thread exits after that.
    wait_for("the culled workers' threads to exit", || count_threads(&threads) == 2);
    let p = unbound_pool(&rt);
    assert_eq!((p.nr_workers, p.nr_idle), (2, 2), "{p:?}");
    assert!(!p.idle_timer_armed, "the idle-cull timer still armed with only two idle workers: {p:?}");
}

/// Dropping the runtime joins every thread it created (no leaked threads).
#[test]
fn runtime_drop_joins_every_thread() {
    let spawner = FailingSpawner::new(FailMode::Never);
    let rt = Runtime::builder().cpus(2).spawner(spawner.clone()).build();
    let wq = rt.workqueue("j").unbound().build().unwrap();
    for _ in 0..20 {
        wq.spawn(|| std::thread::sleep(Duration::from_millis(2)));
    }
    drop(wq);
    assert!(spawner.live() > 0);
    drop(rt);
    assert_eq!(spawner.live(), 0, "threads left after the runtime was dropped");
}
