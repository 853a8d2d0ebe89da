//! The model manifest (`models/manifest.toml`): which files exist, their checksums,
//! and the tensor contract of each model. Parsing and validation only; no I/O on
//! model files here (see [`crate::store`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use crate::error::ModelError;

/// The manifest compiled into the crate (the repository's `models/manifest.toml`).
pub const BUILTIN_MANIFEST: &str = include_str!("../manifest.toml");

/// The schema version this crate understands.
pub const SCHEMA: u32 = 1;

/// A parsed and validated manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema version; must equal [`SCHEMA`].
    pub schema: u32,
    /// Every file under the model directory, with checksum and size.
    #[serde(rename = "file", default)]
    pub files: Vec<FileEntry>,
    /// Every loadable model.
    #[serde(rename = "model", default)]
    pub models: Vec<ModelSpec>,
}

/// One file of the model directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name, relative to the model directory.
    pub file: String,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes (a cheap first check against truncation).
    pub size: u64,
    /// sha256 of the shared pre-converted copy before canonicalisation (fetch script only).
    #[serde(default)]
    pub source_sha256: Option<String>,
    /// How `models/scripts/fetch_models.py` produces it.
    pub recipe: String,
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Object detection.
    Detection,
    /// Appearance embedding (re-ID).
    Embedding,
}

/// The numeric precision a model computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit float (the models as trained).
    #[default]
    Fp32,
    /// 16-bit float: the float model, built as an fp16 engine by TensorRT.
    Fp16,
    /// 8-bit integers: a quantised (QDQ) variant of a float model.
    Int8,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        })
    }
}

/// How to read a model's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// SSD with in-graph post-processing: boxes, classes, scores, count.
    SsdPostprocessed,
    /// SSD box encodings + class scores; decode and NMS outside the graph.
    SsdRaw,
    /// One embedding vector per input image.
    Embedding,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::SsdPostprocessed => "ssd-postprocessed",
            Format::SsdRaw => "ssd-raw",
            Format::Embedding => "embedding",
        })
    }
}

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 8-bit unsigned.
    U8,
    /// 32-bit float.
    F32,
}

/// Memory layout of an image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Batch, height, width, channels.
    Nhwc,
    /// Batch, channels, height, width.
    Nchw,
    /// The image as 2x2 pixel blocks (TensorFlow's `space_to_depth`, block
    /// 2): batch, height / 2, width / 2, then each block's four pixels in
    /// (row, column) order, each pixel's channels
    /// ([`crate::image::space_to_depth`]).
    #[serde(rename = "nhwc-s2d2")]
    NhwcS2d2,
}

impl Layout {
    /// Side of the pixel blocks the tensor holds (1: pixels).
    pub fn block(self) -> usize {
        match self {
            Self::Nhwc | Self::Nchw => 1,
            Self::NhwcS2d2 => 2,
        }
    }
}

/// Name, type and shape of one tensor; `-1` marks a dynamic dimension.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Layout; required for image inputs.
    #[serde(default)]
    pub layout: Option<Layout>,
    /// Dimensions; `-1` = dynamic.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// True when the leading (batch) dimension is dynamic.
    pub fn dynamic_batch(&self) -> bool {
        self.shape.first() == Some(&-1)
    }

    /// (height, width) of an image input in pixels, if fixed in the shape.
    pub fn image_size(&self) -> Option<(usize, usize)> {
        let layout = self.layout?;
        let (h, w) = match (layout, self.shape.as_slice()) {
            (Layout::Nhwc | Layout::NhwcS2d2, [_, h, w, _]) | (Layout::Nchw, [_, _, h, w]) => {
                (*h, *w)
            }
            _ => return None,
        };
        let b = layout.block();
        (h > 0 && w > 0).then_some((h as usize * b, w as usize * b))
    }

    /// Channel count of an image input (of its pixels, for blocks).
    pub fn channels(&self) -> Option<i64> {
        let layout = self.layout?;
        let c = match (layout, self.shape.as_slice()) {
            (Layout::Nhwc | Layout::NhwcS2d2, [_, _, _, c]) | (Layout::Nchw, [_, c, _, _]) => *c,
            _ => return None,
        };
        let cells = (layout.block() * layout.block()) as i64;
        (c % cells == 0).then_some(c / cells)
    }
}

