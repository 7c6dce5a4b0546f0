//! `cmwq demo`: a realistic mix of blocking and CPU-bound work on cmwq, shown live in the
//! columns of the kernel's wq_monitor.py, then the same items on a fixed pool of plain threads.
//!
//! The workload (all generated up front from a seed, so both runs get identical items at
//! identical times):
//! * `writeback` (per-CPU, `mem_reclaim`, as the kernel's write-back paths are): a write-back
//!   pipeline. Each item waits for its "disk" (a blocking read on a Unix socket that the
//!   simulated device answers after 3-15 ms), then checksums (0.2-0.6 ms of CPU). A steady
//!   stream, plus a burst every second, as when dirty pages expire. Items are spread over the
//!   CPUs with `queue_on`.
//! * `crypto` (per-CPU): CPU-bound items of 1-4 ms; one in 25 runs 15-25 ms and so trips the
//!   CPU-intensive threshold (10 ms).
//! * `fsync` (unbound, max_active 16): synchronous waits of 20-40 ms (`thread::sleep`).
//! * `readahead` (unbound, max_active 32): a socket read of 4-10 ms, then 0.3-1 ms of CPU.
//!
//! Then, on the same runtime, a period of memory pressure ([`plan_pressure`], about 3 s): the
//! runtime's spawner (a [`cmwq::FailingSpawner`]) refuses every new worker thread, and
//! allocations block until memory comes back. Write-back items like the ones above keep
//! arriving on `writeback`, and `prefetch` items (per-CPU, no `mem_reclaim`: allocate page-cache
//! pages, then a 4-10 ms read) on the same per-CPU pools. The prefetch items tie up the workers
//! left over from the first phase (each blocks in its allocation), the pools cannot create
//! more, and after `MAYDAY_INITIAL_TIMEOUT` they call `writeback`'s rescuer, which runs its
//! items one at a time; the prefetch items behind them wait for a worker. Then memory and
//! thread creation come back. The fixed pool of the comparison does not get this period.
//!
//! No item uses `cmwq::blocking`: cmwq's monitor must notice sleeping workers by itself.
//! Every number printed is measured in the run; nothing is estimated.

pub mod items;

use crate::fixed_pool::FixedPool;
use crate::table::{self, human, Progress, WqRow};
use cmwq::{FailMode, FailingSpawner, Runtime, Work, Workqueue};
use crossterm::{cursor, terminal, QueueableCommand};
use items::{Block, Burner, Device, Item, Memory};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Options of `cmwq demo`.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long items keep arriving.
    pub duration: Duration,
    /// CPUs modelled by the runtime; also the fixed pool's thread count.
    pub cpus: usize,
    /// Seed of the workload generator.
    pub seed: u64,
    /// Redraw in place (`None`: when stdout is a terminal).
    pub live: Option<bool>,
}

/// One of the demo's workqueues.
#[derive(Debug, Clone, Copy)]
struct WqSpec {
    name: &'static str,
    unbound: bool,
    mem_reclaim: bool,
    max_active: usize,
}

const WQS: [WqSpec; 5] = [
    WqSpec { name: "writeback", unbound: false, mem_reclaim: true, max_active: 0 },
    WqSpec { name: "crypto", unbound: false, mem_reclaim: false, max_active: 0 },
    WqSpec { name: "fsync", unbound: true, mem_reclaim: false, max_active: 16 },
    WqSpec { name: "readahead", unbound: true, mem_reclaim: false, max_active: 32 },
    WqSpec { name: "prefetch", unbound: false, mem_reclaim: false, max_active: 0 },
];

/// Index of `writeback` (the `mem_reclaim` workqueue) in [`WQS`].
const WB: usize = 0;
/// Index of `prefetch` (used only in the memory-pressure period) in [`WQS`].
const PREFETCH: usize = 4;

/// Write-back arrivals per second during the memory-pressure period, all CPUs together (one
/// rescuer thread serves the whole workqueue, so this does not grow with the CPUs).
const PRESSURE_WB_RATE: f64 = 50.0;
/// Prefetch arrivals per second and CPU during the memory-pressure period.
const PRESSURE_PREFETCH_RATE: f64 = 60.0;
/// The pools' wait between failed worker creations in this demo (the kernel's
/// `CREATE_COOLDOWN` is 1 s; shorter, so the pools notice sooner that creation works again).
const DEMO_CREATE_COOLDOWN: Duration = Duration::from_millis(100);

/// Length of the memory-pressure period: 3/8 of the arrival time, between 1 and 3 s (3 s in the
/// default run, 1 s with `--quick`).
pub fn pressure_period(duration: Duration) -> Duration {
    Duration::from_secs_f64((duration.as_secs_f64() * 0.375).clamp(1.0, 3.0))
}

