//! JSTSH tests: invariants on random instances and the gap to the exact optimum.

use proptest::prelude::*;

use super::eval::{feasible, total, Loads};
use super::*;
use crate::cluster::Link;
use crate::sim::dcei::{random_direct_instance, random_instance, random_shared_instance};

/// Builds a small random instance: `(seed, nodes, streams, cost)`.
type Make = fn(u64, usize, usize, CostModel) -> StreamInstance;

/// Gaps `algo / exact - 1` of the cost minimised over small random instances
/// (3-4 nodes, 3-5 streams) for the greedy, the iterated local search alone
/// (no exact polish) and JSTSH; instances with no feasible plan are skipped.
fn gaps(make: Make, cost: CostModel, seeds: std::ops::Range<u64>) -> [Vec<f64>; 3] {
    let mut out: [Vec<f64>; 3] = Default::default();
    for seed in seeds {
        let inst = make(seed, 3 + (seed % 2) as usize, 3 + (seed % 3) as usize, cost);
        let p = Problem::new(&inst).expect("generated instances are valid");
        let Ok(g) = greedy::greedy(&p) else {
            continue; // no feasible plan (the exact search confirms it in the runner's report)
        };
        let ils = improve::local_search(&p, g.clone(), improve::work_budget(p.k(), p.m));
        // The local search's plan only seeds the bound; the optimum does not depend on it.
        let opt = exact::exact_from(&p, Some(ils.clone()), 10_000_000).expect("small instance");
        let opt = total(&p, &opt, cost);
        let jstsh = solve_indexed(&p, StreamAlgorithm::Jstsh, seed).expect("feasible");
        for (a, o) in [g, ils, jstsh].iter().zip(&mut out) {
            o.push(total(&p, a, cost) / opt - 1.0);
        }
    }
    out
}

fn plan_cost(plan: &StreamPlan, cost: CostModel) -> f64 {
    match cost {
        CostModel::Published => plan.objective.published_cost,
        CostModel::LoadAware => plan.objective.load_aware_cost,
    }
}

#[test]
fn jstsh_is_within_2_percent_of_the_exact_optimum_on_every_small_instance() {
    within_2_percent(random_instance);
}

#[test]
fn jstsh_is_within_2_percent_of_the_exact_optimum_with_direct_rates() {
    within_2_percent(random_direct_instance);
}

#[test]
fn jstsh_is_within_2_percent_of_the_exact_optimum_with_a_shared_ingress() {
    within_2_percent(random_shared_instance);
}

#[test]
fn jstsh_is_within_2_percent_of_the_exact_optimum_with_ingest_work() {
    within_2_percent(with_ingest);
}

/// [`random_shared_instance`] whose streams also load their detection
/// node with ingest work (0 to 0.6 wu a frame).
fn with_ingest(seed: u64, m: usize, k: usize, cost: CostModel) -> StreamInstance {
    let mut inst = random_shared_instance(seed, m, k, cost);
    for (i, s) in inst.streams.iter_mut().enumerate() {
        s.ingest_work = 0.2 * ((seed as usize + i) % 4) as f64;
    }
    inst
}

fn within_2_percent(make: Make) {
    let seeds = if cfg!(debug_assertions) {
        0..60
    } else {
        0..300
    };
    for cost in [CostModel::Published, CostModel::LoadAware] {
        let [greedy, ils, ours] = gaps(make, cost, seeds.clone());
        let mean = |g: &[f64]| g.iter().sum::<f64>() / g.len() as f64;
        let worst = |g: &[f64]| g.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "{cost:?} over {} instances: greedy mean {:.4} worst {:.4}; local search alone mean {:.5} worst {:.4}; jstsh mean {:.5} worst {:.4}",
            ours.len(),
            mean(&greedy),
            worst(&greedy),
            mean(&ils),
            worst(&ils),
            mean(&ours),
            worst(&ours)
        );
        assert!(
            ours.len() >= seeds.end as usize * 5 / 6,
            "too few feasible instances: {}",
            ours.len()
        );
        for g in [&ils, &ours] {
            assert!(
                g.iter().all(|&g| g > -1e-9),
                "a heuristic beat the exact optimum: {g:?}"
            );
            assert!(
                worst(g) <= 0.02,
                "{cost:?}: worst gap {} above the 2 % goal",
                worst(g)
            );
        }
        assert!(mean(&ours) <= mean(&greedy));
    }
}

