//! EdgeSplit tests: bisection against brute force, never worse than Adaptive FL,
//! bandwidth within the total, memory respected.

use proptest::prelude::*;

use super::*;
use crate::sim::split::{instance, profile, MODELS};

fn brute_force(a: &[f64], c: &[f64], total: f64) -> f64 {
    // Grid over shares of the first devices; the last takes the rest.
    let steps = 400;
    let mut best = f64::INFINITY;
    let mut rec = |shares: &[f64]| {
        let t = a
            .iter()
            .zip(c)
            .zip(shares)
            .map(|((&a, &c), &b)| device_time(a, c, b))
            .fold(0.0, f64::max);
        best = best.min(t);
    };
    match a.len() {
        2 => (1..steps).for_each(|s| {
            let b0 = total * s as f64 / steps as f64;
            rec(&[b0, total - b0]);
        }),
        3 => (1..steps).for_each(|s| {
            (1..steps - s).for_each(|r| {
                let (b0, b1) = (
                    total * s as f64 / steps as f64,
                    total * r as f64 / steps as f64,
                );
                rec(&[b0, b1, total - b0 - b1]);
            })
        }),
        _ => unreachable!(),
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn bisection_matches_brute_force(a in prop::collection::vec(0.0f64..10.0, 2..4), c in prop::collection::vec(0.0f64..50.0, 3), total in 1.0f64..20.0) {
        let c = &c[..a.len()];
        let (t, shares) = optimal_bandwidth(&a, c, total);
        let bf = brute_force(&a, c, total);
        prop_assert!(t <= bf * (1.0 + 1e-9), "bisection {} worse than grid {}", t, bf);
        prop_assert!(t >= bf * (1.0 - 0.02) - 1e-9, "bisection {} implausibly below grid {}", t, bf);
        prop_assert!(shares.iter().sum::<f64>() <= total * (1.0 + 1e-9));
    }

    #[test]
    fn edgesplit_never_worse_than_adaptive_fl_and_within_budget(seed in 0u64..1000, m in 1usize..40, mbit in 1.0f64..100.0, model in 0usize..4) {
        let inst = instance(seed, MODELS[model], m, mbit, 20).expect("known model");
        let es = plan(&inst, SplitAlgorithm::Edgesplit).expect("some cut fits every device");
        prop_assert!(es.bandwidth_used <= inst.bandwidth * (1.0 + 1e-9));
        for (d, dev) in es.devices.iter().zip(&inst.devices) {
            prop_assert!(inst.model.cuts[d.cut].train_memory <= dev.memory, "cut over memory");
        }
        for algo in [SplitAlgorithm::AdaptiveFl, SplitAlgorithm::EdgesplitFix, SplitAlgorithm::VanillaFl] {
            if let Ok(other) = plan(&inst, algo) {
                prop_assert!(es.round_time <= other.round_time * (1.0 + 1e-9), "{:?} beat EdgeSplit", algo);
                prop_assert!(other.bandwidth_used <= inst.bandwidth * (1.0 + 1e-9));
            }
        }
    }
}

#[test]
fn weak_devices_cannot_train_big_models_without_splitting() {
    let mut inst = instance(3, "vgg16", 4, 30.0, 20).expect("known model");
    for d in &mut inst.devices {
        d.memory = profile("vgg16").expect("known").cuts[2].train_memory;
    }
    assert!(matches!(
        plan(&inst, SplitAlgorithm::VanillaFl),
        Err(SchedError::Infeasible(_))
    ));
    let es = plan(&inst, SplitAlgorithm::Edgesplit).expect("splitting makes it feasible");
    assert!(es.devices.iter().all(|d| d.cut <= 2));
}
