//! Following the plan's jobs on this node, and taking the items other nodes
//! send here.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex, RwLock};

use vidar_protocol::messages::jobs::CheckedJob;
use vidar_protocol::messages::{JobAssignment, JobItem, Plan};
use vidar_protocol::JobId;

use super::worker::{self, Ctx, Handle};
use super::Input;

/// The jobs of this node.
#[derive(Debug)]
pub struct JobRuntime {
    ctx: Ctx,
    workers: Mutex<HashMap<JobId, Handle>>,
    /// Every job of the plan in force, checked (for items from other nodes).
    placed: RwLock<HashMap<JobId, (Arc<JobAssignment>, Arc<CheckedJob>)>>,
}

impl JobRuntime {
    /// A runtime with no job yet.
    pub fn new(ctx: Ctx) -> Self {
        JobRuntime {
            ctx,
            workers: Mutex::new(HashMap::new()),
            placed: RwLock::new(HashMap::new()),
        }
    }

    /// Follows `plan`: starts a worker for each job with a stage here,
    /// restarts one whose job or placement changed, stops the others.
    pub fn apply(&self, plan: &Plan) {
        let me = &self.ctx.me;
        let mut placed = HashMap::new();
        for a in &plan.jobs {
            // The plan was checked when it was decoded; a job that does
            // not check now is skipped.
            if let Ok(c) = a.spec.check() {
                placed.insert(a.spec.id.clone(), (Arc::new(a.clone()), Arc::new(c)));
            }
        }
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<JobId> = workers
            .iter()
            .filter(|(id, h)| {
                placed.get(*id).is_none_or(|(a, _)| {
                    a.spec != h.assignment.spec
                        || a.nodes != h.assignment.nodes
                        || !a.nodes.contains(me)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(h) = workers.remove(&id) {
                h.stop(&self.ctx.hub);
            }
            if !placed.get(&id).is_some_and(|(a, _)| a.nodes.contains(me)) {
                self.ctx.hub.forget(&id);
            }
        }
        for (id, (a, c)) in &placed {
            if !a.nodes.contains(me) {
                continue;
            }
            if let Some(h) = workers.get_mut(id) {
                // Same stages, same nodes: only the shares may have moved.
                if a.flows != h.assignment.flows
                    && h.tx.try_send(Input::Shares(a.flows.clone())).is_ok()
                {
                    h.assignment = Arc::clone(a);
                }
                continue;
            }
            match worker::spawn(&self.ctx, Arc::clone(a), (**c).clone()) {
                Ok(h) => {
                    workers.insert(id.clone(), h);
                }
                Err(e) => tracing::warn!(job = %id, error = %e, "starting a job worker"),
            }
        }
        *self.placed.write().unwrap_or_else(|p| p.into_inner()) = placed;
    }

    /// Takes an item another node sent on `key`; refused (and counted)
    /// unless it is one the plan has that node send here.
    pub fn receive(&self, key: &str, item: JobItem) {
        if let Err(why) = self.check(key, &item) {
            self.ctx.hub.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(key, why, "job item refused");
            return;
        }
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(h) = workers.get(&item.job) else {
            self.ctx.hub.refused.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match h.tx.try_send(Input::Remote(Box::new(item))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.ctx.hub.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn check(&self, key: &str, item: &JobItem) -> Result<(), String> {
        let me = &self.ctx.me;
        let sender = self
            .ctx
            .link
            .keys()
            .job_sender(key, me)
            .ok_or_else(|| format!("{key} is not a job key for {me}"))?;
        if sender != item.from {
            return Err(format!(
                "sent under {sender}'s key, but says it is from {}",
                item.from
            ));
        }
        let placed = self.placed.read().unwrap_or_else(|p| p.into_inner());
        let (a, c) = placed
            .get(&item.job)
            .ok_or_else(|| format!("job {} is not in the plan", item.job))?;
        let i = a
            .spec
            .stages
            .iter()
            .position(|s| s.name == item.to_stage)
            .ok_or_else(|| format!("job {} has no stage {}", item.job, item.to_stage))?;
        if a.nodes.get(i) != Some(me) {
            return Err(format!(
                "the plan does not place job {} stage {} here",
                item.job, item.to_stage
            ));
        }
        let input = c.inputs[i].ok_or("a source takes no items")?;
        if a.nodes.get(input) != Some(&sender) {
            return Err(format!(
                "the plan does not have {sender} feed job {} stage {}",
                item.job, item.to_stage
            ));
        }
        let kind = c.takes[i].ok_or("a source takes no items")?;
        if !item.data.carries(kind) {
            return Err(format!(
                "job {} stage {} takes {}, the item carries something else",
                item.job,
                item.to_stage,
                kind.as_str()
            ));
        }
        if a.spec.camera() != Some(&item.camera) {
            return Err(format!("job {}'s camera is not {}", item.job, item.camera));
        }
        Ok(())
    }

    /// Stops every worker.
    pub fn stop(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for (_, h) in workers.drain() {
            h.stop(&self.ctx.hub);
        }
    }
}
