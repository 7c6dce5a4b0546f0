//! A probe of B3's ramp: 1,000 items of 10 ms on an unbound workqueue with max_active 256,
//! printing when items 32, 128, 255, ... started, i.e. how long the manager took to create
//! the workers (`STACK=bytes` sets `worker_stack_size`).
//!
//! `cargo run --release -p cmwq-bench --example b3probe`
use cmwq::Runtime;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
fn main() {
    for _ in 0..3 {
        let mut b = Runtime::builder().cpus(2);
        if let Ok(s) = std::env::var("STACK") {
            b = b.worker_stack_size(s.parse().unwrap());
        }
        let rt = b.build();
        let wq = rt.workqueue("p").unbound().max_active(256).build().unwrap();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        for _ in 0..1000 {
            let s = starts.clone();
            let d = done.clone();
            wq.spawn(move || {
                s.lock().unwrap().push(t0.elapsed());
                std::thread::sleep(Duration::from_millis(10));
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        while done.load(Ordering::SeqCst) < 1000 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let m = t0.elapsed();
        let mut s = starts.lock().unwrap().clone();
        s.sort();
        println!(
            "makespan {:?}; start of item 32: {:?}, 128: {:?}, 255: {:?}, 511: {:?}, 767: {:?}, 999: {:?}",
            m, s[31], s[127], s[254], s[510], s[766], s[998]
        );
    }
}
