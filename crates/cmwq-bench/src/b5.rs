//! B5, an item that waits on an item queued behind it (deadlock freedom): a chain of 8 items
//! submitted in order 0..7, where item k waits until item k+1 has finished, and the last one
//! waits for nothing. It finishes only if all 8 can be in flight at once, so a pool must add
//! threads when its workers block. `completed` is 1 if item 0 finished within 5 s, and
//! `makespan_ms` the time from the first submission until then (the deadline if not).
//!
//! cmwq puts every item on CPU 0's pool of a per-CPU workqueue, with no hint that they block:
//! it completes only because the monitor notices each sleeping worker and another starts
//! (DESIGN.md section 6: completes every time). Fixed pools of ncpu threads hang: their
//! threads all wait on items that never start.
//!
//! A hung pool must not hang the benchmark: every wait gives up 1 s after the deadline, so
//! its threads drain on their own, and the pool is leaked rather than joined.

use crate::measure::Latch;
use crate::peers::{CmwqKind, Pool, SYSTEMS};
use crate::Report;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAIN: usize = 8;
const DEADLINE: Duration = Duration::from_secs(5);
/// Blocked items give up this long after the deadline.
const GIVE_UP_AFTER: Duration = Duration::from_secs(1);

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    for &sys in SYSTEMS {
        let pool = Pool::new(sys, r.ncpu, CmwqKind::PerCpuOn(0))?;
        let (completed, makespan_ms) = chain(&pool);
        pool.finish(!completed);
        r.say(&format!("b5 {sys:<10} {}  {makespan_ms:>8.1} ms", if completed { "completed" } else { "HUNG     " }));
        r.record("b5", sys, "completed", f64::from(u8::from(completed)));
        r.record("b5", sys, "makespan_ms", makespan_ms);
    }
    let done = r.get("b5", "cmwq", "completed").unwrap_or(0.0);
    r.record("b5", "cmwq", "meets_target", done);
    Ok(())
}

/// Runs one chain on `pool`; returns whether it completed in time, and the time taken.
fn chain(pool: &Pool) -> (bool, f64) {
    // finished[k] opens when item k has finished.
    let finished: Arc<Vec<Latch>> = Arc::new((0..CHAIN).map(|_| Latch::new()).collect());
    let gave_up = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let give_up_at = t0 + DEADLINE + GIVE_UP_AFTER;
    for k in 0..CHAIN {
        let (finished, gave_up) = (finished.clone(), gave_up.clone());
        pool.spawn(move || {
            if k + 1 < CHAIN && !finished[k + 1].wait_until(give_up_at) {
                gave_up.store(true, Ordering::Relaxed);
            }
            finished[k].count_down();
        });
    }
    let ok = finished[0].wait_until(t0 + DEADLINE) && !gave_up.load(Ordering::Relaxed);
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    (ok, ms)
}
