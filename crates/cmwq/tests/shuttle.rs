//! Shuttle scenarios of whole workqueues (issue 9, verification lane 3; spec/quality.md A5).
//!
//! Compiled only under `RUSTFLAGS="--cfg shuttle"`, where `crate::sync` hands every lock,
//! atomic, condvar, parker, thread-local and thread of the library to shuttle, so that shuttle
//! schedules the runtime's own threads (timer, monitor, workers, rescuers) together with the
//! test's. Each scenario builds a private runtime on a `ManualClock` (shuttle does not model
//! time: a test thread moves it), with `pin_workers(false)` and one modelled CPU, and runs
//! 4 to 8 modelled threads in all; every scenario asserts the thread count it ran with.
//!
//! Each scenario runs a fixed number of PCT schedules (depth 3) and of uniformly random ones,
//! printed as it ends. What a scenario checks, at the end of every schedule: the ledger
//! (accepted = ran + cancelled, nothing ran twice for one acceptance, nothing ran concurrently
//! with itself), that `destroy` returned, and that the runtime shut down (every thread it
//! created has exited; shuttle itself also fails a schedule that ends with a thread left).
//!
//! Deadlines: a modelled wait that can never end is a shuttle deadlock (every modelled thread
//! blocked: the schedule fails with "deadlock!"), and a livelock hits shuttle's step bound
//! ([`MAX_STEPS`]); so no wait here needs a timer of its own, and none may use real time.
//!
//! Planted bugs (`cmwq::plant`, `--cfg shuttle` only): `destroy_racing_a_firing_timer` has a
//! twin that plants issue 9's bug 1 and expects shuttle to find the hang.
#![cfg(shuttle)]

use cmwq::plant::Bug;
use cmwq::{DelayedWork, Error, FailMode, FailingSpawner, ManualClock, Runtime, ThreadKind, Work, Workqueue};
use shuttle::scheduler::{PctScheduler, RandomScheduler, Scheduler};
use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use shuttle::sync::Mutex;
use shuttle::thread;
use std::sync::Arc;
use std::time::Duration;

/// Schedules per scenario and scheduler, sized so that the whole lane stays within a few
/// minutes on 2 cores (`SHUTTLE_ITERS` overrides, for a longer hunt).
const ITERS: usize = 2000;
/// PCT's bug depth: the number of priority change points per schedule (3 finds ordering bugs
/// of up to three steps; spec/quality.md A5).
const PCT_DEPTH: usize = 3;
/// Steps after which a schedule fails as a livelock.
const MAX_STEPS: usize = 200_000;
/// The most modelled threads a scenario may use (issue 9: 4 to 8).
const MAX_THREADS: usize = 8;

fn iters() -> usize {
    std::env::var("SHUTTLE_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(ITERS)
}

fn config() -> shuttle::Config {
    let mut c = shuttle::Config::new();
    c.max_steps = shuttle::MaxSteps::FailAfter(MAX_STEPS);
    // The library's stacks are deeper than shuttle's default 60 KiB in debug builds.
    c.stack_size = 0x40000;
    // shuttle's atomics warning (its atomics are sequentially consistent): known, see sync.rs.
    c.silence_warnings = true;
    c
}

fn run_with<S: Scheduler + 'static>(scheduler: S, f: impl Fn() + Send + Sync + 'static) -> usize {
    shuttle::Runner::new(scheduler, config()).run(f)
}

/// Runs `f` under PCT and under the random scheduler, `iters()` schedules each, and prints how
/// many ran.
fn explore(name: &str, f: impl Fn() + Send + Sync + 'static) {
    let f = Arc::new(f);
    let n = iters();
    let g = f.clone();
    let pct = run_with(PctScheduler::new(PCT_DEPTH, n), move || g());
    let random = run_with(RandomScheduler::new(n), move || f());
    println!("shuttle {name}: {pct} PCT schedules (depth {PCT_DEPTH}) + {random} random schedules");
}

/// A runtime of one modelled CPU on a manual clock, with a spawner that counts its threads.
/// `kinds`/`mode`: which threads the spawner refuses (none by default).
struct Rt {
    clock: ManualClock,
    rt: Runtime,
    spawner: Arc<FailingSpawner>,
}

