//! Per-job fair bandwidth shares on fixed routes (water-filling).
//!
//! The figures measure the mean throughput (items/s) per job, and a job runs
//! at the pace of its slowest flow, so bandwidth is shared between *jobs*, not
//! flows: job `j` at rate `x_j` puts `D_jl * x_j` bytes/s on link `l`, with
//! `D_jl` the bytes per item of its flows crossing `l`. Every unfinished job
//! is raised together so that each gets the same bandwidth on its most
//! demanding link (`x_j = t / max_l D_jl` at level `t`); a job stops rising
//! when it reaches its cap (what its compute and source allow) or when a link
//! it crosses is full, and the others go on with what is left. On a single
//! link this is an equal split between the jobs that cross it (proportional
//! fairness); unlike an equal split between flows, nothing is held for a flow
//! that is limited elsewhere, and a job with many flows does not get more.

use super::jrba::FlowDemand;

/// A job's demand: its routed flows and the rate it can use at most.
pub struct JobDemand<'a> {
    /// Items/s the job can use (its compute and source rate).
    pub cap: f64,
    /// Its flows.
    pub flows: &'a [FlowDemand],
    /// Route per flow (link indices).
    pub paths: &'a [Vec<usize>],
}

/// Links below this fraction of their capacity left count as full.
const FULL: f64 = 1e-9;

/// Rate (items/s) of every job under per-job fair sharing of `capacity`.
/// Flow `f` of job `j` then gets `V_f * x_j` bytes/s.
pub fn fair_rates(capacity: &[f64], jobs: &[JobDemand]) -> Vec<f64> {
    let mut scratch = vec![0.0; capacity.len()];
    let demand: Vec<Vec<(usize, f64)>> = jobs
        .iter()
        .map(|j| {
            let mut links = Vec::new();
            for (f, p) in j.flows.iter().zip(j.paths) {
                for &l in p {
                    if scratch[l] == 0.0 {
                        links.push(l);
                    }
                    scratch[l] += f.volume;
                }
            }
            links
                .into_iter()
                .map(|l| (l, std::mem::take(&mut scratch[l])))
                .filter(|&(_, d)| d > 0.0)
                .collect()
        })
        .collect();
    // Rate gained per unit of level.
    let w: Vec<f64> = demand
        .iter()
        .map(|d| {
            let max = d.iter().map(|&(_, v)| v).fold(0.0, f64::max);
            if max > 0.0 {
                1.0 / max
            } else {
                0.0
            }
        })
        .collect();
    let mut x: Vec<f64> = jobs
        .iter()
        .zip(&w)
        .map(|(j, &w)| if w == 0.0 { j.cap } else { 0.0 })
        .collect();
    let mut active: Vec<bool> = w
        .iter()
        .zip(jobs)
        .map(|(&w, j)| w > 0.0 && j.cap > 0.0)
        .collect();
    let mut residual = capacity.to_vec();
    let mut load = vec![0.0; capacity.len()];
    while active.iter().any(|&a| a) {
        load.iter_mut().for_each(|c| *c = 0.0);
        let mut step = f64::INFINITY;
        for (j, d) in demand.iter().enumerate() {
            if active[j] {
                for &(l, v) in d {
                    load[l] += v * w[j];
                }
                step = step.min((jobs[j].cap - x[j]) / w[j]);
            }
        }
        for (l, &c) in load.iter().enumerate() {
            if c > 0.0 {
                step = step.min(residual[l] / c);
            }
        }
        let step = step.max(0.0);
        for (l, &c) in load.iter().enumerate() {
            residual[l] = (residual[l] - c * step).max(0.0);
        }
        for (j, d) in demand.iter().enumerate() {
            if !active[j] {
                continue;
            }
            x[j] += w[j] * step;
            let capped = x[j] >= jobs[j].cap * (1.0 - 1e-12);
            let blocked = d.iter().any(|&(l, _)| residual[l] <= FULL * capacity[l]);
            if capped || blocked {
                x[j] = x[j].min(jobs[j].cap);
                active[j] = false;
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Feasible and Pareto-efficient: no link over capacity, and every job is
        /// at its cap or crosses a full link.
        #[test]
        fn shares_fit_and_leave_nothing_a_job_could_use(
            caps in prop::collection::vec(1e5f64..1e7, 1..8),
            jobs in prop::collection::vec(
                (0.1f64..30.0, prop::collection::vec((1e3f64..1e7, prop::collection::vec(0usize..8, 1..4)), 0..4)),
                1..10,
            ),
        ) {
            let flows: Vec<Vec<FlowDemand>> = jobs.iter()
                .map(|(_, fs)| fs.iter().map(|&(v, _)| FlowDemand { src: 0, dst: 1, volume: v }).collect())
                .collect();
            let paths: Vec<Vec<Vec<usize>>> = jobs.iter()
                .map(|(_, fs)| fs.iter().map(|(_, p)| {
                    let mut p: Vec<usize> = p.iter().map(|&l| l % caps.len()).collect();
                    p.sort_unstable();
                    p.dedup();
                    p
                }).collect())
                .collect();
            let demands: Vec<JobDemand> = jobs.iter().zip(&flows).zip(&paths)
                .map(|(((cap, _), f), p)| JobDemand { cap: *cap, flows: f, paths: p })
                .collect();
            let x = fair_rates(&caps, &demands);
            let mut used = vec![0.0; caps.len()];
            for (d, &x) in demands.iter().zip(&x) {
                prop_assert!(x >= 0.0 && x <= d.cap * (1.0 + 1e-9));
                for (f, p) in d.flows.iter().zip(d.paths) {
                    for &l in p {
                        used[l] += f.volume * x;
                    }
                }
            }
            for (u, c) in used.iter().zip(&caps) {
                prop_assert!(*u <= c * (1.0 + 1e-9), "link over capacity: {} > {}", u, c);
            }
            for (d, &x) in demands.iter().zip(&x) {
                let full = d.paths.iter().flatten().any(|&l| used[l] >= caps[l] * (1.0 - 1e-6));
                prop_assert!(x >= d.cap * (1.0 - 1e-9) || full, "job below its cap with room left");
            }
        }
    }

    fn flow(volume: f64) -> FlowDemand {
        FlowDemand {
            src: 0,
            dst: 1,
            volume,
        }
    }

    #[test]
    fn one_link_is_split_equally_between_jobs_and_leftovers_pass_on() {
        let (raw, crops) = ([flow(6e6)], [flow(1.5e5), flow(1.5e5)]);
        let p1 = [vec![0]];
        let p2 = [vec![0], vec![0]];
        let jobs = [
            JobDemand {
                cap: 30.0,
                flows: &raw,
                paths: &p1,
            },
            JobDemand {
                cap: 30.0,
                flows: &crops,
                paths: &p2,
            },
        ];
        let x = fair_rates(&[1e6], &jobs);
        // Equal bandwidth: 0.5 MB/s each.
        assert!((x[0] - 0.5e6 / 6e6).abs() < 1e-9, "{x:?}");
        assert!((x[1] - 0.5e6 / 3e5).abs() < 1e-9, "{x:?}");
        // A capped job leaves the rest to the other.
        let jobs = [
            JobDemand {
                cap: 30.0,
                flows: &raw,
                paths: &p1,
            },
            JobDemand {
                cap: 1.0,
                flows: &crops,
                paths: &p2,
            },
        ];
        let x = fair_rates(&[1e6], &jobs);
        assert!(
            (x[1] - 1.0).abs() < 1e-9 && (x[0] - 0.7e6 / 6e6).abs() < 1e-9,
            "{x:?}"
        );
    }
}
