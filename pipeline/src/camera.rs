//! `vidar-camera`: a test IP camera. An RTSP server (gst-rtsp-server) on a
//! local address serving H.264 mount points from synthetic scenes (rendered and
//! encoded live) or video files (loaded once into memory as H.264 access units,
//! transcoded at load time when the file is not H.264, and looped seamlessly).
//!
//! It is what tests, benchmarks and `make demo` use, and what an installer uses
//! to check a node without a real camera.

use crate::error::IngestError;
use crate::source::Source;
use crate::synthetic::{Scene, SceneSpec};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_video as gst_video;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One mount point of the camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Path segment of the URL, e.g. `cam1` for `rtsp://host:port/cam1`.
    pub name: String,
    /// What it serves.
    pub source: MountSource,
    /// Where its frames fall within each frame period of the camera's clock,
    /// seconds (`#phase=`). A real camera runs on its own clock, so its frames
    /// come at the same phase whoever connects and whenever: with a phase,
    /// every client of this mount sees the same schedule, and mounts with
    /// different phases do not send their frames at the same moment. Without
    /// one, frames are timed from the moment the stream starts.
    pub phase_s: Option<f64>,
}

/// What a mount serves.
#[derive(Debug, Clone, PartialEq)]
pub enum MountSource {
    /// A synthetic scene, encoded live.
    Synthetic(SceneSpec),
    /// A video file, looped, starting `start_s` seconds in (so two mounts can
    /// show one video at an offset, like two cameras along a corridor).
    File(PathBuf, f64),
}

impl Mount {
    /// Parses `NAME=SOURCE` where SOURCE is `synthetic:?...` or a file path,
    /// optionally followed by `#start=SECONDS` (files: where in the file the
    /// stream begins) and/or `#phase=SECONDS` (see [`Mount::phase_s`]).
    pub fn parse(s: &str) -> Result<Mount, String> {
        let (name, mut src) = s
            .split_once('=')
            .ok_or_else(|| format!("mount {s:?} is not NAME=SOURCE"))?;
        let (mut start_s, mut phase_s) = (None, None);
        while let Some((rest, option)) = src.rsplit_once('#') {
            let (slot, key, t) = if let Some(t) = option.strip_prefix("start=") {
                (&mut start_s, "start", t)
            } else if let Some(t) = option.strip_prefix("phase=") {
                (&mut phase_s, "phase", t)
            } else {
                break;
            };
            let t: f64 = t
                .parse()
                .map_err(|_| format!("mount {name}: {key}={t:?} is not a number of seconds"))?;
            if !(0.0..=86_400.0).contains(&t) {
                return Err(format!("mount {name}: {key}={t} out of range"));
            }
            if slot.replace(t).is_some() {
                return Err(format!("mount {name}: {key} given twice"));
            }
            src = rest;
        }
        let start_s = start_s.unwrap_or(0.0);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "mount name {name:?} must be letters, digits, '_', '-', '.'"
            ));
        }
        let source = match Source::parse(src).map_err(|e| e.to_string())? {
            Source::Synthetic(spec) => MountSource::Synthetic(spec),
            Source::File { path } => {
                if !path.is_file() {
                    return Err(format!("mount {name}: no such file {}", path.display()));
                }
                MountSource::File(path, start_s)
            }
            Source::Rtsp { .. } => {
                return Err(format!("mount {name}: cannot serve an rtsp:// source"))
            }
        };
        Ok(Mount {
            name: name.to_string(),
            source,
            phase_s,
        })
    }
}

/// Settings of the test camera.
#[derive(Debug, Clone)]
pub struct CameraConfig {
    /// Address to listen on. Default 127.0.0.1.
    pub address: String,
    /// Port (0 picks a free one). Default 8554.
    pub port: u16,
    /// Mount points.
    pub mounts: Vec<Mount>,
    /// H.264 bitrate for live-encoded mounts, kbit/s. Default 4000.
    pub bitrate_kbps: u32,
}

