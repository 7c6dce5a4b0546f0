//! Teardown: destroy (idempotent, concurrent, from an item, during a panic), flush and drain
//! from a workqueue's own items, the warnings of a drain or destroy that does not end, and
//! self-requeueing items that must not keep a runtime alive (DESIGN.md §2; kernel-notes §3.5;
//! docs/design.md §7). Split from lifecycle.rs, which keeps flush, cancel, disable and freeze.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{DelayedWork, Error, Runtime, Work, Workqueue};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{counter_work, plug, spawn_counted, wait_for, within_deadline, Latch};

#[test]
fn destroy_refuses_outsiders_and_waits() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("destroy").unbound().max_active(1).build().unwrap();
    let n = spawn_counted(&wq, 10, &Arc::default(), || std::thread::sleep(Duration::from_millis(1)));
    support::bounded("wq.destroy()", || wq.destroy());
    assert_eq!(n.load(Ordering::SeqCst), 10);
    assert!(matches!(wq.try_queue(&Work::new(|_| {})), Err(Error::Destroyed { .. })));
}

/// Two threads destroying the same workqueue at once both return (`destroy` is idempotent).
/// Both wait on the workqueue's one `drained` sleeper, whose notification the first to wake
/// consumes: without the hand-on wake of a destroyer that leaves, the other waited forever.
#[test]
fn concurrent_destroyers_both_return() {
    let rt = Runtime::builder().cpus(1).build();
    let finished = within_deadline(move || {
        for round in 0..20 {
            let wq = rt.workqueue("destroy2").unbound().build().unwrap();
            let gate = plug(&wq);
            let destroyers: Vec<_> = (0..2)
                .map(|_| {
                    let wq = wq.clone();
                    std::thread::spawn(move || wq.destroy())
                })
                .collect();
            // Let both reach their wait; if one is late the round proves less, never wrongly.
            std::thread::sleep(Duration::from_millis(5));
            gate.open();
            for d in destroyers {
                wait_for(&format!("round {round}: a destroyer to return"), || d.is_finished());
                support::join("a destroyer", d);
            }
        }
    });
    assert!(finished.is_some(), "two destroyers: hung (or panicked: see above)");
}

/// Dropping the last handle of a workqueue from one of its own items does not deadlock.
#[test]
fn dropping_workqueue_from_its_own_item_does_not_deadlock() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("selfdrop").unbound().build().unwrap();
    let slot = Arc::new(Mutex::new(Some(wq)));
    let done = Latch::new();
    let (s2, d2) = (slot.clone(), done.clone());
    let w = Work::new(move |_| {
        drop(s2.lock().unwrap().take());
        d2.open();
    });
    let wq = slot.lock().unwrap().clone().unwrap();
    wq.queue(&w);
    drop(wq);
    done.wait();
}

/// Guarantee 8: a panicking item goes to the handler; flush, cancel_sync and requeue all work
/// afterwards.
#[test]
fn panic_goes_to_handler_and_everything_goes_on() {
    let rt = Runtime::builder().cpus(1).build();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s2 = seen.clone();
    let wq = rt
        .workqueue("panicky")
        .panic_handler(move |p| s2.lock().unwrap().push(format!("{}: {}", p.workqueue, p.message().unwrap_or("?"))))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let w = Work::new(move |_| {
        if c2.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("boom");
        }
    });
    wq.queue(&w);
    support::bounded("w.flush()", || w.flush());
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(*seen.lock().unwrap(), ["panicky: boom"]);
    assert_eq!(wq.stats().panicked, 1);
    assert!(wq.queue(&w), "the item can be queued again");
    support::bounded("w.flush()", || w.flush());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    w.cancel_sync();
    // A panicking handler is contained too.
    let wq2 = rt.workqueue("badhandler").panic_handler(|_| panic!("handler")).build().unwrap();
    wq2.spawn(|| panic!("item"));
    support::bounded("wq2.flush()", || wq2.flush());
    let ok = Arc::new(AtomicBool::new(false));
    let o2 = ok.clone();
    wq2.spawn(move || o2.store(true, Ordering::SeqCst));
    support::bounded("wq2.flush()", || wq2.flush());
    assert!(ok.load(Ordering::SeqCst));
}

