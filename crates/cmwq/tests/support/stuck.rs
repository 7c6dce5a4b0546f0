//! A runtime whose per-CPU pools are stuck (kernel-notes §5.10's setup): every worker blocked in an
//! item of workqueue B (no rescuer) or acting as a manager that cannot create a worker, on a
//! manual clock, with thread creation failing on command.

use super::{wait_for, Latch};
use cmwq::{FailMode, FailingSpawner, ManualClock, PoolInfo, RescuerAlgorithm, Runtime, Work, Workqueue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// MAYDAY_INITIAL_TIMEOUT: advancing the clock by this fires the first mayday.
pub const TICK: Duration = Duration::from_millis(10);

/// A runtime whose CPU pools are stuck: every worker blocked or managing, creation failing.
pub struct Stuck {
    pub clock: ManualClock,
    pub fail: Arc<AtomicBool>,
    pub spawner: Arc<FailingSpawner>,
    pub rt: Runtime,
    pub b: Workqueue,
    /// Opens the blockers on B.
    pub release: Latch,
}

impl Stuck {
    pub fn new(cpus: usize, algo: RescuerAlgorithm) -> Stuck {
        let clock = ManualClock::new();
        let fail = Arc::new(AtomicBool::new(false));
        let spawner = FailingSpawner::new(FailMode::While(fail.clone()));
        let rt = Runtime::builder().cpus(cpus).clock(&clock).spawner(spawner.clone()).rescuer_algorithm(algo).build();
        let b = rt.workqueue("B").build().unwrap();
        let release = Latch::new();
        let s = Stuck { clock, fail, spawner, rt, b, release };
        // First blocker: the pool's worker runs it (after creating its reserve) and blocks.
        for cpu in 0..cpus {
            s.block_b(cpu);
            wait_for("a blocked worker and an idle reserve", || {
                let p = s.pool(cpu);
                p.nr_workers == 2 && p.nr_idle == 1 && p.nr_running == 0 && p.worklist.is_empty()
            });
        }
        // Then creation fails, and a second blocker makes the reserve become a manager that
        // cannot create its own reserve.
        s.fail.store(true, Ordering::SeqCst);
        for cpu in 0..cpus {
            let refused = s.spawner.refused();
            s.block_b(cpu);
            wait_for("a manager failing to create", || s.spawner.refused() > refused && s.pool(cpu).manager_active);
        }
        s
    }

    pub fn block_b(&self, cpu: usize) {
        let g = self.release.clone();
        assert!(self.b.queue_on(cpu, &Work::new(move |_| cmwq::blocking(|| g.wait()))));
    }

    pub fn pool(&self, cpu: usize) -> PoolInfo {
        cmwq_testkit::cpu_pool(&self.rt, cpu)
    }

    pub fn a(&self, name: &str) -> Workqueue {
        self.rt.workqueue(name).mem_reclaim().build().unwrap()
    }

    /// Lets creation succeed and moves past the manager's cooldown, until every manager has
    /// created what it needed. A manager reads the clock for its cooldown only after its failed
    /// attempt has been counted, so under load the test may get here first, and one advance
    /// would then leave the manager waiting for a time the test never reaches (r17 hung so in
    /// 1 of 300 runs with 32 test threads): advance again, one cooldown at a time, while a
    /// manager is still at work.
    pub fn unstick(&self) {
        self.fail.store(false, Ordering::SeqCst);
        self.clock.advance(Duration::from_secs(1));
        let last = std::cell::Cell::new(std::time::Instant::now());
        wait_for("the managers to create workers again", || {
            if self.rt.pools().iter().all(|p| !p.manager_active) {
                return true;
            }
            if last.get().elapsed() > Duration::from_millis(20) {
                self.clock.advance(Duration::from_secs(1));
                last.set(std::time::Instant::now());
            }
            false
        });
    }

    /// Lets everything finish.
    pub fn finish(&self) {
        self.unstick();
        self.release.open();
    }
}

impl Drop for Stuck {
    /// A test that fails halfway must not leave workers blocked on the release latch: the
    /// runtime's drop would wait for them, and they would fail with "latch never opened" a
    /// deadline later, long after the real failure. (Nothing here may panic: this may run
    /// during unwinding.)
    fn drop(&mut self) {
        self.fail.store(false, Ordering::SeqCst);
        self.clock.advance(Duration::from_secs(1));
        self.release.open();
    }
}
