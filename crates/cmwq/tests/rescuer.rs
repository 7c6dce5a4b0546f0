//! The rescuer scenarios R1-R20 of docs/kernel-notes.md §5.10, each deterministic on the
//! manual clock with a spawner that fails on command: the mayday timer fires only when the test
//! moves time, and the cursor's position, the batch of 17, the tail requeue, the extra-works
//! case and the counters are asserted, not just completion.
//!
//! Setup for most of them (`Stuck`): pool P (CPU 0's normal pool) has two workers: one blocked
//! in an item of workqueue B (no rescuer), the other acting as manager and failing to create a
//! worker, waiting out its cooldown. A has `mem_reclaim`, B does not.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
// Tests act as users: real threads and time.

mod support;

use cmwq::{FailMode, FailingSpawner, ManualClock, PoolInfo, RescuerAlgorithm, Runtime, Work};
use cmwq_testkit::{cpu_pool, thread_exists};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::stuck::{Stuck, TICK};
use support::{wait_for, Latch};

/// What rescued items record about where they ran.
#[derive(Default)]
struct Log {
    /// (label, thread name) in execution order.
    runs: Mutex<Vec<(String, String)>>,
}

impl Log {
    fn record(&self, label: &str) {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        self.runs.lock().unwrap().push((label.to_owned(), name));
    }
    fn labels(&self) -> Vec<String> {
        self.runs.lock().unwrap().iter().map(|r| r.0.clone()).collect()
    }
    fn thread_of(&self, label: &str) -> String {
        self.runs.lock().unwrap().iter().find(|r| r.0 == label).map(|r| r.1.clone()).unwrap_or_default()
    }
    fn len(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
}

fn logged(log: &Arc<Log>, label: &str) -> Work {
    let (log, label) = (log.clone(), label.to_owned());
    Work::new(move |_| log.record(&label))
}

fn a_items_pending(p: &PoolInfo) -> usize {
    p.worklist.iter().filter(|e| matches!(e, cmwq::PendingEntry::Work { workqueue, .. } if &**workqueue == "A")).count()
}

/// R1: without mem_reclaim nobody is called: the mayday timer fires, nothing is sent, B's items
/// wait until creation works again.
#[test]
fn r01_no_rescuer_without_mem_reclaim() {
    let s = Stuck::new(1, RescuerAlgorithm::Cursor);
    let log = Arc::new(Log::default());
    s.b.queue_on(0, &logged(&log, "b"));
    s.clock.advance(TICK);
    s.clock.advance(Duration::from_millis(300));
    std::thread::sleep(Duration::from_millis(30));
    assert!(!s.b.has_rescuer());
    assert_eq!(s.b.stats().mayday, 0);
    assert_eq!(log.len(), 0, "B's item ran although no worker could be created");
    s.finish();
    wait_for("B's item once creation works", || log.len() == 1);
}

/// R2: creation that succeeds within 10 ms sends no mayday; the timer is deleted. The manager
/// arms the mayday timer when it starts creating and must delete it once done: a timer left
/// armed sends no mayday when it fires while the pool needs nothing, so only the timer's state
/// shows the deletion (the mayday count alone would pass without it).
#[test]
fn r02_no_mayday_if_creation_is_quick() {
    let clock = ManualClock::new();
    let slow = Arc::new(SlowSpawner::default());
    let rt = Runtime::builder().cpus(1).clock(&clock).spawner(slow.clone()).build();
    let a = rt.workqueue("A").mem_reclaim().build().unwrap();
    let gate = Latch::new();
    // Whatever happens, the spawner lets go and the item ends when the test does.
    let (sl, g) = (slow.clone(), gate.clone());
    let _release = support::OnDrop(move || {
        sl.set_blocking(false);
        g.open();
    });
    // The pool's only worker takes the item, finds no idle worker in reserve and becomes the
    // manager; its creation of the reserve is held until the test has seen the timer armed.
    slow.set_blocking(true);
    let g = gate.clone();
    a.queue_on(0, &Work::new(move |_| cmwq::blocking(|| g.wait())));
    wait_for("a manager creating the reserve, its mayday timer armed", || {
        let p = cpu_pool(&rt, 0);
        p.manager_active && p.mayday_timer_armed
    });
    // Creation completes with the clock unmoved: well within MAYDAY_INITIAL_TIMEOUT.
    slow.set_blocking(false);
    wait_for("the item to block with a reserve idle", || {
        let p = cpu_pool(&rt, 0);
        a.stats().started == 1 && p.nr_idle == 1 && !p.manager_active
    });
    // The manager deletes the timer before it stops being the manager (under the same lock).
    assert!(!cpu_pool(&rt, 0).mayday_timer_armed, "the manager is done and its mayday timer is still armed");
    // Past the initial timeout and a few intervals: no mayday, and the timer stays deleted.
    clock.advance(Duration::from_millis(500));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(a.stats().mayday, 0);
    let p = cpu_pool(&rt, 0);
    assert!(!p.mayday_timer_armed && !p.manager_active && p.nr_idle == 1, "{p:?}");
    gate.open();
}

/// R3: the first mayday ~10 ms after the manager starts, then every 100 ms while the need
/// lasts; a pwq is on the list at most once, with one reference per addition.
#[test]
fn r03_mayday_timing_and_dedupe() {
    let s = Stuck::new(1, RescuerAlgorithm::Cursor);
    let a = s.a("A");
    let gate = Latch::new();
    let g = gate.clone();
    let in_rescuer = Latch::new();
    let ir = in_rescuer.clone();
    a.queue_on(
        0,
        &Work::new(move |_| {
            ir.open();
            g.wait();
        }),
    );
    let log = Arc::new(Log::default());
    a.queue_on(0, &logged(&log, "a2"));
    s.clock.advance(Duration::from_millis(9));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(a.stats().mayday, 0, "mayday before MAYDAY_INITIAL_TIMEOUT");
    s.clock.advance(Duration::from_millis(1));
    in_rescuer.wait();
    assert_eq!(a.stats().mayday, 1);
    assert_eq!(a.pwqs()[0].mayday_refs, 1, "the rescuer holds the reference while it serves the pwq");
    assert!(!a.pwqs()[0].on_mayday);
    // The rescuer is blocked in a1; a2 still waits on the worklist: the next timer sends again.
    s.clock.advance(Duration::from_millis(99));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(a.stats().mayday, 1, "the repeat came before MAYDAY_INTERVAL");
    s.clock.advance(Duration::from_millis(1));
    wait_for("the second mayday", || a.stats().mayday == 2);
    assert!(a.pwqs()[0].on_mayday);
    assert_eq!(a.pwqs()[0].mayday_refs, 2);
    // Already on the list: the next firings add nothing.
    s.clock.advance(Duration::from_millis(100));
    s.clock.advance(Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(a.stats().mayday, 2, "a pwq was put on the mayday list twice");
    gate.open();
    wait_for("a2, rescued", || log.len() == 1);
    assert_eq!(log.thread_of("a2"), "kworker/R-A");
    wait_for("every reference put", || a.pwqs()[0].mayday_refs == 0);
    s.finish();
}

/// What an item saw: A items still pending, its thread's name, its thread's CPUs.
type Seen = (usize, String, Vec<usize>);

/// R4: items are rescued one at a time, the others staying on the worklist meanwhile, with the
/// pool's CPU affinity.
#[test]
fn r04_one_at_a_time_with_pool_affinity() {
    let s = Arc::new(Stuck::new(1, RescuerAlgorithm::Cursor));
    let a = s.a("A");
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    for _ in 0..5 {
        let (s2, seen) = (s.clone(), seen.clone());
        a.queue_on(
            0,
            &Work::new(move |_| {
                let pending = a_items_pending(&s2.pool(0));
                let name = std::thread::current().name().unwrap_or("?").to_owned();
                let set = rustix::thread::sched_getaffinity(None).unwrap();
                let cpus = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect();
                seen.lock().unwrap().push((pending, name, cpus));
            }),
        );
    }
    s.clock.advance(TICK);
    wait_for("5 rescued items", || seen.lock().unwrap().len() == 5);
    let seen = seen.lock().unwrap().clone();
    let first_allowed = {
        let set = rustix::thread::sched_getaffinity(None).unwrap();
        (0..rustix::thread::CpuSet::MAX_CPU).find(|&c| set.is_set(c)).unwrap()
    };
    for (k, (pending, name, cpus)) in seen.iter().enumerate() {
        assert_eq!(*pending, 4 - k, "item {k}: the others must stay on the worklist");
        assert_eq!(name, "kworker/R-A");
        assert_eq!(cpus, &vec![first_allowed], "the rescuer takes the pool's affinity");
    }
    assert_eq!(a.stats().rescued, 5);
    wait_for("the rescuer to leave", || a.pwqs()[0].mayday_refs == 0);
    assert!(!a.pwqs()[0].cursor_linked, "R14: no cursor left behind");
    s.finish();
}

/// R5: the rescuer runs only its own workqueue's items.
#[test]
fn r05_only_its_own_workqueue() {
    let s = Stuck::new(1, RescuerAlgorithm::Cursor);
    let a = s.a("A");
    let log = Arc::new(Log::default());
    s.b.queue_on(0, &logged(&log, "b1"));
    a.queue_on(0, &logged(&log, "a1"));
    s.b.queue_on(0, &logged(&log, "b2"));
    a.queue_on(0, &logged(&log, "a2"));
    s.clock.advance(TICK);
    wait_for("a1 and a2", || log.len() == 2);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(log.labels(), ["a1", "a2"]);
    let p = s.pool(0);
    let b_left: Vec<bool> = p
        .worklist
        .iter()
        .map(|e| matches!(e, cmwq::PendingEntry::Work { workqueue, .. } if &**workqueue == "B"))
        .collect();
    assert_eq!(b_left.iter().filter(|b| **b).count(), 3, "the blocker and b1, b2 stay for P's workers");
    s.finish();
    wait_for("b1 and b2 on normal workers", || log.len() == 4);
    assert!(log.thread_of("b1").starts_with("kworker/0:"));
}

/// R6: a rescued item that blocks no longer holds the others back once workers exist again;
/// the pre-2025 rescuer made them wait.
#[test]
fn r06_head_of_line_blocking_is_fixed() {
    for algo in [RescuerAlgorithm::Cursor, RescuerAlgorithm::Legacy] {
        let s = Stuck::new(1, algo);
        let a = s.a("A");
        let e = Latch::new();
        let log = Arc::new(Log::default());
        let (e2, l2) = (e.clone(), log.clone());
        a.queue_on(
            0,
            &Work::new(move |_| {
                l2.record("a1");
                e2.wait();
            }),
        );
        a.queue_on(0, &logged(&log, "a2"));
        a.queue_on(0, &logged(&log, "a3"));
        s.clock.advance(TICK);
        wait_for("a1 in the rescuer", || log.len() == 1);
        s.unstick();
        match algo {
            RescuerAlgorithm::Cursor => {
                wait_for("a2 and a3 while a1 still blocks", || log.len() == 3);
                assert!(!e.is_open());
                assert!(!log.thread_of("a2").starts_with("kworker/R-"), "a2 ran on {}", log.thread_of("a2"));
            }
            _ => {
                std::thread::sleep(Duration::from_millis(50));
                assert_eq!(log.len(), 1, "the legacy rescuer took a2 and a3 along with a1");
                e.open();
                wait_for("a2 and a3 after E", || log.len() == 3);
                assert_eq!(log.thread_of("a2"), "kworker/R-A");
            }
        }
        e.open();
        s.finish();
    }
}

/// Fills P's worklist with `n` items of B, then a1, then `n` more, then a2; returns the total
/// entries the rescuer visited to take a1 and a2.
fn scan_visits(algo: RescuerAlgorithm, n: usize) -> u64 {
    let s = Stuck::new(1, algo);
    let a = s.a("A");
    let log = Arc::new(Log::default());
    for _ in 0..n {
        s.b.queue_on(0, &Work::new(|_| {}));
    }
    a.queue_on(0, &logged(&log, "a1"));
    for _ in 0..n {
        s.b.queue_on(0, &Work::new(|_| {}));
    }
    a.queue_on(0, &logged(&log, "a2"));
    s.clock.advance(TICK);
    wait_for("a1 and a2", || log.len() == 2 && a.pwqs()[0].mayday_refs == 0);
    let visits = a.stats().rescuer_visits;
    s.finish();
    visits
}

/// R7: with the cursor the second scan resumes after a1's old position: about 2N+2 visits in
/// all, where rescanning from the head costs about 3N.
#[test]
fn r07_cursor_resume_is_linear() {
    let n = 200;
    let cursor = scan_visits(RescuerAlgorithm::Cursor, n);
    let rescan = scan_visits(RescuerAlgorithm::RescanFromHead, n);
    eprintln!("R7: N={n}: cursor {cursor} visits, rescan {rescan}");
    // +1 for the B blocker at the head, +1 for the cursor itself.
    assert!(cursor <= 2 * n as u64 + 4, "cursor visits {cursor}");
    assert!(cursor >= 2 * n as u64 + 2);
    assert!(rescan >= 3 * n as u64, "rescan visits {rescan}");
}

/// R8-R10, R20: with two pwqs waiting, the rescuer runs 17 of X's items, requeues X at the
/// tail (a mayday and a reference), runs Y's 5, then the rest of X from its cursor; alone, X
/// runs all 40 in one turn. A normal worker that meets the cursor unlinks it without running
/// or counting it.
#[test]
fn r09_batch_limit_and_fairness() {
    let s = Arc::new(Stuck::new(2, RescuerAlgorithm::Cursor));
    let a = s.a("A");
    let log = Arc::new(Log::default());
    // x0 holds the rescuer until Y is on the mayday list too, so the order is deterministic.
    let (a2, l2) = (a.clone(), log.clone());
    a.queue_on(
        0,
        &Work::new(move |_| {
            wait_for("Y on the mayday list", || a2.pwqs()[1].on_mayday);
            l2.record("x0");
        }),
    );
    for k in 1..40 {
        a.queue_on(0, &logged(&log, &format!("x{k}")));
    }
    for k in 0..5 {
        a.queue_on(1, &logged(&log, &format!("y{k}")));
    }
    s.clock.advance(TICK);
    wait_for("45 items", || log.len() == 45);
    let labels = log.labels();
    let expect: Vec<String> = (0..17)
        .map(|k| format!("x{k}"))
        .chain((0..5).map(|k| format!("y{k}")))
        .chain((17..40).map(|k| format!("x{k}")))
        .collect();
    assert_eq!(labels, expect, "17 of X, then Y, then the rest of X");
    wait_for("the rescuer to leave", || a.pwqs().iter().all(|p| p.mayday_refs == 0));
    let pw = a.pwqs();
    assert_eq!(a.stats().rescued, 45);
    assert_eq!(a.stats().mayday, 3, "X twice (timer and batch requeue), Y once");
    assert!(pw.iter().all(|p| !p.cursor_linked && !p.on_mayday));
    s.finish();
}

/// R10: alone on the mayday list, X runs all 40 items in a single turn.
#[test]
fn r10_no_limit_when_alone() {
    let s = Stuck::new(1, RescuerAlgorithm::Cursor);
    let a = s.a("A");
    let log = Arc::new(Log::default());
    for k in 0..40 {
        a.queue_on(0, &logged(&log, &format!("x{k}")));
    }
    s.clock.advance(TICK);
    wait_for("40 items", || log.len() == 40);
    assert_eq!(a.stats().rescued, 40);
    assert_eq!(
        a.stats().mayday,
        1,
        "no requeue when nobody else waits: {:?} {:?}",
        a.stats(),
        log.runs.lock().unwrap()
    );
    s.finish();
}

/// R8: the rescuer yields at the batch limit leaving its cursor on the worklist; creation then
/// works, and a normal worker meets the cursor at the head: it unlinks it, runs nothing for it,
/// counts nothing, and goes on.
#[test]
fn r08_normal_workers_skip_the_cursor() {
    let s = Arc::new(Stuck::new(2, RescuerAlgorithm::Cursor));
    let a = s.a("A");
    let log = Arc::new(Log::default());
    let hold = Latch::new();
    let (a2, l2) = (a.clone(), log.clone());
    // x0 waits for Y to be listed; x16 (the 17th) holds the rescuer so the test can act while
    // X is requeued with its cursor on P's worklist.
    a.queue_on(
        0,
        &Work::new(move |_| {
            wait_for("Y listed", || a2.pwqs()[1].on_mayday);
            l2.record("x0");
        }),
    );
    for k in 1..20 {
        let (l3, h3) = (log.clone(), hold.clone());
        let label = format!("x{k}");
        a.queue_on(
            0,
            &Work::new(move |_| {
                l3.record(&label);
                if label == "x16" {
                    h3.wait();
                }
            }),
        );
    }
    // Y's first item holds the rescuer on Y, after X was requeued.
    let y_started = Latch::new();
    let y_hold = Latch::new();
    let (ys, h4) = (y_started.clone(), y_hold.clone());
    a.queue_on(
        1,
        &Work::new(move |_| {
            ys.open();
            h4.wait();
        }),
    );
    s.clock.advance(TICK);
    wait_for("x16 in the rescuer", || log.len() == 17);
    hold.open();
    y_started.wait();
    // X is back on the mayday list with its cursor linked before x17 on P's worklist.
    let pw = a.pwqs();
    assert!(pw[0].on_mayday && pw[0].cursor_linked, "{pw:?}");
    let p = s.pool(0);
    let cursor_at = p.worklist.iter().position(|e| e.is_cursor()).unwrap();
    assert!(matches!(&p.worklist[cursor_at + 1], cmwq::PendingEntry::Work { .. }));
    let before = a.stats();
    // Creation works again: P's workers run the rest, meeting the cursor first.
    s.finish();
    wait_for("P's workers past the cursor", || !s.pool(0).worklist.iter().any(|e| e.is_cursor()));
    assert!(!a.pwqs()[0].cursor_linked, "the worker unlinked the cursor");
    y_hold.open();
    wait_for("every item", || log.len() == 20 && a.stats().completed == 21);
    let after = a.stats();
    assert_eq!(after.started, before.started + 3, "the cursor must not run: only x17..x19 started");
    assert!(!log.thread_of("x17").starts_with("kworker/R-"), "x17 ran on {}", log.thread_of("x17"));
    wait_for("no references left", || a.pwqs().iter().all(|p| p.mayday_refs == 0 && !p.cursor_linked));
}

/// R11, R14, R15: when workers become available during a rescue, the rescuer stops after the
/// current item, unlinks its cursor, kicks the pool, and the rest run on normal workers.
#[test]
fn r11_stop_once_workers_are_available() {
    let s = Arc::new(Stuck::new(1, RescuerAlgorithm::Cursor));
    let a = s.a("A");
    let log = Arc::new(Log::default());
    let (s2, l2) = (s.clone(), log.clone());
    a.queue_on(
        0,
        &Work::new(move |_| {
            l2.record("a1");
            s2.unstick();
            // Wait for the state that lasts: the manager made W3, W2 took B's second blocker
            // and blocked, W3 woke, found nobody idle, managed in its turn and made W4, which
            // stays idle while W3 runs A's items. Any earlier moment (W3 managing) still
            // needs a worker, and the rescuer would rightly take a2 (2 of 400 runs did).
            wait_for("a worker available for good", || {
                let p = s2.pool(0);
                s2.b.stats().started == 2 && p.nr_workers >= 4 && !p.manager_active && p.nr_idle > 0
            });
        }),
    );
    for k in 2..=5 {
        a.queue_on(0, &logged(&log, &format!("a{k}")));
    }
    s.clock.advance(TICK);
    wait_for("5 items", || log.len() == 5);
    assert_eq!(log.thread_of("a1"), "kworker/R-A");
    for k in 2..=5 {
        let t = log.thread_of(&format!("a{k}"));
        assert!(t.starts_with("kworker/0:"), "a{k} ran on {t}");
    }
    assert_eq!(a.stats().rescued, 1);
    wait_for("the rescuer to leave", || a.pwqs()[0].mayday_refs == 0);
    assert!(!a.pwqs()[0].cursor_linked);
    s.finish();
}

/// A spawner whose thread creation blocks until released: a manager stuck in `create_worker`.
#[derive(Debug, Default)]
struct SlowSpawner {
    gate: Mutex<bool>,
    cv: std::sync::Condvar,
}

impl SlowSpawner {
    fn set_blocking(&self, on: bool) {
        *self.gate.lock().unwrap() = on;
        self.cv.notify_all();
    }
}

impl cmwq::Spawner for SlowSpawner {
    fn spawn(&self, req: cmwq::SpawnRequest) -> std::io::Result<cmwq::ThreadHandle> {
        if req.kind == cmwq::ThreadKind::Worker {
            // At most a deadline: a test that failed before releasing it must not leave its
            // manager blocked here, or the runtime's drop would wait for it forever.
            let t = std::time::Instant::now();
            let mut g = self.gate.lock().unwrap();
            while *g && t.elapsed() < support::DEADLINE {
                g = self.cv.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
            }
        }
        cmwq::ThreadSpawner.spawn(req)
    }
}

/// R12: idle or running workers exist, so the pool does not need a worker, but its manager is
/// still stuck creating one and no other pwq waits: the rescuer keeps taking items; once the
/// manager finishes it stops after the current one.
#[test]
fn r12_extra_work_while_the_manager_struggles() {
    let clock = ManualClock::new();
    let slow = Arc::new(SlowSpawner::default());
    let rt = Arc::new(Runtime::builder().cpus(1).clock(&clock).spawner(slow.clone()).build());
    let pool = {
        let rt = rt.clone();
        move || cpu_pool(&rt, 0)
    };
    let b = rt.workqueue("B").build().unwrap();
    let a = rt.workqueue("A").mem_reclaim().build().unwrap();
    let gate1 = Latch::new();
    let g1 = gate1.clone();
    b.queue_on(0, &Work::new(move |_| cmwq::blocking(|| g1.wait())));
    wait_for("x1 blocked, reserve idle", || {
        let p = pool();
        b.stats().started == 1 && p.nr_idle == 1 && !p.manager_active
    });
    slow.set_blocking(true);
    // x2 spins (counted as running) until told to stop.
    let stop_spin = Arc::new(AtomicBool::new(false));
    // Whatever happens, the spinner stops, the spawner lets go and x1 ends when the test does.
    let (ss, sl, g1) = (stop_spin.clone(), slow.clone(), gate1.clone());
    let _release = support::OnDrop(move || {
        ss.store(true, Ordering::SeqCst);
        sl.set_blocking(false);
        g1.open();
    });
    let ss = stop_spin.clone();
    b.queue_on(
        0,
        &Work::new(move |_| {
            while !ss.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        }),
    );
    wait_for("the reserve stuck in create_worker", || pool().manager_active);
    let log = Arc::new(Log::default());
    let (l1, p1) = (log.clone(), pool.clone());
    a.queue_on(
        0,
        &Work::new(move |_| {
            l1.record("a1");
            gate1.open(); // x1 ends; its worker takes x2 and runs (counted)
            wait_for("a running worker and a busy manager", || {
                let p = p1();
                p.nr_running == 1 && p.manager_active
            });
        }),
    );
    let (l2, p2, sl, ss2) = (log.clone(), pool.clone(), slow.clone(), stop_spin.clone());
    a.queue_on(
        0,
        &Work::new(move |_| {
            l2.record("a2");
            sl.set_blocking(false); // the manager's creation completes
            wait_for("the manager done", || !p2().manager_active);
            ss2.store(true, Ordering::SeqCst);
        }),
    );
    a.queue_on(0, &logged(&log, "a3"));
    a.queue_on(0, &logged(&log, "a4"));
    clock.advance(TICK);
    wait_for("4 items", || log.len() == 4);
    assert_eq!(log.thread_of("a1"), "kworker/R-A");
    assert_eq!(log.thread_of("a2"), "kworker/R-A", "extra work: the rescuer went on while the manager struggled");
    assert!(!log.thread_of("a3").starts_with("kworker/R-"));
    assert!(!log.thread_of("a4").starts_with("kworker/R-"));
    assert_eq!(a.stats().rescued, 2);
}

/// R13: inactive items call for no help and are not rescued; once activated they are.
///
/// Every step waits for the state it needs, never for time: a firing of the mayday timer is
/// witnessed by workqueue C (one active item on the same worklist), and the clock moves only
/// once the pool is known to need a worker, so the firing cannot come too early. (It used to
/// advance the clock right after a2's activation; when the timer ran before a1's worker had
/// taken B's blocker, the pool still counted it running, no mayday went out, the timer re-armed
/// for a time the test never reached, and the test timed out "waiting for a2 and a3 rescued":
/// 21 of 400 runs of this binary, two copies in parallel.)
#[test]
fn r13_inactive_items_are_not_rescued() {
    let clock = ManualClock::new();
    let fail = Arc::new(AtomicBool::new(false));
    let spawner = FailingSpawner::new(FailMode::While(fail.clone()));
    let rt = Runtime::builder().cpus(1).clock(&clock).spawner(spawner.clone()).build();
    let pool = || cpu_pool(&rt, 0);
    let a = rt.workqueue("A").mem_reclaim().max_active(1).build().unwrap();
    let b = rt.workqueue("B").build().unwrap();
    let c = rt.workqueue("C").mem_reclaim().build().unwrap();
    let gate1 = Latch::new();
    let gate2 = Latch::new();
    // A failing test must not leave workers blocked on these gates (its runtime's drop joins
    // them): open both on the way out, whatever happens.
    let _open = (gate1.opener(), gate2.opener());
    let g1 = gate1.clone();
    a.queue_on(0, &Work::new(move |_| cmwq::blocking(|| g1.wait())));
    wait_for("a1 blocked, reserve idle", || a.stats().started == 1 && pool().nr_idle == 1);
    fail.store(true, Ordering::SeqCst);
    let log = Arc::new(Log::default());
    a.queue_on(0, &logged(&log, "a2"));
    a.queue_on(0, &logged(&log, "a3"));
    assert_eq!(a.pwqs()[0].nr_inactive, 2);
    let g2 = gate2.clone();
    b.queue_on(0, &Work::new(move |_| cmwq::blocking(|| g2.wait())));
    wait_for("a failing manager", || pool().manager_active && spawner.refused() >= 1);
    // The witness: C's item waits on the same worklist, active.
    c.queue_on(0, &logged(&log, "c1"));
    clock.advance(TICK);
    wait_for("the mayday timer to call C's rescuer", || log.len() == 1);
    assert_eq!(c.stats().mayday, 1);
    assert_eq!(a.stats().mayday, 0, "inactive items called for help");
    assert_eq!(log.labels(), ["c1"]);
    // a1 completes: a2 becomes active; a1's worker takes B's blocker and blocks, and the pool
    // needs a worker again (nothing runs, nobody idle, a2 waits). The next firing calls A's
    // rescuer, which runs a2, then a3 once a2's completion activated it.
    gate1.open();
    wait_for("a2 active, a1's worker blocked in B's item", || {
        let p = pool();
        a.pwqs()[0].nr_inactive == 1 && b.stats().started == 1 && p.nr_running == 0 && p.nr_idle == 0
    });
    clock.advance(cmwq::MAYDAY_INTERVAL);
    wait_for("a2 and a3 rescued", || log.len() == 3);
    assert_eq!(log.labels(), ["c1", "a2", "a3"]);
    assert_eq!(log.thread_of("a2"), "kworker/R-A");
    assert_eq!(a.stats().rescued, 2);
    fail.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));
    gate2.open();
}

