//! Measuring tools shared by the workloads: a sampler of the process's peak thread count,
//! process resource usage (CPU time and context switches, from `getrusage`), percentiles and
//! medians, and round-robin runs. What cmwq's tests use too comes from `cmwq-testkit` and is
//! re-exported here: the thread count and per-thread CPU time from `/proc`, the calling
//! thread's CPU clock and a CPU burner on it, a count-down latch with a deadline, and a small
//! seeded random generator ([`SplitMix64`]) for reproducible plans.
//!
//! Everything here reads process-wide counters, so a workload measures one system at a time:
//! only then are the thread count, CPU time and context switches attributable to it.

pub use cmwq_testkit::{burn_cpu, thread_count, thread_cpu_time, threads_cpu_time, Latch, SplitMix64};
use nix::sys::resource::{getrusage, UsageWho};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Waits (at most `timeout`) until the thread count has stayed the same for 10 ms: threads
/// of a pool torn down just before may still be exiting.
pub fn wait_threads_settle(timeout: Duration) {
    let end = Instant::now() + timeout;
    let mut last = thread_count();
    let mut since = Instant::now();
    while Instant::now() < end && since.elapsed() < Duration::from_millis(10) {
        thread::sleep(Duration::from_millis(1));
        let n = thread_count();
        if n != last {
            last = n;
            since = Instant::now();
        }
    }
}

/// Samples the process's thread count every millisecond from its own thread and keeps the
/// peak. Start it before the pool under test is built, so the pool's own threads count.
#[derive(Debug)]
pub struct ThreadSampler {
    baseline: usize,
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl ThreadSampler {
    /// Starts sampling; the baseline (taken once the sampler runs, so it counts itself) is the
    /// thread count before the measured run, once threads of earlier pools have exited.
    pub fn start() -> ThreadSampler {
        wait_threads_settle(Duration::from_millis(500));
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let handle = thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    p.fetch_max(thread_count(), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(1));
                }
            })
            .expect("cannot start the thread sampler");
        // Wait until the sampler thread exists, so the baseline includes it.
        let mut baseline = thread_count();
        while peak.load(Ordering::Relaxed) == 0 {
            thread::yield_now();
            baseline = thread_count();
        }
        ThreadSampler { baseline, peak, stop, handle: Some(handle) }
    }

    /// Stops sampling and returns the peak thread count above the baseline.
    pub fn stop(mut self) -> usize {
        self.finish()
    }

    fn finish(&mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed).max(thread_count()).saturating_sub(self.baseline)
    }
}

impl Drop for ThreadSampler {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Process resource usage at one moment (all threads, including those that exited).
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Voluntary context switches.
    pub voluntary: i64,
    /// Involuntary context switches.
    pub involuntary: i64,
}

impl Usage {
    /// `getrusage(RUSAGE_SELF)` now.
    pub fn now() -> Usage {
        let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage(RUSAGE_SELF) failed");
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
        };
        Usage {
            cpu: tv(u.user_time()) + tv(u.system_time()),
            voluntary: u.voluntary_context_switches(),
            involuntary: u.involuntary_context_switches(),
        }
    }

    /// CPU time used since `earlier`.
    pub fn cpu_since(&self, earlier: &Usage) -> Duration {
        self.cpu.saturating_sub(earlier.cpu)
    }

    /// Context switches (voluntary and involuntary) since `earlier`.
    pub fn switches_since(&self, earlier: &Usage) -> i64 {
        (self.voluntary - earlier.voluntary) + (self.involuntary - earlier.involuntary)
    }
}

/// The `q`-quantile (0..=1) of `samples` (nearest rank); `None` if empty.
pub fn quantile(samples: &mut [Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (q * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// Runs `one(system)` `runs` times for every system, round-robin (A, B, C, A, B, C, ...), so
/// that drift in the machine's load falls on all systems alike, and returns each system's
/// results in the order of `systems` (spec/peers.md section 6: the median of several runs).
pub fn interleaved<T>(
    systems: &[&str],
    runs: usize,
    mut one: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<Vec<T>>, String> {
    let mut out: Vec<Vec<T>> = systems.iter().map(|_| Vec::with_capacity(runs)).collect();
    for _ in 0..runs {
        for (i, sys) in systems.iter().enumerate() {
            out[i].push(one(sys)?);
        }
    }
    Ok(out)
}

/// The median of `v` (sorted in place; the upper middle for an even count); NaN if empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Waits until `cond` holds, polling every 100 us; after `timeout` fails with
/// "<workload>: timed out waiting for <what>".
pub fn wait_until_or_fail(
    workload: &str,
    what: &str,
    timeout: Duration,
    cond: impl Fn() -> bool,
) -> Result<(), String> {
    if cmwq_testkit::poll_until(timeout, Duration::from_micros(100), cond) {
        Ok(())
    } else {
        Err(format!("{workload}: timed out waiting for {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        v.reverse();
        assert_eq!(quantile(&mut v, 0.5), Some(Duration::from_micros(50)));
        assert_eq!(quantile(&mut v, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(quantile(&mut v, 0.0), Some(Duration::from_micros(1)));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn sampler_sees_new_threads() {
        // The sampler counts the process's threads, and the other tests of this binary start
        // and end threads of their own meanwhile; one that exits after the baseline hides one
        // of ours. So a miss is retried, a few times, before it counts as a failure.
        let seen = (0..5).any(|_| {
            let s = ThreadSampler::start();
            let hs: Vec<_> = (0..3).map(|_| thread::spawn(|| thread::sleep(Duration::from_millis(30)))).collect();
            for h in hs {
                h.join().unwrap();
            }
            s.stop() >= 3
        });
        assert!(seen, "the sampler never saw 3 new threads");
        let me = thread::current();
        let name = me.name().unwrap_or("main");
        assert!(threads_cpu_time(&name[..name.len().min(15)]) > Duration::ZERO);
        assert!(Usage::now().cpu > Duration::ZERO);
    }
}
