//! The measured part of `RESULTS.md`: solver run times at the sizes
//! ([`crate::timing`]), JSTSH's gap to the exact optimum on small instances and
//! its improvement over the greedy at 1000 x 100. Everything is recomputed by
//! `vidar-sim all`.

use std::fmt::Write as _;

use anyhow::Context;
use vidar_scheduler::jstsh::{self, CostModel, Problem, StreamAlgorithm};
use vidar_scheduler::sim::{bench, dcei, mean};

use crate::timing;

/// Gap statistics of one algorithm: (mean, worst, instances above 2 %).
fn stats(g: &[f64]) -> (f64, f64, usize) {
    (
        mean(g),
        g.iter().copied().fold(0.0, f64::max),
        g.iter().filter(|&&x| x > 0.02).count(),
    )
}

fn optimality(seeds: u64, md: &mut String) -> anyhow::Result<()> {
    writeln!(
        md,
        "**JSTSH gap to the exact optimum** (branch and bound) on {seeds} random instances of 3-4 nodes \
         and 3-5 streams per cost model (`dcei::random_instance`, seeds 0..{seeds}; tight memory): \
         mean gap, worst gap, instances above the 2 % goal. *Local search alone* is the greedy plus the \
         iterated local search without JSTSH's exact polish (which runs on instances of at most 2^22 \
         assignments, i.e. all of these).\n\n\
         | cost | greedy | local search alone | JSTSH |\n|---|---|---|---|"
    )?;
    for cost in [CostModel::Published, CostModel::LoadAware] {
        let mut g: [Vec<f64>; 3] = Default::default();
        for seed in 0..seeds {
            let inst =
                dcei::random_instance(seed, 3 + (seed % 2) as usize, 3 + (seed % 3) as usize, cost);
            let p = Problem::new(&inst).context("generated instances are valid")?;
            let Ok(opt) = jstsh::exact(&p, 50_000_000) else {
                continue; // no feasible plan
            };
            let opt = cost_of(&p, &opt, cost);
            let plans = [
                jstsh::solve_indexed(&p, StreamAlgorithm::JstshGreedy, seed)?,
                jstsh::local_search_only(&p, 1.0)?,
                jstsh::solve_indexed(&p, StreamAlgorithm::Jstsh, seed)?,
            ];
            for (a, out) in plans.iter().zip(&mut g) {
                out.push(cost_of(&p, a, cost) / opt - 1.0);
            }
        }
        writeln!(md, "| {cost:?} | {} |", cells(&g).join(" | "))?;
    }
    md.push('\n');
    Ok(())
}

/// The cost `cost` of assignment `a` on `p`.
fn cost_of(p: &Problem, a: &[(usize, usize)], cost: CostModel) -> f64 {
    let o = jstsh::Objective::of(p, a);
    match cost {
        CostModel::Published => o.published_cost,
        CostModel::LoadAware => o.load_aware_cost,
    }
}

/// JSTSH when the rates between nodes are direct end-to-end rates: planning
/// with them read as links (the widest path, relays assumed) against planning
/// with them as given (`rates`), both costed under the direct rates.
fn rate_model(seeds: u64, md: &mut String) -> anyhow::Result<()> {
    writeln!(
        md,
        "**JSTSH with direct rates** on {seeds} random instances of 3-4 nodes and 3-5 streams per cost \
         model (`dcei::random_direct_instance`, seeds 0..{seeds}): the rate between two nodes is what \
         they really get end to end (the running system never relays crops through a third node). \
         *Read as links* is the plan JSTSH picks when the same numbers are links and `R_ij` is the \
         widest path over them (the model before the instance had `rates`); *given as rates* is \
         JSTSH on the instance's `rates`, with the local search alone (no exact polish) beside it. \
         All are costed under the direct rates against the exact optimum: mean gap, worst gap, \
         instances above 2 %.\n\n\
         | cost | JSTSH, rates read as links | local search alone, given as rates | JSTSH, given as rates |\n\
         |---|---|---|---|"
    )?;
    for cost in [CostModel::Published, CostModel::LoadAware] {
        let mut g: [Vec<f64>; 3] = Default::default();
        for seed in 0..seeds {
            let (m, k) = (3 + (seed % 2) as usize, 3 + (seed % 3) as usize);
            let p = Problem::new(&dcei::random_direct_instance(seed, m, k, cost))
                .context("generated instances are valid")?;
            let Ok(opt) = jstsh::exact(&p, 50_000_000) else {
                continue; // no feasible plan
            };
            let links = Problem::new(&dcei::random_instance(seed, m, k, cost))
                .context("generated instances are valid")?;
            let plans = [
                jstsh::solve_indexed(&links, StreamAlgorithm::Jstsh, seed)?,
                jstsh::local_search_only(&p, 1.0)?,
                jstsh::solve_indexed(&p, StreamAlgorithm::Jstsh, seed)?,
            ];
            let opt = cost_of(&p, &opt, cost);
            for (a, out) in plans.iter().zip(&mut g) {
                out.push(cost_of(&p, a, cost) / opt - 1.0);
            }
        }
        writeln!(md, "| {cost:?} | {} |", cells(&g).join(" | "))?;
    }
    md.push('\n');
    Ok(())
}

