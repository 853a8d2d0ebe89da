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
    placed: RwLock<Placed>,
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
        let placed = self.placed.read().unwrap_or_else(|p| p.into_inner());
        admit(self.ctx.link.keys(), &self.ctx.me, &placed, key, item)
    }

    /// Stops every worker.
    pub fn stop(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        for (_, h) in workers.drain() {
            h.stop(&self.ctx.hub);
        }
    }
}

/// Jobs of the plan in force, checked.
pub type Placed = HashMap<JobId, (Arc<JobAssignment>, Arc<CheckedJob>)>;

/// Whether node `me` takes `item`, received on `key`: sent under the
/// item's sender's key, for a stage the plan places here, whose input's
/// stage the plan places at that sender, carrying the kind the stage takes,
/// from the job's camera.
pub fn admit(
    keys: &vidar_protocol::Keys,
    me: &vidar_protocol::NodeId,
    placed: &Placed,
    key: &str,
    item: &JobItem,
) -> Result<(), String> {
    let sender = keys
        .job_sender(key, me)
        .ok_or_else(|| format!("{key} is not a job key for {me}"))?;
    if sender != item.from {
        return Err(format!(
            "sent under {sender}'s key, but says it is from {}",
            item.from
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use vidar_protocol::messages::{JobData, JobFrame, JobVector};
    use vidar_protocol::{CameraId, Keys, NodeId, StageId, UnixMs};

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("id")
    }

    #[test]
    fn only_the_items_the_plan_has_a_node_send_here_are_taken() {
        let spec: vidar_protocol::messages::JobSpec = toml::from_str(
            "id = \"j\"\n[[stage]]\nname = \"cam\"\nkind = \"source\"\ncamera = \"c\"\n\
             [[stage]]\nname = \"det\"\nkind = \"detect\"\ninput = \"cam\"\n\
             [[stage]]\nname = \"out\"\nkind = \"sink\"\nsink = \"records\"\ninput = \"det\"\n",
        )
        .expect("job");
        let checked = spec.check().expect("valid");
        // cam on a, det on b (here), out on c.
        let a = JobAssignment {
            spec: spec.clone(),
            nodes: vec![id("a"), id("b"), id("c")],
            flows: Vec::new(),
            predicted_rate: 1.0,
        };
        let placed: Placed = HashMap::from([(spec.id.clone(), (Arc::new(a), Arc::new(checked)))]);
        let keys = Keys::new("s").expect("site");
        let me = id("b");
        let frame = JobItem {
            job: spec.id.clone(),
            to_stage: StageId::new("det").expect("id"),
            from: id("a"),
            camera: CameraId::new("c").expect("id"),
            seq: 1,
            captured_ms: UnixMs(0),
            data: JobData::Frame(JobFrame {
                width: 2,
                height: 2,
                jpeg: vec![0xFF, 0xD8],
            }),
        };
        let ok = |key: &str, item: &JobItem| admit(&keys, &me, &placed, key, item);
        assert_eq!(ok(&keys.job(&me, &id("a")), &frame), Ok(()));
        // Under another node's key, or claiming another sender.
        let e = ok(&keys.job(&me, &id("c")), &frame).unwrap_err();
        assert!(e.contains("sent under c's key"), "{e}");
        // From a node the plan does not have feed the stage.
        let mut from_c = frame.clone();
        from_c.from = id("c");
        let e = ok(&keys.job(&me, &id("c")), &from_c).unwrap_err();
        assert!(e.contains("does not have c feed job j stage det"), "{e}");
        // For a stage not placed here.
        let mut to_out = frame.clone();
        to_out.to_stage = StageId::new("out").expect("id");
        let e = ok(&keys.job(&me, &id("a")), &to_out).unwrap_err();
        assert!(e.contains("does not place job j stage out here"), "{e}");
        // The wrong kind, the wrong camera, an unknown job, another node's key space.
        let mut vectors = frame.clone();
        vectors.data = JobData::Vectors(vec![JobVector {
            bbox: None,
            track: None,
            values: vec![1.0],
        }]);
        let e = ok(&keys.job(&me, &id("a")), &vectors).unwrap_err();
        assert!(e.contains("takes frames"), "{e}");
        let mut camera = frame.clone();
        camera.camera = CameraId::new("other").expect("id");
        assert!(ok(&keys.job(&me, &id("a")), &camera)
            .unwrap_err()
            .contains("camera"));
        let mut job = frame.clone();
        job.job = vidar_protocol::JobId::new("k").expect("id");
        assert!(ok(&keys.job(&me, &id("a")), &job)
            .unwrap_err()
            .contains("not in the plan"));
        assert!(ok(&keys.job(&id("z"), &id("a")), &frame)
            .unwrap_err()
            .contains("not a job key"));
    }
}
