//! Measuring tools shared by the workloads: the process's thread count and a sampler of its
//! peak, process resource usage (CPU time and context switches, from `getrusage`), the calling
//! thread's CPU clock and a CPU burner on it, percentiles, a count-down latch with a
//! deadline, and a small seeded random generator ([`SplitMix64`]) for reproducible plans.
//!
//! Everything here reads process-wide counters, so a workload measures one system at a time:
//! only then are the thread count, CPU time and context switches attributable to it.

use nix::sys::resource::{getrusage, UsageWho};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Threads of this process now (`Threads:` of `/proc/self/status`), 0 if unreadable.
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

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

/// CPU time used so far by this process's live threads whose name starts with `prefix`
/// (from `/proc/self/task/*/{comm,schedstat}`).
pub fn threads_cpu_time(prefix: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut total = Duration::ZERO;
    for task in dir.flatten() {
        let path = task.path();
        let named = std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim_end().starts_with(prefix));
        if !named {
            continue;
        }
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_ascii_whitespace().next()?.parse::<u64>().ok());
        total += Duration::from_nanos(ns.unwrap_or(0));
    }
    total
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

/// CPU time used by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Spins until the calling thread has used `d` more CPU time: the same amount of work whether
/// the thread has a core to itself or shares one.
pub fn burn_cpu(d: Duration) {
    let start = thread_cpu_time();
    while thread_cpu_time().saturating_sub(start) < d {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
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

/// A count-down latch: `count_down` is one atomic RMW, and the last one wakes the waiters.
#[derive(Debug)]
pub struct Latch {
    left: AtomicUsize,
    done: Mutex<bool>,
    cv: Condvar,
}

impl Latch {
    /// A latch that opens after `n` count-downs (at once if `n` is 0).
    pub fn new(n: usize) -> Latch {
        Latch { left: AtomicUsize::new(n), done: Mutex::new(n == 0), cv: Condvar::new() }
    }

    /// Counts down once; the last count-down opens the latch.
    pub fn count_down(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.cv.notify_all();
        }
    }

    /// Count-downs still missing.
    pub fn remaining(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }

    /// Waits until the latch opens or `deadline` passes; returns whether it opened.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            done = self.cv.wait_timeout(done, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// splitmix64: a small, good, seedable pseudo-random generator (no dependency needed), so a
/// workload planned from a seed is the same on every run and for every system it is run on.
///
/// Not for cryptography. The sequence for a seed is fixed: changing it changes every plan
/// generated from it.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 pseudo-random bits.
    // Not `Iterator::next`: the sequence never ends, so no `Option`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (with the slight modulo bias of `next() % (hi - lo + 1)`); needs
    /// `lo <= hi` and not the whole `u64` range.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// Uniform in `(0, 1]` (53 random bits), so its logarithm is finite.
    pub fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Waits until `cond` holds, polling every 100 us; after `timeout` fails with
/// "<workload>: timed out waiting for <what>".
pub fn wait_until_or_fail(
    workload: &str,
    what: &str,
    timeout: Duration,
    cond: impl Fn() -> bool,
) -> Result<(), String> {
    let end = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > end {
            return Err(format!("{workload}: timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_sequence() {
        // The reference splitmix64 outputs for seed 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            assert!((3..=15).contains(&r.range(3, 15)));
            let u = r.unit();
            assert!(u > 0.0 && u <= 1.0);
        }
        assert_eq!(SplitMix64::new(9).range(5, 5), 5);
    }

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
    fn latch_opens_and_times_out() {
        let l = Latch::new(2);
        l.count_down();
        assert!(!l.wait_until(Instant::now() + Duration::from_millis(5)));
        l.count_down();
        assert!(l.wait_until(Instant::now() + Duration::from_secs(5)));
        assert_eq!(l.remaining(), 0);
    }

    #[test]
    fn burn_uses_cpu_time() {
        let t0 = thread_cpu_time();
        burn_cpu(Duration::from_millis(3));
        assert!(thread_cpu_time() - t0 >= Duration::from_millis(3));
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
