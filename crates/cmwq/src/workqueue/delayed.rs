//! Delayed work: a work item plus a timer on the runtime's timer service (the kernel's
//! `delayed_work`; kernel-notes §3.7).
//!
//! * `queue_delayed(d, delay)` claims PENDING like `queue`; with a zero delay it queues at
//!   once, else it arms a timer that queues the item when it fires. While armed, the timer owns
//!   PENDING (`Timer-armed` in kernel-notes §2.2).
//! * `mod_delayed(d, delay)` grabs PENDING wherever it is (armed timer or queue) and re-arms
//!   (or queues at once for a zero delay). It returns whether the item was pending.
//! * `flush` fires an armed timer now, then flushes the item; `cancel`/`cancel_sync` cancel the
//!   timer as well as a queued instance.
//!
//! The timer callback and the cancellers agree through the timer lock: an armed timer is
//! recorded with a generation; a callback that finds a different generation (or none) was
//! cancelled and does nothing; a canceller that cannot cancel the timer because it is firing
//! leaves the record to the callback and retries (the item is "in transit" for that moment).

use super::cancel::{self, TimerSteal};
use super::{warn, Workqueue, WqShared};
use crate::error::Error;
use crate::sync::{Arc, Mutex, Ordering};
use crate::timer::TimerId;
use crate::work::state::WorkState;
use crate::work::Work;
use std::fmt;
use std::time::{Duration, Instant};

/// An armed timer: which one, and where it will queue the item. Timer lock.
struct Armed {
    /// Generation of this arming.
    gen: u64,
    /// The timer on the runtime's timer service.
    id: TimerId,
    /// The workqueue it queues on (kept alive while armed).
    wq: Arc<WqShared>,
    /// The CPU to queue on, if given.
    cpu: Option<usize>,
    /// When it is due.
    due: Instant,
}

/// The timer lock's state.
#[derive(Default)]
struct TimerLocked {
    armed: Option<Armed>,
    /// The next generation.
    next_gen: u64,
}

/// The timer part of a delayed item.
#[derive(Default)]
pub(crate) struct DelayedTimer {
    locked: Mutex<TimerLocked>,
}

impl fmt::Debug for DelayedTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = self.locked.lock();
        f.debug_struct("DelayedTimer").field("armed", &l.armed.as_ref().map(|a| (a.gen, a.due))).finish()
    }
}

