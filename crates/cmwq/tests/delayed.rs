//! Delayed work on the manual clock (kernel-notes §3.7): timers fire when the test moves time, never
//! because the machine was slow. Short real sleeps only check that something did *not* happen.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{DelayedWork, ManualClock, Runtime, Work, Workqueue};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{wait_for, within_deadline};

fn setup() -> (ManualClock, Runtime, Workqueue) {
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(1).clock(&clock).build();
    let wq = rt.workqueue("delayed").unbound().build().unwrap();
    (clock, rt, wq)
}

fn counted(n: &Arc<AtomicUsize>) -> DelayedWork {
    let n = n.clone();
    DelayedWork::new(move |_: &Work| {
        n.fetch_add(1, Ordering::SeqCst);
    })
}

fn not_yet(n: &AtomicUsize, expect: usize) {
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(n.load(Ordering::SeqCst), expect, "a timer fired early");
}

#[test]
fn fires_when_the_clock_reaches_the_delay() {
    let (clock, _rt, wq) = setup();
    let n = Arc::new(AtomicUsize::new(0));
    let d = counted(&n);
    assert!(wq.queue_delayed(&d, Duration::from_millis(50)));
    assert!(d.is_pending());
    assert!(!wq.queue_delayed(&d, Duration::from_millis(1)), "already pending (armed)");
    clock.advance(Duration::from_millis(49));
    not_yet(&n, 0);
    clock.advance(Duration::from_millis(1));
    wait_for("the timer", || n.load(Ordering::SeqCst) == 1);
    wait_for("idle", || !d.is_pending());
}

#[test]
fn zero_delay_queues_at_once() {
    let (_clock, _rt, wq) = setup();
    let n = Arc::new(AtomicUsize::new(0));
    let d = counted(&n);
    assert!(wq.queue_delayed(&d, Duration::ZERO));
    wait_for("the item, without moving the clock", || n.load(Ordering::SeqCst) == 1);
}

#[test]
fn mod_delayed_returns_as_the_kernel_does() {
    let (clock, _rt, wq) = setup();
    let n = Arc::new(AtomicUsize::new(0));
    let d = counted(&n);
    assert!(!wq.mod_delayed(&d, Duration::from_millis(100)), "idle: false, and now armed");
    assert!(d.is_pending());
    assert!(wq.mod_delayed(&d, Duration::from_millis(300)), "armed: true, delay modified");
    clock.advance(Duration::from_millis(150));
    not_yet(&n, 0); // the first deadline passed but was replaced
    clock.advance(Duration::from_millis(150));
    wait_for("the re-armed timer", || n.load(Ordering::SeqCst) == 1);
    wait_for("idle", || !d.is_pending());
    // Debounce: many re-arms, one run.
    for i in 0..100 {
        let was = wq.mod_delayed(&d, Duration::from_millis(10));
        assert_eq!(was, i > 0);
        clock.advance(Duration::from_millis(5));
    }
    not_yet(&n, 1);
    clock.advance(Duration::from_millis(5));
    wait_for("the debounced run", || n.load(Ordering::SeqCst) == 2);
    // Zero delay queues at once.
    wait_for("idle", || !d.is_pending());
    assert!(!wq.mod_delayed(&d, Duration::ZERO));
    wait_for("immediate run", || n.load(Ordering::SeqCst) == 3);
}

#[test]
fn flush_runs_a_pending_timer_now() {
    let (_clock, _rt, wq) = setup();
    let n = Arc::new(AtomicUsize::new(0));
    let d = counted(&n);
    wq.queue_delayed(&d, Duration::from_secs(3600));
    assert!(support::bounded("d.flush()", || d.flush()), "flush waits for the item after firing its timer");
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!d.is_pending());
    assert!(!support::bounded("d.flush()", || d.flush()), "idle");
}

