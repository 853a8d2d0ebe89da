//! The one place that loads ONNX Runtime and builds sessions: the runtime library
//! from `ORT_DYLIB_PATH` (never downloaded), execution providers chosen by config
//! with CPU fallback, thread settings, and validation of each session against its
//! manifest spec. Callers get a [`Model`] and run it through plain slices, so no
//! other crate touches `ort` types.

use std::path::PathBuf;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{Session, SessionOutputs};
use ort::value::{TensorElementType, TensorRef, ValueType};
use serde::Deserialize;
use vidar_config::{Config, Problem, Problems};

use crate::error::ModelError;
use crate::manifest::{DType, Layout, ModelSpec, Precision, TensorSpec};
use crate::store::{verify_bytes, ModelStore};

/// Environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// An execution provider to try, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// Plain CPU (always available; the implicit last resort).
    Cpu,
    /// NVIDIA CUDA.
    Cuda {
        /// GPU index. Default 0.
        #[serde(default)]
        device_id: i32,
    },
    /// NVIDIA TensorRT (through ONNX Runtime's TensorRT provider).
    #[serde(rename = "tensorrt")]
    TensorRt {
        /// GPU index. Default 0.
        #[serde(default)]
        device_id: i32,
        /// Build FP16 engines. Default true.
        #[serde(default = "default_true")]
        fp16: bool,
        /// Directory where built engines are cached between runs (building takes minutes on a Jetson).
        /// Default: no cache.
        #[serde(default)]
        engine_cache_dir: Option<PathBuf>,
        /// Largest batch the engine's optimisation profile covers, for dynamic-batch models. Default 8.
        #[serde(default = "default_max_batch")]
        max_batch: usize,
    },
}

fn default_true() -> bool {
    true
}

fn default_max_batch() -> usize {
    8
}

impl ProviderConfig {
    /// ONNX Runtime's name for the provider.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::Cpu => "CPUExecutionProvider",
            ProviderConfig::Cuda { .. } => "CUDAExecutionProvider",
            ProviderConfig::TensorRt { .. } => "TensorrtExecutionProvider",
        }
    }
}

/// How sessions are built: providers, threads, optimisation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Providers to try in order; CPU is used when none of them works. Default `[cpu]`.
    pub providers: Vec<ProviderConfig>,
    /// Fall back to CPU (with a warning) when a requested provider is unavailable;
    /// when false that is an error. Default true.
    pub cpu_fallback: bool,
    /// Threads inside one operator; 0 = ONNX Runtime's default (one per core).
    /// Default 1: on a CPU, one run per core in parallel (an edge node starts
    /// one detector thread per core) uses the cores better than one run spread
    /// over all of them, whose pool threads spin between operators and take
    /// the cores decoding needs (docs/benchmarks.md: 677 of 2,400 frames lost
    /// at 8 cameras with 0, none with 1, on a 2-core box).
    pub intra_threads: usize,
    /// Threads across independent operators; 0 = sequential execution. Default 0.
    pub inter_threads: usize,
    /// Treat subnormal floats as zero while a model runs on the CPU (x86-64
    /// flush-to-zero and denormals-are-zero, on the calling thread and ONNX
    /// Runtime's own threads; see [`crate::denormal`]). Subnormal weights make
    /// OSNet x0.25 about 7x slower without it; outputs do not change measurably.
    /// Default true.
    pub flush_denormals: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            providers: vec![ProviderConfig::Cpu],
            cpu_fallback: true,
            intra_threads: 1,
            inter_threads: 0,
            flush_denormals: true,
        }
    }
}

