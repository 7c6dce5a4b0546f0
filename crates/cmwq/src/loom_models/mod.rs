//! loom models of cmwq's protocols, run on the crate's real code through the sync facade.
//!
//! Run them alone (the loom lane; docs/testing.md):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p cmwq --lib --release loom_models -- --nocapture
//! ```
//!
//! Each model has at most 3 modelled threads (the test's own included) and a preemption bound
//! (`LOOM_MAX_PREEMPTIONS` overrides it), and prints the executions it explored. Each has a
//! planted-bug twin, `#[should_panic]`, that switches on one bug in the real code
//! (`crate::sync::plant`, compiled only under loom) and shows the model catches it.
//!
//! # What a model gets (the fixture below), and what to know to write one
//!
//! * The real [`WorkerPool`] of CPU 0 (concurrency managed) of a runtime without threads
//!   (`RuntimeBuilder::build_for_model`), with a `ManualClock` and the default
//!   `ThreadSpawner`, which under loom spawns *loom* threads: [`create_worker`] gives a real
//!   worker running the real `worker_thread`. No timer or monitor thread runs (a model
//!   calls what a timer would, as a step: `TimerService::fire_due`). One pwq (`pwq`) of a
//!   bare workqueue ([`WqInfo`] without rescuer), so that no destroy has to drain it.
//! * The pool's invariant that a worker starts items only with another idle in reserve is met
//!   by a record without a thread (`Fixture::reserve`), registered idle *before* the real
//!   worker so that a kick (LIFO) never picks it while the real one is idle.
//! * Queue with [`Fixture::queue`]: the claim of PENDING, then [`Pwq::submit_work`], the real
//!   tail of `Workqueue::queue` (what it leaves out, the disable and destroying checks, changes
//!   no ownership).
//! * What a model needs of the pool's private insides (a worker record without a thread,
//!   worker flags, a raw `max_active`, counts to check) comes from the `model_*` hooks of
//!   `pool::model_hooks`, compiled only here; everything else is the real code.
//! * End a model with [`Fixture::shutdown`] (DIE, unpark, join: the real exit path), after
//!   waiting for the runs it expects on a [`Runs`] latch. A run that never comes leaves every
//!   thread blocked, which loom reports as a deadlock: lost work and lost wake-ups fail that
//!   way.
//! * Everything loom-made must be dropped inside the model closure (loom objects belong to one
//!   execution): keep the fixture local to it. `Arc` is std's under loom (no `Weak` in loom),
//!   so loom checks no `Arc` leak; check counts yourself if a model needs it.
//! * Spin loops in the code (`grab_pending`, `fire_now`) yield through the facade, so loom
//!   deprioritizes the spinning thread; a model where a spin can wait on a thread that never
//!   runs exceeds `LOOM_MAX_BRANCHES` instead of hanging.
//! * A work function must not block (on a latch, say) in a model whose planted twin ends in a
//!   deadlock: loom ends a deadlocked execution by unwinding its threads, the worker's
//!   `catch_unwind` around the function catches that unwinding and carries on into loom, and
//!   the twin then fails with a panic inside loom instead of "deadlock". Hold an item back
//!   some other way (`flush_colour` freezes its pwq: `max_active` 0).
//! * Cost: a real worker's loop has a few dozen scheduling points; with 3 threads keep the
//!   preemption bound at 2 (3 with 2 threads). Counts and times are printed per model.

mod delayed_timer;
mod flush_colour;
mod idle_wake;
mod inbox;
mod mayday;
mod nr_active;
mod work_state;

use crate::clock::{ManualClock, Sleeper};
use crate::flush::FlushShared;
use crate::pool::{create_worker, Pwq, WorkerPool};
use crate::sync::plant::{self, Bug};
use crate::sync::{thread, Arc, AtomicBool, AtomicUsize, Condvar, Mutex};
use crate::work::Work;
use crate::workqueue::{WqFlags, WqInfo};

