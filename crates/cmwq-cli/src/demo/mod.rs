//! `cmwq demo`: a realistic mix of blocking and CPU-bound work on cmwq, shown live in the
//! columns of the kernel's wq_monitor.py, then the same items on a fixed pool of plain threads.
//!
//! The workload (all generated up front from a seed, so both runs get identical items at
//! identical times):
//! * `writeback` (per-CPU): a write-back pipeline. Each item waits for its "disk" (a blocking
//!   read on a Unix socket that the simulated device answers after 3-15 ms), then checksums
//!   (0.2-0.6 ms of CPU). A steady stream, plus a burst every second, as when dirty pages
//!   expire. Items are spread over the CPUs with `queue_on`.
//! * `crypto` (per-CPU): CPU-bound items of 1-4 ms; one in 25 runs 15-25 ms and so trips the
//!   CPU-intensive threshold (10 ms).
//! * `fsync` (unbound, max_active 16): synchronous waits of 20-40 ms (`thread::sleep`).
//! * `readahead` (unbound, max_active 32): a socket read of 4-10 ms, then 0.3-1 ms of CPU.
//!
//! No item uses `cmwq::blocking`: cmwq's monitor must notice sleeping workers by itself.
//! Every number printed is measured in the run; nothing is estimated.

pub mod items;

use crate::fixed_pool::FixedPool;
use crate::table::{self, human, Progress, WqRow};
use cmwq::{Runtime, Work, Workqueue};
use crossterm::{cursor, terminal, QueueableCommand};
use items::{Block, Burner, Device, Item};
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
    max_active: usize,
}

const WQS: [WqSpec; 4] = [
    WqSpec { name: "writeback", unbound: false, max_active: 0 },
    WqSpec { name: "crypto", unbound: false, max_active: 0 },
    WqSpec { name: "fsync", unbound: true, max_active: 16 },
    WqSpec { name: "readahead", unbound: true, max_active: 32 },
];

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
        let mut t = 0.0;
        loop {
            t += -rng.unit().ln() / rate;
            if t >= end {
                break;
            }
            let item = make_item(wq, &mut rng);
            let cpu = (!WQS[wq].unbound).then(|| rng.range(0, cpus as u64 - 1) as usize);
            out.push(Planned { at: Duration::from_secs_f64(t), wq, cpu, item });
        }
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

fn make_item(wq: usize, rng: &mut Rng) -> Item {
    let ms = Duration::from_millis;
    match wq {
        0 => Item { block: Block::Pipe(ms(rng.range(3, 15))), cpu_us: rng.range(200, 600) as u32 },
        1 => Item {
            block: Block::None,
            cpu_us: if rng.range(0, 24) == 0 { rng.range(15_000, 25_000) } else { rng.range(1_000, 4_000) } as u32,
        },
        2 => Item { block: Block::Sleep(ms(rng.range(20, 40))), cpu_us: 100 },
        _ => Item { block: Block::Pipe(ms(rng.range(4, 10))), cpu_us: rng.range(300, 1_000) as u32 },
    }
}

/// What the items of one run need, and where they record when they ran.
#[derive(Debug)]
struct Ledger {
    t0: Instant,
    device: Device,
    burner: Burner,
    submitted_ns: Vec<AtomicU64>,
    finished_ns: Vec<AtomicU64>,
    done: AtomicU64,
    /// Set when a run overstays its deadline: the remaining items return at once, unrecorded.
    skip: AtomicBool,
}

const NOT_YET: u64 = u64::MAX;

impl Ledger {
    fn new(n: usize, burner: Burner) -> std::io::Result<Ledger> {
        Ok(Ledger {
            t0: Instant::now(),
            device: Device::start()?,
            burner,
            submitted_ns: (0..n).map(|_| AtomicU64::new(NOT_YET)).collect(),
            finished_ns: (0..n).map(|_| AtomicU64::new(NOT_YET)).collect(),
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
        item.run(&self.device, &self.burner);
        self.finished_ns[i].store(self.now_ns(), Ordering::Relaxed);
        self.done.fetch_add(1, Ordering::Release);
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
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

    let count = |f: &dyn Fn(&Item) -> bool| plan.iter().filter(|p| f(&p.item)).count();
    let pipes = count(&|i| matches!(i.block, Block::Pipe(_)));
    let sleeps = count(&|i| matches!(i.block, Block::Sleep(_)));
    let burns = n - pipes - sleeps;
    let blocking: Duration = plan
        .iter()
        .map(|p| match p.item.block {
            Block::None => Duration::ZERO,
            Block::Sleep(d) | Block::Pipe(d) => d,
        })
        .sum();
    let cpu_work: Duration = plan.iter().map(|p| Duration::from_micros(u64::from(p.item.cpu_us))).sum();
    let bound = plan.iter().map(|p| p.at + p.item.nominal()).max().unwrap_or_default().max(cpu_work / cpus as u32);

    println!(
        "cmwq demo: {n} items over {:.1} s on {cpus} CPUs ({pipes} socket reads, {sleeps} sleeps, \
         {burns} pure CPU burns; {} of blocking and {} of CPU work in all)",
        opts.duration.as_secs_f64(),
        human(blocking),
        human(cpu_work),
    );
    println!(
        "phase 1: cmwq (per-CPU: writeback, crypto; unbound: fsync max_active 16, readahead \
         max_active 32)\n"
    );
    let mut screen = Screen { live, lines: 0 };

    // ---- Phase 1: cmwq ----
    let rt = Runtime::builder().cpus(cpus).build();
    let wqs: Vec<Workqueue> = WQS
        .iter()
        .map(|s| {
            let mut b = rt.workqueue(s.name).max_active(s.max_active);
            if s.unbound {
                b = b.unbound();
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
    let producer = {
        let wqs = wqs.clone();
        let l = ledger.clone();
        start_producer(plan.clone(), ledger.clone(), move |i, p| {
            let l = l.clone();
            let item = p.item;
            let w = Work::new(move |_: &Work| l.run(i, &item));
            let wq = &wqs[p.wq];
            match p.cpu {
                Some(c) => wq.queue_on(c, &w),
                None => wq.queue(&w),
            };
        })
    };
    let snapshot = |elapsed: Duration| {
        let rows: Vec<WqRow> =
            wqs.iter().zip(WQS).map(|(wq, s)| WqRow::from_stats(s.name, s.unbound, &wq.stats())).collect();
        let mut text = table::render(&rows);
        text.push_str(&table::progress_line(&Progress {
            elapsed,
            total: opts.duration,
            done: ledger.done(),
            items: n as u64,
            workers: peaks.workers_now.load(Ordering::Relaxed),
            peak_workers: peaks.workers.load(Ordering::Relaxed),
        }));
        text.push('\n');
        (text, rows)
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
    drop(wqs);
    drop(rt);
    drop(ledger);

    // ---- Phase 2: a fixed pool of `cpus` plain threads ----
    println!(
        "\nphase 2: the same {n} items at the same times on a fixed pool of {cpus} std threads \
         (one mpsc channel)\n"
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
    });
    Ok(())
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
