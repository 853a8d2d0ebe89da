//! What each stage kind does to an item, and items to and from the wire.
//!
//! Models are loaded when a job's worker starts (not per item): a `detect`
//! stage gets its own detector (the node's `[detector]` settings), a `reid`
//! stage its own embedder (`[embedder]`), an `onnx` stage a session on its
//! manifest model, which it feeds RGB resized to the model's input, scaled to
//! 0..1 and normalised by the manifest's mean and std, NCHW.

use std::collections::HashMap;

use anyhow::{Context, Result};
use vidar_config::Config;
use vidar_detectors::{Detector, RgbFrame};
use vidar_models::SessionFactory;
use vidar_protocol::messages::jobs::MAX_JOB_ITEM_ENTRIES;
use vidar_protocol::messages::{
    jpeg_size, DataKind, JobCrop, JobData, JobFrame, JobItem, JobStage, JobVector, SinkKind,
    StageKind, MAX_CROP_SIDE,
};
use vidar_protocol::{BBox, CameraId, JobId, NodeId, StageId, UnixMs};
use vidar_reid::Embedder;
use vidar_tracker::{Tracker, TrackerConfig};

use crate::media::{crop_jpeg, decode_jpeg, MAX_DECODED_SIDE};
use crate::recorder::Recorder;

/// Longest side of a person crop a `detect` stage passes on, pixels.
pub const CROP_MAX_SIDE: u32 = 256;
/// JPEG quality of frames and crops a job carries.
pub const JPEG_QUALITY: u8 = 80;

/// What an item holds on this node.
#[derive(Debug, Clone)]
pub enum Data {
    /// A frame, decoded.
    Frame(image::RgbImage),
    /// A frame's person crops (JPEG), tracked or not.
    Crops(Vec<JobCrop>),
    /// A frame's vectors.
    Vectors(Vec<JobVector>),
}

/// One item of a job on this node: what came of one frame its source took.
#[derive(Debug, Clone)]
pub struct Item {
    /// The camera.
    pub camera: CameraId,
    /// Its frame's position among those the source took, from 1.
    pub seq: u64,
    /// Its frame's capture time.
    pub captured_ms: UnixMs,
    /// What it holds.
    pub data: Data,
}

impl Item {
    /// The wire form, for the node of `to_stage` (frames are JPEG-encoded).
    pub fn to_wire(&self, job: &JobId, to_stage: &StageId, from: &NodeId) -> Result<JobItem> {
        let data = match &self.data {
            Data::Frame(rgb) => {
                let frame = RgbFrame::packed(rgb.width(), rgb.height(), rgb.as_raw())
                    .map_err(|e| anyhow::anyhow!("frame: {e}"))?;
                let jpeg = crop_jpeg(frame, &full(rgb), MAX_CROP_SIDE, JPEG_QUALITY)
                    .context("encoding the frame")?;
                let (width, height) = jpeg_size(&jpeg).context("the frame's JPEG")?;
                JobData::Frame(JobFrame {
                    width,
                    height,
                    jpeg,
                })
            }
            Data::Crops(c) => JobData::Crops(c.clone()),
            Data::Vectors(v) => JobData::Vectors(v.clone()),
        };
        Ok(JobItem {
            job: job.clone(),
            to_stage: to_stage.clone(),
            from: from.clone(),
            camera: self.camera.clone(),
            seq: self.seq,
            captured_ms: self.captured_ms,
            data,
        })
    }

    /// From the wire (checked by the caller to carry what its stage takes).
    pub fn from_wire(item: JobItem) -> Result<Item, String> {
        let data = match item.data {
            JobData::Frame(f) => Data::Frame(decode_jpeg(&f.jpeg, f.width, f.height)?),
            JobData::Crops(c) => Data::Crops(c),
            JobData::Vectors(v) => Data::Vectors(v),
        };
        Ok(Item {
            camera: item.camera,
            seq: item.seq,
            captured_ms: item.captured_ms,
            data,
        })
    }
}

