//! The manager role: creating workers, the create cooldown, and culling idle workers
//! (kernel-notes §4.5, §4.6).
//!
//! * A worker that finds items waiting and no idle worker in reserve becomes the pool's
//!   manager (at most one at a time, `manager_active`) and creates a worker, dropping the pool
//!   lock meanwhile. If creation fails, it waits `create_cooldown` (1 s, `CREATE_COOLDOWN`) on
//!   the runtime's clock and retries while the need lasts. The items stay queued: a failed
//!   creation never panics and never loses work.
//! * A pool with no worker at all (its first creation failed) has nobody to act as manager; a
//!   timer on the timer service retries creation every cooldown instead.
//! * An idle worker is culled once it has been idle for `idle_timeout` (300 s,
//!   `IDLE_WORKER_TIMEOUT`) while the pool keeps more idle workers than
//!   `too_many_workers` allows.

use super::worker::WorkerRec;
use super::{flags, PoolGuard, PoolLocked, WorkerPool};
use crate::clock::add_saturating;
use crate::spawn::{SpawnRequest, ThreadKind};
use crate::sync::{Arc, Ordering, Parker};
use std::io;
use std::time::Instant;

/// At most this many pools of one runtime report their first failed worker creation on
/// stderr (cmwq's choice): with thousands of pools failing at once, one line each would
/// flood it.
const MAX_CREATE_FAILURE_REPORTS: u32 = 4;

/// Creates one worker for `pool` and registers it as idle (`create_worker`). Returns whether
/// more items then wait than workers are idle (for an unbound pool's batch creation).
pub(crate) fn create_worker(pool: &Arc<WorkerPool>) -> io::Result<bool> {
    let parker = Parker::new();
    let unparker = parker.unparker().clone();
    let env = pool.env();
    let now = env.clock.now();
    let mut exited = Vec::new();
    let (id, name) = {
        let mut g = pool.lock();
        // Threads of culled workers are joined below, outside the lock.
        std::mem::swap(&mut exited, &mut g.exited);
        if g.dying {
            return Ok(false);
        }
        let base = if pool.is_cm() { flags::PREP } else { flags::PREP | flags::UNBOUND };
        let id = g.workers.insert(WorkerRec::new(base, unparker.clone(), now));
        g.nr_workers += 1;
        (id, worker_name(pool, id))
    };
    for h in exited {
        let _ = h.join();
    }
    let p = pool.clone();
    let req = SpawnRequest {
        name,
        kind: ThreadKind::Worker,
        stack_size: env.config.worker_stack_size,
        body: Box::new(move || super::worker::worker_thread(p, id, parker)),
    };
    // The worker becomes idle only once its thread exists (as the kernel attaches it only after
    // `kthread_create`): a manager stuck in a slow creation must leave the pool needing a
    // worker, or no mayday would be sent (scenario R12). Measured: registering it first saves
    // a start-up hand-off per thread, but breaks exactly that.
    match env.spawner.spawn(req) {
        Ok(h) => {
            let mut g = pool.lock();
            g.workers[id].handle = Some(h);
            if g.dying {
                g.mark_die(id);
            } else {
                g.worker_enter_idle(id);
            }
            // Woken at once, not after the unlock (`wake_after_unlock`): the manager goes on to
            // create the next worker, and B3's ramp measured slightly slower with the wake-up
            // deferred (`examples/b3probe.rs`: 255th item at a median 15.6 ms against 14.0).
            g.workers[id].unparker.unpark();
            Ok(wants_more(&g))
        }
        Err(e) => {
            let mut g = pool.lock();
            g.workers.remove(id);
            g.nr_workers -= 1;
            g.create_failures += 1;
            // Each pool reports its first failure, but only the first few pools of a runtime:
            // thousands failing at once (a large `cpus`) must not flood stderr.
            if g.create_failures == 1 {
                let n = env.create_failure_reports.fetch_add(1, Ordering::Relaxed);
                if n < MAX_CREATE_FAILURE_REPORTS {
                    let more = if n + 1 == MAX_CREATE_FAILURE_REPORTS {
                        "; failures of further pools are not reported"
                    } else {
                        ""
                    };
                    eprintln!(
                        "cmwq: pool {}: cannot create a worker ({e}); retrying every {:?}{more}",
                        pool.tag(),
                        env.config.create_cooldown
                    );
                }
            }
            Err(e)
        }
    }
}

/// The kernel's kworker names: `kworker/<cpu>:<id>`, `H` appended for highpri pools, and
/// `kworker/u<pool>:<id>` for unbound pools.
fn worker_name(pool: &WorkerPool, id: usize) -> String {
    match pool.cpu() {
        Some(cpu) => format!("kworker/{cpu}:{id}{}", if pool.highpri() { "H" } else { "" }),
        None => format!("kworker/u{}:{id}", pool.id()),
    }
}

