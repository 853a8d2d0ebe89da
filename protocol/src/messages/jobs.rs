//! Analytics jobs: a DAG of stages an integrator submits (a job file), where
//! the master placed each stage (in the [`Plan`](super::Plan)), and the items
//! the stages pass to each other across nodes.
//!
//! A job has one source (a camera stream) and one or more sinks. Every other
//! stage takes exactly one input, the output of another stage; a stage's
//! output may feed several stages, so a job is a tree rooted at its source
//! (joins are not supported). Each stage consumes and produces a [`DataKind`]:
//!
//! | kind     | input                      | output       | needs    |
//! |----------|----------------------------|--------------|----------|
//! | `source` | none                       | `frames`     | `camera` |
//! | `detect` | `frames`                   | `crops`      |          |
//! | `track`  | `crops`                    | `tracks`     |          |
//! | `reid`   | `crops`, `tracks`          | `embeddings` |          |
//! | `onnx`   | `frames`, `crops`, `tracks`| `tensors`    | `model` (a manifest model with an image input) |
//! | `sink`   | any                        | none         | `sink` (`records` or `topic`) |
//!
//! Whether `model` names a model of the manifest is the master's check (this
//! crate does not know the manifest); everything else is checked here, and
//! every problem names its stage.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::{check_bbox, check_jpeg, check_len, check_rate, MAX_CROP_SIDE};
use crate::record::MAX_EMBEDDING_DIM;
use crate::time::UnixMs;
use crate::wire::{Message, MessageKind};
use crate::{BBox, CameraId, JobId, NodeId, StageId, TrackId};

/// Most stages in one job.
pub const MAX_JOB_STAGES: usize = 32;
/// Most jobs in one plan.
pub const MAX_PLAN_JOBS: usize = 256;
/// Most crops or vectors in one job item.
pub const MAX_JOB_ITEM_ENTRIES: usize = 256;
/// Largest JPEG in a job item (a frame), bytes.
pub const MAX_JOB_JPEG_BYTES: usize = 4 * 1024 * 1024;
/// Highest item rate a job may ask for, items per second.
pub const MAX_JOB_RATE: f64 = 60.0;
/// Longest manifest model name in a stage, bytes.
pub const MAX_STAGE_MODEL_LEN: usize = 128;

/// What a stage consumes or produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    /// Whole frames of the camera (JPEG).
    Frames,
    /// Person boxes with their crops (JPEG), per frame.
    Crops,
    /// Crops with the track each belongs to.
    Tracks,
    /// A re-ID embedding per crop.
    Embeddings,
    /// A model's output per crop (or per frame).
    Tensors,
}

impl DataKind {
    /// Its name in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Frames => "frames",
            DataKind::Crops => "crops",
            DataKind::Tracks => "tracks",
            DataKind::Embeddings => "embeddings",
            DataKind::Tensors => "tensors",
        }
    }
}

/// What a stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// A camera's frames, at the job's rate.
    Source,
    /// The person detector.
    Detect,
    /// A Kalman/IoU tracker over the crops, per camera.
    Track,
    /// The re-ID embedder.
    Reid,
    /// Any image model of the manifest, on each crop (or each frame).
    Onnx,
    /// Where results go.
    Sink,
}

impl StageKind {
    /// Its name in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Source => "source",
            StageKind::Detect => "detect",
            StageKind::Track => "track",
            StageKind::Reid => "reid",
            StageKind::Onnx => "onnx",
            StageKind::Sink => "sink",
        }
    }

    /// The kinds it accepts as input (none for a source).
    pub fn accepts(self) -> &'static [DataKind] {
        use DataKind::*;
        match self {
            StageKind::Source => &[],
            StageKind::Detect => &[Frames],
            StageKind::Track => &[Crops],
            StageKind::Reid => &[Crops, Tracks],
            StageKind::Onnx => &[Frames, Crops, Tracks],
            StageKind::Sink => &[Frames, Crops, Tracks, Embeddings, Tensors],
        }
    }

    /// What it produces from `input` (none for a sink).
    pub fn produces(self, input: Option<DataKind>) -> Option<DataKind> {
        match self {
            StageKind::Source => Some(DataKind::Frames),
            StageKind::Detect => Some(DataKind::Crops),
            StageKind::Track => Some(DataKind::Tracks),
            StageKind::Reid => Some(DataKind::Embeddings),
            StageKind::Onnx => input.map(|_| DataKind::Tensors),
            StageKind::Sink => None,
        }
    }
}

