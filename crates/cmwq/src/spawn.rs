//! The `Spawner` seam: every thread cmwq creates comes from here.
//!
//! The kernel's `create_worker` can fail (no memory for the task, `kthread_create` failing);
//! in userspace the same failure is `std::thread::Builder::spawn` returning `EAGAIN`
//! (`RLIMIT_NPROC`, `threads-max`, cgroup `pids.max`) or `ENOMEM` (the stack mapping). Tests
//! make creation fail on command with [`FailingSpawner`]; the engine treats every error the
//! same way: the work stays queued and the manager retries after the create cooldown.

use crate::clock::Clock;
use crate::sync::{thread, Arc, AtomicUsize, Mutex, Ordering};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// What a thread is for. Test spawners use it to fail only some kinds of threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThreadKind {
    /// A pool worker (`kworker/<cpu>:<id>` or `kworker/u<pool>:<id>`).
    Worker,
    /// A workqueue's rescuer (`kworker/R-<name>`).
    Rescuer,
    /// A runtime service thread: the timer service or the concurrency monitor.
    Service,
}

/// One thread to create.
pub struct SpawnRequest {
    /// The thread's name, as the kernel would name the kthread.
    pub name: String,
    /// What the thread is for.
    pub kind: ThreadKind,
    /// Requested stack size, if any.
    pub stack_size: Option<usize>,
    /// The thread's body.
    pub body: Box<dyn FnOnce() + Send + 'static>,
}

impl fmt::Debug for SpawnRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnRequest").field("name", &self.name).field("kind", &self.kind).finish()
    }
}

/// The handle a [`Spawner`] returns for the thread it started: `std::thread::JoinHandle<()>`
/// (under `--cfg loom` or `--cfg shuttle`, the model checker's, so that a spawner written
/// against this name builds in every configuration).
pub type ThreadHandle = thread::JoinHandle<()>;

/// Creates threads for a runtime. Implement it to control thread creation (names, stacks,
/// failures); the default is [`ThreadSpawner`].
pub trait Spawner: Send + Sync + fmt::Debug + 'static {
    /// Starts `req.body` on a new thread, or says why it cannot.
    fn spawn(&self, req: SpawnRequest) -> io::Result<ThreadHandle>;
}

/// The default spawner: `std::thread::Builder` with the request's name and stack size (through
/// the sync facade, so that model checkers get their own threads). It refuses a thread
/// (`WouldBlock`) when the threads it has alive would exhaust the process's memory mappings
/// (`vm.max_map_count`), where creating one more would abort the process instead of failing
/// (`thread_budget`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadSpawner;

impl Spawner for ThreadSpawner {
    fn spawn(&self, req: SpawnRequest) -> io::Result<ThreadHandle> {
        let slot = crate::thread_budget::acquire()?;
        let body = req.body;
        // On failure the closure, and the slot with it, is dropped at once.
        crate::sync::spawn_thread(
            req.name,
            req.stack_size,
            Box::new(move || {
                let _slot = slot;
                body()
            }),
        )
    }
}

/// When a [`FailingSpawner`] refuses to create a thread. Only requests of the affected kinds
/// ([`FailingSpawner::affecting`]) are counted and refused; the others always succeed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FailMode {
    /// Never fail.
    Never,
    /// Fail every request of the affected kinds.
    Always,
    /// Allow this many more threads of the affected kinds, then fail every later one.
    After(usize),
    /// Fail every `n`th request of the affected kinds, counted from when the mode was set: the
    /// `n`th, the `2n`th, and so on (`EveryNth(1)` fails them all; `EveryNth(0)` none).
    /// Refused requests count: a retry is a new request.
    EveryNth(usize),
    /// Fail while the flag is set. The flag is std's atomic in every build (a user's switch:
    /// its type does not change under the model checkers; crate::sync::global).
    #[allow(clippy::disallowed_types)]
    While(Arc<crate::sync::global::AtomicBool>),
    /// Fail every request while `clock` reads earlier than `until`: creation is impossible for a
    /// period of the runtime's time. With a [`ManualClock`](crate::ManualClock) the test ends
    /// the period by advancing the clock past `until`; see [`FailMode::for_period`].
    Until {
        /// The clock read at every request (normally the runtime's).
        clock: Clock,
        /// The first instant at which creation succeeds again.
        until: Instant,
    },
}

impl FailMode {
    /// Fails every request from now until `period` has passed on `clock` (a period too long
    /// for an `Instant` never ends: [`FailMode::Always`]).
    pub fn for_period(clock: &Clock, period: Duration) -> FailMode {
        match clock.now().checked_add(period) {
            Some(until) => FailMode::Until { clock: clock.clone(), until },
            None => FailMode::Always,
        }
    }
}

