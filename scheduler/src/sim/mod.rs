//! Instance generators and simulators for the published experiments. Pure:
//! every function takes its RNG seed; the `vidar-sim` binary does the I/O.

pub mod dcei;
pub mod ents;
pub mod split;

use rand::Rng;

/// A value drawn uniformly within `± variance` (a fraction) of `mean`.
pub fn vary<R: Rng>(rng: &mut R, mean: f64, variance: f64) -> f64 {
    mean * (1.0 + rng.gen_range(-variance..=variance))
}

/// Bytes per second in `mbit` Mbit/s.
pub fn mbit(mbit: f64) -> f64 {
    mbit * 1e6 / 8.0
}

/// Bytes in `gb` GiB.
pub fn gib(gb: f64) -> u64 {
    (gb * (1u64 << 30) as f64) as u64
}

/// Mean of a slice (0 for an empty one).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}