impl Config for RuntimeConfig {
    type Output = SessionFactory;
    /// Where the models come from.
    type Context = ModelStore;
    type Error = ModelError;

    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let key = format!("providers[{i}]");
            if let ProviderConfig::TensorRt { max_batch, .. } = provider {
                if *max_batch == 0 || *max_batch > 256 {
                    p.push(
                        format!("{key}.max_batch"),
                        format!("must be in 1..=256, got {max_batch}"),
                    );
                }
            }
            if let ProviderConfig::Cuda { device_id } | ProviderConfig::TensorRt { device_id, .. } =
                provider
            {
                if *device_id < 0 {
                    p.push(
                        format!("{key}.device_id"),
                        format!("must be >= 0 ({}), got {device_id}", provider.name()),
                    );
                }
            }
        }
        for (key, n) in [
            ("intra_threads", self.intra_threads),
            ("inter_threads", self.inter_threads),
        ] {
            if n > 1024 {
                p.push(key, format!("{n} threads is not plausible (at most 1024)"));
            }
        }
        p.into_vec()
    }

    /// A session factory for the models of `store`; loads the runtime library.
    fn build(&self, store: &ModelStore) -> Result<SessionFactory, ModelError> {
        SessionFactory::new(store.clone(), self.clone())
    }
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library from `ORT_DYLIB_PATH` once.
pub fn environment() -> Result<Environment, ModelError> {
    if let Some(env) = ENVIRONMENT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        return Ok(env.clone());
    }
    let path =
        PathBuf::from(std::env::var_os(ORT_DYLIB_ENV).ok_or(ModelError::RuntimeLibraryUnset)?);
    environment_from(&path)
}

