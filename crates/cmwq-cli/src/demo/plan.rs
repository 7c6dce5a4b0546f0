//! The seeded workload of the demo: its workqueues ([`WQS`]), and the items that arrive on
//! them, when and on which CPU, for the first phase ([`plan`]) and for the memory-pressure
//! period ([`plan_pressure`]). Everything is drawn from a [`SplitMix64`] seeded by `--seed`, so
//! every run with a seed gets the same items at the same times.

use super::items::{Block, Item};
use cmwq_bench::measure::SplitMix64;
use std::time::Duration;

/// One of the demo's workqueues.
#[derive(Debug, Clone, Copy)]
pub(super) struct WqSpec {
    pub(super) name: &'static str,
    pub(super) unbound: bool,
    pub(super) mem_reclaim: bool,
    pub(super) max_active: usize,
}

pub(super) const WQS: [WqSpec; 5] = [
    WqSpec { name: "writeback", unbound: false, mem_reclaim: true, max_active: 0 },
    WqSpec { name: "crypto", unbound: false, mem_reclaim: false, max_active: 0 },
    WqSpec { name: "fsync", unbound: true, mem_reclaim: false, max_active: 16 },
    WqSpec { name: "readahead", unbound: true, mem_reclaim: false, max_active: 32 },
    WqSpec { name: "prefetch", unbound: false, mem_reclaim: false, max_active: 0 },
];

/// Index of `writeback` (the `mem_reclaim` workqueue) in [`WQS`].
pub(super) const WB: usize = 0;
/// Index of `prefetch` (used only in the memory-pressure period) in [`WQS`].
pub(super) const PREFETCH: usize = 4;

/// Write-back arrivals per second during the memory-pressure period, all CPUs together (one
/// rescuer thread serves the whole workqueue, so this does not grow with the CPUs).
const PRESSURE_WB_RATE: f64 = 50.0;
/// Prefetch arrivals per second and CPU during the memory-pressure period.
const PRESSURE_PREFETCH_RATE: f64 = 60.0;

/// Length of the memory-pressure period: 3/8 of the arrival time, between 1 and 3 s (3 s in the
/// default run, 1 s with `--quick`).
pub(super) fn pressure_period(duration: Duration) -> Duration {
    Duration::from_secs_f64((duration.as_secs_f64() * 0.375).clamp(1.0, 3.0))
}

/// An item of the workload, with when and where it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Planned {
    /// Arrival time from the start.
    pub(super) at: Duration,
    /// Index into the demo's workqueues.
    pub(super) wq: usize,
    /// The CPU for per-CPU workqueues.
    pub(super) cpu: Option<usize>,
    /// What it does.
    pub(super) item: Item,
}

/// Generates the workload: Poisson streams per workqueue plus write-back bursts, sorted by
/// arrival.
pub(super) fn plan(duration: Duration, cpus: usize, seed: u64) -> Vec<Planned> {
    let mut rng = SplitMix64::new(seed);
    let cpus = cpus.max(1);
    let end = duration.as_secs_f64();
    let mut out = Vec::new();
    // (workqueue, arrivals per second)
    let streams: [(usize, f64); 4] = [(0, 100.0), (1, 120.0), (2, 50.0), (3, 80.0)];
    for (wq, rate) in streams {
        poisson(&mut rng, wq, rate, end, cpus, &mut out);
    }
    // Write-back bursts: 80 items at once, half a second into every second.
    let mut b = 0.5;
    while b < end {
        for _ in 0..80 {
            let item = make_item(0, &mut rng);
            out.push(Planned {
                at: Duration::from_secs_f64(b),
                wq: 0,
                cpu: Some(rng.range(0, cpus as u64 - 1) as usize),
                item,
            });
        }
        b += 1.0;
    }
    out.sort_by_key(|p| p.at);
    out
}

