//! Entries of a pool's lists, and how they move (the kernel's `insert_work`,
//! `move_linked_works`, `pwq_activate_first_inactive`, `pwq_dec_nr_in_flight`; spec §2.2,
//! §3.1, §3.4).
//!
//! Every entry lives in the pool's node arena and is on exactly one list: the worklist, its
//! pwq's inactive list, or a worker's scheduled list ([`Loc`]). An entry is a work item, a
//! one-shot closure, a flush barrier or a rescuer cursor. A barrier is linked behind its
//! target (`linked` on the entry before it), so the chain moves as one: activation moves the item with its barriers to the worklist,
//! dispatch moves them to the worker's scheduled list, and the barrier completes right after
//! its target has run. Barriers count in their colour's in-flight count (so a workqueue flush
//! waits for them) but never in `nr_active`.

use super::inbox::Queued;
use super::{manager, PoolLocked, WorkerPool};
use crate::completion::Completion;
use crate::pwq::Parked;
use crate::sync::Arc;
use crate::work::{Work, NO_NODE};
use crate::worklist::{List, Nodes, NIL};
use stack_dst::Value;
use std::collections::VecDeque;
use std::mem::MaybeUninit;

/// The closure of a one-shot item (`Workqueue::spawn`). One of up to two words (a closure
/// that captured an `Arc` or two: the common case) is stored inline in the entry, so spawning
/// it allocates nothing; a larger or over-aligned one is boxed. Two words keep an [`Entry`]
/// within 48 bytes and an arena node within one 64-byte cache line.
pub(crate) enum Job {
    /// Stored inline: the closure and its vtable in three words (`stack_dst`).
    Inline(Value<dyn Call, JobBuf>),
    /// Too large (or aligned beyond a word) to store inline.
    Boxed(Box<dyn FnOnce() + Send + 'static>),
}

/// Inline storage of a [`Job`]: three words, the closure first and its vtable pointer last.
type JobBuf = [MaybeUninit<usize>; 3];

/// A one-shot closure behind `&mut` (an inline value can only be called through a
/// reference): the first call takes the closure out and runs it.
pub(crate) trait Call: Send {
    fn call(&mut self);
}

/// The `FnOnce` inside a [`Call`].
struct OnceFn<F>(Option<F>);

impl<F: FnOnce() + Send> Call for OnceFn<F> {
    fn call(&mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}

impl Job {
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Job {
        // `stack_dst` panics on a value aligned beyond its buffer's word: box those.
        if std::mem::align_of::<F>() > std::mem::align_of::<usize>() {
            return Job::Boxed(Box::new(f));
        }
        match Value::in_buffer_stable([MaybeUninit::uninit(); 3], OnceFn(Some(f)), |v| v as &dyn Call) {
            Ok(v) => Job::Inline(v),
            Err(OnceFn(f)) => Job::Boxed(Box::new(f.expect("the closure was not taken"))),
        }
    }

    /// Calls the closure, consuming it (what it captured is dropped inside the call).
    pub(crate) fn run(self) {
        match self {
            Job::Inline(mut v) => v.call(),
            Job::Boxed(f) => f(),
        }
    }
}

/// What an entry is.
pub(crate) enum Item {
    /// A queued work item (the list's handle on it).
    Work(Work),
    /// A one-shot closure from `Workqueue::spawn`: an anonymous item nobody else can name, so
    /// it has no state word, cannot be cancelled or flushed on its own, and cannot collide
    /// with itself (it is counted, coloured and run like any item).
    Once(Job),
    /// A flush barrier (`wq_barrier`): completes when dispatched, i.e. after what it is linked
    /// behind.
    Barrier(Arc<Completion>),
    /// The rescuer cursor of pwq `Entry::pwq` (`mayday_cursor`): only ever on the worklist,
    /// never run, never counted; a normal worker that meets it at the head just unlinks it.
    Cursor,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Work(w) => f.debug_tuple("Work").field(w).finish(),
            Item::Once(_) => f.write_str("Once"),
            Item::Barrier(b) => f.debug_tuple("Barrier").field(b).finish(),
            Item::Cursor => f.write_str("Cursor"),
        }
    }
}

