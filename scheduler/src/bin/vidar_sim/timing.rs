//! `bench`: wall-clock times of the solvers at the sizes, measured here
//! (the library has no clocks) and written into `RESULTS.md` by `all`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use vidar_scheduler::edgesplit::{self, SplitAlgorithm};
use vidar_scheduler::ents::{self, Policy};
use vidar_scheduler::jstsh::{self, Problem, StreamAlgorithm};
use vidar_scheduler::sim::{bench, split};

/// Median and minimum of repeated runs of `f`: at least `min_reps` runs and
/// about `target` of wall time, at most 200 runs.
fn time<T>(min_reps: usize, target: Duration, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut v = Vec::new();
    let start = Instant::now();
    while v.len() < min_reps || (start.elapsed() < target && v.len() < 200) {
        let t = Instant::now();
        black_box(f());
        v.push(t.elapsed());
    }
    v.sort();
    (v[v.len() / 2], v[0])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One measured case: name, what it includes, goal in ms (if any), published figure.
struct Case {
    name: String,
    median: Duration,
    min: Duration,
    goal_ms: Option<f64>,
    published: &'static str,
}

/// Times every case; returns a markdown table (also printed by `vidar-sim bench`).
pub fn run(quick: bool) -> anyhow::Result<String> {
    let (reps, target) = if quick {
        (3, Duration::from_millis(200))
    } else {
        (7, Duration::from_secs(2))
    };
    let mut cases = Vec::new();
    let inst = bench::streams(1000, 100);
    let p = Problem::new(&inst).context("benchmark instance is valid")?;
    let (median, min) = time(reps, target, || Problem::new(&inst));
    cases.push(Case {
        name: "JSTSH indexing (`Problem::new`, widest paths), 1000 streams x 100 nodes".into(),
        median,
        min,
        goal_ms: None,
        published: "",
    });
    for (algo, label) in [
        (StreamAlgorithm::JstshGreedy, "JSTSH greedy only"),
        (StreamAlgorithm::Jstsh, "JSTSH greedy + local search"),
    ] {
        let (median, min) = time(reps, target, || jstsh::solve_indexed(&p, algo, 0));
        cases.push(Case {
            name: format!("{label}, 1000 streams x 100 nodes (indexed)"),
            median,
            min,
            goal_ms: None,
            published: "",
        });
    }
    let (median, min) = time(reps, target, || {
        jstsh::solve(&inst, StreamAlgorithm::Jstsh, 0)
    });
    cases.push(Case {
        name: "JSTSH `solve` end to end (JSON types in, plan out), 1000 x 100".into(),
        median,
        min,
        goal_ms: Some(50.0),
        published: "",
    });
    let jobs = bench::jobs(70, 50);
    for (policy, goal) in [
        (Policy::Otfa, Some(100.0)),
        (Policy::Otfs, None),
        (Policy::Tp, None),
    ] {
        let (median, min) = time(reps, target, || ents::solve(&jobs, policy));
        cases.push(Case {
            name: format!("{} round, 70 nodes x 50 jobs", policy.name().to_uppercase()),
            median,
            min,
            goal_ms: goal,
            published: if policy == Policy::Otfa {
                "~2.5 s waiting at 70 nodes"
            } else {
                ""
            },
        });
    }
    let sp = split::instance(1, "resnet50", 100, 30.0, 40).context("known model")?;
    let (median, min) = time(reps, target, || {
        edgesplit::plan(&sp, SplitAlgorithm::Edgesplit)
    });
    cases.push(Case {
        name: "EdgeSplit planning, 100 devices (ResNet50)".into(),
        median,
        min,
        goal_ms: Some(10.0),
        published: "< 3 s",
    });
    let mut md =
        String::from("| case | median ms | min ms | goal | published |\n|---|---|---|---|---|\n");
    for c in &cases {
        let goal = match c.goal_ms {
            Some(g) if ms(c.median) < g => format!("< {g} ms: met"),
            Some(g) => format!("< {g} ms: **missed**"),
            None => String::new(),
        };
        writeln!(
            md,
            "| {} | {:.2} | {:.2} | {goal} | {} |",
            c.name,
            ms(c.median),
            ms(c.min),
            c.published
        )?;
    }
    Ok(md)
}
