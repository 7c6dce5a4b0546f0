//! Calling for help: the mayday timer and `send_mayday` (kernel-notes §5.2).
//!
//! When a pool's manager starts creating a worker it arms the pool's mayday timer for
//! `mayday_initial_timeout` (10 ms, `MAYDAY_INITIAL_TIMEOUT`). If it fires while the pool still
//! needs a worker (items wait, nothing runs, nobody is idle), every pwq with an entry on the
//! worklist is put on its workqueue's mayday list (at most once, taking a reference) and that
//! workqueue's rescuer is woken; workqueues without a rescuer get nothing. The timer then
//! re-arms itself every `mayday_interval` (100 ms, `MAYDAY_INTERVAL`) until the manager deletes
//! it, which it does when it stops trying to create workers.
//!
//! Only entries on the worklist call for help: inactive items (beyond `max_active`) do not
//! (kernel-notes §5.2, scenario R13).

use super::{PoolGuard, Pwq, WorkerPool};
use crate::sync::Arc;
use std::time::Instant;

impl PoolGuard<'_> {
    /// Puts pwq `slot` on its workqueue's mayday list if it is not there yet, taking a
    /// reference and counting a mayday (`send_mayday`); the owner wakes its rescuer. Does
    /// nothing for a workqueue without a rescuer. Returns whether it was added.
    pub(super) fn send_mayday(&mut self, slot: u32) -> bool {
        let me = Pwq::new_handle(self.pool, slot);
        let pwq = &mut self.pwqs[slot as usize];
        if !pwq.owner.send_mayday(me) {
            return false;
        }
        pwq.mayday_refs += 1;
        pwq.stats.mayday += 1;
        true
    }

    /// Arms the mayday timer for `at`, replacing an armed one.
    pub(super) fn arm_mayday_timer(&mut self, at: Instant) {
        self.delete_mayday_timer();
        let gen = self.mayday_gen;
        let id = self.pool.env().timers.arm_weak(at, self.pool, move |pool| mayday_timeout(pool, gen));
        self.mayday_timer = Some((id, gen));
    }

    /// Deletes the mayday timer (`timer_delete_sync`): a callback already running sees the new
    /// generation and neither sends maydays nor re-arms.
    pub(super) fn delete_mayday_timer(&mut self) {
        if let Some((id, _)) = self.mayday_timer.take() {
            self.pool.env().timers.cancel(id);
        }
        self.mayday_gen += 1;
    }
}

/// The mayday timer fired (`pool_mayday_timeout`).
fn mayday_timeout(pool: &Arc<WorkerPool>, gen: u64) {
    let mut g = pool.lock();
    if g.mayday_timer.is_none_or(|(_, armed)| armed != gen) {
        return;
    }
    g.mayday_timer = None;
    let need = g.need_to_create_worker();
    if need {
        // Every entry on the worklist calls for its pwq: items, barriers, cursors. The
        // kernel holds the mayday lock over the whole walk, so a rescuer cannot take a pwq
        // off the list halfway and see it sent twice by one firing; with one mayday lock
        // per workqueue, collect each pwq once first, then send.
        let mut slots = std::mem::take(&mut g.mayday_scratch);
        slots.clear();
        let mut cur = g.worklist.front();
        while let Some(idx) = cur {
            let slot = g.nodes.get(idx).pwq;
            if !slots.contains(&slot) {
                slots.push(slot);
            }
            cur = g.worklist.next(&g.nodes, idx);
        }
        for &slot in &slots {
            g.send_mayday(slot);
        }
        g.mayday_scratch = slots;
    }
    // The kernel re-arms unconditionally and relies on the manager to delete the timer; a
    // pool without workers has no manager (`create_without_manager`), so stop once there
    // is neither a need nor a manager.
    if !need && !g.manager_active {
        return;
    }
    let env = pool.env();
    let id = env
        .timers
        .arm_weak(env.clock.deadline_in(env.config.mayday_interval), pool, move |pool| mayday_timeout(pool, gen));
    g.mayday_timer = Some((id, gen));
}