/// An item of the workload, with when and where it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Arrival time from the start.
    pub at: Duration,
    /// Index into the demo's workqueues.
    pub wq: usize,
    /// The CPU for per-CPU workqueues.
    pub cpu: Option<usize>,
    /// What it does.
    pub item: Item,
}

/// splitmix64: a small, good, seedable generator (no dependency needed).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    /// Uniform in `(0, 1]`.
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Generates the workload: Poisson streams per workqueue plus write-back bursts, sorted by
/// arrival.
pub fn plan(duration: Duration, cpus: usize, seed: u64) -> Vec<Planned> {
    let mut rng = Rng(seed);
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
fn poisson(rng: &mut Rng, wq: usize, rate: f64, end: f64, cpus: usize, out: &mut Vec<Planned>) {
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
pub fn plan_pressure(period: Duration, cpus: usize, seed: u64) -> Vec<Planned> {
    let mut rng = Rng(seed ^ 0x6d65_6d5f_7072_6573);
    let cpus = cpus.max(1);
    let end = period.as_secs_f64();
    let mut out = Vec::new();
    poisson(&mut rng, WB, PRESSURE_WB_RATE, end, cpus, &mut out);
    poisson(&mut rng, PREFETCH, PRESSURE_PREFETCH_RATE * cpus as f64, end, cpus, &mut out);
    out.sort_by_key(|p| p.at);
    out
}

fn make_item(wq: usize, rng: &mut Rng) -> Item {
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

/// What the items of one run need, and where they record when they ran.
#[derive(Debug)]
struct Ledger {
    t0: Instant,
    device: Device,
    burner: Burner,
    memory: Memory,
    submitted_ns: Vec<AtomicU64>,
    started_ns: Vec<AtomicU64>,
    finished_ns: Vec<AtomicU64>,
    /// Whether the item ran on a rescuer thread (`kworker/R-...`).
    on_rescuer: Vec<AtomicBool>,
    done: AtomicU64,
    /// Set when a run overstays its deadline: the remaining items return at once, unrecorded.
    skip: AtomicBool,
}

const NOT_YET: u64 = u64::MAX;

/// When one item was queued, started and finished (since its run's start), and where it ran.
#[derive(Debug, Clone, Copy)]
struct ItemRecord {
    submitted: Option<Duration>,
    started: Option<Duration>,
    finished: Option<Duration>,
    on_rescuer: bool,
}

impl ItemRecord {
    /// Time on the queue, from queueing to start.
    fn wait(&self) -> Option<Duration> {
        Some(self.started?.saturating_sub(self.submitted?))
    }

    /// From queueing to finish.
    fn latency(&self) -> Option<Duration> {
        Some(self.finished?.saturating_sub(self.submitted?))
    }
}

impl Ledger {
    fn new(n: usize, burner: Burner) -> std::io::Result<Ledger> {
        Ok(Ledger {
            t0: Instant::now(),
            device: Device::start()?,
            burner,
            memory: Memory::default(),
            submitted_ns: (0..n).map(|_| AtomicU64::new(NOT_YET)).collect(),
            started_ns: (0..n).map(|_| AtomicU64::new(NOT_YET)).collect(),
            finished_ns: (0..n).map(|_| AtomicU64::new(NOT_YET)).collect(),
            on_rescuer: (0..n).map(|_| AtomicBool::new(false)).collect(),
            done: AtomicU64::new(0),
            skip: AtomicBool::new(false),
        })
    }

    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn submitted(&self, i: usize) {
        self.submitted_ns[i].store(self.now_ns(), Ordering::Relaxed);
    }

    fn run(&self, i: usize, item: &Item) {
        if self.skip.load(Ordering::Relaxed) {
            return;
        }
        self.started_ns[i].store(self.now_ns(), Ordering::Relaxed);
        if thread::current().name().is_some_and(|n| n.starts_with("kworker/R-")) {
            self.on_rescuer[i].store(true, Ordering::Relaxed);
        }
        item.run(&self.device, &self.burner, &self.memory);
        self.finished_ns[i].store(self.now_ns(), Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Release);
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }

    /// What item `i` recorded, in time since the start.
    fn record(&self, i: usize) -> ItemRecord {
        let at = |v: &[AtomicU64]| match v[i].load(Ordering::Relaxed) {
            NOT_YET => None,
            ns => Some(Duration::from_nanos(ns)),
        };
        ItemRecord {
            submitted: at(&self.submitted_ns),
            started: at(&self.started_ns),
            finished: at(&self.finished_ns),
            on_rescuer: self.on_rescuer[i].load(Ordering::Relaxed),
        }
    }

    /// Makespan (last finish since the start) and latencies (finish - submit), sorted.
    fn results(&self) -> (Duration, Vec<Duration>) {
        let mut last = 0;
        let mut lat = Vec::with_capacity(self.finished_ns.len());
        for (s, f) in self.submitted_ns.iter().zip(&self.finished_ns) {
            let (s, f) = (s.load(Ordering::Relaxed), f.load(Ordering::Relaxed));
            if f != NOT_YET && s != NOT_YET {
                last = last.max(f);
                lat.push(Duration::from_nanos(f.saturating_sub(s)));
            }
        }
        lat.sort();
        (Duration::from_nanos(last), lat)
    }
}

/// Feeds the plan to `submit` at each item's arrival time, on a thread of its own.
fn start_producer(
    plan: Arc<Vec<Planned>>,
    ledger: Arc<Ledger>,
    submit: impl Fn(usize, &Planned) + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for (i, p) in plan.iter().enumerate() {
            let due = ledger.t0 + p.at;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            ledger.submitted(i);
            submit(i, p);
        }
    })
}

/// Peaks of the runtime's pools, sampled every 2 ms.
#[derive(Debug, Default)]
struct Peaks {
    workers_now: AtomicUsize,
    workers: AtomicUsize,
    busy: AtomicUsize,
    running_percpu: AtomicUsize,
    pending: AtomicUsize,
    samples: AtomicU64,
}

fn start_sampler(rt: Runtime, peaks: Arc<Peaks>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let pools = rt.pools();
            let workers: usize = pools.iter().map(|p| p.nr_workers).sum();
            let busy: usize = pools.iter().map(|p| p.nr_workers.saturating_sub(p.nr_idle)).sum();
            let running: usize = pools.iter().filter(|p| p.cpu.is_some()).map(|p| p.nr_running).sum();
            let pending: usize = pools.iter().map(|p| p.nr_pending).sum();
            peaks.workers_now.store(workers, Ordering::Relaxed);
            peaks.workers.fetch_max(workers, Ordering::Relaxed);
            peaks.busy.fetch_max(busy, Ordering::Relaxed);
            peaks.running_percpu.fetch_max(running, Ordering::Relaxed);
            peaks.pending.fetch_max(pending, Ordering::Relaxed);
            peaks.samples.fetch_add(1, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(2));
        }
    })
}

