//! The monitor: the userspace stand-in for the scheduler hooks (`wq_worker_sleeping`,
//! `wq_worker_running`, `wq_worker_tick`; kernel-notes §4.3, DESIGN.md §3).
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
//! `cm_min_tick` (300 us), doubling after quiet ticks up to 5 × `cm_min_tick` but never beyond
//! `cm_tick`, like Go's sysmon (20 us to 10 ms) but capped low, since a late detection wastes a
//! whole CPU meanwhile (the choice of 300 us is measured: `CM_MIN_TICK`). A busy
//! worker whose thread CPU clock has not moved since the previous sample and whose thread state
//! is S or D is marked sleeping: it leaves `nr_running` and the pool is kicked, so another
//! worker starts. When its clock moves again it counts as running again.
//!
//! Thread CPU clocks are read with `clock_gettime` on each worker's thread CPU-time clock, and
//! thread states from `/proc/thread-self/stat`, opened by each worker for itself and re-read with
//! `pread` (only when a clock stopped), all through safe crate APIs (`sys.rs`). Where these are unavailable,
//! only the `blocking` hint manages concurrency.
//!
//! With the switch detector ([`Detector::Switch`], docs/design.md §4.2) the sleep rule above
//! applies only to workers without switch records: the scan that finds items waiting behind a
//! worker enables and arms that worker's switch event, and a second thread, the detector
//! (`Monitor::run_detector`), applies what its records say the moment it blocks or runs again.
//! The monitor still ticks for CPU time and hogs, at `cm_tick` while every waited-on worker is
//! watched that way.

pub(crate) mod switch;

use crate::clock::{Clock, Sleeper};
use crate::pool::{Sleeping, WorkerPool};
use crate::sync::{Arc, AtomicU64, AtomicU8, Mutex, Ordering};
use crate::sys::{Poller, SwitchEvent, ThreadProbe};
use std::collections::HashMap;
use std::time::Duration;
use switch::{Seen, Verdict, WorkerSwitch};

/// How the monitor learns that a busy worker of a per-CPU pool blocked
/// ([`RuntimeBuilder::detector`](crate::RuntimeBuilder::detector), `CMWQ_DETECTOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detector {
    /// From the kernel's context-switch records (a perf event per worker, `switch`): a
    /// blocked worker is replaced within tens of microseconds. Where the kernel refuses perf
    /// events, or for a worker whose event could not be opened, sampling is used instead.
    Switch,
    /// By sampling busy workers' CPU clocks and thread states while items wait (`sample`):
    /// a block is noticed after one to a few fast ticks (0.3-1.5 ms).
    Sample,
}

impl Detector {
    /// Parses `switch` or `sample` (the values of `CMWQ_DETECTOR`).
    pub fn from_name(s: &str) -> Option<Detector> {
        match s.trim() {
            "switch" => Some(Detector::Switch),
            "sample" => Some(Detector::Sample),
            _ => None,
        }
    }

    /// `switch` or `sample`.
    pub fn name(self) -> &'static str {
        match self {
            Detector::Switch => "switch",
            Detector::Sample => "sample",
        }
    }
}

const PARKED: u8 = 0;
const SLOW: u8 = 1;
const FAST: u8 = 2;
/// Nothing busy at the last tick, but recently: polling every `IDLE_POLL_TICKS` ticks.
const IDLE_POLL: u8 = 3;
/// Slow polls after the last busy tick before parking: 20 × 10 ticks = 200 ms by default.
const IDLE_POLLS: u32 = 20;
/// Fast ticks without an event before the fast interval starts doubling (Go's sysmon waits 20).
const QUIET_TICKS: u32 = 4;
/// The fast interval grows at most to this many `cm_min_tick`s (and never beyond `cm_tick`):
/// long enough to cost little, short enough that a worker that falls asleep after a long CPU
/// burst is still noticed within a millisecond or two (docs/design.md §4).
const FAST_TICK_CAP: u32 = 5;
/// The idle poll interval, in ticks.
const IDLE_POLL_TICKS: u32 = 10;