/// Runs `model` under loom with `preemptions` as the bound (unless `LOOM_MAX_PREEMPTIONS` is
/// set), with `bug` planted, and prints how many executions it explored and how long it took.
#[allow(clippy::disallowed_types)] // The count outlives the executions: a real atomic.
pub(super) fn check(name: &'static str, preemptions: usize, bug: Option<Bug>, model: fn()) {
    /// Prints the count even when the model fails (the planted twins).
    struct Report {
        name: &'static str,
        runs: Arc<std::sync::atomic::AtomicUsize>,
        #[allow(clippy::disallowed_methods)]
        start: std::time::Instant,
    }
    impl Drop for Report {
        fn drop(&mut self) {
            plant::set(None);
            println!(
                "loom model {}: {} executions in {:.2?}{}",
                self.name,
                self.runs.load(std::sync::atomic::Ordering::Relaxed),
                self.start.elapsed(),
                if std::thread::panicking() { " (failed)" } else { "" }
            );
        }
    }
    #[allow(clippy::disallowed_methods)] // Run time of the model, for the report only.
    let start = std::time::Instant::now();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _report = Report { name, runs: runs.clone(), start };
    plant::set(bug);
    let mut b = loom::model::Builder::new();
    if std::env::var_os("LOOM_MAX_PREEMPTIONS").is_none() {
        b.preemption_bound = Some(preemptions);
    }
    b.check(move || {
        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
}

/// Counts runs of work functions; waits for a number of them.
#[derive(Default)]
pub(super) struct Runs {
    n: Mutex<usize>,
    cv: Condvar,
}

impl Runs {
    pub(super) fn add(&self) {
        *self.n.lock() += 1;
        self.cv.notify_all();
    }

    /// Blocks until at least `n` runs happened (loom reports a deadlock if they never do).
    pub(super) fn wait_for(&self, n: usize) {
        let mut g = self.n.lock();
        while *g < n {
            self.cv.wait(&mut g);
        }
    }

    pub(super) fn get(&self) -> usize {
        *self.n.lock()
    }
}

/// A pool, one pwq on it, a reserve idle record, and optionally a real worker.
pub(super) struct Fixture {
    pub(super) pool: Arc<WorkerPool>,
    /// The pwq of the bare workqueue `info` on `pool`.
    pub(super) pwq: Pwq,
    /// The workqueue the pwq belongs to (its owner).
    pub(super) info: Arc<WqInfo>,
    /// The reserve idle record's worker id.
    pub(super) reserve: usize,
    /// The real worker's id and thread, if started.
    worker: Option<(usize, thread::JoinHandle<()>)>,
    /// The runtime the pool belongs to (shut down when the fixture is dropped).
    rt: Option<crate::Runtime>,
}

impl Drop for Fixture {
    /// Shuts the runtime down, except while a model fails: after loom's deadlock panic the
    /// execution is gone, and a shutdown touching its objects would panic again (an abort).
    fn drop(&mut self) {
        if std::thread::panicking() {
            std::mem::forget(self.rt.take());
        }
    }
}

impl Fixture {
    /// The pool and its pwq, with a reserve idle record (no thread) and, if `with_worker`, a
    /// real worker created by the manager's `create_worker`.
    pub(super) fn new(with_worker: bool) -> Fixture {
        // A runtime without threads: its CPU 0 pool is the model's; its knobs, clock (manual)
        // and spawner are the defaults.
        let rt = crate::Runtime::builder().cpus(1).pin_workers(false).clock(ManualClock::new()).build_for_model();
        let pool = rt.shared().cpu_pools[0].clone();
        let info = Arc::new(WqInfo {
            id: 0,
            name: "loom".into(),
            flags: WqFlags::default(),
            destroying: AtomicBool::new(false),
            nr_drainers: AtomicUsize::new(0),
            drained: Sleeper::new(),
            flush: FlushShared::default(),
            panic_handler: None,
            rescuer: None,
            shared: crate::sync::Weak::new(),
            armed: crate::sync::Mutex::new(Default::default()),
        });
        let pwq = Pwq::new(&pool, info.clone(), false, crate::WQ_DFL_ACTIVE, 0);
        let reserve = Fixture::reserve(&pool, true);
        let worker = with_worker.then(|| {
            create_worker(&pool).expect("create the worker");
            pool.model_take_worker_thread()
        });
        Fixture { pool, pwq, info, reserve, worker, rt: Some(rt) }
    }

    /// Registers a worker record without a thread, idle if `idle` (else busy: counting as
    /// running once PREP is cleared). Returns its id.
    pub(super) fn reserve(pool: &Arc<WorkerPool>, idle: bool) -> usize {
        pool.model_add_threadless_worker(idle)
    }

    /// Claims PENDING of `work` and queues it on the pwq, as `Workqueue::queue` does; `false`
    /// if it was pending already.
    pub(super) fn queue(&self, work: &Work) -> bool {
        if !work.state().try_claim_pending() {
            return false;
        }
        self.pwq.submit_work(work.clone());
        true
    }

    /// Tells the real worker to exit and joins it (the runtime's shutdown path).
    pub(super) fn shutdown(mut self) {
        let Some((id, handle)) = self.worker.take() else { return };
        let unparker = self.pool.model_tell_worker_to_exit(id);
        unparker.unpark();
        handle.join().expect("the worker exits");
    }
}

/// A work item counting its runs on `runs`.
pub(super) fn counted_work(runs: &Arc<Runs>) -> Work {
    Work::new(counted_work_fn(runs))
}

/// A work function counting its runs on `runs`.
pub(super) fn counted_work_fn(runs: &Arc<Runs>) -> impl Fn(&Work) + Send + Sync + 'static {
    let runs = runs.clone();
    move |_w: &Work| runs.add()
}
