//! Workqueues: a name, flags, `max_active`, and one pool-workqueue per pool used
//! (kernel-notes §1.2, §2.2 `__queue_work`, §3.1, §3.5).
//!
//! Queueing (`queue_work_on` + `__queue_work`):
//! 1. Claim PENDING with one atomic RMW; if it was set, return `false`: the pending instance
//!    covers this request. If the item is disabled, give PENDING back and return `false`.
//! 2. If the workqueue is draining or being destroyed, refuse, unless the caller is one of its
//!    own items (chained queueing).
//! 3. Pick the pwq from the pwq table (read without a lock; `pwqs.rs`): a per-CPU workqueue
//!    uses the pwq of the given CPU or of the CPU the caller runs on; an unbound one its single
//!    pwq in the shared unbound pool.
//! 4. Non-reentrancy redirect: if the item last ran in another pool and a worker there runs it
//!    right now for this workqueue, queue it on that worker's pwq instead (under that pool's
//!    lock; a retired pwq too), so the pool hands it to that worker and it never runs twice at
//!    once.
//! 5. Append it to the pool's inbox (`pool::inbox`); the next pool-lock holder moves it onto
//!    the lists: active on the worklist (and kick the pool) if the pwq is below `max_active`
//!    and nothing waits before it, else onto the pwq's inactive list.
//!
//! Files: `builder` (names, flags, limits), `info` (what the pwqs know of the workqueue, and
//! where their events go), `pwqs` (the pwq table, the workqueue lock, replacement and release),
//! `system` (the system workqueues), `cancel` (grabbing, cancelling and disabling items),
//! `delayed` (delayed items and their timers). Drain and destroy: docs/design.md §7.

pub(crate) mod builder;
pub(crate) mod cancel;
pub(crate) mod delayed;
mod info;
mod pwqs;
pub(crate) mod system;

pub(crate) use info::WqInfo;
use pwqs::{PwqTable, WqLocked};

use crate::clock::Sleeper;
use crate::error::Error;
use crate::flush::FlushShared;
use crate::rescuer::Rescuer;
use crate::runtime::Runtime;
use crate::stats::WqStats;
use crate::sync::{Arc, ArcCell, AtomicBool, AtomicUsize, Mutex, Ordering, Weak};
use crate::warn::{Warning, WarningKind};
use crate::work::Work;
pub use builder::WorkqueueBuilder;
use delayed::DelayedTimer;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;

/// Workqueue flags (`WQ_*`, kernel-notes §8). I: fixed at creation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WqFlags {
    /// `WQ_UNBOUND`.
    pub(crate) unbound: bool,
    /// `WQ_HIGHPRI`.
    pub(crate) highpri: bool,
    /// `WQ_CPU_INTENSIVE`.
    pub(crate) cpu_intensive: bool,
    /// `WQ_FREEZABLE`.
    pub(crate) freezable: bool,
    /// `WQ_MEM_RECLAIM`: a rescuer guarantees forward progress.
    pub(crate) mem_reclaim: bool,
    /// `__WQ_ORDERED`.
    pub(crate) ordered: bool,
}

/// A panic caught in a work item, as handed to a workqueue's panic handler.
#[derive(Debug)]
pub struct WorkPanic<'a> {
    /// The workqueue's name.
    pub workqueue: &'a str,
    /// The item that panicked; `None` for a closure run by [`Workqueue::spawn`].
    pub work: Option<&'a Work>,
    /// The panic payload.
    pub payload: &'a (dyn Any + Send),
}

impl WorkPanic<'_> {
    /// The panic message, if the payload is a string.
    pub fn message(&self) -> Option<&str> {
        self.payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| self.payload.downcast_ref::<String>().map(String::as_str))
    }
}

