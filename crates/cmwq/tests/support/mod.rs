//! Shared test support: deadline joins and watchdogs, per-item ledgers, a counting spawner,
//! the stuck-pool setup and the warning log. What the benchmarks use too (deadlines and
//! polling waits, the latch, the seeded generator, CPU burners, `/proc/self/task`, pool
//! finders, allocation counting) is in the `cmwq-testkit` crate; the first few are
//! re-exported here, so that every test names them `support::...`.
#![allow(dead_code, unused_imports, clippy::disallowed_methods, clippy::disallowed_types)]

pub mod stuck;
pub mod warnings;

pub use cmwq_testkit::{wait_for, wait_for_within, Latch, OpenOnDrop, SplitMix64, DEADLINE};

use cmwq::{Work, Workqueue};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Joins `h`, panicking with `what` if the thread has not finished within [`DEADLINE`]; a
/// panic in the thread is re-raised here, prefixed with `what`. Every join in the tests goes
/// through this: a bare `join()` on a hung thread would hang the test binary instead of
/// failing it.
#[track_caller]
pub fn join<T>(what: &str, h: std::thread::JoinHandle<T>) -> T {
    wait_for_within(&format!("{what} to finish"), DEADLINE, || h.is_finished());
    match h.join() {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            panic!("{what} panicked: {msg}");
        }
    }
}

/// Runs `f` on a thread of its own and waits at most [`DEADLINE`] for it: for calls that can
/// hang and cannot take a deadline themselves (`flush`, `drain`, `destroy`, dropping the last
/// handle of a runtime). On a timeout the call is left running and the test fails naming it.
#[track_caller]
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    join(what, std::thread::spawn(f))
}

/// Aborts the test process, naming `what`, if it is still armed [`DEADLINE`] after it was
/// armed: the deadline of a call that can hang and cannot take one itself, run on the test's
/// own thread (a panic cannot be sent into a blocked thread, so a hang ends the process
/// instead of blocking CI; the message goes to the real stderr, past libtest's capture).
/// Dropping it disarms it.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Watchdog {
    #[track_caller]
    pub fn arm(what: &str) -> Watchdog {
        Watchdog::arm_for(what, DEADLINE)
    }

    #[track_caller]
    pub fn arm_for(what: &str, deadline: Duration) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let what = format!("{what} (at {})", std::panic::Location::caller());
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(deadline) {
                use std::io::Write;
                let msg = format!("\nwatchdog: {what} did not return within {deadline:?}: aborting\n");
                let _ = std::io::stderr().write_all(msg.as_bytes());
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Disconnecting wakes the watchdog thread, which then exits.
        self.0.take();
    }
}

/// Calls `f` (a `flush`, `drain` or `destroy` that could hang) under a [`Watchdog`].
#[track_caller]
pub fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let _w = Watchdog::arm(what);
    f()
}

/// Runs a closure when dropped: clean-up that must happen also when the test fails halfway
/// (releasing what items block on, so that the runtime's drop does not wait for them).
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

