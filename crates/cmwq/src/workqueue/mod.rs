//! Workqueues: a name, flags, `max_active`, and one pool-workqueue per pool used
//! (spec §1.2, §2.2 `__queue_work`, §3.1).
//!
//! Queueing (`queue_work_on` + `__queue_work`):
//! 1. Claim PENDING with one atomic RMW; if it was set, return `false`: the pending instance
//!    covers this request. If the item is disabled, give PENDING back and return `false`.
//! 2. If the workqueue is being destroyed, refuse (unless the caller is one of its own items:
//!    chained queueing).
//! 3. Pick the pwq: a per-CPU workqueue uses the pool of the given CPU or of the CPU the caller
//!    runs on; an unbound one its single pwq in the shared unbound pool.
//! 4. Non-reentrancy redirect: if the item last ran in another pool of this workqueue and a
//!    worker there runs it right now, queue it there instead, so the pool hands it to that
//!    worker and it never runs twice at once.
//! 5. Under the pool lock: active on the worklist (and kick the pool) if the pwq is below
//!    `max_active` and nothing waits before it, else onto the pwq's inactive list.

pub(crate) mod builder;
pub(crate) mod system;

use crate::clock::Sleeper;
use crate::error::Error;
use crate::monitor::current_cpu;
use crate::pwq::{Pwq, PwqLocked};
use crate::runtime::Runtime;
use crate::stats::WqStats;
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::work::Work;
pub use builder::WorkqueueBuilder;
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
    /// `__WQ_ORDERED`.
    pub(crate) ordered: bool,
}

/// What the pool side needs to know of a workqueue.
#[derive(Debug)]
pub(crate) struct WqInfo {
    /// I: runtime-unique id.
    pub(crate) id: u32,
    /// I: the name.
    pub(crate) name: Arc<str>,
    /// I: flags.
    pub(crate) flags: WqFlags,
    /// Set once destruction starts (`__WQ_DESTROYING`); never cleared.
    pub(crate) destroying: AtomicBool,
    /// Woken when one of its pwqs has nothing in flight, while destroying.
    pub(crate) drained: Arc<Sleeper>,
}

