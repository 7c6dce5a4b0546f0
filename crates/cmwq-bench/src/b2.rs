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
//! (plus the submitter's own, which is the same for all).

use crate::measure::{quantile, Usage};
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
        let t = trickle(&pool)?;
        pool.finish(false);
        r.say(&format!(
            "b2 {sys:<10} p50 {:>6.1} us  p99 {:>6.1} us  cpu {:>5.1} %",
            t.p50_us, t.p99_us, t.cpu_pct
        ));
        r.record("b2", sys, "p50_us", t.p50_us);
        r.record("b2", sys, "p99_us", t.p99_us);
        r.record("b2", sys, "cpu_pct", t.cpu_pct);
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
}

fn trickle(pool: &Pool) -> Result<Trickle, String> {
    let (tx, rx) = mpsc::channel::<Duration>();
    let mut one = || -> Result<Duration, String> {
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
    let cpu = Usage::now().cpu_since(&u0);
    let us = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    Ok(Trickle {
        p50_us: us(quantile(&mut lat, 0.50)),
        p99_us: us(quantile(&mut lat, 0.99)),
        cpu_pct: 100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
    })
}
