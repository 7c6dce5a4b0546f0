//! B11, block-to-next-start latency: how soon concurrency management notices that a running
//! item blocked and starts the item waiting behind it. On a one-CPU runtime (one per-CPU
//! pool), item A waits until item B is queued behind it, takes the time, and sleeps 5 ms with
//! no hint; B records when it starts. Latency = B's start - the instant before A's sleep, over
//! 1,000 blocks (after 20 unmeasured ones, which also create the pool's second worker).
//!
//! Systems: `cmwq-switch` (the context-switch detector), `cmwq-sample` (the sampling monitor)
//! and `cmwq-hint` (A sleeps inside `cmwq::blocking`: the floor, no detection needed).
//! Metrics: `p50_us`, `p99_us`, `max_us`, `monitor_cpu_ms` (CPU time of the runtime's monitor
//! thread over the measured blocks). Where the kernel refuses perf events, `cmwq-switch` runs
//! the sampling monitor and says so (`detector` = 0).

use crate::measure::{quantile, threads_cpu_time};
use crate::Report;
use cmwq::{Detector, Runtime, Work};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BLOCKS: usize = 1000;
const WARMUP: usize = 20;
const SLEEP: Duration = Duration::from_millis(5);
const DEADLINE: Duration = Duration::from_secs(2);

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    for (sys, det, hint) in [
        ("cmwq-switch", Detector::Switch, false),
        ("cmwq-sample", Detector::Sample, false),
        ("cmwq-hint", Detector::Sample, true),
    ] {
        let rt = Runtime::builder().cpus(1).detector(det).build();
        let wq = rt.workqueue("b11").build().map_err(|e| format!("cmwq: {e}"))?;
        let mut lat = Vec::with_capacity(BLOCKS);
        let mut cpu0 = Duration::ZERO;
        for i in 0..WARMUP + BLOCKS {
            if i == WARMUP {
                cpu0 = threads_cpu_time("cmwq-monitor") + threads_cpu_time("cmwq-detector");
            }
            let b_queued = Arc::new(AtomicBool::new(false));
            let blocked_at = Arc::new(Mutex::new(None::<Instant>));
            let (a_done_tx, a_done) = mpsc::channel::<()>();
            let (b_tx, b_started) = mpsc::channel::<Instant>();
            let (q, at) = (b_queued.clone(), blocked_at.clone());
            let a = Work::named("b11-a", move |_| {
                while !q.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }

                *at.lock().unwrap() = Some(Instant::now());
                if hint {
                    cmwq::blocking(|| thread::sleep(SLEEP));
                } else {
                    thread::sleep(SLEEP);
                }
                let _ = a_done_tx.send(());
            });
            let b = Work::named("b11-b", move |_| {
                let _ = b_tx.send(Instant::now());
            });
            assert!(wq.queue_on(0, &a), "b11: A refused");
            assert!(wq.queue_on(0, &b), "b11: B refused");
            b_queued.store(true, Ordering::Release);
            let started = b_started.recv_timeout(DEADLINE).map_err(|_| format!("b11 {sys}: B never started"))?;
            a_done.recv_timeout(DEADLINE).map_err(|_| format!("b11 {sys}: A never finished"))?;
            let at = blocked_at.lock().unwrap().ok_or("b11: A did not record its block")?;
            if i >= WARMUP {
                lat.push(started.saturating_duration_since(at));
            }
        }
        let monitor_cpu = (threads_cpu_time("cmwq-monitor") + threads_cpu_time("cmwq-detector")).saturating_sub(cpu0);
        let switch_ran = rt.detector() == Detector::Switch;
        drop(wq);
        drop(rt);
        let us = |q: f64, v: &mut [Duration]| quantile(v, q).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
        let (p50, p99, max) = (us(0.5, &mut lat), us(0.99, &mut lat), us(1.0, &mut lat));
        r.say(&format!(
            "b11 {sys:<12} p50 {p50:>8.1} us  p99 {p99:>8.1} us  max {max:>8.1} us  monitor CPU {:.1} ms{}",
            monitor_cpu.as_secs_f64() * 1e3,
            if det == Detector::Switch && !switch_ran { "  (perf events refused here: sampling ran)" } else { "" }
        ));
        r.record("b11", sys, "p50_us", p50);
        r.record("b11", sys, "p99_us", p99);
        r.record("b11", sys, "max_us", max);
        r.record("b11", sys, "monitor_cpu_ms", monitor_cpu.as_secs_f64() * 1e3);
        r.record("b11", sys, "detector", f64::from(u8::from(switch_ran)));
    }
    let p50 = |s| r.get("b11", s, "p50_us").unwrap_or(f64::NAN);
    let (sw, hint) = (p50("cmwq-switch"), p50("cmwq-hint"));
    let p99 = r.get("b11", "cmwq-switch", "p99_us").unwrap_or(f64::NAN);
    r.record("b11", "cmwq-switch", "ratio_vs_hint_p50", sw / hint);
    r.record("b11", "cmwq-switch", "meets_target", f64::from(u8::from(sw <= 30.0 && p99 <= 300.0 && sw <= 3.0 * hint)));
    Ok(())
}
