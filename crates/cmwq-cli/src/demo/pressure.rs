//! Phase 2 of the demo, the memory-pressure period on the cmwq runtime: what it needs
//! ([`Pressure`]), running it ([`run_pressure`]), what it measured ([`PressureResult`]) and its
//! lines of the summary ([`print_pressure`]).

use super::items::Burner;
use super::plan::{plan_pressure, WB};
use super::summary::pct;
use super::DEMO_CREATE_COOLDOWN;
use super::{start_producer, start_sampler, submitter, table_text, ItemRecord, Ledger, Peaks, Screen};
use crate::table::{human, Progress};
use cmwq::{FailingSpawner, Runtime, Workqueue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the memory-pressure phase needs.
pub(super) struct Pressure<'a> {
    pub(super) rt: &'a Runtime,
    pub(super) wqs: &'a [Workqueue],
    pub(super) spawner: &'a FailingSpawner,
    pub(super) no_threads: &'a Arc<AtomicBool>,
    pub(super) period: Duration,
    pub(super) cpus: usize,
    pub(super) seed: u64,
    pub(super) burner: Burner,
}

/// What the memory-pressure phase measured. Times are since the phase's start.
#[derive(Debug)]
pub(super) struct PressureResult {
    period: Duration,
    /// Worker creations the spawner refused.
    refused: usize,
    /// Workers alive, and idle ones on the per-CPU pools, when the phase began.
    workers_before: usize,
    idle_percpu_before: usize,
    /// When `writeback`'s mayday count first rose (polled every 5 ms).
    first_mayday: Option<Duration>,
    /// `writeback`'s mayday and rescued counts over the phase.
    mayday: u64,
    rescued: u64,
    /// When thread creation and memory came back.
    cleared_at: Duration,
    /// From then until the spawner had created a thread (polled every 5 ms).
    first_spawn_after: Option<Duration>,
    /// Most workers alive at once (sampled every 2 ms), and at the end.
    workers_peak: usize,
    workers_after: usize,
    finished_in_time: bool,
    /// Records of the write-back and prefetch items.
    wb: Vec<ItemRecord>,
    prefetch: Vec<ItemRecord>,
}