impl DelayedTimer {
    fn key(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    /// Arms the timer to queue `work` on `wq` after `delay` (any `Duration`: the deadline
    /// saturates at [`crate::MAX_DELAY`]). The caller owns PENDING. The deadline and the
    /// check come before any shared state changes, so a panic cannot leave a half arming.
    fn arm(self: &Arc<Self>, work: &Work, wq: &Arc<WqShared>, cpu: Option<usize>, delay: Duration) {
        let env = &wq.rt.shared().env;
        let due = env.clock.deadline_in(delay);
        let mut l = self.locked.lock();
        assert!(l.armed.is_none(), "arming an armed delayed item");
        let gen = l.next_gen;
        l.next_gen += 1;
        wq.info.armed.lock().insert((self.key(), gen), (self.clone(), work.clone()));
        let (me, w) = (self.clone(), work.clone());
        let id = env.timers.arm(due, move || me.timer_fn(gen, &w));
        l.armed = Some(Armed { gen, id, wq: wq.clone(), cpu, due });
    }

    /// The timer fired (`delayed_work_timer_fn`): queue the item where it was aimed, then
    /// forget the arming.
    fn timer_fn(self: &Arc<Self>, gen: u64, work: &Work) {
        let armed = {
            let mut l = self.locked.lock();
            if l.armed.as_ref().is_none_or(|a| a.gen != gen) {
                return;
            }
            l.armed.take().expect("armed")
        };
        // Queue before forgetting, so a destroyer sees it armed or in flight, never neither.
        armed.wq.enqueue(armed.cpu, work.clone());
        forget_after_queueing(armed, self.key());
    }

    /// Fires an armed timer now (`flush_delayed_work`, destroy): if it can be cancelled,
    /// queue the item at once where it was aimed. If it is firing right now, wait until the
    /// callback has queued the item (`timer_delete_sync` waits for a running callback too).
    /// Returns whether it queued the item itself.
    pub(super) fn fire_now(self: &Arc<Self>, work: &Work) -> bool {
        let armed = loop {
            let mut l = self.locked.lock();
            match &l.armed {
                Some(a) if a.wq.rt.shared().env.timers.cancel(a.id) => break l.armed.take().expect("armed"),
                Some(_) => {
                    // Firing: the callback will take the record and queue the item.
                    drop(l);
                    #[cfg(loom)]
                    if crate::sync::plant::is(crate::sync::plant::Bug::FireNowNoWait) {
                        return false;
                    }
                    crate::sync::thread::yield_now();
                }
                None => {
                    drop(l);
                    wait_not_in_transit(work);
                    return false;
                }
            }
        };
        armed.wq.enqueue(armed.cpu, work.clone());
        forget_after_queueing(armed, self.key());
        true
    }
}

/// Forgets the arming of a timer that fired or was fired early, once its item is queued:
/// drops the record's reference to the workqueue first, then `WqInfo::forget_armed` (which
/// says why in that order, and wakes a destroyer). Under `--cfg shuttle` a twin test can
/// plant issue 9's bug 1 here (`sync::plant::Bug::ArmedRemovalWakesNobody`): the record is
/// removed and nobody is woken, as before its fix.
#[inline]
fn forget_after_queueing(armed: Armed, key: usize) {
    let (info, key) = (armed.wq.info.clone(), (key, armed.gen));
    #[cfg(shuttle)]
    let planted = armed.wq.rt.shared().env.config.planted(crate::sync::plant::Bug::ArmedRemovalWakesNobody);
    drop(armed);
    #[cfg(shuttle)]
    if planted {
        let removed = info.armed.lock().remove(&key);
        drop(removed);
        return;
    }
    info.forget_armed(key);
}

/// Waits while the item is in transit: PENDING owned by someone (a firing timer callback)
/// who is about to put it on a list.
fn wait_not_in_transit(work: &Work) {
    loop {
        let s = work.state().load();
        if !s.is_pending() || s.is_queued() {
            return;
        }
        crate::sync::thread::yield_now();
    }
}

impl TimerSteal for Arc<DelayedTimer> {
    fn steal_timer(&self) -> bool {
        let armed = {
            let mut l = self.locked.lock();
            match &l.armed {
                Some(a) if a.wq.rt.shared().env.timers.cancel(a.id) => l.armed.take().expect("armed"),
                // Not armed, or firing right now: the callback will queue it.
                _ => return false,
            }
        };
        armed.wq.info.forget_armed((self.key(), armed.gen));
        true
    }
}

/// A work item that can be queued after a delay. Cheap to clone; clones are the same item.
///
/// ```
/// # let rt = cmwq::Runtime::builder().cpus(1).build();
/// # let wq = rt.workqueue("doc").build().unwrap();
/// use std::time::Duration;
/// let d = cmwq::DelayedWork::new(|_w: &cmwq::Work| println!("later"));
/// assert!(wq.queue_delayed(&d, Duration::from_millis(5)));
/// d.flush(); // fires the timer now and waits
/// ```
///
/// # A periodic item
///
/// The function receives the [`Work`] inside; [`DelayedWork::from_work`] gives back its
/// `DelayedWork` (the kernel's `to_delayed_work`), and [`DelayedWork::requeue`] arms it again
/// on the workqueue running it. The item holds no handle on its workqueue, so dropping every
/// handle destroys the workqueue: destroy fires the armed timer at once, and the re-arming
/// from that last run is refused ([`Error::Destroyed`]), which ends the period. (Capturing a
/// `Workqueue` or `DelayedWork` clone in the closure instead makes a cycle that keeps the
/// workqueue, its runtime and their threads alive forever.)
///
/// ```
/// use std::time::Duration;
/// let rt = cmwq::Runtime::builder().cpus(1).build();
/// let wq = rt.workqueue("poll").build()?;
/// let (tx, rx) = std::sync::mpsc::channel();
/// let poll = cmwq::DelayedWork::new(move |w: &cmwq::Work| {
///     let _ = tx.send(());
///     let me = cmwq::DelayedWork::from_work(w).expect("the work of a delayed item");
///     me.requeue(Duration::from_millis(1)); // again in 1 ms
/// });
/// assert!(wq.queue_delayed(&poll, Duration::ZERO));
/// for _ in 0..3 {
///     rx.recv_timeout(Duration::from_secs(20)).expect("a periodic run");
/// }
/// poll.cancel_sync(); // stops it (the requeue of a run under way fails meanwhile)
/// assert!(!poll.is_pending());
/// # Ok::<(), cmwq::Error>(())
/// ```
#[derive(Clone)]
pub struct DelayedWork {
    work: Work,
    timer: Arc<DelayedTimer>,
}

impl fmt::Debug for DelayedWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayedWork").field("work", &self.work).field("timer", &self.timer).finish()
    }
}

impl DelayedWork {
    /// A new idle delayed item running `f`.
    pub fn new<F>(f: F) -> DelayedWork
    where
        F: Fn(&Work) + Send + Sync + 'static,
    {
        let timer = Arc::new(DelayedTimer::default());
        DelayedWork { work: Work::build(std::any::type_name::<F>(), Some(timer.clone()), f), timer }
    }

