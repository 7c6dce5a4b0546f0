//! B6, forward progress with thread creation capped (workloads `b6-k0`, `b6-k1`, `b6-k4`): the
//! chain of B5 made of two kinds of items. 8 waiters are submitted first, then 8 signallers;
//! waiter i blocks until signaller i has run, so every waiter waits for an item queued behind
//! it, and a pool that runs the waiters first needs 9 threads to finish. Thread creation is
//! capped at K more threads (K = 0, 1, 4). `completed` is 1 if every waiter finished within
//! 4 s, `makespan_ms` the time from the first submission until then (the deadline if not).
//!
//! cmwq follows the kernel's rule for interdependent reclaim work: waiters on one
//! `mem_reclaim` workqueue, signallers on another, every item on CPU 0's pool. Once both
//! workqueues (and their rescuers) exist, a [`FailingSpawner`] lets K more worker threads start
//! and refuses every later one (each per-CPU pool already has its boot worker). When the pool
//! can neither run nor create a worker, after `MAYDAY_INITIAL_TIMEOUT` (10 ms) both rescuers
//! are called: the waiters' rescuer blocks in one waiter, the signallers' rescuer runs the
//! signallers one by one, and the chain unwinds. cmwq also records `mayday` and `rescued`
//! (summed over both workqueues), and `meets_target` = `completed`: the claim holds when it is
//! 1 in all three workloads.
//!
//! The peers get the same cap as a pool size: max(K, 1) threads (rayon, threadpool, the
//! crossbeam pool; tokio's `spawn_blocking` with `max_blocking_threads(max(K, 1))`). They have
//! no rescuer, so their threads all wait on signallers that never start. As in B5, every wait
//! gives up 1 s after the deadline and a hung pool is leaked rather than joined.

use crate::measure::Latch;
use crate::peers::{CmwqKind, Pool, SYSTEMS};
use crate::Report;
use cmwq::{FailMode, FailingSpawner, Runtime, Work};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waiters (and signallers) in the chain.
const CHAIN: usize = 8;
/// 4 s rather than B5's 5 s: four hung peers then keep a workload under 20 s.
const DEADLINE: Duration = Duration::from_secs(4);
/// Blocked items give up this long after the deadline.
const GIVE_UP_AFTER: Duration = Duration::from_secs(1);

/// The workload name for a cap of `k` threads.
fn workload(k: usize) -> String {
    format!("b6-k{k}")
}

/// Runs B6 with thread creation capped at `k`.
pub(crate) fn run(r: &mut Report, k: usize) -> Result<(), String> {
    let name = workload(k);
    for &sys in SYSTEMS {
        let (completed, makespan_ms, extra) = if sys == "cmwq" {
            let o = cmwq_chain(r.ncpu, k)?;
            (o.completed, o.makespan_ms, Some(o))
        } else {
            let pool = peer(sys, k.max(1))?;
            let (completed, makespan_ms) = chain(&|f| pool.spawn(f));
            pool.finish(!completed);
            (completed, makespan_ms, None)
        };
        let state = if completed { "completed" } else { "HUNG     " };
        match &extra {
            Some(o) => r.say(&format!(
                "{name} {sys:<10} {state}  {makespan_ms:>8.1} ms  mayday {}  rescued {}  workers spawned {}  \
                 refused {}",
                o.mayday, o.rescued, o.spawned, o.refused
            )),
            None => r.say(&format!("{name} {sys:<10} {state}  {makespan_ms:>8.1} ms  ({} threads)", k.max(1))),
        }
        r.record(&name, sys, "completed", f64::from(u8::from(completed)));
        r.record(&name, sys, "makespan_ms", makespan_ms);
        if let Some(o) = extra {
            r.record(&name, sys, "mayday", o.mayday as f64);
            r.record(&name, sys, "rescued", o.rescued as f64);
        }
    }
    let done = r.get(&name, "cmwq", "completed").unwrap_or(0.0);
    r.record(&name, "cmwq", "meets_target", done);
    Ok(())
}