/// One loadable model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Unique name used in configs (`ssd-mobilenet-v2-coco`).
    pub name: String,
    /// What the model is for.
    pub task: Task,
    /// How its outputs are read.
    pub format: Format,
    /// The ONNX file (listed under `[[file]]`).
    pub file: String,
    /// Anchors `.npy` for `ssd-raw` (listed under `[[file]]`).
    #[serde(default)]
    pub anchors: Option<String>,
    /// Licence of the weights.
    pub licence: String,
    /// Provenance: package, version, path, conversion.
    pub source: String,
    /// Class index of "person" in the model's output (detectors).
    #[serde(default)]
    pub person_class: Option<u32>,
    /// SSD box coder scales (y, x, h, w) for `ssd-raw`.
    #[serde(default)]
    pub box_scales: Option<[f32; 4]>,
    /// Per-channel mean, applied after scaling pixels to 0..1 (embedders).
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation (embedders).
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    /// (height, width) crops are resized to, when the input shape leaves it dynamic.
    #[serde(default)]
    pub input_size: Option<[usize; 2]>,
    /// The float model this one is a reduced-precision variant of: the
    /// same inputs, outputs and pre-processing (`precision` says which).
    #[serde(default)]
    pub variant_of: Option<String>,
    /// What the model computes in. Default fp32.
    #[serde(default)]
    pub precision: Precision,
    /// The single input tensor.
    pub input: TensorSpec,
    /// Output tensors, in the order the code reads them.
    pub outputs: Vec<TensorSpec>,
}

impl ModelSpec {
    /// (height, width) the input image must have: from the shape, else `input_size`.
    pub fn input_hw(&self) -> Option<(usize, usize)> {
        self.input
            .image_size()
            .or_else(|| self.input_size.map(|[h, w]| (h, w)))
    }

    fn problems(&self, files: &BTreeSet<&str>, out: &mut Vec<String>) {
        let n = &self.name;
        if !files.contains(self.file.as_str()) {
            out.push(format!(
                "model {n}: file {:?} is not listed under [[file]]",
                self.file
            ));
        }
        if self.input.layout.is_none() {
            out.push(format!(
                "model {n}: input needs a layout (nhwc, nchw or nhwc-s2d2)"
            ));
        }
        if self.input.shape.len() != 4 {
            out.push(format!(
                "model {n}: input shape {:?} is not 4-d",
                self.input.shape
            ));
        }
        if self.input.channels() != Some(3) {
            out.push(format!("model {n}: input must have 3 (RGB) channels"));
        }
        if self.input.shape.iter().skip(1).any(|&d| d == 0 || d < -1) {
            out.push(format!("model {n}: bad input dims {:?}", self.input.shape));
        }
        if self.input_hw().is_none() {
            out.push(format!(
                "model {n}: input height/width are dynamic and no input_size is given"
            ));
        }
        let want_outputs = match self.format {
            Format::SsdPostprocessed => 4,
            Format::SsdRaw => 2,
            Format::Embedding => 1,
        };
        if self.outputs.len() != want_outputs {
            out.push(format!(
                "model {n}: format {} needs {want_outputs} outputs, found {}",
                self.format,
                self.outputs.len()
            ));
        }
        let task_ok = matches!(
            (self.task, self.format),
            (Task::Detection, Format::SsdPostprocessed | Format::SsdRaw)
                | (Task::Embedding, Format::Embedding)
        );
        if !task_ok {
            out.push(format!(
                "model {n}: task {:?} does not go with format {}",
                self.task, self.format
            ));
        }
        match self.format {
            Format::SsdPostprocessed | Format::SsdRaw => {
                if self.input.dtype != DType::U8 {
                    out.push(format!("model {n}: SSD input must be u8"));
                }
                if self.person_class.is_none() {
                    out.push(format!("model {n}: detectors need person_class"));
                }
            }
            Format::Embedding => {
                if self.input.dtype != DType::F32 || self.input.layout != Some(Layout::Nchw) {
                    out.push(format!("model {n}: embedding input must be f32 nchw"));
                }
                if self.mean.is_none() || self.std.is_none() {
                    out.push(format!("model {n}: embedders need mean and std"));
                }
                if let Some(std) = self.std {
                    if std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
                        out.push(format!("model {n}: std must be positive, got {std:?}"));
                    }
                }
                if self.outputs.first().map(|o| o.shape.len()) != Some(2) {
                    out.push(format!("model {n}: embedding output must be [batch, dim]"));
                }
            }
        }
        if self.format == Format::SsdRaw {
            match &self.anchors {
                Some(a) if !files.contains(a.as_str()) => out.push(format!(
                    "model {n}: anchors {a:?} are not listed under [[file]]"
                )),
                None => out.push(format!("model {n}: ssd-raw needs an anchors file")),
                Some(_) => {}
            }
            if self.box_scales.is_none() {
                out.push(format!("model {n}: ssd-raw needs box_scales"));
            }
        }
    }
}

