//! The submission inbox: queueing without the pool lock (a departure from the kernel, where
//! `__queue_work` takes `pool->lock`; docs/design.md §1.1).
//!
//! A queuer that owns an item's PENDING appends `(pwq slot, item)` to the pool's inbox instead
//! of taking the pool lock. The inbox is a chain of blocks behind a lock of its own that is
//! held only for one `push` or one swap, never while anything else is done (the kernel's
//! `llist_add` / `llist_del_all` pattern with blocks in place of the list, so an entry costs no
//! node of its own; a full block of one pwq's items that must wait is parked whole, `pwq.rs`). Whoever holds the pool lock swaps the whole inbox out and moves it onto the
//! pool's lists with [`WorkerPool::insert_work`], so everything the pool lock guards (colours,
//! `nr_active`, the inactive lists, kicks, the monitor) is decided under the pool lock exactly
//! as if the queuer had taken it itself, just later.
//!
//! Protocol (flat combining):
//! 1. [`WorkerPool::lock`] drains the inbox right after acquiring: a lock holder sees every
//!    item whose queueing happened before its acquisition, so `flush`, `cancel` and the flush
//!    colours see the pool as if queueing had been locked.
//! 2. Releasing a [`PoolGuard`] drains the inbox, unlocks, then (after a `SeqCst` fence) looks
//!    at the inbox's length again, and if it is not zero takes the lock back with `try_lock`
//!    and repeats. While a worker counts as running (`nr_running > 0` at the release), the
//!    release neither drains nor looks again: that worker locks again (step 1 then drains).
//! 3. A queuer appends. If the inbox already held entries it returns at once: the drain that
//!    takes the earlier entries swaps out the whole inbox, so it takes this one too, and the
//!    earlier entry's queuer made sure (by this same step) that such a drain comes (the
//!    kernel's `llist_add` returning "was empty" so that only the first adder kicks).
//!    Otherwise it issues a `SeqCst` fence, then looks at the pool's published `nr_running`:
//!    if a worker counts as running, it returns (that worker locks again). Else it looks at
//!    the pool lock: if it is free it takes it with `try_lock` (which drains, step 1); if it
//!    is held, it returns.
//!
//! Why the skips are safe, and what they bought: docs/design.md §1.1, "Who drains". The
//! monitor takes the lock without step 1 (`lock_to_inspect`).
//!
//! Guarantee: an item appended is on the pool's lists within one lock hold (the next one,
//! while a worker runs). Steps 2 and 3 are
//! Dekker's pattern with `SeqCst` fences on both sides: either the releaser's second look sees
//! the append, or the queuer's look at the lock sees it released (or held by a later holder,
//! who releases through step 2 in turn). The queuer never waits for the pool lock, so
//! producers and workers no longer serialize on it item by item.
//!
//! While an item is in the inbox its state is PENDING, not QUEUED, with the target pool in the
//! pool-id field: `cancel` and `flush_work` lock that pool, which drains it (step 1).

use super::{Item, PoolGuard, WorkerPool};
use crate::sync::{fence, Arc, AtomicUsize, Mutex, Ordering};
use crate::work::Work;
use std::collections::VecDeque;

/// Entries per inbox block (10 KiB of entries). The inbox is a chain of blocks, so a burst
/// never copies what it queued into a larger buffer (growing a single buffer copied and
/// first-touched the backlog twice: page faults were a fifth of B1's profile); a full block
/// comes from `malloc` and goes back to it once drained.
const BLOCK: usize = 256;

/// One queued entry: the pwq slot in the pool, and a work item whose PENDING the queuer owns or
/// a one-shot closure.
pub(super) type Queued = (u32, Item);

/// A filled inbox block, with what the drain needs to know without reading it.
#[derive(Debug)]
pub(super) struct FullBlock {
    /// `BLOCK` entries in queueing order.
    items: Vec<Queued>,
    /// The pwq slot of every entry, if they all share one (a flood from one workqueue).
    slot: Option<u32>,
    /// Whether any entry is a work item (not a one-shot closure).
    works: bool,
}

/// Entries in queueing order: the blocks in `full`, then `tail`.
#[derive(Default, Debug)]
pub(super) struct Blocks {
    /// Filled blocks, oldest first.
    full: Vec<FullBlock>,
    /// The block being filled (capacity `BLOCK` once used).
    tail: Vec<Queued>,
    /// The slot every entry of `tail` shares (`None` if empty or mixed).
    tail_slot: Option<u32>,
    /// Some entry of `tail` is a work item.
    tail_works: bool,
}