impl Default for CameraConfig {
    fn default() -> Self {
        CameraConfig {
            address: "127.0.0.1".into(),
            port: 8554,
            mounts: Vec::new(),
            bitrate_kbps: 4000,
        }
    }
}

/// A running camera. Dropping it stops the server.
#[derive(Debug)]
pub struct Camera {
    main_loop: gst::glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    port: u16,
    address: String,
    names: Vec<String>,
}

impl Camera {
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

impl Drop for Camera {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn build_err(what: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Build {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Starts the RTSP server and returns once it listens.
pub fn serve(config: &CameraConfig) -> Result<Camera, IngestError> {
    gst::init().map_err(|e| IngestError::Init(e.to_string()))?;
    for f in ["x264enc", "rtph264pay", "h264parse", "appsrc"] {
        if gst::ElementFactory::find(f).is_none() {
            return Err(IngestError::MissingElement {
                factory: f.into(),
                hint: crate::error::element_hint(f),
            });
        }
    }
    let ctx = gst::glib::MainContext::new();
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address(&config.address);
    server.set_service(&config.port.to_string());
    let mounts = server
        .mount_points()
        .ok_or_else(|| build_err("rtsp server", "no mount points"))?;
    for m in &config.mounts {
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_shared(true);
        match &m.source {
            MountSource::Synthetic(spec) => {
                factory.set_launch(&format!(
                    "( appsrc name=src ! videoconvert ! video/x-raw,format=I420 ! \
                     x264enc tune=zerolatency speed-preset=ultrafast bitrate={} key-int-max={} ! \
                     video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
                    config.bitrate_kbps,
                    spec.fps
                ));
                let spec = spec.clone();
                let phase = m.phase_s;
                factory.connect_media_configure(move |_f, media| {
                    // Each new media (first client after idle) restarts the scene.
                    if let Some(src) = media_appsrc(media) {
                        install_scene(&src, Scene::new(spec.clone()), true, phase);
                    }
                });
            }
            MountSource::File(path, start_s) => {
                let clip = Arc::new(load_h264_clip(path)?);
                let start_ns = (*start_s * 1e9) as u64 % clip.duration_ns.max(1);
                factory.set_launch(
                    "( appsrc name=src ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )",
                );
                let phase = m.phase_s;
                factory.connect_media_configure(move |_f, media| {
                    if let Some(src) = media_appsrc(media) {
                        feed_clip(&src, Arc::clone(&clip), start_ns, phase);
                    }
                });
            }
        }
        mounts.add_factory(&format!("/{}", m.name), factory);
    }
    let id = server.attach(Some(&ctx)).map_err(|e| {
        build_err(
            &format!("rtsp server on {}:{}", config.address, config.port),
            e,
        )
    })?;
    let port = u16::try_from(server.bound_port()).unwrap_or(config.port);
    let main_loop = gst::glib::MainLoop::new(Some(&ctx), false);
    let ml = main_loop.clone();
    let thread = std::thread::Builder::new()
        .name("rtsp-server".into())
        .spawn(move || {
            let _server = server;
            let _id = id;
            ml.run();
        })
        .map_err(|e| IngestError::Thread(e.to_string()))?;
    Ok(Camera {
        main_loop,
        thread: Some(thread),
        port,
        address: config.address.clone(),
        names: config.mounts.iter().map(|m| m.name.clone()).collect(),
    })
}

fn media_appsrc(media: &gst_rtsp_server::RTSPMedia) -> Option<gst_app::AppSrc> {
    media
        .element()
        .downcast::<gst::Bin>()
        .ok()?
        .by_name("src")?
        .downcast::<gst_app::AppSrc>()
        .ok()
}

fn video_info(w: u32, h: u32, fps: u32) -> Result<gst_video::VideoInfo, IngestError> {
    gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w, h)
        .fps(gst::Fraction::new(fps as i32, 1))
        .build()
        .map_err(|e| build_err("synthetic caps", e))
}

/// An `appsrc` that renders `scene`, paced by the pipeline clock when `live`.
pub(crate) fn scene_appsrc(scene: Scene, live: bool) -> Result<gst::Element, IngestError> {
    let src = gst_app::AppSrc::builder().name("synthetic").build();
    let spec = scene.spec().clone();
    video_info(spec.width, spec.height, spec.fps)?;
    install_scene(&src, scene, live, None);
    Ok(src.upcast())
}

/// The running time at which a live source's first frame goes out so that it
/// falls `phase_s` into a period of `period_ns` on the pipeline's clock (the
/// process's monotonic clock), at least `lead_ns` from now. `None` before the
/// element has a clock and a base time (not yet playing).
fn phased_start(src: &gst_app::AppSrc, period_ns: u64, phase_s: f64, lead_ns: u64) -> Option<u64> {
    let el = src.upcast_ref::<gst::Element>();
    let clock = el.clock()?;
    let base = el.base_time()?.nseconds();
    let now = clock.time().nseconds();
    let period = period_ns.max(1);
    let phase = ((phase_s * 1e9) as u64) % period;
    let earliest = now + lead_ns;
    let first = earliest + (phase + period - earliest % period) % period;
    first.checked_sub(base)
}

/// How far ahead of now a phased first frame is scheduled: enough for the
/// payloader and sink to take it before its time.
const PHASE_LEAD_NS: u64 = 20_000_000;

fn install_scene(src: &gst_app::AppSrc, scene: Scene, live: bool, phase_s: Option<f64>) {
    let spec = scene.spec().clone();
    let Ok(info0) = video_info(spec.width, spec.height, spec.fps) else {
        return;
    };
    let caps0 = info0.to_caps().ok();
    src.set_caps(caps0.as_ref());
    src.set_format(gst::Format::Time);
    src.set_is_live(live);
    src.set_property("block", false);
    // One frame in flight: pacing comes from the sink's clock, so the source
    // renders just in time and latency stays one frame.
    src.set_max_bytes(info0.size() as u64);
    let pool = gst::BufferPool::new();
    let mut cfg = pool.config();
    cfg.set_params(caps0.as_ref(), info0.size() as u32, 2, 0);
    if pool.set_config(cfg).is_err() || pool.set_active(true).is_err() {
        return;
    }
    let frame_ns = 1_000_000_000u64 / u64::from(spec.fps);
    let mut n: u64 = 0;
    let mut shift: Option<u64> = None;
    let mut info = info0;
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                let (w, h) = scene.spec().size_of(n);
                if (w, h) != (info.width(), info.height()) {
                    match video_info(w, h, spec.fps) {
                        Ok(i) => info = i,
                        Err(_) => return,
                    }
                    src.set_caps(info.to_caps().ok().as_ref());
                }
                let Ok(mut buffer) = pool.acquire_buffer(None) else {
                    let _ = src.end_of_stream();
                    return;
                };
                {
                    let Some(b) = buffer.get_mut() else { return };
                    b.set_size(info.size());
                    let shift = *shift.get_or_insert_with(|| match (live, phase_s) {
                        (true, Some(p)) => {
                            phased_start(src, frame_ns, p, PHASE_LEAD_NS).unwrap_or(0)
                        }
                        _ => 0,
                    });
                    b.set_pts(gst::ClockTime::from_nseconds(shift + n * frame_ns));
                    b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
                    let stride = info.stride().first().copied().unwrap_or(0).max(0) as usize;
                    let Ok(mut map) = b.map_writable() else {
                        return;
                    };
                    scene.render(n, map.as_mut_slice(), stride);
                }
                n += 1;
                let _ = src.push_buffer(buffer);
            })
            .build(),
    );
}