fn full(rgb: &image::RgbImage) -> BBox {
    BBox {
        x: 0.0,
        y: 0.0,
        w: rgb.width() as f32,
        h: rgb.height() as f32,
    }
}

fn decode_crop(c: &JobCrop) -> Result<image::RgbImage, String> {
    if c.width > MAX_DECODED_SIDE || c.height > MAX_DECODED_SIDE {
        return Err(format!(
            "crop {}x{} is larger than {MAX_DECODED_SIDE} pixels a side",
            c.width, c.height
        ));
    }
    decode_jpeg(&c.jpeg, c.width, c.height)
}

/// What the node needs to build stages.
pub struct Builders {
    /// Sessions on the manifest's models.
    pub factory: SessionFactory,
    /// The node's detector settings.
    pub detector: vidar_detectors::SsdConfig,
    /// The node's embedder settings.
    pub embedder: vidar_reid::EmbedderConfig,
    /// The node's tracker settings.
    pub tracker: TrackerConfig,
    /// Where `records` sinks write.
    pub recorder: Recorder,
}

impl Clone for Builders {
    fn clone(&self) -> Self {
        Builders {
            factory: self.factory.clone(),
            detector: self.detector.clone(),
            embedder: self.embedder.clone(),
            tracker: self.tracker.clone(),
            recorder: self.recorder.share(),
        }
    }
}

impl std::fmt::Debug for Builders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builders").finish_non_exhaustive()
    }
}

/// An `onnx` stage's model and its pre-processing.
pub struct OnnxStage {
    model: vidar_models::Model,
    hw: (usize, usize),
    mean: [f32; 3],
    std: [f32; 3],
    input: Vec<f32>,
}

impl std::fmt::Debug for OnnxStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxStage")
            .field("model", &self.model.spec().name)
            .finish_non_exhaustive()
    }
}

impl OnnxStage {
    fn load(factory: &SessionFactory, name: &str) -> Result<Self> {
        let model = factory
            .load(name)
            .with_context(|| format!("loading model {name:?}"))?;
        let hw = model
            .spec()
            .input_hw()
            .with_context(|| format!("model {name:?} has no fixed image size"))?;
        Ok(OnnxStage {
            hw,
            mean: model.spec().mean.unwrap_or([0.0; 3]),
            std: model.spec().std.unwrap_or([1.0; 3]),
            model,
            input: Vec::new(),
        })
    }

    /// One vector per image.
    fn run(&mut self, images: &[image::RgbImage]) -> Result<Vec<Vec<f32>>, String> {
        let (h, w) = self.hw;
        let per = 3 * h * w;
        let batch = self.model.max_batch().max(1);
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(batch) {
            self.input.clear();
            self.input.resize(chunk.len() * per, 0.0);
            for (k, img) in chunk.iter().enumerate() {
                let small = image::imageops::resize(
                    img,
                    w as u32,
                    h as u32,
                    image::imageops::FilterType::Triangle,
                );
                let dst = &mut self.input[k * per..(k + 1) * per];
                for (i, p) in small.pixels().enumerate() {
                    for c in 0..3 {
                        dst[c * h * w + i] =
                            (f32::from(p.0[c]) / 255.0 - self.mean[c]) / self.std[c];
                    }
                }
            }
            let n = chunk.len();
            let values = self
                .model
                .run(&[n, 3, h, w], &self.input, |o| {
                    let (_, data) = o.f32(0)?;
                    Ok(data.to_vec())
                })
                .map_err(|e| e.to_string())?;
            let each = values.len() / n.max(1);
            out.extend(values.chunks(each.max(1)).take(n).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

/// A stage ready to run.
pub enum Exec {
    /// The source: items come from the camera.
    Source,
    /// The person detector.
    Detect(Box<dyn Detector>),
    /// A tracker per camera.
    Track(HashMap<CameraId, Tracker>, TrackerConfig),
    /// The re-ID embedder.
    Reid(Box<dyn Embedder>),
    /// A manifest model.
    Onnx(Box<OnnxStage>),
    /// Results into the store.
    Records(Recorder),
    /// Results on the job's output topic.
    Topic(vidar_link::Publisher<JobItem>),
}

impl std::fmt::Debug for Exec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Exec::Source => "Source",
            Exec::Detect(_) => "Detect",
            Exec::Track(..) => "Track",
            Exec::Reid(_) => "Reid",
            Exec::Onnx(_) => "Onnx",
            Exec::Records(_) => "Records",
            Exec::Topic(_) => "Topic",
        })
    }
}

