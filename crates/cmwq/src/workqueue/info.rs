//! The pool side's view of a workqueue ([`WqInfo`]): what its pwqs know of it, and where
//! their events go (`pool::PwqOwner`): flush colours completing, a pwq emptying (a destroyer
//! waits for that), a retired pwq to release, a mayday for its rescuer, a panic to report.

use super::delayed::DelayedTimer;
use super::{PanicHandler, WorkPanic, WqFlags, WqShared};
use crate::clock::Sleeper;
use crate::flush::FlushShared;
use crate::pool::{Pwq, PwqEvent, PwqOwner};
use crate::rescuer::Rescuer;
use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering, Weak};
use crate::work::Work;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;

/// An arming in `WqInfo::armed`: the timer's identity (`DelayedTimer::key`) and the
/// arming's generation.
type ArmedKey = (usize, u64);

/// What the pool side needs to know of a workqueue.
pub(crate) struct WqInfo {
    /// I: runtime-unique id.
    pub(crate) id: u32,
    /// I: the name.
    pub(crate) name: Arc<str>,
    /// I: flags.
    pub(crate) flags: WqFlags,
    /// Set once destruction starts (`__WQ_DESTROYING`); never cleared.
    pub(crate) destroying: AtomicBool,
    /// Drainers at work (`nr_drainers`); queueing from outside is refused while non-zero.
    pub(crate) nr_drainers: AtomicUsize,
    /// Woken when one of its pwqs has nothing in flight, while destroying.
    pub(crate) drained: Arc<Sleeper>,
    /// The pool side of the flush-colour machinery.
    pub(crate) flush: FlushShared,
    /// I: the panic handler (default: report on stderr).
    pub(crate) panic_handler: Option<PanicHandler>,
    /// I: the rescuer of a `mem_reclaim` workqueue.
    pub(crate) rescuer: Option<Arc<Rescuer>>,
    /// I: the workqueue itself, for a worker running one of its items (`Work::requeue`): weak,
    /// since the pwqs hold this info and the workqueue holds the pwqs. Upgraded for one call.
    pub(crate) shared: Weak<WqShared>,
    /// Delayed items whose timer is armed to queue them here, by timer identity and arming
    /// generation (an item that re-arms itself from its function is armed again before the
    /// callback that queued it forgets the previous arming: each is its own entry). A destroy
    /// queues them at once instead of leaving them behind. Here rather than in `WqShared`, so
    /// that a timer callback can forget its record after letting go of the workqueue (see
    /// [`WqInfo::forget_armed`]).
    pub(crate) armed: Mutex<HashMap<ArmedKey, (Arc<DelayedTimer>, Work)>>,
}

impl fmt::Debug for WqInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WqInfo").field("id", &self.id).field("name", &self.name).field("flags", &self.flags).finish()
    }
}

impl WqInfo {
    /// One of this workqueue's pwqs has nothing in flight any more. Pool lock held.
    fn pwq_drained(&self) {
        self.wake_destroyer();
    }

    /// Something a destroyer waits for went away (an item in flight, an armed timer): wake it.
    /// Called after the change, under the lock that guards it (the pool lock, the `armed`
    /// lock) or after releasing it: a destroyer that checked before the change sees
    /// `destroying` set here (it stored it before taking that lock), so it is woken; one that
    /// checks after sees the change.
    fn wake_destroyer(&self) {
        if self.destroying.load(Ordering::Acquire) {
            self.drained.notify();
        }
    }

    /// Forgets the arming `key` of a delayed item: its timer fired, was fired early, or was
    /// cancelled. Every removal from `armed` goes through here, so that a destroyer waiting
    /// for the map to empty is always woken (issue 9, bug 1: a removal that woke nobody, after
    /// the item's completion had already been consumed, left the destroyer waiting forever).
    ///
    /// A timer callback calls this only after dropping its reference to the `WqShared`: a
    /// destroyer that sees the map empty returns, and its caller may drop the last handles of
    /// the workqueue and of the runtime at once; had the timer thread still held the
    /// workqueue, the runtime's last reference would have gone on the timer thread, and its
    /// shutdown would have tried to join that thread from itself (found by tests/shuttle.rs).
    pub(super) fn forget_armed(&self, key: ArmedKey) {
        let removed = self.armed.lock().remove(&key);
        self.wake_destroyer();
        // The removed handles drop after the lock: a drop may run user destructors.
        drop(removed);
    }

    /// Hands a caught panic to the handler. No lock held.
    fn report_panic_now(&self, work: Option<&Work>, payload: Box<dyn Any + Send>) {
        let p = WorkPanic { workqueue: &self.name, work, payload: &*payload };
        match &self.panic_handler {
            Some(h) => {
                // A panicking handler must not take the worker down with it.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&p))).is_err() {
                    eprintln!("cmwq: the panic handler of workqueue {:?} panicked", self.name);
                }
            }
            None => {
                let what = work.map_or_else(|| "a spawned closure".to_string(), |w| format!("work item {:#x}", w.id()));
                eprintln!(
                    "cmwq: {what} on workqueue {:?} panicked: {}",
                    self.name,
                    p.message().unwrap_or("<non-string payload>")
                )
            }
        }
    }
}

impl PwqOwner for WqInfo {
    fn id(&self) -> u32 {
        self.id
    }

    fn name(&self) -> &Arc<str> {
        &self.name
    }

    fn mem_reclaim(&self) -> bool {
        self.flags.mem_reclaim
    }

    fn pwq_event(&self, ev: PwqEvent) {
        if ev.flushed {
            self.flush.pwq_flushed();
        }
        if ev.empty {
            self.pwq_drained();
        }
        if ev.release {
            // `pwq_release` runs on the timer service (the kernel's `pwq_release_worker`): it
            // takes the workqueue lock, which must not be taken under a pool lock.
            if let Some(wq) = self.shared.upgrade() {
                let env = wq.rt.shared().env.clone();
                let weak = self.shared.clone();
                env.timers.arm(env.clock.now(), move || {
                    if let Some(wq) = weak.upgrade() {
                        wq.release_retired();
                    }
                });
            }
        }
    }

    fn report_panic(&self, work: Option<&Work>, payload: Box<dyn Any + Send>) {
        self.report_panic_now(work, payload);
    }

    fn send_mayday(&self, pwq: Pwq) -> bool {
        self.rescuer.as_ref().is_some_and(|r| r.push_mayday(pwq))
    }

    fn on_mayday(&self, pwq: &Pwq) -> bool {
        self.rescuer.as_ref().is_some_and(|r| r.on_maydays(pwq))
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
