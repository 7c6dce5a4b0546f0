//! The runtime: the CPUs modelled, the pools, the service threads, and the seams tests replace
//! (clock, spawner). A private [`Runtime`] carries its own seams and knobs; the global one
//! backs the system workqueues.
//!
//! At build it creates, for each modelled CPU, a normal and a highpri pool with one worker each
//! (the kernel's boot-time workers), the timer service thread and the monitor thread. Unbound
//! pools are created on demand, shared by workqueues with equal attributes, and kept for the
//! runtime's lifetime.
//!
//! Shutdown (when the last `Runtime` and `Workqueue` handle is dropped): every pool is marked
//! dying, every worker told to exit once it finishes what it runs, the service threads are
//! stopped, and every thread is joined. Workqueues drain before their handles go, so no
//! accepted work is left behind.

use crate::clock::Clock;
use crate::env::{Config, Env};
use crate::error::Error;
use crate::introspect::PoolInfo;
use crate::monitor::{Detector, Monitor};
use crate::pool::{create_worker, WorkerPool};
use crate::spawn::{SpawnRequest, Spawner, ThreadKind, ThreadSpawner};
use crate::sync::global::OnceLock;
use crate::sync::{thread, Arc, AtomicBool, AtomicU32, Mutex, Ordering, Weak};
use crate::timer::TimerService;
use crate::workqueue::WorkqueueBuilder;
use crate::workqueue::WqShared;
use std::fmt;
use std::time::Duration;

/// The most CPUs a runtime models: 8192, the largest `CONFIG_NR_CPUS` on x86-64 (`NR_CPUS`;
/// arch/x86/Kconfig, `NR_CPUS_RANGE_END` with `MAXSMP`). Each CPU costs two pools and their
/// boot-time workers, so far larger counts only exhaust threads and memory.
pub const MAX_CPUS: usize = 8192;

/// Cull idle workers after 300 s (`IDLE_WORKER_TIMEOUT`).
pub const IDLE_WORKER_TIMEOUT: Duration = Duration::from_secs(300);
/// Wait 1 s between failed worker creations (`CREATE_COOLDOWN`).
pub const CREATE_COOLDOWN: Duration = Duration::from_secs(1);
/// An item running 10 ms without sleeping is CPU-intensive (`wq_cpu_intensive_thresh_us`).
pub const CPU_INTENSIVE_THRESH: Duration = Duration::from_millis(10);
/// The monitor's tick while workers are busy: 1 ms (a kernel tick at HZ=1000).
pub const CM_TICK: Duration = Duration::from_millis(1);
/// The monitor's fastest tick while items wait behind running workers: 300 us. A sleep is
/// noticed one to two ticks after it starts, and each tick costs a sleep and a wake-up of the
/// monitor (tens of microseconds on a VM), so a shorter tick trades idle CPU for monitor CPU.
/// Measured on B4 (`examples/b4probe.rs`, 2 cores, 12 runs each): 50 us 1.20-1.38x of the
/// ideal (median 1.27x, 90-100 ms of monitor CPU), 300-500 us 1.18-1.25x (median 1.20x,
/// ~35 ms), 800 us 1.18-1.30x. Go's sysmon starts at 20 us but backs off to 10 ms.
pub const CM_MIN_TICK: Duration = Duration::from_micros(300);

/// Call for help 10 ms after the manager starts creating a worker (`MAYDAY_INITIAL_TIMEOUT`).
pub const MAYDAY_INITIAL_TIMEOUT: Duration = Duration::from_millis(10);
/// Then every 100 ms while the pool still needs a worker (`MAYDAY_INTERVAL`).
pub const MAYDAY_INTERVAL: Duration = Duration::from_millis(100);

/// The runtime's shared state.
pub(crate) struct Shared {
    pub(crate) env: Arc<Env>,
    /// I: per-CPU pools; the pool of `cpu` (normal, highpri) is at index `2 * cpu + highpri`.
    pub(crate) cpu_pools: Vec<Arc<WorkerPool>>,
    /// Unbound pools by attributes (only `highpri` for now), guarded by this lock
    /// (`wq_pool_mutex`).
    unbound_pools: Mutex<Vec<Arc<WorkerPool>>>,
    /// The timer and monitor threads.
    service_threads: Mutex<Vec<thread::JoinHandle<()>>>,
    /// Whether shutdown has started.
    shut_down: AtomicBool,
    /// Next workqueue id.
    pub(crate) next_wq_id: AtomicU32,
    /// Workqueues of this runtime (`workqueues` list, under `wq_pool_mutex`), and whether
    /// freezable ones are frozen.
    workqueues: Mutex<WqList>,
}