/// The process-wide ONNX Runtime environment, loading the library from `path` if none is
/// loaded yet (a library already loaded stays: ONNX Runtime is loaded once per process).
pub fn environment_from(path: &std::path::Path) -> Result<Environment, ModelError> {
    let mut guard = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    if !path.is_file() {
        return Err(ModelError::RuntimeLibraryMissing {
            path: path.to_owned(),
        });
    }
    let builder = ort::init_from(path).map_err(|e| ModelError::RuntimeLibraryLoad {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let env = builder
        .with_name("vidar")
        .with_telemetry(false)
        .build()
        .map_err(|e| ModelError::Environment(e.to_string()))?;
    tracing::info!(library = %path.display(), "ONNX Runtime loaded");
    *guard = Some(env.clone());
    Ok(env)
}

/// Builds validated sessions for the models of a [`ModelStore`].
#[derive(Debug, Clone)]
pub struct SessionFactory {
    store: ModelStore,
    config: RuntimeConfig,
}

impl SessionFactory {
    /// A factory; checks the config and loads the runtime library.
    pub fn new(store: ModelStore, config: RuntimeConfig) -> Result<Self, ModelError> {
        config.check()?;
        environment()?;
        Ok(Self { store, config })
    }

    /// The runtime settings sessions are built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The store the models come from.
    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    /// Loads model `name`: verifies its file, builds the session on the best
    /// available provider and checks the session against the manifest.
    pub fn load(&self, name: &str) -> Result<Model, ModelError> {
        self.load_spec(self.store.manifest().model(name)?.clone(), None)
    }

    /// Loads model `name` at `precision` (`None`: as the model is, with the
    /// providers' own settings). int8 loads the manifest's int8 variant of
    /// `name` (and lets TensorRT build int8 engines from its QDQ nodes);
    /// fp16 and fp32 load `name` and turn TensorRT's fp16 engines on or off.
    /// fp16 needs the TensorRT provider: on CPU it is refused, naming why.
    pub fn load_at(&self, name: &str, precision: Option<Precision>) -> Result<Model, ModelError> {
        let Some(p) = precision else {
            return self.load(name);
        };
        let tensorrt = self
            .config
            .providers
            .iter()
            .any(|provider| matches!(provider, ProviderConfig::TensorRt { .. }));
        if p == Precision::Fp16 && !tensorrt {
            return Err(ModelError::PrecisionUnavailable {
                model: name.to_owned(),
                precision: p.to_string(),
                reason: "fp16 runs only through the TensorRT provider (models.runtime.providers = [{ kind = \"tensorrt\" }])".into(),
            });
        }
        let spec = self.store.manifest().variant(name, p)?.clone();
        let fp16 = match p {
            Precision::Fp32 => Some(false),
            Precision::Fp16 => Some(true),
            Precision::Int8 => None,
        };
        self.load_spec(spec, fp16)
    }

    /// Loads `spec`; `fp16` overrides TensorRT's fp16 setting when given.
    fn load_spec(&self, spec: ModelSpec, fp16: Option<bool>) -> Result<Model, ModelError> {
        let path = self.store.dir().join(&spec.file);
        let entry =
            self.store
                .manifest()
                .file(&spec.file)
                .ok_or_else(|| ModelError::ManifestInvalid {
                    origin: "manifest".into(),
                    problems: vec![format!("file {:?} is not listed", spec.file)],
                })?;
        let bytes = read_verified(&path, entry)?;
        let env = environment()?;
        let session_err = |e: ort::Error| ModelError::Session {
            model: spec.name.clone(),
            path: path.clone(),
            message: e.to_string(),
        };
        let mut builder = Session::builder(&env)
            .map_err(session_err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| session_err(e.into()))?;
        if self.config.intra_threads > 0 {
            builder = builder
                .with_intra_threads(self.config.intra_threads)
                .map_err(|e| session_err(e.into()))?;
        }
        if self.config.inter_threads > 0 {
            builder = builder
                .with_parallel_execution(true)
                .map_err(|e| session_err(e.into()))?
                .with_inter_threads(self.config.inter_threads)
                .map_err(|e| session_err(e.into()))?;
        }
        if self.config.flush_denormals {
            builder = builder
                .with_flush_to_zero()
                .map_err(|e| session_err(e.into()))?;
        }
        let (mut builder, provider) = self.register_providers(builder, &spec, fp16)?;
        let session = {
            // ONNX Runtime's flush option also sets the mode on the thread
            // that builds the session, for good; the guard puts the thread's
            // own mode back. Without the option nothing is touched, so the
            // graph is optimised in exact arithmetic.
            let _restore = self
                .config
                .flush_denormals
                .then(crate::denormal::FlushDenormals::set);
            builder.commit_from_memory(&bytes).map_err(session_err)?
        };
        check_session(&session, &spec)?;
        tracing::info!(model = %spec.name, provider, file = %path.display(), "model loaded");
        Ok(Model {
            spec,
            session,
            provider,
            flush_denormals: self.config.flush_denormals,
        })
    }

    fn register_providers(
        &self,
        mut builder: SessionBuilder,
        spec: &ModelSpec,
        fp16_override: Option<bool>,
    ) -> Result<(SessionBuilder, &'static str), ModelError> {
        for p in &self.config.providers {
            let attempt = match p {
                ProviderConfig::Cpu => return Ok((builder, p.name())),
                ProviderConfig::Cuda { device_id } => try_provider::<ep::CUDA>(
                    builder,
                    ep::CUDA::default().with_device_id(*device_id).build(),
                ),
                ProviderConfig::TensorRt {
                    device_id,
                    fp16,
                    engine_cache_dir,
                    max_batch,
                } => {
                    let mut trt = ep::TensorRT::default()
                        .with_device_id(*device_id)
                        .with_fp16(fp16_override.unwrap_or(*fp16))
                        // A QDQ model carries its own scales (explicit
                        // quantisation): no calibration table.
                        .with_int8(spec.precision == Precision::Int8);
                    if let Some(dir) = engine_cache_dir {
                        trt = trt
                            .with_engine_cache(true)
                            .with_engine_cache_path(dir.display())
                            .with_timing_cache(true)
                            .with_timing_cache_path(dir.display());
                    }
                    if let Some([min, opt, max]) = trt_profiles(spec, *max_batch) {
                        trt = trt
                            .with_profile_min_shapes(min)
                            .with_profile_opt_shapes(opt)
                            .with_profile_max_shapes(max);
                    }
                    try_provider::<ep::TensorRT>(builder, trt.build())
                }
            };
            match attempt {
                Attempt::Registered(b) => return Ok((b, p.name())),
                Attempt::Unavailable(b, reason) => {
                    if !self.config.cpu_fallback {
                        return Err(ModelError::ProviderUnavailable {
                            provider: p.name().into(),
                            model: spec.name.clone(),
                            reason,
                        });
                    }
                    tracing::warn!(model = %spec.name, provider = p.name(), %reason, "execution provider unavailable, trying the next one (CPU last)");
                    builder = b;
                }
            }
        }
        Ok((builder, ProviderConfig::Cpu.name()))
    }
}

/// Outcome of registering one execution provider; the builder comes back either way.
enum Attempt {
    Registered(SessionBuilder),
    Unavailable(SessionBuilder, String),
}

fn try_provider<E: ExecutionProvider>(
    builder: SessionBuilder,
    dispatch: ep::ExecutionProviderDispatch,
) -> Attempt {
    match E::is_available() {
        Ok(true) => {}
        Ok(false) => return Attempt::Unavailable(
            builder,
            "this ONNX Runtime library was built without it (the PyPI CPU wheel); use a GPU build"
                .into(),
        ),
        Err(e) => return Attempt::Unavailable(builder, e.to_string()),
    }
    match builder.with_execution_providers([dispatch.error_on_failure()]) {
        Ok(b) => Attempt::Registered(b),
        Err(e) => {
            let reason = e.to_string();
            Attempt::Unavailable(e.recover(), reason)
        }
    }
}

/// TensorRT optimisation profiles (min, opt, max) for inputs with dynamic dimensions.
fn trt_profiles(spec: &ModelSpec, max_batch: usize) -> Option<[String; 3]> {
    let dynamic = spec.input.shape.iter().any(|&d| d < 0);
    if !dynamic {
        return None;
    }
    let (h, w) = spec.input_hw()?;
    let dims_for = |batch: usize| -> String {
        let mut dims: Vec<String> = spec.input.shape.iter().map(|d| d.to_string()).collect();
        if spec.input.dynamic_batch() {
            dims[0] = batch.to_string();
        }
        let (hi, wi, block) = match spec.input.layout {
            Some(l @ (Layout::Nhwc | Layout::NhwcS2d2)) => (1, 2, l.block()),
            _ => (2, 3, 1),
        };
        dims[hi] = (h / block).to_string();
        dims[wi] = (w / block).to_string();
        format!("{}:{}", spec.input.name, dims.join("x"))
    };
    Some([
        dims_for(1),
        dims_for(max_batch.div_ceil(2).max(1)),
        dims_for(max_batch),
    ])
}

fn read_verified(
    path: &std::path::Path,
    entry: &crate::manifest::FileEntry,
) -> Result<Vec<u8>, ModelError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::FileMissing {
                path: path.to_owned(),
            })
        }
        Err(source) => {
            return Err(ModelError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    verify_bytes(path, &bytes, entry)?;
    Ok(bytes)
}

fn dtype_of(t: TensorElementType) -> Option<DType> {
    match t {
        TensorElementType::Uint8 => Some(DType::U8),
        TensorElementType::Float32 => Some(DType::F32),
        _ => None,
    }
}

fn compare(
    kind: &str,
    spec: &TensorSpec,
    actual: Option<(&str, &ValueType)>,
    problems: &mut Vec<String>,
) {
    let Some((name, ty)) = actual else {
        problems.push(format!("{kind} {:?} is missing from the graph", spec.name));
        return;
    };
    if name != spec.name {
        problems.push(format!(
            "{kind} is named {name:?} in the graph, the manifest says {:?}",
            spec.name
        ));
    }
    let (Some(t), Some(shape)) = (ty.tensor_type(), ty.tensor_shape()) else {
        problems.push(format!("{kind} {name:?} is not a tensor"));
        return;
    };
    if dtype_of(t) != Some(spec.dtype) {
        problems.push(format!(
            "{kind} {name:?} has element type {t:?}, the manifest says {:?}",
            spec.dtype
        ));
    }
    let dims: Vec<i64> = shape.iter().copied().collect();
    let same = dims.len() == spec.shape.len()
        && dims
            .iter()
            .zip(&spec.shape)
            .all(|(&a, &s)| a == s || (s == -1 && a < 0));
    if !same {
        problems.push(format!(
            "{kind} {name:?} has shape {dims:?}, the manifest says {:?}",
            spec.shape
        ));
    }
}

fn check_session(session: &Session, spec: &ModelSpec) -> Result<(), ModelError> {
    let mut problems = Vec::new();
    if session.inputs().len() != 1 {
        problems.push(format!(
            "the graph has {} inputs, expected 1",
            session.inputs().len()
        ));
    }
    let input = session.inputs().first().map(|o| (o.name(), o.dtype()));
    compare("input", &spec.input, input, &mut problems);
    if session.outputs().len() != spec.outputs.len() {
        problems.push(format!(
            "the graph has {} outputs, the manifest lists {}",
            session.outputs().len(),
            spec.outputs.len()
        ));
    }
    for out_spec in &spec.outputs {
        let actual = session
            .outputs()
            .iter()
            .find(|o| o.name() == out_spec.name)
            .map(|o| (o.name(), o.dtype()));
        compare("output", out_spec, actual, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ModelError::SpecMismatch {
            model: spec.name.clone(),
            problems,
        })
    }
}

/// A loaded, validated model: its spec and its ONNX Runtime session.
#[derive(Debug)]
pub struct Model {
    spec: ModelSpec,
    session: Session,
    provider: &'static str,
    flush_denormals: bool,
}

/// Element types a model input can take.
pub trait InputElement:
    ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static
{
    /// The manifest's name for it.
    const DTYPE: DType;
}

impl InputElement for u8 {
    const DTYPE: DType = DType::U8;
}

impl InputElement for f32 {
    const DTYPE: DType = DType::F32;
}

impl Model {
    /// The manifest entry.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The execution provider the session was built with (ONNX Runtime's name).
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Largest batch one run accepts (`usize::MAX` when the batch is dynamic).
    pub fn max_batch(&self) -> usize {
        match self.spec.input.shape.first() {
            Some(&d) if d > 0 => d as usize,
            _ => usize::MAX,
        }
    }

    /// Runs the model on `data` (shape `shape`, no copy) and hands the outputs to `read`.
    pub fn run<T: InputElement, R>(
        &mut self,
        shape: &[usize],
        data: &[T],
        read: impl FnOnce(&Outputs<'_, '_>) -> Result<R, ModelError>,
    ) -> Result<R, ModelError> {
        self.check_input(shape, data.len(), T::DTYPE)?;
        let name = self.spec.name.clone();
        let inference = |e: ort::Error| ModelError::Inference {
            model: name.clone(),
            message: e.to_string(),
        };
        let tensor = TensorRef::from_array_view((shape, data)).map_err(inference)?;
        let _flush = self
            .flush_denormals
            .then(crate::denormal::FlushDenormals::set);
        let outputs = self.session.run(ort::inputs![tensor]).map_err(inference)?;
        read(&Outputs {
            model: &self.spec.name,
            inner: &outputs,
            specs: &self.spec.outputs,
        })
    }

    fn check_input(&self, shape: &[usize], len: usize, dtype: DType) -> Result<(), ModelError> {
        let bad = |message: String| ModelError::BadInput {
            model: self.spec.name.clone(),
            message,
        };
        if dtype != self.spec.input.dtype {
            return Err(bad(format!(
                "element type {dtype:?}, the model takes {:?}",
                self.spec.input.dtype
            )));
        }
        let fits = shape.len() == self.spec.input.shape.len()
            && shape
                .iter()
                .zip(&self.spec.input.shape)
                .all(|(&a, &s)| a > 0 && (s < 0 || a as i64 == s));
        if !fits {
            return Err(bad(format!(
                "shape {shape:?} does not fit {:?}",
                self.spec.input.shape
            )));
        }
        if shape.iter().product::<usize>() != len {
            return Err(bad(format!("{len} elements for shape {shape:?}")));
        }
        Ok(())
    }
}

/// The outputs of one run, read by the manifest's output order.
#[derive(Debug)]
pub struct Outputs<'a, 's> {
    model: &'a str,
    inner: &'a SessionOutputs<'s>,
    specs: &'a [TensorSpec],
}

impl Outputs<'_, '_> {
    /// Output `index` (manifest order) as f32: (shape, data), borrowed from the run.
    pub fn f32(&self, index: usize) -> Result<(&[i64], &[f32]), ModelError> {
        let err = |message: String| ModelError::Inference {
            model: self.model.to_owned(),
            message,
        };
        let spec = self
            .specs
            .get(index)
            .ok_or_else(|| err(format!("no output #{index} in the manifest")))?;
        let value = self
            .inner
            .get(spec.name.as_str())
            .ok_or_else(|| err(format!("output {:?} missing from the run", spec.name)))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| err(format!("output {:?}: {e}", spec.name)))?;
        Ok((shape, data))
    }
}
