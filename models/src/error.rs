//! Errors of model files, the manifest and ONNX Runtime sessions.

use std::path::PathBuf;

/// Everything that can go wrong between a manifest entry and a running session.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `ORT_DYLIB_PATH` is not set, so the ONNX Runtime library cannot be found.
    #[error("ORT_DYLIB_PATH is not set: point it at libonnxruntime.so (>= 1.31); deploy/setup.sh caches one at .cache/libonnxruntime.so and the Makefile exports it")]
    RuntimeLibraryUnset,
    /// `ORT_DYLIB_PATH` (or the configured library path) names a file that does not exist.
    #[error("ONNX Runtime library {path} (ORT_DYLIB_PATH) does not exist: run deploy/setup.sh (make setup) or fix the variable")]
    RuntimeLibraryMissing {
        /// The value of the variable.
        path: PathBuf,
    },
    /// The library exists but could not be loaded (wrong file, wrong version, wrong architecture).
    #[error("ONNX Runtime library {path} (ORT_DYLIB_PATH): cannot load it ({message}); deploy/setup.sh installs the pinned 1.32.0 library")]
    RuntimeLibraryLoad {
        /// The value of the variable.
        path: PathBuf,
        /// What the loader said.
        message: String,
    },
    /// The ONNX Runtime environment could not be created.
    #[error("creating the ONNX Runtime environment: {0}")]
    Environment(String),
    /// The manifest is not valid TOML or does not match the schema.
    #[error("manifest {origin}: {source}")]
    ManifestParse {
        /// Where the manifest came from.
        origin: String,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// The manifest parsed but is inconsistent; every problem is listed.
    #[error("manifest {origin} is invalid:\n  - {}", problems.join("\n  - "))]
    ManifestInvalid {
        /// Where the manifest came from.
        origin: String,
        /// One line per problem.
        problems: Vec<String>,
    },
    /// No model of that name in the manifest.
    #[error("no model named {name:?} in the manifest (known: {})", known.join(", "))]
    UnknownModel {
        /// The requested name.
        name: String,
        /// The names the manifest has.
        known: Vec<String>,
    },
    /// The model has no variant of the requested precision.
    #[error("model {name:?} has no {precision} variant in the manifest (it has: {})", known.join(", "))]
    NoVariant {
        /// The float model's name.
        name: String,
        /// The precision asked for.
        precision: String,
        /// The precisions it has.
        known: Vec<String>,
    },
    /// The precision asked for cannot run with these providers.
    #[error("model {model:?} at {precision}: {reason}")]
    PrecisionUnavailable {
        /// The model.
        model: String,
        /// The precision asked for.
        precision: String,
        /// Why not.
        reason: String,
    },
    /// The model's task or format is not what the caller can use.
    #[error("model {model:?} has format {actual}, expected {expected}")]
    WrongFormat {
        /// Model name.
        model: String,
        /// What the caller needs.
        expected: String,
        /// What the manifest says.
        actual: String,
    },
    /// `VIDAR_MODEL_DIR` is unset and no directory was configured.
    #[error("VIDAR_MODEL_DIR is not set and no model directory was configured: run `make models` and export VIDAR_MODEL_DIR=<repo>/.cache/models")]
    ModelDirUnset,
    /// A file listed in the manifest is absent.
    #[error("{path} is missing: run `make models` (models/scripts/fetch_models.sh) to produce it")]
    FileMissing {
        /// Expected location.
        path: PathBuf,
    },
    /// A file is shorter or longer than the manifest says (truncated download, wrong file).
    #[error("{path} has {actual} bytes, the manifest says {expected}: truncated or wrong file; delete it and run `make models`")]
    FileSize {
        /// The file.
        path: PathBuf,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk.
        actual: u64,
    },
    /// A file's sha256 differs from the manifest.
    #[error("{path} has sha256 {actual}, the manifest says {expected}: corrupt or wrong file; delete it and run `make models`")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `.npy` side file (anchors) is malformed.
    #[error("{path}: {message}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// ONNX Runtime refused to build the session (not an ONNX file, unsupported operator...).
    #[error("model {model:?} ({path}): ONNX Runtime cannot load it: {message}")]
    Session {
        /// Model name.
        model: String,
        /// The file.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The session's inputs or outputs differ from the manifest's spec.
    #[error("model {model:?} does not match its manifest spec:\n  - {}", problems.join("\n  - "))]
    SpecMismatch {
        /// Model name.
        model: String,
        /// One line per difference.
        problems: Vec<String>,
    },
    /// A requested execution provider is unavailable and CPU fallback is disabled.
    #[error("execution provider {provider} unavailable for model {model:?} ({reason}) and CPU fallback is disabled")]
    ProviderUnavailable {
        /// Provider name.
        provider: String,
        /// Model name.
        model: String,
        /// Why.
        reason: String,
    },
    /// The caller's input does not fit the model.
    #[error("model {model:?}: bad input: {message}")]
    BadInput {
        /// Model name.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// `Session::run` or output extraction failed.
    #[error("model {model:?}: inference failed: {message}")]
    Inference {
        /// Model name.
        model: String,
        /// ONNX Runtime's message.
        message: String,
    },
    /// The runtime configuration is invalid; every problem is listed.
    #[error("runtime config is invalid: {0}")]
    InvalidConfig(#[from] vidar_config::Invalid),
}