/// Where a sink puts what reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// Job results in the sink node's store, synced to the master like every
    /// record (`GET /api/jobs/<id>/results`).
    Records,
    /// Published on `vidar/<site>/jobout/<node>/<job>` as [`JobItem`]s.
    Topic,
}

/// One stage of a job file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobStage {
    /// Its name, unique in the job.
    pub name: StageId,
    /// What it does.
    pub kind: StageKind,
    /// The stage whose output it takes (every kind but `source`).
    #[serde(default)]
    pub input: Option<StageId>,
    /// The camera (`source` only).
    #[serde(default)]
    pub camera: Option<CameraId>,
    /// The manifest model it runs (`onnx` only).
    #[serde(default)]
    pub model: Option<String>,
    /// Where its input goes (`sink` only).
    #[serde(default)]
    pub sink: Option<SinkKind>,
}

fn default_job_rate() -> f64 {
    2.0
}

/// A job as submitted: its stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's id.
    pub id: JobId,
    /// Frames per second its source takes from the camera (0 < rate <=
    /// [`MAX_JOB_RATE`]); default 2. The source takes at most the camera's rate.
    #[serde(default = "default_job_rate")]
    pub rate: f64,
    /// Its stages, any order.
    #[serde(
        rename = "stage",
        deserialize_with = "crate::bounded::vec::<_, _, MAX_JOB_STAGES>"
    )]
    pub stages: Vec<JobStage>,
}

/// A checked job: what each stage takes and produces, in an order where
/// every stage comes after its input.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedJob {
    /// The stage indices, each after its input.
    pub order: Vec<usize>,
    /// The index of each stage's input (none for the source).
    pub inputs: Vec<Option<usize>>,
    /// What each stage takes (none for the source).
    pub takes: Vec<Option<DataKind>>,
    /// What each stage produces (none for sinks).
    pub produces: Vec<Option<DataKind>>,
    /// The source stage's index.
    pub source: usize,
}

