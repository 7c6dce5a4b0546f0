//! The fault-injection matrix (issue 9, lane 6): each cell crosses a thread-creation failure
//! mode of the [`FailingSpawner`] with a fault (none, panics in items, panics in delayed items,
//! a clock that jumps a year forward) on one kind of workqueue (per-CPU, unbound, ordered,
//! per-CPU with `mem_reclaim`), and ends with
//! * the ledger balanced: for every item, accepted queueings = runs + cancels, runs finished,
//!   no item ever running concurrently with itself, every injected panic reported once;
//! * the runtime shut down within the deadline, every thread it created gone.
//!
//! What each cell expects while its failure mode is in force (the manual clock is driven by
//! the test, so cooldowns, timers and maydays fire only as the test moves time):
//! * `Never`, `EveryNth(2)` (each failed creation is retried after the cooldown): progress.
//! * `Always` (set once the workqueue exists: each pool has one idle worker and no reserve),
//!   `AlwaysFromStart` (no worker at all) and `Period` (failing until 3 s of the clock have
//!   passed): no worker can be created, so without a rescuer nothing runs at all; the test
//!   asserts that (while the managers are seen retrying), then lets creation succeed and
//!   everything runs. With `mem_reclaim` the rescuer runs every item meanwhile (panicking
//!   ones too: the panics in rescued items).
//! * `After(1)`: one more thread, then failure: whether a pool gets stuck depends on which
//!   pool asks first, so the cell only requires that everything runs once creation works.
//! * An unbound or ordered workqueue cannot be created without its first worker
//!   (`AlwaysFromStart`): the build fails with `Error::Spawn`, and succeeds once creation works.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
// Tests act as users: real threads and time.
// Real threads and std's JoinHandle (support::join): not a model-checker test.
#![cfg(not(any(loom, shuttle)))]

mod support;

use cmwq::{DelayedWork, FailMode, FailingSpawner, ManualClock, Runtime, Work, Workqueue};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};
use support::{Concurrency, Ledger, DEADLINE};

/// Plain items, then delayed items, in one ledger.
const ITEMS: usize = 8;
const DELAYED: usize = 4;
/// The clock moves by this much per step of the test's driving loop.
const STEP: Duration = Duration::from_millis(50);
/// How long `Period` makes creation fail, on the runtime's clock.
const PERIOD: Duration = Duration::from_secs(3);
/// The clock jump: a year.
const JUMP: Duration = Duration::from_secs(365 * 24 * 3600);
/// The payload of injected panics (the panic hook keeps them quiet).
const INJECTED: &str = "fault_matrix: injected panic";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Never,
    Always,
    AlwaysFromStart,
    After(usize),
    EveryNth(usize),
    Period,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    PanicItems,
    PanicDelayed,
    ClockJump,
}

const FAULTS: [Fault; 4] = [Fault::None, Fault::PanicItems, Fault::PanicDelayed, Fault::ClockJump];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    PerCpu,
    Unbound,
    Ordered,
    MemReclaim,
}

impl Kind {
    fn per_cpu(self) -> bool {
        matches!(self, Kind::PerCpu | Kind::MemReclaim)
    }
}

/// What the mode lets happen before the test allows creation again.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Every item runs with the mode in force.
    Progress,
    /// Nothing runs while the mode holds.
    Blocked,
    /// Either.
    Either,
}

fn expect(mode: Mode, kind: Kind) -> Expect {
    match (mode, kind) {
        (Mode::Never | Mode::EveryNth(_), _) | (_, Kind::MemReclaim) => Expect::Progress,
        // The workqueue could only be built once creation was allowed again.
        (Mode::AlwaysFromStart, Kind::Unbound | Kind::Ordered) => Expect::Progress,
        (Mode::Always | Mode::AlwaysFromStart | Mode::Period, _) => Expect::Blocked,
        (Mode::After(_), _) => Expect::Either,
    }
}

fn quiet_injected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&INJECTED) {
                default(info);
            }
        }));
    });
}

