//! B1, tiny-item throughput: one producer submits 1,000,000 closures that only count down a
//! latch; `items_per_s` is items over the time from the first submission until the last item
//! has run. It measures the per-item cost of each system's queueing, hand-off and dispatch,
//! which is what a busy workqueue pays on every item (DESIGN.md section 6: cmwq at least as
//! fast as the crossbeam-channel pool). Each system runs `RUNS` times, the systems taking turns
//! run by run, and the median is reported (peers.md section 6).
//!
//! cmwq runs the closures through `Workqueue::spawn` on a per-CPU workqueue with default
//! flags (what `cmwq::system()` is, and what the kernel recommends for short items: "per-CPU
//! workqueues are normally preferred for performance"), so each item goes to the pool of the
//! CPU the producer runs on and concurrency management keeps one worker running per busy CPU.
//! The same flood on an unbound workqueue (`items_per_s_unbound`, default `max_active` 1024)
//! is reported too: unbound pools are not concurrency managed, so, as in the kernel, every
//! waiting item may wake or create another worker, and hundreds of workers then take turns
//! on one pool lock; `items_per_s_unbound_max_active_ncpu` caps them at ncpu.
//!
//! And the already-pending path (cmwq only): `ns_per_queue_pending` is the cost of
//! `Workqueue::queue` on an item that is already pending, which must be one atomic
//! read-modify-write (target under 10 ns). The item is made pending behind a blocked item on
//! an ordered workqueue, so it cannot run while 10,000,000 calls are timed, each returning
//! `false`.

use crate::measure::{interleaved, median, Latch};
use crate::peers::{CmwqKind, Pool, BASELINE, SYSTEMS};
use crate::Report;
use cmwq::{Runtime, Work};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Items per throughput run.
const ITEMS: usize = 1_000_000;
/// Runs per system, interleaved with the other systems' runs; the median is reported.
const RUNS: usize = 5;
/// Calls timed on the pending path.
const PENDING_CALLS: u64 = 10_000_000;
/// A run is cut here (submissions stop, and the rate is what it reached): tokio's
/// `spawn_blocking` runs well under 100,000 items/s and would take most of the time budget.
const DEADLINE: Duration = Duration::from_secs(4);
/// How long the pending-path blocker waits at most.
const BLOCKER_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    let ncpu = r.ncpu;
    let results = interleaved(SYSTEMS, RUNS, |sys| throughput(sys, ncpu, CmwqKind::PerCpuLocal))?;
    for (&sys, mut rates) in SYSTEMS.iter().zip(results) {
        let rate = median(&mut rates);
        r.say(&format!(
            "b1 {sys:<10} {:>6.2} M items/s (runs: {})",
            rate / 1e6,
            rates.iter().map(|v| format!("{:.2}", v / 1e6)).collect::<Vec<_>>().join(" ")
        ));
        r.record("b1", sys, "items_per_s", rate);
    }
    // The detector's cost: the same build with the sampling monitor instead.
    let mut runs = interleaved(&["cmwq", "cmwq-sample"], RUNS, |sys| throughput(sys, ncpu, CmwqKind::PerCpuLocal))?;
    let (on, off) = (median(&mut runs[0]), median(&mut runs[1]));
    r.say(&format!("b1 cmwq switch detector on {:.2} / off {:.2} M items/s ({:.3}x)", on / 1e6, off / 1e6, on / off));
    r.record("b1", "cmwq-sample", "items_per_s", off);
    r.record("b1", "cmwq", "ratio_detector_on_vs_off", on / off);
    let rate = throughput("cmwq", ncpu, CmwqKind::Unbound { max_active: 0 })?;
    r.say(&format!("b1 cmwq (unbound) {:>6.2} M items/s", rate / 1e6));
    r.record("b1", "cmwq", "items_per_s_unbound", rate);
    let rate = throughput("cmwq", ncpu, CmwqKind::Unbound { max_active: ncpu })?;
    r.say(&format!("b1 cmwq (unbound, max_active {ncpu}) {:>6.2} M items/s", rate / 1e6));
    r.record("b1", "cmwq", "items_per_s_unbound_max_active_ncpu", rate);

    let ns = pending_path(ncpu, r)?;
    let floor = rmw_floor();
    r.say(&format!("b1 cmwq already-pending queue: {ns:.2} ns/call (a bare atomic RMW here: {floor:.2} ns)"));
    r.record("b1", "cmwq", "ns_per_queue_pending", ns);
    r.record("b1", "cmwq", "ns_atomic_rmw_floor", floor);

    let base = r.get("b1", BASELINE, "items_per_s").unwrap_or(f64::NAN);
    for &sys in SYSTEMS.iter().filter(|s| **s != BASELINE) {
        let v = r.get("b1", sys, "items_per_s").unwrap_or(f64::NAN);
        r.record("b1", sys, "ratio_vs_crossbeam", v / base);
    }
    let ratio = r.get("b1", "cmwq", "ratio_vs_crossbeam").unwrap_or(0.0);
    r.record("b1", "cmwq", "meets_target", f64::from(u8::from(ratio >= 1.0 && ns < 10.0)));
    Ok(())
}