/// Acts as the pool's manager: creates workers until the pool no longer needs one
/// (`manage_workers` + `maybe_create_worker`). Called and returns with the lock held; drops
/// it meanwhile.
pub(super) fn manage_workers(mut g: PoolGuard<'_>) -> PoolGuard<'_> {
    let pool = g.pool();
    let env = pool.env();
    g.manager_active = true;
    loop {
        // Call for help if creating a worker takes long (`maybe_create_worker`).
        let at = env.clock.deadline_in(env.config.mayday_initial_timeout);
        g.arm_mayday_timer(at);
        drop(g);
        let mut created = 0;
        loop {
            if let Ok(more) = create_worker(pool) {
                created += 1;
                // Unbound pools: every waiting item will take a worker of its own, so keep
                // creating while more items wait than workers are idle (see docs/design.md
                // "Departures"); per-CPU pools need only the one reserve worker.
                if pool.is_cm() || created >= CREATE_BATCH || !more {
                    break;
                }
                continue;
            }
            if !still_needed(pool) {
                break;
            }
            let deadline = env.clock.deadline_in(env.config.create_cooldown);
            env.clock.wait_until(&pool.cooldown, Some(deadline));
            if !still_needed(pool) {
                break;
            }
        }
        g = pool.lock();
        g.delete_mayday_timer();
        if g.dying || !g.need_to_create_worker() {
            break;
        }
    }
    g.manager_active = false;
    g
}

/// At most this many workers in one round of an unbound pool's manager, so it soon goes back to
/// running items (another worker takes over if more are needed).
const CREATE_BATCH: usize = 32;

/// More items wait on the pool than it has idle workers. Pool lock held.
fn wants_more(g: &PoolLocked) -> bool {
    !g.dying && g.worklist.len() > g.idle_list.len()
}

fn still_needed(pool: &Arc<WorkerPool>) -> bool {
    let g = pool.lock();
    !g.dying && g.need_to_create_worker()
}

impl PoolGuard<'_> {
    /// A pool without any worker got an item: retry creation from the timer service, now and
    /// then every cooldown, until a worker exists.
    pub(super) fn create_without_manager(&mut self) {
        if self.dying {
            return;
        }
        let pool = self.pool;
        let now = pool.env().clock.now();
        if !self.create_timer_armed {
            self.create_timer_armed = true;
            pool.env().timers.arm_weak(now, pool, create_timer_fn);
        }
        // Nobody manages a pool without workers, so arm its mayday timer here: rescuers must
        // still be called if creation keeps failing. Independently of the retry timer: the mayday
        // timer stops once nothing waits (`mayday_timeout`), and an item queued after that, while
        // the retry timer is still armed, must start it again (the fault matrix found items
        // waiting forever for a rescuer nobody called).
        if self.mayday_timer.is_none() {
            self.arm_mayday_timer(add_saturating(now, pool.env().config.mayday_initial_timeout));
        }
    }
}

fn create_timer_fn(pool: &Arc<WorkerPool>) {
    {
        let mut g = pool.lock();
        g.create_timer_armed = false;
        if g.dying || g.nr_workers > 0 {
            return;
        }
    }
    if create_worker(pool).is_ok() {
        pool.lock().delete_mayday_timer();
    } else {
        let mut g = pool.lock();
        if !g.create_timer_armed && !g.dying && g.nr_workers == 0 {
            g.create_timer_armed = true;
            drop(g);
            let env = pool.env();
            env.timers.arm_weak(env.clock.deadline_in(env.config.create_cooldown), pool, create_timer_fn);
        }
    }
}

/// Arms the idle-cull timer at `at`.
pub(super) fn arm_idle_timer(pool: &Arc<WorkerPool>, at: Instant) {
    pool.env().timers.arm_weak(at, pool, idle_timer_fn);
}

/// The idle timer fired (`idle_worker_timeout` + `idle_cull_fn`): while the pool has too many
/// idle workers and the oldest has been idle for the whole timeout, tell it to exit; otherwise
/// re-arm for when the oldest expires.
fn idle_timer_fn(pool: &Arc<WorkerPool>) {
    let now = pool.env().clock.now();
    let timeout = pool.env().config.idle_timeout;
    let mut g = pool.lock();
    g.idle_timer_armed = false;
    while g.too_many_workers() && !g.dying {
        let oldest = g.idle_list[0];
        let expires = add_saturating(g.workers[oldest].last_active, timeout);
        if now < expires {
            g.idle_timer_armed = true;
            drop(g);
            arm_idle_timer(pool, expires);
            return;
        }
        g.idle_list.remove(0);
        g.workers[oldest].flags &= !flags::IDLE;
        g.mark_die(oldest);
    }
}