/// Dropping the last handle while the thread unwinds does not wait for items in flight (which
/// may be waiting for the code that panicked): the unwind completes, the blocked item still
/// runs to its end afterwards, and nothing queued is lost.
#[test]
fn drop_during_a_panic_does_not_wait_for_the_drain() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("unwinding").build().unwrap();
    let gate = Latch::new();
    let started = Latch::new();
    let done = Arc::new(AtomicBool::new(false));
    let (g2, s2, d2) = (gate.clone(), started.clone(), done.clone());
    assert!(wq.queue(&Work::new(move |_| {
        s2.open();
        g2.wait();
        d2.store(true, Ordering::SeqCst);
    })));
    started.wait();
    let unwound = Arc::new(AtomicBool::new(false));
    let u2 = unwound.clone();
    // On its own thread, so that a drop that did wait fails the deadline below instead of
    // hanging the test.
    let t = std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _wq = wq;
            panic!("the owner panics while an item is blocked");
        }));
        u2.store(r.is_err(), Ordering::SeqCst);
    });
    wait_for("the unwind to finish without waiting for the blocked item", || unwound.load(Ordering::SeqCst));
    assert!(!done.load(Ordering::SeqCst));
    support::join("the panicking owner", t);
    gate.open();
    wait_for("the blocked item to finish", || done.load(Ordering::SeqCst));
}

/// Issue 9, bug 5: `Workqueue::flush` and `drain` from one of that workqueue's own items (a
/// work item and a spawned closure; per-CPU, unbound and ordered) would wait for the caller
/// itself. They warn once per call, naming the workqueue and the item, and return at once; the
/// `try_` variants return the error without a warning; afterwards the owner's flush and drain
/// work. Before the fix the item hung in the flush colours and the owner's flush behind it.
#[test]
fn flush_and_drain_from_own_item_warn_and_return() {
    use cmwq::WarningKind;
    use support::warnings::WarningLog;

    for kind in ["percpu", "unbound", "ordered"] {
        let log = WarningLog::new();
        let rt = log.install(Runtime::builder().cpus(2)).build();
        let name = format!("selfflush-{kind}");
        let b = rt.workqueue(&name);
        let wq = match kind {
            "percpu" => b.build(),
            "unbound" => b.unbound().build(),
            _ => b.ordered().build(),
        }
        .unwrap();
        // The item reaches its workqueue through a slot emptied at the end (no cycle).
        let slot: Arc<Mutex<Option<Workqueue>>> = Arc::new(Mutex::new(Some(wq.clone())));
        let (tx, rx) = std::sync::mpsc::channel::<(bool, bool)>();
        let body = {
            let slot = slot.clone();
            move || {
                let wq = slot.lock().unwrap().clone().expect("workqueue in the slot");
                support::bounded("wq.flush()", || wq.flush());
                support::bounded("wq.drain()", || wq.drain());
                let f = matches!(wq.try_flush(), Err(Error::FlushFromOwnItem { op: "flush", .. }));
                let d = matches!(wq.try_drain(), Err(Error::FlushFromOwnItem { op: "drain", .. }));
                (f, d)
            }
        };
        let w = {
            let (tx, body) = (tx.clone(), body.clone());
            Work::named("self_flusher", move |_| {
                let _ = tx.send(body());
            })
        };
        assert!(wq.queue(&w));
        let got = rx.recv_timeout(support::DEADLINE);
        let spawned = got.as_ref().ok().map(|_| {
            let (tx, body) = (tx.clone(), body.clone());
            assert!(wq.spawn(move || {
                let _ = tx.send(body());
            }));
            rx.recv_timeout(support::DEADLINE)
        });
        if got.is_err() || !matches!(spawned, Some(Ok(_))) {
            // A worker is stuck in its own flush: leave everything behind rather than hang
            // in the drops.
            std::mem::forget((wq, rt, w, slot));
            panic!("{kind}: flush or drain from an own item did not return within the deadline");
        }
        assert_eq!(got.unwrap(), (true, true), "{kind}: try_flush and try_drain say why they did not wait");
        assert_eq!(spawned.unwrap().unwrap(), (true, true), "{kind}: same from a spawned closure");

        let own = log.matching(|r| r.kind == WarningKind::FlushFromOwnItem);
        assert_eq!(own.len(), 4, "{kind}: one warning per flush or drain call, none for try_: {own:?}");
        for r in &own {
            assert_eq!(r.workqueue, name);
            assert!(r.message.contains(&name), "{kind}: {r:?}");
        }
        assert!(own[0].items[0].starts_with("self_flusher (0x"), "{kind}: names the item: {own:?}");
        assert!(own[0].message.starts_with("flush") && own[1].message.starts_with("drain"), "{own:?}");
        assert!(own[2].items[0].contains("spawn"), "{kind}: names the spawned closure: {own:?}");

        // The owner's flush and drain still work.
        let n = Arc::new(AtomicUsize::new(0));
        let c = counter_work(&n);
        assert!(wq.queue(&c));
        let wq2 = wq.clone();
        assert!(within_deadline(move || wq2.flush()).is_some(), "{kind}: owner's flush hangs");
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(wq.queue(&c));
        let wq2 = wq.clone();
        assert!(within_deadline(move || wq2.drain()).is_some(), "{kind}: owner's drain hangs");
        assert_eq!(n.load(Ordering::SeqCst), 2);
        assert_eq!(log.matching(|r| r.kind == WarningKind::FlushFromOwnItem).len(), 4);
        slot.lock().unwrap().take();
    }
}

