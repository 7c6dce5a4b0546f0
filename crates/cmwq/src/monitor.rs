//! The monitor: the userspace stand-in for the scheduler hooks (`wq_worker_sleeping`,
//! `wq_worker_running`, `wq_worker_tick`; spec §4.3, DESIGN.md §3).
//!
//! One thread per runtime. It is parked (and costs nothing) while no worker has been busy for
//! 200 ms; after activity it polls every 10 ticks for that long, so a trickle of items never
//! wakes it on an item's path. While workers are busy it ticks every `cm_tick` (1 ms):
//! * it adds each busy worker's CPU time since the last tick to the pwq of the item it runs
//!   (`CPU_TIME`, sampled like the kernel's tick);
//! * on per-CPU pools, an item that has used more than `cpu_intensive_thresh` (10 ms) of CPU
//!   since it started or last woke is marked CPU_INTENSIVE: it stops counting toward
//!   concurrency, the pool is kicked, `cpu_intensive` and (if a worker woke) `cm_wakeup` rise.
//!
//! While a per-CPU pool has items waiting behind running workers, it ticks faster: from
//! `cm_min_tick` (20 us), doubling after quiet ticks up to `cm_tick`, like Go's sysmon. A busy
//! worker whose thread CPU clock has not moved since the previous sample and whose thread state
//! is S or D is marked sleeping: it leaves `nr_running` and the pool is kicked, so another
//! worker starts. When its clock moves again it counts as running again.
//!
//! Thread CPU clocks and states are read from `/proc/thread-self/{schedstat,stat}` opened by
//! each worker for itself and re-read with `pread`, so no `unsafe` is needed. Where /proc is
//! unavailable, only the `blocking` hint manages concurrency.

use crate::clock::{Clock, Sleeper};
use crate::pool::{flags, Sleeping, WorkerPool};
use crate::sync::{Arc, AtomicU8, Mutex, Ordering};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// Run-time probe of one thread.
#[derive(Debug)]
pub(crate) struct ThreadProbe {
    /// `/proc/thread-self/schedstat`: first field is the time spent on a CPU, in ns.
    schedstat: File,
    /// `/proc/thread-self/stat`: the third field is the thread state.
    stat: File,
}

impl ThreadProbe {
    /// Opens the calling thread's probe.
    pub(crate) fn open_current() -> Option<ThreadProbe> {
        Some(ThreadProbe {
            schedstat: File::open("/proc/thread-self/schedstat").ok()?,
            stat: File::open("/proc/thread-self/stat").ok()?,
        })
    }

    /// Total CPU time of the thread in nanoseconds.
    pub(crate) fn runtime_ns(&self) -> Option<u64> {
        let mut buf = [0u8; 96];
        let n = self.schedstat.read_at(&mut buf, 0).ok()?;
        let s = std::str::from_utf8(&buf[..n]).ok()?;
        s.split_ascii_whitespace().next()?.parse().ok()
    }

    /// Whether the thread is sleeping (state S) or in uninterruptible sleep (D).
    pub(crate) fn is_sleeping(&self) -> bool {
        let mut buf = [0u8; 512];
        let Ok(n) = self.stat.read_at(&mut buf, 0) else {
            return false;
        };
        let buf = &buf[..n];
        // The state follows the last ')' (the command name may contain spaces and parens).
        let Some(p) = buf.iter().rposition(|&b| b == b')') else {
            return false;
        };
        matches!(buf.get(p + 2), Some(b'S') | Some(b'D'))
    }
}

/// Pins the calling thread to `cpu` (modulo the CPUs the process may use).
pub(crate) fn pin_current_thread(cpu: usize) {
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
    let Ok(allowed) = sched_getaffinity(None) else {
        return;
    };
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).collect();
    if cpus.is_empty() {
        return;
    }
    let mut set = CpuSet::new();
    set.set(cpus[cpu % cpus.len()]);
    let _ = sched_setaffinity(None, &set);
}

/// The CPU the calling thread runs on, folded onto `nr_cpus` modelled CPUs.
pub(crate) fn current_cpu(nr_cpus: usize) -> usize {
    rustix::thread::sched_getcpu() % nr_cpus
}

