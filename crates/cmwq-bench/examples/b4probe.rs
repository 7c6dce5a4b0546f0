//! A probe of B4 (200 x (2 ms CPU, 5 ms sleep, 2 ms CPU) on a per-CPU workqueue, items spread
//! over the CPUs): makespan against the ideal under different knobs. `PIN=0` leaves workers
//! unpinned; `MIN_TICK_US` / `TICK_US` set the monitor's fast and full ticks.
//!
//! `cargo run --release -p cmwq-bench --example b4probe`
use cmwq::{Runtime, Work};
use cmwq_bench::measure::{burn_cpu, threads_cpu_time, Latch};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let pin = env("PIN", 1) == 1;
    let min_tick = Duration::from_micros(env("MIN_TICK_US", 50));
    let tick = Duration::from_micros(env("TICK_US", 1000));
    for _ in 0..env("RUNS", 3) {
        let rt = Runtime::builder().cpus(2).pin_workers(pin).cm_tick(tick, min_tick).build();
        let wq = rt.workqueue("b4").build().unwrap();
        let left = Latch::counting(200);
        let t0 = Instant::now();
        for i in 0..200 {
            let l = left.clone();
            let w = Work::new(move |_| {
                burn_cpu(Duration::from_millis(2));
                std::thread::sleep(Duration::from_millis(5));
                burn_cpu(Duration::from_millis(2));
                l.count_down();
            });
            wq.queue_on(i % 2, &w);
        }
        assert!(left.wait_until(t0 + Duration::from_secs(20)));
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        println!(
            "pin {pin} ticks {min_tick:?}/{tick:?}: {ms:.1} ms = {:.3}x ideal, cm_wakeup {}, monitor cpu {:?}",
            ms / 400.0,
            wq.stats().cm_wakeup,
            threads_cpu_time("cmwq-monitor")
        );
    }
}
