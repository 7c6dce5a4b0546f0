//! Helpers shared by cmwq's integration tests (`crates/cmwq/tests`, a dev-dependency) and its
//! benchmarks (`crates/cmwq-bench`), so that each exists once: deadlines and polling waits
//! ([`DEADLINE`], [`wait_for`], [`poll_until`]), a latch ([`Latch`]), a seeded generator
//! ([`SplitMix64`]), the calling thread's CPU clock and a CPU burner ([`thread_cpu_time`],
//! [`burn_cpu`]), this process's threads as `/proc/self/task` lists them ([`tasks`],
//! [`thread_exists`], [`count_threads`], [`threads_cpu_time`], [`thread_count`]), finders of a
//! runtime's pools in its introspection snapshot ([`cpu_pool`], [`unbound_pool`]), and an
//! allocation counter ([`count_allocations!`], [`allocations`]).
//!
//! Test-only helpers that the benchmarks do not need (deadline joins, watchdogs, ledgers,
//! counting spawners, the stuck-pool setup) stay in `crates/cmwq/tests/support`.
//!
//! Nothing here installs a global allocator by itself: a binary that counts allocations says
//! so with [`count_allocations!`], and a benchmark linking this crate keeps the system
//! allocator.

mod alloc;
mod cpu;
mod latch;
mod pools;
mod procfs;
mod rng;
mod wait;

pub use alloc::allocations;
pub use cpu::{burn_cpu, thread_cpu_time};
pub use latch::{Latch, OpenOnDrop};
pub use pools::{cpu_pool, unbound_pool};
pub use procfs::{count_threads, status_field, tasks, thread_count, thread_exists, threads_cpu_time, Task};
pub use rng::SplitMix64;
pub use wait::{poll_until, wait_for, wait_for_within, DEADLINE};

/// The allocator statistics crate that [`count_allocations!`] installs (re-exported so that a
/// binary using the macro needs no dependency of its own on it).
pub use stats_alloc;
