//! The timer service: one thread per runtime that fires callbacks at deadlines read from the
//! runtime's [`Clock`] (the kernel's timer wheel: idle timers, the create-retry timer, and later
//! delayed work, mayday timers and the watchdog).
//!
//! Callbacks run on the timer thread with no lock of the service held; they must be short and
//! must not block (the kernel runs timers in softirq context). Timers due at the same instant
//! fire in the order they were armed.

use crate::clock::{Clock, Sleeper};
use crate::sync::{Arc, Mutex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::time::Instant;

/// Names an armed timer, for cancelling it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TimerId(u64);

type Callback = Box<dyn FnOnce() + Send + 'static>;

/// The state behind the timer lock.
struct TimerLocked {
    /// Deadlines, earliest first; entries whose id is no longer in `callbacks` were cancelled.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Armed timers' callbacks by id.
    callbacks: HashMap<u64, Callback>,
    /// The next timer id.
    next_id: u64,
    /// Set at shutdown: the thread exits.
    stop: bool,
}

/// The timer service.
pub(crate) struct TimerService {
    clock: Clock,
    locked: Mutex<TimerLocked>,
    sleeper: Arc<Sleeper>,
}

impl fmt::Debug for TimerService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.locked.lock();
        f.debug_struct("TimerService").field("armed", &l.callbacks.len()).finish()
    }
}

impl TimerService {
    pub(crate) fn new(clock: Clock) -> TimerService {
        TimerService {
            clock,
            locked: Mutex::new(TimerLocked {
                heap: BinaryHeap::new(),
                callbacks: HashMap::new(),
                next_id: 0,
                stop: false,
            }),
            sleeper: Sleeper::new(),
        }
    }

    /// Arms a timer that calls `f` once the clock reaches `at`.
    pub(crate) fn arm(&self, at: Instant, f: impl FnOnce() + Send + 'static) -> TimerId {
        let mut l = self.locked.lock();
        let id = l.next_id;
        l.next_id += 1;
        let earliest = l.heap.peek().is_none_or(|Reverse((t, _))| at < *t);
        l.heap.push(Reverse((at, id)));
        l.callbacks.insert(id, Box::new(f));
        drop(l);
        if earliest {
            self.sleeper.notify();
        }
        TimerId(id)
    }

    /// Arms a timer that calls `f` with `target` once the clock reaches `at`, if `target` still
    /// exists then: the timer holds it weakly, so an armed timer never keeps a pool (and its
    /// runtime) alive. Every pool timer (idle cull, creation retry, mayday) is armed here.
    pub(crate) fn arm_weak<T: Send + Sync + 'static>(
        &self,
        at: Instant,
        target: &Arc<T>,
        f: impl FnOnce(&Arc<T>) + Send + 'static,
    ) -> TimerId {
        let weak = Arc::downgrade(target);
        self.arm(at, move || {
            if let Some(target) = weak.upgrade() {
                f(&target);
            }
        })
    }

    /// Cancels a timer. Returns `true` if it was armed and will now not fire.
    pub(crate) fn cancel(&self, id: TimerId) -> bool {
        // Bound, so the callback (and what it holds) is dropped after the lock is released.
        let removed = self.locked.lock().callbacks.remove(&id.0);
        removed.is_some()
    }

    pub(crate) fn stop(&self) {
        self.locked.lock().stop = true;
        self.sleeper.notify();
    }

    /// The timer thread's body.
    pub(crate) fn run(&self) {
        while let Some((fired, next)) = self.fire_due() {
            if fired == 0 {
                self.clock.wait_until(&self.sleeper, next);
            }
        }
    }

    /// One pass of the timer thread: takes every callback due on the clock (from then on
    /// `cancel` fails for them: they are firing) and calls them, without the lock. Returns how
    /// many it called and the next deadline, or `None` once stopped. The loom models call it
    /// as the timer thread's step.
    pub(crate) fn fire_due(&self) -> Option<(usize, Option<Instant>)> {
        let mut due: Vec<Callback> = Vec::new();
        let next = {
            let mut l = self.locked.lock();
            if l.stop {
                return None;
            }
            let now = self.clock.now();
            while let Some(Reverse((t, id))) = l.heap.peek().copied() {
                if !l.callbacks.contains_key(&id) {
                    l.heap.pop();
                    continue;
                }
                if t > now {
                    break;
                }
                l.heap.pop();
                due.extend(l.callbacks.remove(&id));
            }
            l.heap.peek().map(|Reverse((t, _))| *t)
        };
        let fired = due.len();
        for f in due {
            f();
        }
        Some((fired, next))
    }
}