/// Redraws a block of text in place on a terminal, or prints blocks one after another.
#[derive(Debug)]
struct Screen {
    live: bool,
    lines: u16,
}

impl Screen {
    fn draw(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.live {
            if self.lines > 0 {
                let _ = out.queue(cursor::MoveUp(self.lines));
            }
            let _ = out.queue(cursor::MoveToColumn(0));
            let _ = out.queue(terminal::Clear(terminal::ClearType::FromCursorDown));
            let _ = out.write_all(text.as_bytes());
            self.lines = text.lines().count() as u16;
        } else {
            let _ = out.write_all(text.as_bytes());
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// Keeps what is on screen; the next draw goes below it.
    fn keep(&mut self) {
        self.lines = 0;
    }
}

/// CPU time of the whole process (user + system), from /proc/self/stat.
fn process_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Fields 14 and 15 (utime, stime) in USER_HZ (100) ticks; `rest` starts at field 3.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// What one run measured.
#[derive(Debug)]
struct RunResult {
    done: u64,
    finished_in_time: bool,
    makespan: Duration,
    latencies: Vec<Duration>,
    cpu: Option<Duration>,
}

fn pct(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Runs the demo.
pub fn run(opts: &Options) -> Result<(), String> {
    let cpus = opts.cpus.max(1);
    let live = opts.live.unwrap_or_else(|| std::io::stdout().is_terminal());
    let plan = Arc::new(plan(opts.duration, cpus, opts.seed));
    let n = plan.len();
    let burner = Burner::calibrate();
    let deadline = opts.duration * 3 + Duration::from_secs(5);
    let period = pressure_period(opts.duration);

    let count = |f: &dyn Fn(&Item) -> bool| plan.iter().filter(|p| f(&p.item)).count();
    let pipes = count(&|i| matches!(i.block, Block::Pipe(_)));
    let sleeps = count(&|i| matches!(i.block, Block::Sleep(_)));
    let burns = n - pipes - sleeps;
    let blocking: Duration = plan
        .iter()
        .map(|p| match p.item.block {
            Block::None => Duration::ZERO,
            Block::Sleep(d) | Block::Pipe(d) | Block::Alloc(d) => d,
        })
        .sum();
    let cpu_work: Duration = plan.iter().map(|p| Duration::from_micros(u64::from(p.item.cpu_us))).sum();
    let bound = plan.iter().map(|p| p.at + p.item.nominal()).max().unwrap_or_default().max(cpu_work / cpus as u32);

    println!(
        "cmwq demo: {n} items over {:.1} s on {cpus} CPUs ({pipes} socket reads, {sleeps} sleeps, \
         {burns} pure CPU burns; {} of blocking and {} of CPU work in all), then {:.1} s of memory \
         pressure in which no thread can be created",
        opts.duration.as_secs_f64(),
        human(blocking),
        human(cpu_work),
        period.as_secs_f64(),
    );
    println!(
        "phase 1: cmwq (per-CPU: writeback (mem_reclaim), crypto; unbound: fsync max_active 16, \
         readahead max_active 32)\n"
    );
    let mut screen = Screen { live, lines: 0 };

    // ---- Phase 1: cmwq ----
    // Thread creation works until phase 2 sets `no_threads`; the rescuer of `writeback` is
    // created with the workqueue, now.
    let no_threads = Arc::new(AtomicBool::new(false));
    let spawner = FailingSpawner::new(FailMode::While(no_threads.clone()));
    let rt = Runtime::builder().cpus(cpus).spawner(spawner.clone()).create_cooldown(DEMO_CREATE_COOLDOWN).build();
    let wqs: Vec<Workqueue> = WQS
        .iter()
        .map(|s| {
            let mut b = rt.workqueue(s.name).max_active(s.max_active);
            if s.unbound {
                b = b.unbound();
            }
            if s.mem_reclaim {
                b = b.mem_reclaim();
            }
            b.build().map_err(|e| format!("cannot create workqueue {}: {e}", s.name))
        })
        .collect::<Result<_, _>>()?;
    let workers_at_start = rt.nr_workers();
    let peaks = Arc::new(Peaks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = start_sampler(rt.clone(), peaks.clone(), stop.clone());
    let cpu0 = process_cpu();
    let ledger = Arc::new(Ledger::new(n, burner).map_err(|e| e.to_string())?);
    let producer = start_producer(plan.clone(), ledger.clone(), submitter(&wqs, &ledger));
    let snapshot = |elapsed: Duration| {
        let progress = Progress {
            elapsed,
            total: opts.duration,
            done: ledger.done(),
            items: n as u64,
            workers: peaks.workers_now.load(Ordering::Relaxed),
            peak_workers: peaks.workers.load(Ordering::Relaxed),
        };
        table_text(&wqs, &progress, "")
    };
    let finished_in_time = wait_all(&ledger, n, deadline, |e| screen.draw(&snapshot(e).0));
    let (text, final_rows) = snapshot(ledger.t0.elapsed());
    screen.draw(&text);
    screen.keep();
    if !finished_in_time {
        ledger.skip.store(true, Ordering::Relaxed);
    }
    let cpu1 = process_cpu();
    let _ = producer.join();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let workers_at_end = rt.nr_workers();
    let (makespan, latencies) = ledger.results();
    let cm = RunResult {
        done: ledger.done(),
        finished_in_time,
        makespan,
        latencies,
        cpu: cpu1.zip(cpu0).map(|(a, b)| a.saturating_sub(b)),
    };
    let wb_wait_phase1 =
        (0..n).filter(|&i| plan[i].wq == WB).filter_map(|i| ledger.record(i).wait()).max().unwrap_or_default();
    drop(ledger);

    // ---- Phase 2: memory pressure, no thread can be created (same runtime) ----
    let pressure = run_pressure(
        &Pressure {
            rt: &rt,
            wqs: &wqs,
            spawner: &spawner,
            no_threads: &no_threads,
            period,
            cpus,
            seed: opts.seed,
            burner,
        },
        &mut screen,
    )?;
    drop(wqs);
    drop(rt);

    // ---- Phase 3: a fixed pool of `cpus` plain threads ----
    println!(
        "\nphase 3: the {n} items of phase 1 at the same times on a fixed pool of {cpus} std threads \
         (one mpsc channel; a fixed pool never creates threads after its start, so it gets no phase 2)\n"
    );
    let pool = Arc::new(FixedPool::new(cpus).map_err(|e| e.to_string())?);
    let threads = pool.threads();
    let cpu0 = process_cpu();
    let ledger = Arc::new(Ledger::new(n, burner).map_err(|e| e.to_string())?);
    let producer = {
        let pool = pool.clone();
        let l = ledger.clone();
        start_producer(plan.clone(), ledger.clone(), move |i, p| {
            let l = l.clone();
            let item = p.item;
            pool.submit(move || l.run(i, &item));
        })
    };
    let line = |e: Duration| {
        format!(
            "{}\n",
            table::progress_line(&Progress {
                elapsed: e,
                total: opts.duration,
                done: ledger.done(),
                items: n as u64,
                workers: threads,
                peak_workers: threads,
            })
        )
    };
    let fixed_in_time = wait_all(&ledger, n, deadline, |e| screen.draw(&line(e)));
    screen.draw(&line(ledger.t0.elapsed()));
    screen.keep();
    if !fixed_in_time {
        ledger.skip.store(true, Ordering::Relaxed);
    }
    let cpu1 = process_cpu();
    let _ = producer.join();
    drop(Arc::try_unwrap(pool).map(FixedPool::join));
    let (makespan, latencies) = ledger.results();
    let fixed = RunResult {
        done: ledger.done(),
        finished_in_time: fixed_in_time,
        makespan,
        latencies,
        cpu: cpu1.zip(cpu0).map(|(a, b)| a.saturating_sub(b)),
    };

    print_summary(&Summary {
        n,
        cpus,
        bound,
        deadline,
        final_rows,
        workers_at_start,
        workers_at_end,
        peaks: &peaks,
        cm,
        fixed,
        wb_wait_phase1,
        pressure,
    });
    Ok(())
}

/// Queues item `i` of a plan on its workqueue (on its CPU for per-CPU ones).
fn submitter(wqs: &[Workqueue], ledger: &Arc<Ledger>) -> impl Fn(usize, &Planned) + Send + 'static {
    let wqs = wqs.to_vec();
    let l = ledger.clone();
    move |i, p| {
        let l = l.clone();
        let item = p.item;
        let w = Work::new(move |_: &Work| l.run(i, &item));
        let wq = &wqs[p.wq];
        match p.cpu {
            Some(c) => wq.queue_on(c, &w),
            None => wq.queue(&w),
        };
    }
}

/// The live table: the header, a row per workqueue, and the progress line followed by `note`.
fn table_text(wqs: &[Workqueue], progress: &Progress, note: &str) -> (String, Vec<WqRow>) {
    let rows: Vec<WqRow> =
        wqs.iter().zip(WQS).map(|(wq, s)| WqRow::from_stats(s.name, s.unbound, s.mem_reclaim, &wq.stats())).collect();
    let mut text = table::render(&rows);
    text.push_str(&table::progress_line(progress));
    text.push_str(note);
    text.push('\n');
    (text, rows)
}

/// What the memory-pressure phase needs.
struct Pressure<'a> {
    rt: &'a Runtime,
    wqs: &'a [Workqueue],
    spawner: &'a FailingSpawner,
    no_threads: &'a Arc<AtomicBool>,
    period: Duration,
    cpus: usize,
    seed: u64,
    burner: Burner,
}

/// What the memory-pressure phase measured. Times are since the phase's start.
#[derive(Debug)]
struct PressureResult {
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
fn run_pressure(p: &Pressure<'_>, screen: &mut Screen) -> Result<PressureResult, String> {
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

/// Waits until every item of the run is done or the deadline passes, calling `tick` with the
/// elapsed time once a second. Returns whether everything finished.
fn wait_all(ledger: &Ledger, n: usize, deadline: Duration, mut tick: impl FnMut(Duration)) -> bool {
    let mut next = Duration::from_secs(1);
    loop {
        if ledger.done() >= n as u64 {
            return true;
        }
        let e = ledger.t0.elapsed();
        if e >= deadline {
            return false;
        }
        if e >= next {
            tick(e);
            next += Duration::from_secs(1);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

struct Summary<'a> {
    n: usize,
    cpus: usize,
    bound: Duration,
    deadline: Duration,
    final_rows: Vec<WqRow>,
    workers_at_start: usize,
    workers_at_end: usize,
    peaks: &'a Peaks,
    cm: RunResult,
    fixed: RunResult,
    /// The longest queue wait (queueing to start) of a write-back item in phase 1.
    wb_wait_phase1: Duration,
    pressure: PressureResult,
}

fn print_summary(s: &Summary<'_>) {
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

/// The summary lines of the memory-pressure phase.
fn print_pressure(r: &PressureResult, wb_wait_phase1: Duration) {
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

    #[test]
    fn percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&v, 0.5), Duration::from_millis(51));
        assert_eq!(pct(&v, 0.99), Duration::from_millis(99));
        assert_eq!(pct(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn process_cpu_reads() {
        assert!(process_cpu().is_some());
    }
}