    /// The delayed item whose work `work` is, if it is one (the kernel's `to_delayed_work`):
    /// what a work function uses to re-arm its own delayed item ([`DelayedWork::requeue`]).
    pub fn from_work(work: &Work) -> Option<DelayedWork> {
        let timer = work.delayed_timer()?.clone().downcast::<DelayedTimer>().ok()?;
        Some(DelayedWork { work: work.clone(), timer })
    }

    /// From a work function: queues this item again after `delay` on the workqueue of the item
    /// the calling worker runs (`queue_delayed_work` from inside a work function; see "A
    /// periodic item" above). Returns `false` if it was already pending or disabled, or if it
    /// was refused (with a warning): outside a work function, or arming a timer (a nonzero
    /// delay) on a workqueue being destroyed, even from its own item: destroy fires armed
    /// timers at once, so a periodic item would otherwise re-arm forever. A zero delay queues
    /// at once and is accepted from the workqueue's own items, as chained work.
    /// [`DelayedWork::try_requeue`] says why.
    pub fn requeue(&self, delay: Duration) -> bool {
        self.try_requeue(delay).unwrap_or_else(|e| warn(&e))
    }

    /// Like [`DelayedWork::requeue`], saying why a refusal was refused:
    /// [`Error::NotInWorker`] outside a work function, [`Error::Destroyed`] for a timer armed
    /// on a workqueue being destroyed.
    pub fn try_requeue(&self, delay: Duration) -> Result<bool, Error> {
        queue_delayed_on(&WqShared::of_current_item()?, None, self, delay)
    }

    /// The work item inside (queue it with `queue` for no delay).
    pub fn work(&self) -> &Work {
        &self.work
    }

    /// Whether the item is pending: armed or queued.
    pub fn is_pending(&self) -> bool {
        self.work.is_pending()
    }

    /// Fires a pending timer now, then waits for the item (`flush_delayed_work`). Returns
    /// whether it waited: `true` whenever the item was armed, queued or in transit at the call
    /// (even if a worker ran it to the end before this call's `Work::flush` looked for it), or
    /// still running when `Work::flush` looked; `false` only for an idle item.
    pub fn flush(&self) -> bool {
        // PENDING covers armed, in transit (a firing timer callback holds it) and queued; a
        // pending instance is queued by us or by its owner before `fire_now` returns, so the
        // flush below waits for it or finds it already run. Either way this call waited for
        // it (issue 9, bug 2). "Running" is decided by `Work::flush` itself.
        let was_pending = self.work.is_pending();
        self.timer.fire_now(&self.work);
        let waited = self.work.flush();
        waited || was_pending
    }

    /// Cancels an armed timer or a queued instance (`cancel_delayed_work`). Returns whether the
    /// item was pending. Does not wait for a running instance.
    pub fn cancel(&self) -> bool {
        cancel::cancel(&self.work, Some(&self.timer))
    }

    /// Cancels, then waits for a running instance (`cancel_delayed_work_sync`): on return the
    /// item is neither armed, nor queued, nor running.
    pub fn cancel_sync(&self) -> bool {
        cancel::cancel_sync(&self.work, Some(&self.timer))
    }

    /// Cancels and raises the disable depth (`disable_delayed_work`).
    pub fn disable(&self) -> bool {
        cancel::disable(&self.work, Some(&self.timer))
    }

    /// Lowers the disable depth (`enable_delayed_work`); `true` when it reaches zero.
    pub fn enable(&self) -> bool {
        cancel::enable(&self.work, Some(&self.timer))
    }
}

impl Workqueue {
    /// Queues `d` after `delay` (`queue_delayed_work`); a zero delay queues at once. Returns
    /// `false` if it was already pending (armed or queued) or disabled. Any `delay` is
    /// accepted: one beyond [`crate::MAX_DELAY`] (about 146 million years) is clamped to it, as
    /// the kernel clamps delays to `MAX_JIFFY_OFFSET`.
    pub fn queue_delayed(&self, d: &DelayedWork, delay: Duration) -> bool {
        self.try_queue_delayed_on(None, d, delay).unwrap_or_else(|e| warn(&e))
    }

    /// Queues `d` after `delay` on the pool of `cpu` (`queue_delayed_work_on`).
    pub fn queue_delayed_on(&self, cpu: usize, d: &DelayedWork, delay: Duration) -> bool {
        self.try_queue_delayed_on(Some(cpu), d, delay).unwrap_or_else(|e| warn(&e))
    }

    /// Like `queue_delayed_on` (any CPU for `None`), saying why a refusal was refused.
    pub fn try_queue_delayed_on(&self, cpu: Option<usize>, d: &DelayedWork, delay: Duration) -> Result<bool, Error> {
        queue_delayed_on(self.shared(), cpu, d, delay)
    }

