//! The rescuer: forward progress for `mem_reclaim` workqueues when no worker can be created
//! (kernel-notes §5, the 2025-26 series; docs/design.md §11).
//!
//! Each `mem_reclaim` workqueue has one rescuer thread (`kworker/R-<name>`), created with the
//! workqueue, never counted as running. Pools that cannot get a worker put the workqueue's
//! pwqs on its mayday list (`pool::mayday`); the rescuer loop (kernel-notes §5.7):
//!
//! ```text
//! loop:
//!   stop := should_stop                      (sampled before the list is emptied)
//!   while a pwq can be taken off the mayday list:
//!     attach to its pool (CPU affinity of the pool; a worker record, PREP forever)
//!     count := 0
//!     while assign_one(pwq):                 (one item and its linked barriers)
//!       run the rescuer's scheduled list to completion
//!       count += 1
//!       if count > RESCUER_BATCH and other pwqs wait and pwq.nr_active > 0
//!          and the pool needs a worker: send_mayday(pwq) (tail), break
//!     if the cursor is linked and the pwq is not on the mayday list: unlink it
//!     kick the pool; detach; drop the mayday reference
//!   if stop: exit          (the list is empty)
//!   sleep until woken
//! ```
//!
//! `assign_one(pwq)` refuses when the pwq has nothing active, or when the pool no longer needs a
//! worker unless its manager is still busy creating one and no other pwq waits (the "extra
//! works" case); otherwise it scans the worklist from just after the pwq's cursor (or from the
//! head) for the first entry of this pwq that can be assigned to the rescuer, counts it in
//! `rescued`, and moves the cursor to just before the entry that followed it. Entries of other
//! pwqs are never touched (each workqueue is its own forward-progress domain); collisions (the
//! item runs on another worker) are punted to that worker and stepped over.
//!
//! Two older algorithms stay available behind [`RescuerAlgorithm`] so the change can be
//! measured: the pre-2025 one (take every matching item at once, run them all) and a
//! cursor-less one that rescans from the head for every item.

use crate::env::{Env, RescuerAlgorithm};
use crate::pool::Pwq;
use crate::spawn::{SpawnRequest, ThreadKind};
use crate::sync::{thread, Arc, AtomicBool, Mutex, Ordering, Parker, Unparker};
use std::collections::VecDeque;
use std::fmt;

/// Items per turn while other pwqs wait: the rescuer yields after more than this many, so
/// up to 17 (`RESCUER_BATCH`).
pub const RESCUER_BATCH: usize = 16;

/// The mayday list of one workqueue, behind its mayday lock (`wq_mayday_lock`, taken inside
/// pool locks).
#[derive(Debug, Default)]
struct MaydayLocked {
    /// Pwqs asking for help, FIFO; each at most once, each holding a reference.
    list: VecDeque<Pwq>,
}

impl MaydayLocked {
    fn contains(&self, pwq: &Pwq) -> bool {
        self.list.iter().any(|p| p.same(pwq))
    }
}

/// A workqueue's rescuer, as the pool side and the workqueue see it.
pub(crate) struct Rescuer {
    /// The mayday list.
    maydays: Mutex<MaydayLocked>,
    /// Wakes the rescuer thread.
    unparker: Unparker,
    /// Set by destroy (`kthread_stop`).
    stop: AtomicBool,
    /// I: which algorithm it runs.
    algorithm: RescuerAlgorithm,
    /// The thread, joined by `stop`.
    handle: Mutex<Option<thread::JoinHandle<()>>>,
}

impl fmt::Debug for Rescuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rescuer").field("maydays", &self.maydays.lock().list.len()).finish()
    }
}

