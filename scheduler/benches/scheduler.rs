//! Criterion benchmarks at the sizes: JSTSH 1000 streams x 100 nodes,
//! OTFA 70 nodes x 50 jobs, EdgeSplit 100 devices.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vidar_scheduler::edgesplit::{plan, SplitAlgorithm};
use vidar_scheduler::ents::{solve as ents_solve, JobInstance, Policy};
use vidar_scheduler::jstsh::{solve, CostModel, StreamAlgorithm};
use vidar_scheduler::sim::{dcei, ents, split};

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    g.sample_size(10);
    let mut inst = dcei::random_instance(1, 100, 1000, CostModel::LoadAware);
    for n in &mut inst.cluster.nodes {
        n.capacity *= 10.0;
        n.memory = 1 << 34;
    }
    g.bench_function("jstsh_1000_streams_100_nodes", |b| {
        b.iter(|| solve(&inst, StreamAlgorithm::Jstsh, 0))
    });
    g.bench_function("jstsh_greedy_1000_streams_100_nodes", |b| {
        b.iter(|| solve(&inst, StreamAlgorithm::JstshGreedy, 0))
    });
    let cluster = ents::random_cluster(1, 70, 10.0);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let jobs = (0..50)
        .map(|j| ents::attribute_job(j, cluster.nodes[rng.gen_range(0..70)].id.clone()))
        .collect();
    let jobs = JobInstance {
        cluster,
        jobs,
        k_paths: 3,
    };
    g.bench_function("otfa_70_nodes_50_jobs", |b| {
        b.iter(|| ents_solve(&jobs, Policy::Otfa))
    });
    let split = split::instance(1, "resnet50", 100, 30.0, 40).expect("known model");
    g.bench_function("edgesplit_100_devices", |b| {
        b.iter(|| plan(&split, SplitAlgorithm::Edgesplit))
    });
    g.finish();
}

criterion_group!(scheduler, benches);
criterion_main!(scheduler);