/// The list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    /// The pool worklist.
    Worklist,
    /// Its pwq's inactive list.
    Inactive,
    /// The scheduled list of this worker (its id; `u32` keeps an entry within 48 bytes).
    Scheduled(u32),
}

impl Loc {
    /// The scheduled list of worker `id`.
    pub(crate) fn scheduled(id: usize) -> Loc {
        Loc::Scheduled(u32::try_from(id).expect("worker ids fit in u32"))
    }
}

/// One entry of a pool list. L.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) item: Item,
    /// The pwq's slot in the pool.
    pub(crate) pwq: u32,
    /// The flush colour it counts in.
    pub(crate) color: u8,
    /// It does not count in `nr_active` (`WORK_STRUCT_INACTIVE`): an inactive item or a barrier.
    pub(crate) inactive: bool,
    /// The next entry on the same list belongs to this one (`WORK_STRUCT_LINKED`).
    pub(crate) linked: bool,
    /// The list it is on.
    pub(crate) loc: Loc,
}

impl PoolLocked {
    /// Runs `f` on the list `loc` (of pwq `pwq` for the inactive list) and the arena.
    pub(crate) fn with_list<R>(&mut self, loc: Loc, pwq: u32, f: impl FnOnce(&mut List, &mut Nodes<Entry>) -> R) -> R {
        match loc {
            Loc::Worklist => f(&mut self.worklist, &mut self.nodes),
            Loc::Inactive => f(&mut self.pwqs[pwq as usize].inactive, &mut self.nodes),
            Loc::Scheduled(w) => f(&mut self.workers[w as usize].scheduled, &mut self.nodes),
        }
    }

    /// Moves entry `idx` and the entries linked behind it to `dst`, before `before` (`NIL` =
    /// at the tail) (`move_linked_works`).
    pub(crate) fn move_linked(&mut self, idx: u32, dst: Loc, before: u32) {
        let mut cur = idx;
        loop {
            let (src, pwq, linked) = {
                let e = self.nodes.get(cur);
                (e.loc, e.pwq, e.linked)
            };
            let (from, to, nodes) = self.two_lists(src, dst, pwq);
            let next = from.next(nodes, cur);
            from.move_to(nodes, cur, to, before);
            nodes.get_mut(cur).loc = dst;
            if !linked {
                return;
            }
            cur = next.expect("a linked entry has a follower");
        }
    }

    /// The lists `a` and `b` (two different lists; `pwq`'s for an inactive one) and the arena.
    fn two_lists(&mut self, a: Loc, b: Loc, pwq: u32) -> (&mut List, &mut List, &mut Nodes<Entry>) {
        let PoolLocked { nodes, worklist, pwqs, workers, .. } = self;
        let (x, y) = match (a, b) {
            (Loc::Worklist, Loc::Inactive) => (worklist, &mut pwqs[pwq as usize].inactive),
            (Loc::Inactive, Loc::Worklist) => (&mut pwqs[pwq as usize].inactive, worklist),
            (Loc::Worklist, Loc::Scheduled(w)) => (worklist, &mut workers[w as usize].scheduled),
            (Loc::Scheduled(w), Loc::Worklist) => (&mut workers[w as usize].scheduled, worklist),
            (Loc::Inactive, Loc::Scheduled(w)) => {
                (&mut pwqs[pwq as usize].inactive, &mut workers[w as usize].scheduled)
            }
            (Loc::Scheduled(w), Loc::Inactive) => {
                (&mut workers[w as usize].scheduled, &mut pwqs[pwq as usize].inactive)
            }
            (Loc::Scheduled(v), Loc::Scheduled(w)) => {
                let (x, y) = workers.get2_mut(v as usize, w as usize).expect("two different workers");
                (&mut x.scheduled, &mut y.scheduled)
            }
            _ => panic!("move_linked within one list ({a:?})"),
        };
        (x, y, nodes)
    }