impl Rescuer {
    /// Creates the rescuer thread of workqueue `name` (`init_rescuer`).
    pub(crate) fn start(env: &Env, name: &str, nr_pwqs: usize) -> std::io::Result<Arc<Rescuer>> {
        let parker = Parker::new();
        let r = Arc::new(Rescuer {
            // Room for every pwq, so a mayday never allocates.
            maydays: Mutex::new(MaydayLocked { list: VecDeque::with_capacity(nr_pwqs + 1) }),
            unparker: parker.unparker().clone(),
            stop: AtomicBool::new(false),
            algorithm: env.config.rescuer_algorithm,
            handle: Mutex::new(None),
        });
        let r2 = r.clone();
        let h = env.spawner.spawn(SpawnRequest {
            name: format!("kworker/R-{name}"),
            kind: ThreadKind::Rescuer,
            stack_size: env.config.worker_stack_size,
            body: Box::new(move || {
                crate::sys::set_current_nice(crate::sys::HIGH_NICE);
                rescuer_thread(&r2, &parker)
            }),
        })?;
        *r.handle.lock() = Some(h);
        Ok(r)
    }

    fn wake(&self) {
        self.unparker.unpark();
    }

    /// Stops the rescuer after it has emptied its mayday list, and joins it (`kthread_stop`).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(h) = self.handle.lock().take() {
            let _ = h.join();
        }
    }

    fn maydays_empty(&self) -> bool {
        self.maydays.lock().list.is_empty()
    }

    /// Whether `pwq` is on the mayday list.
    pub(crate) fn on_maydays(&self, pwq: &Pwq) -> bool {
        self.maydays.lock().contains(pwq)
    }

    /// Puts `pwq` on the mayday list if it is not there yet and wakes the rescuer (the list
    /// half of `send_mayday`). Returns whether it was added (the caller then takes the pwq's
    /// mayday reference). Pool lock held; takes the mayday lock inside it.
    pub(crate) fn push_mayday(&self, pwq: Pwq) -> bool {
        #[cfg(loom)]
        let wake_first = crate::sync::plant::is(crate::sync::plant::Bug::MaydayWakeBeforeQueue);
        #[cfg(not(loom))]
        let wake_first = false;
        if wake_first && !self.on_maydays(&pwq) {
            self.wake();
        }
        let mut m = self.maydays.lock();
        #[cfg(loom)]
        let dedup = !crate::sync::plant::is(crate::sync::plant::Bug::MaydayNoDedup);
        #[cfg(not(loom))]
        let dedup = true;
        if dedup && m.contains(&pwq) {
            return false;
        }
        m.list.push_back(pwq);
        drop(m);
        // After queueing: a rescuer woken earlier could find the list empty and park again.
        if !wake_first {
            self.wake();
        }
        true
    }
}

/// The rescuer thread (`rescuer_thread`).
fn rescuer_thread(r: &Arc<Rescuer>, parker: &Parker) {
    loop {
        // Sampled before the list is emptied: a stop requested meanwhile is seen next round.
        let should_stop = r.stop.load(Ordering::Acquire);
        loop {
            let Some(pwq) = r.maydays.lock().list.pop_front() else { break };
            rescue_pwq(r, &pwq);
        }
        #[cfg(loom)]
        let should_stop = if crate::sync::plant::is(crate::sync::plant::Bug::RescuerStopSampledLate) {
            r.stop.load(Ordering::Acquire)
        } else {
            should_stop
        };
        if should_stop {
            return;
        }
        parker.park();
    }
}

/// One turn on one pwq: attach, rescue, leave (the pool side is `pool::RescueTurn`).
fn rescue_pwq(r: &Arc<Rescuer>, pwq: &Pwq) {
    let mut turn = pwq.attach_rescuer(r.unparker.clone());
    match r.algorithm {
        RescuerAlgorithm::Legacy => {
            // Items that just ran may have activated more: do not make them wait for the timer.
            if turn.rescue_all_legacy() && turn.still_needed() {
                turn.requeue();
            }
        }
        algo => {
            let mut count = 0;
            while turn.rescue_one(algo == RescuerAlgorithm::RescanFromHead, || !r.maydays_empty()) {
                count += 1;
                if count > RESCUER_BATCH && !r.maydays_empty() && turn.still_needed() {
                    // Others wait: go to the back of the line, the cursor stays.
                    turn.requeue();
                    break;
                }
            }
        }
    }
    // The cursor cannot be left behind without the rescuer watching it.
    turn.finish(|| r.on_maydays(pwq));
}
