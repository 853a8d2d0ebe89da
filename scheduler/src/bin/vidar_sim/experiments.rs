//! `all`: the published experiments (ENTS Fig. 3.11, DCEI figures, EdgeSplit
//! tables and sweeps) over several seeds; CSV + SVG under `out`, and
//! `RESULTS.md` in `out`'s parent folder.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vidar_scheduler::edgesplit::splitpipe::{self, PipeConfig, PipePolicy};
use vidar_scheduler::edgesplit::{self, SplitAlgorithm};
use vidar_scheduler::ents::Policy;
use vidar_scheduler::jstsh::{self, CostModel, StreamAlgorithm};
use vidar_scheduler::sim::{dcei, ents as ents_sim, mean, split};

use crate::plot::{line_chart, Series};

/// Values per algorithm per x.
type Grid = Vec<Vec<f64>>;

/// Writes `vals[name][x]` as CSV + SVG and returns a markdown table.
#[allow(clippy::too_many_arguments)] // a one-off report helper, not an API
fn table(
    out: &Path,
    file: &str,
    title: &str,
    xl: &str,
    yl: &str,
    xs: &[f64],
    names: &[&str],
    vals: &[Vec<f64>],
) -> anyhow::Result<String> {
    let mut csv = format!("{xl},{}\n", names.join(","));
    let mut md = format!("**{title}** ([csv](results/{file}.csv), ![{title}](results/{file}.svg))\n\n| {xl} | {} |\n|---|{}\n", names.join(" | "), "---|".repeat(names.len()));
    for (i, x) in xs.iter().enumerate() {
        let row: Vec<String> = vals.iter().map(|v| format!("{:.3}", v[i])).collect();
        writeln!(csv, "{x},{}", row.join(","))?;
        writeln!(md, "| {x} | {} |", row.join(" | "))?;
    }
    md.push('\n');
    fs::write(out.join(format!("{file}.csv")), csv)
        .with_context(|| format!("writing {file}.csv"))?;
    let series: Vec<Series> = names
        .iter()
        .zip(vals)
        .map(|(n, v)| {
            (
                n.to_string(),
                xs.iter().copied().zip(v.iter().copied()).collect(),
            )
        })
        .collect();
    line_chart(&out.join(format!("{file}.svg")), title, xl, yl, &series)?;
    Ok(md)
}

fn ents_section(out: &Path, quick: bool, md: &mut String) -> anyhow::Result<()> {
    let seeds: u64 = if quick { 1 } else { 3 };
    let names: Vec<&str> = Policy::ALL.iter().map(|p| p.name()).collect();
    let base = ents_sim::EntsSetup::default();
    // (throughput, wait) per policy per x, mean over seeds.
    let run = |setups: &[ents_sim::EntsSetup]| -> anyhow::Result<(Grid, Grid)> {
        let mut tp = vec![vec![0.0; setups.len()]; Policy::ALL.len()];
        let mut wait = tp.clone();
        for (pi, &policy) in Policy::ALL.iter().enumerate() {
            for (xi, s) in setups.iter().enumerate() {
                let mut t = Vec::new();
                let mut w = Vec::new();
                for seed in 0..seeds {
                    let o = ents_sim::simulate(seed, s, policy)?;
                    t.push(o.mean_throughput);
                    w.push(o.mean_wait);
                }
                tp[pi][xi] = mean(&t);
                wait[pi][xi] = mean(&w);
            }
        }
        Ok((tp, wait))
    };
    md.push_str("## ENTS: streaming job DAGs (Fig. 3.11)\n\n");
    let nodes: Vec<f64> = if quick {
        vec![10.0, 30.0, 70.0]
    } else {
        vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
    };
    for (bw, a, c) in [(1.0, "a", "c"), (10.0, "b", "")] {
        let setups: Vec<_> = nodes
            .iter()
            .map(|&n| ents_sim::EntsSetup {
                nodes: n as usize,
                bandwidth_mbit: bw,
                ..base
            })
            .collect();
        let (tp, wait) = run(&setups)?;
        md.push_str(&table(
            out,
            &format!("ents_{a}_throughput_vs_nodes_{bw}mbit"),
            &format!("Fig 3.11{a}: throughput vs nodes, {bw} Mbit/s"),
            "nodes",
            "items/s per job",
            &nodes,
            &names,
            &tp,
        )?);
        if !c.is_empty() {
            md.push_str(&table(
                out,
                &format!("ents_{c}_wait_vs_nodes"),
                &format!("Fig 3.11{c}: waiting time vs nodes, {bw} Mbit/s"),
                "nodes",
                "seconds",
                &nodes,
                &names,
                &wait,
            )?);
        }
    }
    let jobs: Vec<f64> = if quick {
        vec![10.0, 50.0]
    } else {
        vec![10.0, 20.0, 30.0, 40.0, 50.0]
    };
    let setups: Vec<_> = jobs
        .iter()
        .map(|&j| ents_sim::EntsSetup {
            jobs: j as usize,
            ..base
        })
        .collect();
    let (tp, wait) = run(&setups)?;
    md.push_str(&table(
        out,
        "ents_d_throughput_vs_jobs",
        "Fig 3.11d: throughput vs jobs, 30 nodes, 1 Mbit/s",
        "jobs",
        "items/s per job",
        &jobs,
        &names,
        &tp,
    )?);
    md.push_str(&table(
        out,
        "ents_e_wait_vs_jobs",
        "Fig 3.11e: waiting time vs jobs, 30 nodes, 1 Mbit/s",
        "jobs",
        "seconds",
        &jobs,
        &names,
        &wait,
    )?);
    let bws: Vec<f64> = if quick {
        vec![1.0, 10.0]
    } else {
        vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    };
    let setups: Vec<_> = bws
        .iter()
        .map(|&b| ents_sim::EntsSetup {
            bandwidth_mbit: b,
            ..base
        })
        .collect();
    let (tp, _) = run(&setups)?;
    md.push_str(&table(
        out,
        "ents_f_throughput_vs_bandwidth",
        "Fig 3.11f: throughput vs bandwidth, 30 nodes",
        "Mbit/s",
        "items/s per job",
        &bws,
        &names,
        &tp,
    )?);
    Ok(())
}