impl JobSpec {
    /// Checks the job's shape and types; the error names the stage at fault.
    pub fn check(&self) -> Result<CheckedJob, String> {
        let id = &self.id;
        if self.stages.is_empty() {
            return Err(format!("job {id}: has no stages"));
        }
        check_len(
            &format!("job {id}: stages"),
            self.stages.len(),
            MAX_JOB_STAGES,
        )?;
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_JOB_RATE) {
            return Err(format!(
                "job {id}: rate = {} must be > 0 and <= {MAX_JOB_RATE} frames/s",
                self.rate
            ));
        }
        let mut index: HashMap<&StageId, usize> = HashMap::new();
        for (i, s) in self.stages.iter().enumerate() {
            if index.insert(&s.name, i).is_some() {
                return Err(format!(
                    "job {id}: stage {} is defined more than once",
                    s.name
                ));
            }
        }
        let mut inputs = vec![None; self.stages.len()];
        let mut sources = Vec::new();
        for (i, s) in self.stages.iter().enumerate() {
            let at = format!("job {id}, stage {} ({})", s.name, s.kind.as_str());
            let field = |name: &str, present: bool, wanted: bool| -> Result<(), String> {
                match (present, wanted) {
                    (false, true) => Err(format!("{at}: `{name}` is missing")),
                    (true, false) => Err(format!(
                        "{at}: `{name}` does not belong to a {} stage",
                        s.kind.as_str()
                    )),
                    _ => Ok(()),
                }
            };
            field("camera", s.camera.is_some(), s.kind == StageKind::Source)?;
            field("model", s.model.is_some(), s.kind == StageKind::Onnx)?;
            field("sink", s.sink.is_some(), s.kind == StageKind::Sink)?;
            field("input", s.input.is_some(), s.kind != StageKind::Source)?;
            if let Some(m) = &s.model {
                if m.is_empty() || m.len() > MAX_STAGE_MODEL_LEN {
                    return Err(format!(
                        "{at}: model name is {} bytes, 1..={MAX_STAGE_MODEL_LEN} allowed",
                        m.len()
                    ));
                }
            }
            if s.kind == StageKind::Source {
                sources.push(i);
            }
            if let Some(from) = &s.input {
                match index.get(from) {
                    Some(&p) if p == i => return Err(format!("{at}: takes its own output")),
                    Some(&p) => inputs[i] = Some(p),
                    None => return Err(format!("{at}: input {from} is not a stage of this job")),
                }
            }
        }
        let source = match sources.as_slice() {
            [s] => *s,
            [] => return Err(format!("job {id}: has no source stage")),
            [_, second, ..] => {
                return Err(format!(
                    "job {id}, stage {}: a job has one source; {} is the first",
                    self.stages[*second].name, self.stages[sources[0]].name
                ))
            }
        };
        // Each stage has one input, so a cycle is a walk up the inputs that
        // comes back; every walk that ends reaches the source.
        for start in 0..self.stages.len() {
            let mut at = start;
            let mut steps = 0;
            while let Some(p) = inputs[at] {
                at = p;
                steps += 1;
                if at == start || steps > self.stages.len() {
                    let mut path = vec![self.stages[start].name.to_string()];
                    let mut k = inputs[start];
                    while let Some(p) = k {
                        path.push(self.stages[p].name.to_string());
                        if p == start {
                            break;
                        }
                        k = inputs[p];
                    }
                    return Err(format!(
                        "job {id}, stage {}: is on a cycle ({})",
                        self.stages[start].name,
                        path.join(" <- ")
                    ));
                }
            }
        }
        // Order: by depth from the source (the input comes first).
        let depth = |mut i: usize| {
            let mut d = 0;
            while let Some(p) = inputs[i] {
                i = p;
                d += 1;
            }
            d
        };
        let mut order: Vec<usize> = (0..self.stages.len()).collect();
        order.sort_by_key(|&i| (depth(i), i));
        let mut produces = vec![None; self.stages.len()];
        let mut takes = vec![None; self.stages.len()];
        for &i in &order {
            let s = &self.stages[i];
            let input = inputs[i].and_then(|p| produces[p]);
            if let Some(p) = inputs[i] {
                let Some(kind) = produces[p] else {
                    return Err(format!(
                        "job {id}, stage {} ({}): its input {} is a sink, which has no output",
                        s.name,
                        s.kind.as_str(),
                        self.stages[p].name
                    ));
                };
                if !s.kind.accepts().contains(&kind) {
                    let ok: Vec<&str> = s.kind.accepts().iter().map(|k| k.as_str()).collect();
                    return Err(format!(
                        "job {id}, stage {} ({}): takes {}, but its input {} produces {}",
                        s.name,
                        s.kind.as_str(),
                        ok.join(" or "),
                        self.stages[p].name,
                        kind.as_str()
                    ));
                }
            }
            takes[i] = input;
            produces[i] = s.kind.produces(input);
        }
        for (i, s) in self.stages.iter().enumerate() {
            let used = inputs.contains(&Some(i));
            if s.kind != StageKind::Sink && !used {
                return Err(format!(
                    "job {id}, stage {} ({}): its output goes nowhere (feed it to a sink or remove it)",
                    s.name,
                    s.kind.as_str()
                ));
            }
        }
        Ok(CheckedJob {
            order,
            inputs,
            takes,
            produces,
            source,
        })
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &StageId) -> Option<&JobStage> {
        self.stages.iter().find(|s| &s.name == name)
    }

    /// The camera its source takes frames from.
    pub fn camera(&self) -> Option<&CameraId> {
        self.stages
            .iter()
            .find(|s| s.kind == StageKind::Source)
            .and_then(|s| s.camera.as_ref())
    }
}

