//! The work state word: one `AtomicU64` per work item, changed only by the named transitions
//! below (the kernel's `work->data`, kernel-notes §2.1).
//!
//! ```text
//!  63            32 31        16 15        2   1        0
//! +----------------+------------+-----------+--------+---------+
//! |  last pool id  | disable    |  (unused) | QUEUED | PENDING |
//! +----------------+------------+-----------+--------+---------+
//! ```
//!
//! * `PENDING` is the ownership token. Whoever sets it (a queuer, later a timer or a canceller)
//!   owns the item until it is on a pool list; the worker clears it just before calling the
//!   function, so the function may queue its own item again.
//! * `QUEUED` says the item sits on a list of the pool named by `last pool id` (the kernel's
//!   `WORK_STRUCT_PWQ`). It is set and cleared only under that pool's lock.
//! * `last pool id` is the pool the item was last queued on or ran in; the non-reentrancy
//!   redirect reads it (kernel-notes §2.3).
//! * `disable` is the disable depth (`WORK_OFFQ_DISABLE_BITS` = 16).
//!
//! Memory ordering: `try_claim_pending` is an `AcqRel` RMW and `release_for_run` a `Release`
//! store after which the worker's call happens; a queuer whose claim succeeds after the release
//! therefore sees everything the previous run wrote, and the next run sees everything written
//! before the successful claim (the kernel's "full barrier around clearing PENDING").

use crate::sync::{AtomicU64, Ordering};

/// The item is owned by a queue (or a timer, or a canceller).
const PENDING: u64 = 1 << 0;
/// The item is on a list of the pool named by the pool-id field.
const QUEUED: u64 = 1 << 1;
const DISABLE_SHIFT: u32 = 16;
const DISABLE_MASK: u64 = 0xffff << DISABLE_SHIFT;
const POOL_SHIFT: u32 = 32;
/// "No pool yet" (`WORK_OFFQ_POOL_NONE`).
pub(crate) const POOL_NONE: u32 = u32::MAX;

/// The maximum disable depth (`WORK_OFFQ_DISABLE_BITS` = 16).
pub(crate) const MAX_DISABLE: u64 = 0xffff;

/// One read of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(u64);

impl Snapshot {
    pub(crate) fn is_pending(self) -> bool {
        self.0 & PENDING != 0
    }
    pub(crate) fn is_queued(self) -> bool {
        self.0 & QUEUED != 0
    }
    pub(crate) fn disable_depth(self) -> u64 {
        (self.0 & DISABLE_MASK) >> DISABLE_SHIFT
    }
    /// The pool the item was last queued on or ran in, if any.
    pub(crate) fn last_pool(self) -> Option<u32> {
        let id = (self.0 >> POOL_SHIFT) as u32;
        (id != POOL_NONE).then_some(id)
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkState")
            .field("pending", &self.is_pending())
            .field("queued", &self.is_queued())
            .field("disable", &self.disable_depth())
            .field("last_pool", &self.last_pool())
            .finish()
    }
}

/// The atomic state word of one work item.
#[derive(Debug)]
pub(crate) struct WorkState(AtomicU64);

