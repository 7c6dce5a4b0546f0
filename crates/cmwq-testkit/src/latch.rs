//! A latch: a gate that opens once, after a count of count-downs or when opened outright.

use crate::wait::DEADLINE;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A latch that opens once and stays open: after `n` calls of [`Latch::count_down`] (a
/// count-down latch, [`Latch::counting`]) or at the first [`Latch::open`]. Waiters block in a
/// condvar (state S). Clones share the latch, so a clone moves into each closure that opens or
/// waits on it.
///
/// A count-down is one atomic read-modify-write; only the last one takes the lock and wakes
/// the waiters, so a latch counting items adds little to what it measures.
#[derive(Debug, Clone)]
pub struct Latch(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Count-downs still missing.
    left: AtomicUsize,
    /// Open: set by the last count-down or by `open`.
    open: Mutex<bool>,
    cv: Condvar,
}

impl Default for Latch {
    /// A one-shot gate, as [`Latch::new`].
    fn default() -> Latch {
        Latch::new()
    }
}

impl Latch {
    /// A one-shot gate: opens at the first [`Latch::open`] or [`Latch::count_down`].
    pub fn new() -> Latch {
        Latch::counting(1)
    }

    /// A count-down latch: opens after `n` count-downs (at once if `n` is 0), or at an
    /// [`Latch::open`]. At most `n` count-downs are allowed.
    pub fn counting(n: usize) -> Latch {
        Latch(Arc::new(Inner { left: AtomicUsize::new(n), open: Mutex::new(n == 0), cv: Condvar::new() }))
    }

    /// Counts down once; the last count-down opens the latch.
    pub fn count_down(&self) {
        if self.0.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.open();
        }
    }

    /// Count-downs still missing (an [`Latch::open`] does not change it).
    pub fn remaining(&self) -> usize {
        self.0.left.load(Ordering::Acquire)
    }

    /// Opens the latch and wakes every waiter; opening an open latch does nothing more.
    pub fn open(&self) {
        *self.lock() = true;
        self.0.cv.notify_all();
    }

    /// Whether the latch is open.
    pub fn is_open(&self) -> bool {
        *self.lock()
    }

    /// The flag, never poisoned: waits panic only after releasing it, and a panic elsewhere
    /// must not turn every later `open` (often in a destructor, during unwinding) into a
    /// second panic that aborts the process.
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the latch opens or `deadline` passes; returns whether it opened.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut open = self.lock();
        while !*open {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            open = self.0.cv.wait_timeout(open, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    /// Waits until the latch opens; panics "latch never opened" after [`DEADLINE`], so that
    /// a hung item fails its test instead of blocking it.
    #[track_caller]
    pub fn wait(&self) {
        assert!(self.wait_until(Instant::now() + DEADLINE), "latch never opened");
    }

    /// A guard that opens the latch when dropped: a test that fails halfway must not leave
    /// items blocked on its latches, or its runtime's drop waits for them (and they panic
    /// "latch never opened" a deadline later, long after the real failure).
    pub fn opener(&self) -> OpenOnDrop {
        OpenOnDrop(self.clone())
    }
}

/// Opens its latch when dropped (see [`Latch::opener`]).
#[derive(Debug)]
pub struct OpenOnDrop(Latch);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counting_latch_opens_and_times_out() {
        let l = Latch::counting(2);
        l.count_down();
        assert!(!l.wait_until(Instant::now() + Duration::from_millis(5)));
        l.count_down();
        assert!(l.wait_until(Instant::now() + Duration::from_secs(5)));
        assert_eq!(l.remaining(), 0);
        assert!(Latch::counting(0).is_open());
    }

    #[test]
    fn gate_opens_once_for_every_clone() {
        let gate = Latch::new();
        let g = gate.clone();
        assert!(!g.is_open());
        let h = std::thread::spawn(move || g.wait());
        gate.open();
        gate.open();
        assert!(crate::poll_until(DEADLINE, Duration::from_millis(1), || h.is_finished()));
        h.join().unwrap();
        let dropped = Latch::default();
        drop(dropped.opener());
        assert!(dropped.is_open());
    }
}