const PARKED: u8 = 0;
const SLOW: u8 = 1;
const FAST: u8 = 2;
/// Nothing busy at the last tick, but recently: polling every `IDLE_POLL_TICKS` ticks.
const IDLE_POLL: u8 = 3;
/// Slow polls after the last busy tick before parking: 20 × 10 ticks = 200 ms by default.
const IDLE_POLLS: u32 = 20;
/// The idle poll interval, in ticks.
const IDLE_POLL_TICKS: u32 = 10;

/// The monitor's shared state.
#[derive(Debug)]
pub(crate) struct Monitor {
    /// PARKED, IDLE_POLL (recently busy: a slow poll), SLOW (busy workers, tick at `cm_tick`)
    /// or FAST (items wait on a per-CPU pool).
    /// SeqCst: a worker's "I became busy" (under its pool lock) must not be missed by a
    /// monitor that decides to park; both sides use SeqCst on this word and the monitor
    /// re-scans the pools after publishing PARKED.
    mode: AtomicU8,
    /// What the monitor thread waits on.
    sleeper: Arc<Sleeper>,
    /// The pools to watch (per-CPU pools first, then unbound ones as they are created).
    pools: Mutex<Vec<Arc<WorkerPool>>>,
    /// Set at shutdown.
    stop: crate::sync::AtomicBool,
}

impl Monitor {
    pub(crate) fn new() -> Monitor {
        Monitor {
            mode: AtomicU8::new(PARKED),
            sleeper: Sleeper::new(),
            pools: Mutex::new(Vec::new()),
            stop: crate::sync::AtomicBool::new(false),
        }
    }

    pub(crate) fn add_pool(&self, pool: Arc<WorkerPool>) {
        self.pools.lock().push(pool);
    }

    /// A worker started an item: make sure the monitor ticks (it is woken only if parked; while
    /// it polls, the next poll finds the busy worker).
    #[inline]
    pub(crate) fn note_busy(&self) {
        if self.mode.load(Ordering::SeqCst) == PARKED && self.mode.swap(SLOW, Ordering::SeqCst) == PARKED {
            self.sleeper.notify();
        }
    }

    /// Items wait behind running workers on a per-CPU pool: tick fast.
    #[inline]
    pub(crate) fn note_waiting(&self) {
        if self.mode.load(Ordering::SeqCst) != FAST && self.mode.swap(FAST, Ordering::SeqCst) != FAST {
            self.sleeper.notify();
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // The pools point back at the runtime's environment, which owns this monitor.
        self.pools.lock().clear();
        self.sleeper.notify();
    }

    /// The monitor thread's body.
    pub(crate) fn run(&self, clock: &Clock, cfg: &crate::runtime::Config) {
        let mut fast = cfg.cm_min_tick;
        let mut quiet = 0u32;
        let mut idle_polls = 0u32;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let pools: Vec<Arc<WorkerPool>> = self.pools.lock().clone();
            let mut scan = Scan::default();
            for p in &pools {
                scan_pool(p, cfg, &mut scan);
            }
            let interval = if scan.waiting {
                self.mode.store(FAST, Ordering::SeqCst);
                if scan.acted {
                    fast = cfg.cm_min_tick;
                    quiet = 0;
                } else {
                    quiet += 1;
                    if quiet >= 8 {
                        fast = (fast * 2).min(cfg.cm_tick);
                    }
                }
                Some(fast)
            } else if scan.busy {
                fast = cfg.cm_min_tick;
                quiet = 0;
                idle_polls = 0;
                self.mode.store(SLOW, Ordering::SeqCst);
                Some(cfg.cm_tick)
            } else if idle_polls < IDLE_POLLS {
                // Recently busy: poll slowly for a while instead of parking, so that a trickle
                // of short items does not wake the monitor for every item (a wake-up on each
                // item's path would double its latency).
                idle_polls += 1;
                self.mode.store(IDLE_POLL, Ordering::SeqCst);
                Some(cfg.cm_tick * IDLE_POLL_TICKS)
            } else {
                self.mode.store(PARKED, Ordering::SeqCst);
                // Re-check after publishing PARKED: a worker that became busy before seeing
                // PARKED did not notify us.
                let mut again = Scan::default();
                for p in &pools {
                    peek_pool(p, &mut again);
                }
                if again.busy {
                    self.mode.store(SLOW, Ordering::SeqCst);
                    Some(cfg.cm_tick)
                } else {
                    None
                }
            };
            let deadline = interval.map(|d| clock.now() + d);
            clock.wait_until(&self.sleeper, deadline);
        }
    }
}