impl Manifest {
    /// The manifest compiled into this crate.
    pub fn builtin() -> Result<Self, ModelError> {
        Self::parse(BUILTIN_MANIFEST, "models/manifest.toml (built in)")
    }

    /// Reads and validates a manifest file.
    pub fn from_path(path: &std::path::Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ModelError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|source| ModelError::ManifestParse {
                origin: origin.to_owned(),
                source,
            })?;
        let problems = manifest.problems();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ModelError::ManifestInvalid {
                origin: origin.to_owned(),
                problems,
            })
        }
    }

    /// Every inconsistency, one line each (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.schema != SCHEMA {
            out.push(format!(
                "schema {} is not supported (expected {SCHEMA})",
                self.schema
            ));
        }
        let mut files = BTreeSet::new();
        for f in &self.files {
            if !files.insert(f.file.as_str()) {
                out.push(format!("file {:?} is listed twice", f.file));
            }
            if f.file.contains('/') || f.file.contains("..") || f.file.is_empty() {
                out.push(format!("file {:?} must be a plain file name", f.file));
            }
            if f.sha256.len() != 64
                || !f
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                out.push(format!(
                    "file {:?}: sha256 must be 64 lower-case hex digits",
                    f.file
                ));
            }
            if f.size == 0 {
                out.push(format!("file {:?}: size must be > 0", f.file));
            }
        }
        let mut names = BTreeMap::new();
        for m in &self.models {
            if names.insert(m.name.as_str(), ()).is_some() {
                out.push(format!("model {:?} is listed twice", m.name));
            }
            m.problems(&files, &mut out);
        }
        self.variant_problems(&mut out);
        out
    }

    /// A variant names a float model it can stand in for: the same task,
    /// format, tensors and pre-processing, one variant per precision.
    fn variant_problems(&self, out: &mut Vec<String>) {
        let mut seen = BTreeSet::new();
        for m in &self.models {
            let Some(base_name) = &m.variant_of else {
                continue;
            };
            let n = &m.name;
            let Some(base) = self.models.iter().find(|b| &b.name == base_name) else {
                out.push(format!(
                    "model {n}: variant_of {base_name:?} names no model"
                ));
                continue;
            };
            if base.variant_of.is_some() || base.precision != Precision::Fp32 {
                out.push(format!(
                    "model {n}: variant_of {base_name:?} must name an fp32 model"
                ));
            }
            if m.precision != Precision::Int8 {
                out.push(format!(
                    "model {n}: a variant must be int8 (fp16 is the fp32 model built by TensorRT), not {}",
                    m.precision
                ));
            }
            if !seen.insert((base_name.as_str(), m.precision.to_string())) {
                out.push(format!("model {base_name}: two {} variants", m.precision));
            }
            let same = m.task == base.task
                && m.format == base.format
                && m.input == base.input
                && m.outputs == base.outputs
                && m.anchors == base.anchors
                && m.person_class == base.person_class
                && m.box_scales == base.box_scales
                && m.mean == base.mean
                && m.std == base.std
                && m.input_size == base.input_size;
            if !same {
                out.push(format!(
                    "model {n}: a variant of {base_name} must have its task, format, tensors and pre-processing"
                ));
            }
        }
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Result<&ModelSpec, ModelError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ModelError::UnknownModel {
                name: name.to_owned(),
                known: self.models.iter().map(|m| m.name.clone()).collect(),
            })
    }

    /// The model to load for `name` at `precision`: `name` itself for fp32
    /// (and for fp16, which TensorRT builds from the float model), or the
    /// manifest's `variant_of = name` model of that precision.
    pub fn variant(&self, name: &str, precision: Precision) -> Result<&ModelSpec, ModelError> {
        let base = self.model(name)?;
        if matches!(precision, Precision::Fp32 | Precision::Fp16) || base.precision == precision {
            return Ok(base);
        }
        let variants = || {
            self.models
                .iter()
                .filter(move |m| m.variant_of.as_deref() == Some(name))
        };
        variants()
            .find(|m| m.precision == precision)
            .ok_or_else(|| ModelError::NoVariant {
                name: name.to_owned(),
                precision: precision.to_string(),
                known: std::iter::once("fp32".to_string())
                    .chain(variants().map(|m| m.precision.to_string()))
                    .collect(),
            })
    }

    /// The `[[file]]` entry called `file`.
    pub fn file(&self, file: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.file == file)
    }

    /// This manifest with `model`'s weights in `file` instead (a model
    /// refresh: new weights for the same graph, so the same inputs, outputs
    /// and pre-processing; a session built from it is checked against the
    /// model's spec like any other). Only a float model can be refreshed:
    /// its reduced-precision variants are other files of their own.
    pub fn refreshed(
        &self,
        model: &str,
        file: &str,
        sha256: &str,
        size: u64,
    ) -> Result<Manifest, ModelError> {
        let spec = self.model(model)?;
        let mut problems = Vec::new();
        if spec.variant_of.is_some() || spec.precision != Precision::Fp32 {
            problems.push(format!(
                "model {model} is a {} variant; a refresh replaces float weights",
                spec.precision
            ));
        }
        if file.is_empty() || file.contains("..") || file.starts_with('/') {
            problems.push(format!(
                "refresh file {file:?} must be a plain path inside the model directory"
            ));
        }
        if self.file(file).is_some() {
            problems.push(format!("refresh file {file:?} is already listed"));
        }
        if !problems.is_empty() {
            return Err(ModelError::ManifestInvalid {
                origin: format!("refresh of {model}"),
                problems,
            });
        }
        let mut out = self.clone();
        out.files.push(FileEntry {
            file: file.to_owned(),
            sha256: sha256.to_owned(),
            size,
            source_sha256: None,
            recipe: "a model refresh from the site's master".into(),
        });
        if let Some(m) = out.models.iter_mut().find(|m| m.name == model) {
            m.file = file.to_owned();
        }
        let problems = out.problems();
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ModelError::ManifestInvalid {
                origin: format!("refresh of {model}"),
                problems,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_is_valid_and_complete() {
        let m = Manifest::builtin().expect("built-in manifest");
        let ssd = m.model("ssd-mobilenet-v2-coco").expect("ssd");
        assert_eq!(ssd.input_hw(), Some((300, 300)));
        assert!(!ssd.input.dynamic_batch());
        let raw = m.model("ssd-mobilenet-v2-coco-raw").expect("raw");
        assert!(raw.input.dynamic_batch());
        assert_eq!(raw.person_class, Some(1));
        let reid = m.model("mobilenetv2-deepsort").expect("reid");
        assert_eq!(reid.input_hw(), Some((224, 224)));
        assert_eq!(reid.outputs[0].shape, vec![-1, 1280]);
    }

    #[test]
    fn unknown_model_lists_known_names() {
        let m = Manifest::builtin().expect("built-in manifest");
        let err = m.model("osnet").expect_err("unknown").to_string();
        assert!(err.contains("ssd-mobilenet-v2-coco"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = BUILTIN_MANIFEST
            .replacen("schema = 1", "schema = 2", 1)
            .replacen(
                "file = \"reid_mobilenetv2_deepsort.onnx\"\nlicence",
                "file = \"nope.onnx\"\nlicence",
                1,
            )
            .replacen("person_class = 1\n", "", 1);
        let err = Manifest::parse(&text, "test")
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("schema 2"), "{err}");
        assert!(err.contains("\"nope.onnx\" is not listed"), "{err}");
        assert!(err.contains("detectors need person_class"), "{err}");
    }

    #[test]
    fn an_input_of_pixel_blocks_is_an_image_of_twice_its_size() {
        let m = Manifest::builtin().expect("built-in manifest");
        for name in ["ssd-mobilenet-v2-person", "ssd-mobilenet-v2-person-int8"] {
            let spec = m.model(name).expect(name);
            assert_eq!(spec.input.layout, Some(Layout::NhwcS2d2));
            assert_eq!(spec.input_hw(), Some((300, 300)), "{name}");
            assert_eq!(spec.input.channels(), Some(3), "{name}");
        }
        let person = m.model("ssd-mobilenet-v2-person").expect("person");
        let int8 = m
            .variant("ssd-mobilenet-v2-person", Precision::Int8)
            .expect("int8");
        assert_eq!(int8.name, "ssd-mobilenet-v2-person-int8");
        assert_eq!(int8.input, person.input);
        // 12 values a block are 4 pixels of 3 channels; 10 are not.
        let text = BUILTIN_MANIFEST.replacen(
            "shape = [-1, 150, 150, 12]",
            "shape = [-1, 150, 150, 10]",
            1,
        );
        let err = Manifest::parse(&text, "test")
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("ssd-mobilenet-v2-person: input must have 3 (RGB) channels"),
            "{err}"
        );
    }

    #[test]
    fn a_variant_stands_in_for_its_float_model_only() {
        let m = Manifest::builtin().expect("built-in manifest");
        let raw = "ssd-mobilenet-v2-coco-raw";
        assert_eq!(m.variant(raw, Precision::Fp32).expect("fp32").name, raw);
        assert_eq!(m.variant(raw, Precision::Fp16).expect("fp16").name, raw);
        let int8 = m.variant(raw, Precision::Int8).expect("int8");
        assert_eq!(int8.name, "ssd-mobilenet-v2-coco-raw-int8");
        let err = m
            .variant("osnet-x0-25-msmt17", Precision::Int8)
            .expect_err("none")
            .to_string();
        assert!(
            err.contains("no int8 variant") && err.contains("fp32"),
            "{err}"
        );
        // A variant that differs from its model, names none, or is not int8.
        let int8_entry = "name = \"ssd-mobilenet-v2-coco-raw-int8\"\nvariant_of = \"ssd-mobilenet-v2-coco-raw\"\nprecision = \"int8\"";
        for (bad, says) in [
            (
                int8_entry.replace(
                    "variant_of = \"ssd-mobilenet-v2-coco-raw\"",
                    "variant_of = \"ssd-mobilenet-v2-coco\"",
                ),
                "must have its task, format, tensors",
            ),
            (
                int8_entry.replace(
                    "variant_of = \"ssd-mobilenet-v2-coco-raw\"",
                    "variant_of = \"nope\"",
                ),
                "names no model",
            ),
            (
                int8_entry.replace("precision = \"int8\"", "precision = \"fp16\""),
                "must be int8",
            ),
        ] {
            let text = BUILTIN_MANIFEST.replacen(int8_entry, &bad, 1);
            assert_ne!(text, BUILTIN_MANIFEST);
            let err = Manifest::parse(&text, "test").expect_err(says).to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = BUILTIN_MANIFEST.replacen("schema = 1", "schema = 1\ncolour = \"red\"", 1);
        let err = Manifest::parse(&text, "test")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
