//! Real ONNX Runtime on the real model files of the manifest: every model loads,
//! runs, and bad files fail with errors that say what is wrong.
//! Needs `make models` (VIDAR_MODEL_DIR) and `ORT_DYLIB_PATH` (deploy/setup.sh).

use std::path::PathBuf;

use vidar_config::Config;
use vidar_models::{FileEntry, Manifest, ModelError, ModelStore, RuntimeConfig, SessionFactory};

fn repo_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache")
}

/// The model directory and runtime library, from the environment or the repository's cache.
fn store() -> ModelStore {
    // Without ORT_DYLIB_PATH, the library deploy/setup.sh caches (no env mutation: tests run in threads).
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        vidar_models::environment_from(&repo_cache().join("libonnxruntime.so"))
            .expect("ONNX Runtime library");
    }
    let dir = std::env::var_os("VIDAR_MODEL_DIR")
        .map_or_else(|| repo_cache().join("models"), PathBuf::from);
    assert!(
        dir.join("ssd_mobilenet_v2_coco_quant.onnx").is_file(),
        "model files absent from {}: run `make models` first",
        dir.display()
    );
    ModelStore::new(dir, Manifest::builtin().expect("manifest"))
}

#[test]
fn every_manifest_model_loads_on_cpu_and_runs() {
    let factory = SessionFactory::new(store(), RuntimeConfig::default()).expect("factory");
    let mut ssd = factory.load("ssd-mobilenet-v2-coco").expect("ssd");
    assert_eq!(ssd.provider(), "CPUExecutionProvider");
    assert_eq!(ssd.max_batch(), 1);
    let frame = vec![128u8; 300 * 300 * 3];
    let count = ssd
        .run(&[1, 300, 300, 3], &frame, |out| Ok(out.f32(3)?.1[0]))
        .expect("run ssd");
    assert!((0.0..=20.0).contains(&count), "count {count}");

    let mut raw = factory.load("ssd-mobilenet-v2-coco-raw").expect("raw");
    assert_eq!(raw.max_batch(), usize::MAX);
    let batch = vec![128u8; 3 * 300 * 300 * 3];
    let shapes = raw
        .run(&[3, 300, 300, 3], &batch, |out| {
            Ok((out.f32(0)?.0.to_vec(), out.f32(1)?.0.to_vec()))
        })
        .expect("run raw");
    assert_eq!(shapes, (vec![3, 1917, 4], vec![3, 1917, 91]));

    let mut reid = factory.load("mobilenetv2-deepsort").expect("reid");
    let crops = vec![0.1f32; 2 * 3 * 224 * 224];
    let (shape, emb) = reid
        .run(&[2, 3, 224, 224], &crops, |out| {
            let (s, d) = out.f32(0)?;
            Ok((s.to_vec(), d.to_vec()))
        })
        .expect("run reid");
    assert_eq!(shape, vec![2, 1280]);
    assert!(emb.iter().all(|v| v.is_finite()) && emb.iter().any(|&v| v != 0.0));
}

/// `flush_denormals` (default on) holds for the whole of a run on the
/// calling thread, where a one-thread session computes, and is undone
/// after: a product that is subnormal outside the run is zero inside it
/// (the outputs are read inside the run's scope), and stays subnormal when
/// the option is off.
#[test]
fn subnormals_are_flushed_during_a_run_and_only_then() {
    use std::hint::black_box;
    let tiny = || black_box(1e-30f32) * black_box(1e-10f32);
    assert!(tiny() > 0.0, "subnormal outside a run");
    let crops = vec![0.1f32; 3 * 224 * 224];
    for flush in [true, false] {
        let config = RuntimeConfig {
            intra_threads: 1,
            flush_denormals: flush,
            ..RuntimeConfig::default()
        };
        assert!(config.flush_denormals == flush);
        let factory = SessionFactory::new(store(), config).expect("factory");
        let mut reid = factory.load("mobilenetv2-deepsort").expect("reid");
        assert!(
            tiny() > 0.0,
            "flush {flush}: loading leaves the thread's mode alone"
        );
        let inside = reid
            .run(&[1, 3, 224, 224], &crops, |_| Ok(tiny()))
            .expect("run");
        if flush && vidar_models::FlushDenormals::SUPPORTED {
            assert_eq!(inside, 0.0, "flushed during the run");
        } else {
            assert!(inside > 0.0, "flush {flush}: not flushed");
        }
        assert!(
            tiny() > 0.0,
            "flush {flush}: the thread's mode is back after the run"
        );
    }
    assert!(RuntimeConfig::default().flush_denormals, "on by default");
    let off: RuntimeConfig = toml::from_str("flush_denormals = false").expect("parse");
    assert!(!off.flush_denormals);
}