/// A workqueue's panic handler.
type PanicHandler = Arc<dyn Fn(&WorkPanic<'_>) + Send + Sync>;

/// The shared part of a workqueue: kept alive by its handles and by armed delayed items.
pub(crate) struct WqShared {
    /// I: what its pwqs know of it.
    pub(crate) info: Arc<WqInfo>,
    /// The pwqs new items go to, read by every queueing without a lock; replaced whole under
    /// `mutex` (`pwqs.rs`).
    table: ArcCell<PwqTable>,
    /// The active limit per pwq (`wq->saved_max_active`). Written under `mutex`; Relaxed:
    /// readers only report it, the limits in force are the pwqs' (set under their pool locks).
    max_active: AtomicUsize,
    /// The flush colours and every pwq not yet released (`wq->mutex`); taken before any pool
    /// lock.
    mutex: Mutex<WqLocked>,
    /// I: the runtime.
    rt: Runtime,
}

/// A workqueue. Cheap to clone; dropping the last handle destroys it (drains, then detaches
/// it from its pools).
#[derive(Clone)]
pub struct Workqueue {
    handle: Arc<WqHandle>,
}

struct WqHandle {
    wq: Arc<WqShared>,
}

impl Drop for WqHandle {
    fn drop(&mut self) {
        if self.wq.destroy() {
            self.wq.detach();
        }
    }
}

impl fmt::Debug for Workqueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wq = &self.handle.wq;
        f.debug_struct("Workqueue")
            .field("name", &wq.info.name)
            .field("flags", &wq.info.flags)
            .field("max_active", &wq.max_active.load(Ordering::Relaxed))
            .finish()
    }
}

impl Workqueue {
    /// A builder for a workqueue on the global runtime.
    pub fn builder(name: &str) -> WorkqueueBuilder {
        Runtime::global().workqueue(name)
    }

    fn create(
        rt: Runtime,
        name: String,
        flags: WqFlags,
        max_active: usize,
        panic_handler: Option<PanicHandler>,
    ) -> Result<Workqueue, Error> {
        let shared = rt.shared().clone();
        let nr_pwqs = if flags.unbound { 1 } else { shared.env.config.nr_cpus };
        // The rescuer first: if it cannot be created, nothing else has been set up.
        let rescuer = if flags.mem_reclaim {
            Some(Rescuer::start(&shared.env, &name, nr_pwqs).map_err(Error::Spawn)?)
        } else {
            None
        };
        // Then the unbound pool, the other step that can fail.
        let unbound_pool = if flags.unbound {
            match shared.unbound_pool(flags.highpri) {
                Ok(pool) => Some(pool),
                Err(e) => {
                    if let Some(r) = &rescuer {
                        r.stop();
                    }
                    return Err(e);
                }
            }
        } else {
            None
        };
        let pools: Vec<Arc<crate::pool::WorkerPool>> = match unbound_pool {
            Some(pool) => vec![pool],
            None => (0..shared.env.config.nr_cpus)
                .map(|cpu| shared.cpu_pools[2 * cpu + usize::from(flags.highpri)].clone())
                .collect(),
        };
        // Under the workqueue-list lock, so that a freeze cannot slip in between.
        let wq = shared.register_workqueue(|frozen| {
            // Cyclic: the info (held by the pwqs) names the workqueue weakly.
            Arc::new_cyclic(|me: &Weak<WqShared>| {
                let info = Arc::new(WqInfo {
                    id: shared.next_wq_id.fetch_add(1, Ordering::Relaxed),
                    name: name.into(),
                    flags,
                    destroying: AtomicBool::new(false),
                    nr_drainers: AtomicUsize::new(0),
                    drained: Sleeper::new(),
                    flush: FlushShared::default(),
                    panic_handler,
                    rescuer,
                    shared: me.clone(),
                    armed: Mutex::new(HashMap::new()),
                });
                let limit = if flags.freezable && frozen { 0 } else { max_active };
                let table = WqShared::make_table(&info, &pools, flags.unbound, limit, 0);
                let all = match &table {
                    PwqTable::PerCpu(v) => v.clone(),
                    PwqTable::Unbound(p) => vec![p.clone()],
                };
                WqShared {
                    info,
                    table: ArcCell::new(Arc::new(table)),
                    max_active: AtomicUsize::new(max_active),
                    mutex: Mutex::new(WqLocked::new(all)),
                    rt,
                }
            })
        });
        Ok(Workqueue { handle: Arc::new(WqHandle { wq }) })
    }

    pub(crate) fn shared(&self) -> &Arc<WqShared> {
        &self.handle.wq
    }
}

impl Workqueue {
    /// Queues `work` on this workqueue (`queue_work`): on the pool of the CPU the caller runs
    /// on for a per-CPU workqueue. Returns `false` if it was already pending (nothing changes:
    /// the pending instance covers this request), disabled, or refused because the workqueue is
    /// draining or being destroyed (with a warning; [`Workqueue::try_queue`] returns that as an
    /// error).
    pub fn queue(&self, work: &Work) -> bool {
        self.handle.wq.queue_work(None, work).unwrap_or_else(|e| warn(&e))
    }

