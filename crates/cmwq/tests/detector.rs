//! The blocking detectors (docs/design.md §4.2, issue 11): a worker that blocks inside an item
//! without the `blocking` hint is replaced, whichever detector runs (`switch`: its
//! context-switch records; `sample`: its CPU clock and thread state); a worker that is only
//! preempted is not; the choice is visible and can be forced.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{Detector, ManualClock, Runtime};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{wait_for_within, Latch};

/// Both detectors, each asked for by the builder.
const BOTH: [Detector; 2] = [Detector::Switch, Detector::Sample];

#[test]
fn the_detector_in_effect_is_visible_and_sampling_can_be_forced() {
    let rt = Runtime::builder().cpus(1).detector(Detector::Sample).build();
    assert_eq!(rt.detector(), Detector::Sample);
    // The switch detector waits in real time: a manual clock gets the sampling monitor.
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(1).clock(&clock).detector(Detector::Switch).build();
    assert_eq!(rt.detector(), Detector::Sample);
    // Asking for `switch` is never an error: it runs where the kernel allows perf events.
    let rt = Runtime::builder().cpus(1).detector(Detector::Switch).build();
    assert!(matches!(rt.detector(), Detector::Switch | Detector::Sample));
    assert_eq!(Detector::from_name("switch"), Some(Detector::Switch));
    assert_eq!(Detector::from_name(" sample\n"), Some(Detector::Sample));
    assert_eq!(Detector::from_name("fast"), None);
    assert_eq!(Detector::Switch.name(), "switch");
}

/// Item A blocks (a latch wait: state S, no hint) while B waits behind it on a one-CPU pool:
/// B must start while A still blocks, and count as a concurrency-management wake-up. A spins
/// (runnable, counted) until B is queued, so that B surely waits behind a running A first: a
/// block noticed before B was queued would kick nobody, and B would then start without a
/// concurrency-management wake-up.
#[test]
fn a_blocked_worker_is_replaced_without_a_hint() {
    for det in BOTH {
        let rt = Runtime::builder().cpus(1).detector(det).build();
        let wq = rt.workqueue("blocked").build().unwrap();
        let gate = Latch::new();
        let (g, started) = (gate.clone(), Latch::new());
        let go = Arc::new(AtomicBool::new(false));
        let (s, go2) = (started.clone(), go.clone());
        assert!(wq.queue_on(
            0,
            &cmwq::Work::new(move |_| {
                s.open();
                while !go2.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                g.wait();
            })
        ));
        wait_for_within("A started", Duration::from_secs(10), || started.is_open());
        let second = Latch::new();
        let s2 = second.clone();
        assert!(wq.queue_on(0, &cmwq::Work::new(move |_| s2.open())));
        go.store(true, Ordering::Release);
        wait_for_within(
            &format!("B started while A blocks ({} detector in effect)", rt.detector().name()),
            Duration::from_secs(10),
            || second.is_open(),
        );
        assert!(!gate.is_open());
        assert!(wq.stats().cm_wakeup >= 1, "{:?}", wq.stats());
        gate.open();
        wait_for_within("both done", Duration::from_secs(10), || wq.stats().completed == 2);
    }
}

/// Item A only computes (no block; CPU-hog marking off) while other threads compete for its
/// CPU, so it is preempted again and again: a preempted worker still counts as running, so B
/// must not start before A ends.
#[test]
fn a_preempted_worker_is_not_replaced() {
    for det in BOTH {
        let rt = Runtime::builder().cpus(1).detector(det).cpu_intensive_thresh(Duration::ZERO).build();
        let wq = rt.workqueue("preempted").build().unwrap();
        let a_end = Arc::new(Mutex::new(None::<Instant>));
        let b_start = Arc::new(Mutex::new(None::<Instant>));
        let started = Latch::new();
        let (s, ae) = (started.clone(), a_end.clone());
        assert!(wq.queue_on(
            0,
            &cmwq::Work::new(move |_| {
                s.open();
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(300) {
                    std::hint::spin_loop();
                }
                *ae.lock().unwrap() = Some(Instant::now());
            })
        ));
        wait_for_within("A started", Duration::from_secs(10), || started.is_open());
        // Competitors for every CPU, so that A's worker is switched out while runnable.
        let stop = Arc::new(AtomicBool::new(false));
        let burners: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let bs = b_start.clone();
        assert!(wq.queue_on(0, &cmwq::Work::new(move |_| *bs.lock().unwrap() = Some(Instant::now()))));
        wait_for_within("both done", Duration::from_secs(20), || wq.stats().completed == 2);
        stop.store(true, Ordering::Relaxed);
        for b in burners {
            b.join().unwrap();
        }
        let (a, b) = (a_end.lock().unwrap().unwrap(), b_start.lock().unwrap().unwrap());
        assert!(b >= a, "B started {:?} before A ended ({} detector)", a - b, rt.detector().name());
        assert_eq!(wq.stats().cm_wakeup, 0, "{:?}", wq.stats());
    }
}