impl Rt {
    fn new() -> Rt {
        Rt::with(FailMode::Never, None)
    }

    fn with(mode: FailMode, plant: Option<Bug>) -> Rt {
        let clock = ManualClock::new();
        let spawner = FailingSpawner::new(mode).affecting(&[ThreadKind::Worker]);
        let mut b = Runtime::builder().cpus(1).pin_workers(false).clock(&clock).spawner(spawner.clone());
        if let Some(bug) = plant {
            b = b.plant(bug);
        }
        Rt { clock, rt: b.build(), spawner }
    }

    /// Drops the runtime and checks that it shut down: every thread it created has exited,
    /// and it never ran more than `MAX_THREADS` modelled threads with the test's `test_threads`.
    fn shut_down(self, test_threads: usize) {
        let Rt { clock, rt, spawner } = self;
        drop(rt);
        drop(clock);
        assert_eq!(spawner.live(), 0, "threads of the runtime still alive after its last handle");
        let total = spawner.spawned() + test_threads;
        assert!(total <= MAX_THREADS, "{total} modelled threads (at most {MAX_THREADS})");
    }
}

/// One work item's ledger: runs, and a flag that catches an instance running concurrently with
/// another of the same item.
#[derive(Default)]
struct Ledger {
    ran: AtomicUsize,
    running: AtomicBool,
    accepted: AtomicUsize,
    cancelled: AtomicUsize,
}

impl Ledger {
    /// The body of the item: marks it running, offers a scheduling point, counts the run.
    fn run(&self) {
        assert!(!self.running.swap(true, Ordering::SeqCst), "an item ran concurrently with itself");
        thread::yield_now();
        self.ran.fetch_add(1, Ordering::SeqCst);
        self.running.store(false, Ordering::SeqCst);
    }

