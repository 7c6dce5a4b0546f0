//! Guarantee 6 of DESIGN.md §2, concurrency management on per-CPU pools: while a worker runs,
//! a new item waits; when every worker sleeps or blocks, another starts within a bounded
//! delay; the `blocking` hint acts at once; a CPU hog stops counting after 10 ms.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{ManualClock, Runtime};
use cmwq_testkit::burn_cpu;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{spawn_counted, wait_for, wait_for_within, Concurrency, Latch};

/// Spins for `d` of wall time (the item stays runnable: state R, CPU clock moving).
fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The hint acts at once: on a manual clock the monitor never ticks, so only the hint can have
/// started the second worker. The second item is queued while the first runs and before it
/// enters the hint, and the hint comes only once the pool's reserve worker is on the idle
/// list: otherwise the second item may start without a concurrency-management wake-up (queued
/// after the hint's kick found nothing waiting, or taken by a reserve still awake from its
/// creation), and `cm_wakeup` rightly stays 0 (a flake of 1 in about 40 runs before).
#[test]
fn blocking_hint_starts_another_worker_at_once() {
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(1).clock(&clock).build();
    let wq = rt.workqueue("hint").build().unwrap();
    let (gate, entered, proceed) = (Latch::new(), Latch::new(), Latch::new());
    let (g2, e2, p2) = (gate.clone(), entered.clone(), proceed.clone());
    assert!(wq.spawn(move || {
        e2.open();
        p2.wait();
        cmwq::blocking(|| g2.wait())
    }));
    wait_for_within("the first item running", Duration::from_secs(5), || entered.is_open());
    let second = Latch::new();
    let s2 = second.clone();
    assert!(wq.spawn(move || s2.open()));
    let pool0 = || rt.pools().into_iter().find(|p| p.cpu == Some(0) && !p.highpri).expect("CPU 0's pool");
    wait_for_within("the reserve worker idle", Duration::from_secs(5), || pool0().nr_idle >= 1);
    assert!(!second.is_open(), "the second item must wait while the first runs");
    proceed.open();
    wait_for_within("the second item while the first blocks in a hint", Duration::from_secs(5), || second.is_open());
    assert!(!gate.is_open());
    assert!(wq.stats().cm_wakeup >= 1, "{:?}", wq.stats());
    gate.open();
    wait_for("both", || wq.stats().completed == 2);
}

/// Without hints, a worker sleeping in a condvar is noticed by the monitor within a few ticks
/// and another worker takes the next item.
#[test]
fn sleeping_worker_is_noticed_without_hints() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("nohint").build().unwrap();
    let gate = Latch::new();
    let g2 = gate.clone();
    let started = Latch::new();
    let st2 = started.clone();
    wq.spawn(move || {
        st2.open();
        g2.wait();
    });
    started.wait();
    let t = Instant::now();
    let second = Latch::new();
    let s2 = second.clone();
    wq.spawn(move || s2.open());
    // Only that it is noticed at all is asserted, with the usual deadline: the delay is the
    // benchmarks' to measure (b4, b5). (A 2 s bound failed under a load average of 15.)
    wait_for("the second item while the first sleeps", || second.is_open());
    eprintln!("second item started {:?} after queueing", t.elapsed());
    // The first still sleeps (its gate is shut): the second ran beside it. Whether the
    // wake-up counts as the first item's `cm_wakeup` depends on the order of two events: if
    // the monitor saw the sleep before the second item was queued, nothing waited then, and
    // the queueing itself woke the idle worker (as the kernel's insert_work would); the count
    // is asserted deterministically by the hint test above.
    assert!(!gate.is_open());
    assert_eq!(wq.stats().started, 2, "{:?}", wq.stats());
    gate.open();
    wait_for("both", || wq.stats().completed == 2);
}

/// While a worker runs (CPU-bound, under the hog threshold), new items wait: one runs at a
/// time per per-CPU pool, and no extra workers are woken.
#[test]
fn running_worker_makes_new_items_wait() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("busy").build().unwrap();
    let c = Arc::new(Concurrency::default());
    let done = spawn_counted(&wq, 8, &c, || spin(Duration::from_millis(3)));
    wait_for("8 items", || done.load(Ordering::SeqCst) == 8);
    assert_eq!(c.max(), 1, "CPU-bound items of one per-CPU pool must run one at a time");
    assert_eq!(wq.stats().cm_wakeup, 0);
}

/// An item that hogs the CPU for over 10 ms stops counting toward concurrency: the next item
/// starts long before the hog ends, and the hog is counted as CPU-intensive.
#[test]
fn cpu_hog_stops_counting_after_threshold() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("hog").build().unwrap();
    let hog_done = Arc::new(AtomicUsize::new(0));
    let started = Latch::new();
    let (h2, st2) = (hog_done.clone(), started.clone());
    wq.spawn(move || {
        st2.open();
        burn_cpu(Duration::from_millis(300));
        h2.store(1, Ordering::SeqCst);
    });
    started.wait();
    let second = Latch::new();
    let s2 = second.clone();
    wq.spawn(move || s2.open());
    wait_for("the item behind the hog", || second.is_open());
    assert_eq!(hog_done.load(Ordering::SeqCst), 0, "the second item waited for the hog to end");
    let s = wq.stats();
    assert_eq!(s.cpu_intensive, 1, "{s:?}");
    wait_for("the hog", || wq.stats().completed == 2);
    let cpu = wq.stats().cpu_time;
    assert!(cpu >= Duration::from_millis(250), "sampled CPU time {cpu:?} for 300 ms of CPU burned");
}

