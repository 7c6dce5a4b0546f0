//! B2, wake-up latency and idle cost: one item every ~1 ms into a pool that has gone idle
//! between items. `p50_us`/`p99_us` are the latencies from just before the submission until
//! the item starts; `cpu_pct` is the process CPU time (`getrusage`, all threads) consumed
//! during the trickle divided by its wall time, x100. It shows each system's spin-versus-park
//! policy: a pool that spins while idle wins latency by burning CPU (DESIGN.md section 6: cmwq
//! p50 within 1.1x of the crossbeam-channel pool, and no busy-spinning while idle).
//!
//! cmwq uses a per-CPU workqueue (the kind of `system()`), fed with `Workqueue::spawn` from
//! the submitting thread, so the item goes to that CPU's pool as a kernel `queue_work` does.
//! Systems run one after another, each with its own fresh pool, so the CPU time is theirs
//! (plus the submitter's own, which is the same for all). `ctx_switches_per_item` (whole
//! process, voluntary and involuntary) shows how many threads each hand-off wakes; for cmwq,
//! `monitor_cpu_ms` is the CPU time its monitor thread used (warm-up and trickle).

use crate::measure::{quantile, threads_cpu_time, Usage};
use crate::peers::{CmwqKind, Pool, BASELINE, SYSTEMS};
use crate::Report;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Measured items per system.
const SAMPLES: usize = 500;
/// Items before measuring (thread start-up, first touches).
const WARMUP: usize = 20;
/// Pause between an item's start and the next submission.
const GAP: Duration = Duration::from_millis(1);

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    for &sys in SYSTEMS {
        let pool = Pool::new(sys, r.ncpu, CmwqKind::PerCpuLocal)?;
        let pool_is_cmwq = pool.cmwq().is_some();
        let t = trickle(&pool)?;
        let monitor_cpu = threads_cpu_time("cmwq-monitor");
        pool.finish(false);
        r.say(&format!(
            "b2 {sys:<10} p50 {:>6.1} us  p99 {:>6.1} us  cpu {:>5.1} %  {:.1} ctx switches/item",
            t.p50_us, t.p99_us, t.cpu_pct, t.switches_per_item
        ));
        r.record("b2", sys, "p50_us", t.p50_us);
        r.record("b2", sys, "p99_us", t.p99_us);
        r.record("b2", sys, "cpu_pct", t.cpu_pct);
        r.record("b2", sys, "ctx_switches_per_item", t.switches_per_item);
        if pool_is_cmwq {
            r.record("b2", sys, "monitor_cpu_ms", monitor_cpu.as_secs_f64() * 1e3);
        }
    }
    let base = r.get("b2", BASELINE, "p50_us").unwrap_or(f64::NAN);
    for &sys in SYSTEMS.iter().filter(|s| **s != BASELINE) {
        let v = r.get("b2", sys, "p50_us").unwrap_or(f64::NAN);
        r.record("b2", sys, "p50_ratio_vs_crossbeam", v / base);
    }
    let ratio = r.get("b2", "cmwq", "p50_ratio_vs_crossbeam").unwrap_or(f64::NAN);
    r.record("b2", "cmwq", "meets_target", f64::from(u8::from(ratio <= 1.1)));
    Ok(())
}

/// What one trickle measured.
struct Trickle {
    p50_us: f64,
    p99_us: f64,
    cpu_pct: f64,
    switches_per_item: f64,
}

fn trickle(pool: &Pool) -> Result<Trickle, String> {
    let (tx, rx) = mpsc::channel::<Duration>();
    let one = || -> Result<Duration, String> {
        thread::sleep(GAP);
        let tx = tx.clone();
        let submitted = Instant::now();
        pool.spawn(move || {
            let _ = tx.send(submitted.elapsed());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| format!("b2: {} did not run an item within 5 s", pool.name()))
    };
    for _ in 0..WARMUP {
        one()?;
    }
    let u0 = Usage::now();
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        lat.push(one()?);
    }
    let wall = t0.elapsed();
    let u1 = Usage::now();
    let cpu = u1.cpu_since(&u0);
    let us = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    Ok(Trickle {
        p50_us: us(quantile(&mut lat, 0.50)),
        p99_us: us(quantile(&mut lat, 0.99)),
        cpu_pct: 100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        switches_per_item: u1.switches_since(&u0) as f64 / SAMPLES as f64,
    })
}