#[test]
fn cancel_and_cancel_sync_of_armed_items() {
    let (clock, _rt, wq) = setup();
    let n = Arc::new(AtomicUsize::new(0));
    let d = counted(&n);
    wq.queue_delayed(&d, Duration::from_millis(10));
    assert!(d.cancel());
    assert!(!d.is_pending());
    assert!(!d.cancel());
    clock.advance(Duration::from_millis(20));
    not_yet(&n, 0);
    wq.queue_delayed(&d, Duration::from_millis(10));
    assert!(d.cancel_sync());
    clock.advance(Duration::from_millis(20));
    not_yet(&n, 0);
    // Still usable.
    assert!(wq.queue_delayed(&d, Duration::from_millis(10)));
    clock.advance(Duration::from_millis(10));
    wait_for("the run", || n.load(Ordering::SeqCst) == 1);
}

#[test]
fn disabled_delayed_item_cannot_be_armed() {
    let (clock, _rt, wq) = setup();
    let n = Arc::new(AtomicUsize::new(0));
    let d = counted(&n);
    wq.queue_delayed(&d, Duration::from_millis(10));
    assert!(d.disable(), "disable cancels the armed timer");
    assert!(!wq.queue_delayed(&d, Duration::from_millis(10)));
    assert!(!wq.mod_delayed(&d, Duration::from_millis(10)), "mod of a disabled idle item: false, not armed");
    assert!(!d.is_pending());
    clock.advance(Duration::from_millis(50));
    not_yet(&n, 0);
    assert!(d.enable());
    assert!(wq.queue_delayed(&d, Duration::ZERO));
    wait_for("the run", || n.load(Ordering::SeqCst) == 1);
}

/// Destroying a workqueue with delayed items armed for it queues them at once and waits for
/// them: nothing is lost and nothing fires into a destroyed queue later.
#[test]
fn destroy_with_delayed_items_pending() {
    let (clock, rt, wq) = setup();
    let n = Arc::new(AtomicUsize::new(0));
    let items: Vec<DelayedWork> = (0..20).map(|_| counted(&n)).collect();
    for (i, d) in items.iter().enumerate() {
        assert!(wq.queue_delayed(d, Duration::from_secs(10 + i as u64)));
    }
    drop(wq);
    assert_eq!(n.load(Ordering::SeqCst), 20, "armed items were lost by destroy");
    assert!(items.iter().all(|d| !d.is_pending()));
    clock.advance(Duration::from_secs(60));
    not_yet(&n, 20);
    drop(rt);
}

/// Many delayed items firing at once, with cancels racing the timer: every arming is either
/// run or cancelled, exactly once.
#[test]
fn cancel_races_timer_expiry() {
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(2).clock(&clock).build();
    let wq = rt.workqueue("delayrace").build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let items: Vec<DelayedWork> = (0..500).map(|_| counted(&ran)).collect();
    let mut cancelled = 0;
    for round in 0..4 {
        for d in &items {
            assert!(wq.queue_delayed(d, Duration::from_millis(5)));
        }
        let c2 = clock.clone();
        let adv = std::thread::spawn(move || c2.advance(Duration::from_millis(5)));
        for (i, d) in items.iter().enumerate() {
            if (i + round) % 2 == 0 && (if i % 4 == 0 { d.cancel_sync() } else { d.cancel() }) {
                cancelled += 1;
            }
        }
        support::join("the clock advance", adv);
        for d in &items {
            support::bounded("d.flush()", || d.flush());
        }
    }
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(ran.load(Ordering::SeqCst) + cancelled, 4 * items.len());
}