impl WqInfo {
    /// One of this workqueue's pwqs has nothing in flight any more. Pool lock held.
    pub(crate) fn pwq_drained(&self) {
        if self.destroying.load(Ordering::Acquire) {
            self.drained.notify();
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

/// The shared part of a workqueue.
struct WqShared {
    info: Arc<WqInfo>,
    pwqs: Pwqs,
    /// I: the active limit per pwq.
    max_active: usize,
    rt: Runtime,
}

/// A workqueue. Cheap to clone; dropping the last handle drains it, then frees its pwqs.
#[derive(Clone)]
pub struct Workqueue {
    handle: Arc<WqHandle>,
}

struct WqHandle {
    wq: WqShared,
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
    ) -> Result<Workqueue, Error> {
        let shared = rt.shared().clone();
        let info = Arc::new(WqInfo {
            id: shared.next_wq_id.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            flags,
            destroying: AtomicBool::new(false),
            drained: Sleeper::new(),
        });
        let attach = |pool: &Arc<crate::pool::WorkerPool>| {
            let slot = pool
                .lock()
                .pwqs
                .insert(PwqLocked::new(info.clone(), max_active)) as u32;
            Pwq {
                pool: pool.clone(),
                slot,
            }
        };
        let pwqs = if flags.unbound {
            Pwqs::Unbound(attach(&shared.unbound_pool(flags.highpri)?))
        } else {
            let n = shared.env.config.nr_cpus;
            Pwqs::PerCpu(
                (0..n)
                    .map(|cpu| attach(&shared.cpu_pools[2 * cpu + usize::from(flags.highpri)]))
                    .collect(),
            )
        };
        Ok(Workqueue {
            handle: Arc::new(WqHandle {
                wq: WqShared {
                    info,
                    pwqs,
                    max_active,
                    rt,
                },
            }),
        })
    }

    /// Queues `work` on this workqueue (`queue_work`): on the pool of the CPU the caller runs
    /// on for a per-CPU workqueue. Returns `false` if it was already pending (nothing changes:
    /// the pending instance covers this request), disabled, or refused because the workqueue is
    /// being destroyed (with a warning; [`Workqueue::try_queue`] returns that as an error).
    pub fn queue(&self, work: &Work) -> bool {
        self.handle
            .wq
            .queue_work(None, work)
            .unwrap_or_else(|e| warn(&e))
    }

    /// Like [`Workqueue::queue`], but says why a refused queueing was refused.
    pub fn try_queue(&self, work: &Work) -> Result<bool, Error> {
        self.handle.wq.queue_work(None, work)
    }

    /// Queues `work` on the pool of `cpu` (`queue_work_on`); for unbound workqueues the CPU is
    /// only checked. A CPU that does not exist is refused with a warning (`try_queue_on` returns
    /// the error).
    pub fn queue_on(&self, cpu: usize, work: &Work) -> bool {
        self.handle
            .wq
            .queue_work(Some(cpu), work)
            .unwrap_or_else(|e| warn(&e))
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
        self.queue(&Work::once(f))
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
    /// refused with [`Error::Destroyed`] (its own items may still queue, as chained work), and
    /// this waits until every item already queued has run. Dropping the last handle does the
    /// same and then detaches the workqueue from its pools. Idempotent.
    pub fn destroy(&self) {
        self.handle.wq.destroy();
    }

    /// The runtime this workqueue belongs to.
    pub fn runtime(&self) -> &Runtime {
        &self.handle.wq.rt
    }
}

fn warn(e: &Error) -> bool {
    eprintln!("cmwq: queueing refused: {e}");
    false
}

impl WqShared {
    fn pwq_list(&self) -> &[Pwq] {
        match &self.pwqs {
            Pwqs::PerCpu(v) => v,
            Pwqs::Unbound(p) => std::slice::from_ref(p),
        }
    }

    fn queue_work(&self, cpu: Option<usize>, work: &Work) -> Result<bool, Error> {
        let nr_cpus = self.rt.nr_cpus();
        if let Some(c) = cpu {
            if c >= nr_cpus {
                return Err(Error::InvalidCpu { cpu: c, nr_cpus });
            }
        }
        let state = work.state();
        if !state.try_claim_pending() {
            return Ok(false);
        }
        if state.load().disable_depth() > 0 {
            state.release_claim();
            return Ok(false);
        }
        if self.info.destroying.load(Ordering::Acquire) && !self.is_chained() {
            state.release_claim();
            return Err(Error::Destroyed {
                name: self.info.name.to_string(),
            });
        }
        self.enqueue(cpu, work.clone());
        Ok(true)
    }

    /// Whether the caller is a worker running an item of this workqueue (chained queueing is
    /// allowed while draining or destroying).
    fn is_chained(&self) -> bool {
        let Some((pool, me)) = crate::pool::worker::current_worker() else {
            return false;
        };
        let g = pool.lock();
        let Some(cur) = &g.workers[me].current else {
            return false;
        };
        g.pwqs[cur.pwq as usize].wq.id == self.info.id
            && Arc::ptr_eq(&pool.env, &self.rt.shared().env)
    }

    /// Steps 3-5 of the module docs. The caller owns PENDING.
    fn enqueue(&self, cpu: Option<usize>, work: Work) {
        let pwq = match &self.pwqs {
            Pwqs::Unbound(p) => p,
            Pwqs::PerCpu(v) => {
                let cpu = cpu.unwrap_or_else(|| current_cpu(v.len()));
                let pwq = &v[cpu];
                if let Some(last) = work.state().load().last_pool() {
                    if last != pwq.pool.id {
                        if let Some(other) = v.iter().find(|p| p.pool.id == last) {
                            let mut g = other.pool.lock();
                            if let Some(wk) = g.find_worker_executing(&work) {
                                let running_in = g.workers[wk].current.as_ref().map(|c| c.pwq);
                                if running_in == Some(other.slot) {
                                    other.pool.insert_work(&mut g, other.slot, work);
                                    return;
                                }
                            }
                        }
                    }
                }
                pwq
            }
        };
        let mut g = pwq.pool.lock();
        pwq.pool.insert_work(&mut g, pwq.slot, work);
    }

    /// Destroys the workqueue (`destroy_workqueue`): refuses new work from outside and waits
    /// until every queued item has run. From one of its own items this cannot wait for itself:
    /// it then only marks the queue as destroying and returns `false`; the pwqs are then left
    /// to be reclaimed with the runtime.
    fn destroy(&self) -> bool {
        self.info.destroying.store(true, Ordering::Release);
        if self.is_chained() {
            eprintln!("cmwq: workqueue {:?} destroyed from one of its own items: not waiting for it to drain", self.info.name);
            return false;
        }
        let clock = self.rt.clock();
        loop {
            let busy = self
                .pwq_list()
                .iter()
                .any(|p| p.pool.lock().pwqs[p.slot as usize].in_flight() > 0);
            if !busy {
                break;
            }
            clock.wait_until(&self.info.drained, None);
        }
        true
    }

    /// Detaches the pwqs from their pools; only once nothing is in flight and no handle is
    /// left (so nothing can queue any more).
    fn detach(&self) {
        for p in self.pwq_list() {
            p.pool.lock().pwqs.remove(p.slot as usize);
        }
    }
}