impl Blocks {
    fn len(&self) -> usize {
        self.full.len() * BLOCK + self.tail.len()
    }

    fn push(&mut self, e: Queued) {
        if self.tail.len() == BLOCK {
            let items = std::mem::replace(&mut self.tail, Vec::with_capacity(BLOCK));
            self.full.push(FullBlock { items, slot: self.tail_slot, works: self.tail_works });
        } else if self.tail.capacity() == 0 {
            self.tail.reserve_exact(BLOCK);
        }
        if self.tail.is_empty() {
            self.tail_slot = Some(e.0);
            self.tail_works = false;
        } else if self.tail_slot != Some(e.0) {
            self.tail_slot = None;
        }
        self.tail_works |= matches!(e.1, Item::Work(_));
        self.tail.push(e);
    }
}

/// Items queued on a pool and not yet on its lists.
pub(super) struct Inbox {
    /// The entries. Held for one `push` or one swap, nothing else.
    q: Mutex<Blocks>,
    /// How many entries `q` holds: written only with `q` locked, read without it (the Dekker
    /// looks of steps 2 and 3, and the drain's fast path).
    len: AtomicUsize,
    /// The pool's `nr_running` as last stored under the pool lock
    /// (`PoolLocked::nr_running_pub`), for the queuer's look in step 3.
    running: Arc<AtomicUsize>,
}

impl Inbox {
    /// An empty inbox; `running` is the pool's published `nr_running`.
    pub(super) fn new(running: Arc<AtomicUsize>) -> Inbox {
        Inbox { q: Mutex::new(Blocks::default()), len: AtomicUsize::new(0), running }
    }

    /// Whether nothing waits to be moved.
    ///
    /// `Relaxed` is enough: every store happens under `q`'s lock, so a reader that is ordered
    /// after an append (program order, a synchronizing operation, or the `SeqCst` fences of the
    /// protocol) reads that append's length or a later one; a later zero was written by a drain
    /// that took the entry.
    pub(super) fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Appends `e`; returns whether the inbox was empty before (`llist_add`'s answer).
    fn push(&self, e: Queued) -> bool {
        let mut q = self.q.lock();
        q.push(e);
        let len = q.len();
        self.len.store(len, Ordering::Relaxed);
        len == 1
    }

    /// Swaps the whole inbox with `batch` (empty; its tail block is kept for its capacity).
    fn take_all(&self, batch: &mut Blocks) {
        let mut q = self.q.lock();
        std::mem::swap(&mut *q, batch);
        self.len.store(0, Ordering::Relaxed);
    }
}

impl WorkerPool {
    /// Queues `work`, whose PENDING the caller owns, on pwq `slot` of this pool: records the
    /// pool in its state word, then appends it (step 3). The last step of `queue`.
    #[inline]
    pub(super) fn submit_work(self: &Arc<Self>, slot: u32, work: Work) {
        work.state().set_target(self.id);
        self.submit(slot, Item::Work(work));
    }

