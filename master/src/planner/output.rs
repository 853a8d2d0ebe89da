//! A placement in protocol terms: each camera's nodes, and the link share
//! of every cross-node crop flow.

use std::collections::HashMap;

use vidar_protocol::NodeId;
use vidar_scheduler::jstsh::Objective;

use super::model::Mapped;
use super::{Placed, PlanOutput, SiteCamera};

impl Mapped {
    /// The plan in protocol terms, with link shares for the crop flows.
    pub(super) fn output(
        &self,
        cameras: &[SiteCamera],
        a: &[(usize, usize)],
        reason: String,
    ) -> PlanOutput {
        let streams = cameras
            .iter()
            .zip(a)
            .map(|(c, &(x, y))| Placed {
                camera: c.camera.clone(),
                source: c.source.clone(),
                node: self.ids[x].clone(),
                reid_node: self.ids[y].clone(),
            })
            .collect();
        // Crop flows between node pairs; each crosses the direct link, shared
        // fairly by every flow on it (both directions share a link).
        let mut flows: Vec<(usize, usize)> = a.iter().copied().filter(|(x, y)| x != y).collect();
        flows.sort_unstable();
        flows.dedup();
        let mut per_link: HashMap<(usize, usize), u32> = HashMap::new();
        for &(x, y) in &flows {
            *per_link.entry((x.min(y), x.max(y))).or_default() += 1;
        }
        let mut bandwidth: Vec<(NodeId, NodeId, u64)> = flows
            .iter()
            .map(|&(x, y)| {
                let n = per_link[&(x.min(y), x.max(y))];
                (
                    self.ids[x].clone(),
                    self.ids[y].clone(),
                    (self.link[x][y] / f64::from(n)) as u64,
                )
            })
            .collect();
        bandwidth.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let predicted = Objective::of(&self.problem, a);
        PlanOutput {
            streams,
            bandwidth,
            cost: predicted.load_aware_cost,
            predicted,
            reason,
        }
    }
}
