//! Flush colours: `Workqueue::flush` waits for every item queued before the call and not for
//! items queued after it (the kernel's `__flush_workqueue`; kernel-notes §3.2, docs/design.md §8).
//!
//! Every queued item (and barrier) carries the colour its pwq had when it was queued; each pwq
//! counts its in-flight entries per colour. A flush takes the workqueue's current colour as its
//! flush colour and advances the work colour, so later items get the next colour. The first
//! flusher arms every pwq that still has entries of its colour; the last of them to drain
//! completes it. Flushers that arrive meanwhile queue up behind it with their own colours (or,
//! when all 16 colours are in use, on an overflow list without one); when the first flusher
//! wakes it completes every queued flusher of the same colour, hands free colours to the
//! overflowed ones, and makes the next queued flusher the first, cascading while colours are
//! already clean.
//!
//! Locking: [`FlushLocked`] is the kernel's `wq->mutex` part; pwq colours are changed under
//! each pool lock; [`FlushShared`] is what the pool side reaches without the workqueue lock.

use crate::completion::Completion;
use crate::pool::{Pwq, NR_COLORS};
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering};
use std::collections::VecDeque;

fn next_color(c: u8) -> u8 {
    ((c as usize + 1) % NR_COLORS) as u8
}

/// A waiting flusher: its colour (unset while overflowed) and its completion.
type Flusher = (u8, Arc<Completion>);

/// The workqueue-side flush state, behind the workqueue's flush lock (`wq->mutex`).
#[derive(Debug, Default)]
pub(crate) struct FlushLocked {
    /// The colour new items get (`wq->work_color`).
    work_color: u8,
    /// The colour being flushed, or the current colour when no flush runs (`wq->flush_color`).
    flush_color: u8,
    /// The flusher whose colour is being flushed.
    first: Option<Flusher>,
    /// Flushers waiting for their colour's turn, in colour order.
    queue: VecDeque<Flusher>,
    /// Flushers that found all colours in use; they get a colour when one frees up.
    overflow: VecDeque<Arc<Completion>>,
}

impl FlushLocked {
    /// The colour new items get (a new pwq starts with it: `link_pwq`).
    pub(crate) fn work_color(&self) -> u8 {
        self.work_color
    }
}

/// What the pool side needs: how many pwqs the first flusher still waits for, and its
/// completion.
#[derive(Debug, Default)]
pub(crate) struct FlushShared {
    /// Pwqs still holding entries of the colour being flushed, plus one while arming
    /// (`wq->nr_pwqs_to_flush`). AcqRel: the decrement that reaches zero must see every pwq's
    /// accounting before completing the flusher.
    nr_pwqs_to_flush: AtomicUsize,
    /// The first flusher's completion (read by the pool side; written under the flush lock).
    first_done: Mutex<Option<Arc<Completion>>>,
}

impl FlushShared {
    /// A pwq's count for the flush colour reached zero. Pool lock held.
    pub(crate) fn pwq_flushed(&self) {
        if self.nr_pwqs_to_flush.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(c) = &*self.first_done.lock() {
                c.complete();
            }
        }
    }
}