/// A Poisson stream of `rate` items per second on workqueue `wq` over `[0, end)` seconds.
fn poisson(rng: &mut SplitMix64, wq: usize, rate: f64, end: f64, cpus: usize, out: &mut Vec<Planned>) {
    let mut t = 0.0;
    loop {
        t += -rng.unit().ln() / rate;
        if t >= end {
            break;
        }
        let item = make_item(wq, rng);
        let cpu = (!WQS[wq].unbound).then(|| rng.range(0, cpus as u64 - 1) as usize);
        out.push(Planned { at: Duration::from_secs_f64(t), wq, cpu, item });
    }
}

/// The workload of the memory-pressure period: write-back items (as in [`plan`]) on the
/// `mem_reclaim` workqueue and prefetch items (allocate, then read) on a per-CPU workqueue
/// without a rescuer, both Poisson, sorted by arrival.
pub(super) fn plan_pressure(period: Duration, cpus: usize, seed: u64) -> Vec<Planned> {
    let mut rng = SplitMix64::new(seed ^ 0x6d65_6d5f_7072_6573);
    let cpus = cpus.max(1);
    let end = period.as_secs_f64();
    let mut out = Vec::new();
    poisson(&mut rng, WB, PRESSURE_WB_RATE, end, cpus, &mut out);
    poisson(&mut rng, PREFETCH, PRESSURE_PREFETCH_RATE * cpus as f64, end, cpus, &mut out);
    out.sort_by_key(|p| p.at);
    out
}

/// One item for workqueue `wq` (the index into [`WQS`]), drawn from `rng`.
fn make_item(wq: usize, rng: &mut SplitMix64) -> Item {
    let ms = Duration::from_millis;
    match wq {
        0 => Item { block: Block::Pipe(ms(rng.range(3, 15))), cpu_us: rng.range(200, 600) as u32 },
        1 => Item {
            block: Block::None,
            cpu_us: if rng.range(0, 24) == 0 { rng.range(15_000, 25_000) } else { rng.range(1_000, 4_000) } as u32,
        },
        2 => Item { block: Block::Sleep(ms(rng.range(20, 40))), cpu_us: 100 },
        3 => Item { block: Block::Pipe(ms(rng.range(4, 10))), cpu_us: rng.range(300, 1_000) as u32 },
        _ => Item { block: Block::Alloc(ms(rng.range(4, 10))), cpu_us: rng.range(300, 1_000) as u32 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_deterministic_and_sorted() {
        let a = plan(Duration::from_secs(2), 2, 7);
        let b = plan(Duration::from_secs(2), 2, 7);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(a.iter().all(|p| p.at < Duration::from_secs(2)));
        // Per-CPU items have a CPU in range; unbound ones none.
        assert!(a.iter().all(|p| p.cpu.is_some() != WQS[p.wq].unbound && p.cpu.is_none_or(|c| c < 2)));
        // All four workqueues and the bursts are there.
        for wq in 0..4 {
            assert!(a.iter().any(|p| p.wq == wq));
        }
        assert!(a.len() > 2 * (100 + 120 + 50 + 80) / 2);
    }

    #[test]
    fn pressure_plan_has_writeback_and_prefetch_only() {
        let period = Duration::from_secs(2);
        let a = plan_pressure(period, 2, 7);
        assert_eq!(a, plan_pressure(period, 2, 7));
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(a.iter().all(|p| p.at < period && (p.wq == WB || p.wq == PREFETCH) && p.cpu.is_some_and(|c| c < 2)));
        assert!(a.iter().filter(|p| p.wq == PREFETCH).all(|p| matches!(p.item.block, Block::Alloc(_))));
        assert!(a.iter().filter(|p| p.wq == WB).all(|p| matches!(p.item.block, Block::Pipe(_))));
        assert!(a.iter().any(|p| p.wq == WB) && a.iter().any(|p| p.wq == PREFETCH));
        // Only writeback has a rescuer.
        assert!(WQS[WB].mem_reclaim && WQS.iter().filter(|s| s.mem_reclaim).count() == 1);
        assert_eq!(pressure_period(Duration::from_secs(8)), Duration::from_secs(3));
        assert_eq!(pressure_period(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(pressure_period(Duration::from_secs(600)), Duration::from_secs(3));
    }
}