/// The seed for a randomized test: `WQ_STRESS_SEED` if set, else from the time. Printed.
pub fn seed() -> u64 {
    let s = std::env::var("WQ_STRESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("seed: WQ_STRESS_SEED={s}");
    s
}

/// Tracks how many items run at once and the most that ever did.
#[derive(Default)]
pub struct Concurrency {
    pub now: AtomicUsize,
    pub max: AtomicUsize,
}

impl Concurrency {
    /// Enter; returns the new count.
    pub fn enter(&self) -> usize {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        n
    }
    pub fn exit(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// Per-item exactly-once ledger (spec/quality.md A11.5).
pub struct Ledger {
    pub accepted: Vec<AtomicU32>,
    /// Runs started.
    pub ran: Vec<AtomicU32>,
    /// Runs finished (also when they panicked).
    pub done: Vec<AtomicU32>,
    /// Pending instances removed by cancel.
    pub cancelled: Vec<AtomicU32>,
    /// Cancels under way (a stolen instance is counted in `cancelled` only after the call).
    pub cancelling: Vec<AtomicU32>,
    pub running: Vec<AtomicBool>,
    pub overlaps: AtomicU32,
}

impl Ledger {
    pub fn new(n: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            accepted: (0..n).map(|_| AtomicU32::new(0)).collect(),
            ran: (0..n).map(|_| AtomicU32::new(0)).collect(),
            done: (0..n).map(|_| AtomicU32::new(0)).collect(),
            cancelled: (0..n).map(|_| AtomicU32::new(0)).collect(),
            cancelling: (0..n).map(|_| AtomicU32::new(0)).collect(),
            running: (0..n).map(|_| AtomicBool::new(false)).collect(),
            overlaps: AtomicU32::new(0),
        })
    }
    /// Call at the start of item `id`'s function: counts a run and checks reentrancy.
    pub fn enter(&self, id: usize) {
        if self.running[id].swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.ran[id].fetch_add(1, Ordering::SeqCst);
    }
    pub fn exit(&self, id: usize) {
        self.running[id].store(false, Ordering::SeqCst);
        self.done[id].fetch_add(1, Ordering::SeqCst);
    }
    /// Wraps a cancel call: counts it as under way, then as a hit if it removed an instance.
    pub fn cancel(&self, id: usize, f: impl FnOnce() -> bool) -> bool {
        self.cancelling[id].fetch_add(1, Ordering::SeqCst);
        let hit = f();
        if hit {
            self.cancelled[id].fetch_add(1, Ordering::SeqCst);
        }
        self.cancelling[id].fetch_sub(1, Ordering::SeqCst);
        hit
    }
    /// Instances of item `id` accounted for: finished, cancelled, or being cancelled.
    pub fn settled(&self, id: usize) -> u32 {
        self.done[id].load(Ordering::SeqCst)
            + self.cancelled[id].load(Ordering::SeqCst)
            + self.cancelling[id].load(Ordering::SeqCst)
    }
    pub fn total_accepted(&self) -> u64 {
        self.accepted.iter().map(|a| a.load(Ordering::SeqCst) as u64).sum()
    }
    pub fn total_ran(&self) -> u64 {
        self.ran.iter().map(|a| a.load(Ordering::SeqCst) as u64).sum()
    }
    pub fn total_cancelled(&self) -> u64 {
        self.cancelled.iter().map(|a| a.load(Ordering::SeqCst) as u64).sum()
    }
}

/// Spawns `n` one-shot items on `wq`; each runs `body` while counted in `c`, then bumps the
/// returned count of finished items.
pub fn spawn_counted<F>(wq: &cmwq::Workqueue, n: usize, c: &Arc<Concurrency>, body: F) -> Arc<AtomicUsize>
where
    F: Fn() + Clone + Send + 'static,
{
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        let (c, done, body) = (c.clone(), done.clone(), body.clone());
        assert!(wq.spawn(move || {
            c.enter();
            body();
            c.exit();
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    done
}

/// Runs `f` on a new thread and returns what it returns, or `None` if it has not returned
/// within [`DEADLINE`] (the thread is then left behind, still blocked).
pub fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(DEADLINE).ok()
}

/// A spawner that makes real threads ([`cmwq::ThreadSpawner`]) and counts those still alive
/// and those whose body unwound (a panic killed the thread). Give the runtime a clone; clones
/// share the counts.
#[derive(Debug, Default, Clone)]
pub struct CountingSpawner(Arc<ThreadCounts>);

#[derive(Debug, Default)]
struct ThreadCounts {
    live: AtomicUsize,
    died: AtomicUsize,
    spawned: AtomicUsize,
}

impl CountingSpawner {
    pub fn new() -> CountingSpawner {
        CountingSpawner::default()
    }
    /// Threads created and not yet exited.
    pub fn live(&self) -> usize {
        self.0.live.load(Ordering::SeqCst)
    }
    /// Threads whose body panicked.
    pub fn died(&self) -> usize {
        self.0.died.load(Ordering::SeqCst)
    }
    /// Threads created so far.
    pub fn spawned(&self) -> usize {
        self.0.spawned.load(Ordering::SeqCst)
    }
}

/// Counts a counted thread's exit, and whether it unwound, when its body returns or panics.
struct ThreadExit(Arc<ThreadCounts>);

impl Drop for ThreadExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.died.fetch_add(1, Ordering::SeqCst);
        }
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl cmwq::Spawner for CountingSpawner {
    fn spawn(&self, req: cmwq::SpawnRequest) -> std::io::Result<cmwq::ThreadHandle> {
        self.0.live.fetch_add(1, Ordering::SeqCst);
        let exit = ThreadExit(self.0.clone());
        let body = req.body;
        let req = cmwq::SpawnRequest {
            body: Box::new(move || {
                let _exit = exit;
                body()
            }),
            ..req
        };
        let r = cmwq::Spawner::spawn(&cmwq::ThreadSpawner, req);
        if r.is_ok() {
            self.0.spawned.fetch_add(1, Ordering::SeqCst);
        }
        // On failure the body (and `exit` in it) was dropped unrun: the count is already back.
        r
    }
}

/// A work item that counts its runs in `n`.
pub fn counter_work(n: &Arc<AtomicUsize>) -> Work {
    let n = n.clone();
    Work::new(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
    })
}

/// Holds an ordered workqueue busy until the latch opens.
pub fn plug(wq: &Workqueue) -> Latch {
    let gate = Latch::new();
    let g = gate.clone();
    wq.spawn(move || g.wait());
    gate
}
