//! RTSP mounts of composite scenes for `vidar-camera`: each scene is rendered
//! and encoded live with x264 through an `appsrc`, and its ground truth is
//! recorded as each frame is pushed.
//!
//! A frame's `unix_ms` is the wall clock when the live pipeline asked for it
//! (about one frame period before it leaves, as one frame is in flight; the
//! first two or three after a (re)start come quicker, while the pipeline
//! fills). Receivers see a constant latency on top, which `vidar-trajeval`
//! estimates.
//!
//! The frame counter of a mount keeps counting when a new client restarts the
//! shared media (pts restart at zero), so ground-truth frame numbers are
//! unique for the life of the process. A ground-truth write failure ends the
//! stream and is reported through [`CompositeServeConfig::on_failure`]: a
//! benchmark must not run on with truth missing.

use super::{CompositeError, CompositeScene, GroundTruthWriter};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_video as gst_video;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use vidar_protocol::UnixMs;

/// Called with a message when a mount fails (e.g. ground truth cannot be written).
pub type FailureHook = Arc<dyn Fn(String) + Send + Sync>;

/// One composite mount.
#[derive(Debug, Clone)]
pub struct CompositeMount {
    /// Path segment of the URL.
    pub name: String,
    /// The scene it serves.
    pub scene: Arc<CompositeScene>,
}

/// Settings of a composite RTSP server.
pub struct CompositeServeConfig {
    /// Address to listen on, e.g. `127.0.0.1`.
    pub address: String,
    /// Port (0 picks a free one).
    pub port: u16,
    /// Mount points.
    pub mounts: Vec<CompositeMount>,
    /// H.264 bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Folder for live ground truth (`<mount>.gt.csv`, `.frames.csv`,
    /// `.people.csv`); none written when `None`.
    pub ground_truth: Option<std::path::PathBuf>,
    /// Told about failures that stop a mount.
    pub on_failure: FailureHook,
}

impl std::fmt::Debug for CompositeServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeServeConfig")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("mounts", &self.mounts)
            .field("bitrate_kbps", &self.bitrate_kbps)
            .field("ground_truth", &self.ground_truth)
            .finish_non_exhaustive()
    }
}

/// A running composite camera. Dropping it stops the server.
#[derive(Debug)]
pub struct CompositeCamera {
    main_loop: gst::glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    port: u16,
    address: String,
    names: Vec<String>,
}

impl CompositeCamera {
    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The RTSP URL of each mount, in configuration order.
    pub fn urls(&self) -> Vec<String> {
        self.names
            .iter()
            .map(|n| format!("rtsp://{}:{}/{}", self.address, self.port, n))
            .collect()
    }
}

