//! The `Spawner` seam: every thread cmwq creates comes from here.
//!
//! The kernel's `create_worker` can fail (no memory for the task, `kthread_create` failing);
//! in userspace the same failure is `std::thread::Builder::spawn` returning `EAGAIN`
//! (`RLIMIT_NPROC`, `threads-max`, cgroup `pids.max`) or `ENOMEM` (the stack mapping). Tests
//! make creation fail on command with [`FailingSpawner`]; the engine treats every error the
//! same way: the work stays queued and the manager retries after the create cooldown.

use crate::sync::{thread, Arc, AtomicUsize, Mutex, Ordering};
use std::fmt;
use std::io;

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

/// Creates threads for a runtime. Implement it to control thread creation (names, stacks,
/// failures); the default is [`ThreadSpawner`].
pub trait Spawner: Send + Sync + fmt::Debug + 'static {
    /// Starts `req.body` on a new thread, or says why it cannot.
    fn spawn(&self, req: SpawnRequest) -> io::Result<thread::JoinHandle<()>>;
}

/// The default spawner: `std::thread::Builder` with the request's name and stack size (through
/// the sync facade, so that model checkers get their own threads). It refuses a thread
/// (`WouldBlock`) when the threads it has alive would exhaust the process's memory mappings
/// (`vm.max_map_count`), where creating one more would abort the process instead of failing
/// (`thread_budget`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadSpawner;

impl Spawner for ThreadSpawner {
    fn spawn(&self, req: SpawnRequest) -> io::Result<thread::JoinHandle<()>> {
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

/// When a [`FailingSpawner`] refuses to create a thread.
#[derive(Clone, Debug)]
pub enum FailMode {
    /// Never fail.
    Never,
    /// Fail every request of the affected kinds.
    Always,
    /// Allow this many more threads of the affected kinds, then fail every later one.
    After(usize),
    /// Fail while the flag is set. The flag is std's atomic in every build (a user's switch:
    /// its type does not change under the model checkers; crate::sync::global).
    #[allow(clippy::disallowed_types)]
    While(Arc<crate::sync::global::AtomicBool>),
}

/// A spawner that fails on command with `WouldBlock` (the `EAGAIN` of a real thread limit), for
/// fault-injection tests. By default only [`ThreadKind::Worker`] requests are affected, so the
/// runtime's own service threads still start; [`FailingSpawner::affecting`] changes that.
pub struct FailingSpawner {
    mode: Mutex<FailMode>,
    kinds: Mutex<Vec<ThreadKind>>,
    /// Threads created so far (all kinds).
    spawned: AtomicUsize,
    /// Requests refused so far.
    refused: AtomicUsize,
    /// Threads created and not yet exited.
    live: Arc<AtomicUsize>,
}

impl FailingSpawner {
    /// A spawner in the given mode, affecting worker threads only.
    pub fn new(mode: FailMode) -> Arc<FailingSpawner> {
        Arc::new(FailingSpawner {
            mode: Mutex::new(mode),
            kinds: Mutex::new(vec![ThreadKind::Worker]),
            spawned: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            live: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Changes which kinds of threads the failure mode applies to.
    pub fn affecting(self: Arc<Self>, kinds: &[ThreadKind]) -> Arc<Self> {
        *self.kinds.lock() = kinds.to_vec();
        self
    }

    /// Switches the failure mode (for example to `Never` to let creation succeed again).
    pub fn set_mode(&self, mode: FailMode) {
        *self.mode.lock() = mode;
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
        self.live.load(Ordering::Acquire)
    }

    fn should_fail(&self, kind: ThreadKind) -> bool {
        if !self.kinds.lock().contains(&kind) {
            return false;
        }
        let mut mode = self.mode.lock();
        match &mut *mode {
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
            FailMode::While(flag) => flag.load(Ordering::Acquire),
        }
    }
}

impl fmt::Debug for FailingSpawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailingSpawner")
            .field("mode", &*self.mode.lock())
            .field("spawned", &self.spawned())
            .field("refused", &self.refused())
            .finish()
    }
}

impl Spawner for FailingSpawner {
    fn spawn(&self, req: SpawnRequest) -> io::Result<thread::JoinHandle<()>> {
        if self.should_fail(req.kind) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "FailingSpawner: thread creation refused"));
        }
        let live = self.live.clone();
        live.fetch_add(1, Ordering::AcqRel);
        let body = req.body;
        let req = SpawnRequest {
            body: Box::new(move || {
                /// Decrements the live count even if the body unwinds.
                struct Exit(Arc<AtomicUsize>);
                impl Drop for Exit {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                let _exit = Exit(live);
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
                self.live.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }
}

impl<S: Spawner> Spawner for Arc<S> {
    fn spawn(&self, req: SpawnRequest) -> io::Result<thread::JoinHandle<()>> {
        (**self).spawn(req)
    }
}