impl Exec {
    /// Builds `stage` of `job` (loading its model).
    pub fn build(
        b: &Builders,
        link: &vidar_link::Link,
        me: &NodeId,
        job: &JobId,
        stage: &JobStage,
    ) -> Result<Exec> {
        Ok(match stage.kind {
            StageKind::Source => Exec::Source,
            StageKind::Detect => {
                Exec::Detect(Box::new(b.detector.build(&b.factory).with_context(
                    || format!("loading detector {:?}", b.detector.model),
                )?))
            }
            StageKind::Track => Exec::Track(HashMap::new(), b.tracker.clone()),
            StageKind::Reid => {
                Exec::Reid(Box::new(b.embedder.build(&b.factory).with_context(
                    || format!("loading re-ID model {:?}", b.embedder.model),
                )?))
            }
            StageKind::Onnx => {
                let name = stage
                    .model
                    .as_deref()
                    .context("an onnx stage needs a model")?;
                Exec::Onnx(Box::new(OnnxStage::load(&b.factory, name)?))
            }
            StageKind::Sink => match stage.sink {
                Some(SinkKind::Topic) => Exec::Topic(
                    link.publisher::<JobItem>(&link.keys().job_output(me, job))
                        .map_err(|e| anyhow::anyhow!("declaring the job's output: {e}"))?,
                ),
                _ => Exec::Records(b.recorder.share()),
            },
        })
    }