/// The runtime's list of workqueues, behind its lock.
#[derive(Default)]
struct WqList {
    wqs: Vec<Weak<WqShared>>,
    frozen: bool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("cpus", &self.env.config.nr_cpus).finish()
    }
}

impl Shared {
    /// The unbound pool for these attributes, created with one worker if it does not exist
    /// (`get_unbound_pool`). Fails if that first worker cannot be created.
    pub(crate) fn unbound_pool(&self, highpri: bool) -> Result<Arc<WorkerPool>, Error> {
        let mut pools = self.unbound_pools.lock();
        if let Some(p) = pools.iter().find(|p| p.highpri() == highpri) {
            return Ok(p.clone());
        }
        let pool = WorkerPool::new(None, highpri, self.env.clone());
        create_worker(&pool).map_err(Error::Spawn)?;
        self.env.monitor.add_pool(pool.clone());
        pools.push(pool.clone());
        Ok(pool)
    }

    /// Makes a workqueue with `make` (told whether the freezable workqueues are frozen) and
    /// lists it, under the workqueue-list lock, so that no freeze or thaw slips in between.
    pub(crate) fn register_workqueue(&self, make: impl FnOnce(bool) -> Arc<WqShared>) -> Arc<WqShared> {
        let mut l = self.workqueues.lock();
        let wq = make(l.frozen);
        l.wqs.retain(|w| w.strong_count() > 0);
        l.wqs.push(Arc::downgrade(&wq));
        wq
    }

    /// Runs `f` with whether the freezable workqueues are frozen, holding the workqueue-list
    /// lock (`wq_pool_mutex`) so that no freeze or thaw happens meanwhile.
    pub(crate) fn with_frozen<R>(&self, f: impl FnOnce(bool) -> R) -> R {
        let l = self.workqueues.lock();
        f(l.frozen)
    }

    /// Freezes or thaws the freezable workqueues (`freeze_workqueues_begin`,
    /// `thaw_workqueues`): a frozen one has an active limit of zero, so its new items wait on
    /// the inactive lists; thawing restores the limit and activates them.
    fn set_frozen(&self, frozen: bool) {
        let mut l = self.workqueues.lock();
        if l.frozen == frozen {
            return;
        }
        l.frozen = frozen;
        for wq in l.wqs.iter().filter_map(Weak::upgrade) {
            if wq.info.flags.freezable {
                wq.set_pwq_max_active(frozen);
            }
        }
    }

    fn all_pools(&self) -> Vec<Arc<WorkerPool>> {
        let mut v = self.cpu_pools.clone();
        v.extend(self.unbound_pools.lock().iter().cloned());
        v
    }

    /// Stops every thread of the runtime and joins them (see the module docs).
    fn shutdown(&self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        // A timer callback can drop the last handle too (the armed record it just queued held
        // the workqueue, whose runtime handle went last): the timer thread must not join itself.
        let on_own_worker = crate::pool::current_worker().is_some_and(|(p, _)| Arc::ptr_eq(p.env(), &self.env))
            || SERVICE_OF.with(|s| s.get() == Arc::as_ptr(&self.env) as usize);
        let mut handles = Vec::new();
        for pool in self.all_pools() {
            handles.extend(pool.start_dying());
        }
        self.env.timers.stop();
        self.env.monitor.stop();
        handles.append(&mut self.service_threads.lock());
        if on_own_worker {
            // Joining would wait for ourselves; the threads exit on their own.
            return;
        }
        // A manager that was inside `Spawner::spawn` when its pool started dying registers
        // its new worker only afterwards (marked DIE by `create_worker`), so the first pass
        // cannot have seen it: collect again after every round of joins, until a round finds
        // nothing. It ends: a dying pool starts no creation.
        while !handles.is_empty() {
            for h in handles.drain(..) {
                let _ = h.join();
            }
            for pool in self.all_pools() {
                handles.extend(pool.collect_threads());
            }
        }
    }
}

crate::sync::thread_local! {
    /// On a service thread (timer, monitor): the address of its runtime's `Env`, else 0.
    static SERVICE_OF: std::cell::Cell<usize> = std::cell::Cell::new(0);
}

