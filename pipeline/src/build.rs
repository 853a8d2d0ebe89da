//! Building ingest pipelines: source head (RTSP, file, synthetic), decoder
//! choice, conversion to the frames' pixel layout (the decoder's own I420, or
//! packed RGB), and the appsink that hands frames to Rust.
//!
//! RTSP:      rtspsrc -> depay -> parse -> decoder -> [nvvidconv] -> tail
//! file:      filesrc -> decodebin -> tail
//! synthetic: appsrc (rendered in Rust) -> tail
//! tail:      videoconvert -> videoscale -> capsfilter(I420|RGB[,size]) -> appsink|fakesink
//!            (with I420 from a decoder and no size, both pass buffers through)

use crate::config::{DecoderChoice, IngestConfig, PixelFormat, Transport};
use crate::error::{element_hint, IngestError};
use crate::frame::{Frame, Layout, Matrix, Planes};
use crate::ingest::Shared;
use crate::source::Source;
use crate::synthetic::Scene;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vidar_protocol::StreamState;

/// Hardware H.264 decoders, most preferred first: Jetson, VA-API (new, old),
/// V4L2 stateful (Raspberry Pi, i.MX), NVDEC on desktop GPUs.
pub const H264_HW_DECODERS: &[&str] = &[
    "nvv4l2decoder",
    "vah264dec",
    "vaapih264dec",
    "v4l2h264dec",
    "nvh264dec",
];
/// Hardware H.265 decoders, most preferred first.
pub const H265_HW_DECODERS: &[&str] = &[
    "nvv4l2decoder",
    "vah265dec",
    "vaapih265dec",
    "v4l2h265dec",
    "nvh265dec",
];

/// A built, not yet started, pipeline.
pub(crate) struct Built {
    pub(crate) pipeline: gst::Pipeline,
}

/// Where the converted frames end up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// Vidar's appsink into the frame queue.
    App,
    /// A `fakesink`: the same pipeline without Vidar, as a throughput bound.
    Fake,
}

fn make(factory: &str, name: Option<&str>) -> Result<gst::Element, IngestError> {
    let b = gst::ElementFactory::make(factory);
    let b = match name {
        Some(n) => b.name(n),
        None => b,
    };
    b.build().map_err(|_| IngestError::MissingElement {
        factory: factory.into(),
        hint: element_hint(factory),
    })
}

fn available(factory: &str) -> bool {
    gst::ElementFactory::find(factory).is_some()
}

/// Fails early, with the package to install, when an element the source needs
/// is missing.
pub(crate) fn check_elements(source: &Source) -> Result<(), IngestError> {
    let needed: &[&str] = match source {
        Source::Rtsp { .. } => &[
            "rtspsrc",
            "rtph264depay",
            "h264parse",
            "videoconvert",
            "videoscale",
            "appsink",
        ],
        Source::File { .. } => &[
            "filesrc",
            "decodebin",
            "videoconvert",
            "videoscale",
            "appsink",
        ],
        Source::Synthetic(_) => &["appsrc", "videoconvert", "videoscale", "appsink"],
    };
    for f in needed {
        if !available(f) {
            return Err(IngestError::MissingElement {
                factory: (*f).into(),
                hint: element_hint(f),
            });
        }
    }
    Ok(())
}

/// The decoder element to use for `codec` ("H264" or "H265") under `choice`.
pub fn choose_decoder(codec: &str, choice: &DecoderChoice) -> Option<String> {
    let (hw, sw): (&[&str], &[&str]) = match codec {
        "H265" => (H265_HW_DECODERS, &["avdec_h265", "libde265dec"]),
        _ => (H264_HW_DECODERS, &["avdec_h264", "openh264dec"]),
    };
    match choice {
        DecoderChoice::Element(name) => available(name).then(|| name.clone()),
        DecoderChoice::Software => sw.iter().find(|f| available(f)).map(|s| s.to_string()),
        DecoderChoice::Auto => hw
            .iter()
            .chain(sw.iter())
            .find(|f| available(f))
            .map(|s| s.to_string()),
    }
}