    /// Re-arms `d` to run after `delay` from now, whether it was idle, armed or queued
    /// (`mod_delayed_work`); a zero delay queues it at once. Returns `true` if it was pending
    /// (its delay was modified), `false` if it was idle (and is now armed or queued). A disabled
    /// item is only cancelled.
    pub fn mod_delayed(&self, d: &DelayedWork, delay: Duration) -> bool {
        mod_result(self.try_mod_delayed_on(None, d, delay))
    }

    /// `mod_delayed` on the pool of `cpu` (`mod_delayed_work_on`).
    pub fn mod_delayed_on(&self, cpu: usize, d: &DelayedWork, delay: Duration) -> bool {
        mod_result(self.try_mod_delayed_on(Some(cpu), d, delay))
    }

    /// Like `mod_delayed_on` (any CPU for `None`), saying why a refusal was refused. A refused
    /// call leaves the item as it was, except that a disabled item (which cannot be pending) is
    /// reported as [`Error::Disabled`] instead of `Ok(false)`: the kernel's return value cannot
    /// tell "was idle, now armed" from "was idle, disabled, not armed"; this one can.
    pub fn try_mod_delayed_on(&self, cpu: Option<usize>, d: &DelayedWork, delay: Duration) -> Result<bool, Error> {
        let wq = self.shared();
        wq.check_cpu(cpu)?;
        check_arming(wq, delay)?;
        let was_pending = cancel::grab_pending(&d.work, Some(&d.timer)) == cancel::Grabbed::Pending;
        let claim = Claim(d.work.state());
        if claim.0.load().disable_depth() > 0 {
            return if was_pending { Ok(true) } else { Err(Error::Disabled) };
        }
        queue_owned(claim, wq, cpu, d, delay);
        Ok(was_pending)
    }
}

/// `queue_delayed_work_on` on `wq` (the body of [`Workqueue::try_queue_delayed_on`] and
/// [`DelayedWork::try_requeue`]).
fn queue_delayed_on(wq: &Arc<WqShared>, cpu: Option<usize>, d: &DelayedWork, delay: Duration) -> Result<bool, Error> {
    wq.check_cpu(cpu)?;
    let Some(claim) = Claim::take(d.work.state()) else { return Ok(false) };
    if claim.0.load().disable_depth() > 0 {
        return Ok(false);
    }
    check_arming(wq, delay)?;
    queue_owned(claim, wq, cpu, d, delay);
    Ok(true)
}

/// `check_accepting`, and while the workqueue is being destroyed no timer may be armed on it,
/// not even by its own items (which may still queue at once, as chained work): destroy fires
/// armed timers at once, so an item that re-arms itself from its function would keep destroy
/// busy forever (docs/design.md §7).
fn check_arming(wq: &WqShared, delay: Duration) -> Result<(), Error> {
    wq.check_accepting()?;
    if !delay.is_zero() && wq.info.destroying.load(Ordering::Acquire) {
        return Err(Error::Destroyed { name: wq.info.name.to_string() });
    }
    Ok(())
}

/// A claimed PENDING not yet handed to a list or a timer. Dropped, it releases the claim: on
/// every refusal, and on an unwind before the hand-off, so that PENDING is never left owned
/// by nobody (issue 9, bug 4: a panic there left the item pending forever, and every later
/// `mod_delayed` or `cancel` waited for a hand-off that would never come).
struct Claim<'a>(&'a WorkState);

impl<'a> Claim<'a> {
    /// Claims PENDING of an idle item; `None` if it is already pending.
    fn take(state: &'a WorkState) -> Option<Claim<'a>> {
        // Not `then_some`: a `Claim` built for a failed claim would release PENDING on drop.
        if state.try_claim_pending() {
            Some(Claim(state))
        } else {
            None
        }
    }

    /// PENDING now belongs to the list or timer it was handed to.
    fn handed_off(self) {
        std::mem::forget(self);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.0.release_claim();
    }
}

/// Queues or arms `d`, whose PENDING the caller has claimed (`__queue_delayed_work`). Nothing
/// before the hand-off can panic (the deadline saturates), and `claim` covers it anyway.
fn queue_owned(claim: Claim<'_>, wq: &Arc<WqShared>, cpu: Option<usize>, d: &DelayedWork, delay: Duration) {
    if delay.is_zero() {
        wq.enqueue(cpu, d.work.clone());
    } else {
        d.timer.arm(&d.work, wq, cpu, delay);
    }
    claim.handed_off();
}

/// The kernel's return value of `mod_delayed_work_on`: a disabled item is a quiet `false`.
fn mod_result(r: Result<bool, Error>) -> bool {
    match r {
        Ok(b) => b,
        Err(Error::Disabled) => false,
        Err(e) => warn(&e),
    }
}
