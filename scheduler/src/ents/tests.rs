//! ENTS tests: Yen's paths against brute force, JRBA's bound and link limits,
//! and scheduler invariants on random instances.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::jrba::period;
use super::paths::nodes_of;
use super::*;
use crate::sim::ents::{attribute_job, random_cluster, simulate, EntsSetup};

/// Every simple path from s to t by DFS, as link lists.
fn all_simple(g: &crate::cluster::Graph, s: usize, t: usize) -> Vec<Vec<usize>> {
    fn go(
        g: &crate::cluster::Graph,
        u: usize,
        t: usize,
        seen: &mut Vec<bool>,
        cur: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if u == t {
            out.push(cur.clone());
            return;
        }
        for &(v, l) in &g.adj[u] {
            if !seen[v] {
                seen[v] = true;
                cur.push(l);
                go(g, v, t, seen, cur, out);
                cur.pop();
                seen[v] = false;
            }
        }
    }
    let mut seen = vec![false; g.len()];
    seen[s] = true;
    let mut out = Vec::new();
    go(g, s, t, &mut seen, &mut Vec::new(), &mut out);
    out
}

fn random_flows(seed: u64, n: usize, count: usize) -> Vec<FlowDemand> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let src = rng.gen_range(0..n);
            let dst = (src + rng.gen_range(1..n)) % n;
            FlowDemand {
                src,
                dst,
                volume: rng.gen_range(1e3..1e6),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn yen_matches_brute_force(seed in 0u64..1000, n in 3usize..9, k in 1usize..5) {
        let g = random_cluster(seed, n, 10.0).index().expect("valid");
        let (s, t) = (0, n - 1);
        let ours = k_shortest_paths(&g, s, t, k, &|_| true);
        let mut all = all_simple(&g, s, t);
        all.sort_by_key(Vec::len);
        prop_assert_eq!(ours.len(), k.min(all.len()));
        for (i, p) in ours.iter().enumerate() {
            prop_assert_eq!(p.len(), all[i].len(), "path {} is not the {}-th shortest", i, i + 1);
            let nodes = nodes_of(&g, s, p);
            prop_assert_eq!(*nodes.last().expect("non-empty"), t);
            let mut uniq = nodes.clone();
            uniq.sort_unstable();
            uniq.dedup();
            prop_assert_eq!(uniq.len(), nodes.len(), "path revisits a node");
            prop_assert!(ours[..i].iter().all(|q| q != p), "duplicate path");
        }
    }

    #[test]
    fn jrba_bound_holds_and_links_are_not_oversubscribed(seed in 0u64..1000, n in 3usize..15, count in 1usize..25) {
        let g = random_cluster(seed, n, 5.0).index().expect("valid");
        let flows = random_flows(seed, n, count);
        let r = jrba(&g, &g.bandwidth, &flows, 3).expect("LP solves").expect("connected");
        prop_assert!(r.lp_bound <= r.period * (1.0 + 1e-6), "LP {} above rounded {}", r.lp_bound, r.period);
        prop_assert!((period(&flows, &r.bandwidth) - r.period).abs() <= 1e-9 * r.period);
        let mut used = vec![0.0; g.bandwidth.len()];
        for ((f, p), b) in flows.iter().zip(&r.paths).zip(&r.bandwidth) {
            prop_assert_eq!(*nodes_of(&g, f.src, p).last().expect("non-empty"), f.dst);
            for &l in p { used[l] += b; }
        }
        for (u, b) in used.iter().zip(&g.bandwidth) {
            prop_assert!(*u <= b * (1.0 + 1e-9), "link over bandwidth: {} > {}", u, b);
        }
    }

    #[test]
    fn every_policy_places_each_task_once_within_memory_and_bandwidth(seed in 0u64..1000, n in 4usize..20, jobs in 1usize..12) {
        let cluster = random_cluster(seed, n, 2.0);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let jobs: Vec<Job> = (0..jobs).map(|j| attribute_job(j, cluster.nodes[rng.gen_range(0..n)].id.clone())).collect();
        let inst = JobInstance { cluster: cluster.clone(), jobs: jobs.clone(), k_paths: 3 };
        for policy in Policy::ALL {
            let plan = solve(&inst, policy).expect("solves");
            prop_assert_eq!(plan.placed.len() + plan.waiting.len(), jobs.len());
            let mut mem = std::collections::BTreeMap::new();
            let mut link = std::collections::BTreeMap::new();
            for p in &plan.placed {
                let job = jobs.iter().find(|j| j.id == p.job).expect("known job");
                prop_assert_eq!(p.tasks.len(), job.tasks.len());
                for t in &job.tasks {
                    *mem.entry(p.tasks[&t.name].clone()).or_insert(0u64) += t.memory;
                }
                for f in &p.flows {
                    prop_assert!(f.bandwidth > 0.0);
                    for w in f.route.windows(2) {
                        let key = if w[0] < w[1] { (w[0].clone(), w[1].clone()) } else { (w[1].clone(), w[0].clone()) };
                        *link.entry(key).or_insert(0.0) += f.bandwidth;
                    }
                }
                prop_assert!(p.throughput > 0.0 && p.throughput <= job.rate);
            }
            for node in &cluster.nodes {
                prop_assert!(mem.get(&node.id).copied().unwrap_or(0) <= node.memory, "{:?} overfills {}", policy, node.id);
            }
            for l in &cluster.links {
                let key = if l.a < l.b { (l.a.clone(), l.b.clone()) } else { (l.b.clone(), l.a.clone()) };
                prop_assert!(link.get(&key).copied().unwrap_or(0.0) <= l.bandwidth * (1.0 + 1e-9), "{:?} oversubscribes {}-{}", policy, l.a, l.b);
            }
        }
    }
}

