//! The clock every timeout reads, and the one way a cmwq thread waits with a deadline.
//!
//! A [`Clock`] is either the real monotonic clock or a [`ManualClock`] that only moves when a
//! test calls [`ManualClock::advance`]. Internal threads never call `thread::sleep` or a timed
//! condvar wait directly: they wait on a [`Sleeper`] through [`Clock::wait_until`]. On the real
//! clock that is a timed condvar wait; on a manual clock it is an untimed wait that `advance`
//! interrupts, so timers, cooldowns and monitor ticks fire exactly when the test moves time and
//! never because the machine was slow.
//!
//! Every deadline is computed here ([`Clock::deadline_in`], [`add_saturating`]): any
//! `Duration` is accepted, and delays beyond [`MAX_DELAY`] are clamped to it, as the kernel
//! clamps them, so no `Instant + Duration` in cmwq can overflow and panic.

use crate::sync::{Arc, Condvar, Mutex, Weak};
use std::fmt;
use std::time::{Duration, Instant};

/// The longest delay cmwq waits for; longer ones (up to `Duration::MAX`) are clamped to it.
/// It is the kernel's `MAX_JIFFY_OFFSET` (`(LONG_MAX >> 1) - 1` jiffies, the value
/// `msecs_to_jiffies` clamps every delay to) at HZ=1000, as a `Duration`: about 146 million
/// years, "never" in practice, and small enough to add to any `Instant` the clock returns.
pub const MAX_DELAY: Duration = Duration::from_millis(((i64::MAX >> 1) - 1) as u64);

/// `t + d`, with `d` clamped to [`MAX_DELAY`] and, should the platform's `Instant` still not
/// reach that far, to the furthest instant it can (halving until the sum fits). Never panics.
pub(crate) fn add_saturating(t: Instant, d: Duration) -> Instant {
    let mut d = d.min(MAX_DELAY);
    loop {
        if let Some(at) = t.checked_add(d) {
            return at;
        }
        d /= 2;
    }
}

/// A monotonic clock: real, or driven by hand in tests. Cheap to clone.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<ClockInner>,
}

// Under the checkers a modelled `Mutex` is far larger than parking_lot's; one clock per runtime.
#[cfg_attr(any(loom, shuttle), allow(clippy::large_enum_variant))]
enum ClockInner {
    Real,
    Manual(ManualState),
}

struct ManualState {
    /// The instant the manual clock started at; `now = base + offset`.
    base: Instant,
    /// Guarded by its own lock: the offset and the sleepers to wake when it moves.
    locked: Mutex<ManualLocked>,
}

struct ManualLocked {
    /// How far the clock has been advanced.
    offset: Duration,
    /// Sleepers currently waiting on this clock (woken on every advance).
    sleepers: Vec<Weak<Sleeper>>,
}

impl Clock {
    /// The real monotonic clock (`Instant::now`).
    pub fn real() -> Clock {
        Clock { inner: Arc::new(ClockInner::Real) }
    }

    /// The current time on this clock.
    pub fn now(&self) -> Instant {
        match &*self.inner {
            #[allow(clippy::disallowed_methods)] // The one place the real clock is read.
            ClockInner::Real => Instant::now(),
            ClockInner::Manual(m) => add_saturating(m.base, m.locked.lock().offset),
        }
    }

    /// The instant `d` from now on this clock, saturating (see [`add_saturating`]).
    pub(crate) fn deadline_in(&self, d: Duration) -> Instant {
        add_saturating(self.now(), d)
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(&*self.inner, ClockInner::Manual(_))
    }

    /// Blocks until `deadline` (on this clock) has passed or `sleeper` is notified, whichever
    /// comes first; `None` waits for the notification only. Returns `true` if it was notified.
    pub(crate) fn wait_until(&self, sleeper: &Arc<Sleeper>, deadline: Option<Instant>) -> bool {
        let mut st = sleeper.state.lock();
        loop {
            if st.notified {
                st.notified = false;
                return true;
            }
            let now = self.now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            match &*self.inner {
                ClockInner::Real => match deadline {
                    Some(d) => {
                        sleeper.cv.wait_for(&mut st, d - now);
                    }
                    None => sleeper.cv.wait(&mut st),
                },
                ClockInner::Manual(m) => {
                    {
                        let mut ml = m.locked.lock();
                        if !ml.sleepers.iter().any(|w| w.as_ptr() == Arc::as_ptr(sleeper)) {
                            ml.sleepers.push(Arc::downgrade(sleeper));
                        }
                    }
                    // Re-check under the sleeper lock: an advance between `now()` above and the
                    // registration would otherwise be missed. `advance` bumps `ticks` under
                    // this same lock before notifying.
                    let seen = st.ticks;
                    if deadline.is_some_and(|d| self.now() >= d) {
                        return false;
                    }
                    while st.ticks == seen && !st.notified {
                        sleeper.cv.wait(&mut st);
                    }
                }
            }
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::real()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            ClockInner::Real => f.write_str("Clock::Real"),
            ClockInner::Manual(m) => write!(f, "Clock::Manual(+{:?})", m.locked.lock().offset),
        }
    }
}

/// A clock that moves only when told to: for deterministic tests of timers, cooldowns, idle
/// culling and the mayday timer. Cheap to clone; every clone is the same clock.
#[derive(Clone, Debug)]
pub struct ManualClock {
    clock: Clock,
}

impl ManualClock {
    /// A manual clock starting at the current real instant.
    pub fn new() -> ManualClock {
        let state = ManualState {
            #[allow(clippy::disallowed_methods)] // A manual clock starts at the real now.
            base: Instant::now(),
            locked: Mutex::new(ManualLocked {
                offset: Duration::ZERO,
                sleepers: Vec::new(),
            }),
        };
        ManualClock { clock: Clock { inner: Arc::new(ClockInner::Manual(state)) } }
    }

    /// The current manual time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Moves the clock forward by `d` and wakes every thread waiting on it, so that timers due
    /// by the new time fire. Any `Duration` is accepted: the clock stops [`MAX_DELAY`] after
    /// its start.
    pub fn advance(&self, d: Duration) {
        let ClockInner::Manual(m) = &*self.clock.inner else { unreachable!() };
        let sleepers: Vec<Arc<Sleeper>> = {
            let mut ml = m.locked.lock();
            ml.offset = ml.offset.saturating_add(d).min(MAX_DELAY);
            ml.sleepers.retain(|w| w.strong_count() > 0);
            ml.sleepers.iter().filter_map(Weak::upgrade).collect()
        };
        for s in sleepers {
            let mut st = s.state.lock();
            st.ticks = st.ticks.wrapping_add(1);
            s.cv.notify_all();
        }
    }

    /// This manual clock as a [`Clock`] to give to a runtime.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Clock {
        m.clock
    }
}

impl From<&ManualClock> for Clock {
    fn from(m: &ManualClock) -> Clock {
        m.clock.clone()
    }
}

/// What a thread waits on: notified explicitly, or by the clock's deadline.
#[derive(Debug, Default)]
pub(crate) struct Sleeper {
    state: Mutex<SleeperState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SleeperState {
    /// A pending notification (sticky until consumed by a wait).
    notified: bool,
    /// Bumped by every manual-clock advance.
    ticks: u64,
}

impl Sleeper {
    pub(crate) fn new() -> Arc<Sleeper> {
        Arc::new(Sleeper::default())
    }

    /// Wakes the waiter (or makes its next wait return at once).
    pub(crate) fn notify(&self) {
        let mut st = self.state.lock();
        st.notified = true;
        self.cv.notify_all();
    }
}