    fn accept(&self, accepted: bool) {
        if accepted {
            self.accepted.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn cancel(&self, cancelled: bool) {
        if cancelled {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// accepted = ran + cancelled, and nothing runs.
    fn balanced(&self, what: &str) {
        let (a, r, c) = (
            self.accepted.load(Ordering::SeqCst),
            self.ran.load(Ordering::SeqCst),
            self.cancelled.load(Ordering::SeqCst),
        );
        assert_eq!(a, r + c, "{what}: accepted {a} != ran {r} + cancelled {c}");
        assert!(!self.running.load(Ordering::SeqCst), "{what}: still running");
    }
}

fn ledger_work(l: &Arc<Ledger>) -> Work {
    let l = l.clone();
    Work::new(move |_| l.run())
}

/// `try_queue`, counted in the ledger; a refusal because the queue is destroyed is fine.
fn queue_counted(wq: &Workqueue, w: &Work, l: &Ledger) -> bool {
    let ok = match wq.try_queue(w) {
        Ok(b) => b,
        Err(Error::Destroyed { .. }) => false,
        Err(e) => panic!("unexpected refusal: {e}"),
    };
    l.accept(ok);
    ok
}

/// a) cancel_sync, queue, flush and destroy racing on one workqueue.
///
/// Main queues `w` and `f`, starts a queuer (queues `w` twice) and a flusher (queues `f`
/// again, flushes, and checks that `f` ran as often as it was accepted: flush waits for what
/// was queued before it), then cancels `w` with `cancel_sync` and destroys the workqueue.
/// After destroy, nothing may be accepted any more; after every thread is joined and the last
/// handle dropped, both ledgers balance.
#[test]
fn cancel_flush_and_destroy_racing() {
    explore("cancel_flush_and_destroy_racing", || {
        let rt = Rt::new();
        let wq = rt.rt.workqueue("race").build().unwrap();
        let (lw, lf) = (Arc::new(Ledger::default()), Arc::new(Ledger::default()));
        let (w, f) = (ledger_work(&lw), ledger_work(&lf));
        queue_counted(&wq, &w, &lw);
        queue_counted(&wq, &f, &lf);

        let queuer = {
            let (wq, w, lw) = (wq.clone(), w.clone(), lw.clone());
            thread::spawn(move || {
                queue_counted(&wq, &w, &lw);
                thread::yield_now();
                queue_counted(&wq, &w, &lw);
            })
        };
        let flusher = {
            let (wq, f, lf) = (wq.clone(), f.clone(), lf.clone());
            thread::spawn(move || {
                queue_counted(&wq, &f, &lf);
                let accepted = lf.accepted.load(Ordering::SeqCst);
                wq.flush();
                // Only the main thread and this one queue `f`, both before this flush.
                assert_eq!(lf.ran.load(Ordering::SeqCst), accepted, "flush returned before f ran");
            })
        };
        lw.cancel(w.cancel_sync());
        wq.destroy();
        assert!(!matches!(wq.try_queue(&f), Ok(true)), "queueing accepted after destroy returned");
        for t in [queuer, flusher] {
            t.join().unwrap();
        }
        drop(wq);
        lw.balanced("w");
        lf.balanced("f");
        assert!(!w.is_pending() && !f.is_pending());
        drop((w, f));
        rt.shut_down(3);
    });
}

/// b) The body of `destroy_racing_a_firing_timer` and its planted twins: a delayed item armed
/// for 1 ms; a test thread moves the clock by 1 ms (so that the timer service fires it) while
/// main and a second thread destroy the workqueue (destroy fires armed timers itself; two
/// destroyers wait on one wake-up). Both destroys must return with the item run exactly once.
fn destroy_racing_timer(plant: Option<Bug>) {
    let rt = Rt::with(FailMode::Never, plant);
    let wq = rt.rt.workqueue("timer").build().unwrap();
    let l = Arc::new(Ledger::default());
    let d = {
        let l = l.clone();
        DelayedWork::new(move |_| l.run())
    };
    l.accept(wq.queue_delayed(&d, Duration::from_millis(1)));
    let advancer = {
        let clock = rt.clock.clone();
        thread::spawn(move || clock.advance(Duration::from_millis(1)))
    };
    let destroyer = {
        let (wq, l) = (wq.clone(), l.clone());
        thread::spawn(move || {
            wq.destroy();
            assert_eq!(l.ran.load(Ordering::SeqCst), 1, "the second destroy returned before the item ran");
        })
    };
    wq.destroy();
    assert_eq!(l.ran.load(Ordering::SeqCst), 1, "destroy returned before the delayed item ran");
    assert!(!d.is_pending(), "destroy returned with the item pending");
    advancer.join().unwrap();
    destroyer.join().unwrap();
    drop(wq);
    l.balanced("d");
    drop(d);
    rt.shut_down(3);
}

/// b) destroy racing the timer of a delayed item as it fires (issue 9, bug 1).
#[test]
fn destroy_racing_a_firing_timer() {
    explore("destroy_racing_a_firing_timer", || destroy_racing_timer(None));
}

/// Schedules PCT may take to find a planted bug before its twin gives up (measured over
/// seeds 1-10 by `planted_bugs_schedules_to_find`: bug 1 took 58 to 3,990 schedules (seed 1:
/// 2,325), the missing hand-on 58 to 3,989 (seed 1: 1,356); uniformly random schedules did
/// not find bug 1 in 100,000 on the scenario's first, one-destroyer version).
const PLANTED_BUDGET: usize = 20_000;
/// The seed of the twins' PCT runs (fixed, so that each twin is deterministic).
const PLANTED_SEED: u64 = 1;

/// Runs `destroy_racing_timer` with `bug` planted under PCT from `seed`, until a schedule fails
/// or `PLANTED_BUDGET` pass. Returns the schedules run and the failure, if any.
// The counter outlives the executions it counts, so it is std's, not shuttle's.
#[allow(clippy::disallowed_types)]
fn hunt_planted(bug: Bug, seed: u64) -> (usize, Option<String>) {
    // Counted here, not in a static: the twins run in parallel.
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    let r = std::panic::catch_unwind(move || {
        run_with(PctScheduler::new_from_seed(seed, PCT_DEPTH, PLANTED_BUDGET), move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            destroy_racing_timer(Some(bug));
        })
    });
    let failure = r.err().map(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    });
    (runs.load(std::sync::atomic::Ordering::SeqCst), failure)
}

/// A twin: hunts `bug` from `PLANTED_SEED`, prints how many schedules it took, and fails with
/// shuttle's report (the twin's `should_panic` checks that it is a deadlock).
fn twin(bug: Bug) {
    let (runs, failure) = hunt_planted(bug, PLANTED_SEED);
    let failure = failure.unwrap_or_else(|| panic!("planted {bug:?} not found in {runs} PCT schedules"));
    println!("shuttle planted {bug:?}: found after {runs} PCT schedules (seed {PLANTED_SEED}): {failure}");
    panic!("{failure}");
}

/// b') Twin 1: with issue 9's bug 1 planted (the removal of a fired timer's armed record wakes
/// nobody), shuttle finds a schedule where destroy waits forever: every modelled thread blocks,
/// which shuttle reports as a deadlock.
#[test]
#[should_panic(expected = "deadlock")]
fn planted_bug1_destroy_hangs_and_shuttle_finds_it() {
    twin(Bug::ArmedRemovalWakesNobody);
}

/// b'') Twin 2: with the destroyers' hand-on of the wake-up left out, shuttle finds a
/// schedule where the second destroyer waits forever.
#[test]
#[should_panic(expected = "deadlock")]
fn planted_no_hand_on_second_destroyer_hangs_and_shuttle_finds_it() {
    twin(Bug::DestroyerKeepsWakeUp);
}

/// How many schedules shuttle needs to find each planted bug, over seeds 1-10 (run on demand:
/// `-- --ignored --nocapture planted_bugs_schedules`).
#[test]
#[ignore]
fn planted_bugs_schedules_to_find() {
    for bug in [Bug::ArmedRemovalWakesNobody, Bug::DestroyerKeepsWakeUp] {
        let mut found = Vec::new();
        for seed in 1..=10u64 {
            let (runs, failure) = hunt_planted(bug, seed);
            let failure = failure.unwrap_or_else(|| panic!("{bug:?} seed {seed}: not found in {runs} PCT schedules"));
            assert!(failure.contains("deadlock"), "{bug:?} seed {seed}: another failure: {failure}");
            found.push(runs);
        }
        found.sort_unstable();
        println!("planted {bug:?}, PCT depth {PCT_DEPTH}: found after {found:?} schedules (seeds 1-10)");
    }
}

/// c) An item that queues itself (chained queueing) while the workqueue is flushed and
/// destroyed: chained queueing is accepted during destroy, destroy waits for the whole chain,
/// flush waits for the instance queued before it.
#[test]
fn self_queueing_item_flushed_and_destroyed() {
    const CHAIN: usize = 3;
    explore("self_queueing_item_flushed_and_destroyed", || {
        let rt = Rt::new();
        let wq = rt.rt.workqueue("chain").build().unwrap();
        let l = Arc::new(Ledger::default());
        // The item's way back to its workqueue, emptied before the end (no cycle).
        let slot: Arc<Mutex<Option<Workqueue>>> = Arc::new(Mutex::new(Some(wq.clone())));
        let w = {
            let (l, slot) = (l.clone(), slot.clone());
            Work::new(move |me| {
                l.run();
                if l.ran.load(Ordering::SeqCst) < CHAIN {
                    let wq = slot.lock().unwrap().clone().expect("workqueue slot emptied while chaining");
                    // Chained: accepted even while the workqueue is destroyed.
                    let r = wq.try_queue(me);
                    assert!(matches!(r, Ok(true)), "chained queueing refused: {r:?}");
                    l.accept(true);
                }
            })
        };
        l.accept(wq.queue(&w));
        let flusher = {
            let (wq, l) = (wq.clone(), l.clone());
            thread::spawn(move || {
                wq.flush();
                assert!(l.ran.load(Ordering::SeqCst) >= 1, "flush returned before the first run");
            })
        };
        wq.destroy();
        assert_eq!(l.ran.load(Ordering::SeqCst), CHAIN, "destroy returned before the chain ended");
        flusher.join().unwrap();
        slot.lock().unwrap().take();
        drop(wq);
        l.balanced("chain");
        drop(w);
        rt.shut_down(2);
    });
}

/// d) An ordered workqueue: items queued by two threads (main and a queuer) run one at a
/// time, in the order they were queued (each queueing and its record are made one step by a
/// test lock that no item takes), while main flushes as the queuer may still be queueing.
#[test]
fn ordered_workqueue_runs_in_queueing_order() {
    const PER_THREAD: usize = 2;
    explore("ordered_workqueue_runs_in_queueing_order", || {
        let rt = Rt::new();
        let wq = rt.rt.workqueue("ordered").ordered().build().unwrap();
        let queued: Arc<Mutex<Vec<usize>>> = Arc::default();
        let ran: Arc<Mutex<Vec<usize>>> = Arc::default();
        let active = Arc::new(AtomicUsize::new(0));
        let items: Vec<Work> = (0..2 * PER_THREAD)
            .map(|i| {
                let (ran, active) = (ran.clone(), active.clone());
                Work::new(move |_| {
                    assert_eq!(active.fetch_add(1, Ordering::SeqCst), 0, "two items of an ordered queue at once");
                    thread::yield_now();
                    ran.lock().unwrap().push(i);
                    active.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        let queue_mine = |wq: &Workqueue, queued: &Mutex<Vec<usize>>, mine: &[(usize, Work)]| {
            for (i, w) in mine {
                let mut q = queued.lock().unwrap();
                assert!(wq.queue(w), "a fresh item refused");
                q.push(*i);
            }
        };
        let mine = |t: usize| -> Vec<(usize, Work)> {
            (0..PER_THREAD).map(|k| t * PER_THREAD + k).map(|i| (i, items[i].clone())).collect()
        };
        let queuer = {
            let (wq, queued, mine) = (wq.clone(), queued.clone(), mine(1));
            thread::spawn(move || queue_mine(&wq, &queued, &mine))
        };
        queue_mine(&wq, &queued, &mine(0));
        wq.flush();
        queuer.join().unwrap();
        drop(wq);
        assert_eq!(*ran.lock().unwrap(), *queued.lock().unwrap(), "ran out of queueing order");
        drop(items);
        rt.shut_down(2);
    });
}

/// e) The rescuer with a spawner that refuses every worker: a `mem_reclaim` workqueue's items
/// all run (on its rescuer, called by the mayday timer as a test thread moves the clock), and
/// destroy ends.
#[test]
fn rescuer_runs_everything_when_no_worker_can_start() {
    const ITEMS: usize = 3;
    explore("rescuer_runs_everything_when_no_worker_can_start", || {
        let rt = Rt::with(FailMode::Always, None);
        let wq = rt.rt.workqueue("reclaim").mem_reclaim().build().unwrap();
        let ledgers: Vec<Arc<Ledger>> = (0..ITEMS).map(|_| Arc::default()).collect();
        let items: Vec<Work> = ledgers.iter().map(ledger_work).collect();
        for (w, l) in items.iter().zip(&ledgers) {
            l.accept(wq.queue(w));
        }
        let done = Arc::new(AtomicBool::new(false));
        let advancer = {
            let (clock, done) = (rt.clock.clone(), done.clone());
            thread::spawn(move || {
                // The mayday timer (10 ms) and the create retries (1 s) fire as time moves.
                while !done.load(Ordering::SeqCst) {
                    clock.advance(cmwq::MAYDAY_INTERVAL);
                    thread::yield_now();
                }
            })
        };
        wq.destroy();
        done.store(true, Ordering::SeqCst);
        for l in &ledgers {
            assert_eq!(l.ran.load(Ordering::SeqCst), 1, "destroy returned before an item was rescued");
        }
        advancer.join().unwrap();
        drop(wq);
        for l in &ledgers {
            l.balanced("rescued item");
        }
        assert_eq!(rt.spawner.spawned(), 3, "only the timer, the monitor and the rescuer start");
        drop(items);
        rt.shut_down(2);
    });
}