#[test]
fn greedy_is_optimal_with_one_node_type_and_ample_memory() {
    for seed in 0..40 {
        let mut inst = random_instance(
            seed,
            3 + (seed % 2) as usize,
            3 + (seed % 3) as usize,
            CostModel::Published,
        );
        for n in &mut inst.cluster.nodes {
            n.capacity = 30.0;
            n.memory = 1 << 40;
        }
        let p = Problem::new(&inst).expect("valid");
        let opt = total(
            &p,
            &exact(&p, 10_000_000).expect("feasible"),
            CostModel::Published,
        );
        let greedy = solve(&inst, StreamAlgorithm::JstshGreedy, 0).expect("feasible");
        assert!(
            (greedy.objective.published_cost - opt).abs() <= 1e-9 * opt,
            "seed {seed}"
        );
    }
}

#[test]
fn json_round_trip_and_validation() {
    let inst = random_instance(7, 4, 5, CostModel::LoadAware);
    let text = serde_json::to_string(&inst).expect("serialises");
    let back: StreamInstance = serde_json::from_str(&text).expect("parses");
    // Floats may move by one ulp through JSON; the decision must not.
    let (a, b) = (
        solve(&inst, StreamAlgorithm::Jstsh, 0),
        solve(&back, StreamAlgorithm::Jstsh, 0),
    );
    assert_eq!(
        a.expect("feasible").assignments,
        b.expect("feasible").assignments
    );
    let mut bad = inst.clone();
    bad.streams[0].fps = -1.0;
    bad.cluster.links[0].bandwidth = 0.0;
    bad.streams[1].id = bad.streams[0].id.clone();
    let Err(SchedError::Invalid(problems)) = solve(&bad, StreamAlgorithm::Jstsh, 0) else {
        panic!("invalid instance accepted")
    };
    assert_eq!(problems.len(), 4, "{problems:?}"); // fps twice (finite/ > 0), bandwidth, duplicate id
    assert!(serde_json::from_str::<NodeId>("\"no spaces\"").is_err());
}

#[test]
fn direct_rates_are_taken_as_given_one_way_for_both_and_checked() {
    // a-b is slow, a-c and c-b fast: the widest path rates a-b at c's detour.
    let mut inst = random_instance(3, 3, 3, CostModel::LoadAware);
    let id = |i: usize| inst.cluster.nodes[i].id.clone();
    let (a, b, c) = (id(0), id(1), id(2));
    inst.cluster.links = vec![
        Link::new(a.clone(), b.clone(), 1e6),
        Link::new(a.clone(), c.clone(), 9e6),
        Link::new(c.clone(), b.clone(), 8e6),
    ];
    let widest = Problem::new(&inst).expect("valid");
    assert_eq!(
        widest.rate[0][1], 8e6,
        "the widest path goes round through c"
    );
    let mut rates = DirectRates::new();
    rates.entry(a.clone()).or_default().insert(b.clone(), 1e6);
    rates.entry(a.clone()).or_default().insert(c.clone(), 9e6);
    rates.entry(c.clone()).or_default().insert(a.clone(), 3e6);
    inst.rates = Some(rates);
    let direct = Problem::new(&inst).expect("valid");
    let inf = f64::INFINITY;
    assert_eq!(
        direct.rate,
        [[inf, 1e6, 9e6], [1e6, inf, 0.0], [3e6, 0.0, inf]],
        "as given; a -> b holds both ways; c -> a is its own; b-c given neither way is unreachable"
    );
    // The JSON field round-trips.
    let back: StreamInstance =
        serde_json::from_str(&serde_json::to_string(&inst).expect("serialises")).expect("parses");
    assert_eq!(back.rates, inst.rates);
    // Every bad entry is named, all at once.
    let mut bad = inst.clone();
    let r = bad.rates.as_mut().expect("set");
    r.entry(a.clone()).or_default().insert(a.clone(), 5e6);
    r.entry(b.clone()).or_default().insert(c.clone(), -1.0);
    r.entry(b.clone())
        .or_default()
        .insert(NodeId::new("ghost").expect("id"), 5e6);
    r.entry(NodeId::new("nowhere").expect("id"))
        .or_default()
        .insert(a.clone(), 5e6);
    let Err(SchedError::Invalid(problems)) = Problem::new(&bad) else {
        panic!("bad rates accepted")
    };
    let want = [
        format!("rates {a} -> {a}: a node's rate to itself is not a link"),
        format!("rates {b} -> {c}: -1 must be finite and >= 0"),
        format!("rates {b} -> ghost: unknown node ghost"),
        "rates: unknown node nowhere".to_string(),
    ];
    for w in &want {
        assert!(problems.contains(w), "{w:?} not in {problems:?}");
    }
    assert_eq!(problems.len(), want.len(), "{problems:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn every_plan_places_each_stream_once_within_memory(
        seed in 0u64..10_000, m in 2usize..7, k in 1usize..10, load_aware: bool,
    ) {
        let cost = if load_aware { CostModel::LoadAware } else { CostModel::Published };
        let inst = random_instance(seed, m, k, cost);
        let p = Problem::new(&inst).expect("valid");
        let greedy = solve(&inst, StreamAlgorithm::JstshGreedy, seed);
        for algo in [StreamAlgorithm::Jstsh, StreamAlgorithm::JstshGreedy, StreamAlgorithm::Nmno,
                     StreamAlgorithm::Wmno, StreamAlgorithm::Nmwo] {
            let Ok(plan) = solve(&inst, algo, seed) else { continue };
            prop_assert_eq!(plan.assignments.len(), k);
            for (a, s) in plan.assignments.iter().zip(&inst.streams) {
                prop_assert_eq!(&a.stream, &s.id);
            }
            let idx: Vec<(usize, usize)> = plan.assignments.iter()
                .map(|a| (p_index(&inst, &a.detect_node), p_index(&inst, &a.reid_node))).collect();
            prop_assert!(feasible(&p, &idx), "{:?} broke memory or reachability", algo);
            let loads = Loads::of(&p, &idx);
            for i in 0..p.m {
                prop_assert!(loads.memory(&p, i) <= p.mem[i]);
            }
            if matches!(algo, StreamAlgorithm::Nmno | StreamAlgorithm::Wmno) {
                prop_assert!(idx.iter().all(|(x, y)| x == y), "re-ID must stay local");
            }
            if algo == StreamAlgorithm::Jstsh {
                let g = greedy.as_ref().expect("jstsh succeeded, so did its greedy");
                prop_assert!(plan_cost(&plan, cost) <= plan_cost(g, cost) * (1.0 + 1e-9));
            }
        }
    }
}

