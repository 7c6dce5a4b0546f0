//! Model (a): the inbox hand-off (`pool::inbox`, docs/design.md §1.1). A queuer appends
//! without the pool lock; the guarantee is that an appended item is never left in the inbox
//! with nobody coming to drain it.
//!
//! * `submit_vs_release`: the queuer's step 3 against a lock holder's release (step 2). When
//!   both are done and no worker counts as running, the inbox is empty and the item is queued.
//! * `skip_while_running`: a worker counts as running, so both the release and the queuer
//!   skip the drain (the worker will lock again); the worker then stops counting (under the
//!   lock, releasing through step 2). When both are done the inbox is empty. This is the
//!   Dekker pair of `SeqCst` fences: the queuer's look at `nr_running` against the release's
//!   second look at the inbox.

use super::{check, Fixture};
use crate::pool::flags;
use crate::sync::plant::Bug;
use crate::work::Work;
use loom::thread;

/// After everything: the inbox is empty and the item sits on the pool's lists (QUEUED).
fn assert_drained(fx: &Fixture, w: &Work) {
    assert!(fx.pool.model_inbox_is_empty(), "an item was left in the inbox with nobody to drain it");
    assert!(w.state().load().is_queued(), "the item is not on the pool's lists: {:?}", w.state().load());
}

fn submit_vs_release() {
    let fx = std::sync::Arc::new(Fixture::new(false));
    let w = Work::new(|_w: &Work| {});
    let holder = {
        let fx = fx.clone();
        thread::spawn(move || fx.pool.model_lock_and_release())
    };
    assert!(fx.queue(&w));
    holder.join().unwrap();
    assert_drained(&fx, &w);
}

fn two_submits_vs_release() {
    let fx = std::sync::Arc::new(Fixture::new(false));
    let (w1, w2) = (Work::new(|_w: &Work| {}), Work::new(|_w: &Work| {}));
    let queuer = {
        let (fx, w2) = (fx.clone(), w2.clone());
        thread::spawn(move || assert!(fx.queue(&w2)))
    };
    let holder = {
        let fx = fx.clone();
        thread::spawn(move || fx.pool.model_lock_and_release())
    };
    assert!(fx.queue(&w1));
    queuer.join().unwrap();
    holder.join().unwrap();
    assert_drained(&fx, &w1);
    assert_drained(&fx, &w2);
}

fn skip_while_running() {
    let fx = std::sync::Arc::new(Fixture::new(false));
    let busy = Fixture::reserve(&fx.pool, false);
    let w = Work::new(|_w: &Work| {});
    let worker = {
        let fx = fx.clone();
        thread::spawn(move || {
            // Starts counting as running: this release neither drains nor looks again.
            fx.pool.model_worker_clr_flags(busy, flags::PREP);
            // Stops counting (as a worker going idle or to sleep): this release drains.
            fx.pool.model_worker_set_flags(busy, flags::PREP);
        })
    };
    assert!(fx.queue(&w));
    worker.join().unwrap();
    assert_drained(&fx, &w);
}

#[test]
fn loom_inbox_submit_vs_release() {
    check("inbox_submit_vs_release", 3, None, submit_vs_release);
}

#[test]
#[should_panic(expected = "left in the inbox")]
fn loom_inbox_submit_vs_release_planted_no_second_look() {
    check("inbox_submit_vs_release (planted: no second look)", 3, Some(Bug::InboxNoSecondLook), submit_vs_release);
}

#[test]
fn loom_inbox_two_submits_vs_release() {
    check("inbox_two_submits_vs_release", 3, None, two_submits_vs_release);
}

#[test]
#[should_panic(expected = "left in the inbox")]
fn loom_inbox_two_submits_vs_release_planted_no_second_look() {
    check(
        "inbox_two_submits_vs_release (planted: no second look)",
        3,
        Some(Bug::InboxNoSecondLook),
        two_submits_vs_release,
    );
}

#[test]
fn loom_inbox_skip_while_running() {
    check("inbox_skip_while_running", 3, None, skip_while_running);
}

#[test]
#[should_panic(expected = "left in the inbox")]
fn loom_inbox_skip_while_running_planted_no_fence() {
    check(
        "inbox_skip_while_running (planted: queuer without fence)",
        3,
        Some(Bug::InboxQueuerNoFence),
        skip_while_running,
    );
}