#[test]
fn wrong_input_is_refused_before_running() {
    let factory = SessionFactory::new(store(), RuntimeConfig::default()).expect("factory");
    let mut ssd = factory.load("ssd-mobilenet-v2-coco").expect("ssd");
    let frame = vec![0u8; 2 * 300 * 300 * 3];
    let err = ssd
        .run(&[2, 300, 300, 3], &frame, |_| Ok(()))
        .expect_err("batch 2");
    assert!(err.to_string().contains("does not fit"), "{err}");
    let err = ssd
        .run(&[1, 300, 300, 3], &[0.0f32; 10], |_| Ok(()))
        .expect_err("f32");
    assert!(err.to_string().contains("element type"), "{err}");
}

/// A manifest that describes `file` (copied into a temp dir) as the SSD model.
fn store_with(file_bytes: &[u8], declared_size: Option<u64>) -> (tempfile::TempDir, ModelStore) {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut manifest = Manifest::builtin().expect("manifest");
    let name = "ssd_mobilenet_v2_coco_quant.onnx";
    std::fs::write(dir.path().join(name), file_bytes).expect("write");
    let entry: &mut FileEntry = manifest
        .files
        .iter_mut()
        .find(|f| f.file == name)
        .expect("entry");
    entry.size = declared_size.unwrap_or(file_bytes.len() as u64);
    entry.sha256 = Sha256::digest(file_bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let store = ModelStore::new(dir.path().to_owned(), manifest);
    (dir, store)
}

#[test]
fn bad_model_files_fail_clearly() {
    let real = store();
    let factory = SessionFactory::new(real.clone(), RuntimeConfig::default()).expect("factory");

    // Missing directory.
    let empty = tempfile::tempdir().expect("tempdir");
    let f = SessionFactory::new(
        ModelStore::new(empty.path(), real.manifest().clone()),
        RuntimeConfig::default(),
    )
    .expect("factory");
    let err = f.load("ssd-mobilenet-v2-coco").expect_err("missing");
    assert!(matches!(err, ModelError::FileMissing { .. }), "{err}");
    assert!(err.to_string().contains("make models"), "{err}");

    // Truncated: the manifest's size and checksum are the real ones.
    let full = std::fs::read(real.dir().join("ssd_mobilenet_v2_coco_quant.onnx")).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ssd_mobilenet_v2_coco_quant.onnx"),
        &full[..full.len() / 2],
    )
    .expect("write");
    let f = SessionFactory::new(
        ModelStore::new(dir.path(), real.manifest().clone()),
        RuntimeConfig::default(),
    )
    .expect("factory");
    let err = f.load("ssd-mobilenet-v2-coco").expect_err("truncated");
    assert!(matches!(err, ModelError::FileSize { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    // Same size, one byte flipped: checksum.
    let mut flipped = full.clone();
    flipped[1000] ^= 0xff;
    std::fs::write(
        dir.path().join("ssd_mobilenet_v2_coco_quant.onnx"),
        &flipped,
    )
    .expect("write");
    let err = f.load("ssd-mobilenet-v2-coco").expect_err("corrupt");
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");

    // Checksum matches the manifest but the bytes are not ONNX: ONNX Runtime's refusal, with the path.
    let (_d, s) = store_with(b"this is not an onnx model", None);
    let err = SessionFactory::new(s, RuntimeConfig::default())
        .expect("factory")
        .load("ssd-mobilenet-v2-coco")
        .expect_err("garbage");
    assert!(matches!(err, ModelError::Session { .. }), "{err}");
    assert!(
        err.to_string().contains("ssd_mobilenet_v2_coco_quant.onnx"),
        "{err}"
    );

    // A valid ONNX file of the wrong model (the re-ID net under the SSD's spec): input shape and names differ.
    let reid = std::fs::read(real.dir().join("reid_mobilenetv2_deepsort.onnx")).expect("read");
    let (_d, s) = store_with(&reid, None);
    let err = SessionFactory::new(s, RuntimeConfig::default())
        .expect("factory")
        .load("ssd-mobilenet-v2-coco")
        .expect_err("wrong model");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::SpecMismatch { .. }), "{msg}");
    assert!(msg.contains("shape [-1, 3, -1, -1]"), "{msg}");
    assert!(
        msg.contains("\"TFLite_Detection_PostProcess\" is missing"),
        "{msg}"
    );
    drop(factory);
}

#[test]
fn unavailable_gpu_providers_fall_back_to_cpu_or_fail_when_asked() {
    use vidar_models::ProviderConfig;
    let providers = vec![
        ProviderConfig::TensorRt {
            device_id: 0,
            fp16: true,
            engine_cache_dir: Some(std::env::temp_dir().join("vidar-trt")),
            max_batch: 8,
        },
        ProviderConfig::Cuda { device_id: 0 },
    ];
    let config = RuntimeConfig {
        providers: providers.clone(),
        ..RuntimeConfig::default()
    };
    let model = SessionFactory::new(store(), config)
        .expect("factory")
        .load("ssd-mobilenet-v2-coco-raw")
        .expect("falls back");
    // The PyPI wheel is CPU-only; on a GPU build this would be the GPU provider.
    assert_eq!(model.provider(), "CPUExecutionProvider");

    let strict = RuntimeConfig {
        providers,
        cpu_fallback: false,
        ..RuntimeConfig::default()
    };
    let err = SessionFactory::new(store(), strict)
        .expect("factory")
        .load("ssd-mobilenet-v2-coco-raw")
        .expect_err("strict");
    assert!(
        matches!(err, ModelError::ProviderUnavailable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("TensorrtExecutionProvider"),
        "{err}"
    );
}

#[test]
fn runtime_config_parses_and_validates() {
    let config: RuntimeConfig = toml::from_str(
        r#"
        intra_threads = 2
        [[providers]]
        kind = "tensorrt"
        engine_cache_dir = "/var/cache/vidar/trt"
        [[providers]]
        kind = "cuda"
        "#,
    )
    .expect("parse");
    config.check().expect("valid");
    assert_eq!(config.providers.len(), 2);
    let bad: RuntimeConfig = toml::from_str(
        r#"
        [[providers]]
        kind = "tensorrt"
        max_batch = 0
        [[providers]]
        kind = "cuda"
        device_id = -1
        "#,
    )
    .expect("parse");
    let err = bad.check().expect_err("invalid").to_string();
    assert!(
        err.contains("providers[0].max_batch") && err.contains("providers[1].device_id"),
        "{err}"
    );
    assert!(toml::from_str::<RuntimeConfig>("threads = 3").is_err());
}

/// A refresh: new weights for a manifest model in a file of their own.
/// The same graph loads as the model; another graph is refused, naming
/// what differs; a quantised variant and a path outside the directory are
/// refused before anything is read.
#[test]
fn refreshed_weights_load_as_the_model_and_another_graph_is_refused() {
    let base = store();
    let manifest = base.manifest().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = "osnet-x0-25-msmt17-combineall";
    // `source`'s file copied in as `file` and named the model's weights,
    // with the sha256 and size given (those of the copy when `None`), loaded.
    let load_as = |source: &str, file: &str, named: Option<(String, u64)>| {
        let path = base
            .verified_path(&manifest.model(source).expect("spec").file)
            .expect("model file");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(dir.path().join(file), &bytes).expect("write");
        let (sha, size) = named.unwrap_or_else(|| {
            (
                vidar_models::store::sha256_bytes(&bytes),
                bytes.len() as u64,
            )
        });
        let refreshed = manifest
            .refreshed(model, file, &sha, size)
            .expect("refreshed manifest");
        SessionFactory::new(
            ModelStore::new(dir.path(), refreshed),
            RuntimeConfig::default(),
        )
        .expect("factory")
        .load(model)
    };
    // The same network, other weights: the market1501 OSNet has the same
    // graph (a stand-in for weights trained on the site).
    let loaded =
        load_as("osnet-x0-25-market1501", "refresh-a.onnx", None).expect("refreshed weights load");
    assert_eq!(loaded.spec().file, "refresh-a.onnx");
    assert_eq!(loaded.spec().name, model);

    // A detector's file as the re-ID model's refresh: checksum right, graph wrong.
    let e = load_as("ssd-mobilenet-v2-coco", "refresh-b.onnx", None)
        .expect_err("another graph")
        .to_string();
    assert!(e.contains(model) && e.contains("input"), "{e}");

    // Bytes that are not what the refresh names: refused before ONNX Runtime sees them.
    let e = load_as(
        "osnet-x0-25-market1501",
        "refresh-c.onnx",
        Some(("0".repeat(64), 920_270)),
    )
    .expect_err("tampered")
    .to_string();
    assert!(e.contains("refresh-c.onnx"), "{e}");

    for (m, file, want) in [
        ("osnet-x0-25-msmt17-combineall-int8", "x.onnx", "variant"),
        (model, "../x.onnx", "plain path"),
        (model, "/etc/x.onnx", "plain path"),
        (
            model,
            manifest.model(model).expect("spec").file.as_str(),
            "already listed",
        ),
        ("no-such-model", "x.onnx", "no-such-model"),
    ] {
        let e = manifest
            .refreshed(m, file, &"a".repeat(64), 1)
            .expect_err(file)
            .to_string();
        assert!(e.contains(want), "{m} {file}: {e}");
    }
}
