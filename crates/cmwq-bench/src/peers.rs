//! The systems compared, behind one small interface: build a fresh pool, hand it closures,
//! tear it down (or leak it when it hangs).
//!
//! * `cmwq`: a private [`cmwq::Runtime`] and one workqueue whose kind each workload chooses
//!   ([`CmwqKind`]);
//! * `rayon`: `ThreadPool::spawn` on a pool of ncpu threads;
//! * `tokio`: `Runtime::spawn_blocking` on a multi-thread runtime (ncpu workers, the default
//!   blocking pool limit of 512 threads);
//! * `threadpool`: the `threadpool` crate with ncpu threads;
//! * `crossbeam`: ncpu threads `recv()`ing boxed closures from a crossbeam channel, the
//!   plain baseline.
//!
//! [`Pool`] is an enum rather than a `dyn` trait so that `spawn` stays generic: every system
//! gets the caller's closure type and boxes it (or not) exactly as its own API does, so no
//! adapter adds an allocation the system would not make itself.

use cmwq::{Runtime, Work, Workqueue};
use crossbeam_channel::{unbounded, Sender};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The systems, in the order every workload runs them.
pub const SYSTEMS: &[&str] = &["cmwq", "rayon", "tokio", "threadpool", "crossbeam"];

/// The system every ratio is taken against.
pub const BASELINE: &str = "crossbeam";

/// Which workqueue the cmwq adapter queues on.
#[derive(Debug, Clone, Copy)]
pub enum CmwqKind {
    /// An unbound workqueue with this `max_active` (0 = the default, `WQ_DFL_ACTIVE`), fed
    /// with `Workqueue::spawn`.
    Unbound { max_active: usize },
    /// A per-CPU (concurrency-managed) workqueue, items spread round-robin over the CPUs'
    /// pools with `queue_on`.
    PerCpuSpread,
    /// A per-CPU workqueue fed with `Workqueue::spawn`, so each item goes to the pool of the
    /// CPU the submitter runs on.
    PerCpuLocal,
    /// A per-CPU workqueue, every item on this CPU's pool.
    PerCpuOn(usize),
}

/// The cmwq side: a private runtime and one workqueue.
#[derive(Debug)]
pub struct CmwqPool {
    rt: Runtime,
    wq: Workqueue,
    kind: CmwqKind,
    next_cpu: AtomicUsize,
}

/// ncpu threads receiving boxed closures from one crossbeam channel.
#[derive(Debug)]
pub struct CrossbeamPool {
    tx: Sender<Job>,
    threads: Vec<JoinHandle<()>>,
}

