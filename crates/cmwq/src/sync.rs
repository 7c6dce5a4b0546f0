//! The sync facade: the only module that names a concrete synchronization library.
//!
//! Every other module imports its locks, atomics, parkers, thread-locals, `yield_now` and
//! thread builder from here, so that a model checker substitutes its own in one place
//! (spec/quality.md A11.2, the tokio `loom` module pattern):
//!
//! * normal builds: parking_lot's `Mutex`/`Condvar`, std atomics, crossbeam-utils' `Parker`,
//!   `std::thread`: plain re-exports, so the facade costs nothing;
//! * `RUSTFLAGS="--cfg loom"`: loom's primitives (loom explores every interleaving of the
//!   operations on them, within its preemption bound);
//! * `RUSTFLAGS="--cfg shuttle"`: shuttle's (randomized / PCT schedules of whole scenarios).
//!
//! Under either checker the lock types are thin wrappers that give loom's and shuttle's
//! std-shaped locks the parking_lot-shaped API the code uses (`lock()` returns the guard,
//! `Condvar::wait(&mut guard)`), and `Parker`/`Unparker` are built on the facade's own `Mutex`
//! and `Condvar`, so that parking is modelled too.
//!
//! Locks never poison: a panic in user code never happens while one of our locks is held (user
//! code always runs with every lock of ours released), so poisoning would only ever report our
//! own bugs, which `assert!`s already do.
//!
//! What the checkers do not model, on purpose:
//! * `Arc`/`Weak` are std's everywhere: loom 0.7's `Arc` has no `Weak`, no `downgrade` and no
//!   `new_cyclic`, which the pool registry, the runtime's workqueue list, the timers and the
//!   clock's sleepers rely on (shuttle re-exports std's `Arc` itself). What loom then does not
//!   track: reference-count changes are not scheduling points, and loom's end-of-execution
//!   leak check does not see our `Arc`s. Everything the `Arc`s point to (locks, atomics,
//!   condvars) is still modelled. Models check leaks themselves where it matters
//!   (`Arc::strong_count`).
//! * [`global`] holds the process-wide statics (the pool registry, the system workqueues,
//!   warning counters): they outlive one model execution, while a loom or shuttle object
//!   belongs to the execution that created it, so they are always the real primitives. Each is
//!   a leaf lock held for a few instructions with no facade operation inside, so under a
//!   checker it is never contended (a checker runs one modelled thread at a time).
//! * Time: loom's and shuttle's timed condvar waits never time out (`Condvar::wait_for` waits
//!   for a notification), so checker scenarios drive time through `ManualClock`.
//! * OS calls (`sys.rs`): shuttle runs every modelled thread on the test's one OS thread, so
//!   under `--cfg shuttle` the thread probes (CPU clocks, `/proc` states) are off, pinning and
//!   nice are no-ops, and the current CPU is the modelled thread's task id (`sys.rs` says
//!   what that changes: sleeps are never detected, only the `blocking` hint counts).
//! * [`plant`] (`--cfg shuttle` only): bugs a twin test plants in one runtime.
#![allow(clippy::disallowed_types, clippy::disallowed_methods, clippy::disallowed_macros)]

#[cfg(not(any(loom, shuttle)))]
mod imp {
    pub(crate) use crossbeam_utils::sync::{Parker, Unparker};
    pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard};
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

    /// An `Arc` that readers load without a lock and a writer replaces (RCU-like): the table
    /// of a workqueue's pwqs, read by every queueing. `arc-swap` in normal builds.
    pub(crate) struct ArcCell<T>(arc_swap::ArcSwap<T>);

    impl<T> ArcCell<T> {
        pub(crate) fn new(v: std::sync::Arc<T>) -> Self {
            ArcCell(arc_swap::ArcSwap::new(v))
        }
        /// A snapshot for a short read (cheap: no reference count is touched on the fast path).
        #[inline]
        pub(crate) fn load(&self) -> impl std::ops::Deref<Target = std::sync::Arc<T>> + '_ {
            self.0.load()
        }
        /// Replaces the value; readers that loaded the old one keep it until they drop it.
        #[cfg_attr(not(test), allow(dead_code))]
        pub(crate) fn store(&self, v: std::sync::Arc<T>) {
            self.0.store(v)
        }
    }

    /// Thread handles and `yield_now` come from std (the thread-locals: [`thread_local`]).
    pub(crate) mod thread {
        pub(crate) use std::thread::{available_parallelism, Builder, JoinHandle};

        /// `std::thread::yield_now`, named here so that clippy can refuse the direct call.
        #[inline]
        pub(crate) fn yield_now() {
            std::thread::yield_now()
        }
    }
}