/// Arms the pwqs for `flush_color` and/or advances their work colour to `work_color`
/// (`flush_workqueue_prep_pwqs`). Returns whether some pwq has entries of `flush_color` to wait
/// for. Flush lock held.
fn prep_pwqs(
    shared: &FlushShared,
    l: &FlushLocked,
    pwqs: &[Pwq],
    flush_color: Option<u8>,
    work_color: Option<u8>,
) -> bool {
    let mut wait = false;
    // The arming reference: the count cannot reach zero while later pwqs are still unarmed.
    #[cfg(loom)]
    let bias = usize::from(!crate::sync::plant::is(crate::sync::plant::Bug::FlushNoArmingBias));
    #[cfg(not(loom))]
    let bias = 1;
    if flush_color.is_some() {
        assert_eq!(shared.nr_pwqs_to_flush.load(Ordering::Acquire), 0);
        *shared.first_done.lock() = l.first.as_ref().map(|f| f.1.clone());
        shared.nr_pwqs_to_flush.store(bias, Ordering::Release);
    }
    for p in pwqs {
        // The count goes up under the pool lock that armed the pwq: released first, a worker
        // could drain the pwq and use up the arming reference before a later pwq is armed
        // (the loom model `flush_colour_waits_for_earlier` found it in 93 executions).
        let mut g = p.lock();
        if g.pwq_flush_prep(p.slot(), flush_color, work_color) {
            shared.nr_pwqs_to_flush.fetch_add(1, Ordering::AcqRel);
            wait = true;
        }
        drop(g);
    }
    if flush_color.is_some() && bias == 1 {
        shared.pwq_flushed();
    }
    wait
}

/// Waits until every entry queued on the workqueue's pwqs before the call has finished
/// (`__flush_workqueue`). `lock` is the workqueue lock; `parts` finds the flush state and the
/// pwqs behind it.
pub(crate) fn flush_workqueue<L>(
    lock: &Mutex<L>,
    shared: &FlushShared,
    parts: fn(&mut L) -> (&mut FlushLocked, &[Pwq]),
) {
    let me = Arc::new(Completion::new());
    {
        let mut guard = lock.lock();
        let (l, pwqs) = parts(&mut guard);
        let next = next_color(l.work_color);
        if next != l.flush_color {
            // Colour space not full: flush the current colour, new items get the next one.
            assert!(l.overflow.is_empty());
            let color = l.work_color;
            l.work_color = next;
            if l.first.is_none() {
                assert_eq!(l.flush_color, color);
                l.first = Some((color, me.clone()));
                let wc = l.work_color;
                if !prep_pwqs(shared, l, pwqs, Some(color), Some(wc)) {
                    // Nothing in flight of this colour: done at once.
                    l.flush_color = next;
                    l.first = None;
                    return;
                }
            } else {
                assert_ne!(l.flush_color, color);
                l.queue.push_back((color, me.clone()));
                let wc = l.work_color;
                prep_pwqs(shared, l, pwqs, None, Some(wc));
            }
        } else {
            // All 16 colours in use: wait for one to free up.
            l.overflow.push_back(me.clone());
        }
    }

    me.wait();

    // Wake-up-and-cascade: only the first flusher has work to do.
    let mut guard = lock.lock();
    let (l, pwqs) = parts(&mut guard);
    if !l.first.as_ref().is_some_and(|f| Arc::ptr_eq(&f.1, &me)) {
        return;
    }
    let (my_color, _) = l.first.take().expect("first flusher");
    assert_eq!(l.flush_color, my_color);
    loop {
        // Complete every flusher of the colour just flushed.
        while l.queue.front().is_some_and(|f| f.0 == l.flush_color) {
            let (_, c) = l.queue.pop_front().expect("front");
            c.complete();
        }
        l.flush_color = next_color(l.flush_color);
        // A colour freed up: the overflowed flushers get the current work colour.
        if !l.overflow.is_empty() {
            let color = l.work_color;
            let overflowed: Vec<_> = l.overflow.drain(..).collect();
            l.queue.extend(overflowed.into_iter().map(|c| (color, c)));
            l.work_color = next_color(l.work_color);
            let wc = l.work_color;
            prep_pwqs(shared, l, pwqs, None, Some(wc));
        }
        let Some((color, next)) = l.queue.pop_front() else {
            assert_eq!(l.flush_color, l.work_color);
            break;
        };
        assert_eq!(l.flush_color, color);
        l.first = Some((color, next));
        if prep_pwqs(shared, l, pwqs, Some(color), None) {
            break;
        }
        // That colour is already clean (its flusher was completed by prep): cascade.
        l.first = None;
    }
}
