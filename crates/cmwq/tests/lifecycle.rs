//! The work-item lifecycle: flush of one item (barriers), flush of a workqueue (colours),
//! drain, cancel, cancel_sync, disable/enable, freeze, destroy (DESIGN.md §2 guarantees 3, 4,
//! 8, 9; kernel-notes §3). Races are run many times each on real threads.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{Error, Runtime, Work, Workqueue};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{counter_work, plug, spawn_counted, wait_for, Latch};

#[test]
fn flush_work_waits_for_queued_instance_and_reports_idle() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("fw").ordered().build().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let w = counter_work(&n);
    assert!(!support::bounded("w.flush()", || w.flush()), "flush of an idle item returns false");
    let gate = plug(&wq);
    assert!(wq.queue(&w));
    let flusher = flush_elsewhere(&wq, &w);
    gate.open();
    assert!(support::join("the flusher", flusher));
    assert_eq!(n.load(Ordering::SeqCst), 1);
    assert!(!support::bounded("w.flush()", || w.flush()));
}

#[test]
fn flush_work_waits_for_running_instance() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("fwr").unbound().build().unwrap();
    let started = Latch::new();
    let gate = Latch::new();
    let done = Arc::new(AtomicBool::new(false));
    let (s2, g2, d2) = (started.clone(), gate.clone(), done.clone());
    let w = Work::new(move |_| {
        s2.open();
        g2.wait();
        d2.store(true, Ordering::SeqCst);
    });
    wq.queue(&w);
    started.wait();
    let flusher = flush_elsewhere(&wq, &w);
    gate.open();
    assert!(support::join("the flusher", flusher));
    assert!(done.load(Ordering::SeqCst), "flush returned before the running instance finished");
}

/// A barrier behind an inactive item moves with it when it is activated.
#[test]
fn flush_work_of_inactive_item_follows_activation() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("fwi").unbound().max_active(1).build().unwrap();
    let gate = plug(&wq);
    let n = Arc::new(AtomicUsize::new(0));
    let w = counter_work(&n);
    wq.queue(&w); // inactive: max_active 1 is taken by the plug
    let flusher = flush_elsewhere(&wq, &w);
    gate.open();
    assert!(support::join("the flusher", flusher));
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

/// `n` work items; item `k` appends `k` to the returned log when it runs.
fn recording_items(n: usize) -> (Arc<Mutex<Vec<usize>>>, Vec<Work>) {
    let order = Arc::new(Mutex::new(Vec::new()));
    let items = (0..n)
        .map(|k| {
            let order = order.clone();
            Work::new(move |_| order.lock().unwrap().push(k))
        })
        .collect();
    (order, items)
}

/// Flushes `w` (an item of the single-pwq `wq`) from another thread, and returns once the
/// flush's barrier is in flight, checking that the flush still waits.
fn flush_elsewhere(wq: &Workqueue, w: &Work) -> std::thread::JoinHandle<bool> {
    flush_elsewhere_on(wq, 0, w)
}

/// Like [`flush_elsewhere`], the barrier going to `wq`'s pwq number `pwq`. (The tests used to
/// sleep 20 ms and assume the flusher had got there: under load it had not even started, the
/// item ran first, and the flush rightly returned false: 5 failing suite runs of 40, in four
/// tests.)
fn flush_elsewhere_on(wq: &Workqueue, pwq: usize, w: &Work) -> std::thread::JoinHandle<bool> {
    let before = wq.pwqs()[pwq].in_flight;
    let w = w.clone();
    let flusher = std::thread::spawn(move || w.flush());
    wait_for("the flush's barrier", || wq.pwqs()[pwq].in_flight == before + 1);
    assert!(!flusher.is_finished(), "the flush returned before its item ran");
    flusher
}

