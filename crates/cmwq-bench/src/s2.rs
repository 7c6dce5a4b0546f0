//! S2, the rescuer series' scan-cost claim: with the cursor, rescuing k items spread over a
//! worklist of M entries visits O(M) entries in all; rescanning from the head for every item
//! (the natural fix without a cursor) visits O(k·M).
//!
//! A one-CPU runtime; CPU 0's pool gets a worklist of M entries (M = 10,000 and 100,000) in
//! which every 10th entry is an item of a `mem_reclaim` workqueue and the others are empty
//! items of workqueues without a rescuer. A pwq keeps at most `WQ_MAX_ACTIVE` (2048) items
//! active, on the worklist, and inactive items are not rescued, so the rescued items are dealt
//! round-robin to 5 `mem_reclaim` workqueues (2,000 each at M = 100,000: every 50th entry
//! belongs to a given one), and the others fill as many workqueues as they need.
//!
//! The pool is stuck while only rescuers can run: the worklist is built while the boot worker
//! spins in a blocker item (it counts as running, the CPU-intensive threshold is off, so
//! nothing starts and no mayday is sent while entries are added); then creation starts to
//! fail and the blocker blocks, the idle reserve becomes a manager that cannot create a
//! worker, and 10 ms later the five rescuers are called on the full worklist. Once they have
//! run all their items and left, `visits_<M>` is the sum of their `rescuer_visits` (worklist
//! entries examined), and `growth` = visits_100000 / visits_10000: about 10 for the cursor
//! (system `cmwq`, 5 rescuers × M), about 100 for the rescan (system `cmwq-rescan`,
//! `RescuerAlgorithm::RescanFromHead`, about k·M/2). Each run also records the time from the
//! mayday to the last rescued item (`rescue_ms_<M>`). At the end creation works again, the
//! blocker is released and the other items run, so the runtime drops normally.

use crate::measure::Latch;
use crate::Report;
use cmwq::{FailMode, FailingSpawner, RescuerAlgorithm, Runtime, Work, Workqueue, WQ_MAX_ACTIVE};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Worklist lengths.
const SIZES: [usize; 2] = [10_000, 100_000];
/// One entry in this many is a rescued item.
const SPREAD: usize = 10;
/// The mem_reclaim workqueues the rescued items are dealt to.
const RESCUED_WQS: usize = 5;
/// Give up on any single wait after this long.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn run(r: &mut Report) -> Result<(), String> {
    for (sys, algo) in [("cmwq", RescuerAlgorithm::Cursor), ("cmwq-rescan", RescuerAlgorithm::RescanFromHead)] {
        for m in SIZES {
            let o = scan(algo, m)?;
            r.say(&format!(
                "s2 {sys:<12} M={m:<7} {:>12} visits ({:.1} per entry)  rescued {}  in {:.1} ms",
                o.visits,
                o.visits as f64 / m as f64,
                o.rescued,
                o.rescue_ms
            ));
            r.record("s2", sys, &format!("visits_{m}"), o.visits as f64);
            r.record("s2", sys, &format!("rescue_ms_{m}"), o.rescue_ms);
        }
        let small = r.get("s2", sys, &format!("visits_{}", SIZES[0])).unwrap_or(f64::NAN);
        let large = r.get("s2", sys, &format!("visits_{}", SIZES[1])).unwrap_or(f64::NAN);
        r.record("s2", sys, "growth", large / small);
    }
    // The claim: linear with the cursor (about 10x for 10x the entries), quadratic without.
    let cursor = r.get("s2", "cmwq", "growth").unwrap_or(f64::NAN);
    let rescan = r.get("s2", "cmwq-rescan", "growth").unwrap_or(f64::NAN);
    r.record("s2", "cmwq", "meets_target", f64::from(u8::from(cursor < 20.0 && rescan > 50.0)));
    Ok(())
}

struct Outcome {
    visits: u64,
    rescued: u64,
    rescue_ms: f64,
}

/// Waits until `cond` holds, or fails after `TIMEOUT`.
fn wait_for(what: &str, cond: impl Fn() -> bool) -> Result<(), String> {
    crate::measure::wait_until_or_fail("s2", what, TIMEOUT, cond)
}

fn wq(rt: &Runtime, name: String, mem_reclaim: bool) -> Result<Workqueue, String> {
    let b = rt.workqueue(&name).max_active(WQ_MAX_ACTIVE);
    let b = if mem_reclaim { b.mem_reclaim() } else { b };
    b.build().map_err(|e| format!("cmwq: {e}"))
}

