//! B9, ordered queue: one producer submits 1,000,000 one-shot items to a queue that runs them
//! one at a time in submission order; `items_per_s` is items over the time from the first
//! submission until the last item has run, and `in_order` is 1 if every item ran exactly in
//! submission order (item k advances a shared counter from k to k+1 with one
//! compare-exchange, which fails for an item out of turn). It measures what strict ordering
//! costs: an ordered workqueue (`alloc_ordered_workqueue`: unbound, `max_active` 1) against
//! the natural alternative, one consumer thread `recv()`ing boxed closures from a crossbeam
//! channel (DESIGN.md section 6: cmwq at least half the single consumer's rate;
//! `meets_target` is `ratio_vs_crossbeam` >= 0.5).
//!
//! cmwq submits with `Workqueue::spawn` on a `.ordered()` workqueue, like the peers' closures;
//! `tokio` is an unbounded `tokio::sync::mpsc` channel drained by one task. Each system runs
//! `RUNS` times, the systems taking turns run by run; the median rate is reported (`in_order`
//! must hold in every run).

use crate::measure::{interleaved, median, Latch};
use crate::Report;
use cmwq::Runtime;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const ITEMS: u64 = 1_000_000;
/// A run is cut here (submissions stop, and the rate is what it reached).
const DEADLINE: Duration = Duration::from_secs(5);
/// Runs per system, interleaved with the other systems' runs; the median is reported.
const RUNS: usize = 5;
const B9_SYSTEMS: &[&str] = &["cmwq", "cmwq-sample", "tokio", "crossbeam"];

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The order check shared by one run's items.
struct Order {
    next: AtomicU64,
    out_of_order: AtomicU64,
    left: Latch,
}

impl Order {
    /// Item `k`'s body.
    fn step(&self, k: u64) {
        if self.next.compare_exchange(k, k + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            self.out_of_order.fetch_add(1, Ordering::Relaxed);
            self.next.store(k + 1, Ordering::Release);
        }
        self.left.count_down();
    }
}

/// One run: (items per second, in order).
fn one_run(sys: &str, ncpu: usize) -> Result<(f64, bool), String> {
    // Leaked (a few words per run) so items carry a plain reference, not a reference count.
    let o: &'static Order = Box::leak(Box::new(Order {
        next: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        left: Latch::counting(ITEMS as usize),
    }));
    let submit_all = |submit: &mut dyn FnMut(u64)| -> (f64, bool) {
        let t0 = Instant::now();
        let deadline = t0 + DEADLINE;
        let mut submitted = ITEMS;
        for k in 0..ITEMS {
            if k % 4096 == 0 && Instant::now() >= deadline {
                submitted = k;
                break;
            }
            submit(k);
        }
        o.left.wait_until(deadline);
        let elapsed = t0.elapsed();
        let ran = ITEMS - o.left.remaining() as u64;
        let in_order = o.out_of_order.load(Ordering::Relaxed) == 0 && ran <= submitted;
        (ran as f64 / elapsed.as_secs_f64(), in_order)
    };
    Ok(match sys {
        "cmwq" | "cmwq-sample" => {
            let det = if sys == "cmwq" { cmwq::Detector::Switch } else { cmwq::Detector::Sample };
            let rt = Runtime::builder().cpus(ncpu).detector(det).build();
            let wq = rt.workqueue("b9").ordered().build().map_err(|e| format!("cmwq: {e}"))?;
            let out = submit_all(&mut |k| assert!(wq.spawn(move || o.step(k)), "cmwq refused an item"));
            drop(wq);
            drop(rt);
            out
        }
        "tokio" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(ncpu)
                .build()
                .map_err(|e| format!("tokio: {e}"))?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
            rt.spawn(async move {
                while let Some(job) = rx.recv().await {
                    job();
                }
            });
            let out = submit_all(&mut |k| tx.send(Box::new(move || o.step(k))).expect("the consumer task is gone"));
            drop(tx);
            rt.shutdown_timeout(Duration::from_secs(10));
            out
        }
        _ => {
            let (tx, rx) = crossbeam_channel::unbounded::<Job>();
            let consumer = thread::Builder::new()
                .name("b9-consumer".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .map_err(|e| format!("crossbeam: {e}"))?;
            let out = submit_all(&mut |k| tx.send(Box::new(move || o.step(k))).expect("the consumer is gone"));
            drop(tx);
            let _ = consumer.join();
            out
        }
    })
}

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    let ncpu = r.ncpu;
    let results = interleaved(B9_SYSTEMS, RUNS, |sys| one_run(sys, ncpu))?;
    for (&sys, runs) in B9_SYSTEMS.iter().zip(results) {
        let in_order = runs.iter().all(|&(_, ordered)| ordered);
        let mut rates: Vec<f64> = runs.into_iter().map(|(rate, _)| rate).collect();
        let median = median(&mut rates);
        r.say(&format!(
            "b9 {sys:<10} {:>6.2} M items/s (runs: {})  in order: {in_order}",
            median / 1e6,
            rates.iter().map(|v| format!("{:.2}", v / 1e6)).collect::<Vec<_>>().join(" ")
        ));
        r.record("b9", sys, "items_per_s", median);
        r.record("b9", sys, "in_order", f64::from(u8::from(in_order)));
    }
    let base = r.get("b9", "crossbeam", "items_per_s").unwrap_or(f64::NAN);
    for sys in ["cmwq", "tokio"] {
        let v = r.get("b9", sys, "items_per_s").unwrap_or(f64::NAN);
        r.record("b9", sys, "ratio_vs_crossbeam", v / base);
    }
    let on = r.get("b9", "cmwq", "items_per_s").unwrap_or(f64::NAN);
    let off = r.get("b9", "cmwq-sample", "items_per_s").unwrap_or(f64::NAN);
    r.record("b9", "cmwq", "ratio_detector_on_vs_off", on / off);
    let ratio = r.get("b9", "cmwq", "ratio_vs_crossbeam").unwrap_or(0.0);
    let ordered = r.get("b9", "cmwq", "in_order").unwrap_or(0.0);
    r.record("b9", "cmwq", "meets_target", f64::from(u8::from(ratio >= 0.5 && ordered == 1.0)));
    Ok(())
}
