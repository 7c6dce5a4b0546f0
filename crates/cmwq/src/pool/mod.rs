//! Worker pools: one lock over a worklist shared by many workqueues, and the workers that run
//! it (spec §1.2, §4).
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
//! Locking: everything mutable sits in [`PoolLocked`], behind [`WorkerPool::lock`] (the
//! kernel's `pool->lock`, tag `L:`). It is never held while user code runs.

pub(crate) mod concurrency;
pub(crate) mod entry;
pub(crate) mod inbox;
pub(crate) mod manager;
pub(crate) mod mayday;
pub(crate) mod registry;
pub(crate) mod worker;

pub(crate) use entry::{Entry, Item, Loc};
pub(crate) use inbox::PoolGuard;

use crate::clock::Sleeper;
use crate::pwq::PwqLocked;
use crate::runtime::Env;
use crate::sync::{thread, Arc, AtomicUsize, Mutex, Unparker};
use crate::work::Work;
use crate::worklist::{List, Nodes};
use slab::Slab;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// Worker flags (spec §8). L.
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

/// Why a busy worker does not count as running although its flags say it could.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sleeping {
    /// It runs (or we have not noticed otherwise).
    No,
    /// Inside `cmwq::blocking` (the hint; acts at once, like `wq_worker_sleeping`).
    Hint,
    /// The monitor saw it sleeping (CPU clock stopped and state S or D).
    Seen,
}

/// What a busy worker runs. L.
#[derive(Debug)]
pub(crate) struct Current {
    /// The item's identity (the busy-table key), 0 for a one-shot closure (never an address,
    /// so it matches no item). The running worker holds a handle, so the address cannot be
    /// reused while it runs.
    pub(crate) work_id: usize,
    /// Its name for warnings (`Work::name`, or a fixed one for a one-shot closure).
    pub(crate) name: &'static str,
    /// Its pwq slot.
    pub(crate) pwq: u32,
    /// The flush colour it was queued with (a flush barrier behind it takes this colour).
    pub(crate) color: u8,
    /// Per-pool sequence number of this execution, so the monitor can tell items apart.
    pub(crate) seq: u64,
}

/// What the monitor remembers of a busy worker between ticks. L.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MonSample {
    /// The worker thread's total run time (ns) at the last sample, whatever it ran then. The
    /// CPU time between two samples goes to the item running at the second (tick sampling, as
    /// the kernel's `wq_worker_tick`), so none is lost when items change between samples.
    pub(crate) runtime: Option<u64>,
    /// The execution (`Current::seq`) `hog_base` belongs to.
    pub(crate) seq: u64,
    /// Run time when the item started or last woke (the kernel's `current_at`).
    pub(crate) hog_base: u64,
    /// Whether `hog_base` is valid for `seq`.
    pub(crate) hog_valid: bool,
}

/// A worker as its pool sees it. L: every field is guarded by the pool lock.
pub(crate) struct WorkerRec {
    /// Worker flags (`flags::*`).
    pub(crate) flags: u8,
    /// Whether the worker sleeps or blocks inside an item (see [`Sleeping`]).
    pub(crate) sleeping: Sleeping,
    /// Wakes the worker thread.
    pub(crate) unparker: Unparker,
    /// The item being run, if busy.
    pub(crate) current: Option<Current>,
    /// Entries assigned to this worker and not started yet, in the pool's node arena: the
    /// item it is about to run with its linked barriers, collisions punted to it while it runs
    /// the same item, and flush barriers for its current item (the kernel's
    /// `worker->scheduled`).
    pub(crate) scheduled: List,
    /// When the worker last became idle.
    pub(crate) last_active: Instant,
    /// The thread, for joining after it exits.
    pub(crate) handle: Option<thread::JoinHandle<()>>,
    /// Run-time probe of the worker's thread, for the monitor (None if /proc is unreadable).
    pub(crate) probe: Option<Arc<crate::sys::ThreadProbe>>,
    /// Monitor state.
    pub(crate) mon: MonSample,
}

impl WorkerRec {
    /// A worker record with these flags, not busy, not idle yet.
    pub(crate) fn new(flags: u8, unparker: Unparker, now: Instant) -> WorkerRec {
        WorkerRec {
            flags,
            sleeping: Sleeping::No,
            unparker,
            current: None,
            scheduled: List::default(),
            last_active: now,
            handle: None,
            probe: None,
            mon: MonSample::default(),
        }
    }
}