/// An H.264 clip held in memory: access units with times relative to the
/// first, and the clip's duration (for seamless looping).
#[derive(Debug)]
pub struct Clip {
    units: Vec<gst::Buffer>,
    caps: gst::Caps,
    duration_ns: u64,
}

impl Clip {
    /// Number of access units (frames).
    pub fn len(&self) -> usize {
        self.units.len()
    }
    /// Whether the clip holds no frame.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

/// Loads `path` as H.264 access units: passed through when it is already
/// H.264, otherwise decoded and encoded once with x264.
pub fn load_h264_clip(path: &Path) -> Result<Clip, IngestError> {
    gst::init().map_err(|e| IngestError::Init(e.to_string()))?;
    let file_err = |reason: String| IngestError::File {
        path: path.to_path_buf(),
        reason,
    };
    let loc = path.to_string_lossy().replace('"', "\\\"");
    let tail = "h264parse ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false";
    let direct = format!("filesrc location=\"{loc}\" ! parsebin name=parse ! {tail}");
    match pull_clip(&direct, true) {
        Ok(c) if !c.is_empty() => return Ok(c),
        Ok(_) | Err(ClipError::NotH264) => {}
        Err(ClipError::Failed(reason)) => {
            return Err(file_err(format!("cannot load as video: {reason}")))
        }
    }
    let transcode = format!(
        "filesrc location=\"{loc}\" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! \
         x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 ! {tail}"
    );
    match pull_clip(&transcode, false) {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(file_err("no video frames".into())),
        Err(ClipError::NotH264) => Err(file_err("no video stream".into())),
        Err(ClipError::Failed(reason)) => Err(file_err(format!("cannot load as video: {reason}"))),
    }
}

enum ClipError {
    /// The file's video is not H.264 (transcode it instead).
    NotH264,
    /// Loading failed; the reason.
    Failed(String),
}

/// No data for this long while loading a clip means the file is broken.
const CLIP_STALL: gst::ClockTime = gst::ClockTime::from_seconds(20);

fn pull_clip(desc: &str, direct: bool) -> Result<Clip, ClipError> {
    let failed = |e: &dyn std::fmt::Display| ClipError::Failed(e.to_string());
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| failed(&e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| ClipError::Failed("not a pipeline".into()))?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or(ClipError::Failed("no appsink".into()))?;
    let not_h264 = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if direct {
        // parsebin exposes the file's elementary streams; a video stream that
        // is not H.264 cannot link to h264parse: flag it and stop early.
        if let Some(parse) = pipeline.by_name("parse") {
            let flag = Arc::clone(&not_h264);
            let weak = pipeline.downgrade();
            parse.connect_pad_added(move |_, pad| {
                let caps = pad.current_caps();
                let name = caps
                    .as_ref()
                    .and_then(|c| c.structure(0))
                    .map(|s| s.name().to_string());
                if let Some(name) = name {
                    if name.starts_with("video/") && name != "video/x-h264" {
                        flag.store(true, std::sync::atomic::Ordering::Relaxed);
                        if let Some(p) = weak.upgrade() {
                            gst::element_error!(
                                p,
                                gst::StreamError::WrongType,
                                ("video is {}, not H.264", name)
                            );
                        }
                    }
                }
            });
        }
    }
    let bus = pipeline.bus().ok_or(ClipError::Failed("no bus".into()))?;
    let finish = |pipeline: &gst::Pipeline| {
        let _ = pipeline.set_state(gst::State::Null);
    };
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        finish(&pipeline);
        return Err(failed(&e));
    }
    let mut units = Vec::new();
    let mut caps = None;
    let mut first: Option<u64> = None;
    let mut last_end = 0u64;
    let mut idle = gst::ClockTime::ZERO;
    loop {
        if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            finish(&pipeline);
            if not_h264.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(ClipError::NotH264);
            }
            if let gst::MessageView::Error(e) = msg.view() {
                if units.is_empty() {
                    return Err(failed(&e.error()));
                }
            }
            break;
        }
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
            if sink.is_eos() {
                break;
            }
            idle += gst::ClockTime::from_mseconds(200);
            if idle >= CLIP_STALL {
                finish(&pipeline);
                return Err(ClipError::Failed(format!(
                    "no data for {} s",
                    CLIP_STALL.seconds()
                )));
            }
            continue;
        };
        idle = gst::ClockTime::ZERO;
        if caps.is_none() {
            caps = sample.caps_owned();
        }
        let Some(buf) = sample.buffer_owned() else {
            continue;
        };
        let pts = buf.pts().or(buf.dts()).map(|t| t.nseconds()).unwrap_or(0);
        let base = *first.get_or_insert(pts);
        let dur = buf.duration().map(|d| d.nseconds()).unwrap_or(33_333_333);
        last_end = last_end.max(pts.saturating_sub(base) + dur);
        units.push(buf);
    }
    finish(&pipeline);
    let Some(caps) = caps else {
        return Ok(Clip {
            units: Vec::new(),
            caps: gst::Caps::new_empty(),
            duration_ns: 1,
        });
    };
    let base = first.unwrap_or(0);
    // Rebase times to start at zero.
    for u in &mut units {
        let b = u.make_mut();
        if let Some(p) = b.pts() {
            b.set_pts(gst::ClockTime::from_nseconds(
                p.nseconds().saturating_sub(base),
            ));
        }
        if let Some(d) = b.dts() {
            b.set_dts(gst::ClockTime::from_nseconds(
                d.nseconds().saturating_sub(base),
            ));
        }
    }
    Ok(Clip {
        units,
        caps,
        duration_ns: last_end.max(1),
    })
}