/// A cancel and a flush barrier reach items deep in a long inactive list (of work items and
/// spawned closures), items queued after the cancel wait behind the others, and the rest
/// still run once each, in queueing order.
#[test]
fn cancel_and_flush_reach_items_deep_in_the_inactive_list() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("parked").ordered().build().unwrap();
    let gate = plug(&wq);
    let (order, items) = recording_items(700);
    let queue = |range: std::ops::Range<usize>| {
        for k in range {
            assert!(wq.queue(&items[k]));
            if k % 100 == 0 {
                let order = order.clone();
                assert!(wq.spawn(move || order.lock().unwrap().push(10_000 + k)));
            }
        }
    };
    queue(0..600);
    assert_eq!(wq.pwqs()[0].nr_inactive, 606, "everything behind the plug waits inactive");
    // Deep in the list: cancel one (which gives the parked items their nodes)...
    assert!(items[301].cancel());
    assert!(!items[301].is_pending());
    // ... then park more behind them, and flush one of the moved ones from another thread.
    queue(600..700);
    let flusher = flush_elsewhere(&wq, &items[450]);
    assert!(items[650].cancel(), "an item parked after the move");
    assert!(items[699].cancel(), "the youngest inactive item");
    gate.open();
    assert!(support::join("the flusher", flusher));
    support::bounded("wq.flush()", || wq.flush());
    let ran = order.lock().unwrap().clone();
    let mut want = Vec::new();
    for k in 0..700usize {
        if ![301, 650, 699].contains(&k) {
            want.push(k);
        }
        if k % 100 == 0 {
            want.push(10_000 + k);
        }
    }
    assert_eq!(ran, want, "each item once, in queueing order, the cancelled ones never");
}

/// A flood queued while a worker runs accumulates in the pool's inbox in full blocks, which
/// are parked whole on the inactive list (docs/design.md §3, "Parked runs"): a cancel and a
/// flush reach items inside them, items queued later wait behind them, and everything else
/// runs once, in queueing order.
#[test]
fn cancel_and_flush_reach_items_inside_parked_blocks() {
    // One CPU, and a plug that spins (counted as running throughout: no sleep to notice, no
    // CPU-hog marking), so that queuers leave the inbox to it.
    let rt = Runtime::builder().cpus(1).cpu_intensive_thresh(Duration::ZERO).build();
    let wq = rt.workqueue("parked-blocks").max_active(1).build().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let plug = {
        let (release, started) = (release.clone(), started.clone());
        Work::new(move |_| {
            started.store(true, Ordering::SeqCst);
            let t = std::time::Instant::now();
            while !release.load(Ordering::SeqCst) && t.elapsed() < support::DEADLINE {
                std::hint::spin_loop();
            }
        })
    };
    assert!(wq.queue_on(0, &plug));
    wait_for("the plug to run", || started.load(Ordering::SeqCst));
    let (order, items) = recording_items(1200);
    for w in &items[..1000] {
        assert!(wq.queue_on(0, w));
    }
    assert!(wq.spawn({
        let order = order.clone();
        move || order.lock().unwrap().push(5_000)
    }));
    assert_eq!(wq.pwqs()[0].nr_inactive, 1001);
    assert!(items[300].cancel(), "inside a parked block");
    for w in &items[1000..] {
        assert!(wq.queue_on(0, w));
    }
    let flusher = flush_elsewhere(&wq, &items[700]);
    assert!(items[1100].cancel(), "queued after the cancel");
    release.store(true, Ordering::SeqCst);
    assert!(support::join("the flusher", flusher));
    support::bounded("wq.flush()", || wq.flush());
    let ran = order.lock().unwrap().clone();
    let mut want: Vec<usize> = (0..1000).filter(|&k| k != 300).collect();
    want.push(5_000);
    want.extend((1000..1200).filter(|&k| k != 1100));
    assert_eq!(ran, want, "each item once, in queueing order, the cancelled ones never");
}

/// Flush of an item whose last instance moved to another CPU's pool waits there.
#[test]
fn flush_work_of_item_that_moved_between_pools() {
    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("moved").build().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    // Each run of `w` waits on the latch that is current when it starts.
    let hold: Arc<Mutex<Latch>> = Arc::default();
    let (n2, h2) = (n.clone(), hold.clone());
    let w = Work::new(move |_| {
        let l = h2.lock().unwrap().clone();
        l.wait();
        n2.fetch_add(1, Ordering::SeqCst);
    });
    let run_on = |cpu: usize| {
        let l = Latch::new();
        *hold.lock().unwrap() = l.clone();
        assert!(wq.queue_on(cpu, &w));
        let f = flush_elsewhere_on(&wq, cpu, &w);
        l.open();
        assert!(support::join("the flusher", f), "flush found nothing to wait for");
    };
    run_on(0);
    assert_eq!(n.load(Ordering::SeqCst), 1);
    // Last ran in CPU 0's pool, now queued on CPU 1's: the flush follows it there.
    run_on(1);
    assert_eq!(n.load(Ordering::SeqCst), 2);
    // And back.
    run_on(0);
    assert_eq!(n.load(Ordering::SeqCst), 3);
}

