//! Model-based property test (issue 9, verification lane 4): random sequences of queue,
//! queue_on, queue_delayed, mod_delayed, cancel, cancel_sync, disable, enable, flush (item and
//! workqueue), drain, clock advances and spawn failures, run against a private runtime and
//! checked step by step against a small sequential model of the kernel's return values and
//! states (kernel-notes §2-3): per item, pending or not (armed or queued, and on which workqueue), the
//! disable depth and how many times it has run.
//!
//! Determinism: every workqueue is freezable and the runtime stays frozen (`Runtime::freeze`)
//! while operations run, so queued items wait on inactive lists and every return value is
//! decided by the state alone. Items run only in *run windows* (the `Run`, `Flush`,
//! `FlushWq` and `Drain` steps): the test thaws, waits (with a deadline) until the items the
//! model expects to run have run and nothing is in flight, and freezes again. A flush is
//! started while frozen, on a helper thread, and the runtime is thawed only once it waits (an
//! item's flush: its barrier is in flight; a workqueue's flush or drain: a pwq is armed for its
//! colour), so its return value is deterministic and a flush that returns too early is caught.
//! Timers fire on the timer thread after `ManualClock::advance`: the test waits until the
//! items the model says are due are queued. Spawn failures (`FailingSpawner` switched to
//! `Always`) leave runs to the rescuers (every workqueue is `mem_reclaim`): the mayday timer
//! and the create cooldown are 1 ns of manual time, and waits in a run window advance the clock
//! by 1 ns every 2 ms of real time, so maydays are sent and creation retried; the model's
//! delays are whole milliseconds and the nanosecond ticks of a case stay far below one, so they
//! never make a delayed item due (asserted).
//!
//! Invariants after every step: each item's `is_pending` and `disable_depth` match the model,
//! its ledger of runs matches (started and finished), each workqueue has exactly the model's
//! queued items in flight (all inactive, none active) and no flush colour armed, its
//! started/completed counters add up to the model's runs, nothing ran twice at once, nothing ran
//! outside a run window, while disabled or while still pending. At the end the workqueues are
//! destroyed (firing what is armed) and every accepted queueing has run exactly once unless it
//! was cancelled, and every thread of the runtime has exited.
//!
//! Failures: proptest shrinks to a minimal sequence and prints it. Regressions are persisted to
//! `tests/model.proptest-regressions` (a deliberate path, committed, replayed first by every
//! run); the RNG seed of each run is printed (`model: PROPTEST_RNG_SEED=..`) and setting that
//! variable replays the run's operations (not its thread schedule). `PROPTEST_CASES` raises the number of cases (default 128).
//!
//! Delays are 0..=100 ms or `Duration::MAX` (which must be accepted and never fire). Kept out on
//! purpose: no delayed item's timer fires while a workqueue is destroyed (the teardown's 1 ns
//! ticks drive only maydays and creation retries), and no item flushes anything.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{DelayedWork, Error, FailMode, FailingSpawner, ManualClock, Runtime, Work, Workqueue};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{wait_for, DEADLINE};

/// Plain work items.
const NW: usize = 3;
/// Delayed items (items `NW..NI`).
const ND: usize = 2;
/// All items.
const NI: usize = NW + ND;
/// The longest finite delay generated, in ms of manual time.
const MAX_DELAY_MS: u64 = 100;
/// The delay that stands for `Duration::MAX` (issue 9, bug 4: it is accepted and saturates):
/// armed for ever, it fires only when a flush or the destroy fires it.
const FOREVER: u64 = u64::MAX;
/// The run windows' clock tick: far below the model's 1 ms resolution.
const TICK: Duration = Duration::from_nanos(1);
/// The ticks of one case must stay below one model millisecond (see the module docs).
const MAX_TICKS: u64 = 500_000;

// ---------------------------------------------------------------------------------------------
// The reference model.

/// A workqueue's attributes (all are also `freezable` and `mem_reclaim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WqKind {
    PerCpu { highpri: bool, max_active: usize },
    Unbound { max_active: usize },
    Ordered,
}

/// The runtime and its workqueues.
#[derive(Clone, Debug)]
struct Setup {
    cpus: usize,
    wqs: Vec<WqKind>,
}