/// Bug 1 of issue 9: destroying a workqueue while the timer of a delayed item armed for it
/// fires. The timer callback forgot the arming after queueing the item without waking the
/// destroyer, so a destroyer that had already consumed the item's completion waited forever.
/// Real clock, delays of 0 to 1 ms, so that the timer fires while `destroy` runs.
#[test]
fn destroy_racing_a_firing_timer_does_not_hang() {
    const ITERATIONS: u32 = 20000;
    let rt = Runtime::builder().cpus(2).build();
    let finished = within_deadline(move || {
        let n = Arc::new(AtomicUsize::new(0));
        let d = counted(&n);
        for i in 0..ITERATIONS {
            let wq = if i % 2 == 0 { rt.workqueue("dr").build() } else { rt.workqueue("dr").unbound().build() };
            let wq = wq.unwrap();
            // 0, 1 ms, and sub-millisecond delays around the time a queue_delayed plus a destroy
            // take, so that the timer fires before, during and after the destroy.
            let delay = match i % 16 {
                0 => Duration::ZERO,
                1 => Duration::from_millis(1),
                k => Duration::from_micros(u64::from(k) * 5),
            };
            assert!(wq.queue_delayed(&d, delay), "iteration {i}: the item was still pending");
            drop(wq);
            assert!(!d.is_pending(), "iteration {i}: destroy returned with the item pending");
            assert_eq!(n.load(Ordering::SeqCst), i as usize + 1, "iteration {i}: destroy lost the item");
        }
    });
    assert!(finished.is_some(), "destroy racing a timer: hung (or panicked: see above)");
}

/// Bug 2 of issue 9: `DelayedWork::flush` must return `true` whenever the item was pending
/// (armed, in transit or queued) at the call. It fired the timer (queueing the item) and then
/// returned what `Work::flush` found: `false` if a worker had run the item meanwhile. In even
/// iterations the clock stands still, so the item is armed at the call and `true` is the only
/// right answer. In odd ones a thread advances the clock so that the timer fires during the
/// flush (the callback holds the item in transit); the item may then also have started before
/// the call (the worker clears PENDING a moment before the function's first line), so there
/// the test checks only that the flush returns with the run done.
#[test]
fn flush_of_an_armed_item_always_reports_it_waited() {
    const ITERATIONS: usize = 2000;
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(2).clock(&clock).build();
    let wq = rt.workqueue("flushrace").unbound().build().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let d = counted(&n);
    let mut raced_false = 0;
    for i in 0..ITERATIONS {
        assert!(wq.queue_delayed(&d, Duration::from_millis(1)), "iteration {i}: still pending");
        let advancer = (i % 2 == 1).then(|| {
            let c = clock.clone();
            std::thread::spawn(move || c.advance(Duration::from_millis(1)))
        });
        let waited = d.flush();
        assert_eq!(n.load(Ordering::SeqCst), i + 1, "iteration {i}: flush returned before the run ended");
        match advancer {
            None => assert!(waited, "iteration {i}: flush of an armed item said it did not wait"),
            Some(a) => {
                raced_false += usize::from(!waited);
                wait_for("the clock advance", || a.is_finished());
                a.join().unwrap();
            }
        }
        assert!(!d.is_pending(), "iteration {i}: pending after the flush");
    }
    eprintln!("{raced_false} of {} raced flushes found the run already started", ITERATIONS / 2);
    assert!(!d.flush(), "idle");
}

