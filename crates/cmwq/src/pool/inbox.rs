//! The submission inbox: queueing without the pool lock (a departure from the kernel, where
//! `__queue_work` takes `pool->lock`; docs/design.md §1.1).
//!
//! A queuer that owns an item's PENDING pushes `(pwq slot, item)` onto the pool's lock-free
//! inbox instead of taking the pool lock. Whoever holds the pool lock moves the inbox onto the
//! pool's lists with [`WorkerPool::insert_work`], so everything the lock guards (colours,
//! `nr_active`, the inactive lists, kicks, the monitor) is decided under the lock exactly as if
//! the queuer had taken it itself, just later.
//!
//! Protocol (flat combining):
//! 1. [`WorkerPool::lock`] drains the inbox right after acquiring: a lock holder sees every
//!    item whose queueing happened before its acquisition, so `flush`, `cancel` and the flush
//!    colours see the pool as if queueing had been locked.
//! 2. Releasing a [`PoolGuard`] drains the inbox, unlocks, then (after a `SeqCst` fence) looks
//!    at the inbox again, and if it is not empty takes the lock back with `try_lock` and
//!    repeats.
//! 3. A queuer pushes, issues a `SeqCst` fence, then looks at the lock: if it is free it takes
//!    it with `try_lock` (which drains, step 1); if it is held, it returns.
//!
//! Guarantee: an item pushed is on the pool's lists within one lock hold. Steps 2 and 3 are
//! Dekker's pattern with `SeqCst` fences on both sides: either the releaser's second look sees
//! the push, or the queuer's look at the lock sees it released (or held by a later holder, who
//! releases through step 2 in turn). The queuer never waits for the lock, so producers and
//! workers no longer serialize on it item by item.
//!
//! While an item is in the inbox its state is PENDING, not QUEUED, with the target pool in the
//! pool-id field: `cancel` and `flush_work` lock that pool, which drains it (step 1).

use super::{Item, PoolLocked, WorkerPool};
use crate::sync::{fence, Arc, MutexGuard, Ordering};
use crossbeam_queue::SegQueue;
use std::ops::{Deref, DerefMut};

/// Items queued on a pool and not yet on its lists.
#[derive(Default)]
pub(crate) struct Inbox {
    /// `(pwq slot, item)` in queueing order: work items whose PENDING the queuer owns, and
    /// one-shot closures.
    q: SegQueue<(u32, Item)>,
}

impl Inbox {
    /// Whether nothing waits to be moved.
    pub(crate) fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

/// The pool lock, held. Dereferences to the state it guards; see the module docs for what
/// acquiring and releasing it do besides.
pub(crate) struct PoolGuard<'a> {
    pool: &'a Arc<WorkerPool>,
    /// Always `Some` until the guard is dropped.
    g: Option<MutexGuard<'a, PoolLocked>>,
}

impl WorkerPool {
    /// Takes the pool lock (`raw_spin_lock_irq(&pool->lock)`) and moves the inbox onto the
    /// pool's lists (protocol step 1).
    pub(crate) fn lock(self: &Arc<Self>) -> PoolGuard<'_> {
        let mut g = PoolGuard { pool: self, g: Some(self.lock.lock()) };
        g.drain_inbox();
        g
    }

    /// Queues `item` (a work item whose PENDING the caller owns, with this pool recorded in
    /// its state, or a one-shot closure) on pwq `slot` without waiting for the pool lock
    /// (protocol step 3).
    pub(crate) fn submit(self: &Arc<Self>, slot: u32, item: Item) {
        self.inbox.q.push((slot, item));
        // Pairs with the fence in `PoolGuard::drop`: see the module docs.
        fence(Ordering::SeqCst);
        if !self.lock.is_locked() {
            if let Some(g) = self.lock.try_lock() {
                let mut g = PoolGuard { pool: self, g: Some(g) };
                g.drain_inbox();
            }
        }
    }
}

impl PoolGuard<'_> {
    /// Moves everything in the inbox onto the pool's lists, in queueing order.
    fn drain_inbox(&mut self) {
        let pool = self.pool;
        while let Some((slot, item)) = pool.inbox.q.pop() {
            pool.insert_work(self, slot, item);
        }
    }
}

impl Drop for PoolGuard<'_> {
    /// Protocol step 2: drain, unlock, look again.
    fn drop(&mut self) {
        loop {
            self.drain_inbox();
            self.g = None;
            // Pairs with the fence in `WorkerPool::submit`: see the module docs.
            fence(Ordering::SeqCst);
            if self.pool.inbox.is_empty() {
                return;
            }
            match self.pool.lock.try_lock() {
                Some(g) => self.g = Some(g),
                // The holder releases through this same step and will see the inbox.
                None => return,
            }
        }
    }
}

impl Deref for PoolGuard<'_> {
    type Target = PoolLocked;
    fn deref(&self) -> &PoolLocked {
        self.g.as_ref().expect("pool guard used after release")
    }
}

impl DerefMut for PoolGuard<'_> {
    fn deref_mut(&mut self) -> &mut PoolLocked {
        self.g.as_mut().expect("pool guard used after release")
    }
}