/// The knobs the monitor reads (from the runtime's config; `RuntimeBuilder::cm_tick`,
/// `cpu_intensive_thresh`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Knobs {
    /// The tick while workers are busy (`CM_TICK`).
    pub(crate) cm_tick: Duration,
    /// The fastest tick while items wait behind running workers (`CM_MIN_TICK`).
    pub(crate) cm_min_tick: Duration,
    /// CPU time after which an item is marked CPU-intensive; zero disables.
    pub(crate) cpu_intensive_thresh: Duration,
}

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
    /// The wait of the switch detector (`Detector::Switch`): the monitor waits on the
    /// watched workers' switch events and on its own wake-up instead of `sleeper`.
    poller: Option<Poller>,
    /// The next worker's token in `poller`. Relaxed: a counter.
    next_token: AtomicU64,
    /// The workers with a switch event, by token: where the detector thread applies what a
    /// ring says. Weak: an entry never keeps a pool or an event alive.
    watched: Mutex<HashMap<u64, Watched>>,
    /// The detector thread stopped on an error: sampling decides again.
    detector_failed: crate::sync::AtomicBool,
}

/// A worker with a switch event, as the detector thread finds it from a token.
#[derive(Debug)]
struct Watched {
    pool: crate::sync::Weak<WorkerPool>,
    id: usize,
    switch: crate::sync::Weak<WorkerSwitch>,
}

impl Monitor {
    /// A monitor; with `switch`, one that detects blocking from context-switch records if the
    /// kernel allows it here (a probe event opens on the calling thread).
    pub(crate) fn new(switch: bool) -> Monitor {
        let poller = if switch && SwitchEvent::open_current().is_ok() { Poller::new().ok() } else { None };
        Monitor {
            mode: AtomicU8::new(PARKED),
            sleeper: Sleeper::new(),
            pools: Mutex::new(Vec::new()),
            stop: crate::sync::AtomicBool::new(false),
            poller,
            next_token: AtomicU64::new(0),
            watched: Mutex::new(HashMap::new()),
            detector_failed: crate::sync::AtomicBool::new(false),
        }
    }

    /// The detector in effect.
    pub(crate) fn detector(&self) -> Detector {
        if self.poller.is_some() {
            Detector::Switch
        } else {
            Detector::Sample
        }
    }

    /// Opens the calling worker's switch event and registers it, disarmed, with the poller;
    /// `None` with the sampling detector or where the event cannot be opened (that worker is
    /// then sampled).
    pub(crate) fn open_switch(&self, pool: &Arc<WorkerPool>, id: usize) -> Option<Arc<WorkerSwitch>> {
        let poller = self.poller.as_ref()?;
        let event = SwitchEvent::open_current().ok()?;
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let ws = Arc::new(WorkerSwitch::new(event, token));
        ws.with_fd(|fd| poller.add(fd, token)).ok()?;
        let w = Watched { pool: Arc::downgrade(pool), id, switch: Arc::downgrade(&ws) };
        self.watched.lock().insert(token, w);
        Some(ws)
    }

    /// Unregisters an exiting worker's switch event (before its fd closes).
    pub(crate) fn close_switch(&self, ws: &WorkerSwitch) {
        self.watched.lock().remove(&ws.token);
        if let Some(p) = &self.poller {
            ws.with_fd(|fd| p.remove(fd));
        }
    }

    /// Wakes the monitor thread.
    fn wake(&self) {
        self.sleeper.notify();
    }

    pub(crate) fn add_pool(&self, pool: Arc<WorkerPool>) {
        self.pools.lock().push(pool);
    }

    /// A worker started an item: make sure the monitor ticks (it is woken only if parked; while
    /// it polls, the next poll finds the busy worker).
    #[inline]
    pub(crate) fn note_busy(&self) {
        if self.mode.load(Ordering::SeqCst) == PARKED && self.mode.swap(SLOW, Ordering::SeqCst) == PARKED {
            self.wake();
        }
    }