/// A cmwq runtime. Cheap to clone; the runtime shuts down when the last handle (including
/// those kept by its workqueues) is dropped.
#[derive(Clone)]
pub struct Runtime {
    handle: Arc<RuntimeHandle>,
}

struct RuntimeHandle {
    shared: Arc<Shared>,
}

impl Drop for RuntimeHandle {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handle.shared.fmt(f)
    }
}

impl Runtime {
    /// A builder for a private runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The global runtime behind the system workqueues (built on first use with the defaults).
    pub fn global() -> Runtime {
        static GLOBAL: OnceLock<Runtime> = OnceLock::new();
        GLOBAL.get_or_init(|| Runtime::builder().build()).clone()
    }

    /// A builder for a workqueue on this runtime.
    pub fn workqueue(&self, name: &str) -> WorkqueueBuilder {
        WorkqueueBuilder::new(self.clone(), name)
    }

    /// The blocking detector in effect ([`RuntimeBuilder::detector`]): `Switch` only if it
    /// was asked for and the kernel opened a switch event here.
    pub fn detector(&self) -> Detector {
        self.shared().env.monitor.detector()
    }

    /// Number of modelled CPUs.
    pub fn nr_cpus(&self) -> usize {
        self.handle.shared.env.config.nr_cpus
    }

    /// The runtime's clock.
    pub fn clock(&self) -> Clock {
        self.handle.shared.env.clock.clone()
    }

    /// A snapshot of every pool (see [`PoolInfo`]).
    pub fn pools(&self) -> Vec<PoolInfo> {
        self.handle.shared.all_pools().iter().map(WorkerPool::info).collect()
    }

    /// Freezes the freezable workqueues (`freeze_workqueues_begin`): they keep accepting
    /// items but start none until [`Runtime::thaw`]. Items already running go on;
    /// [`Runtime::freeze_busy`] says whether some still run.
    pub fn freeze(&self) {
        self.handle.shared.set_frozen(true);
    }

    /// Thaws the freezable workqueues (`thaw_workqueues`): what queued up starts.
    pub fn thaw(&self) {
        self.handle.shared.set_frozen(false);
    }

    /// Whether an item of a freezable workqueue is still active while frozen
    /// (`freeze_workqueues_busy`).
    pub fn freeze_busy(&self) -> bool {
        let l = self.handle.shared.workqueues.lock();
        l.wqs
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|wq| wq.info.flags.freezable)
            .any(|wq| wq.any_pwq(|p| p.lock().pwq_busy(p.slot())))
    }

    /// Workers alive over all pools.
    pub fn nr_workers(&self) -> usize {
        self.pools().iter().map(|p| p.nr_workers).sum()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}

/// Builds a [`Runtime`].
#[derive(Debug)]
pub struct RuntimeBuilder {
    config: Config,
    clock: Clock,
    spawner: Arc<dyn Spawner>,
    /// Build without service threads and workers (`build_for_model`).
    #[cfg(all(test, loom))]
    model: bool,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        let nr_cpus = thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_CPUS);
        RuntimeBuilder {
            config: Config {
                nr_cpus,
                pin_workers: true,
                idle_timeout: IDLE_WORKER_TIMEOUT,
                create_cooldown: CREATE_COOLDOWN,
                cpu_intensive_thresh: CPU_INTENSIVE_THRESH,
                cm_tick: CM_TICK,
                cm_min_tick: CM_MIN_TICK,
                worker_stack_size: None,
                mayday_initial_timeout: MAYDAY_INITIAL_TIMEOUT,
                mayday_interval: MAYDAY_INTERVAL,
                rescuer_algorithm: crate::env::RescuerAlgorithm::default(),
                detector: None,
                warning_handler: crate::warn::WarningHandler::default(),
                #[cfg(shuttle)]
                plant: None,
            },
            clock: Clock::real(),
            spawner: Arc::new(ThreadSpawner),
            #[cfg(all(test, loom))]
            model: false,
        }
    }
}

impl RuntimeBuilder {
    /// Number of modelled CPUs, 1 to [`MAX_CPUS`] (8192, the kernel's largest `NR_CPUS`);
    /// default: the available parallelism, at most `MAX_CPUS`. Any other count is refused by
    /// [`RuntimeBuilder::try_build`] with [`Error::InvalidCpuCount`].
    pub fn cpus(mut self, n: usize) -> Self {
        self.config.nr_cpus = n;
        self
    }

    /// Pin per-CPU workers to their CPU (default true; CPUs beyond the machine's wrap around).
    pub fn pin_workers(mut self, pin: bool) -> Self {
        self.config.pin_workers = pin;
        self
    }

