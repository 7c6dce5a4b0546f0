//! A one-shot completion (the kernel's `struct completion`): flush barriers and flushers wait
//! on it. Waiting has no deadline: what it waits for always ends (an item finishing), and
//! callers that need a deadline wait around it in tests.

use crate::sync::{Condvar, Mutex};

/// Signalled once; every waiter then returns.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Completion {
    pub(crate) fn new() -> Completion {
        Completion::default()
    }

    /// Marks it done and wakes every waiter.
    pub(crate) fn complete(&self) {
        *self.done.lock() = true;
        self.cv.notify_all();
    }

    /// Blocks until it is done.
    pub(crate) fn wait(&self) {
        let mut d = self.done.lock();
        while !*d {
            self.cv.wait(&mut d);
        }
    }
}