fn bad_build(what: &str, e: impl std::fmt::Display) -> IngestError {
    IngestError::Build {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// The layout `config` asks for from `source`: `auto` is I420 for decoded
/// video and RGB for synthetic sources (rendered in RGB).
pub fn pixel_format_of(config: &IngestConfig, source: &Source) -> PixelFormat {
    match (config.pixel_format, source) {
        (PixelFormat::Auto, Source::Synthetic(_)) => PixelFormat::Rgb,
        (PixelFormat::Auto, _) => PixelFormat::I420,
        (f, _) => f,
    }
}

/// The conversion tail; returns its first element.
fn tail(
    pipeline: &gst::Pipeline,
    config: &IngestConfig,
    format: PixelFormat,
    sink: &gst::Element,
) -> Result<gst::Element, IngestError> {
    let convert = make("videoconvert", None)?;
    if convert.has_property("n-threads") {
        convert.set_property("n-threads", config.convert_threads);
    }
    let scale = make("videoscale", None)?;
    let filter = make("capsfilter", None)?;
    let name = if format == PixelFormat::I420 {
        "I420"
    } else {
        "RGB"
    };
    let mut caps = gst::Caps::builder("video/x-raw").field("format", name);
    if let (Some(w), Some(h)) = (config.width, config.height) {
        caps = caps.field("width", w as i32).field("height", h as i32);
    }
    filter.set_property("caps", caps.build());
    pipeline
        .add_many([&convert, &scale, &filter, sink])
        .map_err(|e| bad_build("conversion", e))?;
    gst::Element::link_many([&convert, &scale, &filter, sink])
        .map_err(|e| bad_build("conversion", e))?;
    Ok(convert)
}

/// Builds the ingest pipeline for `source` feeding `shared`'s queue.
pub(crate) fn build(
    shared: &Arc<Shared>,
    config: &IngestConfig,
    source: &Source,
) -> Result<Built, IngestError> {
    let sink = app_sink(shared, config, source);
    let pipeline = build_with_sink(config, source, sink.upcast(), Some(Arc::clone(shared)))?;
    Ok(Built { pipeline })
}

/// Builds the same pipeline ending in `fakesink` (the benchmark's bound).
pub fn build_bound(config: &IngestConfig) -> Result<gst::Pipeline, IngestError> {
    let source = config.checked_source()?;
    gst::init().map_err(|e| IngestError::Init(e.to_string()))?;
    let sink = make("fakesink", None)?;
    sink.set_property("sync", config.realtime && !source.is_live());
    build_with_sink(config, &source, sink, None)
}

fn build_with_sink(
    config: &IngestConfig,
    source: &Source,
    sink: gst::Element,
    shared: Option<Arc<Shared>>,
) -> Result<gst::Pipeline, IngestError> {
    let pipeline = gst::Pipeline::with_name(&format!("ingest-{}", config.camera));
    // A realtime clock, so buffer times map to wall-clock capture times.
    let clock: gst::Clock = gst::glib::Object::builder::<gst::SystemClock>()
        .property("clock-type", gst::ClockType::Realtime)
        .build()
        .upcast();
    pipeline.use_clock(Some(&clock));
    let head = tail(&pipeline, config, pixel_format_of(config, source), &sink)?;
    match source {
        Source::Rtsp { url, .. } => rtsp_head(&pipeline, config, url, &head, shared)?,
        Source::File { path } => {
            if !path.is_file() {
                return Err(IngestError::File {
                    path: path.clone(),
                    reason: if path.exists() {
                        "not a regular file".into()
                    } else {
                        "no such file".into()
                    },
                });
            }
            if let Err(e) = std::fs::File::open(path) {
                return Err(IngestError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                });
            }
            file_head(&pipeline, path, config.decoder_threads, &head, shared)?
        }
        Source::Synthetic(spec) => synthetic_head(&pipeline, config, spec.clone(), &head)?,
    }
    Ok(pipeline)
}

fn rtsp_head(
    pipeline: &gst::Pipeline,
    config: &IngestConfig,
    url: &str,
    head: &gst::Element,
    shared: Option<Arc<Shared>>,
) -> Result<(), IngestError> {
    let src = make("rtspsrc", None)?;
    src.set_property("location", url);
    src.set_property("latency", config.latency_ms);
    src.set_property("drop-on-latency", true);
    src.set_property_from_str(
        "protocols",
        match config.transport {
            Transport::Auto => "udp+tcp",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        },
    );
    // Switch UDP -> TCP after 2 s without data; TCP connect/IO timeout follows
    // the connect timeout; do not wait long on TEARDOWN to a dead server.
    src.set_property("timeout", 2_000_000u64);
    src.set_property(
        "tcp-timeout",
        config.connect_timeout_ms.saturating_mul(1000),
    );
    if src.has_property("teardown-timeout") {
        src.set_property("teardown-timeout", 100_000_000u64);
    }
    pipeline.add(&src).map_err(|e| bad_build("rtspsrc", e))?;
    let head = head.clone();
    let choice = config.decoder.clone();
    let threads = config.decoder_threads;
    let pipe_weak = pipeline.downgrade();
    src.connect_pad_added(move |_src, pad| {
        let Some(pipeline) = pipe_weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
        let Some(s) = caps.as_ref().and_then(|c| c.structure(0)) else {
            return;
        };
        let media = s.get::<&str>("media").unwrap_or("");
        let enc = s
            .get::<&str>("encoding-name")
            .unwrap_or("")
            .to_ascii_uppercase();
        if media != "video" || head.sink_pads().iter().any(|p| p.is_linked()) {
            discard_pad(&pipeline, pad);
            return;
        }
        match link_rtp_video(&pipeline, pad, &enc, &choice, threads, &head) {
            Ok(decoder) => {
                if let Some(sh) = &shared {
                    *sh.decoder.lock().unwrap_or_else(|p| p.into_inner()) = Some(decoder);
                    // What the stream costs the link: the RTP bytes of the video.
                    let sh = Arc::clone(sh);
                    pad.add_probe(
                        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
                        move |_, info| {
                            let n = match &info.data {
                                Some(gst::PadProbeData::Buffer(b)) => b.size(),
                                Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                                _ => 0,
                            };
                            sh.bytes.fetch_add(n as u64, Ordering::Relaxed);
                            gst::PadProbeReturn::Ok
                        },
                    );
                }
            }
            Err(e) => {
                let msg = format!("cannot decode {enc} video: {e}");
                gst::element_error!(pipeline, gst::StreamError::CodecNotFound, ("{}", msg));
            }
        }
    });
    Ok(())
}

/// Links an RTP video pad through depayloader, parser and decoder to `head`;
/// returns the decoder's factory name.
fn link_rtp_video(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    enc: &str,
    choice: &DecoderChoice,
    threads: u32,
    head: &gst::Element,
) -> Result<String, String> {
    let (depay, parse, codec) = match enc {
        "H264" => ("rtph264depay", "h264parse", "H264"),
        "H265" => ("rtph265depay", "h265parse", "H265"),
        other => {
            return Err(format!(
                "unsupported RTP encoding {other:?} (H264 and H265 are supported)"
            ))
        }
    };
    let dec_name = choose_decoder(codec, choice)
        .ok_or_else(|| format!("no {codec} decoder available ({choice:?})"))?;
    let mk = |f: &str| make(f, None).map_err(|e| e.to_string());
    let mut chain = vec![mk(depay)?, mk(parse)?, mk(&dec_name)?];
    if dec_name == "nvv4l2decoder" && available("nvvidconv") {
        chain.push(mk("nvvidconv")?);
    }
    configure_decoder(&chain[2], threads);
    for e in &chain {
        pipeline.add(e).map_err(|e| e.to_string())?;
    }
    gst::Element::link_many(chain.iter()).map_err(|e| e.to_string())?;
    chain
        .last()
        .ok_or("empty chain")?
        .link(head)
        .map_err(|e| e.to_string())?;
    for e in &chain {
        e.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    let sink = chain[0]
        .static_pad("sink")
        .ok_or("depayloader without sink pad")?;
    pad.link(&sink).map_err(|e| format!("{e:?}"))?;
    Ok(dec_name)
}

/// Decoder settings: keep going over corrupt frames (count errors instead
/// of failing), and the worker
/// threads of a decoder that has them (`max-threads`, libav's; 0 = its
/// own choice, one per core).
fn configure_decoder(dec: &gst::Element, threads: u32) {
    if dec.has_property("max-errors") {
        dec.set_property("max-errors", -1i32);
    }
    if dec.has_property("max-threads") {
        dec.set_property("max-threads", i32::try_from(threads).unwrap_or(i32::MAX));
    }
}

/// Sends a pad we do not analyse (audio, metadata, a second video) to a fakesink.
fn discard_pad(pipeline: &gst::Pipeline, pad: &gst::Pad) {
    let Ok(fake) = make("fakesink", None) else {
        return;
    };
    fake.set_property("sync", false);
    fake.set_property("async", false);
    if pipeline.add(&fake).is_ok() {
        if let Some(sink) = fake.static_pad("sink") {
            let _ = pad.link(&sink);
        }
        let _ = fake.sync_state_with_parent();
    }
}

fn file_head(
    pipeline: &gst::Pipeline,
    path: &std::path::Path,
    threads: u32,
    head: &gst::Element,
    shared: Option<Arc<Shared>>,
) -> Result<(), IngestError> {
    let src = make("filesrc", None)?;
    src.set_property("location", path.to_string_lossy().as_ref());
    let decode = make("decodebin", None)?;
    pipeline
        .add_many([&src, &decode])
        .map_err(|e| bad_build("file source", e))?;
    src.link(&decode).map_err(|e| bad_build("file source", e))?;
    let sh = shared.clone();
    decode.connect("deep-element-added", false, move |args| {
        let el = args.get(2).and_then(|v| v.get::<gst::Element>().ok());
        if let Some(el) = el {
            if let Some(f) = el.factory() {
                if f.klass().contains("Decoder") {
                    configure_decoder(&el, threads);
                    if let Some(sh) = &sh {
                        *sh.decoder.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(f.name().to_string());
                    }
                }
            }
        }
        None
    });
    let head = head.clone();
    let pipe_weak = pipeline.downgrade();
    decode.connect_pad_added(move |_d, pad| {
        let Some(pipeline) = pipe_weak.upgrade() else {
            return;
        };
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        let linked = head.sink_pads().iter().any(|p| p.is_linked());
        match head.static_pad("sink") {
            Some(sink) if is_video && !linked => {
                if let Err(e) = pad.link(&sink) {
                    gst::element_error!(
                        pipeline,
                        gst::StreamError::Format,
                        ("cannot link decoded video: {:?}", e)
                    );
                }
            }
            _ => discard_pad(&pipeline, pad),
        }
    });
    Ok(())
}

fn synthetic_head(
    pipeline: &gst::Pipeline,
    config: &IngestConfig,
    spec: crate::synthetic::SceneSpec,
    head: &gst::Element,
) -> Result<(), IngestError> {
    let src = crate::camera::scene_appsrc(Scene::new(spec), config.realtime)?;
    pipeline
        .add(&src)
        .map_err(|e| bad_build("synthetic source", e))?;
    src.link(head)
        .map_err(|e| bad_build("synthetic source", e))?;
    Ok(())
}

fn app_sink(shared: &Arc<Shared>, config: &IngestConfig, source: &Source) -> gst_app::AppSink {
    // Live sources: deliver as soon as decoded. Files/synthetic: pace at the
    // stream's rate unless the user asked for as-fast-as-possible.
    let sync = config.realtime && !source.is_live();
    let clock_times = source.is_live() || config.realtime;
    let block = config.queue_policy == crate::config::QueuePolicy::Block;
    let sink = gst_app::AppSink::builder()
        .name("vidar-sink")
        .sync(sync)
        .max_buffers(2)
        .drop(true)
        .enable_last_sample(false)
        .build();
    let shared = Arc::clone(shared);
    let mut cached: Option<Cached> = None;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                on_sample(&shared, sink, &sample, &mut cached, clock_times, block);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    sink
}

/// What a stream's current caps say about its frames.
struct Cached {
    caps: gst::Caps,
    width: u32,
    height: u32,
    stride: usize,
    layout: Layout,
}

/// The layout of frames of `info`; `None` for a format other than RGB and I420.
fn layout_of(info: &gst_video::VideoInfo) -> Option<(usize, Layout)> {
    let stride = |i: usize| info.stride().get(i).copied().unwrap_or(0).max(0) as usize;
    match info.format() {
        gst_video::VideoFormat::Rgb => Some((stride(0), Layout::Rgb)),
        gst_video::VideoFormat::I420 => {
            let c = info.colorimetry();
            let matrix = match c.matrix() {
                gst_video::VideoColorMatrix::Bt709 => Matrix::Bt709,
                gst_video::VideoColorMatrix::Bt2020 => Matrix::Bt2020,
                _ => Matrix::Bt601,
            };
            let offset = |i: usize| info.offset().get(i).copied().unwrap_or(0);
            let planes = Planes {
                offsets: [offset(0), offset(1), offset(2)],
                strides: [stride(0), stride(1), stride(2)],
                matrix,
                full_range: c.range() == gst_video::VideoColorRange::Range0_255,
            };
            Some((stride(0), Layout::I420(planes)))
        }
        _ => None,
    }
}

fn on_sample(
    shared: &Shared,
    sink: &gst_app::AppSink,
    sample: &gst::Sample,
    cached: &mut Option<Cached>,
    clock_times: bool,
    block: bool,
) {
    let Some(caps) = sample.caps() else { return };
    let fresh = match cached {
        Some(c) => !(c.caps.as_ptr() == caps.as_ptr() || c.caps.as_ref() == caps),
        None => true,
    };
    if fresh {
        let Some((info, (stride, layout))) = gst_video::VideoInfo::from_caps(caps)
            .ok()
            .and_then(|info| layout_of(&info).map(|l| (info, l)))
        else {
            shared.decode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        *cached = Some(Cached {
            caps: caps.to_owned(),
            width: info.width(),
            height: info.height(),
            stride,
            layout,
        });
        shared.width.store(info.width(), Ordering::Relaxed);
        shared.height.store(info.height(), Ordering::Relaxed);
    }
    let Some((width, height, mut stride, mut layout)) = cached
        .as_ref()
        .map(|c| (c.width, c.height, c.stride, c.layout))
    else {
        return;
    };
    let Some(buffer) = sample.buffer_owned() else {
        return;
    };
    let pts = buffer.pts();
    let now = SystemTime::now();
    let capture_time = if clock_times {
        capture_time_of(sink, sample, pts)
            .filter(|t| *t <= now)
            .unwrap_or(now)
    } else {
        now
    };
    // A buffer may lay its planes out otherwise than the caps' defaults.
    if let (Some(meta), Layout::I420(planes)) = (buffer.meta::<gst_video::VideoMeta>(), &mut layout)
    {
        if let (&[o0, o1, o2, ..], &[s0, s1, s2, ..]) = (meta.offset(), meta.stride()) {
            let s = |v: i32| v.max(0) as usize;
            planes.offsets = [o0, o1, o2];
            planes.strides = [s(s0), s(s1), s(s2)];
            stride = s(s0);
        }
    }
    let Ok(data) = buffer.into_mapped_buffer_readable() else {
        shared.decode_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if data.len() < layout.needed(stride, height) {
        shared.decode_errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let frame = Frame {
        camera: shared.camera.clone(),
        seq: shared.next_seq.fetch_add(1, Ordering::Relaxed),
        pts: pts.map(|p| Duration::from_nanos(p.nseconds())),
        capture_time,
        decoded_at: Instant::now(),
        width,
        height,
        stride,
        layout,
        data: crate::frame::Pixels::Gst(data),
    };
    shared.frames.fetch_add(1, Ordering::Relaxed);
    let ns = shared.epoch.elapsed().as_nanos().max(1) as u64;
    shared.last_frame_ns.store(ns, Ordering::Relaxed);
    shared.set_state(StreamState::Streaming);
    // An evicted frame is dropped here, outside the queue's lock.
    let evicted = if block {
        shared.queue.push_wait(frame, || shared.stopping())
    } else {
        shared.queue.push(frame)
    };
    drop(evicted);
}

/// Wall-clock time of a buffer: base time + running time on the pipeline's
/// realtime clock.
fn capture_time_of(
    sink: &gst_app::AppSink,
    sample: &gst::Sample,
    pts: Option<gst::ClockTime>,
) -> Option<SystemTime> {
    let pts = pts?;
    let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    let running = seg.to_running_time(pts)?;
    let base = sink.base_time()?;
    let ns = base.nseconds().checked_add(running.nseconds())?;
    UNIX_EPOCH.checked_add(Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_software_decoder_gets_the_threads_asked_for() {
        crate::init().expect("GStreamer");
        let Some(name) = choose_decoder("H264", &DecoderChoice::Software) else {
            panic!("no software H.264 decoder (gstreamer1.0-libav)");
        };
        let dec = make(&name, None).expect("decoder");
        if !dec.has_property("max-threads") {
            // openh264dec has no worker threads to set.
            assert_eq!(name, "openh264dec");
            return;
        }
        for threads in [1u32, 0, 3] {
            configure_decoder(&dec, threads);
            assert_eq!(dec.property::<i32>("max-threads"), threads as i32, "{name}");
        }
        assert_eq!(dec.property::<i32>("max-errors"), -1);
    }
}