/// A spawner that fails on command with `WouldBlock` (the `EAGAIN` of a real thread limit), for
/// fault-injection tests. By default only [`ThreadKind::Worker`] requests are affected, so the
/// runtime's own service threads still start; [`FailingSpawner::affecting`] changes that.
pub struct FailingSpawner {
    /// The mode, and the requests of the affected kinds seen since it was set (for
    /// [`FailMode::EveryNth`]).
    mode: Mutex<(FailMode, usize)>,
    kinds: Mutex<Vec<ThreadKind>>,
    /// Threads created so far (all kinds).
    spawned: AtomicUsize,
    /// Requests refused so far.
    refused: AtomicUsize,
    /// Threads created and not yet exited, per kind (indexed by [`kind_index`]).
    live: Arc<[AtomicUsize; 3]>,
}

/// The slot of a thread kind in [`FailingSpawner::live`].
fn kind_index(kind: ThreadKind) -> usize {
    match kind {
        ThreadKind::Worker => 0,
        ThreadKind::Rescuer => 1,
        ThreadKind::Service => 2,
    }
}

impl FailingSpawner {
    /// A spawner in the given mode, affecting worker threads only.
    pub fn new(mode: FailMode) -> Arc<FailingSpawner> {
        Arc::new(FailingSpawner {
            mode: Mutex::new((mode, 0)),
            kinds: Mutex::new(vec![ThreadKind::Worker]),
            spawned: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            live: Arc::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)]),
        })
    }

    /// Changes which kinds of threads the failure mode applies to.
    pub fn affecting(self: Arc<Self>, kinds: &[ThreadKind]) -> Arc<Self> {
        *self.kinds.lock() = kinds.to_vec();
        self
    }

    /// Switches the failure mode (for example to `Never` to let creation succeed again), and
    /// restarts the count of [`FailMode::EveryNth`].
    pub fn set_mode(&self, mode: FailMode) {
        *self.mode.lock() = (mode, 0);
    }

    /// Threads created so far.
    pub fn spawned(&self) -> usize {
        self.spawned.load(Ordering::Relaxed)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// Threads created by this spawner that have not exited yet.
    pub fn live(&self) -> usize {
        self.live.iter().map(|l| l.load(Ordering::Acquire)).sum()
    }

    /// Threads of this kind created by this spawner whose bodies have not returned yet. A
    /// thread is counted out when its body returns (or unwinds), before the thread ends, so
    /// once `join` on it has returned it is no longer counted.
    pub fn live_of(&self, kind: ThreadKind) -> usize {
        self.live[kind_index(kind)].load(Ordering::Acquire)
    }

    fn should_fail(&self, kind: ThreadKind) -> bool {
        if !self.kinds.lock().contains(&kind) {
            return false;
        }
        let mut guard = self.mode.lock();
        let (mode, seen) = &mut *guard;
        *seen += 1;
        match mode {
            FailMode::Never => false,
            FailMode::Always => true,
            FailMode::After(n) => {
                if *n == 0 {
                    true
                } else {
                    *n -= 1;
                    false
                }
            }
            FailMode::EveryNth(n) => *n != 0 && *seen % *n == 0,
            FailMode::While(flag) => flag.load(Ordering::Acquire),
            FailMode::Until { clock, until } => clock.now() < *until,
        }
    }
}

impl fmt::Debug for FailingSpawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailingSpawner")
            .field("mode", &self.mode.lock().0)
            .field("spawned", &self.spawned())
            .field("refused", &self.refused())
            .finish()
    }
}

impl Spawner for FailingSpawner {
    fn spawn(&self, req: SpawnRequest) -> io::Result<ThreadHandle> {
        if self.should_fail(req.kind) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "FailingSpawner: thread creation refused"));
        }
        let live = self.live.clone();
        let slot = kind_index(req.kind);
        live[slot].fetch_add(1, Ordering::AcqRel);
        let body = req.body;
        let req = SpawnRequest {
            body: Box::new(move || {
                /// Decrements the live count even if the body unwinds.
                struct Exit(Arc<[AtomicUsize; 3]>, usize);
                impl Drop for Exit {
                    fn drop(&mut self) {
                        self.0[self.1].fetch_sub(1, Ordering::AcqRel);
                    }
                }
                let _exit = Exit(live, slot);
                body()
            }),
            ..req
        };
        match ThreadSpawner.spawn(req) {
            Ok(h) => {
                self.spawned.fetch_add(1, Ordering::Relaxed);
                Ok(h)
            }
            Err(e) => {
                self.live[slot].fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }
}

impl<S: Spawner> Spawner for Arc<S> {
    fn spawn(&self, req: SpawnRequest) -> io::Result<ThreadHandle> {
        (**self).spawn(req)
    }
}