    /// Unlinks entry `idx` from its list and frees its node.
    pub(crate) fn remove_entry(&mut self, idx: u32) -> Entry {
        let (loc, pwq) = {
            let e = self.nodes.get(idx);
            (e.loc, e.pwq)
        };
        let e = self.with_list(loc, pwq, |l, n| l.remove(n, idx));
        if let Item::Work(w) = &e.item {
            w.set_node(NO_NODE);
        }
        e
    }

    /// Takes the worklist entry `idx` for worker `me` (`assign_work`): if another worker of
    /// this pool already runs the same item, the entry (with its linked barriers) goes to that
    /// worker instead, so the item never runs twice at once, and this returns `false`.
    ///
    /// A rescuer cursor met here is unlinked and skipped (`false`); only normal workers meet
    /// one, since the rescuer always scans after its own cursor.
    pub(crate) fn assign_work(&mut self, idx: u32, me: usize) -> bool {
        let Some(to) = self.runner_of(idx, me) else {
            debug_assert!(self.workers[me].flags & super::flags::RESCUER == 0, "a rescuer met a cursor");
            self.unlink_cursor(idx);
            return false;
        };
        self.move_linked(idx, Loc::scheduled(to), NIL);
        to == me
    }

    /// Who must run entry `idx` if worker `me` takes it: the worker already running the same
    /// item (the collision rule, so an item never runs twice at once), else `me`; `None` for
    /// a rescuer cursor, which is never run.
    fn runner_of(&self, idx: u32, me: usize) -> Option<usize> {
        match &self.nodes.get(idx).item {
            Item::Work(w) => Some(self.find_worker_executing(w).unwrap_or(me)),
            Item::Barrier(_) | Item::Once(_) => Some(me),
            Item::Cursor => None,
        }
    }

    /// `assign_work` of the common case, without the detour through the scheduled list: if
    /// entry `idx` is an item with nothing linked behind it, not running on another worker,
    /// and `me`'s scheduled list is empty, it is unlinked and returned for `me` to run at once.
    /// Within one lock hold this is the same as moving it to `me`'s scheduled list and taking
    /// it from there (`process_scheduled_works`); otherwise `None` and nothing changes.
    pub(crate) fn take_alone(&mut self, idx: u32, me: usize) -> Option<Entry> {
        let e = self.nodes.get(idx);
        let alone = !e.linked && !matches!(e.item, Item::Barrier(_)) && self.workers[me].scheduled.is_empty();
        (alone && self.runner_of(idx, me) == Some(me)).then(|| self.remove_entry(idx))
    }

    /// Unlinks the cursor entry `idx` (no accounting: it never counted).
    pub(crate) fn unlink_cursor(&mut self, idx: u32) {
        let e = self.remove_entry(idx);
        debug_assert!(matches!(e.item, Item::Cursor));
        self.pwqs[e.pwq as usize].cursor = None;
    }

    /// Gives every parked inactive item of this pool a node at the end of its pwq's inactive
    /// list, in order, so that a cancel or a flush can reach one: called when a queued work
    /// item has no node. Each item is moved at most once, so a run of such calls costs what
    /// was parked since the last one.
    pub(crate) fn unpark_all(&mut self) {
        // By slot number (vacant slots give `None`), so that each item can be linked through
        // `link_new` while no borrow of the pwq table is held.
        for slot in 0..self.pwqs.capacity() as u32 {
            while let Some(run) = self.pwqs.get_mut(slot as usize).and_then(|pwq| pwq.parked.pop_front()) {
                for (_, item) in run.items {
                    self.link_new(Loc::Inactive, slot, item, run.color);
                }
            }
        }
    }

    /// Links a new entry for `item` of pwq `slot` with `color` at the tail of list `loc` (the
    /// worklist for an active item, the pwq's inactive list for one that waits) and gives a
    /// work item its node. Returns the node.
    fn link_new(&mut self, loc: Loc, slot: u32, item: Item, color: u8) -> u32 {
        let entry = Entry { item, pwq: slot, color, inactive: loc == Loc::Inactive, linked: false, loc };
        let idx = self.with_list(loc, slot, |l, n| l.push_back(n, entry));
        if let Item::Work(work) = &self.nodes.get(idx).item {
            work.set_node(idx);
        }
        idx
    }
}

