//! A bounded, seeded stress test with a ledger (spec/quality.md A11.3, A11.5).
//!
//! Producers queue items on a per-CPU, an unbound and an ordered workqueue at random (plain,
//! on a given CPU, from inside running items, and one-shot spawns); items sleep, spin or return
//! at once, and some queue their successor. At quiescence the ledger must show every accepted
//! queueing ran exactly once (each accepted queueing of a pending-free item runs once; a
//! queueing that returned false added nothing), no item ran on two threads at once, and
//! max_active was never exceeded and was reached. An in-test watchdog turns a hang into a
//! failure with a state dump.
//!
//! Bounds: `WQ_STRESS_SECS` (default 2) of load, replay with `WQ_STRESS_SEED`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{Runtime, Work, Workqueue};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{seed, Concurrency, Ledger, Rng};

const ITEMS: usize = 96;
const STALL: Duration = Duration::from_secs(10);

struct Setup {
    wqs: Vec<Workqueue>,
    /// Per workqueue: how many of its items run at once.
    conc: Vec<Arc<Concurrency>>,
    items: Vec<(usize, Work)>,
    ledger: Arc<Ledger>,
    spawned_accepted: Arc<AtomicU64>,
    spawned_ran: Arc<AtomicU64>,
}

fn build(rt: &Runtime, seed: u64) -> Setup {
    let wqs = vec![
        rt.workqueue("stress-percpu").max_active(3).build().unwrap(),
        rt.workqueue("stress-unbound").unbound().max_active(4).build().unwrap(),
        rt.workqueue("stress-ordered").ordered().build().unwrap(),
    ];
    let conc: Vec<Arc<Concurrency>> = wqs.iter().map(|_| Arc::new(Concurrency::default())).collect();
    let ledger = Ledger::new(ITEMS);
    let mut rng = Rng::new(seed ^ 0xabcdef);
    let items = (0..ITEMS)
        .map(|id| {
            let q = id % wqs.len();
            let (ledger, c, wq) = (ledger.clone(), conc[q].clone(), wqs[q].clone());
            let kind = rng.below(4);
            let w = Work::new(move |w: &Work| {
                ledger.enter(id);
                c.enter();
                match kind {
                    0 => std::thread::sleep(Duration::from_micros(300)),
                    1 => {
                        let t = Instant::now();
                        while t.elapsed() < Duration::from_micros(200) {
                            std::hint::spin_loop();
                        }
                    }
                    2 => cmwq::blocking(|| std::thread::sleep(Duration::from_micros(200))),
                    _ => {}
                }
                c.exit();
                ledger.exit(id);
                // Chained: queue itself again now and then (counted like any queueing).
                if kind == 3 && ledger.ran[id].load(Ordering::SeqCst) % 3 == 1 && wq.queue(w) {
                    ledger.accepted[id].fetch_add(1, Ordering::SeqCst);
                }
            });
            (q, w)
        })
        .collect();
    Setup {
        wqs,
        conc,
        items,
        ledger,
        spawned_accepted: Arc::new(AtomicU64::new(0)),
        spawned_ran: Arc::new(AtomicU64::new(0)),
    }
}

fn dump(rt: &Runtime, s: &Setup) -> String {
    let mut out = String::new();
    for p in rt.pools() {
        out += &format!("{p:?}\n");
    }
    for wq in &s.wqs {
        out += &format!("{}: {:?}\n", wq.name(), wq.stats());
    }
    for (id, (_, w)) in s.items.iter().enumerate() {
        let (a, r) = (s.ledger.accepted[id].load(Ordering::SeqCst), s.ledger.ran[id].load(Ordering::SeqCst));
        if a != r || w.is_pending() {
            out += &format!("item {id}: accepted {a} ran {r} {w:?}\n");
        }
    }
    out
}

fn quiescent(s: &Setup) -> bool {
    s.ledger.total_accepted() == s.ledger.total_ran()
        && s.spawned_accepted.load(Ordering::SeqCst) == s.spawned_ran.load(Ordering::SeqCst)
        && s.items.iter().all(|(_, w)| !w.is_pending())
        && s.wqs.iter().all(|wq| wq.stats().in_flight() == 0)
}