#[cfg(any(loom, shuttle))]
mod imp {
    #[cfg(loom)]
    use loom as checker;
    #[cfg(all(shuttle, not(loom)))]
    use shuttle as checker;

    pub(crate) use checker::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

    /// What `ArcCell::load` gives under the checkers: the `Arc` it read.
    pub(crate) struct Snapshot<T>(std::sync::Arc<T>);

    impl<T> std::ops::Deref for Snapshot<T> {
        type Target = std::sync::Arc<T>;
        fn deref(&self) -> &std::sync::Arc<T> {
            &self.0
        }
    }

    /// `ArcCell` of the normal build, as a lock around the `Arc` (the checkers do not model
    /// `arc-swap`'s internals; what matters to the models is that a load sees one of the
    /// stored values).
    pub(crate) struct ArcCell<T>(checker::sync::Mutex<std::sync::Arc<T>>);

    impl<T> ArcCell<T> {
        pub(crate) fn new(v: std::sync::Arc<T>) -> Self {
            ArcCell(checker::sync::Mutex::new(v))
        }
        pub(crate) fn load(&self) -> Snapshot<T> {
            Snapshot(self.0.lock().expect("ArcCell lock").clone())
        }
        #[allow(dead_code)]
        pub(crate) fn store(&self, v: std::sync::Arc<T>) {
            *self.0.lock().expect("ArcCell lock") = v;
        }
    }
    use std::fmt;
    use std::ops::{Deref, DerefMut};
    use std::time::Duration;

    /// The checker's mutex with parking_lot's API: `lock` returns the guard, no poisoning.
    #[derive(Default)]
    pub(crate) struct Mutex<T>(checker::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(t: T) -> Mutex<T> {
            Mutex(checker::sync::Mutex::new(t))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(|e| e.into_inner())))
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            match self.0.try_lock() {
                Ok(g) => Some(MutexGuard(Some(g))),
                Err(std::sync::TryLockError::Poisoned(e)) => Some(MutexGuard(Some(e.into_inner()))),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        }

