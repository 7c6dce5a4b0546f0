//! B4, mixed CPU and blocking, the case concurrency management is for: 200 items that each
//! burn 2 ms of CPU, sleep 5 ms, then burn 2 ms, with no hint to the pool that they sleep.
//! The burns are measured on the thread's own CPU clock, so every system does the same work
//! however its threads share the cores.
//!
//! Metrics: `makespan_ms` (first submission to last item done), `peak_threads` (above the
//! count before the pool was built), `ctx_switches` (voluntary plus involuntary, whole
//! process, during the run), `ideal_ms` = total CPU time / cores (200 x 4 ms / ncpu, 400 ms on
//! two cores; never below one item's 9 ms) and `ratio_vs_ideal`. For cmwq also `cm_wakeups`
//! (workers started because one slept), `monitor_cpu_ms` (CPU time of its monitor thread,
//! which watches busy workers while items wait) and `detector` (1: the context-switch
//! detector ran, 0: the sampling monitor; `CMWQ_DETECTOR` chooses).
//!
//! cmwq uses a per-CPU workqueue with the items spread over the CPUs' pools (`queue_on`): a
//! worker that sleeps is noticed by the monitor and another starts, so the cores stay busy
//! without running more CPU-bound workers than cores (DESIGN.md section 6: within 1.2x of the
//! ideal). Fixed pools idle their threads through every sleep (about 200 x 9 ms / ncpu); tokio's
//! blocking pool runs every item on its own thread and oversubscribes the cores.

use crate::measure::{burn_cpu, threads_cpu_time, Latch, ThreadSampler, Usage};
use crate::peers::{CmwqKind, Pool, SYSTEMS};
use crate::Report;
use std::thread;
use std::time::{Duration, Instant};

const ITEMS: usize = 200;
const BURN: Duration = Duration::from_millis(2);
const SLEEP: Duration = Duration::from_millis(5);
const DEADLINE: Duration = Duration::from_secs(20);

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    let ncpu = r.ncpu;
    let total_cpu = ITEMS as f64 * 2.0 * BURN.as_secs_f64();
    let one_item = 2.0 * BURN.as_secs_f64() + SLEEP.as_secs_f64();
    let ideal_ms = (total_cpu / ncpu as f64).max(one_item) * 1e3;
    for &sys in SYSTEMS {
        let sampler = ThreadSampler::start();
        let pool = Pool::new(sys, ncpu, CmwqKind::PerCpuSpread)?;
        let latch = Latch::counting(ITEMS);
        let u0 = Usage::now();
        let t0 = Instant::now();
        for _ in 0..ITEMS {
            let l = latch.clone();
            pool.spawn(move || {
                burn_cpu(BURN);
                thread::sleep(SLEEP);
                burn_cpu(BURN);
                l.count_down();
            });
        }
        let done = latch.wait_until(t0 + DEADLINE);
        let makespan_ms = t0.elapsed().as_secs_f64() * 1e3;
        let switches = Usage::now().switches_since(&u0);
        let peak = sampler.stop();
        let cm_wakeups = pool.cmwq().map(|wq| wq.stats().cm_wakeup);
        let switch = pool.cmwq().map(|wq| wq.runtime().detector() == cmwq::Detector::Switch);
        let monitor_cpu = threads_cpu_time("cmwq-monitor");
        pool.finish(!done);
        r.say(&format!(
            "b4 {sys:<10} {makespan_ms:>8.1} ms ({:.2}x ideal)  peak threads {peak:>4}  ctx switches {switches}",
            makespan_ms / ideal_ms
        ));
        r.record("b4", sys, "makespan_ms", makespan_ms);
        r.record("b4", sys, "peak_threads", peak as f64);
        r.record("b4", sys, "ctx_switches", switches as f64);
        r.record("b4", sys, "items_done", (ITEMS - latch.remaining()) as f64);
        r.record("b4", sys, "ideal_ms", ideal_ms);
        r.record("b4", sys, "ratio_vs_ideal", makespan_ms / ideal_ms);
        if let Some(n) = cm_wakeups {
            r.record("b4", sys, "cm_wakeups", n as f64);
            r.record("b4", sys, "monitor_cpu_ms", monitor_cpu.as_secs_f64() * 1e3);
        }
        if let Some(sw) = switch {
            // 1: the context-switch detector ran; 0: the sampling monitor.
            r.record("b4", sys, "detector", f64::from(u8::from(sw)));
        }
    }
    let ratio = r.get("b4", "cmwq", "ratio_vs_ideal").unwrap_or(f64::NAN);
    r.record("b4", "cmwq", "meets_target", f64::from(u8::from(ratio <= 1.2)));
    Ok(())
}