/// "mean % / worst % / n above 2 % of N" per list of gaps.
fn cells(g: &[Vec<f64>]) -> Vec<String> {
    g.iter()
        .map(|v| {
            let (m, w, n) = stats(v);
            format!(
                "{:.3} % / {:.2} % / {n} of {}",
                100.0 * m,
                100.0 * w,
                v.len()
            )
        })
        .collect()
}

/// JSTSH's gap on mid-size instances (no exact polish there: more than 2^22
/// assignments), where the branch and bound still closes for most seeds.
fn mid_size(seeds: u64, md: &mut String) -> anyhow::Result<()> {
    writeln!(
        md,
        "**JSTSH gap on mid-size instances** (load-aware cost, seeds 0..{seeds}, instances where \
         the branch and bound closes within 5 M nodes; JSTSH runs without its exact polish here):\n\n\
         | nodes x streams | solved | mean gap | worst gap | above 2 % |\n|---|---|---|---|---|"
    )?;
    for (m, k) in [(5, 6), (6, 6), (5, 8)] {
        let mut gaps = Vec::new();
        for seed in 0..seeds {
            let inst = dcei::random_instance(seed, m, k, CostModel::LoadAware);
            let p = Problem::new(&inst).context("generated instances are valid")?;
            let Ok(opt) = jstsh::exact(&p, 5_000_000) else {
                continue; // infeasible or too large for the bound
            };
            let a = jstsh::solve_indexed(&p, StreamAlgorithm::Jstsh, seed)?;
            let cost = |a: &[(usize, usize)]| jstsh::Objective::of(&p, a).load_aware_cost;
            gaps.push(cost(&a) / cost(&opt) - 1.0);
        }
        let (mean, worst, over) = stats(&gaps);
        writeln!(
            md,
            "| {m} x {k} | {} of {seeds} | {:.3} % | {:.2} % | {over} |",
            gaps.len(),
            100.0 * mean,
            100.0 * worst
        )?;
    }
    md.push('\n');
    Ok(())
}

fn large(md: &mut String) -> anyhow::Result<()> {
    let inst = bench::streams(1000, 100);
    let p = Problem::new(&inst).context("benchmark instance is valid")?;
    let cost = |a: &[(usize, usize)]| jstsh::Objective::of(&p, a).load_aware_cost;
    let greedy = cost(&jstsh::solve_indexed(&p, StreamAlgorithm::JstshGreedy, 0)?);
    let ours = cost(&jstsh::solve_indexed(&p, StreamAlgorithm::Jstsh, 0)?);
    let long = cost(&jstsh::local_search_only(&p, 20.0)?);
    writeln!(
        md,
        "**JSTSH at 1000 streams x 100 nodes** (load-aware cost, sum of per-frame latencies; \
         work budget {} move evaluations): greedy {greedy:.3} s, JSTSH {ours:.3} s ({:.1} % below \
         the greedy), the same search on 20x the budget {long:.3} s (JSTSH is {:.2} % above it).\n",
        jstsh::work_budget(&p),
        100.0 * (1.0 - ours / greedy),
        100.0 * (ours / long - 1.0)
    )?;
    Ok(())
}

/// The optimality tables alone (`vidar-sim optimality`).
pub fn optimality_tables(seeds: u64) -> anyhow::Result<String> {
    let mut md = String::new();
    optimality(seeds, &mut md)?;
    rate_model(seeds, &mut md)?;
    Ok(md)
}

/// Appends the measured section.
pub fn section(quick: bool, md: &mut String) -> anyhow::Result<()> {
    md.push_str("## Measured overheads and optimality\n\n");
    writeln!(
        md,
        "Wall-clock times of this run of `vidar-sim all` (release build, {} hardware threads, {}; \
         median of repeated runs; other work on the machine inflates them). `vidar-sim bench` prints \
         the same table; `cargo bench -p vidar-scheduler` runs criterion on the same instances.\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        std::env::consts::ARCH
    )?;
    md.push_str(&timing::run(quick)?);
    md.push('\n');
    large(md)?;
    optimality(if quick { 60 } else { 300 }, md)?;
    rate_model(if quick { 60 } else { 300 }, md)?;
    mid_size(if quick { 10 } else { 40 }, md)?;
    Ok(())
}
