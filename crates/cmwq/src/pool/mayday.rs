//! Calling for help: the mayday timer and `send_mayday` (spec §5.2).
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
//! (spec §5.2, scenario R13).

use super::{PoolLocked, WorkerPool};
use crate::pwq::Pwq;
use crate::sync::Arc;
use std::time::Instant;

impl WorkerPool {
    /// Puts pwq `slot` on its workqueue's mayday list if it is not there yet, taking a
    /// reference, counting a mayday and waking the rescuer (`send_mayday`). Does nothing for a
    /// workqueue without a rescuer. Pool lock held; takes the mayday lock inside it.
    pub(crate) fn send_mayday(self: &Arc<Self>, g: &mut PoolLocked, slot: u32) {
        let pwq = &mut g.pwqs[slot as usize];
        let Some(rescuer) = pwq.wq.rescuer.clone() else { return };
        #[cfg(loom)]
        let wake_first = crate::sync::plant::is(crate::sync::plant::Bug::MaydayWakeBeforeQueue);
        #[cfg(not(loom))]
        let wake_first = false;
        if wake_first && !rescuer.maydays.lock().contains(self, slot) {
            rescuer.wake();
        }
        let mut m = rescuer.maydays.lock();
        #[cfg(loom)]
        let dedup = !crate::sync::plant::is(crate::sync::plant::Bug::MaydayNoDedup);
        #[cfg(not(loom))]
        let dedup = true;
        if dedup && m.contains(self, slot) {
            return;
        }
        pwq.mayday_refs += 1;
        pwq.stats.mayday += 1;
        m.list.push_back(Pwq { pool: self.clone(), slot });
        drop(m);
        // After queueing: a rescuer woken earlier could find the list empty and park again.
        if !wake_first {
            rescuer.wake();
        }
    }

    /// Arms the mayday timer for `at`, replacing an armed one. Pool lock held.
    pub(crate) fn arm_mayday_timer(self: &Arc<Self>, g: &mut PoolLocked, at: Instant) {
        self.delete_mayday_timer(g);
        let gen = g.mayday_gen;
        let weak = Arc::downgrade(self);
        let id = self.env.timers.arm(at, move || {
            if let Some(pool) = weak.upgrade() {
                pool.mayday_timeout(gen);
            }
        });
        g.mayday_timer = Some((id, gen));
    }

    /// Deletes the mayday timer (`timer_delete_sync`): a callback already running sees the new
    /// generation and neither sends maydays nor re-arms. Pool lock held.
    pub(crate) fn delete_mayday_timer(&self, g: &mut PoolLocked) {
        if let Some((id, _)) = g.mayday_timer.take() {
            self.env.timers.cancel(id);
        }
        g.mayday_gen += 1;
    }

    /// The mayday timer fired (`pool_mayday_timeout`).
    fn mayday_timeout(self: &Arc<Self>, gen: u64) {
        let mut g = self.lock();
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
                self.send_mayday(&mut g, slot);
            }
            g.mayday_scratch = slots;
        }
        // The kernel re-arms unconditionally and relies on the manager to delete the timer; a
        // pool without workers has no manager (`create_without_manager`), so stop once there
        // is neither a need nor a manager.
        if !need && !g.manager_active {
            return;
        }
        let at = self.env.clock.deadline_in(self.env.config.mayday_interval);
        let weak = Arc::downgrade(self);
        let id = self.env.timers.arm(at, move || {
            if let Some(pool) = weak.upgrade() {
                pool.mayday_timeout(gen);
            }
        });
        g.mayday_timer = Some((id, gen));
    }
}