/// Where an item's pending instance is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Idle,
    /// A delayed item's timer is armed to queue it on workqueue `wq` at `due` (ms).
    Armed {
        wq: usize,
        due: u64,
    },
    /// Queued (inactive: the runtime is frozen) on workqueue `wq`.
    Queued {
        wq: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ItemModel {
    at: At,
    depth: u32,
    runs: u32,
}

/// Which CPU a queueing names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cpu {
    /// `queue`, `queue_delayed`, `mod_delayed`.
    Any,
    /// `queue_on(cpu)` and friends.
    On(usize),
    /// A CPU this many past the last one: `try_*_on` refuses it with `Error::InvalidCpu`.
    Beyond(usize),
}

/// One step.
#[derive(Clone, Debug)]
enum Op {
    /// Queue item `item` (a delayed item through `DelayedWork::work`) on `wq`.
    Queue {
        item: usize,
        wq: usize,
        cpu: Cpu,
    },
    /// `queue_delayed` of delayed item `d`.
    QueueDelayed {
        d: usize,
        wq: usize,
        cpu: Cpu,
        ms: u64,
    },
    /// `mod_delayed` of delayed item `d`.
    ModDelayed {
        d: usize,
        wq: usize,
        cpu: Cpu,
        ms: u64,
    },
    Cancel {
        item: usize,
    },
    CancelSync {
        item: usize,
    },
    Disable {
        item: usize,
    },
    Enable {
        item: usize,
    },
    /// `Work::flush` or `DelayedWork::flush` (a run window).
    Flush {
        item: usize,
    },
    /// `Workqueue::flush` (a run window).
    FlushWq {
        wq: usize,
    },
    /// `Workqueue::drain` (a run window).
    Drain {
        wq: usize,
    },
    /// Moves the manual clock by `ms`.
    Advance {
        ms: u64,
    },
    /// Worker creation fails from now on (`true`) or succeeds again.
    SpawnFail(bool),
    /// A run window: everything queued runs.
    Run,
}

/// What a step must return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ret {
    Unit,
    Bool(bool),
    InvalidCpu,
}

/// What the last step must have done, beyond the state the model is in after it.
#[derive(Clone, Debug)]
struct Expect {
    ret: Ret,
    /// A flush of one item that must wait: entries in flight over all workqueues once its
    /// barrier is in place.
    barrier_at: Option<usize>,
    /// Items whose runs must be finished when a flush or drain returns.
    must_have_run: Vec<usize>,
}

#[derive(Clone)]
struct Model {
    setup: Setup,
    items: [ItemModel; NI],
    /// Manual time, in ms.
    now: u64,
    spawn_fail: bool,
    last: Expect,
}

/// Short, so that a shrunk case reads at a glance: the setup, and the items that are not idle
/// and fresh.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fresh = ItemModel { at: At::Idle, depth: 0, runs: 0 };
        let items: Vec<_> = self.items.iter().enumerate().filter(|(_, it)| **it != fresh).collect();
        f.debug_struct("Model")
            .field("setup", &self.setup)
            .field("now_ms", &self.now)
            .field("spawn_fail", &self.spawn_fail)
            .field("items", &items)
            .finish()
    }
}

impl Model {
    fn queued_on(&self, wq: usize) -> usize {
        self.items.iter().filter(|i| i.at == At::Queued { wq }).count()
    }

    fn queued_total(&self) -> usize {
        self.items.iter().filter(|i| matches!(i.at, At::Queued { .. })).count()
    }

    /// A run window: every queued item runs once.
    fn run_all(&mut self) {
        for it in &mut self.items {
            if let At::Queued { .. } = it.at {
                it.runs += 1;
                it.at = At::Idle;
            }
        }
    }

    /// Where a delayed queueing on `wq` after `ms` puts an item.
    fn delayed(&self, wq: usize, ms: u64) -> At {
        if ms == 0 {
            At::Queued { wq }
        } else {
            At::Armed { wq, due: self.now.saturating_add(ms) }
        }
    }

    /// A queueing (claim PENDING, refuse if disabled) that would put `item` at `to`.
    fn queue(&mut self, item: usize, cpu: Cpu, to: At) -> Ret {
        if !self.cpu_ok(cpu) {
            return Ret::InvalidCpu;
        }
        let it = &mut self.items[item];
        let ok = it.at == At::Idle && it.depth == 0;
        if ok {
            it.at = to;
        }
        Ret::Bool(ok)
    }

    fn cpu_ok(&self, cpu: Cpu) -> bool {
        !matches!(cpu, Cpu::Beyond(_))
    }
}

