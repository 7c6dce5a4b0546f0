//! Warnings about a workqueue's use: the one path they take (the kernel's `WARN`/`pr_warn` in
//! `__flush_workqueue`'s `check_flush_dependency`/lockdep splat and in `drain_workqueue`).
//!
//! Each warning is built once, as a [`Warning`] naming the workqueue and the items concerned,
//! and handed to the runtime's warning handler ([`RuntimeBuilder::warning_handler`]), or, by
//! default, printed on stderr as one line starting with `cmwq: WARNING:`. The handler is called
//! with no lock of cmwq held; if it panics, that is reported and ignored. Tests observe
//! warnings through a handler instead of parsing stderr.
//!
//! [`RuntimeBuilder::warning_handler`]: crate::RuntimeBuilder::warning_handler

use crate::sync::Arc;
use std::fmt;

/// What a [`Warning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// `Workqueue::flush` or `drain` was called from one of that workqueue's own items: it
    /// would wait for the calling item itself, so it returned at once without waiting (the
    /// kernel's lockdep splat on `wq->lockdep_map`).
    FlushFromOwnItem,
    /// `Workqueue::drain` has flushed `tries` times and the workqueue is still not empty (an
    /// item keeps queueing itself): `drain_workqueue`'s warning.
    DrainBusy {
        /// Flushes so far.
        tries: u32,
    },
    /// `Workqueue::destroy` has woken `tries` times and items are still in flight.
    DestroyBusy {
        /// Wake-ups so far.
        tries: u32,
    },
}

/// A warning, as handed to the runtime's warning handler.
#[derive(Debug)]
#[non_exhaustive]
pub struct Warning<'a> {
    /// What it is about.
    pub kind: WarningKind,
    /// The workqueue's name.
    pub workqueue: &'a str,
    /// The items concerned, each as `name (id)`: the calling item, or the items still in
    /// flight (at most [`MAX_NAMED`], then `...`).
    pub items: &'a [String],
    /// The whole message, as printed by default (without the `cmwq: WARNING: ` prefix).
    pub message: &'a str,
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

/// At most this many items are named in one warning (cmwq's choice; the kernel's
/// `show_one_workqueue` dumps every one).
pub const MAX_NAMED: usize = 8;

/// The function type of a warning handler.
type HandlerFn = dyn Fn(&Warning<'_>) + Send + Sync;

/// `drain_workqueue` warns at its 10th flush (`flush_cnt == 10`) ...
const BUSY_WARN_FIRST: u32 = 10;
/// ... then every 100th (`flush_cnt % 100 == 0`) ...
const BUSY_WARN_EVERY: u32 = 100;
/// ... up to the 1000th (`flush_cnt <= 1000`), where the kernel falls silent.
const BUSY_WARN_KERNEL_LAST: u32 = 1000;
/// cmwq's extension: after that, every 1000th for as long as it lasts, so that a drain or
/// destroy that never ends never goes quiet.
const BUSY_WARN_EVERY_AFTER: u32 = 1000;

/// Whether a drain or destroy still busy after `tries` rounds warns now (the cadence above).
pub(crate) fn busy_warning_due(tries: u32) -> bool {
    tries == BUSY_WARN_FIRST
        || (tries % BUSY_WARN_EVERY == 0 && tries <= BUSY_WARN_KERNEL_LAST)
        || tries % BUSY_WARN_EVERY_AFTER == 0
}

/// A runtime's warning handler; the default (`None`) prints on stderr.
#[derive(Clone, Default)]
pub(crate) struct WarningHandler(pub(crate) Option<Arc<HandlerFn>>);

impl fmt::Debug for WarningHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "WarningHandler(custom)" } else { "WarningHandler(stderr)" })
    }
}

impl WarningHandler {
    /// Hands `w` to the handler. No lock of cmwq may be held.
    pub(crate) fn emit(&self, w: &Warning<'_>) {
        match &self.0 {
            Some(h) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(w))).is_err() {
                    eprintln!("cmwq: the warning handler panicked on: {}", w.message);
                }
            }
            None => eprintln!("cmwq: WARNING: {}", w.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::busy_warning_due;

    #[test]
    fn busy_warnings_follow_the_kernel_then_every_thousand() {
        let due: Vec<u32> = (1..=5000).filter(|&t| busy_warning_due(t)).collect();
        let mut want = vec![10];
        want.extend((1..=10).map(|i| i * 100));
        want.extend((2..=5).map(|i| i * 1000));
        assert_eq!(due, want);
    }
}
