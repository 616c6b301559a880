//! What every microbenchmark shares: short runs, and the same pseudo-random input.
#![allow(dead_code)] // each bench uses part of it

use criterion::Criterion;
use std::time::Duration;

/// One second of warm-up and a short measurement, so that `cargo bench` takes minutes.
pub fn config(measure_secs: u64) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(measure_secs))
}

/// `len` bytes that no codec or checksum can shortcut.
pub fn data(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}