/// A peer with `n` threads; tokio's blocking pool is capped at `n` threads.
fn peer(sys: &str, n: usize) -> Result<Pool, String> {
    match sys {
        "tokio" => Ok(Pool::Tokio(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(n)
                .build()
                .map_err(|e| format!("tokio: {e}"))?,
        )),
        _ => Pool::new(sys, n, CmwqKind::PerCpuOn(0)),
    }
}

/// Submits the chain through `submit(waiter or signaller)`: the 8 waiters first, then the 8
/// signallers. Returns whether every waiter finished in time, and the time taken.
fn chain(submit: &dyn Fn(Box<dyn FnOnce() + Send>)) -> (bool, f64) {
    // signalled[i] opens when signaller i has run; finished counts waiters done.
    let signalled: Arc<Vec<Latch>> = Arc::new((0..CHAIN).map(|_| Latch::new()).collect());
    let finished = Latch::counting(CHAIN);
    let gave_up = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let give_up_at = t0 + DEADLINE + GIVE_UP_AFTER;
    for i in 0..CHAIN {
        let (signalled, finished, gave_up) = (signalled.clone(), finished.clone(), gave_up.clone());
        submit(Box::new(move || {
            if !signalled[i].wait_until(give_up_at) {
                gave_up.store(true, Ordering::Relaxed);
            }
            finished.count_down();
        }));
    }
    for i in 0..CHAIN {
        let signalled = signalled.clone();
        submit(Box::new(move || signalled[i].count_down()));
    }
    let ok = finished.wait_until(t0 + DEADLINE) && !gave_up.load(Ordering::Relaxed);
    (ok, t0.elapsed().as_secs_f64() * 1e3)
}

/// What the cmwq run saw.
struct CmwqOutcome {
    completed: bool,
    makespan_ms: f64,
    mayday: u64,
    rescued: u64,
    spawned: usize,
    refused: usize,
}

/// The chain on cmwq: waiters on one mem_reclaim workqueue, signallers on another, all on CPU
/// 0, at most `k` worker threads created after the workqueues exist.
fn cmwq_chain(ncpu: usize, k: usize) -> Result<CmwqOutcome, String> {
    let sp = FailingSpawner::new(FailMode::Never);
    let rt = Runtime::builder().cpus(ncpu).spawner(sp.clone()).build();
    let waiters = rt.workqueue("b6-waiters").mem_reclaim().build().map_err(|e| format!("cmwq: {e}"))?;
    let signallers = rt.workqueue("b6-signallers").mem_reclaim().build().map_err(|e| format!("cmwq: {e}"))?;
    let spawned_before = sp.spawned();
    sp.set_mode(FailMode::After(k));
    // Waiters are submitted first, so the first CHAIN submissions go to `waiters`.
    let submitted = std::sync::atomic::AtomicUsize::new(0);
    let (completed, makespan_ms) = chain(&|f| {
        let wq = if submitted.fetch_add(1, Ordering::Relaxed) < CHAIN { &waiters } else { &signallers };
        let cell = std::sync::Mutex::new(Some(f));
        let w = Work::new(move |_| {
            if let Some(f) = cell.lock().unwrap_or_else(|e| e.into_inner()).take() {
                f()
            }
        });
        assert!(wq.queue_on(0, &w), "cmwq refused an item");
    });
    let (sw, ss) = (waiters.stats(), signallers.stats());
    let out = CmwqOutcome {
        completed,
        makespan_ms,
        mayday: sw.mayday + ss.mayday,
        rescued: sw.rescued + ss.rescued,
        spawned: sp.spawned() - spawned_before,
        refused: sp.refused(),
    };
    if completed {
        // Dropping the workqueues drains them; dropping the runtime joins its threads.
        drop(waiters);
        drop(signallers);
        drop(rt);
    } else {
        // Blocked items give up on their own; nothing waits for them.
        std::mem::forget((waiters, signallers, rt));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmwq_completes_through_the_rescuers() {
        for k in [0, 1] {
            let o = cmwq_chain(2, k).unwrap();
            assert!(o.completed, "k={k}");
            assert!(o.mayday >= 2 && o.rescued >= 1, "k={k}: mayday {} rescued {}", o.mayday, o.rescued);
            assert_eq!(o.spawned, k);
        }
    }
}
