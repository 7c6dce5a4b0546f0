//! Model (e): the flush-colour hand-off (`flush::flush_workqueue` and `prep_pwqs`, the pwqs'
//! per-colour counts, `pwq_dec_nr_in_flight`'s colour completion; the kernel's
//! `__flush_workqueue`). One flusher, the real worker, and one workqueue with two pwqs on the
//! same pool (so the flusher arms them one after the other, releasing the pool lock between).
//!
//! * `flush_waits_for_earlier`: an item on each pwq, then the flush, while the worker runs
//!   them. When the flush returns both have finished: never earlier. It never hangs (a flush
//!   that waits for a completion nobody sends leaves every thread blocked, which loom reports
//!   as a deadlock).
//! * `flush_skips_later`: an item, then a flush on a second thread; once the flush has taken
//!   its colour, another item is queued on the same pwq, frozen meanwhile, so that it cannot
//!   run until it is thawed after the flush. The flush must not wait for it (else it waits
//!   forever: a deadlock). The later item is held back by freezing rather than by a latch in
//!   its function: loom ends a deadlocked execution by unwinding its threads, and the worker's
//!   `catch_unwind` around a work function would catch that unwinding.

use super::{check, counted_work, Fixture, Runs};
use crate::flush::{flush_workqueue, FlushLocked};
use crate::pool::Pwq;
use crate::sync::plant::Bug;
use crate::sync::{thread as facade_thread, Arc, Mutex};
use crate::work::Work;
use loom::thread;

/// What the workqueue lock guards for a flush (the flush colours and the pwqs, as in the
/// workqueue's `WqLocked`).
struct FlushState {
    flush: FlushLocked,
    pwqs: Vec<Pwq>,
}

/// The projection `flush_workqueue` takes (`WqLocked::flush_parts`).
fn flush_parts(s: &mut FlushState) -> (&mut FlushLocked, &[Pwq]) {
    (&mut s.flush, &s.pwqs)
}

/// The fixture's workqueue with a second pwq on the same pool, and its flush lock.
struct TwoPwqs {
    fx: Fixture,
    /// The two pwqs (the same as in `flush_lock`, for queueing without that lock).
    pwqs: Vec<Pwq>,
    flush_lock: Mutex<FlushState>,
}

impl TwoPwqs {
    fn new() -> TwoPwqs {
        let fx = Fixture::new(true);
        let second = Pwq::new(&fx.pool, fx.info.clone(), false, crate::WQ_DFL_ACTIVE, 0);
        let pwqs = vec![fx.pwq.clone(), second];
        let flush_lock = Mutex::new(FlushState { flush: FlushLocked::default(), pwqs: pwqs.clone() });
        TwoPwqs { fx, pwqs, flush_lock }
    }

    /// Queues `work` on pwq `i`, as `Workqueue::queue` does.
    fn queue(&self, i: usize, work: &Work) {
        assert!(work.state().try_claim_pending(), "a fresh item is not pending");
        self.pwqs[i].submit_work(work.clone());
    }

    /// `Workqueue::flush` of this workqueue.
    fn flush(&self) {
        // The pool lock the model has always taken here (it read the workqueue's info from the
        // pwq under it): kept, so that the model explores the same schedules.
        self.fx.pool.model_lock_and_release();
        flush_workqueue(&self.flush_lock, &self.fx.info.flush, flush_parts);
    }
}

fn flush_waits_for_earlier() {
    let t = TwoPwqs::new();
    let runs: [Arc<Runs>; 2] = Default::default();
    let items = runs.each_ref().map(counted_work);
    t.queue(0, &items[0]);
    t.queue(1, &items[1]);
    t.flush();
    let ran = runs.each_ref().map(|r| r.get());
    assert_eq!(ran, [1, 1], "the flush returned before an item queued before it had finished");
    t.fx.shutdown();
}

fn flush_skips_later() {
    let t = std::sync::Arc::new(TwoPwqs::new());
    let runs: [Arc<Runs>; 2] = Default::default();
    let [early, late] = runs.each_ref().map(counted_work);
    t.queue(0, &early);
    // Then the pwq is frozen (`max_active` 0, as `set_pwq_max_active` freezes; the lock moves
    // the earlier item onto the worklist first): the later item waits on its inactive list,
    // counted in its colour, until it is thawed after the flush. A flush that waited for it
    // would wait forever.
    let frozen = t.pwqs[0].slot();
    t.fx.pool.model_store_max_active(frozen, 0);
    let flusher = {
        let (t, early_runs) = (t.clone(), runs[0].clone());
        thread::spawn(move || {
            t.flush();
            assert_eq!(early_runs.get(), 1, "the flush returned before the earlier item had finished");
        })
    };
    // Once the flush has advanced the colour (its pwqs too: one hold of the flush lock), an item
    // queued now is not the flush's to wait for.
    while t.flush_lock.lock().flush.work_color() == 0 {
        facade_thread::yield_now();
    }
    t.queue(0, &late);
    flusher.join().expect("the flusher");
    // Thaw (`set_pwq_max_active`: the limit, the activations it allows, a kick).
    t.fx.pool.model_set_max_active(frozen, crate::WQ_DFL_ACTIVE);
    runs[1].wait_for(1);
    std::sync::Arc::try_unwrap(t).ok().expect("the model's alone").fx.shutdown();
}

#[test]
fn loom_flush_colour_waits_for_earlier() {
    check("flush_colour_waits_for_earlier", 3, None, flush_waits_for_earlier);
}

#[test]
#[should_panic(expected = "the flush returned before an item queued before it had finished")]
fn loom_flush_colour_planted_no_arming_bias() {
    check(
        "flush_colour_waits_for_earlier (planted: arming without the flusher's reference)",
        3,
        Some(Bug::FlushNoArmingBias),
        flush_waits_for_earlier,
    );
}

#[test]
fn loom_flush_colour_skips_later() {
    check("flush_colour_skips_later", 2, None, flush_skips_later);
}

#[test]
#[should_panic(expected = "deadlock")]
fn loom_flush_colour_planted_colour_not_advanced() {
    check(
        "flush_colour_skips_later (planted: the pwqs' work colour not advanced)",
        2,
        Some(Bug::FlushColourNotAdvanced),
        flush_skips_later,
    );
}