fn p_index(inst: &StreamInstance, id: &NodeId) -> usize {
    inst.cluster
        .nodes
        .iter()
        .position(|n| &n.id == id)
        .expect("plan names a known node")
}

/// The local search's O(1) deltas (single moves, role exchanges) equal the
/// change of the recomputed objective, with the ingress links shared.
#[test]
fn move_deltas_match_the_recomputed_objective_with_a_shared_ingress() {
    let mut checked = 0;
    for seed in 0..40u64 {
        // Half of them with ingest work, which moves with detection.
        let make = if seed % 2 == 0 {
            random_shared_instance
        } else {
            with_ingest
        };
        let inst = make(
            seed,
            3 + (seed % 3) as usize,
            4 + (seed % 4) as usize,
            CostModel::LoadAware,
        );
        let p = Problem::new(&inst).expect("valid");
        let Ok(a) = greedy::greedy(&p) else { continue };
        let mut s = search::Search::new(&p, a.clone(), u64::MAX);
        let before = total(&p, &a, p.cost);
        assert!((s.cost() - before).abs() <= 1e-9 * before.abs().max(1.0));
        for k in 0..p.k() {
            for i in 0..p.m {
                for j in 0..p.m {
                    let Some(d) = s.delta(&[(k, a[k], (i, j))]) else {
                        continue;
                    };
                    let mut b = a.clone();
                    b[k] = (i, j);
                    let want = total(&p, &b, p.cost) - before;
                    assert!(
                        (d - want).abs() <= 1e-7 * before.abs().max(1.0),
                        "seed {seed} stream {k} to ({i}, {j}): delta {d}, recomputed {want}"
                    );
                    checked += 1;
                }
            }
            // The restricted search's own estimate of its best move.
            let all: Vec<usize> = (0..p.m).collect();
            let mut best = (f64::INFINITY, None);
            s.best_restricted(k, &all, &mut best);
            if let (d, Some(to)) = best {
                let mut b = a.clone();
                b[k] = to;
                let want = total(&p, &b, p.cost) - before;
                assert!(
                    (d - want).abs() <= 1e-7 * before.abs().max(1.0),
                    "seed {seed} stream {k} best restricted move to {to:?}: {d}, recomputed {want}"
                );
            }
        }
        for i in 0..p.m {
            for j in i + 1..p.m {
                let Some(d) = s.role_delta(i, j) else {
                    continue;
                };
                let b: Vec<(usize, usize)> = a
                    .iter()
                    .map(|&(x, y)| (search::swap(x, i, j), search::swap(y, i, j)))
                    .collect();
                let want = total(&p, &b, p.cost) - before;
                assert!(
                    (d - want).abs() <= 1e-7 * before.abs().max(1.0),
                    "seed {seed} roles ({i}, {j}): delta {d}, recomputed {want}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

/// Ingest work loads a node without being a stage time: two streams'
/// worth of it raise the node's utilisation and so inflate the detection's
/// stage time, but the plan costs less than the same utilisation of
/// detection work.
#[test]
fn ingest_work_loads_the_node_without_being_a_stage_time() {
    let node = NodeId::new("n").expect("id");
    let inst = |detect: f64, ingest: f64| StreamInstance {
        cluster: Cluster {
            nodes: vec![crate::Node {
                id: node.clone(),
                capacity: 25.0,
                memory: 1 << 34,
            }],
            links: Vec::new(),
        },
        models: ModelMemory {
            detector: 1 << 30,
            reid: 1 << 30,
        },
        streams: (0..2)
            .map(|k| CameraStream {
                id: format!("cam{k}"),
                fps: 10.0,
                frame_bytes: 1.0,
                camera_rates: [(node.clone(), 1e9)].into_iter().collect(),
                detect_work: detect,
                ingest_work: ingest,
                reid_work: 0.0,
                crop_bytes: 0.0,
            })
            .collect(),
        cost: CostModel::LoadAware,
        rates: None,
        shared_ingress: false,
    };
    let objective = |detect, ingest| {
        let p = Problem::new(&inst(detect, ingest)).expect("valid");
        Objective::of(&p, &[(0, 0), (0, 0)])
    };
    let (bare, alongside, in_path) = (
        objective(0.5, 0.0),
        objective(0.5, 0.2),
        objective(0.7, 0.0),
    );
    assert!((bare.max_utilisation - 0.4).abs() < 1e-9, "{bare:?}");
    assert!(
        (alongside.max_utilisation - 0.56).abs() < 1e-9,
        "{alongside:?}"
    );
    assert!((in_path.max_utilisation - 0.56).abs() < 1e-9, "{in_path:?}");
    // Per frame: 0.5 / 25 s inflated by 1 / (1 - U), transfers aside.
    let stage = |work: f64, u: f64| work / 25.0 / (1.0 - u);
    assert!(
        (bare.mean_latency - stage(0.5, 0.4)).abs() < 1e-6,
        "{bare:?}"
    );
    assert!(
        (alongside.mean_latency - stage(0.5, 0.56)).abs() < 1e-6,
        "{alongside:?}"
    );
    assert!(
        (in_path.mean_latency - stage(0.7, 0.56)).abs() < 1e-6,
        "{in_path:?}"
    );
    // Without re-ID work the whole latency is the frame's.
    for o in [&bare, &alongside, &in_path] {
        assert!(
            (o.mean_frame_latency - o.mean_latency).abs() < 1e-12,
            "{o:?}"
        );
    }
    // The published cost counts stage times only.
    assert_eq!(alongside.published_cost, bare.published_cost);
    // Refused when negative, named.
    let mut bad = inst(0.5, 0.0);
    bad.streams[1].ingest_work = -0.1;
    let e = Problem::new(&bad).expect_err("negative").to_string();
    assert!(e.contains("cam1") && e.contains("ingest_work"), "{e}");
}

/// Four 2.2 Mbit/s cameras, a fast processor behind a 5 Mbit/s link and a
/// slower one behind 50 Mbit/s (the testbed's DCEI finding). Each camera
/// alone reaches the fast node in time, so the per-stream model puts at
/// least three there, more than its link carries. With the link shared,
/// JSTSH keeps within it and every camera runs at its full rate.
#[test]
fn a_shared_ingress_keeps_cameras_within_a_slow_link() {
    let id = |s: &str| NodeId::new(s).expect("id");
    let mbit = |r: f64| r * 1e6 / 8.0;
    let node = |n: &str, capacity: f64| crate::Node {
        id: id(n),
        capacity,
        memory: 8 << 30,
    };
    let stream = |k: usize| CameraStream {
        id: format!("cam{k}"),
        fps: 10.0,
        frame_bytes: mbit(2.2) / 10.0,
        camera_rates: [(id("fast"), mbit(5.0)), (id("wide"), mbit(50.0))]
            .into_iter()
            .collect(),
        detect_work: 1.0,
        ingest_work: 0.0,
        reid_work: 0.1,
        crop_bytes: 1000.0,
    };
    let inst = |shared| StreamInstance {
        cluster: Cluster {
            nodes: vec![node("fast", 100.0), node("wide", 30.0)],
            links: Vec::new(),
        },
        rates: Some(
            [(id("fast"), [(id("wide"), mbit(50.0))].into_iter().collect())]
                .into_iter()
                .collect(),
        ),
        models: ModelMemory {
            detector: 1 << 20,
            reid: 1 << 20,
        },
        streams: (0..4).map(stream).collect(),
        cost: CostModel::LoadAware,
        shared_ingress: shared,
    };
    let shared = Problem::new(&inst(true)).expect("valid");
    let alone = Problem::new(&inst(false)).expect("valid");
    let on_fast = |a: &[(usize, usize)]| a.iter().filter(|(x, _)| *x == 0).count();
    let old = solve_indexed(&alone, StreamAlgorithm::Jstsh, 1).expect("plan");
    assert!(on_fast(&old) >= 3, "{old:?}");
    let seen = eval::Objective::of(&shared, &old);
    assert!(seen.max_utilisation > 1.0, "{seen:?}");
    assert!(seen.mean_fps < 9.0, "{seen:?}");
    let new = solve_indexed(&shared, StreamAlgorithm::Jstsh, 1).expect("plan");
    assert!(on_fast(&new) <= 2, "{new:?}");
    let got = eval::Objective::of(&shared, &new);
    assert!(got.max_utilisation <= 1.0, "{got:?}");
    assert!((got.mean_fps - 10.0).abs() < 1e-9, "{got:?}");
    // The greedy alone (stage 1 with the link's load) keeps within it too.
    let g = greedy::greedy(&shared).expect("plan");
    assert!(on_fast(&g) <= 2, "{g:?}");
}

/// The frame's part of the latency is its transfer (inflated by a shared
/// link's load) and its detection stage; re-ID and the crops' hop come
/// after the result and make the rest of the mean latency.
#[test]
fn a_frames_latency_to_its_result_leaves_out_re_id_and_the_crops_hop() {
    let (a, b) = (NodeId::new("a").expect("id"), NodeId::new("b").expect("id"));
    let node = |id: &NodeId| crate::Node {
        id: id.clone(),
        capacity: 40.0,
        memory: 1 << 34,
    };
    let inst = StreamInstance {
        cluster: Cluster {
            nodes: vec![node(&a), node(&b)],
            links: Vec::new(),
        },
        models: ModelMemory {
            detector: 1 << 30,
            reid: 1 << 30,
        },
        streams: vec![CameraStream {
            id: "cam".into(),
            fps: 10.0,
            // 0.01 s to either node at 1e6 bytes/s.
            frame_bytes: 10_000.0,
            camera_rates: [(a.clone(), 1e6), (b.clone(), 1e6)].into_iter().collect(),
            detect_work: 1.0,
            ingest_work: 0.0,
            reid_work: 0.4,
            crop_bytes: 5_000.0,
        }],
        cost: CostModel::LoadAware,
        rates: Some([(a.clone(), [(b.clone(), 1e6)].into_iter().collect())].into()),
        shared_ingress: true,
    };
    let p = Problem::new(&inst).expect("valid");
    let o = Objective::of(&p, &[(0, 1)]);
    // Node a: U = 10 * 1 / 40; its link: 10 frames/s * 0.01 s.
    let frame = 0.01 / (1.0 - 0.1) + 1.0 / 40.0 / (1.0 - 0.25);
    assert!((o.mean_frame_latency - frame).abs() < 1e-9, "{o:?}");
    // Node b re-identifies: U = 10 * 0.4 / 40; the crops' hop 5000 / 1e6 s.
    let rest = 0.4 / 40.0 / (1.0 - 0.1) + 0.005;
    assert!((o.mean_latency - frame - rest).abs() < 1e-9, "{o:?}");
}
