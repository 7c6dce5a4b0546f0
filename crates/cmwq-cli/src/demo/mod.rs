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
//! Then, on the same runtime, a period of memory pressure ([`plan::plan_pressure`], about 3 s): the
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
mod plan;
mod pressure;
mod summary;

use crate::fixed_pool::FixedPool;
use crate::table::{self, human, Progress, WqRow};
use cmwq::{FailMode, FailingSpawner, Runtime, Work, Workqueue};
use crossterm::{cursor, terminal, QueueableCommand};
use items::{Block, Burner, Device, Item, Memory};
use plan::{plan, pressure_period, Planned, WB, WQS};
use pressure::{run_pressure, Pressure};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use summary::{print_summary, RunResult, Summary};

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

/// The pools' wait between failed worker creations in this demo (the kernel's
/// `CREATE_COOLDOWN` is 1 s; shorter, so the pools notice sooner that creation works again).
const DEMO_CREATE_COOLDOWN: Duration = Duration::from_millis(100);

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
    let rt = Runtime::builder()
        .cpus(cpus)
        .spawner(spawner.clone())
        .create_cooldown(DEMO_CREATE_COOLDOWN)
        .try_build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
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
    let detector = rt.detector();
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
        detector,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_reads() {
        assert!(process_cpu().is_some());
    }
}