/// Flush against requeue-from-self: every flush returns (the self-queued instances that start
/// after the call do not hold it up), and only after the instance running or pending at the
/// call has completed: completions after the flush >= starts before it.
#[test]
fn flush_work_against_requeue_from_self() {
    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("selfq").build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let (s2, st2, c2, wq2) = (stop.clone(), started.clone(), completed.clone(), wq.clone());
    let w = Work::new(move |w| {
        st2.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_micros(100));
        c2.fetch_add(1, Ordering::SeqCst);
        if !s2.load(Ordering::SeqCst) {
            wq2.queue(w);
        }
    });
    wq.queue(&w);
    for _ in 0..300 {
        let before = started.load(Ordering::SeqCst);
        assert!(support::bounded("w.flush()", || w.flush()), "a self-requeueing item is always pending or running");
        let after = completed.load(Ordering::SeqCst);
        assert!(after >= before, "flush returned before the running instance completed ({after} < {before})");
    }
    stop.store(true, Ordering::SeqCst);
    w.cancel_sync();
}

#[test]
fn workqueue_flush_waits_for_earlier_items_only() {
    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("wqf").unbound().max_active(4).build().unwrap();
    let early_done = spawn_counted(&wq, 20, &Arc::default(), || std::thread::sleep(Duration::from_millis(2)));
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(early_done.load(Ordering::SeqCst), 20, "flush returned before every earlier item finished");
    // An item queued after the flush started does not hold it up.
    let late_gate = Latch::new();
    let started = Latch::new();
    let (g, s) = (late_gate.clone(), started.clone());
    wq.spawn(move || {
        s.open();
        g.wait();
    });
    started.wait();
    let d = early_done.clone();
    wq.spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        d.fetch_add(1, Ordering::SeqCst);
    });
    // The blocked item was queued before this flush, so this flush must wait for it: run it
    // on a thread and release it.
    let wq2 = wq.clone();
    let f = std::thread::spawn(move || wq2.flush());
    std::thread::sleep(Duration::from_millis(20));
    assert!(!f.is_finished(), "flush ignored an earlier running item");
    late_gate.open();
    support::join("the flusher", f);
    assert_eq!(early_done.load(Ordering::SeqCst), 21);
}

/// A flush does not wait for items queued after it started, even while they never finish.
#[test]
fn workqueue_flush_ignores_later_items() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("later").unbound().max_active(8).build().unwrap();
    let first_gate = Latch::new();
    let g1 = first_gate.clone();
    wq.spawn(move || g1.wait());
    let wq2 = wq.clone();
    let color = wq.pwqs()[0].work_color;
    let f = std::thread::spawn(move || wq2.flush());
    // The flush has started once it advanced the colour new items get.
    wait_for("the flush to start", || wq.pwqs()[0].work_color != color);
    assert_eq!(wq.pwqs()[0].flush_color, Some(color), "the flush waits on the first item's colour");
    // Queued after the flush started; never finishes until we say so.
    let later_gate = Latch::new();
    let g2 = later_gate.clone();
    wq.spawn(move || g2.wait());
    first_gate.open();
    wait_for("the flush to return without the later item", || f.is_finished());
    support::join("the flusher", f);
    later_gate.open();
}

/// Many concurrent flushers over more than 16 colours (overflow path) all return, each after
/// the items queued before it.
#[test]
fn concurrent_flushers_overflow_colours() {
    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("colours").unbound().max_active(2).build().unwrap();
    let seq = Arc::new(AtomicUsize::new(0));
    let done: Arc<Mutex<Vec<usize>>> = Arc::default();
    let mut flushers = Vec::new();
    for i in 0..40 {
        let (s, d) = (seq.clone(), done.clone());
        let k = s.fetch_add(1, Ordering::SeqCst);
        wq.spawn(move || {
            std::thread::sleep(Duration::from_micros(300));
            d.lock().unwrap().push(k);
        });
        let (wq2, d2) = (wq.clone(), done.clone());
        flushers.push(std::thread::spawn(move || {
            support::bounded("wq2.flush()", || wq2.flush());
            let d = d2.lock().unwrap();
            for j in 0..=k {
                assert!(d.contains(&j), "flusher {i} returned before item {j} ran");
            }
        }));
    }
    for f in flushers {
        support::join("a flusher", f);
    }
}

