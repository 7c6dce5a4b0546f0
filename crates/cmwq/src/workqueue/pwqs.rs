//! A workqueue's pwqs: the table queueing reads, and the list behind the workqueue lock
//! (the kernel's `wq->cpu_pwq` and `wq->pwqs` under `wq->mutex`; docs/design.md §7).
//!
//! * Queueing reads the [`PwqTable`] through one indirection (`ArcCell`, an RCU-like pointer)
//!   without a lock: the pwq of each CPU (per-CPU workqueues) or the single one (unbound).
//! * [`WqLocked`] holds every pwq the workqueue still has, the live ones and the retired ones
//!   that still drain, with the flush colours: a flush, a drain, a destroy and the statistics
//!   walk this list, so they see the items of retired pwqs too.
//! * Replacing the pwqs (`apply_workqueue_attrs`: attributes changed at runtime) links new pwqs
//!   with the current work colour under the lock, swaps the table, and retires the old ones:
//!   they take no new items (except an item redirected to the pwq where it runs now, for
//!   non-reentrancy) and are released once nothing is in flight there and no mayday entry
//!   holds them (`pwq_release`, run on the timer service). Their counters are kept.
//!
//! Invariant: a queueing that loaded the old table and lands on a retired pwq is still counted
//! there, so flushes that walk the list wait for it; nothing is lost, since a pwq is released
//! only when it has nothing in flight.

use super::info::WqInfo;
use super::WqShared;
use crate::flush::FlushLocked;
use crate::pool::{Pwq, WorkerPool};
use crate::stats::WqStats;
use crate::sync::{Arc, Ordering};
use crate::sys::current_cpu;

/// The pwqs new items go to. I: replaced whole, never changed in place.
#[derive(Debug)]
pub(super) enum PwqTable {
    /// One per CPU, in that CPU's normal or highpri pool.
    PerCpu(Vec<Pwq>),
    /// One, in the shared unbound pool.
    Unbound(Pwq),
}

impl PwqTable {
    /// The pwq a queueing lands on before the non-reentrancy redirect: the only one of an
    /// unbound workqueue, else that of `cpu` or of the CPU the caller runs on.
    pub(super) fn local(&self, cpu: Option<usize>) -> &Pwq {
        match self {
            PwqTable::Unbound(p) => p,
            PwqTable::PerCpu(v) => &v[cpu.unwrap_or_else(|| current_cpu(v.len()))],
        }
    }

    /// Every pwq of the table.
    #[cfg_attr(any(not(test), loom, shuttle), allow(dead_code))]
    fn all(&self) -> &[Pwq] {
        match self {
            PwqTable::PerCpu(v) => v,
            PwqTable::Unbound(p) => std::slice::from_ref(p),
        }
    }
}

/// The workqueue's state behind its lock (`wq->mutex`): the flush colours and every pwq.
#[derive(Debug)]
pub(super) struct WqLocked {
    /// The workqueue side of the flush colours.
    pub(crate) flush: FlushLocked,
    /// Every pwq not yet released: those of the table, then retired ones (`wq->pwqs`).
    pwqs: Vec<Pwq>,
    /// Counters of the pwqs released so far, so that `Workqueue::stats` never goes back.
    released: WqStats,
}

impl WqLocked {
    pub(super) fn new(pwqs: Vec<Pwq>) -> WqLocked {
        WqLocked { flush: FlushLocked::default(), pwqs, released: WqStats::default() }
    }

    /// The flush colours and the pwqs to flush (`flush::flush_workqueue` takes them apart).
    pub(super) fn flush_parts(&mut self) -> (&mut FlushLocked, &[Pwq]) {
        (&mut self.flush, &self.pwqs)
    }
}

impl WqShared {
    /// The active limit every pwq gets: `max_active`, or 0 while the runtime is `frozen`.
    fn effective_max_active(&self, frozen: bool) -> usize {
        if self.info.flags.freezable && frozen {
            0
        } else {
            self.max_active.load(Ordering::Relaxed)
        }
    }

    /// Creates the workqueue's pwqs on `pools` (one per CPU, or the unbound one).
    pub(super) fn make_table(
        info: &Arc<WqInfo>,
        pools: &[Arc<WorkerPool>],
        unbound: bool,
        max_active: usize,
        work_color: u8,
    ) -> PwqTable {
        let owner: Arc<dyn crate::pool::PwqOwner> = info.clone();
        let cpu_intensive = info.flags.cpu_intensive;
        let mut pwqs = pools.iter().map(|p| Pwq::new(p, owner.clone(), cpu_intensive, max_active, work_color));
        if unbound {
            PwqTable::Unbound(pwqs.next().expect("one unbound pool"))
        } else {
            PwqTable::PerCpu(pwqs.collect())
        }
    }