impl fmt::Debug for WorkerRec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerRec")
            .field("flags", &self.flags)
            .field("sleeping", &self.sleeping)
            .field("current", &self.current)
            .field("scheduled", &self.scheduled.len())
            .finish()
    }
}

/// A pool's mutable state: the kernel's fields tagged `L:`.
#[derive(Debug)]
pub(crate) struct PoolLocked {
    /// Every list entry of this pool (worklist and inactive lists).
    pub(crate) nodes: Nodes<Entry>,
    /// Items ready to run, FIFO, all workqueues mixed.
    pub(crate) worklist: List,
    /// The pool-workqueues feeding this pool.
    pub(crate) pwqs: Slab<PwqLocked>,
    /// Workers attached to this pool (the slab key is the worker id).
    pub(crate) workers: Slab<WorkerRec>,
    /// Idle workers, LIFO: the last one went idle most recently.
    pub(crate) idle_list: Vec<usize>,
    /// Workers that count toward concurrency (per-CPU pools only).
    pub(crate) nr_running: usize,
    /// `nr_running`, published for queuers, who do not take the lock (`Inbox::running`):
    /// stored by `adjust_running`, the one transition that changes `nr_running`.
    pub(crate) nr_running_pub: Arc<AtomicUsize>,
    /// Workers alive (not told to die).
    pub(crate) nr_workers: usize,
    /// Busy workers by the item they run (work id → worker id); one-shot closures, which
    /// cannot collide, are not in it.
    pub(crate) busy: BusyTable,
    /// A worker is acting as manager (`POOL_MANAGER_ACTIVE`).
    pub(crate) manager_active: bool,
    /// The idle-cull timer is armed.
    pub(crate) idle_timer_armed: bool,
    /// The worker-creation retry timer is armed (pools that have no worker to manage them).
    pub(crate) create_timer_armed: bool,
    /// Bumped whenever the worklist makes progress (`last_progress_ts`: an item queued or
    /// activated onto an empty worklist, a worker starting a batch); a stall watchdog compares
    /// it between its checks. A counter costs no clock read on the hot path.
    pub(crate) progress: u64,
    /// Next execution sequence number.
    pub(crate) next_seq: u64,
    /// Threads of exited workers, to be joined outside the lock.
    pub(crate) exited: Vec<thread::JoinHandle<()>>,
    /// The runtime is shutting down: workers exit once idle.
    pub(crate) dying: bool,
    /// Creation failures seen (for logging once).
    pub(crate) create_failures: u64,
    /// The armed mayday timer, if any, and the generation it was armed with; the manager bumps
    /// the generation to delete it (a callback of an older generation does nothing).
    pub(crate) mayday_timer: Option<(crate::timer::TimerId, u64)>,
    /// The next mayday timer generation.
    pub(crate) mayday_gen: u64,
    /// Reused by the mayday timer to collect the pwqs it calls for.
    pub(crate) mayday_scratch: Vec<u32>,
    /// The worker to wake once the lock is released (`wake_after_unlock`).
    pub(crate) pending_wake: Option<(usize, Unparker)>,
    /// Reused by the inbox drain: the inbox is swapped into it, then moved onto the lists
    /// (empty between drains; kept for its capacity so that a drain allocates nothing).
    pub(crate) inbox_batch: inbox::Blocks,
}

