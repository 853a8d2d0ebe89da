#!/usr/bin/env python3
"""The Python pipeline a user would deploy next to one camera, as the
reference for `vidar-edge bench cameras` (issue 5): one process per camera,
OpenCV (FFmpeg backend, RTSP over TCP) capture, onnxruntime on the same SSD
model file Vidar ships (its post-processed form, NMS in the graph), persons
above score 0.5, and a norfair tracker. With --int8, the int8 model Vidar
runs at `precision = "int8"` (the raw form: boxes decoded against the
anchors and NMS at IoU 0.6 with OpenCV, as Vidar does in Rust), for a
comparison at equal tuning: by default the person SSD's, whose input is the
300x300 image as 2x2 pixel blocks (numpy writes them); --int8-model names
another (ssd_mobilenet_v2_coco_raw_int8.onnx: the full raw SSD's).

It analyses frames for --warmup seconds (not recorded), then for --seconds,
and writes a JSON report:

  frames          frames analysed in the measured window
  seconds         length of that window (wall clock)
  fps             frames / seconds
  latency_ms      per frame i: (result_i - result_first) - (pts_i - pts_first),
                  the delay relative to the stream clock, first = the first
                  frame of the window; it grows when the process cannot keep
                  up and frames queue inside FFmpeg/OpenCV or the socket
  done_ms         per frame, when its result was ready on the monotonic clock
                  (CLOCK_MONOTONIC), ms: the benchmark computes latency from
                  the moment the test camera sent the frame with it
  dropped         frames missing from the pts sequence (gaps against the
                  nominal --fps; RTP sequence numbers are not exposed)
  cpu_seconds     user + system CPU of this process in the window
  rss_bytes       resident set size at the end of the window
  peak_rss_bytes  peak resident set size of this process
  persons_detected  person detections in the window (a sanity check)

With --boxes PATH (for a file: `bench capacity`'s detection agreement), every
frame from the first is analysed to the end of the file, and PATH gets one
list per frame, in order, of its person boxes [x1, y1, x2, y2] in pixels.

Usage:
  python reference_pipeline.py --url rtsp://127.0.0.1:8554/cam0 --seconds 60 --out r.json
"""

import argparse
import json
import os
import resource
import sys
import time

# Must be set before OpenCV opens the stream: RTSP over TCP, like Vidar's bench.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

import cv2  # noqa: E402
import norfair  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

MODEL_FILE = "ssd_mobilenet_v2_coco_quant.onnx"
INT8_FILE = "ssd_mobilenet_v2_person_int8.onnx"
INPUT = "normalized_input_image_tensor"
OUTPUTS = [
    "TFLite_Detection_PostProcess",  # boxes [1, 20, 4]: ymin, xmin, ymax, xmax (0..1)
    "TFLite_Detection_PostProcess:1",  # classes [1, 20]
    "TFLite_Detection_PostProcess:2",  # scores [1, 20]
    "TFLite_Detection_PostProcess:3",  # count [1]
]
PERSON = 0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="rtsp:// URL (or a file)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--out", required=True, help="JSON report path")
    p.add_argument("--model-dir", default=os.environ.get("VIDAR_MODEL_DIR", ".cache/models"))
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    p.add_argument("--score", type=float, default=0.5)
    p.add_argument("--fps", type=float, default=10.0, help="nominal stream rate, for dropped frames")
    p.add_argument("--int8", action="store_true", help="the int8 raw SSD (decode + NMS here)")
    p.add_argument("--int8-model", default=INT8_FILE, help="its file in --model-dir")
    p.add_argument("--boxes", help="write every frame's person boxes here (JSON), from the first frame to the end")
    args = p.parse_args()
    if args.boxes:
        args.warmup, args.seconds = 0.0, float("inf")
    return args


ANCHORS_FILE = "ssd_anchors_ycxchw.npy"  # (1917, 4): yc, xc, h, w
RAW_OUTPUTS = ["Squeeze_prequant", "convert_scores_prequant"]
PERSON_RAW = 1  # class index in the raw score tensor (0 is background)


def session(model_dir, threads, model_file=MODEL_FILE):
    path = os.path.join(model_dir, model_file)
    if not os.path.isfile(path):
        sys.exit(f"no model at {path} (set VIDAR_MODEL_DIR)")
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def detect(sess, frame, score):
    h, w = frame.shape[:2]
    x = cv2.cvtColor(cv2.resize(frame, (300, 300)), cv2.COLOR_BGR2RGB)[np.newaxis]
    boxes, classes, scores, count = sess.run(OUTPUTS, {INPUT: x})
    n = int(count[0])
    dets = []
    for b, c, s in zip(boxes[0][:n], classes[0][:n], scores[0][:n]):
        if int(c) != PERSON or s < score:
            continue
        y1, x1, y2, x2 = b
        pts = np.array([[x1 * w, y1 * h], [x2 * w, y2 * h]], dtype=np.float64)
        dets.append(norfair.Detection(points=pts, scores=np.array([s, s])))
    return dets