    /// Like [`Workqueue::queue`], but says why a refused queueing was refused.
    pub fn try_queue(&self, work: &Work) -> Result<bool, Error> {
        self.handle.wq.queue_work(None, work)
    }

    /// Queues `work` on the pool of `cpu` (`queue_work_on`); for unbound workqueues the CPU is
    /// only checked. A CPU that does not exist is refused with a warning (`try_queue_on` returns
    /// the error).
    pub fn queue_on(&self, cpu: usize, work: &Work) -> bool {
        self.handle.wq.queue_work(Some(cpu), work).unwrap_or_else(|e| warn(&e))
    }

    /// Like [`Workqueue::queue_on`], but says why a refused queueing was refused.
    pub fn try_queue_on(&self, cpu: usize, work: &Work) -> Result<bool, Error> {
        self.handle.wq.queue_work(Some(cpu), work)
    }

    /// Runs `f` once on this workqueue (a one-shot item). Returns `false` if refused.
    pub fn spawn<F>(&self, f: F) -> bool
    where
        F: FnOnce() + Send + 'static,
    {
        self.handle.wq.spawn(f).unwrap_or_else(|e| warn(&e))
    }

    /// Waits until every item queued before the call has finished, and not for items queued
    /// after it (`flush_workqueue`, with the kernel's 16 flush colours; docs/design.md §8).
    ///
    /// Called from one of this workqueue's own items it would wait for the caller itself: it
    /// then warns (a [`Warning`](crate::Warning) of kind
    /// [`FlushFromOwnItem`](crate::WarningKind::FlushFromOwnItem)) and returns at once without
    /// waiting, as [`Work::flush`] does from its own item; [`Workqueue::try_flush`] returns
    /// that as an error instead.
    pub fn flush(&self) {
        if let Err(e) = self.try_flush() {
            self.handle.wq.warn_own_item(&e);
        }
    }

    /// Like [`Workqueue::flush`], but from one of this workqueue's own items returns
    /// [`Error::FlushFromOwnItem`] at once (no warning) instead of waiting.
    pub fn try_flush(&self) -> Result<(), Error> {
        let wq = &self.handle.wq;
        wq.refuse_own_item("flush")?;
        if cfg!(debug_assertions) {
            let target: Arc<dyn crate::pool::PwqOwner> = wq.info.clone();
            crate::debug::check_flush_dependency(crate::debug::current_wq().as_ref(), &target);
        }
        wq.flush();
        Ok(())
    }

    /// Waits until the workqueue is empty (`drain_workqueue`): meanwhile only its own items may
    /// queue on it (chained queueing); queueing from outside is refused with
    /// [`Error::Draining`]. Flushes until nothing is left, warning when that takes many rounds:
    /// at the kernel's cadence (the 10th flush, then every 100th up to the 1000th) and, as
    /// cmwq's extension, every 1000th after that for as long as it lasts.
    ///
    /// From one of this workqueue's own items it warns and returns at once, as
    /// [`Workqueue::flush`] does; [`Workqueue::try_drain`] returns that as an error instead.
    pub fn drain(&self) {
        if let Err(e) = self.try_drain() {
            self.handle.wq.warn_own_item(&e);
        }
    }

    /// Like [`Workqueue::drain`], but from one of this workqueue's own items returns
    /// [`Error::FlushFromOwnItem`] at once (no warning) instead of waiting.
    pub fn try_drain(&self) -> Result<(), Error> {
        self.handle.wq.refuse_own_item("drain")?;
        self.handle.wq.drain();
        Ok(())
    }

    /// The workqueue's counters, summed over its pools.
    pub fn stats(&self) -> WqStats {
        self.handle.wq.stats()
    }

    /// The workqueue's name.
    pub fn name(&self) -> &str {
        &self.handle.wq.info.name
    }

    /// The active limit (per pool for per-CPU workqueues).
    pub fn max_active(&self) -> usize {
        self.handle.wq.max_active.load(Ordering::Relaxed)
    }

