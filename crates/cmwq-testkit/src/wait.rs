//! Deadlines and polling waits.

use std::time::{Duration, Instant};

/// Every wait in the tests has this deadline: a hang fails instead of blocking CI.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `cond` every `every` until it holds (returns `true`) or `within` has passed since the
/// call (returns `false`): the one polling loop behind [`wait_for_within`] and the
/// benchmarks' waits that fail with an error instead of a panic.
pub fn poll_until(within: Duration, every: Duration, cond: impl Fn() -> bool) -> bool {
    let t = Instant::now();
    while !cond() {
        if t.elapsed() >= within {
            return false;
        }
        std::thread::sleep(every);
    }
    true
}

/// Polls `f` every 200 us until it holds; panics with `what` after [`DEADLINE`].
#[track_caller]
pub fn wait_for(what: &str, f: impl Fn() -> bool) {
    wait_for_within(what, DEADLINE, f)
}

/// Polls `f` every 200 us until it holds; panics with `what` after `within`.
#[track_caller]
pub fn wait_for_within(what: &str, within: Duration, f: impl Fn() -> bool) {
    assert!(poll_until(within, Duration::from_micros(200), f), "timed out after {within:?} waiting for {what}");
}