#[test]
fn drain_waits_for_chained_items_and_refuses_outsiders() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("drain").unbound().build().unwrap();
    let left = Arc::new(AtomicUsize::new(50));
    let gate = Latch::new();
    let (l2, wq2, g2) = (left.clone(), wq.clone(), gate.clone());
    let chain = Work::new(move |w| {
        g2.wait(); // the first link holds the chain until the test has seen the refusal
        std::thread::sleep(Duration::from_micros(200));
        if l2.fetch_sub(1, Ordering::SeqCst) > 1 {
            assert!(wq2.queue(w), "chained queueing must be accepted while draining");
        }
    });
    wq.queue(&chain);
    let wq3 = wq.clone();
    let d = std::thread::spawn(move || wq3.drain());
    // Until the drainer has started, an outsider is still accepted (and runs); then refused.
    let outsider = Work::new(|_| {});
    wait_for("the drain to refuse an outsider", || match wq.try_queue(&outsider) {
        Err(Error::Draining { .. }) => true,
        Err(e) => panic!("unexpected refusal: {e}"),
        Ok(_) => {
            support::bounded("outsider.flush()", || outsider.flush());
            false
        }
    });
    gate.open();
    support::join("the drainer", d);
    assert_eq!(left.load(Ordering::SeqCst), 0, "drain returned before the chain ended");
    assert!(wq.queue(&outsider), "queueing works again after the drain");
}

#[test]
fn cancel_removes_pending_instance() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("cancel").ordered().build().unwrap();
    let gate = plug(&wq);
    let n = Arc::new(AtomicUsize::new(0));
    let w = counter_work(&n);
    assert!(!w.cancel(), "nothing to cancel");
    assert!(wq.queue(&w));
    assert!(w.cancel());
    assert!(!w.is_pending());
    assert!(!w.cancel());
    gate.open();
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(n.load(Ordering::SeqCst), 0, "a cancelled item ran");
    assert_eq!(wq.stats().started, 1, "only the plug ran");
    // It can be queued again and runs.
    assert!(wq.queue(&w));
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

/// Cancelling an inactive item with a flusher waiting on it: the flusher still returns.
#[test]
fn cancel_of_inactive_item_releases_its_flushers() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("cancelflush").unbound().max_active(1).build().unwrap();
    let gate = plug(&wq);
    let n = Arc::new(AtomicUsize::new(0));
    let w = counter_work(&n);
    wq.queue(&w);
    let f = {
        let w = w.clone();
        std::thread::spawn(move || w.flush())
    };
    std::thread::sleep(Duration::from_millis(10));
    assert!(w.cancel());
    gate.open();
    support::join("the flusher", f);
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(n.load(Ordering::SeqCst), 0);
}

#[test]
fn cancel_sync_waits_for_running_instance() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("csync").unbound().build().unwrap();
    let started = Latch::new();
    let running = Arc::new(AtomicBool::new(false));
    let (s2, r2) = (started.clone(), running.clone());
    let w = Work::new(move |_| {
        r2.store(true, Ordering::SeqCst);
        s2.open();
        std::thread::sleep(Duration::from_millis(30));
        r2.store(false, Ordering::SeqCst);
    });
    wq.queue(&w);
    started.wait();
    assert!(!w.cancel_sync(), "the instance was running, not pending");
    assert!(!running.load(Ordering::SeqCst), "cancel_sync returned while the item ran");
    assert!(!w.is_pending());
    assert_eq!(w.disable_depth(), 0);
}