    /// Calls `f` with every pwq not yet released, under the workqueue lock.
    pub(crate) fn for_each_pwq(&self, mut f: impl FnMut(&Pwq)) {
        for p in &self.mutex.lock().pwqs {
            f(p)
        }
    }

    /// Whether `f` holds for some pwq not yet released.
    pub(crate) fn any_pwq(&self, mut f: impl FnMut(&Pwq) -> bool) -> bool {
        self.mutex.lock().pwqs.iter().any(&mut f)
    }

    /// The counters summed over every pwq, released ones included.
    pub(super) fn stats(&self) -> WqStats {
        let l = self.mutex.lock();
        let mut s = l.released;
        for p in &l.pwqs {
            s.add(&p.lock().pwq_stats(p.slot()));
        }
        s
    }

    /// Sets every pwq's active limit (`max_active`, or 0 while `frozen`), activating what the
    /// new limit allows (`wq_adjust_max_active`). Called with the runtime's workqueue-list
    /// lock held (`Shared::with_frozen`), which orders it against freezing.
    pub(crate) fn set_pwq_max_active(&self, frozen: bool) {
        let l = self.mutex.lock();
        let max = self.effective_max_active(frozen);
        for p in &l.pwqs {
            p.lock().pwq_set_max_active(p.slot(), max);
        }
    }

    /// Replaces every pwq of the table with a new one on the same pool (the shape of
    /// `apply_workqueue_attrs`, which the attribute work builds on): new items go to the new
    /// pwqs at once; the old ones are retired, run what they have, and are released when
    /// empty. Items in flight are neither lost nor run twice at once.
    // Used by the attribute work that follows (`apply_workqueue_attrs`); exercised by the
    // tests below until then.
    #[cfg_attr(any(not(test), loom, shuttle), allow(dead_code))]
    fn replace_pwqs(&self) {
        // As `apply_workqueue_attrs` holds `wq_pool_mutex`: a freeze cannot slip in between.
        self.rt.shared().with_frozen(|frozen| self.replace_pwqs_locked(frozen));
    }

    #[cfg_attr(any(not(test), loom, shuttle), allow(dead_code))]
    fn replace_pwqs_locked(&self, frozen: bool) {
        let mut l = self.mutex.lock();
        let old: Arc<PwqTable> = (*self.table.load()).clone();
        let pools: Vec<Arc<WorkerPool>> = old.all().iter().map(|p| p.pool().clone()).collect();
        let unbound = matches!(*old, PwqTable::Unbound(_));
        let table =
            WqShared::make_table(&self.info, &pools, unbound, self.effective_max_active(frozen), l.flush.work_color());
        // Linked first: a flush from now on waits for the new pwqs too.
        l.pwqs.splice(0..0, table.all().iter().cloned());
        self.table.store(Arc::new(table));
        for p in old.all() {
            p.lock().pwq_retire(p.slot());
        }
        self.release_locked(&mut l);
    }

    /// Releases the retired pwqs that hold nothing any more (`pwq_release`).
    pub(super) fn release_retired(&self) {
        let mut l = self.mutex.lock();
        self.release_locked(&mut l);
    }

    fn release_locked(&self, l: &mut WqLocked) {
        let WqLocked { pwqs, released, .. } = l;
        pwqs.retain(|p| {
            let mut g = p.lock();
            if !g.pwq_releasable(p.slot()) {
                return true;
            }
            released.add(&g.pwq_unlink(p.slot()));
            false
        });
    }

    /// Detaches every pwq from its pool; only once nothing is in flight and no handle is left
    /// (so nothing can queue any more).
    pub(super) fn detach(&self) {
        let mut l = self.mutex.lock();
        for p in std::mem::take(&mut l.pwqs) {
            p.lock().pwq_unlink(p.slot());
        }
    }
}

// A test harness of plain threads around a real runtime (never model checked: not(loom)), so
// its own waiting uses std directly rather than the facade the library goes through.
#[cfg(all(test, not(loom), not(shuttle)))]
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
mod tests {
    use crate::{Runtime, Work};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// A gate items wait on, opened once; every wait has a deadline, so a bug fails the test
    /// instead of hanging it.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<bool>, Condvar)>);

