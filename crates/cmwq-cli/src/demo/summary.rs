//! The demo's closing summary: what each run measured ([`RunResult`]), the numbers of the whole
//! demo ([`Summary`]) and their printing ([`print_summary`]).

use super::pressure::{print_pressure, PressureResult};
use super::Peaks;
use crate::table::{human, WqRow};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What one run measured.
#[derive(Debug)]
pub(super) struct RunResult {
    pub(super) done: u64,
    pub(super) finished_in_time: bool,
    pub(super) makespan: Duration,
    pub(super) latencies: Vec<Duration>,
    pub(super) cpu: Option<Duration>,
}

/// The `p`-quantile (0..=1) of the sorted `v` (the nearest index), zero if `v` is empty.
pub(super) fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The numbers of the whole demo that the summary prints.
pub(super) struct Summary<'a> {
    pub(super) n: usize,
    pub(super) cpus: usize,
    /// The blocking detector cmwq ran with (`CMWQ_DETECTOR`).
    pub(super) detector: cmwq::Detector,
    pub(super) bound: Duration,
    pub(super) deadline: Duration,
    pub(super) final_rows: Vec<WqRow>,
    pub(super) workers_at_start: usize,
    pub(super) workers_at_end: usize,
    pub(super) peaks: &'a Peaks,
    pub(super) cm: RunResult,
    pub(super) fixed: RunResult,
    /// The longest queue wait (queueing to start) of a write-back item in phase 1.
    pub(super) wb_wait_phase1: Duration,
    pub(super) pressure: PressureResult,
}

/// Prints the summary after the last phase.
pub(super) fn print_summary(s: &Summary<'_>) {
    let ms = |r: &RunResult| {
        if r.finished_in_time {
            human(r.makespan)
        } else {
            format!("> {} ({} of {} done)", human(s.deadline), r.done, s.n)
        }
    };
    let lat = |r: &RunResult| {
        format!(
            "{} / {} / {}",
            human(pct(&r.latencies, 0.5)),
            human(pct(&r.latencies, 0.99)),
            human(r.latencies.last().copied().unwrap_or_default())
        )
    };
    let cpu = |r: &RunResult| r.cpu.map_or_else(|| "n/a".to_owned(), human);
    let cmw: u64 = s.final_rows.iter().map(|r| r.cm_wakeup).sum();
    let itsv: u64 = s.final_rows.iter().map(|r| r.cpu_intensive).sum();
    let p = s.peaks;
    println!("\nsummary (every number is measured in this run)");
    println!("  {:<30} {:>30} {:>30}", "", "cmwq", format!("fixed pool ({} threads)", s.cpus));
    println!("  {:<30} {:>30} {:>30}", "makespan", ms(&s.cm), ms(&s.fixed));
    println!("  {:<30} {:>30} {:>30}", "latency p50 / p99 / max", lat(&s.cm), lat(&s.fixed));
    println!("  {:<30} {:>30} {:>30}", "process CPU time (user+sys)", cpu(&s.cm), cpu(&s.fixed));
    println!("  {:<30} {:>30} {:>30}", "threads running items (peak)", p.busy.load(Ordering::Relaxed), s.cpus);
    println!(
        "  lower bound on makespan: {} (the latest arrival + that item's own time on an idle CPU)",
        human(s.bound)
    );
    println!("concurrency management in cmwq:");
    println!(
        "  blocking detector: {} ({})",
        s.detector.name(),
        match s.detector {
            cmwq::Detector::Switch => "each worker's context-switch records: a blocked worker is replaced within tens of microseconds",
            _ => "sampling workers' CPU clocks while items wait: a block is noticed within 0.3-1.5 ms; CMWQ_DETECTOR=switch where perf events are allowed",
        }
    );
    println!(
        "  workers alive: {} at start, peak {}, {} at end (idle workers are culled after 300 s)",
        s.workers_at_start,
        p.workers.load(Ordering::Relaxed),
        s.workers_at_end
    );
    println!(
        "  peak running workers on the per-CPU pools (sum of nr_running): {} for {} CPUs \
         (a blocked worker counts as running until items wait behind it and the monitor \
         looks); peak busy workers (all pools): {}; peak items waiting on worklists: {}",
        p.running_percpu.load(Ordering::Relaxed),
        s.cpus,
        p.busy.load(Ordering::Relaxed),
        p.pending.load(Ordering::Relaxed)
    );
    println!(
        "  {cmw} concurrency-management wake-ups (CMW: a worker slept, blocked or hogged the \
         CPU, so another one ran), {itsv} items marked CPU-intensive (CPUitsv); {} pool samples",
        p.samples.load(Ordering::Relaxed)
    );
    print_pressure(&s.pressure, s.wb_wait_phase1);
    let ratio = if s.cm.finished_in_time && s.cm.makespan > Duration::ZERO {
        let f = if s.fixed.finished_in_time { s.fixed.makespan } else { s.deadline };
        let r = f.as_secs_f64() / s.cm.makespan.as_secs_f64();
        if s.fixed.finished_in_time {
            format!("{r:.2}x")
        } else {
            format!("more than {r:.2}x")
        }
    } else {
        "n/a (cmwq did not finish)".to_owned()
    };
    println!(
        "result: cmwq {} vs fixed pool of {} threads {} on the same {} items: cmwq {} faster \
         ({:.2}x the lower bound)",
        ms(&s.cm),
        s.cpus,
        ms(&s.fixed),
        s.n,
        ratio,
        s.cm.makespan.as_secs_f64() / s.bound.as_secs_f64().max(1e-9)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&v, 0.5), Duration::from_millis(51));
        assert_eq!(pct(&v, 0.99), Duration::from_millis(99));
        assert_eq!(pct(&[], 0.5), Duration::ZERO);
    }
}
