//! Snapshots of the engine's state for tests, dumps and monitors (what `wq_dump.py` and
//! `show_one_workqueue` read in the kernel). Each snapshot is taken under the relevant pool
//! lock and copied out; it may be stale as soon as it is returned.

use crate::sync::Arc;
use crate::work::Work;
use crate::workqueue::Workqueue;

/// The state of one pool.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolInfo {
    /// Pool id.
    pub id: u32,
    /// The CPU of a per-CPU pool; `None` for unbound pools.
    pub cpu: Option<usize>,
    /// A highpri pool.
    pub highpri: bool,
    /// Workers alive (rescuers attached to the pool are not counted, as in the kernel).
    pub nr_workers: usize,
    /// Idle workers.
    pub nr_idle: usize,
    /// Workers counted as running (per-CPU pools).
    pub nr_running: usize,
    /// Items on the worklist: work items and spawned closures (not barriers or cursors).
    pub nr_pending: usize,
    /// A manager is active (`POOL_MANAGER_ACTIVE`).
    pub manager_active: bool,
    /// The mayday timer is armed (`pool->mayday_timer` pending): a manager is creating a
    /// worker, or a pool without workers waits for one.
    pub mayday_timer_armed: bool,
    /// The idle-cull timer is armed (`pool->idle_timer`).
    pub idle_timer_armed: bool,
    /// The worklist, head first: items, flush barriers and rescuer cursors.
    pub worklist: Vec<PendingEntry>,
}

/// One entry of a pool worklist.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PendingEntry {
    /// A work item of the named workqueue.
    Work {
        /// The workqueue's name.
        workqueue: Arc<str>,
        /// The item.
        work: Work,
    },
    /// A closure queued by `Workqueue::spawn`.
    Spawned {
        /// The workqueue's name.
        workqueue: Arc<str>,
    },
    /// A flush barrier (`BAR` in the kernel's dump).
    Barrier {
        /// The workqueue's name.
        workqueue: Arc<str>,
    },
    /// A rescuer cursor (`mayday_cursor_func` in the kernel's dump).
    Cursor {
        /// The workqueue's name.
        workqueue: Arc<str>,
    },
}

impl PendingEntry {
    /// Whether this is the work item `w`.
    pub fn is_work(&self, w: &Work) -> bool {
        matches!(self, PendingEntry::Work { work, .. } if work.ptr_eq(w))
    }

    /// Whether this is a rescuer cursor.
    pub fn is_cursor(&self) -> bool {
        matches!(self, PendingEntry::Cursor { .. })
    }
}

/// The state of one pool-workqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PwqInfo {
    /// The pool's id.
    pub pool: u32,
    /// The pool's CPU (per-CPU pools).
    pub cpu: Option<usize>,
    /// Items on the worklist or running (`nr_active`).
    pub nr_active: usize,
    /// Items waiting on the inactive list.
    pub nr_inactive: usize,
    /// Entries in flight, all colours (items and barriers).
    pub in_flight: u32,
    /// The flush colour new items get (it advances when a workqueue flush starts).
    pub work_color: u8,
    /// The colour a workqueue flush is waiting on in this pwq, if any.
    pub flush_color: Option<u8>,
    /// On the workqueue's mayday list.
    pub on_mayday: bool,
    /// References held by mayday-list entries.
    pub mayday_refs: u32,
    /// The rescuer cursor is linked on the worklist.
    pub cursor_linked: bool,
    /// Replaced by a newer pwq of its workqueue: it runs what it has, takes nothing new, and
    /// is released once empty.
    pub retired: bool,
}

impl Workqueue {
    /// A snapshot of each of this workqueue's pool-workqueues (retired ones that still drain
    /// last).
    pub fn pwqs(&self) -> Vec<PwqInfo> {
        let mut out = Vec::new();
        self.shared().for_each_pwq(|p| out.push(p.lock().pwq_info(p.slot())));
        out
    }

    /// Whether this workqueue has a rescuer (`mem_reclaim`).
    pub fn has_rescuer(&self) -> bool {
        self.shared().info.rescuer.is_some()
    }
}