/// One cell: its runtime, workqueue, items and books.
struct Cell {
    name: String,
    mode: Mode,
    fault: Fault,
    kind: Kind,
    clock: ManualClock,
    spawner: Arc<FailingSpawner>,
    rt: Runtime,
    wq: Workqueue,
    items: Vec<Work>,
    delayed: Vec<DelayedWork>,
    ledger: Arc<Ledger>,
    conc: Arc<Concurrency>,
    /// Panics the workqueue's handler saw.
    panics: Arc<AtomicUsize>,
    /// The clock instant at which `Period` stops failing.
    period_end: Option<Instant>,
}

impl Cell {
    fn new(mode: Mode, fault: Fault, kind: Kind) -> Cell {
        quiet_injected_panics();
        let name = format!("{mode:?} x {fault:?} x {kind:?}");
        let clock = ManualClock::new();
        let spawner =
            FailingSpawner::new(if mode == Mode::AlwaysFromStart { FailMode::Always } else { FailMode::Never });
        let rt = Runtime::builder().cpus(2).clock(&clock).spawner(spawner.clone()).build();
        let panics = Arc::new(AtomicUsize::new(0));
        let build = || {
            let p = panics.clone();
            let b = rt.workqueue("matrix").panic_handler(move |wp| {
                assert_eq!(wp.message(), Some(INJECTED), "a panic that was not injected");
                p.fetch_add(1, Ordering::SeqCst);
            });
            match kind {
                Kind::PerCpu => b,
                Kind::Unbound => b.unbound(),
                Kind::Ordered => b.ordered(),
                Kind::MemReclaim => b.mem_reclaim(),
            }
            .build()
        };
        let wq = match build() {
            Ok(wq) => wq,
            Err(e) => {
                assert!(mode == Mode::AlwaysFromStart && !kind.per_cpu(), "{name}: build failed: {e}");
                assert!(matches!(e, cmwq::Error::Spawn(_)), "{name}: {e}");
                // Its first worker could not be created; with creation allowed it builds.
                spawner.set_mode(FailMode::Never);
                build().unwrap_or_else(|e| panic!("{name}: build failed with creation allowed: {e}"))
            }
        };
        let period_end = (mode == Mode::Period).then(|| clock.now() + PERIOD);
        match mode {
            Mode::Never | Mode::AlwaysFromStart => {}
            Mode::Always => spawner.set_mode(FailMode::Always),
            Mode::After(n) => spawner.set_mode(FailMode::After(n)),
            Mode::EveryNth(n) => spawner.set_mode(FailMode::EveryNth(n)),
            Mode::Period => spawner.set_mode(FailMode::for_period(&clock.clock(), PERIOD)),
        }
        let ledger = Ledger::new(ITEMS + DELAYED);
        let conc = Arc::new(Concurrency::default());
        let body = |id: usize, panics: bool| {
            let (ledger, conc) = (ledger.clone(), conc.clone());
            move |_: &Work| {
                /// Books the end of the run even when it unwinds.
                struct Exit<'a>(&'a Ledger, &'a Concurrency, usize);
                impl Drop for Exit<'_> {
                    fn drop(&mut self) {
                        self.1.exit();
                        self.0.exit(self.2);
                    }
                }
                ledger.enter(id);
                conc.enter();
                let _exit = Exit(&ledger, &conc, id);
                if panics && id % 2 == 0 {
                    std::panic::panic_any(INJECTED);
                }
            }
        };
        let items = (0..ITEMS).map(|i| Work::new(body(i, fault == Fault::PanicItems))).collect();
        let delayed = (0..DELAYED).map(|j| DelayedWork::new(body(ITEMS + j, fault == Fault::PanicDelayed))).collect();
        Cell { name, mode, fault, kind, clock, spawner, rt, wq, items, delayed, ledger, conc, panics, period_end }
    }

    fn queue_all(&self) {
        for (i, w) in self.items.iter().enumerate() {
            let ok = if self.kind.per_cpu() { self.wq.queue_on(i % 2, w) } else { self.wq.queue(w) };
            if ok {
                self.ledger.accepted[i].fetch_add(1, Ordering::SeqCst);
            }
        }
        for (j, d) in self.delayed.iter().enumerate() {
            let delay = STEP * (j as u32 + 1);
            let ok = if self.kind.per_cpu() {
                self.wq.queue_delayed_on(j % 2, d, delay)
            } else {
                self.wq.queue_delayed(d, delay)
            };
            if ok {
                self.ledger.accepted[ITEMS + j].fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn cancel_some(&self) {
        for (i, w) in self.items.iter().enumerate().filter(|(i, _)| i % 4 == 1) {
            self.ledger.cancel(i, || w.cancel());
        }
        self.ledger.cancel(ITEMS, || self.delayed[0].cancel());
    }

    /// Every accepted queueing ran to its end or was cancelled.
    fn settled(&self) -> bool {
        (0..ITEMS + DELAYED).all(|i| {
            self.ledger.settled(i) == self.ledger.accepted[i].load(Ordering::SeqCst)
                && self.ledger.cancelling[i].load(Ordering::SeqCst) == 0
        })
    }

    fn books(&self) -> String {
        let l = &self.ledger;
        let v = |a: &[std::sync::atomic::AtomicU32]| a.iter().map(|x| x.load(Ordering::SeqCst)).collect::<Vec<_>>();
        format!(
            "accepted {:?} ran {:?} done {:?} cancelled {:?}; spawner {:?}; stats {:?}; pools {:#?}",
            v(&l.accepted),
            v(&l.ran),
            v(&l.done),
            v(&l.cancelled),
            self.spawner,
            self.wq.stats(),
            self.rt.pools()
        )
    }

    /// Moves the clock a step at a time until `done` holds, checking `invariant` at every
    /// step; panics naming the cell and what it waited for after the deadline.
    fn drive(&self, what: &str, mut invariant: impl FnMut(&Cell), done: impl Fn(&Cell) -> bool) {
        let t = Instant::now();
        loop {
            invariant(self);
            if done(self) {
                return;
            }
            assert!(
                t.elapsed() < DEADLINE,
                "{}: timed out after {DEADLINE:?} waiting for {what}: {}",
                self.name,
                self.books()
            );
            self.clock.advance(STEP);
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn nothing_ran(&self) {
        assert_eq!(
            self.ledger.total_ran(),
            0,
            "{}: an item ran although no worker could be created: {}",
            self.name,
            self.books()
        );
    }

    fn run(self) {
        let expect = expect(self.mode, self.kind);
        // Round 1, a few steps of time, round 2 with cancels (and the jump), round 3.
        self.queue_all();
        for _ in 0..2 {
            self.clock.advance(STEP);
        }
        self.queue_all();
        self.cancel_some();
        if self.fault == Fault::ClockJump {
            self.clock.advance(JUMP);
        }
        self.queue_all();
        let refused = self.spawner.refused();
        match expect {
            Expect::Progress => self.drive("every item, with the failure mode in force", |_| {}, Cell::settled),
            Expect::Blocked => match self.period_end {
                Some(end) => {
                    // Only this thread moves the clock: while it reads earlier than the end,
                    // no creation can have succeeded (a jump may end the period at once).
                    let before_end = |c: &Cell| {
                        if c.clock.now() < end {
                            c.nothing_ran();
                        }
                    };
                    self.drive("the end of the failure period", before_end, |c| c.clock.now() >= end);
                    self.drive("every item, after the period", |_| {}, Cell::settled);
                }
                None => {
                    let t0 = self.clock.now();
                    self.drive(
                        "the managers to retry creation three times",
                        |c| c.nothing_ran(),
                        |c| c.spawner.refused() >= refused + 3,
                    );
                    self.nothing_ran();
                    // Retries wait out the cooldown: at most one per cooldown of clock time
                    // for each of the (at most two) pools this workqueue uses, plus the first.
                    let cooldowns = (self.clock.now() - t0).as_secs_f64() / cmwq::CREATE_COOLDOWN.as_secs_f64();
                    let retries = (self.spawner.refused() - refused) as f64;
                    assert!(
                        retries <= 2.0 * (cooldowns + 2.0),
                        "{}: {retries} retries in {cooldowns} cooldowns",
                        self.name
                    );
                }
            },
            Expect::Either => self.drive(
                "every item, or a retried creation",
                |_| {},
                |c| c.settled() || c.spawner.refused() >= refused + 2,
            ),
        }
        if self.kind == Kind::MemReclaim && matches!(self.mode, Mode::Always | Mode::AlwaysFromStart) {
            // No worker could ever be created: every run was the rescuer's.
            let st = self.wq.stats();
            assert_eq!(st.rescued, self.ledger.total_ran(), "{}: {}", self.name, self.books());
            assert!(st.rescued > 0);
        }
        self.spawner.set_mode(FailMode::Never);
        self.drive("every item, with creation allowed", |_| {}, Cell::settled);
        self.check_books();
        self.shut_down();
    }

    fn check_books(&self) {
        let l = &self.ledger;
        for i in 0..ITEMS + DELAYED {
            let (acc, ran, done, can) = (
                l.accepted[i].load(Ordering::SeqCst),
                l.ran[i].load(Ordering::SeqCst),
                l.done[i].load(Ordering::SeqCst),
                l.cancelled[i].load(Ordering::SeqCst),
            );
            assert_eq!(acc, ran + can, "{}: item {i}: accepted != ran + cancelled: {}", self.name, self.books());
            assert_eq!(ran, done, "{}: item {i}", self.name);
            assert!(acc >= 1, "{}: item {i} was never accepted", self.name);
        }
        assert_eq!(l.overlaps.load(Ordering::SeqCst), 0, "{}: an item ran concurrently with itself", self.name);
        let injected: u64 = match self.fault {
            Fault::PanicItems => (0..ITEMS).step_by(2).map(|i| l.ran[i].load(Ordering::SeqCst) as u64).sum(),
            Fault::PanicDelayed => {
                (ITEMS..ITEMS + DELAYED).step_by(2).map(|i| l.ran[i].load(Ordering::SeqCst) as u64).sum()
            }
            _ => 0,
        };
        assert!(self.fault != Fault::PanicItems || injected > 0);
        // The handler runs after the item's books are done: wait for the last reports.
        support::wait_for(&format!("{}: the panic reports", self.name), || {
            self.panics.load(Ordering::SeqCst) as u64 >= injected
        });
        assert_eq!(self.panics.load(Ordering::SeqCst) as u64, injected, "{}", self.name);
        assert_eq!(self.wq.stats().panicked, injected, "{}", self.name);
        if self.kind == Kind::Ordered {
            assert_eq!(self.conc.max(), 1, "{}: an ordered workqueue ran two items at once", self.name);
        }
    }

    /// Drops every handle on a thread of its own, within the deadline, and checks that every
    /// thread of the runtime is gone.
    fn shut_down(self) {
        let Cell { name, spawner, rt, wq, items, delayed, clock, .. } = self;
        support::within(&format!("{name}: the shutdown"), move || drop((wq, items, delayed, rt, clock)));
        assert_eq!(spawner.live(), 0, "{name}: threads left after the shutdown: {spawner:?}");
    }
}

fn cell(mode: Mode, kind: Kind) {
    for fault in FAULTS {
        Cell::new(mode, fault, kind).run();
    }
}

macro_rules! cells {
    ($($name:ident: $mode:expr, $kind:expr;)*) => {
        $(
            #[test]
            fn $name() {
                cell($mode, $kind);
            }
        )*
    };
}

cells! {
    never_percpu: Mode::Never, Kind::PerCpu;
    never_unbound: Mode::Never, Kind::Unbound;
    never_ordered: Mode::Never, Kind::Ordered;
    never_mem_reclaim: Mode::Never, Kind::MemReclaim;
    always_percpu: Mode::Always, Kind::PerCpu;
    always_unbound: Mode::Always, Kind::Unbound;
    always_ordered: Mode::Always, Kind::Ordered;
    always_mem_reclaim: Mode::Always, Kind::MemReclaim;
    always_from_start_percpu: Mode::AlwaysFromStart, Kind::PerCpu;
    always_from_start_unbound: Mode::AlwaysFromStart, Kind::Unbound;
    always_from_start_ordered: Mode::AlwaysFromStart, Kind::Ordered;
    always_from_start_mem_reclaim: Mode::AlwaysFromStart, Kind::MemReclaim;
    after_one_percpu: Mode::After(1), Kind::PerCpu;
    after_one_unbound: Mode::After(1), Kind::Unbound;
    after_one_ordered: Mode::After(1), Kind::Ordered;
    after_one_mem_reclaim: Mode::After(1), Kind::MemReclaim;
    every_second_percpu: Mode::EveryNth(2), Kind::PerCpu;
    every_second_unbound: Mode::EveryNth(2), Kind::Unbound;
    every_second_ordered: Mode::EveryNth(2), Kind::Ordered;
    every_second_mem_reclaim: Mode::EveryNth(2), Kind::MemReclaim;
    period_percpu: Mode::Period, Kind::PerCpu;
    period_unbound: Mode::Period, Kind::Unbound;
    period_ordered: Mode::Period, Kind::Ordered;
    period_mem_reclaim: Mode::Period, Kind::MemReclaim;
}

/// The spawner's own modes, request by request: `EveryNth` counts affected requests from when
/// the mode is set (refusals included), `Until` follows the clock, other kinds pass.
#[test]
fn failing_spawner_modes() {
    use cmwq::{SpawnRequest, Spawner, ThreadKind};
    let try_spawn = |s: &FailingSpawner, kind: ThreadKind| {
        let req = SpawnRequest { name: "probe".into(), kind, stack_size: None, body: Box::new(|| {}) };
        s.spawn(req).map(|h| support::join("a probe thread", h)).is_ok()
    };
    let s = FailingSpawner::new(FailMode::EveryNth(3));
    let got: Vec<bool> = (0..7).map(|_| try_spawn(&s, ThreadKind::Worker)).collect();
    assert_eq!(got, [true, true, false, true, true, false, true]);
    assert!(try_spawn(&s, ThreadKind::Service), "only workers are affected");
    s.set_mode(FailMode::EveryNth(2));
    assert_eq!((0..4).map(|_| try_spawn(&s, ThreadKind::Worker)).collect::<Vec<_>>(), [true, false, true, false]);
    s.set_mode(FailMode::EveryNth(0));
    assert!((0..3).all(|_| try_spawn(&s, ThreadKind::Worker)));
    let clock = ManualClock::new();
    s.set_mode(FailMode::for_period(&clock.clock(), Duration::from_secs(2)));
    assert!(!try_spawn(&s, ThreadKind::Worker));
    clock.advance(Duration::from_millis(1999));
    assert!(!try_spawn(&s, ThreadKind::Worker));
    clock.advance(Duration::from_millis(1));
    assert!(try_spawn(&s, ThreadKind::Worker), "the period ends at its instant");
    assert_eq!(s.refused(), 6);
    assert_eq!(s.live(), 0);
}

/// Found by the matrix (`AlwaysFromStart x None x MemReclaim` timed out in 3 of 14 suite
/// runs, one delayed item never run): a pool that never had a worker calls for help from
/// `create_without_manager`, which armed the mayday timer only together with the creation
/// retry timer. Once the rescuer had emptied the worklist, the mayday timer stopped (nothing
/// waiting, no manager); an item queued later, while the retry timer was still armed, armed
/// nothing, and waited forever for a rescuer nobody called.
#[test]
fn a_pool_without_workers_calls_the_rescuer_for_later_items() {
    let clock = ManualClock::new();
    let spawner = FailingSpawner::new(FailMode::Always);
    let rt = Runtime::builder().cpus(1).clock(&clock).spawner(spawner.clone()).build();
    let wq = rt.workqueue("reclaim").mem_reclaim().build().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let item = |ran: &Arc<AtomicUsize>| {
        let ran = ran.clone();
        Work::new(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        })
    };
    assert!(wq.queue_on(0, &item(&ran)));
    clock.advance(cmwq::MAYDAY_INITIAL_TIMEOUT);
    support::wait_for("the first item, rescued", || ran.load(Ordering::SeqCst) == 1 && wq.pwqs()[0].mayday_refs == 0);
    // The next firing finds nothing waiting and, with no manager, stops the timer. (Letting
    // the timer service run first is what makes the old bug show; the test passes on any
    // schedule once it is fixed.)
    clock.advance(cmwq::MAYDAY_INTERVAL);
    std::thread::sleep(Duration::from_millis(50));
    // Still within the creation cooldown: the retry timer is armed.
    assert!(wq.queue_on(0, &item(&ran)));
    let t = Instant::now();
    while ran.load(Ordering::SeqCst) < 2 {
        assert!(t.elapsed() < DEADLINE, "the later item was never rescued: {:?}", wq.stats());
        clock.advance(cmwq::MAYDAY_INTERVAL);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(wq.stats().rescued, 2);
    assert_eq!(spawner.spawned(), 3, "only the service threads and the rescuer were created");
}

/// A spawner whose next worker creation blocks until opened, and whose workers created after
/// that start 100 ms late: a manager caught inside `spawn` by the runtime's shutdown.
#[derive(Default)]
struct GateSpawner {
    block: std::sync::atomic::AtomicBool,
    gate: support::Latch,
    live: Arc<AtomicUsize>,
}

impl std::fmt::Debug for GateSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GateSpawner")
    }
}

impl cmwq::Spawner for GateSpawner {
    fn spawn(&self, req: cmwq::SpawnRequest) -> std::io::Result<std::thread::JoinHandle<()>> {
        let late = req.kind == cmwq::ThreadKind::Worker && self.block.swap(false, Ordering::SeqCst);
        if late {
            self.gate.wait();
        }
        let live = self.live.clone();
        live.fetch_add(1, Ordering::SeqCst);
        let body = req.body;
        cmwq::ThreadSpawner.spawn(cmwq::SpawnRequest {
            body: Box::new(move || {
                let _exit = support::OnDrop(|| {
                    live.fetch_sub(1, Ordering::SeqCst);
                });
                if late {
                    std::thread::sleep(Duration::from_millis(100));
                }
                body()
            }),
            ..req
        })
    }
}

/// Found by the matrix (`Never x ClockJump x Unbound`, `Never x PanicItems x MemReclaim`:
/// "threads left after the shutdown", 2 of 40 suite runs): a manager inside `Spawner::spawn`
/// when the runtime shut down registered its new worker after the shutdown had collected
/// the handles to join, so the runtime's drop returned with that thread still alive.
#[test]
fn shutdown_joins_a_worker_created_while_it_ran() {
    let clock = ManualClock::new();
    let spawner = Arc::new(GateSpawner::default());
    let rt = Runtime::builder().cpus(1).clock(&clock).spawner(spawner.clone()).build();
    let wq = rt.workqueue("reclaim").mem_reclaim().build().unwrap();
    // The pool's only worker becomes manager for the item and blocks creating its reserve;
    // the rescuer runs the item, so the workqueue can be destroyed without waiting for it.
    spawner.block.store(true, Ordering::SeqCst);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    assert!(wq.queue_on(
        0,
        &Work::new(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        })
    ));
    support::wait_for("a manager inside spawn", || cmwq_testkit::cpu_pool(&rt, 0).manager_active);
    clock.advance(cmwq::MAYDAY_INITIAL_TIMEOUT);
    support::wait_for("the item, rescued", || ran.load(Ordering::SeqCst) == 1);
    let dropper = std::thread::spawn(move || drop((wq, rt)));
    // Let the shutdown collect its handles first (only the old bug needs this to show).
    std::thread::sleep(Duration::from_millis(50));
    spawner.gate.open();
    support::join("the runtime's drop", dropper);
    assert_eq!(spawner.live.load(Ordering::SeqCst), 0, "the runtime's drop returned with a thread of it alive");
}
