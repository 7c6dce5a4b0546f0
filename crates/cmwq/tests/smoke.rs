use cmwq::{Runtime, Work};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn queue_runs_and_dedupes() {
    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("smoke").build().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let w = Work::new(move |_| {
        n2.fetch_add(1, Ordering::SeqCst);
    });
    assert!(wq.queue(&w));
    wait_for("run", || n.load(Ordering::SeqCst) == 1);
    let ub = rt.workqueue("smoke-u").unbound().build().unwrap();
    for _ in 0..100 {
        ub.spawn({
            let n = n.clone();
            move || {
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    wait_for("spawned", || n.load(Ordering::SeqCst) == 101);
    assert_eq!(ub.stats().completed, 100);
}

#[test]
fn sleeping_worker_is_noticed() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("cm").build().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    for _ in 0..4 {
        let n = n.clone();
        wq.spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            n.fetch_add(1, Ordering::SeqCst);
        });
    }
    wait_for("all", || n.load(Ordering::SeqCst) == 4);
    let el = t0.elapsed();
    eprintln!("4 sleepers took {el:?}, stats {:?}", wq.stats());
    assert!(el < Duration::from_millis(150), "took {el:?}");
}