impl WorkState {
    pub(super) fn new() -> WorkState {
        WorkState(AtomicU64::new((POOL_NONE as u64) << POOL_SHIFT))
    }

    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.0.load(Ordering::Acquire))
    }

    /// Idle → owned: sets PENDING. Returns `false` (and changes nothing) when it was already
    /// set: the pending instance will run and covers this request. One atomic RMW.
    #[inline]
    pub(crate) fn try_claim_pending(&self) -> bool {
        #[cfg(loom)]
        if crate::sync::plant::is(crate::sync::plant::Bug::ClaimNotAtomic) {
            let s = self.0.load(Ordering::Acquire);
            if s & PENDING != 0 {
                return false;
            }
            self.0.store(s | PENDING, Ordering::Release);
            return true;
        }
        self.0.fetch_or(PENDING, Ordering::AcqRel) & PENDING == 0
    }

    /// Owned → idle without queueing (refused because disabled or destroyed): clears PENDING,
    /// keeping the pool id and the disable depth.
    pub(crate) fn release_claim(&self) {
        let prev = self.0.fetch_and(!PENDING, Ordering::AcqRel);
        assert!(prev & PENDING != 0 && prev & QUEUED == 0, "release_claim of an unowned item: {:?}", Snapshot(prev));
    }

    /// Owned, not queued: records `pool` as the pool the item is being queued on (it sits in
    /// that pool's inbox until a lock holder moves it; `pool::inbox`). No atomic RMW when the
    /// field already says so; nobody else writes the word while the caller owns PENDING.
    pub(crate) fn set_target(&self, pool: u32) {
        if self.load().last_pool() == Some(pool) {
            return;
        }
        let r = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            assert!(s & (PENDING | QUEUED) == PENDING, "set_target of an unowned item: {:?}", Snapshot(s));
            Some((s & !(u64::MAX << POOL_SHIFT)) | ((pool as u64) << POOL_SHIFT))
        });
        debug_assert!(r.is_ok());
    }

    /// Owned → queued on `pool`. Pool lock held.
    pub(crate) fn set_queued(&self, pool: u32) {
        let r = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            assert!(s & PENDING != 0, "set_queued without PENDING: {:?}", Snapshot(s));
            Some((s & DISABLE_MASK) | PENDING | QUEUED | ((pool as u64) << POOL_SHIFT))
        });
        debug_assert!(r.is_ok());
    }

    /// Queued → running: clears PENDING and QUEUED and records the pool the item runs in, just
    /// before the function is called (`set_work_pool_and_clear_pending`). From here on the item
    /// may be queued again. Pool lock held.
    pub(crate) fn release_for_run(&self, pool: u32) {
        let r = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            assert!(
                s & (PENDING | QUEUED) == PENDING | QUEUED,
                "release_for_run of an unqueued item: {:?}",
                Snapshot(s)
            );
            Some((s & DISABLE_MASK) | ((pool as u64) << POOL_SHIFT))
        });
        debug_assert!(r.is_ok());
    }

    /// Queued → owned (stolen by a canceller or re-armer, `try_to_grab_pending`): clears QUEUED,
    /// keeps PENDING. Pool lock held.
    pub(crate) fn steal_queued(&self) {
        let prev = self.0.fetch_and(!QUEUED, Ordering::AcqRel);
        assert!(prev & (PENDING | QUEUED) == PENDING | QUEUED, "steal of an unqueued item: {:?}", Snapshot(prev));
    }

    /// Owned: raise the disable depth. Returns false at the maximum depth.
    pub(crate) fn inc_disable(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let d = (s & DISABLE_MASK) >> DISABLE_SHIFT;
                (d < MAX_DISABLE).then_some(s + (1 << DISABLE_SHIFT))
            })
            .is_ok()
    }

    /// Owned: lower the disable depth. Returns the new depth, or `None` on underflow.
    pub(crate) fn dec_disable(&self) -> Option<u64> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let d = (s & DISABLE_MASK) >> DISABLE_SHIFT;
                (d > 0).then_some(s - (1 << DISABLE_SHIFT))
            })
            .ok()
            .map(|s| Snapshot(s).disable_depth() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_is_exclusive_and_release_keeps_pool() {
        let s = WorkState::new();
        assert!(s.load().last_pool().is_none());
        assert!(s.try_claim_pending());
        assert!(!s.try_claim_pending(), "second claim must fail while pending");
        s.set_queued(7);
        assert!(s.load().is_queued() && s.load().is_pending());
        s.release_for_run(7);
        let snap = s.load();
        assert!(!snap.is_pending() && !snap.is_queued());
        assert_eq!(snap.last_pool(), Some(7));
        assert!(s.try_claim_pending(), "claimable again once running");
        s.release_claim();
        assert_eq!(s.load().last_pool(), Some(7));
    }

    #[test]
    fn disable_depth_nests_and_survives_queueing() {
        let s = WorkState::new();
        assert!(s.inc_disable());
        assert!(s.inc_disable());
        assert_eq!(s.load().disable_depth(), 2);
        assert!(s.try_claim_pending());
        s.set_queued(1);
        s.release_for_run(1);
        assert_eq!(s.load().disable_depth(), 2);
        assert_eq!(s.dec_disable(), Some(1));
        assert_eq!(s.dec_disable(), Some(0));
        assert_eq!(s.dec_disable(), None);
    }

    fn raw(s: &WorkState) -> u64 {
        s.0.load(Ordering::Relaxed)
    }

    /// One item through every named transition, checking the whole word after each: only the
    /// bits the transition names change, and the disable depth rides along untouched.
    #[test]
    fn every_transition_changes_only_its_bits() {
        let s = WorkState::new();
        for _ in 0..5 {
            assert!(s.inc_disable());
        }
        let word = |pending: bool, queued: bool, pool: u32| {
            (pending as u64) | (queued as u64) << 1 | 5 << DISABLE_SHIFT | (pool as u64) << POOL_SHIFT
        };
        assert_eq!(raw(&s), word(false, false, POOL_NONE));
        assert!(s.try_claim_pending());
        assert_eq!(raw(&s), word(true, false, POOL_NONE));
        s.set_target(3);
        assert_eq!(raw(&s), word(true, false, 3), "set_target records the inbox's pool");
        s.set_target(3);
        assert_eq!(raw(&s), word(true, false, 3), "and is idempotent");
        s.set_queued(3);
        assert_eq!(raw(&s), word(true, true, 3));
        s.steal_queued();
        assert_eq!(raw(&s), word(true, false, 3), "a steal keeps PENDING and the pool");
        s.set_target(4);
        s.set_queued(4);
        assert_eq!(raw(&s), word(true, true, 4));
        s.release_for_run(4);
        assert_eq!(raw(&s), word(false, false, 4), "released for the run in pool 4");
        assert!(s.try_claim_pending());
        s.release_claim();
        assert_eq!(raw(&s), word(false, false, 4), "a refused queueing leaves the word as it was");
        let snap = s.load();
        assert_eq!(
            (snap.is_pending(), snap.is_queued(), snap.disable_depth(), snap.last_pool()),
            (false, false, 5, Some(4))
        );
    }

    /// The disable depth stops at its maximum and at zero without carrying into or borrowing
    /// from the neighbouring fields.
    #[test]
    fn disable_depth_saturates_without_touching_neighbours() {
        let s = WorkState(AtomicU64::new((MAX_DISABLE - 1) << DISABLE_SHIFT | 9 << POOL_SHIFT | PENDING));
        assert!(s.inc_disable());
        assert!(!s.inc_disable(), "the maximum depth refuses another disable");
        assert_eq!(raw(&s), MAX_DISABLE << DISABLE_SHIFT | 9 << POOL_SHIFT | PENDING);
        let s = WorkState(AtomicU64::new(9 << POOL_SHIFT | PENDING | QUEUED));
        assert_eq!(s.dec_disable(), None);
        assert_eq!(raw(&s), 9 << POOL_SHIFT | PENDING | QUEUED, "an underflow changes nothing");
    }

    #[test]
    #[should_panic(expected = "release_claim of an unowned item")]
    fn releasing_an_unowned_claim_is_caught() {
        WorkState::new().release_claim();
    }

    #[test]
    #[should_panic(expected = "release_claim of an unowned item")]
    fn releasing_the_claim_of_a_queued_item_is_caught() {
        let s = WorkState::new();
        assert!(s.try_claim_pending());
        s.set_queued(1);
        s.release_claim();
    }

    #[test]
    #[should_panic(expected = "set_queued without PENDING")]
    fn queueing_without_the_claim_is_caught() {
        WorkState::new().set_queued(1);
    }

    #[test]
    #[should_panic(expected = "release_for_run of an unqueued item")]
    fn running_an_unqueued_item_is_caught() {
        let s = WorkState::new();
        assert!(s.try_claim_pending());
        s.release_for_run(1);
    }

    #[test]
    #[should_panic(expected = "steal of an unqueued item")]
    fn stealing_an_unqueued_item_is_caught() {
        let s = WorkState::new();
        assert!(s.try_claim_pending());
        s.steal_queued();
    }

    #[test]
    #[should_panic(expected = "set_target of an unowned item")]
    fn retargeting_a_queued_item_is_caught() {
        let s = WorkState::new();
        assert!(s.try_claim_pending());
        s.set_queued(1);
        s.set_target(2);
    }

    /// PENDING is an ownership token: threads racing to claim it never own it two at once, and
    /// each owner sees everything the previous owner wrote (the claim is `AcqRel`, both ways of
    /// giving it up `Release`), which `Relaxed` data accesses check: with a weaker ordering a
    /// read of `data` could miss the last owner's increment (Miri's weak-memory emulation
    /// explores such reads), and the count would come out short.
    #[test]
    fn the_claim_excludes_and_hands_over_what_owners_wrote() {
        use std::sync::atomic::AtomicU32;
        const THREADS: u32 = 3;
        let rounds: u32 = if cfg!(miri) { 30 } else { 20_000 };
        let s = WorkState::new();
        let (owners, data, claims) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
        std::thread::scope(|sc| {
            for t in 0..THREADS {
                let (s, owners, data, claims) = (&s, &owners, &data, &claims);
                sc.spawn(move || {
                    for r in 0..rounds {
                        if !s.try_claim_pending() {
                            crate::sync::thread::yield_now();
                            continue;
                        }
                        assert_eq!(owners.fetch_add(1, Ordering::Relaxed), 0, "two owners at once");
                        claims.fetch_add(1, Ordering::Relaxed);
                        let v = data.load(Ordering::Relaxed);
                        data.store(v + 1, Ordering::Relaxed);
                        owners.fetch_sub(1, Ordering::Relaxed);
                        // Alternate the two ways ownership ends: refused, or queued and run.
                        if (r + t) % 2 == 0 {
                            s.release_claim();
                        } else {
                            s.set_queued(t);
                            s.release_for_run(t);
                        }
                    }
                });
            }
        });
        assert_eq!(data.load(Ordering::Relaxed), claims.load(Ordering::Relaxed), "an owner missed an update");
        assert!(!s.load().is_pending());
    }
}