/// Phase 2: sets the memory pressure (no thread creation, blocking allocations) for the
/// period while the pressure plan arrives, lifts it, and waits for every item to finish.
pub(super) fn run_pressure(p: &Pressure<'_>, screen: &mut Screen) -> Result<PressureResult, String> {
    let plan = Arc::new(plan_pressure(p.period, p.cpus, p.seed));
    let m = plan.len();
    let n_wb = plan.iter().filter(|x| x.wq == WB).count();
    let deadline = p.period + Duration::from_secs(15);
    let pools = p.rt.pools();
    let workers_before: usize = pools.iter().map(|x| x.nr_workers).sum();
    let idle_percpu_before: usize = pools.iter().filter(|x| x.cpu.is_some() && !x.highpri).map(|x| x.nr_idle).sum();
    println!(
        "\nphase 2: memory pressure on the same runtime for {:.1} s: no worker thread can be created \
         (the spawner refuses; the pools retry every {} ms) and allocations block until memory comes \
         back. {n_wb} write-back items like phase 1's arrive on writeback (mem_reclaim: it has a \
         rescuer), {} prefetch items (allocate, then a 4-10 ms read) on prefetch (per-CPU, no \
         mem_reclaim). {workers_before} workers are alive, {idle_percpu_before} of them idle on the \
         per-CPU pools.\n",
        p.period.as_secs_f64(),
        DEMO_CREATE_COOLDOWN.as_millis(),
        m - n_wb,
    );
    let base = p.wqs[WB].stats();
    let refused0 = p.spawner.refused();
    let peaks = Arc::new(Peaks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = start_sampler(p.rt.clone(), peaks.clone(), stop.clone());
    let ledger = Arc::new(Ledger::new(m, p.burner).map_err(|e| e.to_string())?);
    ledger.memory.set_short(true);
    p.no_threads.store(true, Ordering::Release);
    let producer = start_producer(plan.clone(), ledger.clone(), submitter(p.wqs, &ledger));

    let mut cleared_at: Option<Duration> = None;
    let mut spawned_at_clear = 0;
    let mut first_spawn_after = None;
    let mut first_mayday = None;
    let mut next_draw = Duration::from_millis(500);
    let note = |cleared: bool| {
        let refused = p.spawner.refused() - refused0;
        if cleared {
            format!("  | threads can be created again ({refused} creations were refused)")
        } else {
            format!("  | NO THREAD CAN BE CREATED: {refused} creations refused so far")
        }
    };
    let snapshot = |e: Duration, cleared: bool| {
        let progress = Progress {
            elapsed: e,
            total: p.period,
            done: ledger.done(),
            items: m as u64,
            workers: peaks.workers_now.load(Ordering::Relaxed),
            peak_workers: peaks.workers.load(Ordering::Relaxed),
        };
        table_text(p.wqs, &progress, &note(cleared)).0
    };
    let finished_in_time = loop {
        let e = ledger.t0.elapsed();
        if cleared_at.is_none() && e >= p.period {
            spawned_at_clear = p.spawner.spawned();
            p.no_threads.store(false, Ordering::Release);
            ledger.memory.set_short(false);
            cleared_at = Some(ledger.t0.elapsed());
        }
        if let Some(c) = cleared_at {
            if first_spawn_after.is_none() && p.spawner.spawned() > spawned_at_clear {
                first_spawn_after = Some(e.saturating_sub(c));
            }
        }
        if first_mayday.is_none() && p.wqs[WB].stats().mayday > base.mayday {
            first_mayday = Some(e);
        }
        if cleared_at.is_some() && ledger.done() >= m as u64 {
            break true;
        }
        if e >= deadline {
            break false;
        }
        if e >= next_draw {
            screen.draw(&snapshot(e, cleared_at.is_some()));
            next_draw += Duration::from_millis(500);
        }
        thread::sleep(Duration::from_millis(5));
    };
    // Whatever happened, memory and thread creation come back before anything else.
    p.no_threads.store(false, Ordering::Release);
    ledger.memory.set_short(false);
    let cleared_at = cleared_at.unwrap_or_else(|| ledger.t0.elapsed());
    screen.draw(&snapshot(ledger.t0.elapsed(), true));
    screen.keep();
    if !finished_in_time {
        ledger.skip.store(true, Ordering::Relaxed);
    }
    let _ = producer.join();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let end = p.wqs[WB].stats();
    let mut wb = Vec::new();
    let mut prefetch = Vec::new();
    for (i, x) in plan.iter().enumerate() {
        if x.wq == WB { &mut wb } else { &mut prefetch }.push(ledger.record(i));
    }
    Ok(PressureResult {
        period: p.period,
        refused: p.spawner.refused() - refused0,
        workers_before,
        idle_percpu_before,
        first_mayday,
        mayday: end.mayday - base.mayday,
        rescued: end.rescued - base.rescued,
        cleared_at,
        first_spawn_after,
        workers_peak: peaks.workers.load(Ordering::Relaxed),
        workers_after: p.rt.nr_workers(),
        finished_in_time,
        wb,
        prefetch,
    })
}

/// The summary lines of the memory-pressure phase.
pub(super) fn print_pressure(r: &PressureResult, wb_wait_phase1: Duration) {
    let cleared = r.cleared_at;
    let sorted = |v: Vec<Duration>| {
        let mut v = v;
        v.sort();
        v
    };
    let max = |v: &[Duration]| v.last().copied().unwrap_or_default();
    println!("memory pressure in cmwq (phase 2: {} in which no thread could be created; cmwq only):", human(r.period));
    let mayday_when = match r.first_mayday {
        Some(t) => format!("the first mayday came {} into the period (polled every 5 ms)", human(t)),
        None => "no pool called for help (they never ran out of workers)".to_owned(),
    };
    println!(
        "  worker creation refused {} times (each pool's manager retried every {} ms; the kernel \
         waits 1 s); {} workers were alive, {} of them idle on the per-CPU pools; prefetch items \
         took them and blocked in their allocations; {mayday_when}",
        r.refused,
        DEMO_CREATE_COOLDOWN.as_millis(),
        r.workers_before,
        r.idle_percpu_before,
    );
    // writeback (mem_reclaim)
    let k = r.wb.len();
    let done = r.wb.iter().filter(|x| x.finished.is_some()).count();
    let done_before = r.wb.iter().filter(|x| x.finished.is_some_and(|f| f < cleared)).count();
    let rescued_items = r.wb.iter().filter(|x| x.on_rescuer).count();
    let during = |x: &&ItemRecord| x.started.is_some_and(|t| t < cleared);
    let waits = sorted(r.wb.iter().filter(during).filter_map(ItemRecord::wait).collect());
    let lats = sorted(r.wb.iter().filter(during).filter_map(ItemRecord::latency).collect());
    let later: Vec<&ItemRecord> = r.wb.iter().filter(|x| !during(x)).collect();
    let later = if later.is_empty() {
        String::new()
    } else {
        format!(
            "; {} queued near the end started only after thread creation came back, when the rescuer \
             had stepped back and they were behind the prefetch backlog: longest wait {}",
            later.len(),
            human(later.iter().filter_map(|x| x.wait()).max().unwrap_or_default())
        )
    };
    let all = if done == k { format!("all {k} completed") } else { format!("only {done} of {k} completed") };
    println!(
        "  writeback (mem_reclaim): mayday {}, rescued {}; of the {k} items queued during the period, \
         {all}, {done_before} of them before thread creation came back, {rescued_items} on the rescuer \
         thread kworker/R-writeback; of the {} that started during the period, the longest wait from \
         queueing to start was {} (median {}; phase 1's longest: {}) and the longest from queueing to \
         done {}{later}",
        r.mayday,
        r.rescued,
        waits.len(),
        human(max(&waits)),
        human(pct(&waits, 0.5)),
        human(wb_wait_phase1),
        human(max(&lats)),
    );
    // prefetch (no mem_reclaim)
    let k = r.prefetch.len();
    let started_during = r.prefetch.iter().filter(|x| x.started.is_some_and(|t| t < cleared)).count();
    let waited: Vec<&ItemRecord> = r.prefetch.iter().filter(|x| x.started.is_none_or(|t| t >= cleared)).collect();
    let never = waited.iter().filter(|x| x.started.is_none()).count();
    let wwaits = sorted(waited.iter().filter_map(|x| x.wait()).collect());
    let done = r.prefetch.iter().filter(|x| x.finished.is_some()).count();
    let last = r.prefetch.iter().filter_map(|x| x.finished).max();
    let all_waits = sorted(r.prefetch.iter().filter_map(ItemRecord::wait).collect());
    let never = if never > 0 { format!(" ({never} never started)") } else { String::new() };
    let last = match last {
        Some(t) if t >= cleared => format!("the last {} after thread creation came back", human(t - cleared)),
        Some(_) => "all before thread creation came back".to_owned(),
        None => "none".to_owned(),
    };
    println!(
        "  prefetch (no mem_reclaim, same per-CPU pools): of the {k} items queued during the period, \
         {started_during} started during it (on workers left from phase 1, then blocked in their \
         allocation until memory came back) and {} found no worker and waited for one until thread \
         creation came back{never}: longest wait from queueing to start {} (median {}; over all \
         prefetch items: longest {}); {done} of {k} completed, {last}",
        waited.len(),
        human(max(&wwaits)),
        human(pct(&wwaits, 0.5)),
        human(max(&all_waits)),
    );
    let first = r.first_spawn_after.map_or_else(
        || "no new thread was needed".to_owned(),
        |d| format!("the first new thread {} later (polled every 5 ms)", human(d)),
    );
    println!(
        "  memory and thread creation came back at {} into the period: {first}; workers alive: {} \
         before the period, peak {}, {} at the end{}",
        human(cleared),
        r.workers_before,
        r.workers_peak,
        r.workers_after,
        if r.finished_in_time { "" } else { " (phase 2 did not finish in time: items were skipped)" },
    );
}
