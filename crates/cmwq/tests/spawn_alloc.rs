//! `Workqueue::spawn` of a small closure allocates nothing once the pool is warm: the closure
//! is stored inline in the pool's entry (`pool::entry::Job`), and the inbox buffers and the
//! node arena reuse their capacity. Larger and over-aligned closures are boxed and still run
//! exactly once. A `Work` handle is one pointer that clones without allocating. Its own test
//! binary, so that the counting global allocator sees only this test's threads.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users: real threads and time.

mod support;

use cmwq::{Runtime, Work};
use cmwq_testkit::allocations;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::wait_for;

cmwq_testkit::count_allocations!();

/// The tests of this binary take turns: the allocation count is process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Spawns one closure that captures one `Arc` and waits until it ran, `n` times.
fn ping(wq: &cmwq::Workqueue, ran: &Arc<AtomicUsize>, n: usize) {
    for _ in 0..n {
        let before = ran.load(Ordering::SeqCst);
        let r = ran.clone();
        assert!(wq.spawn(move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        wait_for("the spawned closure to run", || ran.load(Ordering::SeqCst) > before);
    }
}

#[test]
fn a_small_spawned_closure_allocates_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for unbound in [false, true] {
        let rt = Runtime::builder().cpus(2).build();
        let b = rt.workqueue("spawn-alloc");
        let wq = if unbound { b.unbound() } else { b }.build().expect("workqueue");
        let ran = Arc::new(AtomicUsize::new(0));
        // Warm up: workers created, buffers and arena at their steady size.
        ping(&wq, &ran, 200);
        // A round may still meet a first use: the test thread moving to the other CPU
        // queues on that CPU's pool for the first time (its first worker, its buffers). So
        // rounds are repeated until one allocates nothing; boxed closures would allocate
        // 2,000 times in every round. The monitor and timer threads are idle here (no
        // clock-driven work is armed), so the process-wide count is this loop's.
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let before = allocations();
            ping(&wq, &ran, 2_000);
            rounds.push(allocations() - before);
            if rounds.last() == Some(&0) {
                break;
            }
        }
        assert_eq!(
            rounds.last(),
            Some(&0),
            "unbound {unbound}: allocations in each round of 2,000 spawns of a one-Arc closure: {rounds:?}"
        );
    }
}

#[test]
fn large_and_over_aligned_closures_run_once_and_drop_what_they_captured() {
    #[derive(Clone, Copy)]
    #[repr(align(64))]
    struct Wide(#[allow(dead_code)] [u8; 64]);
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());

    let rt = Runtime::builder().cpus(2).build();
    let wq = rt.workqueue("spawn-large").build().expect("workqueue");
    let ran = Arc::new(AtomicUsize::new(0));
    let sum = Arc::new(AtomicUsize::new(0));
    for k in 0..100usize {
        let (r, s) = (ran.clone(), sum.clone());
        if k % 2 == 0 {
            // Eight words of payload: too large for the inline store.
            let payload = [k as u64; 8];
            assert!(wq.spawn(move || {
                s.fetch_add(payload.iter().sum::<u64>() as usize, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
            }));
        } else {
            // Aligned to 64 bytes: beyond the inline store's word alignment.
            let wide = Wide([1; 64]);
            assert!(wq.spawn(move || {
                let w = std::hint::black_box(wide);
                s.fetch_add(w.0.iter().map(|&b| b as usize).sum::<usize>() * k, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
            }));
        }
    }
    support::bounded("wq.flush()", || wq.flush());
    assert_eq!(ran.load(Ordering::SeqCst), 100);
    let even: usize = (0..100).step_by(2).map(|k| 8 * k).sum();
    let odd: usize = (1..100).step_by(2).map(|k| 64 * k).sum();
    assert_eq!(sum.load(Ordering::SeqCst), even + odd);
    // Every closure was dropped after its one call: only our handles are left.
    wait_for("the closures' captures to be dropped", || Arc::strong_count(&ran) == 1 && Arc::strong_count(&sum) == 1);
}

/// The name of the closure type `F`, as `std::any::type_name` gives it.
fn type_name_of<F>(_: &F) -> &'static str {
    std::any::type_name::<F>()
}

/// A `Work` is a cheap handle: one (fat) pointer to the shared item, and a clone allocates
/// nothing; clones name the same item and distinct items are distinct. Named: `Work::named`
/// gives the name, `Work::new` takes the closure's type name, and `Debug` prints it.
#[test]
fn work_handles_are_cheap_and_named() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // One `Arc` of the item (at most a data pointer and a vtable pointer), no inline state.
    let handle = std::mem::size_of::<Work>();
    assert!(handle <= std::mem::size_of::<Arc<dyn Fn(&Work) + Send + Sync>>(), "a Work of {handle} bytes");
    assert_eq!(std::mem::size_of::<Option<Work>>(), std::mem::size_of::<Work>(), "a non-null pointer");

    let named = Work::named("x", |_| {});
    assert_eq!(named.name(), "x");
    assert!(format!("{named:?}").contains(r#"name: "x""#), "{named:?}");
    let f = |_: &Work| {};
    let closure_name = type_name_of(&f);
    let w = Work::new(f);
    assert_eq!(w.name(), closure_name);
    assert!(closure_name.contains("work_handles_are_cheap_and_named") && closure_name.contains("closure"));
    assert!(format!("{w:?}").contains(closure_name), "{w:?}");

    let w2 = w.clone();
    assert!(w.ptr_eq(&w2) && w2.ptr_eq(&w));
    assert_eq!(w2.name(), w.name());
    assert!(!w.ptr_eq(&named));
    let same_closure = Work::new(f);
    assert!(!w.ptr_eq(&same_closure), "two items of one closure type are distinct");

    // A clone is a reference-count increment. The count is process-wide and the test harness
    // may allocate while a test runs (reporting the one before): a round that allocated is
    // measured again, and a clone that allocated would allocate 1,000 times in every round.
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let before = allocations();
        for _ in 0..1_000 {
            let c = std::hint::black_box(w.clone());
            assert!(c.ptr_eq(&w));
        }
        rounds.push(allocations() - before);
        if rounds.last() == Some(&0) {
            break;
        }
    }
    assert_eq!(rounds.last(), Some(&0), "allocations in each round of 1,000 clones of a Work: {rounds:?}");
}
