//! Errors returned where the input can be wrong: names, attributes, CPU numbers, destroyed
//! workqueues, and thread creation when the kernel would fail too (an unbound pool's first
//! worker).

use std::{fmt, io};

/// Why a cmwq call was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A workqueue name must be 1..=31 bytes (`WQ_NAME_LEN` is 32 with the NUL).
    InvalidName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A CPU number at or beyond the runtime's CPU count.
    InvalidCpu {
        /// The refused CPU number.
        cpu: usize,
        /// How many CPUs the runtime models.
        nr_cpus: usize,
    },
    /// A runtime must model 1 to `MAX_CPUS` (8192, the kernel's largest `NR_CPUS`) CPUs.
    InvalidCpuCount {
        /// The refused count.
        cpus: usize,
        /// The largest count allowed ([`MAX_CPUS`](crate::MAX_CPUS)).
        max: usize,
    },
    /// Attributes that cannot go together (for example `ordered` with `highpri` on a per-CPU
    /// queue, or `max_active` on an ordered queue).
    InvalidAttrs(&'static str),
    /// The item is disabled (`Work::disable`) and cannot be queued.
    Disabled,
    /// The workqueue is being drained and accepts new work only from its own items.
    Draining {
        /// The workqueue's name.
        name: String,
    },
    /// The workqueue is being destroyed and accepts new work only from its own items.
    Destroyed {
        /// The workqueue's name.
        name: String,
    },
    /// `Work::requeue` or `DelayedWork::requeue` was called outside a work function: there is
    /// no workqueue of the item the caller runs to queue on.
    NotInWorker,
    /// `Workqueue::flush` or `drain` called from one of that workqueue's own items: it would
    /// wait for the calling item itself (the kernel's lockdep reports this deadlock), so it
    /// returned at once without waiting.
    FlushFromOwnItem {
        /// The workqueue's name.
        name: String,
        /// What was called: `"flush"` or `"drain"`.
        op: &'static str,
        /// The calling item, as `name (id)`.
        item: String,
    },
    /// A thread the operation needs could not be created.
    Spawn(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => {
                write!(f, "invalid workqueue name {name:?}: {reason}")
            }
            Error::InvalidCpu { cpu, nr_cpus } => {
                write!(f, "CPU {cpu} does not exist (the runtime has CPUs 0..{nr_cpus})")
            }
            Error::InvalidCpuCount { cpus, max } => {
                write!(f, "a runtime models 1 to {max} CPUs (the kernel's largest NR_CPUS), not {cpus}")
            }
            Error::InvalidAttrs(why) => write!(f, "invalid workqueue attributes: {why}"),
            Error::Disabled => write!(f, "the work item is disabled"),
            Error::Draining { name } => write!(f, "workqueue {name:?} is being drained"),
            Error::Destroyed { name } => write!(f, "workqueue {name:?} is being destroyed"),
            Error::NotInWorker => {
                write!(f, "requeue called outside a work function (it queues on the workqueue of the running item)")
            }
            Error::FlushFromOwnItem { name, op, item } => write!(
                f,
                "{op} of workqueue {name:?} from its own item {item} would wait for that item itself: \
                 not waiting"
            ),
            Error::Spawn(e) => write!(f, "could not create a thread: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn(e) => Some(e),
            _ => None,
        }
    }
}