        /// A racy look at the lock word, as parking_lot's: here a `try_lock` that releases at
        /// once (the checkers have no peek), so the look is a scheduling point as the real
        /// load is a memory access.
        pub(crate) fn is_locked(&self) -> bool {
            self.try_lock().is_none()
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // Never locks: a Debug print must not become a scheduling point or block.
            f.write_str("Mutex { .. }")
        }
    }

    /// The checker's guard; `None` only while a [`Condvar`] wait holds it.
    pub(crate) struct MutexGuard<'a, T>(Option<checker::sync::MutexGuard<'a, T>>);

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard taken by a condvar wait")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard taken by a condvar wait")
        }
    }

    impl<T: fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(&**self, f)
        }
    }

    /// The checker's condvar with parking_lot's API (`wait(&mut guard)`).
    #[derive(Default)]
    pub(crate) struct Condvar(checker::sync::Condvar);

    /// Whether a timed wait timed out (under the checkers: never, see the module docs).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        #[allow(dead_code)] // parking_lot's API; the code ignores the answer today.
        fn timed_out(self) -> bool {
            self.0
        }
    }

    impl Condvar {
        pub(crate) fn wait<T>(&self, g: &mut MutexGuard<'_, T>) {
            let inner = g.0.take().expect("guard taken by a condvar wait");
            g.0 = Some(self.0.wait(inner).unwrap_or_else(|e| e.into_inner()));
        }

        /// Waits for a notification. The checkers do not model time: this never times out.
        pub(crate) fn wait_for<T>(&self, g: &mut MutexGuard<'_, T>, d: Duration) -> WaitTimeoutResult {
            let inner = g.0.take().expect("guard taken by a condvar wait");
            let (inner, r) = self.0.wait_timeout(inner, d).unwrap_or_else(|e| e.into_inner());
            g.0 = Some(inner);
            WaitTimeoutResult(r.timed_out())
        }

        fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    impl fmt::Debug for Condvar {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Condvar { .. }")
        }
    }

    /// The token and its condvar, shared by a [`Parker`] and its [`Unparker`]s.
    #[derive(Default)]
    struct ParkInner {
        /// The sticky token: set by `unpark`, consumed by `park`.
        token: Mutex<bool>,
        cv: Condvar,
    }

    /// crossbeam's `Parker` (sticky token) on the facade's `Mutex` and `Condvar`.
    pub(crate) struct Parker {
        unparker: Unparker,
    }

    impl Parker {
        pub(crate) fn new() -> Parker {
            Parker { unparker: Unparker(std::sync::Arc::new(ParkInner::default())) }
        }

        /// Blocks until the token is set, then consumes it.
        pub(crate) fn park(&self) {
            let inner = &self.unparker.0;
            let mut t = inner.token.lock();
            while !*t {
                inner.cv.wait(&mut t);
            }
            *t = false;
        }

        pub(crate) fn unparker(&self) -> &Unparker {
            &self.unparker
        }
    }

    impl fmt::Debug for Parker {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Parker { .. }")
        }
    }

    /// Sets the token of its [`Parker`] and wakes it.
    #[derive(Clone)]
    pub(crate) struct Unparker(std::sync::Arc<ParkInner>);

    impl Unparker {
        pub(crate) fn unpark(&self) {
            *self.0.token.lock() = true;
            self.0.cv.notify_one();
        }
    }

    impl fmt::Debug for Unparker {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Unparker { .. }")
        }
    }

    /// The checker's threads; `available_parallelism` is the host's (it only sizes the
    /// default runtime, which a model does not use).
    pub(crate) mod thread {
        pub(crate) use super::checker::thread::{yield_now, Builder, JoinHandle};
        pub(crate) use std::thread::available_parallelism;
    }
}

pub(crate) use imp::*;

/// Starts `body` on a new thread named `name` (the `Spawner`'s one place,
/// `ThreadSpawner`): std's `thread::Builder`, or the checker's.
pub(crate) fn spawn_thread(
    name: String,
    stack_size: Option<usize>,
    body: Box<dyn FnOnce() + Send + 'static>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let mut b = thread::Builder::new().name(name);
    if let Some(sz) = stack_size {
        b = b.stack_size(sz);
    }
    b.spawn(body)
}
pub(crate) use std::sync::{Arc, Weak};