/// The `cpu_intensive` flag: items never count toward concurrency, so CPU-bound items of such
/// a queue do not hold back each other on one per-CPU pool.
#[test]
fn cpu_intensive_queue_does_not_hold_back_items() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("intensive").cpu_intensive().build().unwrap();
    let c = Arc::new(Concurrency::default());
    // Each spins (runnable, never sleeping) until two have run at once, or the deadline: a
    // fixed 30 ms spin asserted that a second worker starts within 30 ms, a timing bound.
    let c2 = c.clone();
    let done = spawn_counted(&wq, 3, &c, move || {
        let t = Instant::now();
        while c2.max() < 2 && t.elapsed() < support::DEADLINE {
            std::hint::spin_loop();
        }
    });
    wait_for("3 items", || done.load(Ordering::SeqCst) == 3);
    assert!(c.max() >= 2, "cpu_intensive items ran one at a time");
}

/// The kernel documentation's example (workqueue.rst): w0 burns CPU, sleeps, burns again;
/// w1 and w2 burn, then sleep. With one worker at a time they run one after another; with
/// concurrency management w1 and w2 run while w0 sleeps. Asserted by the order of events (w1
/// and w2 both start before w0 ends), not by time: timing is for the benchmarks. w0 sleeps
/// (in a condvar, no hint) until w1 and w2 have started, and w1 until w2 has: each can start
/// only if the monitor noticed a sleep, so no sleep length has to outlast the monitor's
/// reaction (fixed 50 ms sleeps failed under a load average of 15). The queue is frozen while
/// the three are queued, so each sleep finds the items behind it waiting and counts a
/// `cm_wakeup`.
#[test]
fn kernel_doc_example_overlaps_sleep_with_work() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("docexample").freezable().build().unwrap();
    rt.freeze();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ev = |tag: &'static str| {
        let events = events.clone();
        move || events.lock().unwrap().push(tag)
    };
    let (w1_started, w2_started) = (Latch::new(), Latch::new());
    // Sleeps (no hint) until every latch is open; a condvar wait, so the thread is in state S.
    let sleep_until = |latches: Vec<Latch>| move || latches.iter().for_each(Latch::wait);
    let (s0, e0) = (ev("w0 start"), ev("w0 end"));
    let sleep0 = sleep_until(vec![w1_started.clone(), w2_started.clone()]);
    wq.spawn(move || {
        s0();
        burn_cpu(Duration::from_millis(5));
        sleep0();
        burn_cpu(Duration::from_millis(5));
        e0();
    });
    let (s1, e1, o1, sleep1) =
        (ev("w1 start"), ev("w1 end"), w1_started.clone(), sleep_until(vec![w2_started.clone()]));
    wq.spawn(move || {
        s1();
        o1.open();
        burn_cpu(Duration::from_millis(5));
        sleep1();
        e1();
    });
    let (s2, e2, o2) = (ev("w2 start"), ev("w2 end"), w2_started.clone());
    wq.spawn(move || {
        s2();
        o2.open();
        burn_cpu(Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(5));
        e2();
    });
    rt.thaw();
    wait_for("6 events", || events.lock().unwrap().len() == 6);
    let ev = events.lock().unwrap().clone();
    let at = |tag| ev.iter().position(|e| *e == tag).unwrap();
    assert!(at("w1 start") < at("w0 end") && at("w2 start") < at("w0 end"), "no overlap: {ev:?}");
    assert!(wq.stats().cm_wakeup >= 2, "{:?}", wq.stats());
}

/// CPU time is sampled on the monitor's tick, like the kernel's: items shorter than a tick are
/// credited in the totals (the time between two samples goes to the item running at the
/// second), so the sum over a queue matches the CPU its items burned.
#[test]
fn cpu_time_adds_up_for_short_items() {
    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("cputime").unbound().max_active(2).build().unwrap();
    for _ in 0..100 {
        wq.spawn(|| burn_cpu(Duration::from_millis(2)));
    }
    // A last long item keeps the workers sampled past the short ones.
    wq.spawn(|| burn_cpu(Duration::from_millis(30)));
    support::bounded("wq.flush()", || wq.flush());
    let cpu = wq.stats().cpu_time;
    eprintln!("cpu_time {cpu:?} for 230 ms burned");
    assert!(
        cpu >= Duration::from_millis(190) && cpu <= Duration::from_millis(300),
        "cpu_time {cpu:?} for 230 ms burned"
    );
}