/// A worker pool.
pub(crate) struct WorkerPool {
    /// I: pool id (index in the runtime's pool table; stored in work state words).
    pub(crate) id: u32,
    /// I: the CPU of a per-CPU pool, `None` for unbound pools.
    pub(crate) cpu: Option<usize>,
    /// I: a highpri pool.
    pub(crate) highpri: bool,
    /// I: the runtime's shared environment (clock, spawner, timers, monitor, knobs).
    pub(crate) env: Arc<Env>,
    /// The pool lock; taken through [`WorkerPool::lock`], which also moves the inbox.
    pub(crate) lock: Mutex<PoolLocked>,
    /// Items queued without the pool lock, not yet on its lists (see [`inbox`]).
    pub(crate) inbox: inbox::Inbox,
    /// What the manager waits on during the create cooldown (woken at shutdown).
    pub(crate) cooldown: Arc<Sleeper>,
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
            lock: Mutex::new(PoolLocked {
                nodes: Nodes::new(),
                worklist: List::default(),
                pwqs: Slab::new(),
                workers: Slab::new(),
                idle_list: Vec::new(),
                nr_running: 0,
                nr_running_pub: running.clone(),
                nr_workers: 0,
                busy: BusyTable::default(),
                manager_active: false,
                idle_timer_armed: false,
                create_timer_armed: false,
                progress: 0,
                next_seq: 0,
                exited: Vec::new(),
                dying: false,
                create_failures: 0,
                mayday_timer: None,
                mayday_gen: 0,
                mayday_scratch: Vec::new(),
                pending_wake: None,
                inbox_batch: inbox::Blocks::default(),
            }),
            inbox: inbox::Inbox::new(running),
            cooldown: Sleeper::new(),
        })
    }

    /// Whether this pool is concurrency managed (per-CPU).
    pub(crate) fn is_cm(&self) -> bool {
        self.cpu.is_some()
    }

    /// A short name for messages: `0` or `0H` for per-CPU pools, `u3` for
    /// unbound ones.
    pub(crate) fn tag(&self) -> String {
        match self.cpu {
            Some(c) => format!("{c}{}", if self.highpri { "H" } else { "" }),
            None => format!("u{}", self.id),
        }
    }

    /// Wakes an idle worker if the pool needs one (`kick_pool`). Returns whether it woke one.
    pub(crate) fn kick_pool(&self, g: &mut PoolLocked) -> bool {
        if !g.need_more_worker() {
            return false;
        }
        match g.idle_list.last() {
            Some(&id) => {
                g.wake_after_unlock(id);
                true
            }
            None => false,
        }
    }
}

impl PoolLocked {
    /// Wakes worker `id` once the pool lock is released (`PoolGuard`'s drop). Woken at once,
    /// the worker would often preempt the waker on its CPU only to find the lock still held and
    /// yield back (the kernel wakes under a spinlock with preemption off, which userspace
    /// cannot do). One wake-up is kept pending: repeated kicks within one lock hold pick the
    /// same idle worker, which stays on the idle list until it runs; a different one (rare)
    /// has the earlier one woken at once.
    pub(crate) fn wake_after_unlock(&mut self, id: usize) {
        if self.pending_wake.as_ref().is_some_and(|(w, _)| *w == id) {
            return;
        }
        let unparker = self.workers[id].unparker.clone();
        if let Some((_, earlier)) = self.pending_wake.replace((id, unparker)) {
            earlier.unpark();
        }
    }

    /// Some worker (or attached rescuer) is running an item.
    pub(crate) fn any_busy(&self) -> bool {
        self.workers.iter().any(|(_, w)| w.current.is_some())
    }

    /// Items wait and nobody runs (`need_more_worker`).
    pub(crate) fn need_more_worker(&self) -> bool {
        !self.worklist.is_empty() && self.nr_running == 0
    }

    /// An idle worker is in reserve (`may_start_working`).
    pub(crate) fn may_start_working(&self) -> bool {
        !self.idle_list.is_empty()
    }

    /// The current worker should take another item (`keep_working`).
    pub(crate) fn keep_working(&self) -> bool {
        !self.worklist.is_empty() && self.nr_running <= 1
    }

    /// Items wait, nobody runs, and nobody is idle (`need_to_create_worker`).
    pub(crate) fn need_to_create_worker(&self) -> bool {
        self.need_more_worker() && !self.may_start_working()
    }

    /// More idle workers than the kernel keeps (`too_many_workers`, ratio
    /// `MAX_IDLE_WORKERS_RATIO` = 4).
    pub(crate) fn too_many_workers(&self) -> bool {
        let idle = self.idle_list.len() + usize::from(self.manager_active);
        let busy = self.nr_workers.saturating_sub(idle);
        idle > 2 && (idle - 2) * MAX_IDLE_WORKERS_RATIO >= busy
    }

    /// The worker running `work`, if any (the busy-table lookup of `find_worker_executing_work`).
    pub(crate) fn find_worker_executing(&self, work: &Work) -> Option<usize> {
        let id = *self.busy.get(&work.id())?;
        let cur = self.workers[id].current.as_ref()?;
        (cur.work_id == work.id()).then_some(id)
    }
}

/// The busy table (`busy_hash`): work identity (an address) → worker id.
pub(crate) type BusyTable = HashMap<usize, usize, BuildHasherDefault<AddrHasher>>;

/// Hashes a work item's address: Fibonacci hashing of the pointer, with the low bits (always
/// zero from alignment) shifted out. SipHash would cost more than the rest of the lookup.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Keep at most one idle worker per four busy ones, plus two (`MAX_IDLE_WORKERS_RATIO`).
pub(crate) const MAX_IDLE_WORKERS_RATIO: usize = 4;
