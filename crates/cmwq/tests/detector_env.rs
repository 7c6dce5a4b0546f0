//! `CMWQ_DETECTOR` (docs/design.md §4.2): forces the detector when the builder does not, and a
//! value other than `switch` or `sample` is refused with a clear error. One test in its own
//! binary: the variable is process-wide, and every runtime built meanwhile reads it.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests act as users.

use cmwq::{Detector, Error, Runtime};

#[test]
fn cmwq_detector_forces_the_detector_and_bad_values_are_refused() {
    std::env::set_var("CMWQ_DETECTOR", "sample");
    let rt = Runtime::builder().cpus(1).build();
    assert_eq!(rt.detector(), Detector::Sample);
    drop(rt);
    // The builder wins over the variable.
    let rt = Runtime::builder().cpus(1).detector(Detector::Sample).build();
    assert_eq!(rt.detector(), Detector::Sample);
    drop(rt);
    std::env::set_var("CMWQ_DETECTOR", "fastest");
    let err = Runtime::builder().cpus(1).try_build().unwrap_err();
    assert!(matches!(err, Error::InvalidAttrs(_)), "{err:?}");
    assert!(err.to_string().contains("CMWQ_DETECTOR"), "{err}");
    std::env::set_var("CMWQ_DETECTOR", "switch");
    let rt = Runtime::builder().cpus(1).build();
    assert!(matches!(rt.detector(), Detector::Switch | Detector::Sample));
    std::env::remove_var("CMWQ_DETECTOR");
}
