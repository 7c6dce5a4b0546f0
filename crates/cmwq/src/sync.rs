//! The sync facade: the only module that names a concrete synchronization library.
//!
//! Every other module imports its locks, atomics and parkers from here, so that a model checker
//! (loom, shuttle) or a different lock implementation can be substituted in one place
//! (spec/quality.md A11.2). Locks never poison: a panic in user code never happens while one of
//! our locks is held (user code always runs with every lock of ours released), so poisoning
//! would only ever report our own bugs, which `assert!`s already do.

pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
pub(crate) use std::sync::{Arc, OnceLock, Weak};

/// A one-thread parker: `park` blocks until `unpark` is (or was) called; the token is sticky,
/// so a wake-up sent before the sleep is never lost.
pub(crate) use crossbeam_utils::sync::{Parker, Unparker};

/// Thread handles and the thread-local current-worker slot come from std.
pub(crate) mod thread {
    pub(crate) use std::thread::{available_parallelism, Builder, JoinHandle};
}