/// Declares thread-locals: std's `thread_local!` in normal builds, the checker's under loom
/// or shuttle (whose modelled threads may share one OS thread, so std's would be shared).
/// Write initializers without `const { }` (the checkers' macros do not take it); normal builds
/// are given a `const` initializer all the same.
macro_rules! facade_thread_local {
    ($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(any(loom, shuttle)))]
        std::thread_local! { $(#[$attr])* static $name: $t = const { $init }; }
        #[cfg(loom)]
        loom::thread_local! { $(#[$attr])* static $name: $t = $init; }
        #[cfg(all(shuttle, not(loom)))]
        shuttle::thread_local! { $(#[$attr])* static $name: $t = $init; }
    };
}
pub(crate) use facade_thread_local as thread_local;

/// The real primitives in every build (see the module docs), for what outlives a model
/// execution or crosses the public API: process-wide statics, and the public fault switch
/// `FailMode::While` (a user's flag, so its type must not change with the cfg).
pub(crate) mod global {
    pub(crate) use parking_lot::Mutex;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64};
    pub(crate) use std::sync::OnceLock;
}

/// Planted bugs for the loom models' twins (`loom_models`): a switch read at exactly one spot in
/// the real code, which a `#[should_panic]` twin sets to show that its model catches what it
/// claims. Only under loom: normal builds have no switch and no read.
///
/// The switch belongs to the test's OS thread: loom runs every modelled thread as a coroutine
/// on the thread that called `loom::model`, so all of them see it, and tests running in
/// parallel on other threads do not. (A table keyed by the OS thread rather than std's
/// `thread_local!`, which clippy's `disallowed_macros` cannot be told to accept here.)
#[cfg(loom)]
pub(crate) mod plant {
    use std::thread::{self, ThreadId};

    /// The bugs that can be planted, each read at one spot.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Bug {
        /// `PoolGuard::drop` (inbox step 2) returns after unlocking without its second look.
        InboxNoSecondLook,
        /// `WorkerPool::submit` (inbox step 3) leaves out its `SeqCst` fence.
        InboxQueuerNoFence,
        /// `WorkState::try_claim_pending` is a load and a store instead of one RMW.
        ClaimNotAtomic,
        /// `steal_queued` (cancel) leaves out its re-check, under the pool lock, that the item
        /// is still queued there.
        CancelStealUnchecked,
        /// `grab_pending` takes an item in transit (PENDING held by a queuer or a firing
        /// timer, not yet on a list) as stolen instead of waiting for it to land.
        GrabInTransitAsStolen,
        /// `DelayedTimer::fire_now` returns at once when the timer is firing instead of
        /// waiting for the callback to queue the item.
        FireNowNoWait,
        /// `worker_thread` drops the pool lock before entering the idle list, then retakes it.
        WorkerIdleAfterUnlock,
        /// `dec_nr_in_flight` frees an active slot without promoting the first inactive item.
        ActiveNoPromotion,
        /// `dec_nr_in_flight` takes an inactive entry leaving (a cancelled inactive item) for
        /// an active one: it frees an active slot the entry never held.
        InactiveCountedActive,
        /// `prep_pwqs` arms the pwqs without the flusher's own reference on
        /// `nr_pwqs_to_flush`, so the count can reach zero while later pwqs are unarmed.
        FlushNoArmingBias,
        /// `prep_pwqs` leaves the pwqs' work colour as it was: items queued after the flush
        /// get the colour being flushed.
        FlushColourNotAdvanced,
        /// `send_mayday` wakes the rescuer when it finds the pwq not on the mayday list, then
        /// puts it there (the wake-up comes before the pwq is on the list).
        MaydayWakeBeforeQueue,
        /// `send_mayday` leaves out its check that the pwq is on the mayday list already.
        MaydayNoDedup,
        /// `rescuer_thread` samples the stop request after emptying the mayday list instead
        /// of before.
        RescuerStopSampledLate,
    }

    /// The planted bug of each OS thread that has one.
    static PLANTED: std::sync::Mutex<Vec<(ThreadId, Bug)>> = std::sync::Mutex::new(Vec::new());

    fn planted() -> std::sync::MutexGuard<'static, Vec<(ThreadId, Bug)>> {
        PLANTED.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `bug` is planted on this OS thread.
    pub(crate) fn is(bug: Bug) -> bool {
        let me = thread::current().id();
        planted().iter().any(|&(t, b)| t == me && b == bug)
    }

    /// Plants `bug` (or none) for the models run on this OS thread afterwards.
    #[cfg(test)]
    pub(crate) fn set(bug: Option<Bug>) {
        let me = thread::current().id();
        let mut p = planted();
        p.retain(|&(t, _)| t != me);
        p.extend(bug.map(|b| (me, b)));
    }
}

/// Planted bugs, compiled only under `--cfg shuttle`: a shuttle scenario's twin test builds its
/// runtime with [`RuntimeBuilder::plant`](crate::RuntimeBuilder::plant) to show that the
/// scenario catches the bug it claims to (tests/shuttle.rs). Each planted bug re-creates a fixed
/// one at the place of its fix; a normal build has neither the switch nor the checks. Unlike
/// the loom models' switch (above, per OS thread), this one is per runtime: a shuttle scenario
/// builds whole runtimes, and tests run in parallel.
#[cfg(shuttle)]
pub mod plant {
    /// A bug to plant in one runtime.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[non_exhaustive]
    pub enum Bug {
        /// Issue 9, bug 1 (fixed by 2499073): a delayed item's timer that fired, or was fired
        /// early, forgets its record in the workqueue's armed map without waking a destroyer
        /// (`workqueue/delayed.rs`, `forget_after_queueing`).
        ArmedRemovalWakesNobody,
        /// The second lost wake-up fixed by 2499073: a destroyer that leaves does not hand the
        /// wake-up on to a concurrent destroyer (`WqShared::destroy`).
        DestroyerKeepsWakeUp,
    }
}