    /// The clock every timeout reads (default: the real clock).
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The spawner every thread comes from (default: [`ThreadSpawner`]).
    pub fn spawner(mut self, spawner: impl Spawner) -> Self {
        self.spawner = Arc::new(spawner);
        self
    }

    /// Idle workers are culled after this long (default 300 s, `IDLE_WORKER_TIMEOUT`).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// Wait between failed worker creations (default 1 s, `CREATE_COOLDOWN`).
    pub fn create_cooldown(mut self, d: Duration) -> Self {
        self.config.create_cooldown = d;
        self
    }

    /// CPU time after which an item is marked CPU-intensive (default 10 ms; zero disables).
    pub fn cpu_intensive_thresh(mut self, d: Duration) -> Self {
        self.config.cpu_intensive_thresh = d;
        self
    }

    /// The monitor's tick while workers are busy (default 1 ms), and its fastest tick while
    /// items wait behind running workers (default 300 us).
    pub fn cm_tick(mut self, tick: Duration, min_tick: Duration) -> Self {
        self.config.cm_tick = tick.max(Duration::from_micros(1));
        self.config.cm_min_tick = min_tick.min(self.config.cm_tick).max(Duration::from_micros(1));
        self
    }

    /// The mayday timer: first call for help this long after a pool's manager starts creating
    /// a worker (default 10 ms, `MAYDAY_INITIAL_TIMEOUT`), then every `interval` (default
    /// 100 ms, `MAYDAY_INTERVAL`) while the pool still needs one.
    pub fn mayday_timeouts(mut self, initial: Duration, interval: Duration) -> Self {
        self.config.mayday_initial_timeout = initial;
        self.config.mayday_interval = interval.max(Duration::from_micros(1));
        self
    }

    /// The algorithm this runtime's rescuers run (default: the 2025-26 cursor algorithm; the
    /// others exist to measure the difference).
    pub fn rescuer_algorithm(mut self, algorithm: crate::env::RescuerAlgorithm) -> Self {
        self.config.rescuer_algorithm = algorithm;
        self
    }