/// Issue 9, bug 6: drain and destroy of a workqueue whose item keeps requeueing itself warn at
/// the kernel's cadence (the 10th round, every 100th up to the 1000th) and then every 1000th
/// for as long as it lasts, naming the workqueue and the item; once the item stops requeueing
/// they return. The item stops when it sees the warning at round 2000, so nothing here
/// depends on timing. Before the fix drain fell silent after round 1000 and destroy never
/// warned, so the item never stopped and both hung until the deadline.
#[test]
fn drain_and_destroy_of_a_self_requeueing_item_keep_warning() {
    use cmwq::WarningKind;
    use support::warnings::WarningLog;

    const STOP_AT: u32 = 2000;
    for op in ["drain", "destroy"] {
        let log = WarningLog::new();
        let stop = Arc::new(AtomicBool::new(false));
        let rt = {
            let stop = stop.clone();
            log.install_then(Runtime::builder().cpus(1), move |w: &cmwq::Warning<'_>| {
                if let WarningKind::DrainBusy { tries } | WarningKind::DestroyBusy { tries } = w.kind {
                    if tries >= STOP_AT {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            })
            .build()
        };
        let name = format!("requeuer-{op}");
        let wq = rt.workqueue(&name).unbound().build().unwrap();
        let slot: Arc<Mutex<Option<Workqueue>>> = Arc::new(Mutex::new(Some(wq.clone())));
        let runs = Arc::new(AtomicUsize::new(0));
        let w = {
            let (slot, runs, stop) = (slot.clone(), runs.clone(), stop.clone());
            Work::named("requeuer", move |w: &Work| {
                runs.fetch_add(1, Ordering::SeqCst);
                if !stop.load(Ordering::SeqCst) {
                    let wq = slot.lock().unwrap().clone();
                    if let Some(wq) = wq {
                        assert!(wq.queue(w), "chained queueing is accepted while draining or destroying");
                    }
                }
            })
        };
        assert!(wq.queue(&w));
        let wq2 = wq.clone();
        let done = within_deadline(move || if op == "drain" { wq2.drain() } else { wq2.destroy() });
        if done.is_none() {
            stop.store(true, Ordering::SeqCst);
            slot.lock().unwrap().take();
            panic!("{op} of a self-requeueing item did not return: warnings {:?}", log.all());
        }
        let busy: Vec<_> =
            log.matching(|r| matches!(r.kind, WarningKind::DrainBusy { .. } | WarningKind::DestroyBusy { .. }));
        let tries: Vec<u32> = busy
            .iter()
            .map(|r| match r.kind {
                WarningKind::DrainBusy { tries } if op == "drain" => tries,
                WarningKind::DestroyBusy { tries } if op == "destroy" => tries,
                k => panic!("{op}: unexpected warning kind {k:?}"),
            })
            .collect();
        let mut want = vec![10];
        want.extend((1..=10).map(|i| i * 100));
        want.push(2000);
        assert_eq!(tries, want, "{op}: the kernel's cadence, then every 1000th");
        for r in &busy {
            assert_eq!(r.workqueue, name);
            assert!(r.items.iter().any(|i| i.starts_with("requeuer (0x")), "{op}: names the item: {r:?}");
            assert!(r.message.contains(&name) && r.message.contains(op), "{r:?}");
        }
        assert!(runs.load(Ordering::SeqCst) >= STOP_AT as usize, "{op}: one run per round at least");
        slot.lock().unwrap().take();
    }
}

/// Bug 7 of issue 9: items that queue themselves again hold no handle on their workqueue. A
/// periodic delayed item (`DelayedWork::from_work` + `requeue(delay)`) and a bounded chain
/// (`Work::requeue`) run; then every handle is dropped (items, workqueues, runtime) and every
/// thread the runtime created must exit. With the old idiom (the closure captures a
/// `Workqueue` clone) the workqueue was never destroyed and 8-9 threads lived on.
#[test]
fn self_requeueing_items_leave_no_thread_behind() {
    const CHAIN: usize = 1000;
    let spawner = support::CountingSpawner::new();
    let rt = Runtime::builder().cpus(2).spawner(spawner.clone()).build();
    let percpu = rt.workqueue("periodic").build().unwrap();
    let unbound = rt.workqueue("chain").unbound().build().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let periodic = {
        let ticks = ticks.clone();
        DelayedWork::new(move |w: &Work| {
            ticks.fetch_add(1, Ordering::SeqCst);
            DelayedWork::from_work(w).expect("a delayed item's work").requeue(Duration::from_millis(1));
        })
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let chain = {
        let runs = runs.clone();
        Work::new(move |w: &Work| {
            if runs.fetch_add(1, Ordering::SeqCst) + 1 < CHAIN {
                assert!(w.requeue());
            }
        })
    };
    assert!(percpu.queue_delayed(&periodic, Duration::from_millis(1)));
    assert!(unbound.queue(&chain));
    wait_for("five periodic runs and the whole chain", || {
        ticks.load(Ordering::SeqCst) >= 5 && runs.load(Ordering::SeqCst) == CHAIN
    });
    assert!(spawner.live() >= 4, "the runtime's threads: timer, monitor, workers");
    drop((periodic, chain, percpu, unbound, rt));
    wait_for("every thread of the runtime to exit", || spawner.live() == 0);
    assert_eq!(spawner.died(), 0, "a thread of the runtime panicked");
    assert_eq!(runs.load(Ordering::SeqCst), CHAIN);
}

/// `requeue` needs the workqueue of the item the caller runs: outside a work function it is
/// refused, and nothing is queued. `from_work` finds the delayed item of a delayed item's work
/// only.
#[test]
fn requeue_outside_a_work_function_is_refused() {
    let w = Work::new(|_| {});
    assert!(matches!(w.try_requeue(), Err(Error::NotInWorker)));
    assert!(!w.requeue());
    let d = DelayedWork::new(|_| {});
    assert!(matches!(d.try_requeue(Duration::ZERO), Err(Error::NotInWorker)));
    assert!(matches!(d.try_requeue(Duration::from_millis(1)), Err(Error::NotInWorker)));
    assert!(!d.requeue(Duration::from_millis(1)));
    assert!(!w.is_pending() && !d.is_pending());
    assert!(DelayedWork::from_work(&w).is_none());
    assert!(DelayedWork::from_work(d.work()).is_some_and(|x| x.work().ptr_eq(d.work())));
}

/// While its workqueue is being destroyed, an item may still queue itself at once (chained
/// work, as in the kernel) but not arm a timer: destroy fires armed timers at once, so a
/// periodic item would re-arm forever and destroy would never return.
#[test]
fn requeue_during_destroy_queues_at_once_but_arms_no_timer() {
    let rt = Runtime::builder().cpus(1).build();
    let wq = rt.workqueue("rqdestroy").unbound().build().unwrap();
    let (started, gate) = (Latch::new(), Latch::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let d = {
        let (started, gate, runs, seen) = (started.clone(), gate.clone(), runs.clone(), seen.clone());
        DelayedWork::new(move |w: &Work| {
            if runs.fetch_add(1, Ordering::SeqCst) > 0 {
                return; // the chained run
            }
            started.open();
            gate.wait();
            let me = DelayedWork::from_work(w).unwrap();
            let mut seen = seen.lock().unwrap();
            seen.push(format!("{:?}", me.try_requeue(Duration::from_millis(1))));
            seen.push(format!("{:?}", w.try_requeue()));
            seen.push(format!("{:?}", me.try_requeue(Duration::ZERO)));
        })
    };
    assert!(wq.queue_delayed(&d, Duration::ZERO));
    started.wait();
    let destroyer = {
        let wq = wq.clone();
        std::thread::spawn(move || wq.destroy())
    };
    let probe = Work::new(|_| {});
    wait_for("destroy to start", || matches!(wq.try_queue(&probe), Err(Error::Destroyed { .. })));
    gate.open();
    wait_for("destroy to return", || destroyer.is_finished());
    destroyer.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].starts_with("Err(Destroyed"), "arming a timer during destroy: {}", seen[0]);
    assert_eq!(seen[1], "Ok(true)", "queueing at once from its own item during destroy");
    assert_eq!(seen[2], "Ok(false)", "already pending");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the chained run ran before destroy returned");
    assert!(!d.is_pending());
}