/// A work item queued on `pool` without a node: parked (`PwqLocked::parked`).
fn mark_parked(item: &Item, pool: u32) {
    if let Item::Work(work) = item {
        work.set_node(NO_NODE);
        work.state().set_queued(pool);
    }
}

impl WorkerPool {
    /// Queues `item` (a work item whose PENDING the caller owns, or a one-shot closure) on pwq
    /// `slot` of this pool (`__queue_work` steps 5-8): active on the worklist if the pwq has a
    /// free slot and nothing waits before it, else at the end of the pwq's inactive list
    /// (parked behind parked runs, if there are any: `pwq.rs`).
    pub(crate) fn insert_work(self: &Arc<Self>, g: &mut PoolLocked, slot: u32, item: Item) {
        let pwq = &mut g.pwqs[slot as usize];
        let color = pwq.work_color;
        pwq.inc_in_flight(color);
        if !pwq.parked.is_empty() {
            mark_parked(&item, self.id);
            match pwq.parked.back_mut() {
                Some(run) if run.color == color => run.items.push_back((slot, item)),
                _ => pwq.parked.push_back(Parked { items: VecDeque::from([(slot, item)]), color }),
            }
            return;
        }
        let active = pwq.inactive.is_empty() && pwq.may_activate();
        if active {
            pwq.nr_active += 1;
            if g.worklist.is_empty() {
                g.progress += 1;
            }
        }
        let loc = if active { Loc::Worklist } else { Loc::Inactive };
        let idx = g.link_new(loc, slot, item, color);
        if let Item::Work(work) = &g.nodes.get(idx).item {
            work.state().set_queued(self.id);
        }
        if active {
            self.kick_pool(g);
            if self.is_cm() && g.nr_running > 0 {
                // Items wait behind running workers: the monitor must watch them.
                self.env.monitor.note_waiting();
            }
        }
        if g.nr_workers == 0 {
            manager::create_without_manager(self, g);
        }
    }

    /// Queues a run of items of pwq `slot` that must all wait (`must_wait`) at the end of its
    /// inactive list without moving them: an inbox block, parked whole (`works`: it holds
    /// work items, whose state words are updated; a run of closures is not read at all).
    pub(crate) fn park_block(&self, g: &mut PoolLocked, slot: u32, items: VecDeque<Queued>, works: bool) {
        let pwq = &mut g.pwqs[slot as usize];
        debug_assert!(pwq.must_wait());
        let color = pwq.work_color;
        pwq.add_in_flight(color, items.len() as u32);
        if works {
            for (_, item) in &items {
                mark_parked(item, self.id);
            }
        }
        pwq.parked.push_back(Parked { items, color });
    }

    /// Activates the oldest inactive item of pwq `slot` with its linked barriers, if the pwq
    /// may activate one (`pwq_activate_first_inactive`). Returns whether it did.
    pub(crate) fn activate_first_inactive(&self, g: &mut PoolLocked, slot: u32) -> bool {
        let pwq = &mut g.pwqs[slot as usize];
        if !pwq.may_activate() {
            return false;
        }
        if let Some(idx) = pwq.inactive.front() {
            pwq.nr_active += 1;
            if g.worklist.is_empty() {
                g.progress += 1;
            }
            g.nodes.get_mut(idx).inactive = false;
            g.move_linked(idx, Loc::Worklist, NIL);
            return true;
        }
        let Some(run) = pwq.parked.front_mut() else { return false };
        let color = run.color;
        let (_, item) = run.items.pop_front().expect("parked runs are not empty");
        if run.items.is_empty() {
            pwq.parked.pop_front();
        }
        pwq.nr_active += 1;
        if g.worklist.is_empty() {
            g.progress += 1;
        }
        g.link_new(Loc::Worklist, slot, item, color);
        true
    }

