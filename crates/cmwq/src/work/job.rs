//! The closure of a one-shot item (`Workqueue::spawn`), stored without a `Work`: an
//! anonymous item nobody else can name. Up to two words (a closure that captured an `Arc` or
//! two: the common case) are stored inline, so spawning allocates nothing; a larger or
//! over-aligned closure is boxed. Two words keep a pool list entry within 48 bytes
//! (`pool::entry`).

use stack_dst::Value;
use std::mem::MaybeUninit;

/// The closure of a one-shot item (`Workqueue::spawn`). One of up to two words (a closure
/// that captured an `Arc` or two: the common case) is stored inline in the entry, so spawning
/// it allocates nothing; a larger or over-aligned one is boxed. Two words keep an [`Entry`]
/// within 48 bytes and an arena node within one 64-byte cache line.
pub(crate) enum Job {
    /// Stored inline: the closure and its vtable in three words (`stack_dst`).
    Inline(Value<dyn Call, JobBuf>),
    /// Too large (or aligned beyond a word) to store inline.
    Boxed(Box<dyn FnOnce() + Send + 'static>),
}

/// Inline storage of a [`Job`]: three words, the closure first and its vtable pointer last.
type JobBuf = [MaybeUninit<usize>; 3];

/// A one-shot closure behind `&mut` (an inline value can only be called through a
/// reference): the first call takes the closure out and runs it.
pub(crate) trait Call: Send {
    fn call(&mut self);
}

/// The `FnOnce` inside a [`Call`].
struct OnceFn<F>(Option<F>);

impl<F: FnOnce() + Send> Call for OnceFn<F> {
    fn call(&mut self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
}

impl Job {
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Job {
        // `stack_dst` panics on a value aligned beyond its buffer's word: box those.
        if std::mem::align_of::<F>() > std::mem::align_of::<usize>() {
            return Job::Boxed(Box::new(f));
        }
        match Value::in_buffer_stable([MaybeUninit::uninit(); 3], OnceFn(Some(f)), |v| v as &dyn Call) {
            Ok(v) => Job::Inline(v),
            Err(OnceFn(f)) => Job::Boxed(Box::new(f.expect("the closure was not taken"))),
        }
    }

    /// Calls the closure, consuming it (what it captured is dropped inside the call).
    pub(crate) fn run(self) {
        match self {
            Job::Inline(mut v) => v.call(),
            Job::Boxed(f) => f(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_word_closures_are_inline_and_larger_ones_boxed() {
        let (a, b) = (std::sync::Arc::new(1u64), std::sync::Arc::new(2u64));
        let (a2, b2) = (a.clone(), b.clone());
        let job = Job::new(move || assert_eq!(*a2 + *b2, 3));
        assert!(matches!(job, Job::Inline(_)));
        job.run();
        assert_eq!((std::sync::Arc::strong_count(&a), std::sync::Arc::strong_count(&b)), (1, 1));
        let big = [7u64; 3];
        let job = Job::new(move || assert_eq!(big.iter().sum::<u64>(), 21));
        assert!(matches!(job, Job::Boxed(_)));
        job.run();
    }

    /// A job dropped without being run (a workqueue destroyed with it queued, a cancelled
    /// flood) drops what its closure captured exactly once, inline or boxed; under Miri this
    /// also checks `stack_dst`'s raw inline storage (no double drop, no leak, no misaligned read).
    #[test]
    fn an_unrun_job_drops_its_captures_once() {
        let a = std::sync::Arc::new(0u64);
        let a2 = a.clone();
        let inline = Job::new(move || drop(a2));
        assert!(matches!(inline, Job::Inline(_)));
        assert_eq!(std::sync::Arc::strong_count(&a), 2);
        drop(inline);
        assert_eq!(std::sync::Arc::strong_count(&a), 1, "the inline closure's capture was dropped");
        let (a3, pad) = (a.clone(), [1u64; 4]);
        let boxed = Job::new(move || drop((a3, pad)));
        assert!(matches!(boxed, Job::Boxed(_)));
        drop(boxed);
        assert_eq!(std::sync::Arc::strong_count(&a), 1, "the boxed closure's capture was dropped");
    }

    /// A closure aligned beyond a word is boxed (`stack_dst` would panic on it) and runs with
    /// its capture intact.
    #[test]
    fn an_over_aligned_closure_is_boxed_and_runs() {
        #[derive(Clone, Copy)]
        #[repr(align(32))]
        struct Wide(u8);
        let w = Wide(7);
        let hit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = hit.clone();
        let job = Job::new(move || {
            assert_eq!(std::ptr::from_ref(&w).addr() % 32, 0, "the capture is aligned");
            h.store(w.0 == 7, std::sync::atomic::Ordering::Relaxed);
        });
        assert!(matches!(job, Job::Boxed(_)));
        job.run();
        assert!(hit.load(std::sync::atomic::Ordering::Relaxed));
    }
}
