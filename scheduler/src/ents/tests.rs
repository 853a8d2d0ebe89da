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
        let inst = JobInstance { cluster: cluster.clone(), jobs: jobs.clone(), k_paths: 3, allocation: Allocation::FinishTime };
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
        carry: Carry::default(),
    }); // cycle
    job.tasks[1].inputs.push(TaskInput {
        from: "nope".into(),
        bytes: 1.0,
        carry: Carry::default(),
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
        allocation: Allocation::FinishTime,
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

/// A star: nodes `n0..n<k>` each with a one-way upload to the hub `hub` and
/// a one-way download from it, at `up[i]` / `down[i]` bytes/s; the hub has
/// no memory, so no task goes there.
fn star(up: &[f64], down: &[f64]) -> Cluster {
    let id = |s: String| NodeId::new(s).expect("valid");
    let mut nodes: Vec<crate::cluster::Node> = (0..up.len())
        .map(|i| crate::cluster::Node {
            id: id(format!("n{i}")),
            capacity: 10.0,
            memory: 1 << 30,
        })
        .collect();
    nodes.push(crate::cluster::Node {
        id: id("hub".into()),
        capacity: f64::MIN_POSITIVE,
        memory: 0,
    });
    let mut links = Vec::new();
    for (i, (&u, &d)) in up.iter().zip(down).enumerate() {
        links.push(crate::cluster::Link::one_way(
            id(format!("n{i}")),
            id("hub".into()),
            u,
        ));
        links.push(crate::cluster::Link::one_way(
            id("hub".into()),
            id(format!("n{i}")),
            d,
        ));
    }
    Cluster { nodes, links }
}

#[test]
fn one_way_links_carry_one_direction_and_a_direction_is_given_once() {
    let c = star(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    let g = c.index().expect("valid");
    // n0 -> n1 goes up n0's upload (link 0) and down n1's download (link 3),
    // and there is no other simple path: the hub reaches n0 only downwards.
    let paths = k_shortest_paths(&g, 0, 1, 3, &|_| true);
    assert_eq!(paths, vec![vec![0, 3]]);
    assert_eq!(
        k_shortest_paths(&g, 1, 0, 3, &|_| true),
        vec![vec![2, 1]],
        "back the other way: n1's upload, n0's download"
    );
    // An undirected link over a pair that has a one-way link, or the same
    // direction twice, is refused; the two directions of a pair are not.
    let mut twice = c.clone();
    twice.links.push(crate::cluster::Link::new(
        c.nodes[0].id.clone(),
        c.nodes[3].id.clone(),
        9.0,
    ));
    twice.links.push(crate::cluster::Link::one_way(
        c.nodes[3].id.clone(),
        c.nodes[2].id.clone(),
        9.0,
    ));
    let problems = twice.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().all(|p| p.contains("appears twice")));
    // JSTSH needs one rate per pair: it names the one-way links.
    let mut inst = crate::sim::dcei::random_instance(1, 3, 3, crate::jstsh::CostModel::LoadAware);
    inst.cluster = c;
    let err = crate::jstsh::Problem::new(&inst).expect_err("one-way links");
    assert!(err.to_string().contains("n0-hub: one-way links"), "{err}");
}

#[test]
fn a_nodes_upload_is_shared_by_its_flows_to_every_peer_and_otfa_gives_what_a_capped_job_leaves() {
    // n0 sends frames (100 kB an item) of two jobs: one to n1, one to n2,
    // each detector pinned there. n0's upload carries 1 MB/s; the peers'
    // downloads 10 MB/s.
    let c = star(&[1e6, 1e7, 1e7], &[1e7, 1e7, 1e7]);
    let job = |id: &str, rate: f64| Job {
        id: id.into(),
        source: NodeId::new("n0").expect("valid"),
        input_bytes: 100_000.0,
        input_carry: Carry::default(),
        rate,
        tasks: vec![Task {
            name: "det".into(),
            work: 0.1,
            memory: 1,
            inputs: Vec::new(),
        }],
    };
    let inst = JobInstance {
        cluster: c,
        jobs: vec![job("fast", 10.0), job("slow", 2.0)],
        k_paths: 1,
        allocation: Allocation::FinishTime,
    };
    let keep: BTreeMap<String, BTreeMap<String, NodeId>> = [("fast", "n1"), ("slow", "n2")]
        .into_iter()
        .map(|(j, n)| {
            let t = BTreeMap::from([("det".to_string(), NodeId::new(n).expect("valid"))]);
            (j.to_string(), t)
        })
        .collect();
    let rate = |p: &JobPlan, j: &str| {
        p.placed
            .iter()
            .find(|x| x.job == j)
            .map_or(0.0, |x| x.throughput)
    };
    for policy in [Policy::Otfa, Policy::Tp] {
        let plan = solve_keeping(&inst, policy, &keep).expect("solves");
        let up: f64 = plan
            .placed
            .iter()
            .flat_map(|p| &p.flows)
            .map(|f| f.bandwidth)
            .sum();
        assert!(
            up <= 1e6 * (1.0 + 1e-9),
            "{policy:?}: {up} B/s on a 1 MB/s upload"
        );
        for p in &plan.placed {
            assert_eq!(p.flows[0].route.len(), 3, "through the hub: {:?}", p.flows);
        }
    }
    // TP splits the upload equally between the flows: the slow job can use
    // only 200 kB/s of its 500, and the rest is lost to the fast one. OTFA
    // gives the fast job all the slow one leaves.
    let tp = solve_keeping(&inst, Policy::Tp, &keep).expect("solves");
    let otfa = solve_keeping(&inst, Policy::Otfa, &keep).expect("solves");
    assert!((rate(&tp, "fast") - 5.0).abs() < 1e-6, "{tp:?}");
    assert!((rate(&otfa, "fast") - 8.0).abs() < 1e-6, "{otfa:?}");
    assert!((rate(&tp, "slow") - 2.0).abs() < 1e-6 && (rate(&otfa, "slow") - 2.0).abs() < 1e-6);
}

/// A detector, a tracker and a sink fed with frames from `n0`.
fn chain_job(carry: Carry) -> Job {
    let task = |name: &str, work: f64, from: Option<&str>| Task {
        name: name.into(),
        work,
        memory: 1,
        inputs: from
            .map(|f| TaskInput {
                from: f.into(),
                bytes: 10_000.0,
                carry: Carry::default(),
            })
            .into_iter()
            .collect(),
    };
    Job {
        id: "chain".into(),
        source: NodeId::new("n0").expect("valid"),
        input_bytes: 100_000.0,
        input_carry: carry,
        rate: 100.0,
        tasks: vec![
            task("det", 1.0, None),
            task("trk", 0.02, Some("det")),
            task("out", 0.02, Some("trk")),
        ],
    }
}

#[test]
fn the_period_rule_keeps_light_tasks_with_their_feeder_where_finish_time_scatters_them() {
    // n0 has the camera and a tenth of the others' compute; n1..n3 idle.
    let mut c = star(&[1e7; 4], &[1e7; 4]);
    c.nodes[0].capacity = 1.0;
    let solve_with = |allocation| {
        let inst = JobInstance {
            cluster: c.clone(),
            jobs: vec![chain_job(Carry::default())],
            k_paths: 1,
            allocation,
        };
        solve(&inst, Policy::Otfa).expect("solves").placed.remove(0)
    };
    let finish = solve_with(Allocation::FinishTime);
    let period = solve_with(Allocation::Period);
    let nodes = |p: &JobPlacement| {
        let n: std::collections::BTreeSet<String> =
            p.tasks.values().map(|n| n.as_str().to_string()).collect();
        n
    };
    // Finish time: the tracker leaves the detector's node, loaded with it,
    // for an idle one, and so does the sink: three nodes, three flows.
    assert_eq!(nodes(&finish).len(), 3, "{finish:?}");
    assert_eq!(finish.flows.len(), 3, "{finish:?}");
    // Period: the detector still leaves the slow camera node, and the light
    // stages stay with it: one flow, the frames.
    assert_eq!(nodes(&period).len(), 1, "{period:?}");
    assert_ne!(period.tasks["det"].as_str(), "n0");
    assert_eq!(period.flows.len(), 1, "{period:?}");
    // Each model rates its own plan: keeping the stages together costs the
    // job 4 % (their work on the detector's node), inside the tolerance.
    assert!(period.throughput >= finish.throughput / (1.0 + PERIOD_TOLERANCE));
    assert!(period.throughput < finish.throughput);
}

#[test]
fn carrying_an_input_loads_both_ends_and_can_keep_a_task_on_its_source() {
    let id = |s: &str| NodeId::new(s).expect("valid");
    let mut c = star(&[1e7; 2], &[1e7; 2]);
    c.nodes[0].capacity = 8.0;
    let index = c.index().expect("valid").index;
    // Encoding a frame costs the camera node 0.5 wu, decoding it 0.25.
    let carry = Carry {
        send: 0.5,
        recv: 0.25,
    };
    let g = JobGraph::new(&chain_job(carry), &index).expect("valid");
    let (n0, n1) = (index[&id("n0")], index[&id("n1")]);
    // Apart: the carry on both ends (the tracks' own carry is zero); together: none.
    assert_eq!(
        g.node_work(&[n1, n1, n1]),
        vec![(n0, 0.5), (n1, 1.04 + 0.25)]
    );
    assert_eq!(g.node_work(&[n0, n0, n0]), vec![(n0, 1.04)]);
    assert_eq!(g.node_work(&[n0, n1, n1]), vec![(n0, 1.0), (n1, 0.04)]);
    // n1 is faster (10 wu/s against 8), so without carry the detector moves
    // there (0.1 s an item against 0.125). With the carry, moving gives
    // max(0.5 / 8, 1.25 / 10) = 0.125 s, as staying does: a tie, and
    // staying moves no bytes.
    let place = |carry| {
        let inst = JobInstance {
            cluster: c.clone(),
            jobs: vec![chain_job(carry)],
            k_paths: 1,
            allocation: Allocation::Period,
        };
        let p = solve(&inst, Policy::Otfa).expect("solves").placed.remove(0);
        (p.tasks["det"].clone(), p.throughput)
    };
    let (free_det, _) = place(Carry::default());
    let (carried_det, rate) = place(carry);
    assert_eq!(free_det.as_str(), "n1");
    assert_eq!(carried_det.as_str(), "n0");
    assert!((rate - 8.0 / 1.04).abs() < 1e-9, "{rate}");
    // The running state counts the carry: on n1, the job's node time is
    // its work and the decoding, and n0 is charged the encoding.
    let inst = JobInstance {
        cluster: c.clone(),
        jobs: vec![chain_job(carry)],
        k_paths: 1,
        allocation: Allocation::FinishTime,
    };
    let keep = BTreeMap::from([(
        "chain".to_string(),
        BTreeMap::from([
            ("det".to_string(), id("n1")),
            ("trk".to_string(), id("n1")),
            ("out".to_string(), id("n1")),
        ]),
    )]);
    let kept = solve_keeping(&inst, Policy::Otfa, &keep).expect("solves");
    assert!(
        (kept.placed[0].throughput - 10.0 / 1.29).abs() < 1e-9,
        "{kept:?}"
    );
    // A carry that is not a finite non-negative number is refused, named.
    let mut bad = chain_job(Carry {
        send: -1.0,
        recv: 0.0,
    });
    bad.tasks[1].inputs[0].carry.recv = f64::NAN;
    let err = JobGraph::new(&bad, &index).expect_err("invalid");
    let SchedError::Invalid(p) = err else {
        panic!("wrong error {err:?}")
    };
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("input_carry"), "{p:?}");
    assert!(p[1].contains("task trk: input from det"), "{p:?}");
}

#[test]
fn the_period_rule_spreads_jobs_whose_detectors_move_the_same_bytes_anywhere() {
    // n0 has both cameras and almost no compute: each job's frames cost it
    // 0.5 wu to send, so n0 bounds both jobs wherever their detectors go.
    // Sent anywhere, they move the same bytes: the load decides, and the
    // second job's detector goes to the other idle node, not the first's.
    let mut c = star(&[1e7; 3], &[1e7; 3]);
    c.nodes[0].capacity = 0.1;
    let carry = Carry {
        send: 0.5,
        recv: 0.0,
    };
    let mut second = chain_job(carry);
    second.id = "second".into();
    let inst = JobInstance {
        cluster: c,
        jobs: vec![chain_job(carry), second],
        k_paths: 1,
        allocation: Allocation::Period,
    };
    let plan = solve(&inst, Policy::Otfa).expect("solves");
    let det = |j: usize| plan.placed[j].tasks["det"].as_str().to_string();
    assert_ne!(det(0), "n0");
    assert_ne!(det(1), "n0");
    assert_ne!(det(0), det(1), "{plan:?}");
    for p in &plan.placed {
        assert_eq!(p.flows.len(), 1, "only the frames cross: {p:?}");
    }
}