    /// Called with every [`Warning`](crate::Warning) about this runtime's workqueues (a flush
    /// from a workqueue's own item, a drain or destroy that takes many rounds), instead of
    /// printing it on stderr (the default). It runs on the thread that warns, with no lock of
    /// cmwq held; a panic in it is reported and ignored.
    pub fn warning_handler<F>(mut self, f: F) -> Self
    where
        F: Fn(&crate::Warning<'_>) + Send + Sync + 'static,
    {
        self.config.warning_handler = crate::warn::WarningHandler(Some(Arc::new(f)));
        self
    }

    /// Plants `bug` in this runtime, for a shuttle twin test (`sync::plant`; compiled only
    /// under `--cfg shuttle`).
    #[cfg(shuttle)]
    #[doc(hidden)]
    pub fn plant(mut self, bug: crate::sync::plant::Bug) -> Self {
        self.config.plant = Some(bug);
        self
    }

    /// How blocking inside items of per-CPU pools is noticed (docs/design.md §4.2):
    /// [`Detector::Switch`] (the default where the kernel allows perf events) from each
    /// worker's context-switch records, within tens of microseconds; [`Detector::Sample`] by
    /// sampling thread clocks, within a millisecond or two. Without this call the
    /// `CMWQ_DETECTOR` environment variable (`switch` or `sample`) decides. `Switch` falls
    /// back to sampling, never to an error, where perf events are refused (for the whole
    /// runtime, or per worker where only some events open), and under a [`ManualClock`](crate::ManualClock)
    /// (the switch detector waits in real time). [`Runtime::detector`] says which runs.
    pub fn detector(mut self, d: Detector) -> Self {
        self.config.detector = Some(d);
        self
    }

    /// Stack size of worker threads (default: the platform's).
    pub fn worker_stack_size(mut self, bytes: usize) -> Self {
        self.config.worker_stack_size = Some(bytes);
        self
    }

    /// The runtime without its timer and monitor threads and without workers, for the loom
    /// models: a model starts the workers it wants (`manager::create_worker`) and fires timers
    /// itself (`TimerService::fire_due`).
    #[cfg(all(test, loom))]
    pub(crate) fn build_for_model(mut self) -> Runtime {
        self.model = true;
        self.try_build().expect("a model runtime starts no thread")
    }

    /// Builds the runtime.
    ///
    /// # Panics
    ///
    /// If the CPU count is out of range, or the timer or monitor thread cannot be created;
    /// [`RuntimeBuilder::try_build`] returns that as an error instead. Failing to create the
    /// initial workers is not an error: the pools retry on demand.
    #[track_caller]
    pub fn build(self) -> Runtime {
        match self.try_build() {
            Ok(rt) => rt,
            Err(e) => panic!("cmwq: cannot build the runtime: {e}"),
        }
    }

    /// Builds the runtime, or says why not: a CPU count outside 1..=[`MAX_CPUS`]
    /// ([`Error::InvalidCpuCount`], checked before anything is created), or a service thread
    /// that could not be created ([`Error::Spawn`]).
    pub fn try_build(self) -> Result<Runtime, Error> {
        let cpus = self.config.nr_cpus;
        if !(1..=MAX_CPUS).contains(&cpus) {
            return Err(Error::InvalidCpuCount { cpus, max: MAX_CPUS });
        }
        let detector = match self.config.detector {
            Some(d) => d,
            None => match std::env::var("CMWQ_DETECTOR") {
                Ok(v) => {
                    Detector::from_name(&v).ok_or(Error::InvalidAttrs("CMWQ_DETECTOR must be `switch` or `sample`"))?
                }
                Err(_) => Detector::Switch,
            },
        };
        #[cfg(all(test, loom))]
        let detector = if self.model { Detector::Sample } else { detector };
        let switch = detector == Detector::Switch && !self.clock.is_manual();
        let env = Arc::new(Env {
            timers: TimerService::new(self.clock.clone()),
            monitor: Monitor::new(switch),
            config: self.config,
            clock: self.clock,
            spawner: self.spawner,
            create_failure_reports: AtomicU32::new(0),
        });
        let n = env.config.nr_cpus;
        let cpu_pools: Vec<Arc<WorkerPool>> =
            (0..2 * n).map(|i| WorkerPool::new(Some(i / 2), i % 2 == 1, env.clone())).collect();
        for p in &cpu_pools {
            env.monitor.add_pool(p.clone());
        }
        let shared = Arc::new(Shared {
            env: env.clone(),
            cpu_pools,
            unbound_pools: Mutex::new(Vec::new()),
            service_threads: Mutex::new(Vec::new()),
            shut_down: AtomicBool::new(false),
            next_wq_id: AtomicU32::new(0),
            workqueues: Mutex::new(WqList::default()),
        });
        let rt = Runtime { handle: Arc::new(RuntimeHandle { shared: shared.clone() }) };
        #[cfg(all(test, loom))]
        if self.model {
            return Ok(rt);
        }
        let env_id = Arc::as_ptr(&env) as usize;
        let service = |name: &str, body: Box<dyn FnOnce() + Send>| -> Result<(), Error> {
            let body: Box<dyn FnOnce() + Send> = Box::new(move || {
                SERVICE_OF.with(|s| s.set(env_id));
                body()
            });
            let req = SpawnRequest { name: name.into(), kind: ThreadKind::Service, stack_size: None, body };
            let h = env.spawner.spawn(req).map_err(Error::Spawn)?;
            shared.service_threads.lock().push(h);
            Ok(())
        };
        let e1 = env.clone();
        service("cmwq-timer", Box::new(move || e1.timers.run()))?;
        if env.monitor.detector() == Detector::Switch {
            let e3 = env.clone();
            service(
                "cmwq-detector",
                Box::new(move || {
                    // Lowest priority (monitor/mod.rs, `run_detector`): it must never preempt
                    // a worker it watches.
                    crate::sys::set_current_nice(crate::sys::LOW_NICE);
                    e3.monitor.run_detector()
                }),
            )?;
        }
        let e2 = env.clone();
        service(
            "cmwq-monitor",
            Box::new(move || {
                // The monitor stands in for scheduler hooks: it must not starve behind the work
                // it manages.
                crate::sys::set_current_nice(crate::sys::HIGH_NICE);
                e2.monitor.run(
                    &e2.clock,
                    &crate::monitor::Knobs {
                        cm_tick: e2.config.cm_tick,
                        cm_min_tick: e2.config.cm_min_tick,
                        cpu_intensive_thresh: e2.config.cpu_intensive_thresh,
                    },
                )
            }),
        )?;
        for p in &shared.cpu_pools {
            // A failure is retried by the pool when work arrives.
            let _ = create_worker(p);
        }
        Ok(rt)
    }
}