/// A generated delay as the API takes it.
fn delay(ms: u64) -> Duration {
    if ms == FOREVER {
        Duration::MAX
    } else {
        Duration::from_millis(ms)
    }
}

fn is_delayed(item: usize) -> bool {
    item >= NW
}

struct WqModel;

impl ReferenceStateMachine for WqModel {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        let kind = prop_oneof![
            2 => (any::<bool>(), 1..=3usize).prop_map(|(highpri, max_active)| WqKind::PerCpu { highpri, max_active }),
            1 => (1..=3usize).prop_map(|max_active| WqKind::Unbound { max_active }),
            1 => Just(WqKind::Ordered),
        ];
        (1..=2usize, proptest::collection::vec(kind, 1..=2))
            .prop_map(|(cpus, wqs)| Model {
                setup: Setup { cpus, wqs },
                items: [ItemModel { at: At::Idle, depth: 0, runs: 0 }; NI],
                now: 0,
                spawn_fail: false,
                last: Expect { ret: Ret::Unit, barrier_at: None, must_have_run: Vec::new() },
            })
            .boxed()
    }

    fn transitions(s: &Model) -> BoxedStrategy<Op> {
        let nwq = s.setup.wqs.len();
        let cpus = s.setup.cpus;
        let cpu = prop_oneof![
            4 => Just(Cpu::Any),
            3 => (0..cpus).prop_map(Cpu::On),
            1 => (0..3usize).prop_map(Cpu::Beyond),
        ];
        let delay = prop_oneof![2 => Just(0u64), 8 => 1..=MAX_DELAY_MS, 1 => Just(FOREVER)];
        prop_oneof![
            5 => (0..NI, 0..nwq, cpu.clone()).prop_map(|(item, wq, cpu)| Op::Queue { item, wq, cpu }),
            4 => (0..ND, 0..nwq, cpu.clone(), delay.clone())
                .prop_map(|(d, wq, cpu, ms)| Op::QueueDelayed { d, wq, cpu, ms }),
            3 => (0..ND, 0..nwq, cpu, delay).prop_map(|(d, wq, cpu, ms)| Op::ModDelayed { d, wq, cpu, ms }),
            2 => (0..NI).prop_map(|item| Op::Cancel { item }),
            1 => (0..NI).prop_map(|item| Op::CancelSync { item }),
            1 => (0..NI).prop_map(|item| Op::Disable { item }),
            1 => (0..NI).prop_map(|item| Op::Enable { item }),
            1 => (0..NI).prop_map(|item| Op::Flush { item }),
            1 => (0..nwq).prop_map(|wq| Op::FlushWq { wq }),
            1 => (0..nwq).prop_map(|wq| Op::Drain { wq }),
            3 => (1..=MAX_DELAY_MS).prop_map(|ms| Op::Advance { ms }),
            1 => any::<bool>().prop_map(Op::SpawnFail),
            2 => Just(Op::Run),
        ]
        .boxed()
    }

    /// Indices must fit the setup (shrinking may change it).
    fn preconditions(s: &Model, op: &Op) -> bool {
        let nwq = s.setup.wqs.len();
        let cpu_fits = |c: &Cpu| !matches!(c, Cpu::On(n) if *n >= s.setup.cpus);
        match op {
            Op::Queue { wq, cpu, .. } | Op::QueueDelayed { wq, cpu, .. } | Op::ModDelayed { wq, cpu, .. } => {
                *wq < nwq && cpu_fits(cpu)
            }
            Op::FlushWq { wq } | Op::Drain { wq } => *wq < nwq,
            _ => true,
        }
    }

    fn apply(mut s: Model, op: &Op) -> Model {
        s.last = Expect { ret: Ret::Unit, barrier_at: None, must_have_run: Vec::new() };
        match *op {
            // kernel-notes §2.2 queue_work_on, §3.7 queue_delayed_work_on (a zero delay queues at once).
            Op::Queue { item, wq, cpu } => s.last.ret = s.queue(item, cpu, At::Queued { wq }),
            Op::QueueDelayed { d, wq, cpu, ms } => s.last.ret = s.queue(NW + d, cpu, s.delayed(wq, ms)),
            Op::ModDelayed { d, wq, cpu, ms } => {
                s.last.ret = if !s.cpu_ok(cpu) {
                    Ret::InvalidCpu
                } else {
                    // kernel-notes §3.7 mod_delayed_work_on: steal PENDING wherever it is, re-arm;
                    // true if it was pending. A disabled item cannot be pending and stays idle.
                    let to = s.delayed(wq, ms);
                    let it = &mut s.items[NW + d];
                    let was = it.at != At::Idle;
                    if it.depth == 0 {
                        it.at = to;
                    }
                    Ret::Bool(was)
                };
            }
            Op::Cancel { item } | Op::CancelSync { item } => {
                // kernel-notes §3.6: true if a pending instance (armed or queued) was removed.
                let it = &mut s.items[item];
                s.last.ret = Ret::Bool(it.at != At::Idle);
                it.at = At::Idle;
            }
            Op::Disable { item } => {
                let it = &mut s.items[item];
                s.last.ret = Ret::Bool(it.at != At::Idle);
                it.at = At::Idle;
                it.depth += 1;
            }
            Op::Enable { item } => {
                // kernel-notes §3.6 enable_work: true when the depth reaches 0; never queues. Without a
                // matching disable cmwq warns, returns false and leaves the item alone.
                let it = &mut s.items[item];
                s.last.ret = Ret::Bool(if it.depth > 0 {
                    it.depth -= 1;
                    it.depth == 0
                } else {
                    false
                });
            }
            Op::Flush { item } => {
                // kernel-notes §3.4/§3.7: flush_delayed_work queues an armed item at once; flush_work
                // returns whether it waited (an instance was pending).
                let it = &mut s.items[item];
                let pending = it.at != At::Idle;
                if let At::Armed { wq, .. } = it.at {
                    it.at = At::Queued { wq };
                }
                s.last.ret = Ret::Bool(pending);
                if pending {
                    s.last.barrier_at = Some(s.queued_total() + 1);
                    s.last.must_have_run = vec![item];
                }
                s.run_all();
            }
            Op::FlushWq { wq } | Op::Drain { wq } => {
                s.last.must_have_run = (0..NI).filter(|&i| s.items[i].at == At::Queued { wq }).collect();
                s.run_all();
            }
            Op::Advance { ms } => {
                s.now += ms;
                for it in &mut s.items {
                    if let At::Armed { wq, due } = it.at {
                        if due <= s.now {
                            it.at = At::Queued { wq };
                        }
                    }
                }
            }
            Op::SpawnFail(on) => s.spawn_fail = on,
            Op::Run => s.run_all(),
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// The system under test.

/// What the items record, and what they find wrong.
#[derive(Default)]
struct Probe {
    ran: [AtomicU32; NI],
    done: [AtomicU32; NI],
    running: [AtomicBool; NI],
    /// Set by the test during run windows only.
    window: AtomicBool,
    overlaps: AtomicU32,
    outside_window: AtomicU32,
    while_disabled: AtomicU32,
    while_pending: AtomicU32,
}

impl Probe {
    fn run(&self, i: usize, w: &Work) {
        if self.running[i].swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.ran[i].fetch_add(1, Ordering::SeqCst);
        if !self.window.load(Ordering::SeqCst) {
            self.outside_window.fetch_add(1, Ordering::SeqCst);
        }
        if w.disable_depth() > 0 {
            self.while_disabled.fetch_add(1, Ordering::SeqCst);
        }
        // Nobody queues during a run window, and PENDING is cleared before the call.
        if w.is_pending() {
            self.while_pending.fetch_add(1, Ordering::SeqCst);
        }
        self.running[i].store(false, Ordering::SeqCst);
        self.done[i].fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self, i: usize) -> u32 {
        self.done[i].load(Ordering::SeqCst)
    }

    fn check_clean(&self) {
        for (what, n) in [
            ("ran twice at once", &self.overlaps),
            ("ran outside a run window (while frozen)", &self.outside_window),
            ("ran while disabled", &self.while_disabled),
            ("ran while still pending", &self.while_pending),
        ] {
            assert_eq!(n.load(Ordering::SeqCst), 0, "an item {what}");
        }
    }
}

struct Sut {
    clock: ManualClock,
    spawner: Arc<FailingSpawner>,
    rt: Runtime,
    wqs: Vec<Workqueue>,
    works: Vec<Work>,
    delayed: Vec<DelayedWork>,
    probe: Arc<Probe>,
    /// Nanosecond ticks given to the clock in run windows.
    ticks: Cell<u64>,
}

/// An item's handle: plain items are cancelled, flushed.. through `Work`, delayed items
/// through `DelayedWork` (which also reaches the timer).
enum Handle {
    Work(Work),
    Delayed(DelayedWork),
}

impl Handle {
    fn call(&self, on_work: fn(&Work) -> bool, on_delayed: fn(&DelayedWork) -> bool) -> bool {
        match self {
            Handle::Work(w) => on_work(w),
            Handle::Delayed(d) => on_delayed(d),
        }
    }
}

/// A call on a helper thread, so a call that blocks when it must not fails the test instead of
/// hanging it.
struct Call<T>(JoinHandle<T>);

impl<T: Send + 'static> Call<T> {
    fn start(f: impl FnOnce() -> T + Send + 'static) -> Call<T> {
        Call(std::thread::Builder::new().name("model-call".into()).spawn(f).expect("spawn a helper thread"))
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// The result; the caller has waited (with a deadline) until `is_finished`.
    fn result(self) -> T {
        assert!(self.is_finished());
        self.0.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

/// Waits until `f` holds (deadline), giving the clock a 1 ns tick every 2 ms so that maydays
/// and worker creation retries happen.
#[track_caller]
fn wait_ticking(clock: &ManualClock, ticks: &Cell<u64>, what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    let mut last_tick = start;
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting for {what}");
        if last_tick.elapsed() >= Duration::from_millis(2) {
            clock.advance(TICK);
            ticks.set(ticks.get() + 1);
            assert!(ticks.get() < MAX_TICKS, "too many clock ticks in one case");
            last_tick = Instant::now();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl Sut {
    fn new(setup: &Setup) -> Sut {
        let clock = ManualClock::new();
        let spawner = FailingSpawner::new(FailMode::Never);
        let rt = Runtime::builder()
            .cpus(setup.cpus)
            .pin_workers(false)
            .clock(&clock)
            .spawner(spawner.clone())
            .create_cooldown(TICK)
            .mayday_timeouts(TICK, TICK)
            .build();
        rt.freeze();
        let wqs = setup
            .wqs
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let b = rt.workqueue(&format!("model{i}")).freezable().mem_reclaim();
                let b = match *kind {
                    WqKind::PerCpu { highpri: true, max_active } => b.highpri().max_active(max_active),
                    WqKind::PerCpu { highpri: false, max_active } => b.max_active(max_active),
                    WqKind::Unbound { max_active } => b.unbound().max_active(max_active),
                    WqKind::Ordered => b.ordered(),
                };
                b.build().expect("build a workqueue")
            })
            .collect();
        let probe = Arc::new(Probe::default());
        let works = (0..NW)
            .map(|i| {
                let p = probe.clone();
                Work::new(move |w: &Work| p.run(i, w))
            })
            .collect();
        let delayed = (NW..NI)
            .map(|i| {
                let p = probe.clone();
                DelayedWork::new(move |w: &Work| p.run(i, w))
            })
            .collect();
        Sut { clock, spawner, rt, wqs, works, delayed, probe, ticks: Cell::new(0) }
    }

    fn work(&self, item: usize) -> &Work {
        if is_delayed(item) {
            self.delayed[item - NW].work()
        } else {
            &self.works[item]
        }
    }

    /// Item `item` as the API that takes it: `Work` or `DelayedWork`.
    fn handle(&self, item: usize) -> Handle {
        if is_delayed(item) {
            Handle::Delayed(self.delayed[item - NW].clone())
        } else {
            Handle::Work(self.works[item].clone())
        }
    }

    fn cpu(&self, cpu: Cpu) -> Option<usize> {
        match cpu {
            Cpu::Any => None,
            Cpu::On(c) => Some(c),
            Cpu::Beyond(k) => Some(self.rt.nr_cpus() + k),
        }
    }

    /// Entries in flight on workqueue `wq` (items and barriers), and how many are active and
    /// inactive.
    fn in_flight(&self, wq: usize) -> (usize, usize, usize) {
        self.wqs[wq]
            .pwqs()
            .iter()
            .fold((0, 0, 0), |(f, a, i), p| (f + p.in_flight as usize, a + p.nr_active, i + p.nr_inactive))
    }

    fn total_in_flight(&self) -> usize {
        (0..self.wqs.len()).map(|w| self.in_flight(w).0).sum()
    }

    #[track_caller]
    fn wait_ticking(&self, what: &str, f: impl Fn() -> bool) {
        wait_ticking(&self.clock, &self.ticks, what, f)
    }

    fn thaw(&self) {
        self.probe.window.store(true, Ordering::SeqCst);
        self.rt.thaw();
    }

    /// Ends a run window: waits until every item has run as often as the model says and
    /// nothing is in flight, then freezes again.
    fn quiesce(&self, m: &Model) {
        self.wait_ticking("every queued item to run and nothing in flight", || {
            (0..NI).all(|i| self.probe.done(i) == m.items[i].runs) && self.total_in_flight() == 0
        });
        self.probe.window.store(false, Ordering::SeqCst);
        self.rt.freeze();
    }

    /// A flush that returned while frozen cannot have waited for anything: checked before the
    /// thaw, so that an early return is caught whatever the workers' speed.
    fn check_early_return<T: Send + 'static>(&self, m: &Model, call: &Call<T>, what: &str) {
        if call.is_finished() {
            self.check_ran(m, what);
        }
    }

    fn check_ran(&self, m: &Model, what: &str) {
        for &i in &m.last.must_have_run {
            assert_eq!(self.probe.done(i), m.items[i].runs, "{what} returned before item {i} had run");
        }
    }

    fn step(&self, m: &Model, op: &Op) -> Ret {
        let b = Ret::Bool;
        let cpu_err = |r: Result<bool, Error>| match r {
            Ok(v) => b(v),
            Err(Error::InvalidCpu { .. }) => Ret::InvalidCpu,
            Err(e) => panic!("{op:?}: unexpected error {e}"),
        };
        match *op {
            Op::Queue { item, wq, cpu } => {
                let (q, w) = (&self.wqs[wq], self.work(item));
                match cpu {
                    Cpu::Any => b(q.queue(w)),
                    Cpu::On(c) => b(q.queue_on(c, w)),
                    Cpu::Beyond(_) => cpu_err(q.try_queue_on(self.cpu(cpu).unwrap(), w)),
                }
            }
            Op::QueueDelayed { d, wq, cpu, ms } => {
                let (q, dw, delay) = (&self.wqs[wq], &self.delayed[d], delay(ms));
                match cpu {
                    Cpu::Any => b(q.queue_delayed(dw, delay)),
                    Cpu::On(c) => b(q.queue_delayed_on(c, dw, delay)),
                    Cpu::Beyond(_) => cpu_err(q.try_queue_delayed_on(self.cpu(cpu), dw, delay)),
                }
            }
            Op::ModDelayed { d, wq, cpu, ms } => {
                let (q, dw, delay) = (&self.wqs[wq], &self.delayed[d], delay(ms));
                match cpu {
                    Cpu::Any => b(q.mod_delayed(dw, delay)),
                    Cpu::On(c) => b(q.mod_delayed_on(c, dw, delay)),
                    Cpu::Beyond(_) => cpu_err(q.try_mod_delayed_on(self.cpu(cpu), dw, delay)),
                }
            }
            Op::Cancel { item } => b(self.handle(item).call(Work::cancel, DelayedWork::cancel)),
            Op::CancelSync { item } => {
                // Nothing runs while frozen, so this must not wait; on a helper thread so that a
                // wrong wait fails instead of hanging.
                let h = self.handle(item);
                let call = Call::start(move || h.call(Work::cancel_sync, DelayedWork::cancel_sync));
                wait_for("cancel_sync while nothing runs", || call.is_finished());
                b(call.result())
            }
            Op::Disable { item } => b(self.handle(item).call(Work::disable, DelayedWork::disable)),
            Op::Enable { item } => b(self.handle(item).call(Work::enable, DelayedWork::enable)),
            Op::Flush { item } => {
                let h = self.handle(item);
                let call = Call::start(move || h.call(Work::flush, DelayedWork::flush));
                // Frozen: the flush either returns at once (idle) or waits on its barrier.
                match m.last.barrier_at {
                    Some(n) => wait_for("the flush's barrier", || call.is_finished() || self.total_in_flight() == n),
                    None => wait_for("the flush of an idle item to return", || call.is_finished()),
                }
                self.check_early_return(m, &call, "Work::flush");
                self.thaw();
                self.wait_ticking("the flush to return", || call.is_finished());
                let r = call.result();
                self.check_ran(m, "Work::flush");
                self.quiesce(m);
                b(r)
            }
            Op::FlushWq { wq } | Op::Drain { wq } => {
                let q = self.wqs[wq].clone();
                let drain = matches!(op, Op::Drain { .. });
                // Started frozen, like an item's flush: with items queued it must arm a pwq for
                // its colour and wait; with none it must return at once. Either way a flush that
                // returns too early is caught whatever the workers' speed.
                let call = Call::start(move || if drain { q.drain() } else { q.flush() });
                if m.last.must_have_run.is_empty() {
                    wait_for("the flush or drain of an empty workqueue to return", || call.is_finished());
                } else {
                    wait_for("the flush or drain to wait for its colour", || {
                        call.is_finished() || self.wqs[wq].pwqs().iter().any(|p| p.flush_color.is_some())
                    });
                }
                self.check_early_return(m, &call, if drain { "Workqueue::drain" } else { "Workqueue::flush" });
                self.thaw();
                self.wait_ticking("the workqueue flush or drain to return", || call.is_finished());
                call.result();
                self.check_ran(m, if drain { "Workqueue::drain" } else { "Workqueue::flush" });
                self.quiesce(m);
                Ret::Unit
            }
            Op::Advance { ms } => {
                self.clock.advance(Duration::from_millis(ms));
                // The timer thread queues what is due.
                let n = m.queued_total();
                wait_for("the due timers to queue their items", || self.total_in_flight() >= n);
                Ret::Unit
            }
            Op::SpawnFail(on) => {
                self.spawner.set_mode(if on { FailMode::Always } else { FailMode::Never });
                Ret::Unit
            }
            Op::Run => {
                self.thaw();
                self.quiesce(m);
                Ret::Unit
            }
        }
    }
}

struct WqTest;

impl StateMachineTest for WqTest {
    type SystemUnderTest = Sut;
    type Reference = WqModel;

    fn init_test(m: &Model) -> Sut {
        Sut::new(&m.setup)
    }

    fn apply(sut: Sut, m: &Model, op: Op) -> Sut {
        let got = sut.step(m, &op);
        assert_eq!(got, m.last.ret, "{op:?} returned {got:?}; the model says {:?}", m.last.ret);
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        sut.probe.check_clean();
        for i in 0..NI {
            let (w, it) = (sut.work(i), &m.items[i]);
            assert_eq!(w.is_pending(), it.at != At::Idle, "item {i}: is_pending; the model has {it:?}");
            assert_eq!(w.disable_depth(), it.depth as u64, "item {i}: disable depth; the model has {it:?}");
            let (ran, done) = (sut.probe.ran[i].load(Ordering::SeqCst), sut.probe.done(i));
            assert_eq!((ran, done), (it.runs, it.runs), "item {i}: runs (started, finished); the model has {it:?}");
        }
        for wq in 0..m.setup.wqs.len() {
            let (in_flight, active, inactive) = sut.in_flight(wq);
            let queued = m.queued_on(wq);
            assert_eq!(
                (in_flight, active, inactive),
                (queued, 0, queued),
                "workqueue {wq}: (in flight, active, inactive) while frozen; the model has {queued} queued"
            );
        }
        assert!(!sut.rt.freeze_busy(), "an item is active while frozen");
        for (wq, q) in sut.wqs.iter().enumerate() {
            assert!(q.pwqs().iter().all(|p| p.flush_color.is_none()), "workqueue {wq}: a flush colour is still armed");
        }
        let runs: u64 = m.items.iter().map(|it| u64::from(it.runs)).sum();
        let (started, completed) =
            sut.wqs.iter().map(Workqueue::stats).fold((0, 0), |(s, c), st| (s + st.started, c + st.completed));
        assert_eq!((started, completed), (runs, runs), "the workqueues' (started, completed) counters");
    }

    /// Destroys the workqueues (which fires what is armed) and drops the runtime: every
    /// accepted queueing has then run exactly once unless cancelled, and every thread exits.
    fn teardown(sut: Sut, m: Model) {
        sut.spawner.set_mode(FailMode::Never);
        sut.thaw();
        if std::env::var_os("MODEL_STATS").is_some() {
            let st = sut
                .wqs
                .iter()
                .map(Workqueue::stats)
                .fold((0, 0, 0), |(s, m, r), st| (s + st.started, m + st.mayday, r + st.rescued));
            eprintln!("model case: {} ticks, {} runs, {} maydays, {} rescued", sut.ticks.get(), st.0, st.1, st.2);
        }
        let Sut { clock, spawner, rt, wqs, works, delayed, probe, ticks } = sut;
        let call = Call::start(move || {
            drop(wqs);
            drop(rt);
        });
        wait_ticking(&clock, &ticks, "the workqueues to be destroyed and the runtime to shut down", || {
            call.is_finished()
        });
        call.result();
        drop((works, delayed));
        probe.check_clean();
        for (i, it) in m.items.iter().enumerate() {
            let expect = it.runs + u32::from(it.at != At::Idle);
            assert_eq!(probe.done(i), expect, "item {i}: runs after destroy; the model has {it:?}");
        }
        wait_for("every thread of the runtime to exit", || spawner.live() == 0);
    }
}

/// The run's configuration: 128 cases unless `PROPTEST_CASES` says otherwise, regressions in a
/// committed file, and a seed that is printed (from `PROPTEST_RNG_SEED` if set).
fn config() -> Config {
    static SEED: OnceLock<u64> = OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let s = std::env::var("PROPTEST_RNG_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("model: PROPTEST_RNG_SEED={s}");
        s
    });
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(128);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        // `PROPTEST_DISABLE_FAILURE_PERSISTENCE` (for experiments, such as planted bugs) keeps
        // the committed file as it is.
        failure_persistence: std::env::var_os("PROPTEST_DISABLE_FAILURE_PERSISTENCE")
            .is_none()
            .then(|| Box::new(FileFailurePersistence::Direct("tests/model.proptest-regressions")) as _),
        max_shrink_iters: 2048,
        // A failure that is a hang costs a 20 s deadline per case tried: shrinking stops after
        // a minute (`PROPTEST_MAX_SHRINK_TIME`, in ms, overrides) and reports the smallest case
        // found so far.
        max_shrink_time: std::env::var("PROPTEST_MAX_SHRINK_TIME").ok().and_then(|s| s.parse().ok()).unwrap_or(60_000),
        ..Config::default()
    }
}

prop_state_machine! {
    #![proptest_config(config())]
    #[test]
    fn workqueue_matches_the_model(sequential 1..50 => WqTest);
}

/// Found by the model (shrunk to `QueueDelayed{ms: 0}, Enable`): an `enable` without a matching
/// `disable` cancelled the pending instance it grabbed, though it is documented to do nothing.
#[test]
fn unbalanced_enable_leaves_pending_items_alone() {
    let clock = ManualClock::new();
    let rt = Runtime::builder().cpus(1).pin_workers(false).clock(&clock).build();
    rt.freeze();
    let wq = rt.workqueue("unbalanced").freezable().build().unwrap();
    let (w, d) = (Work::new(|_: &Work| {}), DelayedWork::new(|_: &Work| {}));
    assert!(wq.queue(&w));
    assert!(wq.queue_delayed(&d, Duration::from_millis(5)));
    assert!(!w.enable() && !d.enable(), "enable without disable returns false");
    assert!(w.is_pending(), "an unbalanced enable cancelled a queued item");
    assert!(d.is_pending(), "an unbalanced enable cancelled an armed item");
    assert_eq!(wq.pwqs().iter().map(|p| p.nr_inactive).sum::<usize>(), 1, "the queued item is still queued");
    assert!(w.cancel() && d.cancel(), "both instances are still there to cancel");
}

/// Found by the model (a failed assertion while items waited behind a pool whose worker
/// creation failed): the runtime's drop spun forever. The workqueue, dropped during the panic,
/// does not drain (by design, so that a panic does not become a hang); at shutdown the pool's
/// only worker, manager of a pool with items and no idle worker, went back to managing again
/// and again (creation returns at once in a dying pool) and never looked at its DIE flag, so
/// the shutdown's join never returned.
#[test]
fn runtime_shutdown_with_items_waiting_for_a_worker() {
    let clock = ManualClock::new();
    let spawner = FailingSpawner::new(FailMode::Never);
    let rt = Runtime::builder().cpus(1).pin_workers(false).clock(&clock).spawner(spawner.clone()).build();
    let wq = rt.workqueue("no-worker").build().unwrap();
    spawner.set_mode(FailMode::Always);
    let w = Work::new(|_: &Work| {});
    assert!(wq.queue(&w));
    // The pool's only worker becomes its manager and fails to create a reserve; the create
    // cooldown (1 s of manual time) never passes, so the item waits on the worklist.
    wait_for("a refused worker creation", || spawner.refused() >= 1);
    assert!(w.is_pending());
    let drop_during_panic = Call::start(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = (rt, wq);
            panic!("planned panic: the runtime is dropped while unwinding");
        }));
        assert!(r.is_err());
    });
    wait_for("the runtime's drop during a panic to return", || drop_during_panic.is_finished());
    drop_during_panic.result();
    wait_for("every thread of the runtime to exit", || spawner.live() == 0);
}
