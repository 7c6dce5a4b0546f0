//! cmwq: the Linux kernel's concurrency-managed workqueue, in userspace Rust.
//!
//! Work items ([`Work`]) are queued on workqueues ([`Workqueue`]) and run by workers of shared
//! pools: per-CPU pools whose concurrency is managed (a new worker starts when the running one
//! sleeps or blocks, and no more run than needed), and unbound pools bounded by `max_active`.
//! The kernel's nouns are kept so every file maps onto `kernel/workqueue.c`; docs/design.md
//! explains the protocols.
//!
//! ```
//! use cmwq::{Runtime, Work};
//! let rt = Runtime::builder().cpus(2).build();
//! let wq = rt.workqueue("example").unbound().max_active(4).build()?;
//! let w = Work::new(|_w: &Work| { /* background work */ });
//! assert!(wq.queue(&w) || w.is_pending());
//! wq.spawn(|| println!("one-shot"));
//! # Ok::<(), cmwq::Error>(())
//! ```
//!
//! # Locking legend (as in workqueue.c)
//!
//! Field docs start with a tag naming what guards the field:
//! * `I:` set at creation, then read-only;
//! * `L:` the pool lock (`WorkerPool::lock`, the kernel's `pool->lock`);
//! * no tag on a `*Locked` struct's fields: the lock the struct is named after.
//!
//! No lock of cmwq is held while user code (a work function, or the drop of its closure) runs.

mod barrier;
mod clock;
mod completion;
mod debug;
mod env;
mod error;
mod flush;
mod introspect;
#[cfg(all(test, loom))]
mod loom_models;
mod monitor;
mod pool;
mod rescuer;
mod runtime;
mod spawn;
mod stats;
mod sync;
mod sys;
mod thread_budget;
mod timer;
mod warn;
mod work;
mod worklist;
mod workqueue;

pub use clock::{Clock, ManualClock, MAX_DELAY};
#[doc(hidden)]
pub use debug::flush_dependency_warnings;
#[doc(hidden)]
pub use env::RescuerAlgorithm;
pub use error::Error;
pub use introspect::{PendingEntry, PoolInfo, PwqInfo};
pub use monitor::Detector;
pub use pool::blocking;
pub use rescuer::RESCUER_BATCH;
pub use runtime::{
    Runtime, RuntimeBuilder, CM_MIN_TICK, CM_TICK, CPU_INTENSIVE_THRESH, CREATE_COOLDOWN, IDLE_WORKER_TIMEOUT,
    MAX_CPUS, MAYDAY_INITIAL_TIMEOUT, MAYDAY_INTERVAL,
};
pub use spawn::{FailMode, FailingSpawner, SpawnRequest, Spawner, ThreadHandle, ThreadKind, ThreadSpawner};
pub use stats::WqStats;
#[cfg(shuttle)]
#[doc(hidden)]
pub use sync::plant;
pub use warn::{Warning, WarningKind, MAX_NAMED};
pub use work::Work;
pub use workqueue::builder::{WQ_DFL_ACTIVE, WQ_MAX_ACTIVE, WQ_NAME_LEN};
pub use workqueue::delayed::DelayedWork;
pub use workqueue::system::{system, system_highpri, system_long, system_unbound};
pub use workqueue::{WorkPanic, Workqueue, WorkqueueBuilder};

/// The README's Rust code blocks, compiled and run by `cargo test -p cmwq --doc` so that they
/// cannot rot (its `sh` blocks are not Rust and are skipped).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
