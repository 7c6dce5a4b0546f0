//! Worker pools: one lock over a worklist shared by many workqueues, and the workers that run
//! it (kernel-notes §1.2, §4).
//!
//! Per-CPU pools (a normal and a highpri one per CPU, workers pinned to that CPU) are
//! *concurrency managed*: while one of their workers runs (counts in `nr_running`) a new item
//! waits; when none runs (all sleep, block, or were marked CPU-intensive) the pool wakes an
//! idle worker. Unbound pools are not managed: every worker carries `UNBOUND`, `nr_running`
//! stays 0, and any waiting item wakes a worker; only `max_active` bounds them.
//!
//! Invariant kept from the kernel: a worker only starts executing items when at least one
//! other worker is idle in reserve or a manager is active, so someone can always create the
//! next worker.
//!
//! Locking: everything mutable sits in [`PoolLocked`] (`pool::lock`), behind
//! [`WorkerPool::lock`] (the kernel's `pool->lock`, tag `L:`), private to this module: other
//! modules go through the methods of the [`PoolGuard`], which knows its pool. The lock is never
//! held while user code runs.
//!
//! Files: `lock` (the lock, its guard, the state it guards), `inbox` (queueing without the
//! lock), `entry` (list entries and how they move), `pwq` (pool-workqueues and their
//! transitions), `worker` (the worker thread), `concurrency` (`nr_running`, the hint),
//! `manager` (creation, cooldown, culling), `mayday` (calling rescuers), `rescue` (the pool
//! side of a rescuer's turn), `registry` (the process-wide pool table).

mod concurrency;
mod entry;
mod inbox;
mod lock;
mod manager;
mod mayday;
#[cfg(all(test, loom))]
mod model_hooks;
mod pwq;
mod registry;
mod rescue;
mod worker;

pub use concurrency::blocking;
pub(crate) use entry::Item;
pub(crate) use lock::{PoolGuard, PoolLocked};
pub(crate) use manager::create_worker;
pub(crate) use pwq::{Pwq, PwqEvent, PwqOwner, NR_COLORS};
pub(crate) use registry::lookup;
pub(crate) use worker::{current_worker, Sleeping};

use crate::clock::Sleeper;
use crate::env::Env;
use crate::introspect::{PendingEntry, PoolInfo};
use crate::sync::{Arc, AtomicUsize, Mutex};
use std::fmt;

/// Worker flags (kernel-notes §8). L.
pub(crate) mod flags {
    /// Told to exit (culled or shutting down).
    pub(crate) const DIE: u8 = 1 << 1;
    /// On the idle list.
    pub(crate) const IDLE: u8 = 1 << 2;
    /// Not working yet, or between batches.
    pub(crate) const PREP: u8 = 1 << 3;
    /// Marked as a CPU hog (or the workqueue is `cpu_intensive`).
    pub(crate) const CPU_INTENSIVE: u8 = 1 << 6;
    /// A worker of an unbound pool: never concurrency managed.
    pub(crate) const UNBOUND: u8 = 1 << 7;
    /// A rescuer attached to the pool (the kernel tells them by `worker->rescue_wq`). It keeps
    /// PREP for as long as it is attached, so it never counts as running.
    pub(crate) const RESCUER: u8 = 1 << 0;
    /// Flags that take a worker out of `nr_running` (`WORKER_NOT_RUNNING`).
    pub(crate) const NOT_RUNNING: u8 = PREP | CPU_INTENSIVE | UNBOUND;
}

/// A worker pool.
pub(crate) struct WorkerPool {
    /// I: pool id (index in the process-wide pool table; stored in work state words).
    id: u32,
    /// I: the CPU of a per-CPU pool, `None` for unbound pools.
    cpu: Option<usize>,
    /// I: a highpri pool.
    highpri: bool,
    /// I: the runtime's shared environment (clock, spawner, timers, monitor, knobs).
    env: Arc<Env>,
    /// The pool lock; taken through [`WorkerPool::lock`], which also moves the inbox.
    lock: Mutex<PoolLocked>,
    /// Items queued without the pool lock, not yet on its lists (see [`inbox`]).
    inbox: inbox::Inbox,
    /// What the manager waits on during the create cooldown (woken at shutdown).
    cooldown: Arc<Sleeper>,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("id", &self.id)
            .field("cpu", &self.cpu)
            .field("highpri", &self.highpri)
            .finish()
    }
}

