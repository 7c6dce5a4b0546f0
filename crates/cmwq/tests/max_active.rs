//! `Workqueue::set_max_active` at runtime (`workqueue_set_max_active`): a raise activates at
//! once what the new limit allows, a cut starts nothing more until the active count is below
//! it, ordered workqueues refuse, and freezing still wins.

mod support;

use cmwq::{Error, Runtime, Work, WQ_MAX_ACTIVE};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::{wait_for, Latch};

/// `n` items that each block on `gate` and count themselves in `started`.
fn blockers(n: usize, gate: &Latch, started: &Arc<AtomicUsize>) -> Vec<Work> {
    (0..n)
        .map(|_| {
            let (g, s) = (gate.clone(), started.clone());
            Work::new(move |_| {
                s.fetch_add(1, Ordering::SeqCst);
                g.wait();
            })
        })
        .collect()
}

fn active_inactive(wq: &cmwq::Workqueue) -> (usize, usize) {
    wq.pwqs().iter().fold((0, 0), |(a, i), p| (a + p.nr_active, i + p.nr_inactive))
}

#[test]
fn raising_max_active_activates_waiting_items_at_once() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("raise").unbound().max_active(1).build().unwrap();
    let gate = Latch::new();
    let _open = gate.opener();
    let started = Arc::new(AtomicUsize::new(0));
    let items = blockers(4, &gate, &started);
    for w in &items {
        assert!(wq.queue(w));
    }
    wait_for("the first item to start", || started.load(Ordering::SeqCst) == 1);
    assert_eq!(active_inactive(&wq), (1, 3), "three wait behind max_active 1");
    wq.set_max_active(3).unwrap();
    assert_eq!(wq.max_active(), 3);
    assert_eq!(active_inactive(&wq).0, 3, "the raise activated two more under the lock");
    wait_for("three items running", || started.load(Ordering::SeqCst) == 3);
    assert_eq!(active_inactive(&wq), (3, 1));
    gate.open();
    wq.flush();
    assert_eq!(started.load(Ordering::SeqCst), 4);
    assert_eq!(active_inactive(&wq), (0, 0));
}

#[test]
fn lowering_max_active_starts_nothing_until_below_the_new_limit() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("cut").unbound().max_active(3).build().unwrap();
    let gate = Latch::new();
    let _open = gate.opener();
    let started = Arc::new(AtomicUsize::new(0));
    let running = blockers(3, &gate, &started);
    for w in &running {
        assert!(wq.queue(w));
    }
    wait_for("three items running", || started.load(Ordering::SeqCst) == 3);
    wq.set_max_active(1).unwrap();
    // Queued after the cut: they wait until fewer than one run.
    let later = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let live = Arc::new(AtomicUsize::new(0));
    let tail: Vec<Work> = (0..4)
        .map(|_| {
            let (l, p, n) = (later.clone(), peak.clone(), live.clone());
            Work::new(move |_| {
                let now = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                l.fetch_add(1, Ordering::SeqCst);
                n.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for w in &tail {
        assert!(wq.queue(w));
    }
    assert_eq!(active_inactive(&wq), (3, 4), "the cut stops nothing running and starts nothing");
    assert_eq!(later.load(Ordering::SeqCst), 0, "nothing started while three ran under a limit of one");
    gate.open();
    wq.flush();
    assert_eq!(later.load(Ordering::SeqCst), 4);
    assert_eq!(peak.load(Ordering::SeqCst), 1, "after the cut the items ran one at a time");
}

#[test]
fn max_active_is_clamped_and_ordered_queues_refuse() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("clamp").build().unwrap();
    wq.set_max_active(0).unwrap();
    assert_eq!(wq.max_active(), 1, "clamped up to 1");
    wq.set_max_active(usize::MAX).unwrap();
    assert_eq!(wq.max_active(), WQ_MAX_ACTIVE, "clamped down to WQ_MAX_ACTIVE");
    let ordered = rt.workqueue("ordered").ordered().build().unwrap();
    assert!(matches!(ordered.set_max_active(4), Err(Error::InvalidAttrs(_))));
    assert_eq!(ordered.max_active(), 1);
}

#[test]
fn a_frozen_queue_stays_frozen_across_a_raise_and_runs_on_thaw() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("frozen").unbound().freezable().max_active(1).build().unwrap();
    rt.freeze();
    let ran = Arc::new(AtomicUsize::new(0));
    let items: Vec<Work> = (0..3)
        .map(|_| {
            let r = ran.clone();
            Work::new(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for w in &items {
        assert!(wq.queue(w));
    }
    wq.set_max_active(3).unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "frozen: the raise started nothing");
    assert_eq!(active_inactive(&wq), (0, 3));
    rt.thaw();
    wq.flush();
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(wq.max_active(), 3);
}