/// R16: destroy with a stale mayday entry: the rescuer empties the list, puts every reference,
/// and exits.
#[test]
fn r16_destroy_with_stale_maydays() {
    let s = Arc::new(Stuck::new(1, RescuerAlgorithm::Cursor));
    let a = s.a("A16");
    wait_for("the rescuer thread, created with the workqueue", || thread_exists("kworker/R-A16"));
    assert_eq!(s.spawner.live_of(cmwq::ThreadKind::Rescuer), 1);
    let gate = Latch::new();
    let (g, started) = (gate.clone(), Latch::new());
    let st = started.clone();
    a.queue_on(
        0,
        &Work::new(move |_| {
            st.open();
            g.wait();
        }),
    );
    let log = Arc::new(Log::default());
    a.queue_on(0, &logged(&log, "a2"));
    s.clock.advance(TICK);
    started.wait();
    s.clock.advance(Duration::from_millis(100));
    wait_for("A listed again while its rescuer is busy", || a.pwqs()[0].on_mayday);
    // Normal workers take a2: the listed pwq becomes stale.
    s.unstick();
    wait_for("a2 on a normal worker", || log.len() == 1);
    assert!(log.thread_of("a2").starts_with("kworker/0:"));
    let a2 = a.clone();
    let destroyer = std::thread::spawn(move || a2.destroy());
    gate.open();
    support::join("the destroy of A16", destroyer);
    let pw = a.pwqs();
    assert!(pw.iter().all(|p| p.mayday_refs == 0 && !p.on_mayday && !p.cursor_linked), "{pw:?}");
    // The spawner counts a thread out when its body returns, before the thread ends, so this
    // holds as soon as destroy has joined it. (/proc/self/task still lists a thread for a
    // moment after its join returns: the kernel wakes the joiner before it unhashes the task,
    // and asserting on /proc failed in 1 of 150 runs of this binary with 32 test threads.)
    assert_eq!(s.spawner.live_of(cmwq::ThreadKind::Rescuer), 0, "destroy returned with the rescuer still alive");
    wait_for("the rescuer's task to leave /proc", || !thread_exists("kworker/R-A16"));
    s.finish();
}

