//! Shared helpers of the re-ID integration tests: model store, vtest frames and boxes.

#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;
use vidar_models::{Manifest, ModelStore, RuntimeConfig, SessionFactory};
use vidar_protocol::BBox;

pub fn repo_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache")
}

pub fn model_dir() -> PathBuf {
    std::env::var_os("VIDAR_MODEL_DIR").map_or_else(|| repo_cache().join("models"), PathBuf::from)
}

/// A session factory on the real model files (`make models`) and runtime library (`deploy/setup.sh`).
pub fn factory() -> SessionFactory {
    factory_with(RuntimeConfig::default())
}

/// [`factory`] with a runtime configuration of the test's own.
pub fn factory_with(runtime: RuntimeConfig) -> SessionFactory {
    // Without ORT_DYLIB_PATH, the library deploy/setup.sh caches (no env mutation: tests run in threads).
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        vidar_models::environment_from(&repo_cache().join("libonnxruntime.so"))
            .expect("ONNX Runtime library");
    }
    let dir = model_dir();
    assert!(
        dir.join("vtest").is_dir() && dir.join("reid_mobilenetv2_deepsort.onnx").is_file(),
        "model files or vtest frames absent from {}: run `make models` first",
        dir.display()
    );
    SessionFactory::new(
        ModelStore::new(dir, Manifest::builtin().expect("manifest")),
        runtime,
    )
    .expect("ONNX Runtime (ORT_DYLIB_PATH)")
}

/// A decoded vtest frame: (width, height, packed RGB8).
pub fn load_frame(name: &str) -> (u32, u32, Vec<u8>) {
    let path = model_dir().join("vtest").join(name);
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make models`)", path.display()))
        .to_rgb8();
    (img.width(), img.height(), img.into_raw())
}

#[derive(Deserialize)]
struct Fixture {
    frames: Vec<FixtureFrame>,
}

#[derive(Deserialize)]
struct FixtureFrame {
    file: String,
    postprocessed: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

/// Person boxes of `file` found by the SSD (the detector test's Python reference fixture).
pub fn person_boxes(file: &str) -> Vec<BBox> {
    let text = include_str!("../../../detectors/tests/fixtures/vtest_ssd_expected.json");
    let fixture: Fixture = serde_json::from_str(text).expect("detector fixture");
    fixture
        .frames
        .into_iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| panic!("{file} not in the detector fixture"))
        .postprocessed
        .into_iter()
        .map(|e| BBox::from_corners(e.bbox[0], e.bbox[1], e.bbox[2], e.bbox[3]))
        .collect()
}
