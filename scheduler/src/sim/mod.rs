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

/// The benchmark sizes, shared by the criterion benches and `vidar-sim bench`.
pub mod bench {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::ents::JobInstance;
    use crate::jstsh::{CostModel, StreamInstance};

    /// JSTSH at `k` streams x `m` nodes: random capacities and rates, capacity
    /// scaled by the streams per node (the cluster runs near full load), ample memory.
    pub fn streams(k: usize, m: usize) -> StreamInstance {
        let mut inst = super::dcei::random_instance(1, m, k, CostModel::LoadAware);
        for n in &mut inst.cluster.nodes {
            n.capacity *= k as f64 / m.max(1) as f64;
            n.memory = 1 << 34;
        }
        inst
    }

    /// OTFA/OTFS at `jobs` attribute-recognition jobs on `nodes` nodes (10 Mbit/s).
    pub fn jobs(nodes: usize, jobs: usize) -> JobInstance {
        let cluster = super::ents::random_cluster(1, nodes, 10.0);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let jobs = (0..jobs)
            .map(|j| {
                super::ents::attribute_job(j, cluster.nodes[rng.gen_range(0..nodes)].id.clone())
            })
            .collect();
        JobInstance {
            cluster,
            jobs,
            k_paths: 3,
            allocation: Default::default(),
        }
    }
}
