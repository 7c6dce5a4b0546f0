//! The rescue path allocates nothing once the rescuer runs (DESIGN.md §6: "the rescuer
//! allocates nothing once started"). Its own test binary, so that a counting global allocator
//! sees only this test; each rescued item records the allocation count. Between one rescued
//! item and the next, the rescuer assigns the next item, moves its cursor, runs the bookkeeping
//! of the previous one; none of that may allocate.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{RescuerAlgorithm, Work};
use cmwq_testkit::allocations;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use support::stuck::{Stuck, TICK};
use support::{wait_for, Latch};

// Counts allocations. The count is process-wide, so the test keeps every other thread quiet
// while the rescuer runs: the test thread waits on a latch (no allocation), the workers are
// blocked or waiting out a cooldown on the manual clock, and the monitor and timer threads
// sleep (the clock does not move).
cmwq_testkit::count_allocations!();

const N: usize = 30;

#[test]
fn rescue_path_allocates_nothing() {
    let s = Stuck::new(1, RescuerAlgorithm::Cursor);
    let a = s.a("A");
    // Preallocated: items only store numbers.
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(u64::MAX)).collect());
    let done = Latch::new();
    let items: Vec<Work> = (0..N)
        .map(|k| {
            let (seen, done) = (seen.clone(), done.clone());
            Work::new(move |_| {
                seen[k].store(allocations(), Ordering::SeqCst);
                if k == N - 1 {
                    done.open();
                }
            })
        })
        .collect();
    for w in &items {
        assert!(a.queue_on(0, w));
    }
    s.clock.advance(TICK);
    done.wait();
    wait_for("every item rescued", || a.stats().rescued == N as u64);
    let counts: Vec<u64> = seen.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    // The first item may follow allocations made while attaching (a worker record, the
    // cursor); from then on the counter must not move.
    for k in 2..N {
        assert_eq!(counts[k], counts[1], "the rescuer allocated between items {} and {k}: {counts:?}", k - 1);
    }
    s.finish();
}