    /// Changes the active limit at runtime (`workqueue_set_max_active`): clamped to
    /// 1..=[`WQ_MAX_ACTIVE`](crate::WQ_MAX_ACTIVE) as the kernel clamps it; a raise activates
    /// at once what the new limit allows, a cut lets the items already active finish and
    /// starts no more until the count is below the new limit. Refused for an ordered
    /// workqueue, whose limit of one is what makes it ordered ([`Error::InvalidAttrs`]). While the
    /// runtime is frozen a freezable workqueue keeps starting nothing; the new limit applies
    /// when it thaws.
    pub fn set_max_active(&self, max_active: usize) -> Result<(), Error> {
        let wq = &self.handle.wq;
        if wq.info.flags.ordered {
            return Err(Error::InvalidAttrs("max_active of an ordered workqueue stays 1"));
        }
        let n = max_active.clamp(1, crate::WQ_MAX_ACTIVE);
        wq.rt.shared().with_frozen(|frozen| {
            wq.max_active.store(n, Ordering::Relaxed);
            wq.set_pwq_max_active(frozen);
        });
        Ok(())
    }

    /// Destroys the workqueue now (`destroy_workqueue`): from here on queueing from outside is
    /// refused with [`Error::Destroyed`] (its own items may still queue, as chained work);
    /// delayed items armed for it are queued at once; and this waits until everything has
    /// run, flushing round after round and warning at [`Workqueue::drain`]'s cadence while
    /// items keep coming (an item requeueing itself), naming them. Dropping the last handle
    /// does the same and then detaches the workqueue from its pools. Idempotent.
    pub fn destroy(&self) {
        self.handle.wq.destroy();
    }

    /// The runtime this workqueue belongs to.
    pub fn runtime(&self) -> &Runtime {
        &self.handle.wq.rt
    }
}

/// Reports a refused queueing (the `bool` calls' warning; the `try_` calls return the error).
fn warn(e: &Error) -> bool {
    eprintln!("cmwq: queueing refused: {e}");
    false
}

/// Queueing an item again from its own work function (the workqueue is the one of the item
/// the calling worker runs).
impl Work {
    /// From a work function: queues `self` again on the workqueue of the item the calling
    /// worker runs (the kernel's `queue_work(wq, work)` inside a work function; see "Queueing
    /// itself again" above). Returns `false` if it was already pending or disabled, or if the
    /// queueing was refused (with a warning): outside a work function. While the workqueue
    /// drains or is destroyed its own items may still queue (chained work), as with
    /// [`Workqueue::queue`](crate::Workqueue::queue). [`Work::try_requeue`] says why.
    pub fn requeue(&self) -> bool {
        self.try_requeue().unwrap_or_else(|e| warn(&e))
    }

    /// Like [`Work::requeue`], saying why a refusal was refused: [`Error::NotInWorker`]
    /// outside a work function.
    pub fn try_requeue(&self) -> Result<bool, Error> {
        WqShared::of_current_item()?.queue_work(None, self)
    }
}

impl WqShared {
    /// Checks a CPU number against the runtime.
    fn check_cpu(&self, cpu: Option<usize>) -> Result<(), Error> {
        let nr_cpus = self.rt.nr_cpus();
        match cpu {
            Some(c) if c >= nr_cpus => Err(Error::InvalidCpu { cpu: c, nr_cpus }),
            _ => Ok(()),
        }
    }

    /// Refuses queueing from outside while draining or destroying (chained queueing passes).
    fn check_accepting(&self) -> Result<(), Error> {
        let destroying = self.info.destroying.load(Ordering::Acquire);
        let draining = self.info.nr_drainers.load(Ordering::Acquire) > 0;
        if (destroying || draining) && !self.is_chained() {
            let name = self.info.name.to_string();
            return Err(if destroying { Error::Destroyed { name } } else { Error::Draining { name } });
        }
        Ok(())
    }

    /// The workqueue of the item the calling worker (or rescuer) runs: where `Work::requeue`
    /// queues. Upgraded from the weak link in its info for the caller's call only, so that
    /// items need not hold their workqueue (a cycle that kept it, its runtime and every thread
    /// alive after the last handle went: issue 9, bug 7).
    fn of_current_item() -> Result<Arc<WqShared>, Error> {
        let owner = crate::debug::current_wq().ok_or(Error::NotInWorker)?;
        let info = owner.into_any().downcast::<WqInfo>().map_err(|_| Error::NotInWorker)?;
        // Gone only if its last handle was dropped from one of its own items (destroy then
        // does not wait): the item still runs, its workqueue is being destroyed.
        info.shared.upgrade().ok_or_else(|| Error::Destroyed { name: info.name.to_string() })
    }

