//! A profiling driver for the tiny-item paths (B1, B9), for `perf record` or
//! `valgrind --tool=callgrind`: queues `N` (default 1,000,000) one-shot closures through
//! `Workqueue::spawn` from one producer, `RUNS` times (default 3), and prints the rate.
//!
//! `cargo run --release -p cmwq-bench --example prof -- MODE`, where MODE is `b9` (ordered),
//! `pc` (per-CPU, as B1), `b1m` (unbound, max_active 2) or anything else (unbound, default
//! max_active); a MODE ending in `w` queues everything while frozen and times only the drain.
//! `TRACE=1` prints, every 100,000 items, each pwq's (active, inactive) counts, each per-CPU
//! pool's (workers, idle, running, manager active) and the producer's CPU: how the backlog
//! moves between the CPUs' pools (docs/design.md §1.1, "Who drains").
use cmwq::Runtime;
use cmwq_bench::measure::{thread_cpu_time, Latch};
use std::time::{Duration, Instant};
fn main() {
    let which = std::env::args().nth(1).unwrap_or("b9".into());
    let n: usize = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    for _ in 0..std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3) {
        let rt = Runtime::builder().cpus(2).build();
        let b = rt.workqueue("p").freezable();
        let wq = if which.starts_with("b9") {
            b.ordered().build().unwrap()
        } else if which.starts_with("b1m") {
            b.unbound().max_active(2).build().unwrap()
        } else if which.starts_with("pc") {
            b.build().unwrap()
        } else {
            b.unbound().build().unwrap()
        };
        let frozen = which.ends_with('w');
        if frozen {
            rt.freeze();
        }
        let left = Latch::counting(n);
        let cpu0 = thread_cpu_time();
        let t0 = Instant::now();
        let trace = std::env::var("TRACE").is_ok();
        for i in 0..n {
            let l = left.clone();
            wq.spawn(move || l.count_down());
            if trace && i % 100_000 == 0 {
                let b: Vec<(usize, usize)> = wq.pwqs().iter().map(|p| (p.nr_active, p.nr_inactive)).collect();
                let w: Vec<(usize, usize, usize, bool)> = rt
                    .pools()
                    .iter()
                    .filter(|p| p.cpu.is_some() && !p.highpri)
                    .map(|p| (p.nr_workers, p.nr_idle, p.nr_running, p.manager_active))
                    .collect();
                eprintln!(
                    "{:?} workers {:?} @{}ms cpu {}",
                    b,
                    w,
                    t0.elapsed().as_millis(),
                    rustix::thread::sched_getcpu()
                );
            }
        }
        if trace {
            eprintln!();
        }
        let tq = t0.elapsed();
        let qcpu = thread_cpu_time() - cpu0;
        let t1 = Instant::now();
        if frozen {
            rt.thaw();
        }
        left.wait_until(Instant::now() + Duration::from_secs(20));
        let el = if frozen { t1.elapsed() } else { t0.elapsed() };
        let nw: usize = rt.pools().iter().filter(|p| p.cpu.is_none()).map(|p| p.nr_workers).sum();
        println!("unbound workers: {nw}");
        println!(
            "{which}: {:.2} M/s = {:.0} ns/item (queueing took {:?}, {:?} of the producer's CPU time)",
            n as f64 / el.as_secs_f64() / 1e6,
            el.as_nanos() as f64 / n as f64,
            tq,
            qcpu
        );
    }
}
