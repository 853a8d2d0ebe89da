//! The plan service across a master restart: what it saves after each
//! replan, and takes back at start ([`crate::plans::saved`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vidar_protocol::messages::NodeStatus;
use vidar_protocol::{NodeId, UnixMs};

use super::{Loop, Startup};
use crate::plans::measured::{measured_detect_shares, measured_frame_work, measured_persons};
use crate::plans::saved::{self, Saved};
use crate::plans::Current;

impl Loop {
    /// At start: the saved state taken back, if there is one (see
    /// [`saved`]), and the first plan held for the nodes it expects.
    pub(super) fn start(&mut self, now: Instant) {
        let mut expected = self.svc.membership.roster().unwrap_or_default();
        match saved::load(&saved::path_in(&self.svc.state_dir)) {
            Ok(Some(s)) => {
                if let Some(nodes) = self.restore(s, now) {
                    expected = nodes;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the saved plan state is not usable: planning afresh")
            }
            Ok(None) => {}
        }
        self.startup = Some(Startup {
            until: now + self.svc.startup_wait,
            nodes: expected,
        });
    }

    /// Takes `s` back: the figures measured and the links planned with,
    /// and, when the same algorithm still places cameras, the plan in
    /// force (issued when it was, so its settling times run on) and the
    /// planner's output it came from. Returns the plan's nodes.
    fn restore(&mut self, s: Saved, now: Instant) -> Option<BTreeSet<NodeId>> {
        self.persons = s.persons;
        self.detect_shares = s.detect_shares;
        self.ingest_work = s.ingest_work;
        self.planned_links = s.links.into_iter().map(|(a, b, r)| ((a, b), r)).collect();
        self.planned_uploads = s.uploads.into_iter().collect();
        // The cameras as planned (`/api/plan`) until the first replan: the
        // held figures, nothing measured yet.
        let mut cameras = self.svc.plans.cameras();
        measured_persons(&mut cameras, &[], &mut self.persons);
        measured_detect_shares(&mut cameras, &[], &mut self.detect_shares);
        measured_frame_work(&mut cameras, &[], None, &mut self.ingest_work);
        self.svc.plans.set_planned(cameras);
        if s.algorithm != self.svc.algorithm {
            tracing::info!(
                saved = ?s.algorithm,
                now = ?self.svc.algorithm,
                "the saved plan was placed by another algorithm: placing afresh, with the measured figures"
            );
            return None;
        }
        let encoded = match vidar_link::Encoded::new(&s.plan) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "encoding the saved plan: placing afresh");
                return None;
            }
        };
        let age = UnixMs::now().0.saturating_sub(s.plan.issued_ms.0).max(0);
        let issued_at = now.checked_sub(Duration::from_millis(age.unsigned_abs()));
        tracing::info!(
            version = s.plan.version,
            age_s = age / 1000,
            streams = s.plan.streams.len(),
            "the plan in force before the restart is taken back"
        );
        let nodes: BTreeSet<NodeId> = s.nodes.iter().cloned().collect();
        self.previous = Some(s.output.clone());
        self.svc.plans.set_current(Some(Arc::new(Current {
            predicted: s.output.predicted,
            plan: s.plan,
            algorithm: s.algorithm,
            nodes: s.nodes,
            issued_at: issued_at.or(Some(now)),
            encoded,
        })));
        Some(nodes)
    }

    /// A plan taken back from the saved state is not the one in force when
    /// a node runs a newer version (the state was not saved after it, or
    /// comes from elsewhere): it is dropped, and the first plan is placed
    /// afresh (the measured figures stay).
    pub(super) fn drop_stale_restore(&mut self, live: &[NodeStatus]) {
        let Some(c) = self.svc.plans.current() else {
            return;
        };
        if let Some(n) = live.iter().find(|n| n.plan_version > c.plan.version) {
            tracing::warn!(
                node = %n.node,
                runs = n.plan_version,
                saved = c.plan.version,
                "a node runs a newer plan than the saved one: placing afresh"
            );
            self.previous = None;
            self.svc.plans.set_current(None);
        }
    }

    /// Saves the plan in force and the figures held, when they changed
    /// since the last save; a failure is warned once (until it changes).
    pub(super) fn save(&mut self) {
        let (Some(c), Some(output)) = (self.svc.plans.current(), self.previous.clone()) else {
            return;
        };
        let state = Saved {
            format: saved::FORMAT,
            plan: c.plan.clone(),
            output,
            algorithm: c.algorithm,
            nodes: c.nodes.clone(),
            links: (self.planned_links.iter())
                .map(|((a, b), r)| (a.clone(), b.clone(), *r))
                .collect(),
            uploads: (self.planned_uploads.iter())
                .map(|(n, r)| (n.clone(), *r))
                .collect(),
            persons: self.persons.clone(),
            detect_shares: self.detect_shares.clone(),
            ingest_work: self.ingest_work.clone(),
        };
        if self.saved.as_ref() == Some(&state) {
            return;
        }
        let dir = &self.svc.state_dir;
        match saved::save(dir, &saved::path_in(dir), &state) {
            Ok(()) => {
                self.saved = Some(state);
                self.save_failed = None;
            }
            Err(e) => {
                let e = e.to_string();
                if self.save_failed.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "saving the plan state (a restart would plan afresh)");
                }
                self.save_failed = Some(e);
            }
        }
    }
}