    /// Accounting after an entry of pwq `slot` with `color` finished or was removed
    /// (`pwq_dec_nr_in_flight`): frees its active slot (unless it was inactive), activating
    /// the next inactive item, and drops its in-flight count, which may complete a workqueue
    /// flush or wake a destroyer.
    pub(crate) fn dec_nr_in_flight(&self, g: &mut PoolLocked, slot: u32, color: u8, inactive: bool) {
        #[cfg(loom)]
        let inactive = inactive && !crate::sync::plant::is(crate::sync::plant::Bug::InactiveCountedActive);
        if !inactive {
            g.pwqs[slot as usize].nr_active -= 1;
            #[cfg(loom)]
            let promote = !crate::sync::plant::is(crate::sync::plant::Bug::ActiveNoPromotion);
            #[cfg(not(loom))]
            let promote = true;
            // No kick, as in the kernel's `pwq_dec_nr_active`: the caller is a worker that
            // goes on with the worklist (`keep_working`), or a canceller on a pool whose
            // workers are already kicked for the items they have.
            if promote {
                self.activate_first_inactive(g, slot);
            }
        }
        let pwq = &mut g.pwqs[slot as usize];
        let left = pwq.dec_in_flight(color);
        let wq = &pwq.wq;
        if pwq.flush_color == Some(color) && left == 0 {
            pwq.flush_color = None;
            wq.flush.pwq_flushed();
        }
        if pwq.in_flight() == 0 {
            wq.pwq_drained();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued item costs one arena node: 8 bytes of links and the entry. Kept within 48
    /// bytes, the node with the arena's own tag fills one 64-byte line (B1 queues a million
    /// of them, and the arena's fresh pages were a fifth of its profile).
    #[test]
    fn an_entry_fits_in_48_bytes() {
        assert_eq!(std::mem::size_of::<Job>(), 32);
        assert_eq!(std::mem::size_of::<Item>(), 32, "the item's tag lives in the job's");
        assert!(std::mem::size_of::<Entry>() <= 48, "{}", std::mem::size_of::<Entry>());
    }

    #[test]
    fn two_word_closures_are_inline_and_larger_ones_boxed() {
        let (a, b) = (std::sync::Arc::new(1u64), std::sync::Arc::new(2u64));
        let (a2, b2) = (a.clone(), b.clone());
        let job = Job::new(move || assert_eq!(*a2 + *b2, 3));
        assert!(matches!(job, Job::Inline(_)));
        job.run();
        assert_eq!((std::sync::Arc::strong_count(&a), std::sync::Arc::strong_count(&b)), (1, 1));
        let big = [7u64; 3];
        let job = Job::new(move || assert_eq!(big.iter().sum::<u64>(), 21));
        assert!(matches!(job, Job::Boxed(_)));
        job.run();
    }

    /// A job dropped without being run (a workqueue destroyed with it queued, a cancelled
    /// flood) drops what its closure captured exactly once, inline or boxed; under Miri this
    /// also checks `stack_dst`'s unsafe storage (no double drop, no leak, no misaligned read).
    #[test]
    fn an_unrun_job_drops_its_captures_once() {
        let a = std::sync::Arc::new(0u64);
        let a2 = a.clone();
        let inline = Job::new(move || drop(a2));
        assert!(matches!(inline, Job::Inline(_)));
        assert_eq!(std::sync::Arc::strong_count(&a), 2);
        drop(inline);
        assert_eq!(std::sync::Arc::strong_count(&a), 1, "the inline closure's capture was dropped");
        let (a3, pad) = (a.clone(), [1u64; 4]);
        let boxed = Job::new(move || drop((a3, pad)));
        assert!(matches!(boxed, Job::Boxed(_)));
        drop(boxed);
        assert_eq!(std::sync::Arc::strong_count(&a), 1, "the boxed closure's capture was dropped");
    }

    /// A closure aligned beyond a word is boxed (`stack_dst` would panic on it) and runs with
    /// its capture intact.
    #[test]
    fn an_over_aligned_closure_is_boxed_and_runs() {
        #[derive(Clone, Copy)]
        #[repr(align(32))]
        struct Wide(u8);
        let w = Wide(7);
        let hit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = hit.clone();
        let job = Job::new(move || {
            assert_eq!(std::ptr::from_ref(&w).addr() % 32, 0, "the capture is aligned");
            h.store(w.0 == 7, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(matches!(job, Job::Boxed(_)));
        job.run();
        assert!(hit.load(std::sync::atomic::Ordering::Relaxed));
    }
}