    fn queue_work(&self, cpu: Option<usize>, work: &Work) -> Result<bool, Error> {
        self.check_cpu(cpu)?;
        let state = work.state();
        if !state.try_claim_pending() {
            return Ok(false);
        }
        if state.load().disable_depth() > 0 {
            state.release_claim();
            return Ok(false);
        }
        if let Err(e) = self.check_accepting() {
            state.release_claim();
            return Err(e);
        }
        self.enqueue(cpu, work.clone());
        Ok(true)
    }

    /// `spawn`: the closure is queued as an anonymous one-shot entry (`Item::Once`): nobody
    /// else can name it, so it needs no state word, no PENDING and no non-reentrancy check.
    fn spawn<F>(&self, f: F) -> Result<bool, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        self.check_accepting()?;
        self.table.load().local(None).submit_job(crate::work::job::Job::new(f));
        Ok(true)
    }

    /// Whether the caller is a worker running an item of this workqueue (chained queueing is
    /// allowed while draining or destroying).
    fn is_chained(&self) -> bool {
        self.current_own_item().is_some()
    }

    /// The item the caller runs, as `name (id)`, if the caller is a worker (or rescuer)
    /// running an item of this workqueue.
    fn current_own_item(&self) -> Option<String> {
        let (pool, me) = crate::pool::current_worker()?;
        if !Arc::ptr_eq(pool.env(), &self.rt.shared().env) {
            return None;
        }
        let (owner, item) = pool.lock().current_item(me)?;
        (owner == self.info.id).then_some(item)
    }

    /// Refuses a flush or drain from one of this workqueue's own items, before it enters the
    /// flush colours: that flush would wait for the caller's own colour, which cannot complete
    /// while the caller runs, and every later flusher would queue up behind it.
    fn refuse_own_item(&self, op: &'static str) -> Result<(), Error> {
        match self.current_own_item() {
            Some(item) => Err(Error::FlushFromOwnItem { name: self.info.name.to_string(), op, item }),
            None => Ok(()),
        }
    }

    /// Reports a refused flush or drain through the runtime's warning path.
    fn warn_own_item(&self, e: &Error) {
        let items = match e {
            Error::FlushFromOwnItem { item, .. } => vec![item.clone()],
            _ => Vec::new(),
        };
        let message = e.to_string();
        self.warn(WarningKind::FlushFromOwnItem, &items, &message);
    }

    /// Hands a warning about this workqueue to the runtime's warning handler. No lock held.
    fn warn(&self, kind: WarningKind, items: &[String], message: &str) {
        let w = Warning { kind, workqueue: &self.info.name, items, message };
        self.rt.shared().env.config.warning_handler.emit(&w);
    }

    /// Steps 3-5 of the module docs. The caller owns PENDING.
    fn enqueue(&self, cpu: Option<usize>, work: Work) {
        let table = self.table.load();
        let pwq = table.local(cpu);
        // The non-reentrancy redirect: the item last ran in another pool and a worker there
        // runs it right now for this workqueue: queue it on that pwq (a retired one too), so
        // that pool hands it to that worker.
        if let Some(last) = work.state().load().last_pool() {
            if last != pwq.pool().id() {
                if let Some(other) = crate::pool::lookup(last) {
                    let mut g = other.lock();
                    if let Some(slot) = g.running_in(&work, self.info.id) {
                        g.insert_work_item(slot, work);
                        return;
                    }
                }
            }
        }
        pwq.submit_work(work);
    }

    /// Whether every pwq is empty: nothing active, nothing inactive (`pwq_is_empty`).
    fn is_empty(&self) -> bool {
        !self.any_pwq(|p| !p.lock().pwq_is_empty(p.slot()))
    }

    fn flush(&self) {
        crate::flush::flush_workqueue(&self.mutex, &self.info.flush, WqLocked::flush_parts);
    }

    /// `drain_workqueue`: see [`Workqueue::drain`].
    fn drain(&self) {
        self.info.nr_drainers.fetch_add(1, Ordering::AcqRel);
        let mut flush_cnt = 0u32;
        loop {
            self.flush();
            if self.is_empty() {
                break;
            }
            flush_cnt = flush_cnt.saturating_add(1);
            self.warn_busy(WarningKind::DrainBusy { tries: flush_cnt }, "drain", flush_cnt);
        }
        self.info.nr_drainers.fetch_sub(1, Ordering::AcqRel);
    }

    /// Warns, at the kernel's cadence (`warn::busy_warning_due`), that `op` is still busy after
    /// `tries` rounds, naming the items in flight. No lock held.
    fn warn_busy(&self, kind: WarningKind, op: &str, tries: u32) {
        if !crate::warn::busy_warning_due(tries) {
            return;
        }
        let items = self.in_flight_items();
        let message = format!(
            "workqueue {:?}: {op} isn't complete after {tries} tries; in flight: {}",
            self.info.name,
            if items.is_empty() { "no item named".to_owned() } else { items.join(", ") }
        );
        self.warn(kind, &items, &message);
    }

    /// The items of this workqueue running or waiting on a worklist, as `name (id) running` or
    /// `name (id) queued`, at most `MAX_NAMED` of them and then `...` (a snapshot, for
    /// warnings; the kernel's `show_one_workqueue`).
    fn in_flight_items(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_pwq(|p| {
            if out.len() <= crate::warn::MAX_NAMED {
                p.lock().describe_pwq_items(p.slot(), crate::warn::MAX_NAMED + 1, &mut out);
            }
        });
        if out.len() > crate::warn::MAX_NAMED {
            out.truncate(crate::warn::MAX_NAMED);
            out.push("...".to_owned());
        }
        out
    }

    /// Destroys the workqueue (`destroy_workqueue`): refuses new work from outside, queues
    /// armed delayed items at once, and waits until nothing is armed or in flight. From one of
    /// its own items this cannot wait for itself, and while the thread unwinds from a panic
    /// waiting could block the unwind forever (an item in flight may wait for the code that
    /// panicked): it then only marks the queue as destroying and returns `false`; the items
    /// accepted still run, and the pwqs are left to be reclaimed with the runtime.
    fn destroy(&self) -> bool {
        self.info.destroying.store(true, Ordering::Release);
        let why = if self.is_chained() {
            "from one of its own items"
        } else if std::thread::panicking() {
            "during a panic"
        } else {
            ""
        };
        if !why.is_empty() {
            eprintln!("cmwq: workqueue {:?} destroyed {why}: not waiting for it to drain", self.info.name);
            return false;
        }
        let clock = self.rt.clock();
        let mut tries = 0u32;
        loop {
            self.fire_armed_now();
            let armed = !self.info.armed.lock().is_empty();
            let in_flight = self.any_pwq(|p| p.lock().pwq_in_flight(p.slot()) > 0);
            if in_flight {
                // As `destroy_workqueue` drains: flush, count the round, and warn at
                // `drain_workqueue`'s cadence while items keep coming (an item requeueing
                // itself), naming them.
                self.flush();
                tries = tries.saturating_add(1);
                self.warn_busy(WarningKind::DestroyBusy { tries }, "destroy", tries);
            } else if armed {
                // Only timers in the middle of firing are left: woken when they are done.
                clock.wait_until(&self.info.drained, None);
            } else {
                break;
            }
        }
        // Another destroyer may wait on the same sleeper, whose notification this one may have
        // consumed: hand the wake-up on (a spurious one costs a re-check). A shuttle twin test
        // can plant the bug of leaving this out (`sync::plant`).
        #[cfg(shuttle)]
        let hand_on = !self.rt.shared().env.config.planted(crate::sync::plant::Bug::DestroyerKeepsWakeUp);
        #[cfg(not(shuttle))]
        let hand_on = true;
        if hand_on {
            self.info.drained.notify();
        }
        // Drained: nothing can call for help any more; the rescuer empties its mayday list,
        // drops every reference, and exits.
        if let Some(r) = &self.info.rescuer {
            r.stop();
        }
        true
    }

    /// Queues every delayed item armed for this workqueue now (`flush_delayed_work`'s first
    /// half), so that destroy does not leave them behind.
    fn fire_armed_now(&self) {
        let armed: Vec<(Arc<DelayedTimer>, Work)> = self.info.armed.lock().values().cloned().collect();
        for (timer, work) in armed {
            timer.fire_now(&work);
        }
    }
}