fn feed_clip(src: &gst_app::AppSrc, clip: Arc<Clip>, start_ns: u64, phase_s: Option<f64>) {
    src.set_caps(Some(&clip.caps));
    src.set_format(gst::Format::Time);
    src.set_is_live(true);
    src.set_max_bytes(1 << 20);
    // Start at the last keyframe at or before `start_ns`, so decoding can begin.
    let mut i = clip
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| {
            !u.flags().contains(gst::BufferFlags::DELTA_UNIT)
                && u.pts().map(|p| p.nseconds()).unwrap_or(0) <= start_ns
        })
        .map(|(i, _)| i)
        .next_back()
        .unwrap_or(0);
    // Times continue from zero: shift by the start unit's time.
    let first = clip
        .units
        .get(i)
        .and_then(|u| u.pts())
        .map(|p| p.nseconds())
        .unwrap_or(0);
    let mut offset: i64 = -(first as i64);
    let mut phased = phase_s.is_none();
    // The clip's frame period, from its first two frames (10 fps if unknown).
    let period_ns = clip
        .units
        .get(i + 1)
        .zip(clip.units.get(i))
        .and_then(|(b, a)| b.pts()?.nseconds().checked_sub(a.pts()?.nseconds()))
        .filter(|&d| d > 0)
        .unwrap_or(100_000_000);
    src.set_callbacks(
        gst_app::AppSrcCallbacks::builder()
            .need_data(move |src, _| {
                let Some(unit) = clip.units.get(i) else {
                    let _ = src.end_of_stream();
                    return;
                };
                if !phased {
                    phased = true;
                    if let Some(t) =
                        phase_s.and_then(|p| phased_start(src, period_ns, p, PHASE_LEAD_NS))
                    {
                        offset = offset.saturating_add(i64::try_from(t).unwrap_or(0));
                    }
                }
                let mut out = unit.copy();
                {
                    let b = out.make_mut();
                    if let Some(p) = unit.pts() {
                        b.set_pts(gst::ClockTime::from_nseconds(
                            p.nseconds().saturating_add_signed(offset),
                        ));
                    }
                    if let Some(d) = unit.dts() {
                        b.set_dts(gst::ClockTime::from_nseconds(
                            d.nseconds().saturating_add_signed(offset),
                        ));
                    }
                }
                i += 1;
                if i == clip.units.len() {
                    i = 0;
                    offset = offset.saturating_add(clip.duration_ns as i64);
                }
                let _ = src.push_buffer(out);
            })
            .build(),
    );
}

