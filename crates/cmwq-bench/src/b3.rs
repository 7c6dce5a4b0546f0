//! B3, blocking fan-out: 1,000 items that each sleep 10 ms (blocking I/O stand-ins).
//! `makespan_ms` runs from the first submission until the last item finished; `peak_threads`
//! is the most threads the process had above its count before the pool was built (sampled
//! every ~1 ms, so the pool's own threads count); `ideal_ms` is the critical path with the
//! allowed concurrency and `ratio_vs_ideal` is makespan over it.
//!
//! cmwq runs them on an unbound workqueue with `max_active` 256: four waves of 10 ms, so the
//! ideal is 40 ms with at most 256 items in flight. This shows the `max_active` knob: cmwq
//! should come within 1.2x of that, where fixed pools of ncpu threads take 1000 x 10 ms /
//! ncpu (about 5 s on two cores, 10x or more of the ideal) and tokio's blocking pool starts
//! hundreds of threads. A run is cut at 20 s and reports what it reached (`items_done`).

use crate::measure::{Latch, ThreadSampler};
use crate::peers::{CmwqKind, Pool, SYSTEMS};
use crate::Report;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ITEMS: usize = 1_000;
const SLEEP: Duration = Duration::from_millis(10);
const MAX_ACTIVE: usize = 256;
const DEADLINE: Duration = Duration::from_secs(20);

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    let waves = ITEMS.div_ceil(MAX_ACTIVE) as f64;
    let ideal_ms = waves * SLEEP.as_secs_f64() * 1e3;
    for &sys in SYSTEMS {
        let sampler = ThreadSampler::start();
        let pool = Pool::new(sys, r.ncpu, CmwqKind::Unbound { max_active: MAX_ACTIVE })?;
        let latch = Arc::new(Latch::new(ITEMS));
        let t0 = Instant::now();
        for _ in 0..ITEMS {
            let l = latch.clone();
            pool.spawn(move || {
                thread::sleep(SLEEP);
                l.count_down();
            });
        }
        let done = latch.wait_until(t0 + DEADLINE);
        let makespan_ms = t0.elapsed().as_secs_f64() * 1e3;
        let peak = sampler.stop();
        let items_done = ITEMS - latch.remaining();
        pool.finish(!done);
        r.say(&format!(
            "b3 {sys:<10} {makespan_ms:>8.1} ms ({:.2}x ideal)  peak threads {peak:>4}  done {items_done}/{ITEMS}",
            makespan_ms / ideal_ms
        ));
        r.record("b3", sys, "makespan_ms", makespan_ms);
        r.record("b3", sys, "peak_threads", peak as f64);
        r.record("b3", sys, "items_done", items_done as f64);
        r.record("b3", sys, "ideal_ms", ideal_ms);
        r.record("b3", sys, "ratio_vs_ideal", makespan_ms / ideal_ms);
    }
    let ratio = r.get("b3", "cmwq", "ratio_vs_ideal").unwrap_or(f64::NAN);
    r.record("b3", "cmwq", "meets_target", f64::from(u8::from(ratio <= 1.2)));
    Ok(())
}
