//! cmwq benchmarks.