/// Encodes `frames` frames of a synthetic scene to an H.264 Matroska file
/// (`.mkv`) or raw byte-stream (`.h264`), for benchmarks and tests.
pub fn encode_scene_to_file(spec: &SceneSpec, frames: u64, out: &Path) -> Result<(), IngestError> {
    gst::init().map_err(|e| IngestError::Init(e.to_string()))?;
    let raw = out.extension().is_some_and(|e| e == "h264");
    let mux = if raw {
        "video/x-h264,stream-format=byte-stream ! filesink name=out"
    } else {
        "matroskamux ! filesink name=out"
    };
    let desc = format!(
        "appsrc name=src ! videoconvert ! video/x-raw,format=I420 ! \
         x264enc speed-preset=ultrafast key-int-max={} ! h264parse ! {mux}",
        spec.fps
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| build_err("encoder", e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| build_err("encoder", "not a pipeline"))?;
    let (Some(src), Some(sink)) = (pipeline.by_name("src"), pipeline.by_name("out")) else {
        return Err(build_err("encoder", "missing elements"));
    };
    sink.set_property("location", out.to_string_lossy().as_ref());
    let Ok(src) = src.downcast::<gst_app::AppSrc>() else {
        return Err(build_err("encoder", "src is not an appsrc"));
    };
    let scene = Scene::new(spec.clone());
    let info = video_info(spec.width, spec.height, spec.fps)?;
    src.set_caps(info.to_caps().ok().as_ref());
    src.set_format(gst::Format::Time);
    src.set_property("block", true);
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| build_err("encoder", e))?;
    let frame_ns = 1_000_000_000u64 / u64::from(spec.fps);
    let stride = info.stride().first().copied().unwrap_or(0).max(0) as usize;
    for n in 0..frames {
        let mut buffer =
            gst::Buffer::with_size(info.size()).map_err(|e| build_err("encoder", e))?;
        {
            let Some(b) = buffer.get_mut() else { break };
            b.set_pts(gst::ClockTime::from_nseconds(n * frame_ns));
            b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
            let mut map = b.map_writable().map_err(|e| build_err("encoder", e))?;
            scene.render(n, map.as_mut_slice(), stride);
        }
        if src.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let bus = pipeline
        .bus()
        .ok_or_else(|| build_err("encoder", "no bus"))?;
    let result = match bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(m) => match m.view() {
            gst::MessageView::Error(e) => Err(build_err("encoder", e.error())),
            _ => Ok(()),
        },
        None => Err(build_err("encoder", "timed out")),
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_take_a_start_and_a_phase_in_either_order_and_bad_ones_are_named() {
        let file = env!("CARGO_MANIFEST_DIR").to_string() + "/Cargo.toml";
        for spec in [
            format!("a={file}#start=19#phase=0.031"),
            format!("a={file}#phase=0.031#start=19"),
        ] {
            let m = Mount::parse(&spec).expect(&spec);
            assert_eq!(m.source, MountSource::File(file.clone().into(), 19.0));
            assert_eq!(m.phase_s, Some(0.031));
        }
        let m = Mount::parse("s=synthetic:?fps=10#phase=0.05").expect("synthetic");
        assert!(matches!(m.source, MountSource::Synthetic(_)));
        assert_eq!(m.phase_s, Some(0.05));
        assert_eq!(
            Mount::parse(&format!("a={file}")).expect("plain").phase_s,
            None
        );
        for (spec, what) in [
            (format!("a={file}#phase=x"), "phase=\"x\""),
            (format!("a={file}#phase=-1"), "phase=-1 out of range"),
            (format!("a={file}#phase=1#phase=2"), "phase given twice"),
            (format!("a={file}#start=1#start=2"), "start given twice"),
        ] {
            let e = Mount::parse(&spec).expect_err(&spec);
            assert!(e.contains(what), "{spec}: {e}");
        }
    }
}