/// Bug 4 of issue 9: any `Duration` is accepted. `queue_delayed(&d, Duration::MAX)` panicked
/// in the caller (adding to an `Instant`) after claiming PENDING, leaving the item pending
/// with no owner; `mod_delayed(&d, ZERO)` then spun forever. Now the deadline saturates at
/// `MAX_DELAY`: the item is armed, and cancel, mod_delayed and flush treat it as any other.
#[test]
fn any_delay_is_accepted() {
    let (clock, rt, wq) = setup();
    let finished = support::within_deadline(move || {
        let n = Arc::new(AtomicUsize::new(0));
        let d = counted(&n);
        assert!(wq.queue_delayed(&d, Duration::MAX));
        assert!(d.is_pending(), "armed");
        assert!(!wq.queue_delayed(&d, Duration::MAX), "already pending");
        assert!(d.cancel(), "cancel of the armed item");
        assert!(!d.is_pending());

        assert!(wq.queue_delayed(&d, Duration::MAX));
        assert!(wq.mod_delayed(&d, Duration::ZERO), "mod_delayed of the armed item: it was pending");
        wait_for("the run queued by mod_delayed", || n.load(Ordering::SeqCst) == 1);

        assert!(wq.queue_delayed_on(0, &d, Duration::MAX));
        assert!(support::bounded("d.flush()", || d.flush()), "flush fires the armed timer and waits");
        assert_eq!(n.load(Ordering::SeqCst), 2);

        assert!(!wq.mod_delayed(&d, Duration::MAX), "idle: false, and now armed");
        assert!(wq.mod_delayed(&d, Duration::MAX - Duration::from_nanos(1)));
        assert!(d.cancel_sync());

        // A timer armed for 1 ms still fires when the clock jumps by any amount; the clock
        // saturates instead of overflowing.
        assert!(wq.queue_delayed(&d, Duration::from_millis(1)));
        clock.advance(Duration::MAX);
        clock.advance(Duration::MAX);
        wait_for("the timer after a jump of Duration::MAX", || n.load(Ordering::SeqCst) == 3);
        assert_eq!(clock.now(), clock.now(), "a saturated clock stands still");
        assert!(wq.queue_delayed(&d, Duration::ZERO));
        wait_for("an item queued at once on a saturated clock", || n.load(Ordering::SeqCst) == 4);
        assert!(wq.queue_delayed(&d, Duration::MAX));
        drop(wq); // destroy fires the armed timer now
        assert_eq!(n.load(Ordering::SeqCst), 5);
        drop(rt);
    });
    assert!(finished.is_some(), "a call hung (or panicked: see above)");
}

/// Bug 4 of issue 9, the runtime's knobs: every duration knob at `Duration::MAX` on the real
/// clock. The monitor multiplied and added its ticks, the manager and the workers added the
/// cooldown, mayday and idle timeouts to `Instant`s: each overflow killed a service thread or
/// a worker. A burst of blocking items makes the unbound pool create workers (mayday timer,
/// then surplus idle workers: the idle timer) and the monitor tick; no thread may die.
#[test]
fn duration_knobs_at_max_kill_no_thread() {
    let spawner = support::CountingSpawner::new();
    let rt = Runtime::builder()
        .cpus(2)
        .spawner(spawner.clone())
        .idle_timeout(Duration::MAX)
        .create_cooldown(Duration::MAX)
        .cpu_intensive_thresh(Duration::MAX)
        .cm_tick(Duration::MAX, Duration::MAX)
        .mayday_timeouts(Duration::MAX, Duration::MAX)
        .build();
    let unbound = rt.workqueue("knobs-u").unbound().max_active(8).build().unwrap();
    let percpu = rt.workqueue("knobs").mem_reclaim().build().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    for round in 0..3 {
        for _ in 0..8 {
            let n1 = n.clone();
            assert!(unbound.spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                n1.fetch_add(1, Ordering::SeqCst);
            }));
            let n2 = n.clone();
            assert!(percpu.spawn(move || {
                cmwq::blocking(|| std::thread::sleep(Duration::from_millis(1)));
                n2.fetch_add(1, Ordering::SeqCst);
            }));
        }
        wait_for(&format!("round {round}"), || n.load(Ordering::SeqCst) == 16 * (round + 1));
        assert_eq!(spawner.died(), 0, "round {round}: a thread of the runtime panicked");
    }
    // The timer thread waits on the real clock for a deadline MAX_DELAY away, and still fires
    // a timer armed later for 1 ms.
    let far = counted(&n);
    assert!(unbound.queue_delayed(&far, Duration::MAX));
    std::thread::sleep(Duration::from_millis(5));
    let near = counted(&n);
    assert!(percpu.queue_delayed(&near, Duration::from_millis(1)));
    wait_for("the 1 ms timer", || n.load(Ordering::SeqCst) == 49);
    assert!(far.cancel());
    // Idle again: the monitor goes through its idle polls (cm_tick times a count).
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(spawner.died(), 0, "a thread of the runtime panicked");
    drop((unbound, percpu));
    drop(rt);
    wait_for("every thread of the runtime to exit", || spawner.live() == 0);
    assert_eq!(spawner.died(), 0, "a thread of the runtime panicked");
}
