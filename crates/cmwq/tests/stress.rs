//! A bounded, seeded stress test with a ledger (spec/quality.md A11.3, A11.5).
//!
//! Producers drive a per-CPU, an unbound and an ordered workqueue at random: queue, queue_on,
//! spawn, queue_delayed, mod_delayed, cancel, cancel_sync, flush of one item, flush of a
//! workqueue, drain. Items sleep, spin, block in a hint, return at once, queue themselves
//! again, or (rarely) panic. At quiescence the ledger must show, for every item, accepted =
//! ran + cancelled; no item ran on two threads at once; max_active was never exceeded and was
//! reached; and every workqueue flush returned only after every plain item accepted before it
//! started had finished or been cancelled. An in-test watchdog turns a hang into a failure with
//! a state dump.
//!
//! Bounds: `WQ_STRESS_SECS` (default 2) of load; replay with `WQ_STRESS_SEED`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{DelayedWork, Runtime, Work, Workqueue};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{seed, Concurrency, Ledger, SplitMix64};

/// Plain items; the delayed ones follow them in the ledger.
const PLAIN: usize = 96;
const DELAYED: usize = 24;
const STALL: Duration = Duration::from_secs(10);

enum Item {
    Plain(Work),
    Delayed(DelayedWork),
}

struct Setup {
    wqs: Vec<Workqueue>,
    conc: Vec<Arc<Concurrency>>,
    /// (workqueue index, item); index in this vector = ledger id.
    items: Vec<(usize, Item)>,
    ledger: Arc<Ledger>,
    spawned_accepted: Arc<AtomicU64>,
    spawned_ran: Arc<AtomicU64>,
    panics: Arc<AtomicU64>,
    flush_checks: AtomicU64,
}

fn body(id: usize, kind: u64, ledger: &Ledger, c: &Concurrency, wq: &Workqueue, w: &Work) {
    ledger.enter(id);
    c.enter();
    /// Leaves the ledger even if the item panics.
    struct Exit<'a>(&'a Ledger, &'a Concurrency, usize);
    impl Drop for Exit<'_> {
        fn drop(&mut self) {
            self.1.exit();
            self.0.exit(self.2);
        }
    }
    let _exit = Exit(ledger, c, id);
    let runs = ledger.ran[id].load(Ordering::SeqCst);
    match kind {
        0 => std::thread::sleep(Duration::from_micros(300)),
        1 => {
            let t = Instant::now();
            while t.elapsed() < Duration::from_micros(200) {
                std::hint::spin_loop();
            }
        }
        2 => cmwq::blocking(|| std::thread::sleep(Duration::from_micros(200))),
        3 if runs % 3 == 1 && wq.queue(w) => {
            // Chained: queue itself again now and then.
            ledger.accepted[id].fetch_add(1, Ordering::SeqCst);
        }
        4 if runs % 50 == 7 => panic!("stress panic"),
        _ => {}
    }
}

fn build(rt: &Runtime, seed: u64) -> Setup {
    let panics = Arc::new(AtomicU64::new(0));
    let p2 = panics.clone();
    let quiet = move |_: &cmwq::WorkPanic<'_>| {
        p2.fetch_add(1, Ordering::SeqCst);
    };
    let wqs = vec![
        rt.workqueue("stress-percpu").max_active(3).panic_handler(quiet.clone()).build().unwrap(),
        rt.workqueue("stress-unbound").unbound().max_active(4).panic_handler(quiet.clone()).build().unwrap(),
        rt.workqueue("stress-ordered").ordered().panic_handler(quiet).build().unwrap(),
    ];
    let conc: Vec<Arc<Concurrency>> = wqs.iter().map(|_| Arc::new(Concurrency::default())).collect();
    let ledger = Ledger::new(PLAIN + DELAYED);
    let mut rng = SplitMix64::new(seed ^ 0xabcdef);
    let mut items = Vec::new();
    for id in 0..PLAIN + DELAYED {
        let delayed = id >= PLAIN;
        let q = if delayed { id % 2 } else { id % wqs.len() };
        let (ledger, c, wq) = (ledger.clone(), conc[q].clone(), wqs[q].clone());
        let kind = rng.below(5);
        let f = move |w: &Work| body(id, kind, &ledger, &c, &wq, w);
        items.push((q, if delayed { Item::Delayed(DelayedWork::new(f)) } else { Item::Plain(Work::new(f)) }));
    }
    Setup {
        wqs,
        conc,
        items,
        ledger,
        spawned_accepted: Arc::new(AtomicU64::new(0)),
        spawned_ran: Arc::new(AtomicU64::new(0)),
        panics,
        flush_checks: AtomicU64::new(0),
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
    let l = &s.ledger;
    for id in 0..s.items.len() {
        let (a, r, c) = (
            l.accepted[id].load(Ordering::SeqCst),
            l.ran[id].load(Ordering::SeqCst),
            l.cancelled[id].load(Ordering::SeqCst),
        );
        if a != r + c || pending(&s.items[id].1) {
            out += &format!("item {id}: accepted {a} ran {r} cancelled {c} pending {}\n", pending(&s.items[id].1));
        }
    }
    out
}

fn pending(i: &Item) -> bool {
    match i {
        Item::Plain(w) => w.is_pending(),
        Item::Delayed(d) => d.is_pending(),
    }
}

fn quiescent(s: &Setup) -> bool {
    let l = &s.ledger;
    l.total_accepted() == l.total_ran() + l.total_cancelled()
        && s.spawned_accepted.load(Ordering::SeqCst) == s.spawned_ran.load(Ordering::SeqCst)
        && s.items.iter().all(|(_, i)| !pending(i))
        && s.wqs.iter().all(|wq| wq.stats().in_flight() == 0)
}