/// cancel_sync stops an item that queues itself.
#[test]
fn cancel_sync_of_self_requeueing_item() {
    for _ in 0..50 {
        let rt = Runtime::builder().cpus(2).build();
        let wq = rt.workqueue("selfcancel").build().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicBool::new(false));
        let (r2, run2, wq2) = (runs.clone(), running.clone(), wq.clone());
        let w = Work::new(move |w| {
            run2.store(true, Ordering::SeqCst);
            r2.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(50));
            run2.store(false, Ordering::SeqCst);
            wq2.queue(w);
        });
        wq.queue(&w);
        wait_for("a few runs", || runs.load(Ordering::SeqCst) > 3);
        w.cancel_sync();
        assert!(!running.load(Ordering::SeqCst), "running after cancel_sync returned");
        assert!(!w.is_pending(), "pending after cancel_sync returned");
        let after = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(runs.load(Ordering::SeqCst), after, "ran after cancel_sync returned");
    }
}

/// Cancel against queue, raced from two threads: accepted = ran + cancelled at the end. The
/// threads race for at least 300 ms and until both a run and a cancel hit have happened
/// (within the deadline): a fixed 300 ms let a loaded machine barely overlap them ("the race
/// did not happen: ran 3 cancelled 0", 1 suite run of 14).
#[test]
fn cancel_against_queue_race_keeps_the_ledger() {
    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("race").build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let w = counter_work(&ran);
    let accepted = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let q = {
        let (wq, w, a, stop) = (wq.clone(), w.clone(), accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                if wq.queue_on(i % 2, &w) {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let c = {
        let (w, c, stop) = (w.clone(), cancelled.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let hit = if i % 3 == 0 { w.cancel_sync() } else { w.cancel() };
                if hit {
                    c.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let t = std::time::Instant::now();
    let _stop = support::OnDrop(|| stop.store(true, Ordering::SeqCst));
    wait_for("a run and a cancel hit, racing for 300 ms at least", || {
        t.elapsed() >= Duration::from_millis(300)
            && ran.load(Ordering::SeqCst) > 0
            && cancelled.load(Ordering::SeqCst) > 0
    });
    stop.store(true, Ordering::SeqCst);
    support::join("the queuer", q);
    support::join("the canceller", c);
    support::bounded("w.flush()", || w.flush());
    support::bounded("wq.flush()", || wq.flush());
    let (a, r, c) = (accepted.load(Ordering::SeqCst), ran.load(Ordering::SeqCst), cancelled.load(Ordering::SeqCst));
    assert_eq!(a, r + c, "accepted {a} != ran {r} + cancelled {c}");
}

#[test]
fn disable_nests_and_blocks_queueing() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("disable").ordered().build().unwrap();
    let gate = plug(&wq);
    let n = Arc::new(AtomicUsize::new(0));
    let w = counter_work(&n);
    wq.queue(&w);
    assert!(w.disable(), "disable cancels the pending instance");
    assert!(!w.disable());
    assert_eq!(w.disable_depth(), 2);
    assert!(!wq.queue(&w), "a disabled item cannot be queued");
    assert!(!w.enable(), "depth 2 -> 1");
    assert!(!wq.queue(&w));
    assert!(w.enable(), "depth 1 -> 0");
    assert!(!w.enable(), "enable without disable warns and does nothing");
    assert_eq!(w.disable_depth(), 0);
    gate.open();
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(n.load(Ordering::SeqCst), 0, "enable does not queue; refused queueings are gone");
    assert!(wq.queue(&w));
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(n.load(Ordering::SeqCst), 1);
}

#[test]
fn freeze_holds_items_until_thaw() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("freezable").freezable().unbound().build().unwrap();
    let other = rt.workqueue("notfreezable").unbound().build().unwrap();
    rt.freeze();
    let n = Arc::new(AtomicUsize::new(0));
    let w = counter_work(&n);
    assert!(wq.queue(&w), "frozen queues accept items");
    let m = Arc::new(AtomicUsize::new(0));
    other.queue(&counter_work(&m));
    wait_for("the unfrozen queue", || m.load(Ordering::SeqCst) == 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(n.load(Ordering::SeqCst), 0, "a frozen queue started an item");
    assert!(!rt.freeze_busy());
    let late = rt.workqueue("late-freezable").freezable().build().unwrap();
    let k = Arc::new(AtomicUsize::new(0));
    late.queue(&counter_work(&k));
    rt.thaw();
    wait_for("thawed items", || n.load(Ordering::SeqCst) == 1 && k.load(Ordering::SeqCst) == 1);
}
