//! `solve`: read a JSON instance, run the named algorithm, print the plan.

use std::path::Path;

use anyhow::{bail, Context};
use vidar_scheduler::edgesplit::splitpipe;
use vidar_scheduler::{edgesplit, ents, jstsh};

/// Runs `algorithm` on the instance in `path` and prints the plan as JSON.
pub fn run(algorithm: &str, path: &Path, seed: u64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading instance {}", path.display()))?;
    let parse_err = || {
        format!(
            "parsing {} as the instance of {algorithm} (see scheduler/README.md)",
            path.display()
        )
    };
    let quoted = format!("\"{algorithm}\"");
    let json = if let Ok(algo) = serde_json::from_str::<jstsh::StreamAlgorithm>(&quoted) {
        let inst: jstsh::StreamInstance = serde_json::from_str(&text).with_context(parse_err)?;
        serde_json::to_string_pretty(&jstsh::solve(&inst, algo, seed)?)?
    } else if let Ok(policy) = serde_json::from_str::<ents::Policy>(&quoted) {
        let inst: ents::JobInstance = serde_json::from_str(&text).with_context(parse_err)?;
        serde_json::to_string_pretty(&ents::solve(&inst, policy)?)?
    } else if let Ok(algo) = serde_json::from_str::<edgesplit::SplitAlgorithm>(&quoted) {
        let inst: edgesplit::SplitInstance = serde_json::from_str(&text).with_context(parse_err)?;
        serde_json::to_string_pretty(&edgesplit::plan(&inst, algo)?)?
    } else if algorithm == "splitpipe" {
        let inst: edgesplit::SplitInstance = serde_json::from_str(&text).with_context(parse_err)?;
        let plan = edgesplit::plan(&inst, edgesplit::SplitAlgorithm::Edgesplit)?;
        let cfg = splitpipe::PipeConfig::default();
        let server: Vec<_> = splitpipe::PipePolicy::ALL
            .iter()
            .map(|&p| splitpipe::simulate(&inst, &plan, p, &cfg))
            .collect();
        serde_json::to_string_pretty(
            &serde_json::json!({ "plan": plan, "config": cfg, "server": server }),
        )?
    } else {
        bail!("unknown algorithm {algorithm:?}; see `vidar-sim solve --help`");
    };
    println!("{json}");
    Ok(())
}
