//! Workqueues: a name, flags, `max_active`, and one pool-workqueue per pool used
//! (spec §1.2, §2.2 `__queue_work`, §3.1, §3.5).
//!
//! Queueing (`queue_work_on` + `__queue_work`):
//! 1. Claim PENDING with one atomic RMW; if it was set, return `false`: the pending instance
//!    covers this request. If the item is disabled, give PENDING back and return `false`.
//! 2. If the workqueue is draining or being destroyed, refuse, unless the caller is one of its
//!    own items (chained queueing).
//! 3. Pick the pwq: a per-CPU workqueue uses the pool of the given CPU or of the CPU the caller
//!    runs on; an unbound one its single pwq in the shared unbound pool.
//! 4. Non-reentrancy redirect: if the item last ran in another pool of this workqueue and a
//!    worker there runs it right now, queue it there instead, so the pool hands it to that
//!    worker and it never runs twice at once.
//! 5. Under the pool lock: active on the worklist (and kick the pool) if the pwq is below
//!    `max_active` and nothing waits before it, else onto the pwq's inactive list.
//!
//! Drain and destroy: docs/design.md §7.

pub(crate) mod builder;
pub(crate) mod system;

use crate::clock::Sleeper;
use crate::error::Error;
use crate::flush::{FlushLocked, FlushShared};
use crate::pool::Item;
use crate::pwq::{Pwq, PwqLocked};
use crate::rescuer::Rescuer;
use crate::runtime::Runtime;
use crate::stats::WqStats;
use crate::sync::{Arc, AtomicBool, AtomicUsize, Mutex, Ordering, Weak};
use crate::sys::current_cpu;
use crate::warn::{Warning, WarningKind};
use crate::work::delayed::DelayedTimer;
use crate::work::Work;
pub use builder::WorkqueueBuilder;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;

