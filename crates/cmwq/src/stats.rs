//! Per-pwq counters (`enum pool_workqueue_stats`) and the per-workqueue sum returned by
//! [`Workqueue::stats`](crate::Workqueue::stats), in the columns of the kernel's
//! `wq_monitor.py`.
//!
//! The counters of one pwq live in that pwq's pool-locked state and are changed only under the
//! pool lock, as the kernel's are; summing them takes each pool lock briefly.

use std::time::Duration;

/// The counters of one pool-workqueue. L: guarded by the pool lock.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PwqStats {
    /// Items that started executing (`PWQ_STAT_STARTED`).
    pub(crate) started: u64,
    /// Items that finished, including those that panicked (`PWQ_STAT_COMPLETED`).
    pub(crate) completed: u64,
    /// CPU time of this pwq's items in nanoseconds, sampled by the monitor's tick
    /// (`PWQ_STAT_CPU_TIME`).
    pub(crate) cpu_time_ns: u64,
    /// Times an item ran over the CPU-intensive threshold (`PWQ_STAT_CPU_INTENSIVE`).
    pub(crate) cpu_intensive: u64,
    /// Concurrency-management wake-ups while running an item of this pwq (`PWQ_STAT_CM_WAKEUP`).
    pub(crate) cm_wakeup: u64,
    /// Items whose function panicked (cmwq's own counter; the kernel would oops).
    pub(crate) panicked: u64,
    /// Times the pwq was put on its workqueue's mayday list (`PWQ_STAT_MAYDAY`).
    pub(crate) mayday: u64,
    /// Items (heads of linked chains) the rescuer took (`PWQ_STAT_RESCUED`).
    pub(crate) rescued: u64,
    /// Worklist entries the rescuer examined while looking for this pwq's items (cmwq's own,
    /// for measuring the scan cost of the rescuer algorithms).
    pub(crate) rescuer_visits: u64,
}

/// A snapshot of a workqueue's counters, summed over its pool-workqueues.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WqStats {
    /// Items that started executing (wq_monitor `total`).
    pub started: u64,
    /// Items that finished (`infl` = started - completed).
    pub completed: u64,
    /// CPU time used by the items, sampled on the monitor's tick (wq_monitor `CPUtime`).
    pub cpu_time: Duration,
    /// Times an item was marked CPU-intensive for running over the threshold (`CPUitsv`).
    pub cpu_intensive: u64,
    /// Concurrency-management wake-ups: another worker started because this queue's running
    /// item slept, blocked or hogged the CPU (`CMW`).
    pub cm_wakeup: u64,
    /// Items whose function panicked.
    pub panicked: u64,
    /// Times a pool asked this workqueue's rescuer for help (`mayday`; mem_reclaim only).
    pub mayday: u64,
    /// Items run by the rescuer (`rescued`; mem_reclaim only).
    pub rescued: u64,
    /// Worklist entries the rescuer examined looking for this workqueue's items (the cost the
    /// 2025 cursor bounds; not a kernel counter).
    pub rescuer_visits: u64,
}

impl WqStats {
    /// Items started and not yet finished (wq_monitor `infl`).
    pub fn in_flight(&self) -> u64 {
        self.started - self.completed
    }

    pub(crate) fn add(&mut self, p: &PwqStats) {
        self.started += p.started;
        self.completed += p.completed;
        self.cpu_time += Duration::from_nanos(p.cpu_time_ns);
        self.cpu_intensive += p.cpu_intensive;
        self.cm_wakeup += p.cm_wakeup;
        self.panicked += p.panicked;
        self.mayday += p.mayday;
        self.rescued += p.rescued;
        self.rescuer_visits += p.rescuer_visits;
    }
}
