//! A probe of B2 (wake-up latency of an idle pool, one item every ~1 ms): p50/p99 from just
//! before `spawn` until the item starts, on a per-CPU workqueue (`PIN=0` leaves its workers
//! unpinned) or, with `UNBOUND=1`, an unbound one; and a crossbeam-channel consumer thread for
//! comparison, in the same run.
//!
//! `cargo run --release -p cmwq-bench --example b2probe`
use cmwq::Runtime;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6
}

fn trickle(submit: &dyn Fn(Box<dyn FnOnce() + Send>)) -> (f64, f64) {
    let (tx, rx) = mpsc::channel::<Duration>();
    let mut lat = Vec::new();
    for i in 0..520 {
        std::thread::sleep(Duration::from_millis(1));
        let tx = tx.clone();
        let t = Instant::now();
        submit(Box::new(move || {
            let _ = tx.send(t.elapsed());
        }));
        let d = rx.recv_timeout(Duration::from_secs(5)).expect("no run within 5 s");
        if i >= 20 {
            lat.push(d);
        }
    }
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

fn main() {
    let pin = std::env::var("PIN").map_or(true, |v| v != "0");
    let unbound = std::env::var("UNBOUND").is_ok_and(|v| v == "1");
    for _ in 0..3 {
        let rt = Runtime::builder().cpus(2).pin_workers(pin).build();
        let b = rt.workqueue("b2");
        let wq = if unbound { b.unbound().build() } else { b.build() }.unwrap();
        let (p50, p99) = trickle(&|f| {
            wq.spawn(f);
        });
        drop(wq);
        drop(rt);
        let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
        let h = std::thread::spawn(move || {
            while let Ok(f) = rx.recv() {
                f()
            }
        });
        let (c50, c99) = trickle(&|f| tx.send(f).unwrap());
        drop(tx);
        h.join().unwrap();
        println!("cmwq (pin {pin}, unbound {unbound}) p50 {p50:.1} us p99 {p99:.1} | crossbeam p50 {c50:.1} p99 {c99:.1} | ratio {:.2}", p50 / c50);
    }
}
