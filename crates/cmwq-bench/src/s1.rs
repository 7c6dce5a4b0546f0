//! S1, the rescuer series' head-of-line claim: a rescued item that blocks must not hold back
//! the other items of its workqueue once workers can be created again.
//!
//! A one-CPU runtime with a 20 ms create cooldown (so the manager retries soon) and a
//! [`FailingSpawner`]. CPU 0's pool is made to need a worker first: a blocker item of a
//! workqueue without `mem_reclaim` occupies its boot worker until the end (the pool creates
//! its idle reserve meanwhile). Then creation fails for good, and the `mem_reclaim`
//! workqueue gets a long item L (it blocks for 2 s) followed by 50 short ones. The reserve
//! wakes, becomes the manager and cannot create a worker; 10 ms later the rescuer is called
//! and takes L. 100 ms after L started, creation works again.
//!
//! `finish_ms` is the time from then until the 50 short items have all finished: with the
//! cursor rescuer (system `cmwq`, `RescuerAlgorithm::Cursor`) they stayed on the pool's
//! worklist, and the first worker the manager creates (within one cooldown) runs them; with
//! the pre-2025 rescuer (system `cmwq-legacy`, `RescuerAlgorithm::Legacy`) the rescuer had
//! taken them all along with L, so they wait out L's 2 s (about 1.9 s). `ratio_legacy_vs_new`
//! is legacy over cursor and `meets_target` is 1 if it is at least 10. Each system also
//! records `short_by_rescuer`, how many of the 50 the rescuer ran.

use crate::measure::Latch;
use crate::Report;
use cmwq::{FailMode, FailingSpawner, RescuerAlgorithm, Runtime, Work};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const SHORT: usize = 50;
/// How long the rescued item blocks.
const LONG: Duration = Duration::from_secs(2);
/// Creation works again this long after the long item started.
const STUCK_FOR: Duration = Duration::from_millis(100);
const COOLDOWN: Duration = Duration::from_millis(20);
/// Give up on any single wait after this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The target: the cursor rescuer finishes the short items this many times sooner.
const TARGET_RATIO: f64 = 10.0;

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    for (sys, algo) in [("cmwq", RescuerAlgorithm::Cursor), ("cmwq-legacy", RescuerAlgorithm::Legacy)] {
        let o = head_of_line(algo)?;
        r.say(&format!(
            "s1 {sys:<12} short items done {:>8.1} ms after creation works again ({} of {SHORT} by the rescuer)",
            o.finish_ms, o.by_rescuer
        ));
        r.record("s1", sys, "finish_ms", o.finish_ms);
        r.record("s1", sys, "short_by_rescuer", o.by_rescuer as f64);
    }
    let new = r.get("s1", "cmwq", "finish_ms").unwrap_or(f64::NAN);
    let legacy = r.get("s1", "cmwq-legacy", "finish_ms").unwrap_or(f64::NAN);
    let ratio = legacy / new;
    r.record("s1", "cmwq", "ratio_legacy_vs_new", ratio);
    r.record("s1", "cmwq", "meets_target", f64::from(u8::from(ratio >= TARGET_RATIO)));
    Ok(())
}

struct Outcome {
    finish_ms: f64,
    by_rescuer: usize,
}

/// Waits until `cond` holds, or fails after `TIMEOUT`.
fn wait_for(what: &str, cond: impl Fn() -> bool) -> Result<(), String> {
    crate::measure::wait_until_or_fail("s1", what, TIMEOUT, cond)
}

/// One run with the given rescuer algorithm.
fn head_of_line(algo: RescuerAlgorithm) -> Result<Outcome, String> {
    let sp = FailingSpawner::new(FailMode::Never);
    let rt = Runtime::builder().cpus(1).spawner(sp.clone()).create_cooldown(COOLDOWN).rescuer_algorithm(algo).build();
    let blk = rt.workqueue("s1-blocker").build().map_err(|e| format!("cmwq: {e}"))?;
    let wq = rt.workqueue("s1").mem_reclaim().build().map_err(|e| format!("cmwq: {e}"))?;
    let pool0 = || cmwq_testkit::cpu_pool(&rt, 0);

    // The boot worker blocks in the blocker until the end; the pool creates its reserve.
    let release = Latch::new();
    let give_up_at = Instant::now() + 4 * TIMEOUT;
    let rel = release.clone();
    assert!(blk.queue_on(
        0,
        &Work::new(move |_| {
            let _ = cmwq::blocking(|| rel.wait_until(give_up_at));
        })
    ));
    wait_for("a blocked worker and an idle reserve", || {
        let p = pool0();
        p.nr_workers == 2 && p.nr_idle == 1 && p.nr_running == 0 && p.worklist.is_empty()
    })?;

    sp.set_mode(FailMode::Always);
    let long_started: Arc<OnceLock<Instant>> = Arc::default();
    let started = long_started.clone();
    assert!(wq.queue_on(
        0,
        &Work::new(move |_| {
            let _ = started.set(Instant::now());
            thread::sleep(LONG);
        })
    ));
    let done = Latch::counting(SHORT);
    let last_done: Arc<Mutex<Option<Instant>>> = Arc::default();
    let by_rescuer = Arc::new(AtomicUsize::new(0));
    for _ in 0..SHORT {
        let (done, last_done, by_rescuer) = (done.clone(), last_done.clone(), by_rescuer.clone());
        assert!(wq.queue_on(
            0,
            &Work::new(move |_| {
                if thread::current().name().is_some_and(|n| n.starts_with("kworker/R-")) {
                    by_rescuer.fetch_add(1, Ordering::Relaxed);
                }
                let now = Instant::now();
                let mut l = last_done.lock().unwrap_or_else(|e| e.into_inner());
                *l = Some(l.map_or(now, |t| t.max(now)));
                drop(l);
                done.count_down();
            })
        ));
    }
    wait_for("the rescuer to start the long item", || long_started.get().is_some())?;
    let at = *long_started.get().expect("set") + STUCK_FOR;
    thread::sleep(at.saturating_duration_since(Instant::now()));
    let freed = Instant::now();
    sp.set_mode(FailMode::Never);
    let ok = done.wait_until(freed + TIMEOUT);
    let finish_ms = match *last_done.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(t) if ok => t.saturating_duration_since(freed).as_secs_f64() * 1e3,
        _ => f64::NAN,
    };
    release.count_down();
    if ok {
        // Dropping the workqueue waits for the long item; dropping the runtime joins its threads.
        drop(wq);
        drop(blk);
        drop(rt);
    } else {
        std::mem::forget((wq, blk, rt));
        return Err(format!("s1 ({algo:?}): the short items did not finish within {TIMEOUT:?}"));
    }
    Ok(Outcome { finish_ms, by_rescuer: by_rescuer.load(Ordering::Relaxed) })
}