#[test]
fn task_partition_beats_whole_job_placement_on_slow_links() {
    let setup = EntsSetup {
        nodes: 12,
        jobs: 10,
        duration: 30.0,
        ..EntsSetup::default()
    };
    let (mut otfa, mut lr) = (0.0, 0.0);
    for seed in 0..3 {
        otfa += simulate(seed, &setup, Policy::Otfa)
            .expect("runs")
            .mean_throughput;
        lr += simulate(seed, &setup, Policy::Lr)
            .expect("runs")
            .mean_throughput;
    }
    assert!(otfa > 1.4 * lr, "OTFA {otfa} vs LR {lr}");
}

#[test]
fn invalid_jobs_are_reported_together() {
    let cluster = random_cluster(1, 4, 1.0);
    let mut job = attribute_job(0, cluster.nodes[0].id.clone());
    job.tasks[0].inputs.push(TaskInput {
        from: "track".into(),
        bytes: 1.0,
    }); // cycle
    job.tasks[1].inputs.push(TaskInput {
        from: "nope".into(),
        bytes: 1.0,
    });
    job.rate = f64::NAN;
    let err = JobGraph::new(&job, &cluster.index().expect("valid").index).expect_err("invalid");
    let SchedError::Invalid(p) = err else {
        panic!("wrong error {err:?}")
    };
    assert_eq!(p.len(), 2, "{p:?}"); // unknown input + rate (the cycle is reported once the rest is fixed)
}

#[test]
fn otfa_is_at_least_as_good_as_task_partition_online() {
    use crate::sim::ents::{simulate, EntsSetup};
    for (seed, bw) in [(0, 1.0), (1, 1.0), (2, 10.0)] {
        let s = EntsSetup {
            nodes: 12,
            jobs: 15,
            bandwidth_mbit: bw,
            ..EntsSetup::default()
        };
        let otfa = simulate(seed, &s, Policy::Otfa).expect("runs");
        let tp = simulate(seed, &s, Policy::Tp).expect("runs");
        assert!(
            otfa.mean_throughput >= tp.mean_throughput,
            "seed {seed}: OTFA {otfa:?} below TP {tp:?}"
        );
        assert!(otfa.mean_wait <= tp.mean_wait + 1e-9);
    }
}

#[test]
fn a_kept_placement_is_used_as_given_and_the_fresh_one_reproduces_itself() {
    let cluster = random_cluster(7, 8, 2.0);
    let jobs: Vec<Job> = (0..4)
        .map(|j| attribute_job(j, cluster.nodes[j % 8].id.clone()))
        .collect();
    let inst = JobInstance {
        cluster: cluster.clone(),
        jobs: jobs.clone(),
        k_paths: 3,
    };
    for policy in Policy::ALL {
        let fresh = solve(&inst, policy).expect("solves");
        // Keeping the fresh placement gives the same plan.
        let keep: BTreeMap<String, BTreeMap<String, NodeId>> = fresh
            .placed
            .iter()
            .map(|p| (p.job.clone(), p.tasks.clone()))
            .collect();
        let kept = solve_keeping(&inst, policy, &keep).expect("solves");
        assert_eq!(kept, fresh, "{policy:?}");
        // A job kept whole on the node with the most memory is placed there.
        let big = cluster
            .nodes
            .iter()
            .max_by_key(|n| n.memory)
            .expect("nodes")
            .id
            .clone();
        let whole: BTreeMap<String, NodeId> = jobs[0]
            .tasks
            .iter()
            .map(|t| (t.name.clone(), big.clone()))
            .collect();
        let keep = BTreeMap::from([(jobs[0].id.clone(), whole.clone())]);
        let kept = solve_keeping(&inst, policy, &keep).expect("solves");
        let p = kept
            .placed
            .iter()
            .find(|p| p.job == jobs[0].id)
            .expect("placed");
        assert_eq!(p.tasks, whole, "{policy:?}");
        assert!(
            p.flows
                .iter()
                .all(|f| f.from == jobs[0].source && f.to == big),
            "a job on one node has only its input's flow: {:?}",
            p.flows
        );
    }
}