def blocks(x):
    """[1, H, W, 3] as 2x2 pixel blocks, [1, H/2, W/2, 12] (the person SSD's input)."""
    n, h, w, c = x.shape
    return np.ascontiguousarray(
        x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c))


def detect_raw(sess, anchors, frame, score, as_blocks):
    """The raw form: SSD box decoding (scales 10, 10, 5, 5) and NMS."""
    h, w = frame.shape[:2]
    x = cv2.cvtColor(cv2.resize(frame, (300, 300)), cv2.COLOR_BGR2RGB)[np.newaxis]
    if as_blocks:
        x = blocks(x)
    loc, scores = sess.run(RAW_OUTPUTS, {INPUT: x})
    s = scores[0][:, PERSON_RAW]
    keep = np.nonzero(s >= score)[0]
    if keep.size == 0:
        return []
    loc, a, s = loc[0][keep], anchors[keep], s[keep]
    yc = loc[:, 0] / 10 * a[:, 2] + a[:, 0]
    xc = loc[:, 1] / 10 * a[:, 3] + a[:, 1]
    bh = np.exp(loc[:, 2] / 5) * a[:, 2]
    bw = np.exp(loc[:, 3] / 5) * a[:, 3]
    rects = np.stack([(xc - bw / 2) * w, (yc - bh / 2) * h, bw * w, bh * h], 1)
    dets = []
    for i in np.array(cv2.dnn.NMSBoxes(rects.tolist(), s.tolist(), score, 0.6)).reshape(-1)[:50]:
        x1, y1, bw_, bh_ = rects[i]
        pts = np.array([[x1, y1], [x1 + bw_, y1 + bh_]], dtype=np.float64)
        dets.append(norfair.Detection(points=pts, scores=np.array([s[i], s[i]])))
    return dets


def current_rss():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main():
    args = parse_args()
    if args.int8:
        sess = session(args.model_dir, args.threads, args.int8_model)
        anchors = np.load(os.path.join(args.model_dir, ANCHORS_FILE))
        outputs = RAW_OUTPUTS
    else:
        sess, outputs = session(args.model_dir, args.threads), OUTPUTS
    # One inference before the stream opens, so model start-up is not latency.
    shape = [1] + [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape[1:]]
    as_blocks = shape[-1] == 12
    sess.run(outputs, {INPUT: np.zeros(shape, np.uint8)})
    tracker = norfair.Tracker(distance_function="iou", distance_threshold=0.7)

    cap = cv2.VideoCapture(args.url, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        sys.exit(f"cannot open {args.url}")

    started = time.monotonic()
    window_start = None  # monotonic time of the first recorded result
    first = None  # (result time, pts) of the first recorded frame
    latency_ms, pts_ms, done_ms = [], [], []
    failures, cpu0, persons = 0, None, 0
    boxes = []  # per frame, with --boxes
    while True:
        ok, frame = cap.read()
        if not ok:
            failures += 1
            if failures > 50:
                break
            time.sleep(0.02)
            continue
        pts = cap.get(cv2.CAP_PROP_POS_MSEC)
        if args.int8:
            dets = detect_raw(sess, anchors, frame, args.score, as_blocks)
        else:
            dets = detect(sess, frame, args.score)
        tracker.update(detections=dets)
        if args.boxes is not None:
            boxes.append([[round(float(v), 2) for v in d.points.reshape(-1)] for d in dets])
        now = time.monotonic()
        if now - started < args.warmup:
            continue
        if first is None:
            first, window_start = (now, pts), now
            t = os.times()
            cpu0 = t.user + t.system
        elif now - window_start >= args.seconds:
            break
        latency_ms.append((now - first[0]) * 1000.0 - (pts - first[1]))
        persons += len(dets)
        pts_ms.append(pts)
        done_ms.append(time.monotonic_ns() / 1e6)
    t = os.times()
    rss = current_rss()
    wall = (time.monotonic() - window_start) if window_start is not None else 0.0
    cpu = (t.user + t.system - cpu0) if cpu0 is not None else 0.0
    cap.release()

    step = 1000.0 / args.fps
    dropped = sum(max(0, round((b - a) / step) - 1) for a, b in zip(pts_ms, pts_ms[1:]))
    report = {
        "url": args.url,
        "frames": len(latency_ms),
        "seconds": wall,
        "fps": len(latency_ms) / wall if wall > 0 else 0.0,
        "dropped": int(dropped),
        "read_failures": failures,
        "persons_detected": persons,
        "cpu_seconds": cpu,
        "rss_bytes": rss,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "latency_ms": latency_ms,
        "pts_ms": pts_ms,
        "done_ms": done_ms,
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "norfair": getattr(norfair, "__version__", "?"),
    }
    with open(args.out, "w") as f:
        json.dump(report, f)
    if args.boxes is not None:
        with open(args.boxes, "w") as f:
            json.dump(boxes, f)
    return 0 if latency_ms else 1


if __name__ == "__main__":
    sys.exit(main())