/// A stage's input crossing from one node to another: the rate its sender may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFlow {
    /// The receiving stage (its input's stage runs on another node).
    pub to_stage: StageId,
    /// Allotted rate, bytes per second.
    pub bytes_per_s: u64,
}

/// Where the master placed one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobAssignment {
    /// The job as submitted.
    pub spec: JobSpec,
    /// The node of each stage, in the order of `spec.stages`.
    pub nodes: Vec<NodeId>,
    /// The inputs that cross nodes, with their shares.
    pub flows: Vec<JobFlow>,
    /// Items per second the scheduler predicts for it.
    pub predicted_rate: f64,
}

impl JobAssignment {
    /// The node that runs `stage`.
    pub fn node_of(&self, stage: &StageId) -> Option<&NodeId> {
        let i = self.spec.stages.iter().position(|s| &s.name == stage)?;
        self.nodes.get(i)
    }

    /// The share of the flow into `stage`, bytes/s.
    pub fn share_into(&self, stage: &StageId) -> Option<u64> {
        self.flows
            .iter()
            .find(|f| &f.to_stage == stage)
            .map(|f| f.bytes_per_s)
    }

    pub(super) fn check(&self, field: &str) -> Result<(), String> {
        self.spec.check().map_err(|e| format!("{field}: {e}"))?;
        if self.nodes.len() != self.spec.stages.len() {
            return Err(format!(
                "{field}.nodes: {} entries for {} stages",
                self.nodes.len(),
                self.spec.stages.len()
            ));
        }
        check_rate(&format!("{field}.predicted_rate"), self.predicted_rate)?;
        for (k, f) in self.flows.iter().enumerate() {
            if self.spec.stage(&f.to_stage).is_none() {
                return Err(format!(
                    "{field}.flows[{k}].to_stage: {} is not a stage of the job",
                    f.to_stage
                ));
            }
        }
        Ok(())
    }
}

/// A frame, as a job carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFrame {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// The frame as a JPEG file.
    #[serde(with = "crate::bytes")]
    pub jpeg: Vec<u8>,
}

/// A person crop, as a job carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobCrop {
    /// Its box in the frame, pixels.
    pub bbox: BBox,
    /// The detector's confidence.
    pub score: f32,
    /// Its track, once a `track` stage has seen it.
    pub track: Option<TrackId>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// The crop as a JPEG file.
    #[serde(with = "crate::bytes")]
    pub jpeg: Vec<u8>,
}

/// A vector (an embedding or a model's output) for one crop or one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobVector {
    /// The crop's box (none for a whole frame).
    pub bbox: Option<BBox>,
    /// The crop's track, if tracked.
    pub track: Option<TrackId>,
    /// The values (none for a crop recorded as it is).
    pub values: Vec<f32>,
}

impl JobVector {
    pub(crate) fn check(&self, field: &str) -> Result<(), String> {
        if let Some(b) = &self.bbox {
            check_bbox(&format!("{field}.bbox"), b)?;
        }
        if self.values.len() > MAX_EMBEDDING_DIM {
            return Err(format!(
                "{field}.values: {} values, at most {MAX_EMBEDDING_DIM} allowed",
                self.values.len()
            ));
        }
        if let Some(v) = self.values.iter().find(|v| !v.is_finite()) {
            return Err(format!("{field}.values: {v} is not finite"));
        }
        Ok(())
    }
}

/// What an item carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobData {
    /// A frame (`frames`).
    Frame(JobFrame),
    /// A frame's crops (`crops`, `tracks`).
    Crops(
        #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_JOB_ITEM_ENTRIES>")]
        Vec<JobCrop>,
    ),
    /// A frame's vectors (`embeddings`, `tensors`).
    Vectors(
        #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_JOB_ITEM_ENTRIES>")]
        Vec<JobVector>,
    ),
}

