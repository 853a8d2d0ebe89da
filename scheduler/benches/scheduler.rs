//! Criterion benchmarks at the sizes: JSTSH 1000 streams x 100 nodes,
//! OTFA 70 nodes x 50 jobs, EdgeSplit 100 devices. `vidar-sim bench` times the
//! same instances and writes the numbers into `RESULTS.md`.

use criterion::{criterion_group, criterion_main, Criterion};
use vidar_scheduler::edgesplit::{plan, SplitAlgorithm};
use vidar_scheduler::ents::{solve as ents_solve, Policy};
use vidar_scheduler::jstsh::{solve, StreamAlgorithm};
use vidar_scheduler::sim::{bench, split};

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("scheduler");
    g.sample_size(10);
    let inst = bench::streams(1000, 100);
    g.bench_function("jstsh_1000_streams_100_nodes", |b| {
        b.iter(|| solve(&inst, StreamAlgorithm::Jstsh, 0))
    });
    g.bench_function("jstsh_greedy_1000_streams_100_nodes", |b| {
        b.iter(|| solve(&inst, StreamAlgorithm::JstshGreedy, 0))
    });
    let jobs = bench::jobs(70, 50);
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