/// Items per second of one run of `ITEMS` tiny closures on a fresh pool of `sys`.
fn throughput(sys: &str, ncpu: usize, kind: CmwqKind) -> Result<f64, String> {
    let pool = Pool::new(sys, ncpu, kind)?;
    let latch = Latch::counting(ITEMS);
    let t0 = Instant::now();
    let deadline = t0 + DEADLINE;
    for i in 0..ITEMS {
        if i % 4096 == 0 && Instant::now() >= deadline {
            break;
        }
        let l = latch.clone();
        pool.spawn(move || l.count_down());
    }
    latch.wait_until(deadline);
    let elapsed = t0.elapsed();
    let ran = ITEMS - latch.remaining();
    // Items left over are finite and do not block: let the pool finish them.
    pool.finish(false);
    Ok(ran as f64 / elapsed.as_secs_f64())
}

/// Nanoseconds per bare `fetch_or` on a word whose bit is already set: the floor the
/// pending path is compared with on this machine.
fn rmw_floor() -> f64 {
    let word = AtomicU64::new(1);
    let t0 = Instant::now();
    let mut was_set = 0u64;
    for _ in 0..PENDING_CALLS {
        was_set += black_box(&word).fetch_or(1, Ordering::AcqRel) & 1;
    }
    black_box(was_set);
    t0.elapsed().as_nanos() as f64 / PENDING_CALLS as f64
}

/// Nanoseconds per `queue` call on an item that is already pending.
fn pending_path(ncpu: usize, r: &mut Report) -> Result<f64, String> {
    let rt = Runtime::builder().cpus(ncpu).build();
    let wq = rt.workqueue("b1-pending").ordered().build().map_err(|e| format!("cmwq: {e}"))?;
    let gate = Latch::new();
    let g = gate.clone();
    let blocker = Work::new(move |_| {
        g.wait_until(Instant::now() + BLOCKER_TIMEOUT);
    });
    let item = Work::new(|_| {});
    if !wq.queue(&blocker) || !wq.queue(&item) {
        return Err("b1: cmwq did not accept the blocker or the item".into());
    }
    let t0 = Instant::now();
    let mut accepted = 0u64;
    for _ in 0..PENDING_CALLS {
        accepted += u64::from(wq.queue(black_box(&item)));
    }
    let ns = t0.elapsed().as_nanos() as f64 / PENDING_CALLS as f64;
    gate.count_down();
    if accepted != 0 {
        r.say(&format!("b1 WARNING: cmwq accepted {accepted} queueings of an already-pending item"));
    }
    drop(wq);
    drop(rt);
    Ok(ns)
}