#[derive(Default)]
struct Scan {
    /// Some worker is busy.
    busy: bool,
    /// Some per-CPU pool has items waiting behind running workers.
    waiting: bool,
    /// This tick changed some worker's state.
    acted: bool,
}

fn peek_pool(pool: &WorkerPool, scan: &mut Scan) {
    let g = pool.lock();
    scan.busy |= !g.busy.is_empty();
}

/// One tick over one pool: sample busy workers outside the lock, then apply under it.
fn scan_pool(pool: &WorkerPool, cfg: &crate::runtime::Config, scan: &mut Scan) {
    let mut samples: Vec<(usize, u64, Arc<ThreadProbe>)> = Vec::new();
    {
        let g = pool.lock();
        if g.busy.is_empty() {
            return;
        }
        scan.busy = true;
        for (id, w) in g.workers.iter() {
            if let (Some(cur), Some(p)) = (&w.current, &w.probe) {
                samples.push((id, cur.seq, p.clone()));
            }
        }
    }
    // Read the clocks (and, for candidates, the states) without the pool lock.
    let mut readings: Vec<(usize, u64, u64, bool)> = Vec::with_capacity(samples.len());
    for (id, seq, probe) in &samples {
        if let Some(rt) = probe.runtime_ns() {
            readings.push((*id, *seq, rt, false));
        }
    }
    let mut g = pool.lock();
    let cm = pool.is_cm();
    for (id, seq, rt, _) in &mut readings {
        let Some(w) = g.workers.get(*id) else {
            continue;
        };
        let Some(cur) = &w.current else { continue };
        if cur.seq != *seq {
            continue;
        }
        let slot = cur.pwq as usize;
        let mon = w.mon;
        let sleeping = w.sleeping;
        let wflags = w.flags;
        if !mon.valid || mon.seq != *seq {
            let w = &mut g.workers[*id];
            w.mon = crate::pool::MonSample { seq: *seq, runtime: *rt, hog_base: *rt, valid: true };
            continue;
        }
        let delta = rt.saturating_sub(mon.runtime);
        g.pwqs[slot].stats.cpu_time_ns += delta;
        g.workers[*id].mon.runtime = *rt;
        if !cm {
            continue;
        }
        let counts = wflags & flags::NOT_RUNNING == 0;
        match sleeping {
            Sleeping::No if counts && delta == 0 => {
                // Candidate: confirm with the thread state (outside the lock would be nicer,
                // but the read is short and only happens for stopped clocks).
                let probe = g.workers[*id].probe.clone();
                if probe.is_some_and(|p| p.is_sleeping()) {
                    g.worker_set_sleeping(*id, Sleeping::Seen);
                    pool.cm_kick(&mut g, *id);
                    scan.acted = true;
                }
            }
            Sleeping::Seen if delta > 0 => {
                g.worker_set_sleeping(*id, Sleeping::No);
                g.workers[*id].mon.hog_base = *rt;
                scan.acted = true;
            }
            _ => {}
        }
        let w = &g.workers[*id];
        let thresh = cfg.cpu_intensive_thresh;
        if !thresh.is_zero()
            && w.flags & flags::NOT_RUNNING == 0
            && w.sleeping == Sleeping::No
            && Duration::from_nanos(rt.saturating_sub(w.mon.hog_base)) >= thresh
        {
            g.worker_set_flags(*id, flags::CPU_INTENSIVE);
            g.pwqs[slot].stats.cpu_intensive += 1;
            pool.cm_kick(&mut g, *id);
            scan.acted = true;
        }
    }
    if cm && !g.worklist.is_empty() && g.nr_running > 0 {
        scan.waiting = true;
    }
}