/// Workqueue flags (`WQ_*`, spec §8). I: fixed at creation.
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
pub(crate) type PanicHandler = Arc<dyn Fn(&WorkPanic<'_>) + Send + Sync>;

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
    pub(crate) fn pwq_drained(&self) {
        self.wake_destroyer();
    }

    /// Something a destroyer waits for went away (an item in flight, an armed timer): wake it.
    /// Called after the change, under the lock that guards it (the pool lock, the `armed`
    /// lock) or after releasing it: a destroyer that checked before the change sees
    /// `destroying` set here (it stored it before taking that lock), so it is woken; one that
    /// checks after sees the change.
    pub(crate) fn wake_destroyer(&self) {
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
    pub(crate) fn forget_armed(&self, key: ArmedKey) {
        let removed = self.armed.lock().remove(&key);
        self.wake_destroyer();
        // The removed handles drop after the lock: a drop may run user destructors.
        drop(removed);
    }

    /// Hands a caught panic to the handler. No lock held.
    pub(crate) fn report_panic(&self, work: Option<&Work>, payload: Box<dyn Any + Send>) {
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

/// The pwqs of a workqueue.
#[derive(Debug)]
enum Pwqs {
    /// One per CPU, in that CPU's normal or highpri pool.
    PerCpu(Vec<Pwq>),
    /// One, in the shared unbound pool.
    Unbound(Pwq),
}

/// An arming in `WqInfo::armed`: the timer's identity (`DelayedTimer::key`) and the
/// arming's generation.
pub(crate) type ArmedKey = (usize, u64);

/// The shared part of a workqueue: kept alive by its handles and by armed delayed items.
pub(crate) struct WqShared {
    pub(crate) info: Arc<WqInfo>,
    pwqs: Pwqs,
    /// I: the active limit per pwq.
    pub(crate) max_active: usize,
    /// The workqueue side of the flush colours (`wq->mutex`).
    flush_lock: Mutex<FlushLocked>,
    pub(crate) rt: Runtime,
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
            .field("max_active", &wq.max_active)
            .finish()
    }
}

impl Workqueue {
    /// A builder for a workqueue on the global runtime.
    pub fn builder(name: &str) -> WorkqueueBuilder {
        Runtime::global().workqueue(name)
    }

    pub(crate) fn create(
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
        let frozen = flags.freezable && shared.is_frozen();
        // Cyclic: the info (held by the pwqs) names the workqueue weakly.
        let wq = Arc::new_cyclic(|me: &Weak<WqShared>| {
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
            let attach = |pool: &Arc<crate::pool::WorkerPool>| {
                let mut pwq = PwqLocked::new(info.clone(), max_active);
                if frozen {
                    pwq.max_active = 0;
                }
                let slot = pool.lock().pwqs.insert(pwq) as u32;
                Pwq { pool: pool.clone(), slot }
            };
            let pwqs = match &unbound_pool {
                Some(pool) => Pwqs::Unbound(attach(pool)),
                None => {
                    let n = shared.env.config.nr_cpus;
                    Pwqs::PerCpu(
                        (0..n).map(|cpu| attach(&shared.cpu_pools[2 * cpu + usize::from(flags.highpri)])).collect(),
                    )
                }
            };
            WqShared::new(info, pwqs, max_active, rt)
        });
        shared.register_workqueue(&wq);
        Ok(Workqueue { handle: Arc::new(WqHandle { wq }) })
    }

    pub(crate) fn shared(&self) -> &Arc<WqShared> {
        &self.handle.wq
    }
}

impl WqShared {
    fn new(info: Arc<WqInfo>, pwqs: Pwqs, max_active: usize, rt: Runtime) -> WqShared {
        WqShared { info, pwqs, max_active, flush_lock: Mutex::new(FlushLocked::default()), rt }
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
            crate::debug::check_flush_dependency(crate::debug::current_wq().as_ref(), &wq.info);
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
        let mut s = WqStats::default();
        for pwq in self.handle.wq.pwq_list() {
            let g = pwq.pool.lock();
            s.add(&g.pwqs[pwq.slot as usize].stats);
        }
        s
    }

    /// The workqueue's name.
    pub fn name(&self) -> &str {
        &self.handle.wq.info.name
    }

    /// The active limit (per pool for per-CPU workqueues).
    pub fn max_active(&self) -> usize {
        self.handle.wq.max_active
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
pub(crate) fn warn(e: &Error) -> bool {
    eprintln!("cmwq: queueing refused: {e}");
    false
}

impl WqShared {
    pub(crate) fn pwq_list(&self) -> &[Pwq] {
        match &self.pwqs {
            Pwqs::PerCpu(v) => v,
            Pwqs::Unbound(p) => std::slice::from_ref(p),
        }
    }

    /// Checks a CPU number against the runtime.
    pub(crate) fn check_cpu(&self, cpu: Option<usize>) -> Result<(), Error> {
        let nr_cpus = self.rt.nr_cpus();
        match cpu {
            Some(c) if c >= nr_cpus => Err(Error::InvalidCpu { cpu: c, nr_cpus }),
            _ => Ok(()),
        }
    }

    /// Refuses queueing from outside while draining or destroying (chained queueing passes).
    pub(crate) fn check_accepting(&self) -> Result<(), Error> {
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
    pub(crate) fn of_current_item() -> Result<Arc<WqShared>, Error> {
        let info = crate::debug::current_wq().ok_or(Error::NotInWorker)?;
        // Gone only if its last handle was dropped from one of its own items (destroy then
        // does not wait): the item still runs, its workqueue is being destroyed.
        info.shared.upgrade().ok_or_else(|| Error::Destroyed { name: info.name.to_string() })
    }

    pub(crate) fn queue_work(&self, cpu: Option<usize>, work: &Work) -> Result<bool, Error> {
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
        let pwq = self.local_pwq(None);
        pwq.pool.submit(pwq.slot, Item::Once(crate::pool::entry::Job::new(f)));
        Ok(true)
    }

    /// The pwq a queueing lands on before the non-reentrancy redirect: the only one of an
    /// unbound workqueue, else that of `cpu` or of the CPU the caller runs on.
    fn local_pwq(&self, cpu: Option<usize>) -> &Pwq {
        match &self.pwqs {
            Pwqs::Unbound(p) => p,
            Pwqs::PerCpu(v) => &v[cpu.unwrap_or_else(|| current_cpu(v.len()))],
        }
    }

    /// Whether the caller is a worker running an item of this workqueue (chained queueing is
    /// allowed while draining or destroying).
    fn is_chained(&self) -> bool {
        self.current_own_item().is_some()
    }

    /// The item the caller runs, as `name (id)`, if the caller is a worker (or rescuer)
    /// running an item of this workqueue.
    fn current_own_item(&self) -> Option<String> {
        let (pool, me) = crate::pool::worker::current_worker()?;
        if !Arc::ptr_eq(&pool.env, &self.rt.shared().env) {
            return None;
        }
        let g = pool.lock();
        let cur = g.workers.get(me)?.current.as_ref()?;
        let own = g.pwqs.get(cur.pwq as usize).is_some_and(|p| p.wq.id == self.info.id);
        own.then(|| crate::work::describe(cur.name, cur.work_id))
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
    pub(crate) fn warn(&self, kind: WarningKind, items: &[String], message: &str) {
        let w = Warning { kind, workqueue: &self.info.name, items, message };
        self.rt.shared().env.config.warning_handler.emit(&w);
    }

    /// Steps 3-5 of the module docs. The caller owns PENDING.
    pub(crate) fn enqueue(&self, cpu: Option<usize>, work: Work) {
        let pwq = match &self.pwqs {
            Pwqs::Unbound(p) => p,
            Pwqs::PerCpu(v) => {
                let pwq = self.local_pwq(cpu);
                if let Some(last) = work.state().load().last_pool() {
                    if last != pwq.pool.id {
                        if let Some(other) = v.iter().find(|p| p.pool.id == last) {
                            let mut g = other.pool.lock();
                            if let Some(wk) = g.find_worker_executing(&work) {
                                let running_in = g.workers[wk].current.as_ref().map(|c| c.pwq);
                                if running_in == Some(other.slot) {
                                    other.pool.insert_work(&mut g, other.slot, Item::Work(work));
                                    return;
                                }
                            }
                        }
                    }
                }
                pwq
            }
        };
        pwq.pool.submit_work(pwq.slot, work);
    }

    /// Whether every pwq is empty: nothing active, nothing inactive (`pwq_is_empty`).
    fn is_empty(&self) -> bool {
        self.pwq_list().iter().all(|p| {
            let g = p.pool.lock();
            let pwq = &g.pwqs[p.slot as usize];
            pwq.nr_active == 0 && !pwq.has_inactive()
        })
    }

    fn flush(&self) {
        crate::flush::flush_workqueue(&self.flush_lock, &self.info.flush, self.pwq_list());
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
        for p in self.pwq_list() {
            let g = p.pool.lock();
            for (_, w) in g.workers.iter() {
                if let Some(cur) = w.current.as_ref().filter(|c| c.pwq == p.slot) {
                    out.push(format!("{} running", crate::work::describe(cur.name, cur.work_id)));
                }
            }
            let mut cur = g.worklist.front();
            while let Some(idx) = cur {
                let e = g.nodes.get(idx);
                if e.pwq == p.slot {
                    match &e.item {
                        Item::Work(w) => out.push(format!("{} queued", crate::work::describe(w.name(), w.id()))),
                        Item::Once(_) => out.push(format!("{} queued", crate::pool::worker::SPAWNED_NAME)),
                        Item::Barrier(_) | Item::Cursor => {}
                    }
                }
                if out.len() > crate::warn::MAX_NAMED {
                    break;
                }
                cur = g.worklist.next(&g.nodes, idx);
            }
            if out.len() > crate::warn::MAX_NAMED {
                out.truncate(crate::warn::MAX_NAMED);
                out.push("...".to_owned());
                break;
            }
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
            let in_flight = self.pwq_list().iter().any(|p| p.pool.lock().pwqs[p.slot as usize].in_flight() > 0);
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

    /// Detaches the pwqs from their pools; only once nothing is in flight and no handle is
    /// left (so nothing can queue any more).
    fn detach(&self) {
        for p in self.pwq_list() {
            p.pool.lock().pwqs.remove(p.slot as usize);
        }
    }

    /// Sets every pwq's active limit (0 freezes), activating what the new limit allows.
    pub(crate) fn set_pwq_max_active(&self, max: usize) {
        for p in self.pwq_list() {
            let mut g = p.pool.lock();
            g.pwqs[p.slot as usize].max_active = max;
            while p.pool.activate_first_inactive(&mut g, p.slot) {}
            p.pool.kick_pool(&mut g);
        }
    }
}