impl Drop for CompositeCamera {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gst_err(what: &str, e: impl std::fmt::Display) -> CompositeError {
    CompositeError::Gst(format!("{what}: {e}"))
}

/// Per-mount state shared by successive medias of the mount.
struct MountState {
    scene: Arc<CompositeScene>,
    next_frame: AtomicU64,
    truth: Option<Mutex<GroundTruthWriter>>,
    name: String,
    on_failure: FailureHook,
}

/// Starts the RTSP server and returns once it listens. Ground-truth files are
/// created before it returns.
pub fn serve(config: &CompositeServeConfig) -> Result<CompositeCamera, CompositeError> {
    gst::init().map_err(|e| gst_err("GStreamer failed to initialise", e))?;
    for f in ["x264enc", "rtph264pay", "appsrc", "videoconvert"] {
        if gst::ElementFactory::find(f).is_none() {
            return Err(gst_err(
                "missing GStreamer element",
                format!("{f} (run deploy/setup.sh)"),
            ));
        }
    }
    if let Some(dir) = &config.ground_truth {
        std::fs::create_dir_all(dir).map_err(|source| CompositeError::Write {
            path: dir.clone(),
            source,
        })?;
    }
    let ctx = gst::glib::MainContext::new();
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address(&config.address);
    server.set_service(&config.port.to_string());
    let mounts = server
        .mount_points()
        .ok_or_else(|| gst_err("rtsp server", "no mount points"))?;
    for m in &config.mounts {
        let truth = match &config.ground_truth {
            Some(dir) => {
                super::write_people_csv(&m.scene, &dir.join(format!("{}.people.csv", m.name)))?;
                Some(Mutex::new(GroundTruthWriter::create(dir, &m.name)?))
            }
            None => None,
        };
        let state = Arc::new(MountState {
            scene: Arc::clone(&m.scene),
            next_frame: AtomicU64::new(0),
            truth,
            name: m.name.clone(),
            on_failure: Arc::clone(&config.on_failure),
        });
        let fps = m.scene.spec().fps;
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_shared(true);
        factory.set_launch(&format!(
            "( appsrc name=src ! videoconvert ! video/x-raw,format=I420 ! \
             x264enc tune=zerolatency speed-preset=ultrafast bitrate={} key-int-max={fps} ! \
             video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
            config.bitrate_kbps
        ));
        factory.connect_media_configure(move |_f, media| {
            let src = media
                .element()
                .downcast::<gst::Bin>()
                .ok()
                .and_then(|b| b.by_name("src"))
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok());
            if let Some(src) = src {
                if let Err(e) = install(&src, Arc::clone(&state)) {
                    (state.on_failure)(format!("mount {}: {e}", state.name));
                }
            }
        });
        mounts.add_factory(&format!("/{}", m.name), factory);
    }
    let id = server.attach(Some(&ctx)).map_err(|e| {
        gst_err(
            &format!("rtsp server on {}:{}", config.address, config.port),
            e,
        )
    })?;
    let port = u16::try_from(server.bound_port()).unwrap_or(config.port);
    let main_loop = gst::glib::MainLoop::new(Some(&ctx), false);
    let ml = main_loop.clone();
    let thread = std::thread::Builder::new()
        .name("composite-rtsp".into())
        .spawn(move || {
            let _server = server;
            let _id = id;
            ml.run();
        })
        .map_err(|e| gst_err("rtsp thread", e))?;
    Ok(CompositeCamera {
        main_loop,
        thread: Some(thread),
        port,
        address: config.address.clone(),
        names: config.mounts.iter().map(|m| m.name.clone()).collect(),
    })
}

/// Feeds a new media's appsrc from the mount's scene, paced by the pipeline.
fn install(src: &gst_app::AppSrc, state: Arc<MountState>) -> Result<(), CompositeError> {
    let (w, h) = state.scene.size();
    let fps = state.scene.spec().fps;
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w, h)
        .fps(gst::Fraction::new(fps as i32, 1))
        .build()
        .map_err(|e| gst_err("composite caps", e))?;
    let caps = info.to_caps().map_err(|e| gst_err("composite caps", e))?;
    src.set_caps(Some(&caps));
    src.set_format(gst::Format::Time);
    src.set_is_live(true);
    src.set_property("block", false);
    // One frame in flight: pacing comes from the sink's clock, so a frame is
    // rendered (and its truth stamped) just before it is sent.
    src.set_max_bytes(info.size() as u64);
    let frame_ns = 1_000_000_000u64 / u64::from(fps);
    let stride = info.stride().first().copied().unwrap_or(0).max(0) as usize;
    let size = info.size();
    let mut local: u64 = 0;
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                // Stamped when the pipeline asks for the frame (the previous
                // one was taken), before rendering adds its variable delay.
                let pushed_at = UnixMs::now();
                let Ok(mut buffer) = gst::Buffer::with_size(size) else {
                    let _ = src.end_of_stream();
                    return;
                };
                let n = state.next_frame.fetch_add(1, Ordering::Relaxed);
                let boxes = {
                    let Some(b) = buffer.get_mut() else { return };
                    b.set_pts(gst::ClockTime::from_nseconds(local * frame_ns));
                    b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
                    let Ok(mut map) = b.map_writable() else {
                        return;
                    };
                    state.scene.render(n, map.as_mut_slice(), stride)
                };
                local += 1;
                if let Some(truth) = &state.truth {
                    let result = match truth.lock() {
                        Ok(mut t) => t.record(n, pushed_at, &boxes),
                        Err(_) => Err(gst_err("ground truth", "writer poisoned")),
                    };
                    if let Err(e) = result {
                        tracing::error!(mount = %state.name, error = %e, "ground truth failed; stopping the stream");
                        (state.on_failure)(format!("mount {}: {e}", state.name));
                        let _ = src.end_of_stream();
                        return;
                    }
                }
                let _ = src.push_buffer(buffer);
            })
            .build(),
    );
    Ok(())
}