impl JobData {
    /// Whether it can carry `kind`.
    pub fn carries(&self, kind: DataKind) -> bool {
        matches!(
            (self, kind),
            (JobData::Frame(_), DataKind::Frames)
                | (JobData::Crops(_), DataKind::Crops | DataKind::Tracks)
                | (
                    JobData::Vectors(_),
                    DataKind::Embeddings | DataKind::Tensors
                )
        )
    }
}

/// One item of a job, sent by the node of a stage to the node of the stage
/// it feeds, on `vidar/<site>/job/<receiver>/<sender>`; or by a topic sink
/// on `vidar/<site>/jobout/<node>/<job>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobItem {
    /// The job.
    pub job: JobId,
    /// The stage it is for (the sink, on a job's output topic).
    pub to_stage: StageId,
    /// The sending node (must be the key's sender and, in the plan, run the
    /// stage's input).
    pub from: NodeId,
    /// The camera of the frame it comes from.
    pub camera: CameraId,
    /// The frame's position among those the job's source took, from 1.
    pub seq: u64,
    /// The frame's capture time, ms since the epoch.
    pub captured_ms: UnixMs,
    /// What it carries.
    pub data: JobData,
}

impl Message for JobItem {
    const KIND: MessageKind = MessageKind::JobItem;

    fn validate(&self) -> Result<(), String> {
        match &self.data {
            JobData::Frame(f) => {
                for (name, v) in [("width", f.width), ("height", f.height)] {
                    if v == 0 || v > MAX_CROP_SIDE {
                        return Err(format!(
                            "data.frame.{name}: {v} is outside 1..={MAX_CROP_SIDE}"
                        ));
                    }
                }
                if f.jpeg.len() > MAX_JOB_JPEG_BYTES {
                    return Err(format!(
                        "data.frame.jpeg: {} bytes, at most {MAX_JOB_JPEG_BYTES} allowed",
                        f.jpeg.len()
                    ));
                }
                check_jpeg("data.frame.jpeg", &f.jpeg)?;
            }
            JobData::Crops(c) => {
                check_len("data.crops", c.len(), MAX_JOB_ITEM_ENTRIES)?;
                for (k, c) in c.iter().enumerate() {
                    let field = format!("data.crops[{k}]");
                    check_bbox(&format!("{field}.bbox"), &c.bbox)?;
                    for (name, v) in [("width", c.width), ("height", c.height)] {
                        if v == 0 || v > MAX_CROP_SIDE {
                            return Err(format!(
                                "{field}.{name}: {v} is outside 1..={MAX_CROP_SIDE}"
                            ));
                        }
                    }
                    check_jpeg(&format!("{field}.jpeg"), &c.jpeg)?;
                }
            }
            JobData::Vectors(v) => {
                check_len("data.vectors", v.len(), MAX_JOB_ITEM_ENTRIES)?;
                for (k, v) in v.iter().enumerate() {
                    v.check(&format!("data.vectors[{k}]"))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> JobSpec {
        toml::from_str(text).expect("job file")
    }

    /// The example job file shipped with Vidar, with a re-ID branch to a
    /// topic sink.
    fn good() -> String {
        format!(
            "{}\n[[stage]]\nname = \"emb\"\nkind = \"reid\"\ninput = \"det\"\n\
             [[stage]]\nname = \"out2\"\nkind = \"sink\"\nsink = \"topic\"\ninput = \"emb\"\n",
            include_str!("../../../deploy/jobs/attributes.toml")
        )
    }

    #[test]
    fn a_good_job_checks_and_is_ordered_inputs_first() {
        let j = parse(&good());
        let c = j.check().expect("valid");
        assert_eq!(c.source, 0);
        for (pos, &i) in c.order.iter().enumerate() {
            if let Some(p) = c.inputs[i] {
                assert!(c.order[..pos].contains(&p), "{i} before its input {p}");
            }
        }
        assert_eq!(c.produces[3], Some(DataKind::Tensors));
        assert_eq!(c.takes[3], Some(DataKind::Tracks));
        assert_eq!(c.produces[4], None);
    }

    fn refused(text: &str) -> String {
        parse(text).check().expect_err("refused")
    }

    #[test]
    fn bad_jobs_are_refused_naming_the_stage() {
        let good = good();
        // det <- trk <- det.
        let e = refused(&good.replace("input = \"cam\"", "input = \"trk\""));
        assert!(
            e.contains("is on a cycle") && (e.contains("stage det") || e.contains("stage trk")),
            "{e}"
        );
        let e = refused(&good.replace("input = \"emb\"", "input = \"embed\""));
        assert!(
            e.contains("stage out2") && e.contains("input embed is not a stage"),
            "{e}"
        );
        // A type mismatch: a tracker fed frames.
        let e = refused(&good.replacen("input = \"det\"", "input = \"cam\"", 1));
        assert!(
            e.contains("stage trk (track): takes crops, but its input cam produces frames"),
            "{e}"
        );
        // A detector fed embeddings.
        let e = refused(&good.replace("input = \"cam\"", "input = \"emb\""));
        assert!(e.contains("stage"), "{e}");
        let e = refused(&good.replace("model = \"osnet-x0-25-msmt17\"\n", ""));
        assert!(e.contains("stage attr (onnx): `model` is missing"), "{e}");
        let e = refused(&good.replace("camera = \"cam-0\"", "camera = \"cam-0\"\nmodel = \"x\""));
        assert!(
            e.contains("stage cam (source): `model` does not belong"),
            "{e}"
        );
        let e = refused(&good.replace("rate = 4.0", "rate = 0.0"));
        assert!(e.contains("rate = 0"), "{e}");
        let two =
            format!("{good}\n[[stage]]\nname = \"cam2\"\nkind = \"source\"\ncamera = \"c\"\n");
        assert!(refused(&two).contains("one source"));
        let dangling =
            format!("{good}\n[[stage]]\nname = \"d2\"\nkind = \"detect\"\ninput = \"cam\"\n");
        assert!(refused(&dangling).contains("stage d2 (detect): its output goes nowhere"));
        let from_sink = format!("{good}\n[[stage]]\nname = \"s3\"\nkind = \"sink\"\nsink = \"records\"\ninput = \"out\"\n");
        assert!(refused(&from_sink).contains("its input out is a sink"));
        let dup = format!("{good}\n[[stage]]\nname = \"out\"\nkind = \"sink\"\nsink = \"records\"\ninput = \"emb\"\n");
        assert!(refused(&dup).contains("stage out is defined more than once"));
        // Unknown fields and kinds are refused by the parser, with the field named.
        let e = toml::from_str::<JobSpec>(&good.replace("kind = \"reid\"", "kind = \"reidx\""))
            .expect_err("unknown kind")
            .to_string();
        assert!(e.contains("reidx"), "{e}");
    }

    #[test]
    fn items_are_bounded_and_checked() {
        let item = JobItem {
            job: JobId::new("j").unwrap(),
            to_stage: StageId::new("s").unwrap(),
            from: NodeId::new("n").unwrap(),
            camera: CameraId::new("c").unwrap(),
            seq: 1,
            captured_ms: UnixMs(0),
            data: JobData::Vectors(vec![JobVector {
                bbox: None,
                track: None,
                values: vec![f32::NAN],
            }]),
        };
        assert!(item.validate().unwrap_err().contains("not finite"));
        let mut ok = item.clone();
        ok.data = JobData::Vectors(vec![JobVector {
            bbox: None,
            track: None,
            values: vec![0.5; 8],
        }]);
        let bytes = crate::encode(&ok).unwrap();
        assert_eq!(crate::decode::<JobItem>(&bytes).unwrap(), ok);
        let mut bad = ok.clone();
        bad.data = JobData::Frame(JobFrame {
            width: 4,
            height: 4,
            jpeg: vec![1, 2, 3],
        });
        assert!(bad.validate().unwrap_err().contains("JPEG"));
    }
}
