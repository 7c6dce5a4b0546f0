//! Model (b): the work state word (`work::state`): a queuer, a canceller and the worker
//! clearing PENDING (`release_for_run`). PENDING has exactly one owner at a time (the real
//! transitions `assert!` it: `release_claim`, `set_queued`, `release_for_run`,
//! `steal_queued`), and the ledger balances: every accepted queueing either runs once or is
//! taken away by the cancel, never both, never lost.

use super::{check, counted_work, Fixture, Runs};
use crate::sync::plant::Bug;
use crate::sync::Arc;
use crate::workqueue::cancel;
use loom::thread;

fn queue_vs_cancel_vs_worker() {
    let runs = Arc::new(Runs::default());
    let fx = Arc::new(Fixture::new(true));
    let w = counted_work(&runs);
    let canceller = {
        let w = w.clone();
        thread::spawn(move || cancel::cancel(&w, None))
    };
    let accepted = usize::from(fx.queue(&w));
    let cancelled = usize::from(canceller.join().unwrap());
    assert!(cancelled <= accepted, "cancel took an instance nobody queued");
    runs.wait_for(accepted - cancelled);
    Arc::try_unwrap(fx).ok().expect("the fixture is the test's alone now").shutdown();
    assert_eq!(runs.get(), accepted - cancelled, "accepted = ran + cancelled");
    assert!(!w.state().load().is_pending(), "PENDING left owned by nobody: {:?}", w.state().load());
}

#[test]
fn loom_work_state_queue_vs_cancel_vs_worker() {
    check("work_state_queue_vs_cancel_vs_worker", 2, None, queue_vs_cancel_vs_worker);
}

#[test]
#[should_panic(expected = "release_claim of an unowned item")]
fn loom_work_state_planted_claim_not_atomic() {
    check(
        "work_state_queue_vs_cancel_vs_worker (planted: claim not atomic)",
        2,
        Some(Bug::ClaimNotAtomic),
        queue_vs_cancel_vs_worker,
    );
}

#[test]
#[should_panic(expected = "index out of bounds")] // The stale node index of an item no longer queued.
fn loom_work_state_planted_steal_unchecked() {
    check(
        "work_state_queue_vs_cancel_vs_worker (planted: steal without re-check)",
        2,
        Some(Bug::CancelStealUnchecked),
        queue_vs_cancel_vs_worker,
    );
}
