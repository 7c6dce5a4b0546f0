//! Workqueue attributes and their builder (`alloc_workqueue` flags and `max_active`;
//! kernel-notes §1.2, §3.1, §8).

use super::{PanicHandler, WorkPanic, Workqueue, WqFlags};
use crate::error::Error;
use crate::runtime::Runtime;
use crate::sync::Arc;
use std::fmt;

/// The largest `max_active` (`WQ_MAX_ACTIVE`).
pub const WQ_MAX_ACTIVE: usize = 2048;
/// The `max_active` used when 0 is given (`WQ_DFL_ACTIVE` = `WQ_MAX_ACTIVE / 2`).
pub const WQ_DFL_ACTIVE: usize = WQ_MAX_ACTIVE / 2;
/// Longest name, in bytes (`WQ_NAME_LEN` = 32 with the NUL).
pub const WQ_NAME_LEN: usize = 31;

/// Builds a [`Workqueue`]: `Workqueue::builder(name)` on the global runtime, or
/// `runtime.workqueue(name)` on a private one.
///
/// # Names
///
/// A name is 1 to [`WQ_NAME_LEN`] (31) bytes of UTF-8 (the kernel's `WQ_NAME_LEN` is 32 with
/// the NUL), with at least one character that is not whitespace and no control character
/// (`char::is_control`: no newline, tab, escape or other C0/C1 code): it is printed in tables,
/// dumps, warnings and thread names (`kworker/R-<name>`). Any other name is refused by
/// [`WorkqueueBuilder::build`] with [`Error::InvalidName`]. Names need not be unique.
#[must_use = "a builder does nothing until .build()"]
pub struct WorkqueueBuilder {
    rt: Runtime,
    name: String,
    flags: WqFlags,
    max_active: usize,
    panic_handler: Option<PanicHandler>,
}

impl fmt::Debug for WorkqueueBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkqueueBuilder")
            .field("name", &self.name)
            .field("flags", &self.flags)
            .field("max_active", &self.max_active)
            .finish()
    }
}

impl WorkqueueBuilder {
    pub(crate) fn new(rt: Runtime, name: &str) -> WorkqueueBuilder {
        WorkqueueBuilder { rt, name: name.to_owned(), flags: WqFlags::default(), max_active: 0, panic_handler: None }
    }

    /// `WQ_UNBOUND`: items run in a shared unbound pool, not on the queueing CPU; no
    /// concurrency management, `max_active` is the only bound.
    pub fn unbound(mut self) -> Self {
        self.flags.unbound = true;
        self
    }

    /// `WQ_HIGHPRI`: items run in the highpri pools (separate workers; nice -20 where allowed).
    pub fn highpri(mut self) -> Self {
        self.flags.highpri = true;
        self
    }

    /// `WQ_CPU_INTENSIVE`: items do not count toward concurrency management once started.
    pub fn cpu_intensive(mut self) -> Self {
        self.flags.cpu_intensive = true;
        self
    }

    /// `WQ_MEM_RECLAIM`: the workqueue gets a rescuer thread (`kworker/R-<name>`), created now,
    /// so that every queued item runs even when no new worker thread can be created. Items
    /// that wait on each other must go on separate `mem_reclaim` workqueues: one rescuer runs
    /// one item at a time.
    pub fn mem_reclaim(mut self) -> Self {
        self.flags.mem_reclaim = true;
        self
    }

    /// `WQ_FREEZABLE`: [`Runtime::freeze`] stops this workqueue from starting items (they
    /// queue up) until [`Runtime::thaw`].
    pub fn freezable(mut self) -> Self {
        self.flags.freezable = true;
        self
    }

    /// Called with every panic caught in one of this workqueue's items, after the item's
    /// accounting is done (the default reports it on stderr). It runs on the worker with no
    /// lock held; if it panics itself, that is reported and ignored.
    pub fn panic_handler<F>(mut self, f: F) -> Self
    where
        F: Fn(&WorkPanic<'_>) + Send + Sync + 'static,
    {
        self.panic_handler = Some(Arc::new(f));
        self
    }

    /// At most `n` items of this workqueue run at once (per CPU for per-CPU workqueues).
    /// 0 means the default (`WQ_DFL_ACTIVE`, 1024); values above `WQ_MAX_ACTIVE` (2048) are
    /// clamped with a warning, as the kernel does.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n;
        self
    }

    /// An ordered workqueue (`alloc_ordered_workqueue`): unbound, one item at a time, in
    /// queueing order.
    pub fn ordered(mut self) -> Self {
        self.flags.ordered = true;
        self.flags.unbound = true;
        self
    }

    /// Creates the workqueue.
    ///
    /// Errors: a name that is not allowed (see [Names](WorkqueueBuilder#names)), `max_active` other than 0 or 1 on an ordered queue,
    /// or (unbound queues) no first worker could be created for a new pool.
    pub fn build(self) -> Result<Workqueue, Error> {
        validate_name(&self.name)?;
        let max_active = if self.flags.ordered {
            if self.max_active > 1 {
                return Err(Error::InvalidAttrs(
                    "an ordered workqueue runs one item at a time: max_active must be 0 or 1",
                ));
            }
            1
        } else {
            clamp_max_active(&self.name, self.max_active)
        };
        Workqueue::create(self.rt, self.name, self.flags, max_active, self.panic_handler)
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > WQ_NAME_LEN {
        "it is longer than 31 bytes (WQ_NAME_LEN)"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else if name.chars().all(char::is_whitespace) {
        "it is only whitespace"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { name: name.to_owned(), reason })
}

/// `wq_clamp_max_active`: 0 → default; above the maximum → clamped with a warning.
fn clamp_max_active(name: &str, n: usize) -> usize {
    match n {
        0 => WQ_DFL_ACTIVE,
        n if n > WQ_MAX_ACTIVE => {
            eprintln!("cmwq: workqueue {name:?}: max_active {n} requested, using the maximum {WQ_MAX_ACTIVE}");
            WQ_MAX_ACTIVE
        }
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_max_active() {
        assert!(validate_name("events").is_ok());
        assert!(matches!(validate_name(""), Err(Error::InvalidName { .. })));
        assert!(matches!(validate_name(&"x".repeat(32)), Err(Error::InvalidName { .. })));
        assert!(validate_name(&"x".repeat(31)).is_ok());
        for bad in [" ", "   ", "\u{3000}", "a\tb", "a\nb", "\u{1b}[31m", "a\u{85}b", "nul\0"] {
            assert!(matches!(validate_name(bad), Err(Error::InvalidName { .. })), "{bad:?} accepted");
        }
        assert!(validate_name("kblockd wb-1 é").is_ok());
        assert_eq!(clamp_max_active("t", 0), WQ_DFL_ACTIVE);
        assert_eq!(clamp_max_active("t", 5), 5);
        assert_eq!(clamp_max_active("t", 100_000), WQ_MAX_ACTIVE);
    }
}
