//! The site's roster while the master runs: `vidar-master enroll` and
//! `revoke` rewrite the roster file in the master's bundle
//! (`DIR/master/enrolled`); this thread reads it every [`EVERY`] and, when it
//! changed, hands the new roster to the router's access list (a revoked
//! node can do nothing more from that moment, and its connection is
//! closed) and to the membership table (a revoked node leaves and its work
//! is planned elsewhere; a newly enrolled one is taken in).
//!
//! A roster file that cannot be read or parsed keeps the roster in force:
//! a typo must not let anyone in, nor shut the whole site out.

use crate::membership::Membership;
use std::collections::BTreeSet;
use std::thread::JoinHandle;
use std::time::Duration;
use vidar_link::{Bundle, Link};
use vidar_protocol::NodeId;
use vidar_runtime::Shutdown;

/// How often the roster file is read.
pub const EVERY: Duration = Duration::from_secs(2);

/// What changed between two rosters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// On the new roster only.
    pub enrolled: Vec<NodeId>,
    /// On the old roster only.
    pub revoked: Vec<NodeId>,
}

impl Change {
    /// The difference from `old` to `new`.
    pub fn between(old: &BTreeSet<NodeId>, new: &BTreeSet<NodeId>) -> Change {
        Change {
            enrolled: new.difference(old).cloned().collect(),
            revoked: old.difference(new).cloned().collect(),
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.enrolled.is_empty() && self.revoked.is_empty()
    }
}

/// Watches the roster file of `bundle` (the master's).
#[derive(Debug)]
pub struct RosterWatch {
    /// The master's router.
    pub link: Link,
    /// The membership table to keep in step.
    pub membership: Membership,
    /// The master's bundle, whose roster file is read.
    pub bundle: Bundle,
    /// Stops the thread.
    pub stop: Shutdown,
}

impl RosterWatch {
    /// Starts the thread.
    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("vidar-roster".into())
            .spawn(move || self.run())
    }

    fn run(self) {
        let mut last_error: Option<String> = None;
        while !self.stop.wait_timeout(EVERY) {
            let read = match self.bundle.enrolled() {
                Ok(r) => r.into_iter().collect::<BTreeSet<_>>(),
                Err(e) => {
                    let e = e.to_string();
                    if last_error.as_ref() != Some(&e) {
                        tracing::warn!(error = %e, "reading the roster; the roster in force is kept");
                    }
                    last_error = Some(e);
                    continue;
                }
            };
            last_error = None;
            // The roster in force is membership's: it changes only once the
            // router took a new one, so a refused one is tried again.
            let current = self.membership.roster().unwrap_or_default();
            let change = Change::between(&current, &read);
            if !change.is_empty() {
                self.apply(&read, &change);
            }
        }
    }

    /// Applies a new roster: the router's access list first, then
    /// membership; neither when the router refuses it.
    fn apply(&self, roster: &BTreeSet<NodeId>, change: &Change) {
        let list: Vec<NodeId> = roster.iter().cloned().collect();
        let standing: Vec<NodeId> = change
            .enrolled
            .iter()
            .chain(&change.revoked)
            .cloned()
            .collect();
        match self.link.replace_roster(&list, &standing) {
            Ok(closed) => {
                let forgotten = self.membership.set_roster(&list);
                for n in &change.enrolled {
                    tracing::info!(node = %n, "node enrolled: let in without a restart");
                }
                for n in &change.revoked {
                    tracing::warn!(node = %n, "node revoked: cut off from the site");
                }
                tracing::info!(
                    nodes = list.len(),
                    connections_closed = closed,
                    forgotten = forgotten.len(),
                    "roster replaced"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "the router refused the new roster; the roster in force is kept");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<NodeId> {
        ids.iter().map(|s| NodeId::new(s).expect("id")).collect()
    }

    #[test]
    fn a_change_names_who_came_and_who_went() {
        let c = Change::between(&set(&["a", "b"]), &set(&["b", "c"]));
        assert_eq!(c.enrolled, vec![NodeId::new("c").expect("id")]);
        assert_eq!(c.revoked, vec![NodeId::new("a").expect("id")]);
        assert!(!c.is_empty());
        assert!(Change::between(&set(&["a"]), &set(&["a"])).is_empty());
    }
}