    /// Queues `item` (a work item whose PENDING the caller owns, with this pool recorded in
    /// its state, or a one-shot closure) on pwq `slot` without waiting for the pool lock
    /// (protocol step 3).
    pub(super) fn submit(self: &Arc<Self>, slot: u32, item: Item) {
        if !self.inbox.push((slot, item)) {
            // An earlier entry is still there: whoever moves it moves this one too, and its
            // queuer made sure somebody will (step 3).
            return;
        }
        // Pairs with the fence in `PoolGuard::drop`: see the module docs.
        #[cfg(loom)]
        let planted = crate::sync::plant::is(crate::sync::plant::Bug::InboxQueuerNoFence);
        #[cfg(not(loom))]
        let planted = false;
        if !planted {
            fence(Ordering::SeqCst);
        }
        if self.inbox.running.load(Ordering::Relaxed) > 0 {
            // A worker counts as running and will take the lock again (see `PoolGuard::drop`):
            // leave the move to it. A queuer that moved its own entry took the pool lock for
            // every item of a flood, and the running worker, sharing its CPU, could hardly
            // get the lock (docs/design.md §1.1, "Who drains"). The item would only wait
            // anyway: no worker is woken while one runs; the monitor is told.
            self.env().monitor.note_waiting();
            return;
        }
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
    pub(super) fn drain_inbox(&mut self) {
        let pool = self.pool;
        if pool.inbox.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.inbox_batch);
        pool.inbox.take_all(&mut batch);
        // Full blocks go back to `malloc` as they empty (or, parked whole, once activated);
        // the tail block is kept, and the swap hands it to the inbox next time.
        for block in std::mem::take(&mut batch.full) {
            // Only concurrency-managed pools park: their queuers leave the inbox to the
            // running worker, which drains it in blocks; on an unbound pool the queuers drain
            // item by item, so a parked block would make every later item of that pwq park
            // one by one behind it, which is slower than linking it (B9: design.md §3).
            let slot = block.slot.filter(|_| pool.is_cm());
            let Some(slot) = slot else {
                for (slot, item) in block.items {
                    self.insert_work(slot, item);
                }
                continue;
            };
            // One workqueue's flood: items go one by one while they can become active, and
            // the rest of the block is parked whole, without moving an item (pwq.rs).
            let mut items = VecDeque::from(block.items);
            while !self.pwqs[slot as usize].must_wait() {
                let Some((slot, item)) = items.pop_front() else { break };
                self.insert_work(slot, item);
            }
            if !items.is_empty() {
                self.park_block(slot, items, block.works);
            }
        }
        for (slot, item) in batch.tail.drain(..) {
            self.insert_work(slot, item);
        }
        batch.tail_slot = None;
        batch.tail_works = false;
        self.inbox_batch = batch;
    }
}

impl Drop for PoolGuard<'_> {
    /// Protocol step 2: drain, unlock, look again. A worker chosen for waking under the lock
    /// is woken right after the unlock (`PoolLocked::wake_after_unlock`), so that it does not
    /// wake into a held lock.
    fn drop(&mut self) {
        loop {
            // A worker that counts as running takes the lock again: when its item ends, or
            // when it stops counting (under the lock, releasing through this step). Its next
            // acquisition moves the inbox (step 1), so this release leaves it alone.
            let relocker = self.nr_running > 0;
            if !relocker {
                self.drain_inbox();
            }
            let wake = self.pending_wake.take();
            self.g = None;
            if let Some((_, unparker)) = wake {
                unparker.unpark();
            }
            // Pairs with the fence in `WorkerPool::submit`: see the module docs.
            fence(Ordering::SeqCst);
            #[cfg(loom)]
            if crate::sync::plant::is(crate::sync::plant::Bug::InboxNoSecondLook) {
                return;
            }
            if self.pool.inbox.is_empty() {
                return;
            }
            if relocker {
                // Leave the new entries to that worker's next lock instead of draining again:
                // a releaser that kept re-draining behind a flooding producer held the lock
                // nearly all the time, and the running worker, waiting for it, ran almost
                // nothing (docs/design.md §1.1, "Who drains"). Until then the items
                // would only wait, as no worker is woken while one runs; the monitor is told.
                self.pool.env().monitor.note_waiting();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::Work;

    fn work() -> Work {
        Work::new(|_: &Work| {})
    }

    /// The entries of `b` in the order a drain takes them: every full block, then the tail.
    fn in_order(b: &Blocks) -> Vec<&Queued> {
        b.full.iter().flat_map(|f| f.items.iter()).chain(b.tail.iter()).collect()
    }

    fn same(a: &Item, b: &Work) -> bool {
        matches!(a, Item::Work(w) if w.ptr_eq(b))
    }

    /// A long run of pushes fills blocks of exactly `BLOCK` entries, oldest first, each with a
    /// summary that matches what it holds: the shared slot (`None` once two differ) and
    /// whether any entry is a work item; the tail's summary starts afresh with each block.
    #[test]
    fn blocks_chain_in_queueing_order_with_true_summaries() {
        let mut b = Blocks::default();
        let mut works = Vec::new();
        // Block 0: work items of slot 3. Block 1: slots 3 and 4, no work item but one in the
        // middle. Tail: cursors of slot 5 only.
        for _ in 0..BLOCK {
            let w = work();
            b.push((3, Item::Work(w.clone())));
            works.push(Some(w));
        }
        for i in 0..BLOCK {
            if i == BLOCK / 2 {
                let w = work();
                b.push((4, Item::Work(w.clone())));
                works.push(Some(w));
            } else {
                b.push((3, Item::Cursor));
                works.push(None);
            }
        }
        for _ in 0..17 {
            b.push((5, Item::Cursor));
            works.push(None);
        }
        assert_eq!(b.len(), 2 * BLOCK + 17);
        assert_eq!(b.full.len(), 2);
        assert!(b.full.iter().all(|f| f.items.len() == BLOCK && f.items.capacity() == BLOCK));
        assert_eq!((b.full[0].slot, b.full[0].works), (Some(3), true));
        assert_eq!((b.full[1].slot, b.full[1].works), (None, true));
        assert_eq!((b.tail_slot, b.tail_works), (Some(5), false), "the tail's summary restarts");
        let order = in_order(&b);
        assert_eq!(order.len(), works.len());
        for (k, ((slot, item), w)) in order.into_iter().zip(&works).enumerate() {
            match w {
                Some(w) => assert!(same(item, w), "entry {k} out of order"),
                None => assert!(matches!(item, Item::Cursor), "entry {k} out of order"),
            }
            let want = if k < 2 * BLOCK {
                if k == BLOCK + BLOCK / 2 {
                    4
                } else {
                    3
                }
            } else {
                5
            };
            assert_eq!(*slot, want, "entry {k}'s slot");
        }
    }

    /// `push` answers "was empty" for exactly the first entry after each swap, `take_all`
    /// hands over everything and leaves the inbox empty, and the tail block handed back by a
    /// drain is reused by the inbox (no new allocation per burst).
    #[test]
    fn inbox_push_and_swap() {
        let inbox = Inbox::new(Arc::new(AtomicUsize::new(0)));
        assert!(inbox.is_empty());
        let (a, b) = (work(), work());
        assert!(inbox.push((0, Item::Work(a.clone()))), "first push sees an empty inbox");
        assert!(!inbox.push((1, Item::Work(b.clone()))), "second push does not");
        assert!(!inbox.is_empty());
        let mut batch = Blocks::default();
        inbox.take_all(&mut batch);
        assert!(inbox.is_empty());
        let got = in_order(&batch);
        assert!(got.len() == 2 && same(&got[0].1, &a) && same(&got[1].1, &b));
        assert_eq!((got[0].0, got[1].0), (0, 1));
        // What a drain does with its batch: empty the tail, keep its capacity.
        batch.tail.clear();
        assert!(inbox.push((0, Item::Cursor)), "empty again after the swap");
        inbox.take_all(&mut batch);
        assert_eq!(inbox.q.lock().tail.capacity(), BLOCK, "the drained tail came back to the inbox");
        assert_eq!(batch.len(), 1);
    }

    /// Producers push while a drainer swaps the inbox out: every entry is taken exactly once,
    /// each producer's entries come out in its order, and the number of pushes that saw an
    /// empty inbox equals the number of non-empty batches (exactly one "first adder" each).
    #[test]
    fn concurrent_pushes_and_swaps_lose_nothing() {
        const PRODUCERS: u32 = 3;
        let per: usize = if cfg!(miri) { 40 } else { 3 * BLOCK + 5 };
        let inbox = Inbox::new(Arc::new(AtomicUsize::new(0)));
        let items: Vec<Vec<Work>> = (0..PRODUCERS).map(|_| (0..per).map(|_| work()).collect()).collect();
        let firsts = AtomicUsize::new(0);
        let mut batches: Vec<Blocks> = Vec::new();
        std::thread::scope(|s| {
            for (p, mine) in items.iter().enumerate() {
                let (inbox, firsts) = (&inbox, &firsts);
                s.spawn(move || {
                    for w in mine {
                        if inbox.push((p as u32, Item::Work(w.clone()))) {
                            firsts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            // The drainer: a bounded number of swaps while the producers run.
            for _ in 0..per {
                let mut b = Blocks::default();
                inbox.take_all(&mut b);
                batches.push(b);
                crate::sync::thread::yield_now();
            }
        });
        let mut last = Blocks::default();
        inbox.take_all(&mut last);
        batches.push(last);
        let nonempty = batches.iter().filter(|b| b.len() > 0).count();
        assert_eq!(firsts.load(Ordering::Relaxed), nonempty, "one first adder per non-empty batch");
        let mut next = vec![0usize; PRODUCERS as usize];
        for (slot, item) in batches.iter().flat_map(in_order) {
            let p = *slot as usize;
            assert!(same(item, &items[p][next[p]]), "producer {p}'s entry {} out of order", next[p]);
            next[p] += 1;
        }
        assert_eq!(next, vec![per; PRODUCERS as usize], "every entry taken exactly once");
    }
}