/// One run: M entries, the given algorithm.
fn scan(algo: RescuerAlgorithm, m: usize) -> Result<Outcome, String> {
    let sp = FailingSpawner::new(FailMode::Never);
    let rt = Runtime::builder()
        .cpus(1)
        .spawner(sp.clone())
        .cpu_intensive_thresh(Duration::ZERO)
        .create_cooldown(Duration::from_millis(20))
        .rescuer_algorithm(algo)
        .build();
    let k = m / SPREAD;
    let others = m - k;
    let blk = wq(&rt, "s2-blocker".into(), false)?;
    let rescued: Vec<Workqueue> =
        (0..RESCUED_WQS).map(|i| wq(&rt, format!("s2-reclaim{i}"), true)).collect::<Result<_, _>>()?;
    let plain: Vec<Workqueue> = (0..others.div_ceil(WQ_MAX_ACTIVE))
        .map(|i| wq(&rt, format!("s2-plain{i}"), false))
        .collect::<Result<_, _>>()?;
    let pool0_quiet = || {
        let p = cmwq_testkit::cpu_pool(&rt, 0);
        (p.nr_workers, p.nr_idle, p.nr_running)
    };

    // The boot worker spins in the blocker (counting as running) while the worklist is built,
    // then blocks until the end; the pool creates its idle reserve first.
    let (spinning, go) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let release = Latch::new();
    let give_up_at = Instant::now() + 4 * TIMEOUT;
    let (s, g, rel) = (spinning.clone(), go.clone(), release.clone());
    assert!(blk.queue_on(
        0,
        &Work::new(move |_| {
            s.store(true, Ordering::SeqCst);
            while !g.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            let _ = cmwq::blocking(|| rel.wait_until(give_up_at));
        })
    ));
    wait_for("a spinning worker and an idle reserve", || {
        spinning.load(Ordering::SeqCst) && pool0_quiet() == (2, 1, 1)
    })?;

    let rescued_done = Latch::counting(k);
    let last_rescued: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let (mut nk, mut no) = (0, 0);
    for i in 0..m {
        if i % SPREAD == SPREAD - 1 {
            let (d, l) = (rescued_done.clone(), last_rescued.clone());
            assert!(rescued[nk % RESCUED_WQS].queue_on(
                0,
                &Work::new(move |_| {
                    *l.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    d.count_down();
                })
            ));
            nk += 1;
        } else {
            assert!(plain[no / WQ_MAX_ACTIVE].queue_on(0, &Work::new(|_| {})));
            no += 1;
        }
    }
    debug_assert_eq!((nk, no), (k, others));
    let inactive: usize = rescued.iter().chain(&plain).flat_map(|w| w.pwqs()).map(|p| p.nr_inactive).sum();
    if inactive != 0 {
        return Err(format!("s2: {inactive} items inactive: the worklist is shorter than {m}"));
    }

    // Stuck: creation fails, the blocker blocks, the reserve becomes a failing manager.
    sp.set_mode(FailMode::Always);
    let t0 = Instant::now();
    go.store(true, Ordering::SeqCst);
    let ok = rescued_done.wait_until(t0 + TIMEOUT);
    let rescue_ms = match *last_rescued.lock().unwrap_or_else(|e| e.into_inner()) {
        Some(t) if ok => t.saturating_duration_since(t0).as_secs_f64() * 1e3,
        _ => f64::NAN,
    };
    let result = if ok {
        // The last scan (finding nothing) is counted when the rescuer leaves.
        wait_for("the rescuers to leave", || {
            rescued.iter().flat_map(|w| w.pwqs()).all(|p| p.mayday_refs == 0 && !p.on_mayday && p.nr_active == 0)
        })
        .map(|()| {
            let st: Vec<_> = rescued.iter().map(Workqueue::stats).collect();
            Outcome {
                visits: st.iter().map(|s| s.rescuer_visits).sum(),
                rescued: st.iter().map(|s| s.rescued).sum(),
                rescue_ms,
            }
        })
    } else {
        Err(format!("s2 ({algo:?}, M={m}): {} rescued items left after {TIMEOUT:?}", rescued_done.remaining()))
    };
    let plain_started: u64 = plain.iter().map(|w| w.stats().started).sum();

    // Let everything finish: creation works again, the blocker returns, the others run.
    sp.set_mode(FailMode::Never);
    release.count_down();
    let finished =
        wait_for("the other items", || plain.iter().map(|w| w.stats().completed).sum::<u64>() == others as u64);
    if finished.is_ok() && result.is_ok() {
        drop((rescued, plain, blk));
        drop(rt);
    } else {
        std::mem::forget((rescued, plain, blk, rt));
    }
    finished?;
    if plain_started != 0 {
        return Err(format!("s2: {plain_started} non-rescued items ran while the pool was stuck"));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_visits_each_entry_about_once_per_rescuer() {
        let m = 2_000;
        let o = scan(RescuerAlgorithm::Cursor, m).unwrap();
        assert_eq!(o.rescued, (m / SPREAD) as u64);
        assert!(o.visits <= (RESCUED_WQS * m + 2 * RESCUED_WQS) as u64, "visits {}", o.visits);
        let r = scan(RescuerAlgorithm::RescanFromHead, m).unwrap();
        assert_eq!(r.rescued, (m / SPREAD) as u64);
        assert!(r.visits > 10 * o.visits, "rescan {} cursor {}", r.visits, o.visits);
    }
}