fn progress(s: &Setup) -> u64 {
    s.ledger.total_ran() + s.ledger.total_cancelled() + s.spawned_ran.load(Ordering::SeqCst)
}

/// One random operation by a producer.
fn step(s: &Setup, rng: &mut SplitMix64, cpus: usize) {
    let l = &s.ledger;
    let id = rng.below(s.items.len() as u64) as usize;
    let (q, item) = &s.items[id];
    let wq = &s.wqs[*q];
    let op = rng.below(100);
    match item {
        Item::Plain(w) => match op {
            0..=49 => {
                // try_queue: refusals while another producer drains are expected, not warned.
                if wq.try_queue(w).unwrap_or(false) {
                    l.accepted[id].fetch_add(1, Ordering::SeqCst);
                }
            }
            50..=64 => {
                if wq.try_queue_on(rng.below(cpus as u64) as usize, w).unwrap_or(false) {
                    l.accepted[id].fetch_add(1, Ordering::SeqCst);
                }
            }
            65..=74 => {
                l.cancel(id, || w.cancel());
            }
            75..=79 => {
                l.cancel(id, || w.cancel_sync());
            }
            80..=87 => {
                w.flush();
            }
            88..=93 => {
                let ran = s.spawned_ran.clone();
                let one = Work::new(move |_| {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
                if wq.try_queue(&one).unwrap_or(false) {
                    s.spawned_accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
            94..=97 => flush_and_check(s, *q),
            98 => wq.drain(),
            _ => std::thread::sleep(Duration::from_micros(rng.below(200))),
        },
        Item::Delayed(d) => {
            let delay = Duration::from_micros(rng.below(3) * 500);
            match op {
                0..=39 => {
                    if wq.try_queue_delayed_on(None, d, delay).unwrap_or(false) {
                        l.accepted[id].fetch_add(1, Ordering::SeqCst);
                    }
                }
                40..=64 => {
                    // Ok(true): pending and moved; Err: refused while another producer drains,
                    // or disabled by a concurrent cancel_sync. Only Ok(false) is a new instance.
                    if let Ok(false) = wq.try_mod_delayed_on(None, d, delay) {
                        l.accepted[id].fetch_add(1, Ordering::SeqCst);
                    }
                }
                65..=79 => {
                    l.cancel(id, || d.cancel());
                }
                80..=89 => {
                    l.cancel(id, || d.cancel_sync());
                }
                _ => {
                    d.flush();
                }
            }
        }
    }
}

/// Flushes workqueue `q` and checks every plain item of it accepted before the call has
/// finished or been cancelled.
fn flush_and_check(s: &Setup, q: usize) {
    let l = &s.ledger;
    let ids: Vec<usize> = (0..PLAIN).filter(|&id| s.items[id].0 == q).collect();
    let before: Vec<u32> = ids.iter().map(|&id| l.accepted[id].load(Ordering::SeqCst)).collect();
    support::bounded("s.wqs[q].flush()", || s.wqs[q].flush());
    for (k, &id) in ids.iter().enumerate() {
        let settled = l.settled(id);
        assert!(settled >= before[k], "item {id}: flush returned with {settled} of {} settled", before[k]);
    }
    s.flush_checks.fetch_add(1, Ordering::Relaxed);
}

/// Keeps the deliberate panics of the items out of the test output.
fn quiet_item_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"stress panic") {
                prev(info);
            }
        }));
    });
}

fn run_stress(cpus: usize, producers: usize) {
    quiet_item_panics();
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
                let mut rng = SplitMix64::new(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                while !stop.load(Ordering::Relaxed) {
                    step(&s, &mut rng, cpus);
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
        assert!(handles.iter().all(|h| !h.is_finished()), "a producer died (seed {seed})");
    }
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        support::join(&format!("a producer (seed {seed})"), h);
    }
    // Quiescence: fire armed timers, flush, then the ledger must settle.
    for (_, i) in &s.items {
        if let Item::Delayed(d) = i {
            support::bounded("d.flush()", || d.flush());
        }
    }
    for q in 0..s.wqs.len() {
        flush_and_check(&s, q);
    }
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
        "stress: seed {seed}, {} ops, {} item runs, {} cancelled, {} spawns, {} panics, {} flush checks, max concurrency {:?}",
        ops.load(Ordering::SeqCst),
        l.total_ran(),
        l.total_cancelled(),
        s.spawned_ran.load(Ordering::SeqCst),
        s.panics.load(Ordering::SeqCst),
        s.flush_checks.load(Ordering::SeqCst),
        s.conc.iter().map(|c| c.max()).collect::<Vec<_>>()
    );
    for id in 0..s.items.len() {
        let (a, r, c) = (
            l.accepted[id].load(Ordering::SeqCst),
            l.ran[id].load(Ordering::SeqCst),
            l.cancelled[id].load(Ordering::SeqCst),
        );
        assert_eq!(a, r + c, "item {id}: accepted {a} != ran {r} + cancelled {c} (seed {seed})");
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
    let stats: Vec<_> = s.wqs.iter().map(|wq| wq.stats()).collect();
    let completed: u64 = stats.iter().map(|st| st.completed).sum();
    assert_eq!(completed, l.total_ran() + s.spawned_ran.load(Ordering::SeqCst), "stats disagree with the ledger");
    assert_eq!(stats.iter().map(|st| st.panicked).sum::<u64>(), s.panics.load(Ordering::SeqCst));
}

#[test]
fn stress_two_cpus_three_producers() {
    run_stress(2, 3);
}

#[test]
fn stress_one_cpu_four_producers() {
    run_stress(1, 4);
}