fn progress(s: &Setup) -> u64 {
    s.ledger.total_ran() + s.spawned_ran.load(Ordering::SeqCst)
}

fn run_stress(cpus: usize, producers: usize) {
    let seed = seed();
    let secs: f64 = std::env::var("WQ_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let rt = Runtime::builder().cpus(cpus).build();
    let s = Arc::new(build(&rt, seed));
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..producers)
        .map(|t| {
            let (s, stop, ops) = (s.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                while !stop.load(Ordering::Relaxed) {
                    let id = rng.below(ITEMS as u64) as usize;
                    let (q, w) = &s.items[id];
                    let wq = &s.wqs[*q];
                    let accepted = match rng.below(10) {
                        0..=5 => wq.queue(w),
                        6..=7 => wq.queue_on(rng.below(cpus as u64) as usize, w),
                        8 => {
                            let ran = s.spawned_ran.clone();
                            if wq.spawn(move || {
                                ran.fetch_add(1, Ordering::SeqCst);
                            }) {
                                s.spawned_accepted.fetch_add(1, Ordering::SeqCst);
                            }
                            false
                        }
                        _ => {
                            std::thread::sleep(Duration::from_micros(rng.below(200)));
                            false
                        }
                    };
                    if accepted {
                        s.ledger.accepted[id].fetch_add(1, Ordering::SeqCst);
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Load phase with an in-test watchdog.
    let start = Instant::now();
    let mut last = (progress(&s), Instant::now());
    while start.elapsed() < Duration::from_secs_f64(secs) {
        std::thread::sleep(Duration::from_millis(20));
        let p = progress(&s);
        if p != last.0 {
            last = (p, Instant::now());
        }
        assert!(last.1.elapsed() < STALL, "stress stalled (seed {seed}):\n{}", dump(&rt, &s));
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    // Quiescence, still watched.
    let mut last = (progress(&s), Instant::now());
    while !quiescent(&s) {
        std::thread::sleep(Duration::from_millis(5));
        let p = progress(&s);
        if p != last.0 {
            last = (p, Instant::now());
        }
        assert!(last.1.elapsed() < STALL, "not quiescent (seed {seed}):\n{}", dump(&rt, &s));
    }
    let l = &s.ledger;
    eprintln!(
        "stress: seed {seed}, {} ops, {} item runs, {} spawns, max concurrency per wq {:?}",
        ops.load(Ordering::SeqCst),
        l.total_ran(),
        s.spawned_ran.load(Ordering::SeqCst),
        s.conc.iter().map(|c| c.max()).collect::<Vec<_>>()
    );
    for id in 0..ITEMS {
        assert_eq!(
            l.accepted[id].load(Ordering::SeqCst),
            l.ran[id].load(Ordering::SeqCst),
            "item {id}: accepted != ran (seed {seed})"
        );
    }
    assert_eq!(l.overlaps.load(Ordering::SeqCst), 0, "an item ran on two threads at once (seed {seed})");
    let limits = [3 * cpus, 4, 1];
    for (i, c) in s.conc.iter().enumerate() {
        assert!(
            c.max() <= limits[i],
            "{}: {} ran at once, max_active {} (seed {seed})",
            s.wqs[i].name(),
            c.max(),
            limits[i]
        );
    }
    assert_eq!(s.conc[1].max(), 4, "the unbound max_active was never reached (seed {seed})");
    assert_eq!(s.conc[2].max(), 1);
    let total_completed: u64 = s.wqs.iter().map(|wq| wq.stats().completed).sum();
    assert_eq!(total_completed, l.total_ran() + s.spawned_ran.load(Ordering::SeqCst), "stats disagree with the ledger");
}

#[test]
fn stress_two_cpus_three_producers() {
    run_stress(2, 3);
}

#[test]
fn stress_one_cpu_four_producers() {
    run_stress(1, 4);
}