const DCEI_ALGOS: [StreamAlgorithm; 4] = [
    StreamAlgorithm::Jstsh,
    StreamAlgorithm::Nmwo,
    StreamAlgorithm::Wmno,
    StreamAlgorithm::Nmno,
];

/// Mean (fps, latency) of each DCEI algorithm over seeds for instances from `make`.
fn dcei_point(
    seeds: u64,
    make: &dyn Fn(u64) -> jstsh::StreamInstance,
) -> anyhow::Result<Vec<(f64, f64)>> {
    DCEI_ALGOS
        .iter()
        .map(|&algo| {
            let (mut f, mut l) = (Vec::new(), Vec::new());
            for seed in 0..seeds {
                let plan = jstsh::solve(&make(seed), algo, seed)?;
                f.push(plan.objective.mean_fps);
                l.push(plan.objective.mean_latency * 1e3);
            }
            Ok((mean(&f), mean(&l)))
        })
        .collect()
}

fn people(rng: &mut ChaCha8Rng, k: usize) -> Vec<f64> {
    (0..k).map(|_| rng.gen_range(2.0..10.0)).collect()
}

fn dcei_section(out: &Path, quick: bool, md: &mut String) -> anyhow::Result<()> {
    let seeds: u64 = if quick { 2 } else { 10 };
    let names = ["wmwo (jstsh)", "nmwo", "wmno", "nmno"];
    md.push_str("## DCEI: joint stream mapping (JSTSH)\n\nThroughput and latency under the load-aware model; every algorithm minimises or ignores the load-aware cost.\n\n");
    let devs = [3.0, 4.0, 5.0, 6.0, 7.0];
    let pts: Vec<Vec<(f64, f64)>> = devs
        .iter()
        .map(|&d| {
            dcei_point(seeds, &|s| {
                let mut rng = ChaCha8Rng::seed_from_u64(s);
                dcei::testbed(
                    s,
                    d as usize,
                    &people(&mut rng, 5),
                    20.0,
                    CostModel::LoadAware,
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let fps: Vec<Vec<f64>> = (0..4)
        .map(|a| pts.iter().map(|p| p[a].0).collect())
        .collect();
    md.push_str(&table(
        out,
        "dcei_throughput_vs_devices",
        "DCEI: throughput vs devices, 5 streams, 20 Mbit/s",
        "devices",
        "fps per stream",
        &devs,
        &names,
        &fps,
    )?);
    let bws = [5.0, 10.0, 20.0, 30.0];
    let pts: Vec<Vec<(f64, f64)>> = bws
        .iter()
        .map(|&b| {
            dcei_point(seeds, &|s| {
                let mut rng = ChaCha8Rng::seed_from_u64(s);
                dcei::testbed(
                    s,
                    5,
                    &people(&mut rng, 4)
                        .iter()
                        .map(|p| p * 1.5)
                        .collect::<Vec<_>>(),
                    b,
                    CostModel::LoadAware,
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let fps: Vec<Vec<f64>> = (0..4)
        .map(|a| pts.iter().map(|p| p[a].0).collect())
        .collect();
    let lat: Vec<Vec<f64>> = (0..4)
        .map(|a| pts.iter().map(|p| p[a].1).collect())
        .collect();
    md.push_str(&table(
        out,
        "dcei_throughput_vs_bandwidth",
        "DCEI: throughput vs bandwidth, 4 streams, 5 devices",
        "Mbit/s",
        "fps per stream",
        &bws,
        &names,
        &fps,
    )?);
    md.push_str(&table(
        out,
        "dcei_latency_vs_bandwidth",
        "DCEI: latency vs bandwidth, 4 streams, 5 devices",
        "Mbit/s",
        "ms per frame",
        &bws,
        &names,
        &lat,
    )?);
    // 30 minutes, re-planned every minute; people walk in from minute 10 to 20.
    let minutes: Vec<f64> = (0..30).map(f64::from).collect();
    let mut fps = vec![vec![0.0; minutes.len()]; 4];
    let mut lat = fps.clone();
    for (mi, &m) in minutes.iter().enumerate() {
        let crowd = if (10.0..20.0).contains(&m) { 12.0 } else { 0.0 };
        let pts = dcei_point(seeds, &|s| {
            let mut rng = ChaCha8Rng::seed_from_u64(s * 1000 + mi as u64);
            let ppl: Vec<f64> = people(&mut rng, 4).iter().map(|p| p + crowd).collect();
            dcei::testbed(s, 5, &ppl, 30.0, CostModel::LoadAware)
        })?;
        for a in 0..4 {
            fps[a][mi] = pts[a].0;
            lat[a][mi] = pts[a].1;
        }
    }
    md.push_str(&table(
        out,
        "dcei_dynamic_throughput",
        "DCEI: throughput over 30 min, crowd at 10-20 min",
        "minute",
        "fps per stream",
        &minutes,
        &names,
        &fps,
    )?);
    md.push_str(&table(
        out,
        "dcei_dynamic_latency",
        "DCEI: latency over 30 min, crowd at 10-20 min",
        "minute",
        "ms per frame",
        &minutes,
        &names,
        &lat,
    )?);
    Ok(())
}

fn split_section(out: &Path, quick: bool, md: &mut String) -> anyhow::Result<()> {
    let seeds: u64 = if quick { 2 } else { 10 };
    let batches = 40; // one local epoch of ~5000 samples at batch 128
    let speedup = |model: &str, m: usize, mbit: f64, algo: SplitAlgorithm| -> anyhow::Result<f64> {
        let mut v = Vec::new();
        for s in 0..seeds {
            let inst = split::instance(s, model, m, mbit, batches).context("known model")?;
            let vanilla = edgesplit::plan(&inst, SplitAlgorithm::VanillaFl)?.round_time;
            v.push(vanilla / edgesplit::plan(&inst, algo)?.round_time);
        }
        Ok(mean(&v))
    };
    md.push_str("## EdgeSplit: split federated training\n\n**Table 4.4: per-round speed-up over vanilla FL, 8 devices, 30 Mbit/s**\n\n| model | EdgeSplit | EdgeSplit-Fix | Adaptive FL | published EdgeSplit | published Fix |\n|---|---|---|---|---|---|\n");
    let published = [
        ("lenet", 1.76, 1.4),
        ("vgg16", 3.9, 2.5),
        ("resnet50", 5.5, 3.0),
        ("resnet101", 4.4, 1.9),
    ];
    let mut csv = String::from("model,edgesplit,edgesplit_fix,adaptive_fl\n");
    for (model, pe, pf) in published {
        let e = speedup(model, 8, 30.0, SplitAlgorithm::Edgesplit)?;
        let f = speedup(model, 8, 30.0, SplitAlgorithm::EdgesplitFix)?;
        let a = speedup(model, 8, 30.0, SplitAlgorithm::AdaptiveFl)?;
        writeln!(
            md,
            "| {model} | {e:.2}x | {f:.2}x | {a:.2}x | {pe}x | {pf}x |"
        )?;
        writeln!(csv, "{model},{e:.4},{f:.4},{a:.4}")?;
    }
    fs::write(out.join("split_table_4_4.csv"), csv)?;
    md.push('\n');
    splitpipe_table(out, seeds, batches, md)?;
    let names = ["edgesplit", "edgesplit_fix", "adaptive_fl"];
    let algos = [
        SplitAlgorithm::Edgesplit,
        SplitAlgorithm::EdgesplitFix,
        SplitAlgorithm::AdaptiveFl,
    ];
    let bws = [5.0, 10.0, 20.0, 30.0, 50.0];
    let vals: Vec<Vec<f64>> = algos
        .iter()
        .map(|&a| bws.iter().map(|&b| speedup("vgg16", 8, b, a)).collect())
        .collect::<anyhow::Result<_>>()?;
    md.push_str(&table(
        out,
        "split_speedup_vs_bandwidth",
        "EdgeSplit: VGG16 speed-up vs bandwidth, 8 devices",
        "Mbit/s",
        "x vanilla FL",
        &bws,
        &names,
        &vals,
    )?);
    let devs = [8.0, 16.0, 32.0, 48.0, 64.0];
    let vals: Vec<Vec<f64>> = algos
        .iter()
        .map(|&a| {
            devs.iter()
                .map(|&d| speedup("vgg16", d as usize, 30.0, a))
                .collect()
        })
        .collect::<anyhow::Result<_>>()?;
    md.push_str(&table(
        out,
        "split_speedup_vs_devices",
        "EdgeSplit: VGG16 speed-up vs devices, 30 Mbit/s",
        "devices",
        "x vanilla FL",
        &devs,
        &names,
        &vals,
    )?);
    Ok(())
}

/// Table 4.5: SplitPipe peak server memory and round time per policy, for the
/// EdgeSplit plans of the Table 4.4 setup.
fn splitpipe_table(out: &Path, seeds: u64, batches: u32, md: &mut String) -> anyhow::Result<()> {
    let cfg = PipeConfig::default();
    writeln!(
        md,
        "**Table 4.5: SplitPipe peak server memory (GB) and round time (x no pipelining), EdgeSplit plans, 8 devices, 30 Mbit/s, mean of {seeds} seeds** \
         ([csv](results/split_table_4_5.csv); server instance {:.0} MB, disk {:.0} MB/s)\n\n\
         | model | no pipelining | FIFO | BF | RW | BF saving | RW saving | FIFO round | BF round | RW round | RW swaps |\n\
         |---|---|---|---|---|---|---|---|---|---|---|",
        cfg.instance_bytes / 1e6,
        cfg.disk_bandwidth / 1e6
    )?;
    let mut csv = String::from("model,policy,peak_gb,round_s,swaps\n");
    for model in ["vgg16", "resnet50", "resnet101"] {
        let n = PipePolicy::ALL.len();
        let (mut peak, mut round, mut swaps) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for s in 0..seeds {
            let inst = split::instance(s, model, 8, 30.0, batches).context("known model")?;
            let plan = edgesplit::plan(&inst, SplitAlgorithm::Edgesplit)?;
            for (pi, &policy) in PipePolicy::ALL.iter().enumerate() {
                let o = splitpipe::simulate(&inst, &plan, policy, &cfg);
                peak[pi] += o.peak_memory / 1e9 / seeds as f64;
                round[pi] += o.round_time / seeds as f64;
                swaps[pi] += o.swaps as f64 / seeds as f64;
            }
        }
        for (pi, policy) in PipePolicy::ALL.iter().enumerate() {
            writeln!(
                csv,
                "{model},{},{:.4},{:.3},{:.1}",
                policy.name(),
                peak[pi],
                round[pi],
                swaps[pi]
            )?;
        }
        let saving = |i: usize| 100.0 * (1.0 - peak[i] / peak[0]);
        let ratio = |i: usize| round[i] / round[0];
        writeln!(
            md,
            "| {model} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} % | {:.1} % | {:.3}x | {:.3}x | {:.3}x | {:.0} |",
            peak[0], peak[1], peak[2], peak[3], saving(2), saving(3), ratio(1), ratio(2), ratio(3), swaps[3]
        )?;
    }
    md.push_str("\nPublished: BF 18.6-29.4 % less peak memory than no pipelining, RW far less, at a 7-14 % longer round.\n\n");
    fs::write(out.join("split_table_4_5.csv"), csv)?;
    Ok(())
}

/// Runs every experiment and writes the report.
pub fn run_all(out: &Path, quick: bool) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut md = String::from(
        "# Scheduler results\n\nRegenerated by `make sim` (`vidar-sim all --out scheduler/results`); \
         every number below is computed by the simulator from seeded instances. \
         The discussion at the end compares them with the published results.\n\n",
    );
    if quick {
        md.push_str("*Quick mode: fewer seeds and points.*\n\n");
    }
    dcei_section(out, quick, &mut md)?;
    ents_section(out, quick, &mut md)?;
    split_section(out, quick, &mut md)?;
    crate::measured::section(quick, &mut md)?;
    // Measured on the testbed, not simulated: written by hand, kept here
    // so that a regeneration keeps it.
    md.push_str(include_str!("testbed.md"));
    md.push_str(include_str!("discussion.md"));
    let report = out.parent().unwrap_or(Path::new(".")).join("RESULTS.md");
    fs::write(&report, md).with_context(|| format!("writing {}", report.display()))?;
    eprintln!("wrote {}", report.display());
    Ok(())
}
