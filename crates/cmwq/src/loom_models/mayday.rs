//! Model (g): the mayday list against the rescuer (`pool::mayday`'s `send_mayday`, the real
//! rescuer thread of `rescuer.rs`, started by `Rescuer::start` through the spawner, and its
//! stop at destroy). A pool that needs a worker and cannot get one: its only worker record is
//! neither idle nor running (a manager stuck creating a worker), so the items of a
//! `mem_reclaim` workqueue wait on the worklist until its rescuer takes them.
//!
//! `mayday_vs_rescuer`: two items queued; two maydays for their pwq, one from a second
//! thread (the mayday timer firing) and one from the test's, racing each other and the
//! rescuer's turn; then, once both items ran, the destroyer's stop. Checked:
//! * the mayday list holds the pwq at most once (looked at after each send, under the pool
//!   lock);
//! * every item runs exactly once, by the rescuer (no item lost, none rescued twice); a
//!   mayday whose wake-up is lost leaves every thread blocked: loom reports a deadlock;
//! * after the stop the rescuer has emptied the list and dropped every reference it held
//!   (`mayday_refs` 0: one turn per accepted mayday).

use super::{check, counted_work, Fixture, Runs};
use crate::clock::Sleeper;
use crate::flush::FlushShared;
use crate::pool::{Pwq, WorkerPool};
use crate::rescuer::Rescuer;
use crate::sync::plant::Bug;
use crate::sync::{Arc, AtomicBool, AtomicUsize};
use crate::work::Work;
use crate::workqueue::{WqFlags, WqInfo};
use loom::thread;

/// A pool that needs a worker, and the pwq of a `mem_reclaim` workqueue on it with its rescuer.
struct Stuck {
    /// Kept for the pool's lifetime (it owns what the pool runs on).
    _fx: Fixture,
    pool: Arc<WorkerPool>,
    pwq: Pwq,
    rescuer: Arc<Rescuer>,
}

/// How many entries the mayday list of `r` holds, read under its mayday lock (one hold, as
/// `Rescuer`'s `Debug` prints it: the list itself is private to `rescuer.rs`). Only this
/// model's one pwq ever goes on this rescuer's list, so this is how many times it is there.
fn maydays_len(r: &Rescuer) -> usize {
    let shown = format!("{r:?}");
    let n = shown.strip_prefix("Rescuer { maydays: ").and_then(|s| s.strip_suffix(" }"));
    n.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unexpected Debug of the rescuer: {shown}"))
}

impl Stuck {
    fn new() -> Stuck {
        let fx = Fixture::new(false);
        let pool = fx.pool.clone();
        // The fixture's reserve leaves the idle list: busy (PREP, so not running) for good.
        pool.model_worker_leave_idle(fx.reserve);
        let rescuer = Rescuer::start(pool.env(), "loom", 1).expect("start the rescuer");
        let info = Arc::new(WqInfo {
            id: 1,
            name: "loom-reclaim".into(),
            flags: WqFlags { mem_reclaim: true, ..WqFlags::default() },
            destroying: AtomicBool::new(false),
            nr_drainers: AtomicUsize::new(0),
            drained: Sleeper::new(),
            flush: FlushShared::default(),
            panic_handler: None,
            rescuer: Some(rescuer.clone()),
            shared: crate::sync::Weak::new(),
            armed: crate::sync::Mutex::new(Default::default()),
        });
        let pwq = Pwq::new(&pool, info, false, crate::WQ_DFL_ACTIVE, 0);
        Stuck { _fx: fx, pool, pwq, rescuer }
    }

    /// Queues `work` on the pwq, as `Workqueue::queue` does.
    fn queue(&self, work: &Work) {
        assert!(work.state().try_claim_pending(), "a fresh item is not pending");
        self.pwq.submit_work(work.clone());
    }

    /// The mayday timer's step for this pwq (`pool_mayday_timeout` calls `send_mayday` for
    /// every pwq with an entry on the worklist, under the pool lock).
    fn mayday(&self) {
        self.pool.model_send_mayday(self.pwq.slot(), || {
            let times = maydays_len(&self.rescuer);
            assert!(times <= 1, "the pwq is on the mayday list {times} times");
        });
    }
}

fn mayday_vs_rescuer() {
    let s = std::sync::Arc::new(Stuck::new());
    let runs: [Arc<Runs>; 2] = Default::default();
    let items = runs.each_ref().map(counted_work);
    for w in &items {
        s.queue(w);
    }
    let timer = {
        let s = s.clone();
        thread::spawn(move || s.mayday())
    };
    s.mayday();
    for r in &runs {
        r.wait_for(1);
    }
    timer.join().expect("the mayday timer");
    // Destroy: everything ran, nothing can call for help any more.
    s.rescuer.stop();
    assert_eq!(maydays_len(&s.rescuer), 0, "a mayday was left on the list after the rescuer stopped");
    let pwq = s.pool.model_pwq_census(s.pwq.slot());
    assert_eq!(pwq.mayday_refs, 0, "mayday references left after the rescuer stopped");
    assert_eq!(pwq.rescued, 2, "every item is rescued once");
    assert_eq!(runs.each_ref().map(|r| r.get()), [1, 1], "every item runs exactly once");
}

#[test]
fn loom_mayday_vs_rescuer() {
    check("mayday_vs_rescuer", 3, None, mayday_vs_rescuer);
}

#[test]
#[should_panic(expected = "deadlock")]
fn loom_mayday_planted_wake_before_queue() {
    check("mayday_vs_rescuer (planted: wake before queueing)", 3, Some(Bug::MaydayWakeBeforeQueue), mayday_vs_rescuer);
}

#[test]
#[should_panic(expected = "on the mayday list 2 times")]
fn loom_mayday_planted_no_dedup() {
    check(
        "mayday_vs_rescuer (planted: no check for the pwq on the list)",
        3,
        Some(Bug::MaydayNoDedup),
        mayday_vs_rescuer,
    );
}

#[test]
#[should_panic(expected = "left on the list after the rescuer stopped")]
fn loom_mayday_planted_stop_sampled_late() {
    check(
        "mayday_vs_rescuer (planted: stop sampled after emptying the list)",
        3,
        Some(Bug::RescuerStopSampledLate),
        mayday_vs_rescuer,
    );
}