/// R17: an item requeued while the rescuer runs it is punted to the rescuer and runs after the
/// first execution, never alongside it.
#[test]
fn r17_non_reentrancy_under_rescue() {
    let s = Stuck::new(1, RescuerAlgorithm::Cursor);
    let a = s.a("A");
    let gate = Latch::new();
    let running = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Log::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let (g, r, o, l, n) = (gate.clone(), running.clone(), overlaps.clone(), log.clone(), runs.clone());
    let w = Work::new(move |_| {
        if r.swap(true, Ordering::SeqCst) {
            o.fetch_add(1, Ordering::SeqCst);
        }
        let k = n.fetch_add(1, Ordering::SeqCst);
        l.record(&format!("run{k}"));
        if k == 0 {
            g.wait();
        }
        r.store(false, Ordering::SeqCst);
    });
    a.queue_on(0, &w);
    s.clock.advance(TICK);
    wait_for("the first run in the rescuer", || log.len() == 1);
    assert!(a.queue_on(0, &w), "queueable again while it runs");
    // Workers come back; one of them dequeues the second instance and punts it to the rescuer.
    s.unstick();
    wait_for("the instance punted off the worklist", || a_items_pending(&s.pool(0)) == 0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(log.len(), 1, "the second instance ran while the first still ran");
    gate.open();
    wait_for("the second run", || log.len() == 2);
    assert_eq!(log.thread_of("run1"), "kworker/R-A", "it runs on the worker that ran the first");
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    s.finish();
}

/// R18: a rescued item that sleeps changes no `nr_running` and wakes nobody.
#[test]
fn r18_rescuer_blocking_wakes_nobody() {
    let s = Arc::new(Stuck::new(1, RescuerAlgorithm::Cursor));
    let a = s.a("A");
    let gate = Latch::new();
    let (g, s2) = (gate.clone(), s.clone());
    let inside = Arc::new(Mutex::new(None));
    let i2 = inside.clone();
    a.queue_on(
        0,
        &Work::new(move |_| {
            cmwq::blocking(|| {
                *i2.lock().unwrap() = Some(s2.pool(0).nr_running);
                g.wait();
            });
        }),
    );
    s.clock.advance(TICK);
    wait_for("the item blocking in the rescuer", || inside.lock().unwrap().is_some());
    assert_eq!(*inside.lock().unwrap(), Some(0));
    assert_eq!(s.pool(0).nr_running, 0);
    gate.open();
    wait_for("done", || a.stats().completed == 1);
    assert_eq!(a.stats().cm_wakeup, 0);
    s.finish();
}

/// R19: flush of an item running on the rescuer waits for it (the barrier goes to the
/// rescuer's scheduled list), and a workqueue flush completes once the rescued items finish.
#[test]
fn r19_flush_through_the_rescuer() {
    let s = Stuck::new(1, RescuerAlgorithm::Cursor);
    let a = s.a("A");
    let gate = Latch::new();
    let (g, started) = (gate.clone(), Latch::new());
    let st = started.clone();
    let a1 = Work::new(move |_| {
        st.open();
        g.wait();
    });
    a.queue_on(0, &a1);
    let log = Arc::new(Log::default());
    a.queue_on(0, &logged(&log, "a2"));
    s.clock.advance(TICK);
    started.wait();
    let f1 = {
        let a1 = a1.clone();
        std::thread::spawn(move || a1.flush())
    };
    let f2 = {
        let a = a.clone();
        std::thread::spawn(move || a.flush())
    };
    // Both flushes must have started before a1 may end, or a1.flush() rightly finds nothing
    // to wait for (it returned false in 1 of 400 runs with 32 test threads when the test
    // only slept 30 ms here): a1's barrier is in flight and the workqueue flush has a colour.
    wait_for("a1's barrier and the workqueue flush", || {
        let p = &a.pwqs()[0];
        p.in_flight == 3 && p.flush_color.is_some()
    });
    assert!(!f1.is_finished() && !f2.is_finished());
    gate.open();
    assert!(support::join("a1.flush()", f1));
    support::join("the workqueue flush", f2);
    assert_eq!(log.len(), 1, "the workqueue flush returned before a2 ran");
    assert_eq!(log.thread_of("a2"), "kworker/R-A");
    s.finish();
}

/// A rescuer that cannot be created fails the workqueue's creation with a clear error, and
/// nothing is left behind.
#[test]
fn rescuer_creation_failure_fails_the_build() {
    let spawner = FailingSpawner::new(FailMode::Always).affecting(&[cmwq::ThreadKind::Rescuer]);
    let rt = Runtime::builder().cpus(1).spawner(spawner.clone()).build();
    let live = spawner.live();
    let e = rt.workqueue("reclaim").mem_reclaim().build().unwrap_err();
    assert!(matches!(e, cmwq::Error::Spawn(_)), "{e}");
    assert!(e.to_string().contains("thread"), "{e}");
    assert_eq!(spawner.live(), live);
    // Without mem_reclaim the same runtime builds workqueues.
    assert!(rt.workqueue("plain").build().is_ok());
}

/// check_flush_dependency (debug builds): an item of a mem_reclaim workqueue that flushes a
/// workqueue without a rescuer is warned about, once per pair; flushing one with a rescuer is
/// fine.
///
/// Twice, on two runtimes whose workqueues get the same ids: the pairs reported used to be
/// remembered by workqueue id, which is unique only within a runtime, so the second runtime's
/// warning was silenced by the first's (without the fix: "left: 1, right: 2" on the second
/// round). The count is process-wide; no other test of this binary flushes from a
/// mem_reclaim item.
#[test]
#[cfg(debug_assertions)]
fn flush_dependency_is_warned_about() {
    for round in 1..=2 {
        let rt = Runtime::builder().cpus(1).build();
        let reclaim = rt.workqueue("reclaim-flusher").mem_reclaim().build().unwrap();
        let plain = rt.workqueue("plain-target").build().unwrap();
        let other = rt.workqueue("reclaim-target").mem_reclaim().build().unwrap();
        let before = cmwq::flush_dependency_warnings();
        let (p, o) = (plain.clone(), other.clone());
        let w = Work::new(move |_| {
            support::bounded("o.flush()", || o.flush());
            support::bounded("p.flush()", || p.flush());
            support::bounded("p.flush()", || p.flush());
        });
        reclaim.queue(&w);
        support::bounded("w.flush()", || w.flush());
        assert_eq!(cmwq::flush_dependency_warnings(), before + 1, "round {round}");
    }
}