    /// Items wait behind running workers on a per-CPU pool: tick fast.
    #[inline]
    pub(crate) fn note_waiting(&self) {
        if self.mode.load(Ordering::SeqCst) != FAST && self.mode.swap(FAST, Ordering::SeqCst) != FAST {
            self.wake();
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // The pools point back at the runtime's environment, which owns this monitor.
        self.pools.lock().clear();
        self.watched.lock().clear();
        self.wake();
        if let Some(p) = &self.poller {
            p.wake();
        }
    }

    /// The monitor thread's body.
    pub(crate) fn run(&self, clock: &Clock, cfg: &Knobs) {
        let mut fast = cfg.cm_min_tick;
        let mut quiet = 0u32;
        let mut idle_polls = 0u32;
        let mut pools: Vec<Arc<WorkerPool>> = Vec::new();
        let mut buf = ScanBuf::default();
        let mut last_full = clock.now();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            pools.clone_from(&self.pools.lock());
            let now = clock.now();
            let full = now.saturating_duration_since(last_full) >= cfg.cm_tick;
            if full {
                last_full = now;
            }
            let mut scan = Scan::default();
            buf.want.clear();
            for p in &pools {
                scan_pool(p, cfg, full, self.poller.as_ref(), &mut buf, &mut scan);
            }
            self.arm_wanted(&mut buf);
            let switch_ok = self.poller.is_some() && !self.detector_failed.load(Ordering::Relaxed);
            let interval = if scan.waiting && switch_ok && !scan.needs_sampling {
                // Every worker items wait behind is watched by its switch records: tick only
                // for CPU time and hogs.
                self.mode.store(FAST, Ordering::SeqCst);
                fast = cfg.cm_min_tick;
                quiet = 0;
                Some(cfg.cm_tick)
            } else if scan.waiting {
                self.mode.store(FAST, Ordering::SeqCst);
                if scan.acted {
                    fast = cfg.cm_min_tick;
                    quiet = 0;
                } else {
                    quiet += 1;
                    if quiet >= QUIET_TICKS {
                        fast =
                            fast.saturating_mul(2).min(cfg.cm_tick).min(cfg.cm_min_tick.saturating_mul(FAST_TICK_CAP));
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
                Some(cfg.cm_tick.saturating_mul(IDLE_POLL_TICKS))
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
            let deadline = interval.map(|d| clock.deadline_in(d));
            clock.wait_until(&self.sleeper, deadline);
        }
    }

    /// The detector thread's body (`Detector::Switch`; docs/design.md §4.2): waits, with no
    /// timeout, until an armed worker's ring has records (or `stop`), reads them, and applies
    /// what they say under the worker's pool lock: `worker_sleeping` on a blocking switch-out,
    /// `worker_running` on the switch-in of a worker marked sleeping. It runs at the default
    /// priority, not the monitor's: a worker that blocks leaves its CPU free, so the detector
    /// runs at once, while on a worker's preemption or switch-in it must not preempt the
    /// worker (that would switch the worker out again and wake the detector again, forever).
    pub(crate) fn run_detector(&self) {
        let Some(poller) = &self.poller else { return };
        let mut buf = crate::sys::PollBuf::default();
        let mut tokens = Vec::new();
        let mut ready = Vec::new();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if poller.wait(None, &mut buf, &mut tokens).is_err() {
                // Cannot happen with a valid epoll set; the monitor then watches every worker
                // by sampling (`needs_sampling`) rather than trusting records nobody reads.
                self.detector_failed.store(true, Ordering::SeqCst);
                return;
            }
            ready.clear();
            {
                let watched = self.watched.lock();
                for t in &tokens {
                    if let Some(w) = watched.get(t) {
                        ready.push((w.pool.clone(), w.id, w.switch.clone()));
                    }
                }
            }
            for (pool, id, ws) in ready.drain(..) {
                let (Some(pool), Some(ws)) = (pool.upgrade(), ws.upgrade()) else { continue };
                let st = ws.drain();
                let (_, wanted) = {
                    let mut g = pool.lock_to_inspect();
                    let r = g.worker_switched(id, &ws, st.seen, None);
                    (r, g.switch_wanted(id))
                };
                if !wanted {
                    // Idle, or nothing waits behind it: its records would wake us for nothing
                    // until the monitor's next look (which arms it again if needed).
                    ws.disarm(poller);
                }
            }
        }
    }

    /// Disarms the workers armed before that this scan no longer wants watched (`scan_pool`
    /// armed the wanted ones).
    fn arm_wanted(&self, buf: &mut ScanBuf) {
        let Some(p) = &self.poller else { return };
        for ws in buf.armed.iter() {
            if !buf.want.iter().any(|w| Arc::ptr_eq(w, ws)) {
                ws.disarm(p);
            }
        }
        buf.armed.clear();
        buf.armed.extend(buf.want.iter().cloned());
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
    /// Some worker that items wait behind is not watched by switch records (no event, or
    /// its records were lost): the fast tick must sample it.
    needs_sampling: bool,
}

fn peek_pool(pool: &Arc<WorkerPool>, scan: &mut Scan) {
    let g = pool.lock_to_inspect();
    scan.busy |= g.any_busy();
}

/// What the monitor remembers of a busy worker between ticks; kept in the worker's record
/// (under its pool lock), read and written only by the monitor, except that the worker restarts
/// the hog clock when it wakes from a `blocking` section.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MonSample {
    /// The worker thread's total run time (ns) at the last sample, whatever it ran then. The
    /// CPU time between two samples goes to the item running at the second (tick sampling, as
    /// the kernel's `wq_worker_tick`), so none is lost when items change between samples.
    runtime: Option<u64>,
    /// The execution (`Current::seq`) `hog_base` belongs to.
    seq: u64,
    /// Run time when the item started or last woke (the kernel's `current_at`).
    hog_base: u64,
    /// Whether `hog_base` is valid for `seq`.
    hog_valid: bool,
}

impl MonSample {
    /// Restarts the CPU-hog clock (`wq_worker_running` resets `current_at`): at `now_ns` of
    /// the worker's run time if known, else at the next sample.
    pub(crate) fn restart_hog(&mut self, now_ns: Option<u64>) {
        match now_ns {
            Some(now) => self.hog_base = now,
            None => self.hog_valid = false,
        }
    }
}

/// One busy worker's sample: taken under the pool lock, completed outside it.
struct Sample {
    id: usize,
    seq: u64,
    probe: Arc<ThreadProbe>,
    /// The monitor's previous reading of this worker's clock, if any.
    prev: Option<u64>,
    /// The previous reading was taken during this same execution.
    same_item: bool,
    /// This tick's reading.
    now: u64,
    /// Its state is S or D (read only for counted workers whose clock stopped).
    asleep: bool,
    /// Its switch event, if it has one.
    switch: Option<Arc<WorkerSwitch>>,
    /// Marked sleeping by the monitor at the snapshot.
    marked: bool,
    /// Counted toward `nr_running` at the snapshot (no NOT_RUNNING flag).
    counts: bool,
    /// What its switch records say (`Seen::Unknown` without an event).
    seen: Seen,
}

impl Sample {
    /// What its switch records mean for it (`Verdict::Sample` without an event or records).
    fn verdict(&self) -> Verdict {
        switch::verdict(self.seen, self.marked)
    }
}

/// Buffers reused from tick to tick, so a tick allocates nothing.
#[derive(Default)]
struct ScanBuf {
    samples: Vec<Sample>,
    /// The workers this tick wants the poller armed for: those items wait behind, and those
    /// marked sleeping (their switch-in says they run again).
    want: Vec<Arc<WorkerSwitch>>,
    /// The workers the poller is armed for now.
    armed: Vec<Arc<WorkerSwitch>>,
}

/// One tick over one pool: snapshot the busy workers under the lock, read their clocks (and
/// the states of stopped ones) without it, then apply under it through the pool's
/// concurrency transitions (`worker_sleeping`, `worker_running`, `worker_hogged`). A `full`
/// tick (every `cm_tick`) samples every busy worker for CPU time and hogs; a fast tick only
/// looks at the counted and sleeping workers of a per-CPU pool where items wait.
/// With the switch detector, a worker's switch records decide whether it sleeps or runs
/// again (`switch::verdict`); the clock-and-state heuristic decides only for workers without
/// records. The poller is armed for the workers it wants watched (`Monitor::arm_wanted`).
fn scan_pool(
    pool: &Arc<WorkerPool>,
    cfg: &Knobs,
    full: bool,
    poller: Option<&Poller>,
    buf: &mut ScanBuf,
    scan: &mut Scan,
) {
    let cm = pool.is_cm();
    buf.samples.clear();
    let pool_waiting;
    {
        let g = pool.lock_to_inspect();
        if !g.any_busy() {
            return;
        }
        scan.busy = true;
        let waiting = g.items_wait_behind_running();
        scan.waiting |= waiting;
        pool_waiting = waiting;
        if !full && !waiting {
            return;
        }
        g.for_each_busy(|w| {
            if !(full || w.counts || w.sleeping == Sleeping::Seen) {
                return;
            }
            let marked = w.sleeping == Sleeping::Seen;
            let same_item = w.mon.hog_valid && w.mon.seq == w.seq;
            let prev = w.mon.runtime;
            buf.samples.push(Sample {
                id: w.id,
                seq: w.seq,
                probe: w.probe.clone(),
                prev,
                same_item,
                now: 0,
                asleep: false,
                switch: w.switch.cloned(),
                marked,
                counts: w.counts,
                seen: Seen::Unknown,
            });
        });
    }
    // Read the rings, the clocks, and the states of unwatched workers whose clock stopped,
    // without the lock.
    let waiting = pool_waiting;
    let (want, needs_sampling) = (&mut buf.want, &mut scan.needs_sampling);
    buf.samples.retain_mut(|s| {
        if let (true, Some(ws), Some(p)) = (cm, &s.switch, poller) {
            if s.marked || (waiting && s.counts) {
                // Watch it: enable its event (a no-op if it is on) before reading its ring.
                ws.set_armed(p, &s.probe);
                want.push(ws.clone());
            }
            s.seen = ws.drain().seen;
        }
        if cm && waiting && s.verdict() == Verdict::Sample {
            *needs_sampling = true;
        }
        match s.probe.runtime_ns() {
            Some(rt) => {
                s.now = rt;
                s.asleep =
                    cm && s.verdict() == Verdict::Sample && s.same_item && s.prev == Some(rt) && s.probe.is_sleeping();
                true
            }
            None => false,
        }
    });
    let mut g = pool.lock_to_inspect();
    for s in &buf.samples {
        let delta = s.prev.map_or(0, |p| s.now.saturating_sub(p));
        let Some(mon) = g.sample_of(s.id, s.seq, delta) else { continue };
        let same_item = s.same_item && mon.hog_valid && mon.seq == s.seq;
        mon.runtime = Some(s.now);
        if !same_item {
            // First look at this execution: the hog clock starts here.
            mon.seq = s.seq;
            mon.hog_base = s.now;
            mon.hog_valid = true;
        }
        let mut hog_base = mon.hog_base;
        if !cm {
            continue;
        }
        let Some((counts, sleeping)) = g.worker_state(s.id) else { continue };
        if let (Some(ws), true) = (&s.switch, s.verdict() != Verdict::Sample) {
            // The switch records decide, at once (docs/design.md §4.2), through the same
            // transition as the detector thread.
            match g.worker_switched(s.id, ws, s.seen, Some(s.now)) {
                Some(Verdict::Running) => {
                    hog_base = s.now;
                    scan.acted = true;
                }
                Some(Verdict::Sleeping) => scan.acted = true,
                _ => {}
            }
        } else if !same_item {
            // The clock heuristic needs two samples of one execution.
            continue;
        } else {
            match sleeping {
                Sleeping::No if counts && delta == 0 && s.asleep => {
                    scan.acted |= g.worker_sleeping(s.id, Sleeping::Seen);
                }
                Sleeping::Seen if delta > 0 => {
                    g.worker_running(s.id, Some(s.now));
                    hog_base = s.now;
                    scan.acted = true;
                }
                _ => {}
            }
        }
        if !same_item {
            continue;
        }
        let thresh = cfg.cpu_intensive_thresh;
        let Some((counts, sleeping)) = g.worker_state(s.id) else { continue };
        if !thresh.is_zero()
            && counts
            && sleeping == Sleeping::No
            && Duration::from_nanos(s.now.saturating_sub(hog_base)) >= thresh
        {
            g.worker_hogged(s.id);
            scan.acted = true;
        }
    }
    scan.waiting |= g.items_wait_behind_running();
}
