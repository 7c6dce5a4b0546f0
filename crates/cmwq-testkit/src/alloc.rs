//! Counting allocations, with `stats_alloc` (the workspace lints admit no hand-written allocator,
//! so there is none of our own).

/// Makes `stats_alloc`'s instrumented system allocator the global allocator of the binary this
/// is written in (at the top level of a test file), so that [`allocations`] counts. The count
/// is process-wide: a test binary that uses it runs nothing else alongside its measurements.
///
/// ```
/// cmwq_testkit::count_allocations!();
///
/// fn main() {
///     let before = cmwq_testkit::allocations();
///     let v = std::hint::black_box(vec![1u8; 100]);
///     assert_eq!(cmwq_testkit::allocations(), before + 1);
///     drop(v);
/// }
/// ```
#[macro_export]
macro_rules! count_allocations {
    () => {
        #[global_allocator]
        static COUNTING_ALLOCATOR: &$crate::stats_alloc::StatsAlloc<::std::alloc::System> =
            &$crate::stats_alloc::INSTRUMENTED_SYSTEM;
    };
}

/// Allocations plus reallocations made so far by the whole process, as counted by the
/// allocator that [`count_allocations!`](crate::count_allocations) installed. Reading it
/// allocates nothing.
///
/// # Panics
///
/// If the count is still zero, i.e. the binary did not install the counting allocator (any
/// test harness has allocated by the time a test runs): a check against a counter that never
/// moves would pass vacuously.
pub fn allocations() -> u64 {
    let s = stats_alloc::INSTRUMENTED_SYSTEM.stats();
    let n = (s.allocations + s.reallocations) as u64;
    assert!(n > 0, "no allocation counted: install the counting allocator with cmwq_testkit::count_allocations!()");
    n
}
