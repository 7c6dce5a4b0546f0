//! What every pool of a runtime shares: the knobs ([`Config`]), the clock, the spawner, the
//! timer service and the monitor ([`Env`]). Fixed when the runtime is built.

use crate::clock::Clock;
use crate::monitor::Monitor;
use crate::spawn::Spawner;
use crate::sync::{Arc, AtomicU32};
use crate::timer::TimerService;
use std::time::Duration;

/// The knobs of a runtime. I: fixed at build.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Number of modelled CPUs (per-CPU pool pairs).
    pub(crate) nr_cpus: usize,
    /// Pin per-CPU workers to their CPU.
    pub(crate) pin_workers: bool,
    pub(crate) idle_timeout: Duration,
    pub(crate) create_cooldown: Duration,
    pub(crate) cpu_intensive_thresh: Duration,
    pub(crate) cm_tick: Duration,
    pub(crate) cm_min_tick: Duration,
    pub(crate) worker_stack_size: Option<usize>,
    pub(crate) mayday_initial_timeout: Duration,
    pub(crate) mayday_interval: Duration,
    pub(crate) rescuer_algorithm: RescuerAlgorithm,
    /// The blocking detector asked for (`RuntimeBuilder::detector`); `None`: `CMWQ_DETECTOR`,
    /// else `switch` where the kernel allows it.
    pub(crate) detector: Option<crate::monitor::Detector>,
    /// Where warnings go (default: stderr).
    pub(crate) warning_handler: crate::warn::WarningHandler,
    /// The bug a shuttle twin test planted in this runtime (`sync::plant`).
    #[cfg(shuttle)]
    pub(crate) plant: Option<crate::sync::plant::Bug>,
}

impl Config {
    /// Whether `bug` is planted in this runtime (`sync::plant`; shuttle builds only).
    #[cfg(shuttle)]
    pub(crate) fn planted(&self, bug: crate::sync::plant::Bug) -> bool {
        self.plant == Some(bug)
    }
}

/// What every pool of a runtime shares: knobs, clock, spawner, timer service, monitor.
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) config: Config,
    pub(crate) clock: Clock,
    pub(crate) spawner: Arc<dyn Spawner>,
    pub(crate) timers: TimerService,
    pub(crate) monitor: Monitor,
    /// Pools that have reported a failed worker creation on stderr (at most
    /// `MAX_CREATE_FAILURE_REPORTS`). Relaxed: a counter of messages, ordering nothing.
    pub(crate) create_failure_reports: AtomicU32,
}

/// Which rescuer algorithm a runtime's rescuers run: the 2025-26 one, or two older ones kept
/// only to measure the difference (S1, S2), hidden from the documented API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
#[doc(hidden)]
pub enum RescuerAlgorithm {
    /// The v7.0 algorithm (default): one item at a time behind a cursor, a batch limit while
    /// others wait, extra items while the manager still struggles.
    #[default]
    Cursor,
    /// Like `Cursor`, but every scan starts from the head of the worklist (the quadratic
    /// variant the cursor was introduced to avoid; for measurements only).
    RescanFromHead,
    /// The pre-2025 rescuer: take every matching item into the rescuer at once and run them
    /// all; requeue the pwq if it still needs help (for measurements only).
    Legacy,
}