    /// Runs the stage on `item`; a sink returns none.
    pub fn run(
        &mut self,
        item: Item,
        kind_in: Option<DataKind>,
        job: &JobId,
        stage: &StageId,
        me: &NodeId,
    ) -> Result<Option<Item>, String> {
        let Item {
            camera,
            seq,
            captured_ms,
            data,
        } = item;
        let wrap = |data: Data| {
            Some(Item {
                camera: camera.clone(),
                seq,
                captured_ms,
                data,
            })
        };
        match (self, data) {
            (Exec::Source, data) => Ok(wrap(data)),
            (Exec::Detect(d), Data::Frame(rgb)) => {
                let frame: vidar_detectors::Picture<'_> =
                    RgbFrame::packed(rgb.width(), rgb.height(), rgb.as_raw())
                        .map_err(|e| format!("frame: {e}"))?
                        .into();
                let dets = d
                    .detect(std::slice::from_ref(&frame))
                    .map_err(|e| e.to_string())?;
                let crops = dets
                    .first()
                    .into_iter()
                    .flatten()
                    .take(MAX_JOB_ITEM_ENTRIES)
                    .filter_map(|det| {
                        let jpeg = crop_jpeg(frame, &det.bbox, CROP_MAX_SIDE, JPEG_QUALITY)?;
                        let (width, height) = jpeg_size(&jpeg)?;
                        Some(JobCrop {
                            bbox: det.bbox,
                            score: det.score,
                            track: None,
                            width,
                            height,
                            jpeg,
                        })
                    })
                    .collect();
                Ok(wrap(Data::Crops(crops)))
            }
            (Exec::Track(trackers, config), Data::Crops(mut crops)) => {
                let tracker = match trackers.entry(camera.clone()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(config.build(&()).map_err(|e| e.to_string())?)
                    }
                };
                let dets: Vec<vidar_tracker::Detection> = crops
                    .iter()
                    .map(|c| vidar_tracker::Detection::new(c.bbox, c.score))
                    .collect();
                let res = match tracker.update(seq, &dets) {
                    // The source started again (a new worker numbers its
                    // frames from 1, after a plan moved or restarted it): a
                    // new stream of frames, so a new tracker. Without this
                    // a tracker placed elsewhere refused every frame after.
                    Err(vidar_tracker::TrackError::FrameOutOfOrder { .. }) => {
                        *tracker = config.build(&()).map_err(|e| e.to_string())?;
                        tracker.update(seq, &dets)
                    }
                    r => r,
                }
                .map_err(|e| e.to_string())?;
                for t in &res.tracks {
                    if let Some(c) = t.detection.and_then(|d| crops.get_mut(d)) {
                        c.track = Some(t.id);
                    }
                }
                Ok(wrap(Data::Crops(crops)))
            }
            (Exec::Reid(e), Data::Crops(crops)) => {
                let images = crops
                    .iter()
                    .map(decode_crop)
                    .collect::<Result<Vec<_>, _>>()?;
                let frames = images
                    .iter()
                    .map(|i| {
                        RgbFrame::packed(i.width(), i.height(), i.as_raw())
                            .map(|frame| vidar_reid::Crop {
                                frame: frame.into(),
                                bbox: full(i),
                            })
                            .map_err(|e| format!("crop: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let embeddings = e.embed(&frames).map_err(|e| e.to_string())?;
                Ok(wrap(Data::Vectors(
                    crops
                        .iter()
                        .zip(embeddings)
                        .map(|(c, v)| JobVector {
                            bbox: Some(c.bbox),
                            track: c.track,
                            values: v.as_slice().to_vec(),
                        })
                        .collect(),
                )))
            }
            (Exec::Onnx(m), Data::Frame(rgb)) => {
                let values = m.run(std::slice::from_ref(&rgb))?;
                Ok(wrap(Data::Vectors(
                    values
                        .into_iter()
                        .map(|values| JobVector {
                            bbox: None,
                            track: None,
                            values,
                        })
                        .collect(),
                )))
            }
            (Exec::Onnx(m), Data::Crops(crops)) => {
                let images = crops
                    .iter()
                    .map(decode_crop)
                    .collect::<Result<Vec<_>, _>>()?;
                let values = m.run(&images)?;
                Ok(wrap(Data::Vectors(
                    crops
                        .iter()
                        .zip(values)
                        .map(|(c, values)| JobVector {
                            bbox: Some(c.bbox),
                            track: c.track,
                            values,
                        })
                        .collect(),
                )))
            }
            (Exec::Records(r), data) => {
                let items = match data {
                    Data::Frame(_) => vec![JobVector {
                        bbox: None,
                        track: None,
                        values: Vec::new(),
                    }],
                    Data::Crops(c) => c
                        .into_iter()
                        .map(|c| JobVector {
                            bbox: Some(c.bbox),
                            track: c.track,
                            values: Vec::new(),
                        })
                        .collect(),
                    Data::Vectors(v) => v,
                };
                r.job_result(vidar_store::JobResult {
                    job: job.clone(),
                    stage: stage.clone(),
                    camera,
                    captured_ms,
                    item: seq,
                    kind: kind_in.unwrap_or(DataKind::Frames),
                    items,
                });
                Ok(None)
            }
            (Exec::Topic(p), data) => {
                let item = Item {
                    camera,
                    seq,
                    captured_ms,
                    data,
                }
                .to_wire(job, stage, me)
                .map_err(|e| format!("{e:#}"))?;
                p.put(&item).map_err(|e| e.to_string())?;
                Ok(None)
            }
            (_, data) => Err(format!(
                "stage {stage} got {} it does not take",
                match data {
                    Data::Frame(_) => "a frame",
                    Data::Crops(_) => "crops",
                    Data::Vectors(_) => "vectors",
                }
            )),
        }
    }
}