impl WorkerPool {
    /// A new pool, registered in the process-wide pool table (which assigns its id).
    pub(crate) fn new(cpu: Option<usize>, highpri: bool, env: Arc<Env>) -> Arc<WorkerPool> {
        let running = Arc::new(AtomicUsize::new(0));
        registry::register(|id| WorkerPool {
            id,
            cpu,
            highpri,
            env,
            lock: Mutex::new(PoolLocked::new(running.clone())),
            inbox: inbox::Inbox::new(running),
            cooldown: Sleeper::new(),
        })
    }

    /// The pool's id (stored in work state words).
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// The CPU of a per-CPU pool, `None` for an unbound one.
    fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// A highpri pool.
    pub(crate) fn highpri(&self) -> bool {
        self.highpri
    }

    /// The runtime's environment this pool runs in.
    pub(crate) fn env(&self) -> &Arc<Env> {
        &self.env
    }

    /// Whether this pool is concurrency managed (per-CPU).
    pub(crate) fn is_cm(&self) -> bool {
        self.cpu.is_some()
    }

    /// Whether items wait in the inbox (not yet on the pool's lists).
    fn inbox_is_empty(&self) -> bool {
        self.inbox.is_empty()
    }

    /// A short name for messages: `0` or `0H` for per-CPU pools, `u3` for
    /// unbound ones.
    fn tag(&self) -> String {
        match self.cpu {
            Some(c) => format!("{c}{}", if self.highpri { "H" } else { "" }),
            None => format!("u{}", self.id),
        }
    }

    /// Marks the pool dying (runtime shutdown): every worker (not the rescuers, which belong
    /// to their workqueues) is told to exit once it finishes what it runs, and the manager's
    /// cooldown ends. Returns the worker threads to join.
    pub(crate) fn start_dying(self: &Arc<Self>) -> Vec<crate::sync::thread::JoinHandle<()>> {
        let mut handles = Vec::new();
        let mut g = self.lock();
        g.dying = true;
        let ids: Vec<usize> = g.workers.iter().map(|(id, _)| id).collect();
        for id in ids {
            if g.workers[id].flags & flags::RESCUER != 0 {
                continue;
            }
            g.mark_die(id);
            let w = &mut g.workers[id];
            w.unparker.unpark();
            handles.extend(w.handle.take());
        }
        handles.append(&mut g.exited);
        drop(g);
        self.cooldown.notify();
        handles
    }

    /// The worker threads of a dying pool not collected yet: a manager that was inside
    /// `Spawner::spawn` when the pool started dying registers its worker only afterwards.
    pub(crate) fn collect_threads(self: &Arc<Self>) -> Vec<crate::sync::thread::JoinHandle<()>> {
        let mut handles = Vec::new();
        let mut g = self.lock();
        for (_, w) in g.workers.iter_mut() {
            if w.flags & flags::RESCUER == 0 {
                if let Some(h) = w.handle.take() {
                    w.unparker.unpark();
                    handles.push(h);
                }
            }
        }
        handles.append(&mut g.exited);
        handles
    }
}

impl WorkerPool {
    /// A snapshot of the pool (`Runtime::pools`).
    pub(crate) fn info(self: &Arc<Self>) -> PoolInfo {
        let g = self.lock();
        let mut worklist = Vec::with_capacity(g.worklist.len());
        let mut cur = g.worklist.front();
        while let Some(idx) = cur {
            let e = g.nodes.get(idx);
            let workqueue = g.pwqs[e.pwq as usize].owner.name().clone();
            worklist.push(match &e.item {
                Item::Work(w) => PendingEntry::Work { workqueue, work: w.clone() },
                Item::Once(_) => PendingEntry::Spawned { workqueue },
                Item::Barrier(_) => PendingEntry::Barrier { workqueue },
                Item::Cursor => PendingEntry::Cursor { workqueue },
            });
            cur = g.worklist.next(&g.nodes, idx);
        }
        PoolInfo {
            id: self.id,
            cpu: self.cpu,
            highpri: self.highpri,
            nr_workers: g.nr_workers,
            nr_idle: g.idle_list.len(),
            nr_running: g.nr_running,
            nr_pending: worklist
                .iter()
                .filter(|e| matches!(e, PendingEntry::Work { .. } | PendingEntry::Spawned { .. }))
                .count(),
            manager_active: g.manager_active,
            mayday_timer_armed: g.mayday_timer.is_some(),
            idle_timer_armed: g.idle_timer_armed,
            worklist,
        }
    }
}