/// A boxed closure, as the crossbeam pool carries them.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// One system under test, freshly built for one measured run.
pub enum Pool {
    /// cmwq.
    Cmwq(CmwqPool),
    /// rayon.
    Rayon(rayon::ThreadPool),
    /// tokio's blocking pool.
    Tokio(tokio::runtime::Runtime),
    /// The threadpool crate.
    ThreadPool(threadpool::ThreadPool),
    /// The crossbeam-channel pool.
    Crossbeam(CrossbeamPool),
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Pool {
    /// Builds system `name` with `ncpu` threads (fixed pools) or CPUs (cmwq); `cmwq` says
    /// which workqueue cmwq uses.
    pub fn new(name: &str, ncpu: usize, cmwq: CmwqKind) -> Result<Pool, String> {
        Ok(match name {
            "cmwq" | "cmwq-sample" => {
                // `cmwq-sample`: the same with the sampling monitor instead of the switch
                // detector (the detector's cost, B1 and B9).
                let det = if name == "cmwq" { cmwq::Detector::Switch } else { cmwq::Detector::Sample };
                let rt = Runtime::builder().cpus(ncpu).detector(det).build();
                let b = rt.workqueue("bench");
                let b = match cmwq {
                    CmwqKind::Unbound { max_active } => b.unbound().max_active(max_active),
                    _ => b,
                };
                let wq = b.build().map_err(|e| format!("cmwq: {e}"))?;
                Pool::Cmwq(CmwqPool { rt, wq, kind: cmwq, next_cpu: AtomicUsize::new(0) })
            }
            "rayon" => Pool::Rayon(
                rayon::ThreadPoolBuilder::new().num_threads(ncpu).build().map_err(|e| format!("rayon: {e}"))?,
            ),
            "tokio" => Pool::Tokio(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(ncpu)
                    .build()
                    .map_err(|e| format!("tokio: {e}"))?,
            ),
            "threadpool" => Pool::ThreadPool(threadpool::ThreadPool::new(ncpu)),
            "crossbeam" => {
                let (tx, rx) = unbounded::<Job>();
                let threads = (0..ncpu)
                    .map(|i| {
                        let rx = rx.clone();
                        thread::Builder::new()
                            .name(format!("crossbeam-{i}"))
                            .spawn(move || {
                                while let Ok(job) = rx.recv() {
                                    job();
                                }
                            })
                            .map_err(|e| format!("crossbeam: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
                Pool::Crossbeam(CrossbeamPool { tx, threads })
            }
            other => return Err(format!("unknown system {other:?}")),
        })
    }

    /// The system's name as it appears in the records.
    pub fn name(&self) -> &'static str {
        match self {
            Pool::Cmwq(_) => "cmwq",
            Pool::Rayon(_) => "rayon",
            Pool::Tokio(_) => "tokio",
            Pool::ThreadPool(_) => "threadpool",
            Pool::Crossbeam(_) => "crossbeam",
        }
    }

    /// Runs `f` on the pool.
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        match self {
            Pool::Cmwq(p) => p.spawn(f),
            Pool::Rayon(p) => p.spawn(f),
            Pool::Tokio(rt) => drop(rt.spawn_blocking(f)),
            Pool::ThreadPool(p) => p.execute(f),
            Pool::Crossbeam(p) => p.tx.send(Box::new(f)).expect("crossbeam pool threads are gone"),
        }
    }

    /// The cmwq workqueue, for cmwq-only counters.
    pub fn cmwq(&self) -> Option<&Workqueue> {
        match self {
            Pool::Cmwq(p) => Some(&p.wq),
            _ => None,
        }
    }

    /// Tears the pool down. A pool whose items may still be blocked (`hung`) is leaked
    /// instead: nothing waits for it, and its threads end on their own once their items give
    /// up, or with the process.
    pub fn finish(self, hung: bool) {
        match self {
            Pool::Cmwq(p) if hung => std::mem::forget(p),
            Pool::Cmwq(p) => {
                // Dropping the workqueue drains it; dropping the runtime joins its threads.
                drop(p.wq);
                drop(p.rt);
            }
            Pool::Rayon(p) if hung => std::mem::forget(p),
            Pool::Rayon(p) => drop(p),
            Pool::Tokio(rt) if hung => rt.shutdown_background(),
            // Waits for the blocking threads to exit; queued items that have not started are
            // dropped.
            Pool::Tokio(rt) => rt.shutdown_timeout(Duration::from_secs(30)),
            Pool::ThreadPool(p) if hung => std::mem::forget(p),
            Pool::ThreadPool(p) => p.join(),
            Pool::Crossbeam(p) => {
                drop(p.tx);
                if !hung {
                    for t in p.threads {
                        let _ = t.join();
                    }
                }
            }
        }
    }
}

impl CmwqPool {
    fn spawn<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        let cpu = match self.kind {
            CmwqKind::Unbound { .. } | CmwqKind::PerCpuLocal => {
                assert!(self.wq.spawn(f), "cmwq refused an item");
                return;
            }
            CmwqKind::PerCpuSpread => self.next_cpu.fetch_add(1, Ordering::Relaxed) % self.rt.nr_cpus(),
            CmwqKind::PerCpuOn(cpu) => cpu,
        };
        // `Workqueue::spawn` has no CPU argument: the same one-shot wrapper, on a given CPU.
        let cell = Mutex::new(Some(f));
        let w = Work::new(move |_| {
            if let Some(f) = cell.lock().unwrap_or_else(|e| e.into_inner()).take() {
                f()
            }
        });
        assert!(self.wq.queue_on(cpu, &w), "cmwq refused an item");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Latch;
    use std::time::Instant;

    #[test]
    fn every_system_runs_closures() {
        for kind in
            [CmwqKind::Unbound { max_active: 0 }, CmwqKind::PerCpuSpread, CmwqKind::PerCpuLocal, CmwqKind::PerCpuOn(0)]
        {
            for name in SYSTEMS {
                let pool = Pool::new(name, 2, kind).unwrap();
                assert_eq!(pool.name(), *name);
                let latch = Latch::counting(100);
                for _ in 0..100 {
                    let l = latch.clone();
                    pool.spawn(move || l.count_down());
                }
                assert!(latch.wait_until(Instant::now() + Duration::from_secs(10)));
                pool.finish(false);
            }
        }
        assert!(Pool::new("nope", 2, CmwqKind::PerCpuSpread).is_err());
    }
}