    impl Gate {
        fn open(&self) {
            *self.0 .0.lock().unwrap() = true;
            self.0 .1.notify_all();
        }
        fn wait(&self) {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut open = self.0 .0.lock().unwrap();
            while !*open {
                let left = deadline.checked_duration_since(Instant::now()).expect("gate never opened");
                open = self.0 .1.wait_timeout(open, left).unwrap().0;
            }
        }
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Replacing a workqueue's pwqs while items run, wait inactive and keep coming loses none,
    /// runs none twice at once (an item queued again while it runs on a retired pwq is sent
    /// there), makes a flush wait for the retired pwqs' items too, keeps the counters, and
    /// releases the retired pwqs once they are empty.
    #[test]
    #[cfg_attr(miri, ignore = "a real runtime: threads, /proc, affinity")]
    fn replacing_pwqs_with_items_in_flight_loses_none() {
        let rt = Runtime::builder().cpus(2).pin_workers(false).build();
        let wq = rt.workqueue("replace").max_active(1).build().unwrap();
        let gate = Gate::default();
        // Opens the gate however the test ends, so a failed assertion does not leave the
        // blocker (and the runtime's drop) waiting.
        struct OpenOnDrop(Gate);
        impl Drop for OpenOnDrop {
            fn drop(&mut self) {
                self.0.open();
            }
        }
        let _open = OpenOnDrop(gate.clone());
        // `overlap`: some item found itself already running (each item has its own `live`
        // count: different items may run at once, on different pwqs and CPUs).
        let (ran, overlap) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        // The blocker runs on CPU 0's old pwq until the gate opens.
        let blocker_in = Arc::new(AtomicBool::new(false));
        let (g, bi, r, o, l) =
            (gate.clone(), blocker_in.clone(), ran.clone(), overlap.clone(), Arc::new(AtomicUsize::new(0)));
        let blocker = Work::new(move |_| {
            if l.fetch_add(1, Ordering::SeqCst) > 0 {
                o.store(true, Ordering::SeqCst);
            }
            bi.store(true, Ordering::SeqCst);
            g.wait();
            r.fetch_add(1, Ordering::SeqCst);
            l.fetch_sub(1, Ordering::SeqCst);
        });
        let item = |ran: &Arc<AtomicUsize>| {
            let (r, o, l) = (ran.clone(), overlap.clone(), Arc::new(AtomicUsize::new(0)));
            Work::new(move |_| {
                if l.fetch_add(1, Ordering::SeqCst) > 0 {
                    o.store(true, Ordering::SeqCst);
                }
                r.fetch_add(1, Ordering::SeqCst);
                l.fetch_sub(1, Ordering::SeqCst);
            })
        };
        assert!(wq.queue_on(0, &blocker));
        wait_for("the blocker to run", || blocker_in.load(Ordering::SeqCst));
        // Inactive behind it on the old pwq (max_active 1).
        let old_inactive: Vec<Work> = (0..5).map(|_| item(&ran)).collect();
        for w in &old_inactive {
            assert!(wq.queue_on(0, w));
        }
        assert_eq!(wq.pwqs().len(), 2);
        wq.shared().replace_pwqs();
        let infos = wq.pwqs();
        assert_eq!(
            infos.len(),
            3,
            "two new pwqs and CPU 0's retired one, draining (CPU 1's was empty: released at once)"
        );
        assert_eq!(infos.iter().filter(|p| p.retired).count(), 1);
        let old0 = infos.iter().find(|p| p.retired && p.cpu == Some(0)).unwrap();
        assert_eq!((old0.nr_active, old0.nr_inactive), (1, 5), "the old pwq keeps what it had");
        // The blocker queued again while it runs on the retired pwq: it must go there (the
        // non-reentrancy redirect), not to the new pwq, where it could run at once.
        wq.queue_on(1, &blocker);
        let old0 = wq.pwqs().into_iter().find(|p| p.retired && p.cpu == Some(0)).unwrap();
        assert_eq!(old0.in_flight, 1 + 5 + 1, "the requeued blocker went to the retired pwq");
        // New items go to the new pwqs and run while the old pwq is still blocked.
        let new_items: Vec<Work> = (0..6).map(|_| item(&ran)).collect();
        for (i, w) in new_items.iter().enumerate() {
            assert!(wq.queue_on(i % 2, w));
        }
        wait_for("the new pwqs' items", || ran.load(Ordering::SeqCst) == 6);
        // A flush now must wait for the retired pwq's items too.
        let flushed = Arc::new(AtomicBool::new(false));
        let (wq2, f2) = (wq.clone(), flushed.clone());
        let flusher = std::thread::spawn(move || {
            wq2.flush();
            f2.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!flushed.load(Ordering::SeqCst), "the flush returned while the retired pwq still had items");
        gate.open();
        wait_for("the flush", || flushed.load(Ordering::SeqCst));
        flusher.join().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 6 + 1 + 5 + 1, "every item ran, the blocker twice");
        assert!(!overlap.load(Ordering::SeqCst), "an item ran twice at once");
        // The retired pwqs are released (on the timer service) and their counters kept.
        wait_for("the retired pwqs to be released", || wq.pwqs().len() == 2);
        assert!(wq.pwqs().iter().all(|p| !p.retired));
        let st = wq.stats();
        assert_eq!((st.started, st.completed), (13, 13), "the released pwqs' counters are kept");
    }
}
