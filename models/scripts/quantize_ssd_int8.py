"""Static QDQ int8 quantisation of the raw SSD (issue 14), reproducible:

    python models/scripts/quantize_ssd_int8.py calibrate         # once: writes models/ssd_int8_calibration.json
    python models/scripts/quantize_ssd_int8.py build SRC DST     # make models (recipe ssd-int8): DST from SRC
    python models/scripts/quantize_ssd_int8.py eval [ROUNDS]     # agreement with float, then A/B speed rounds

(`.cache/venv/bin/python`, made by deploy/setup.sh, has every package needed.)

Calibration: 40 frames of vtest.avi (OpenCV's sample video, from Debian's
opencv-doc), every 19th, through the float model on ONNX Runtime's CPU
provider: the min/max of every activation (MinMax). They are kept in the
repository (`models/ssd_int8_calibration.json`, ONNX Runtime's calibration
cache format) because activations computed on another CPU may differ in
their last bits, and the model file must be the same everywhere (its
checksum is in the manifest). `build` reads only that file: ONNX's shape
inference, the QDQ graph and numpy's weight quantisation (per channel, int8
weights, uint8 activations) are deterministic. ONNX Runtime's optional
pre-processing (`quant_pre_process`, which runs its graph optimiser) is not
used for the same reason; ONNX Runtime fuses the QDQ patterns at load. The
first convolution's weights are then stored as uint8 (`int8.exact_first_conv`:
the same values, computed exactly on every x86 CPU, with or without VNNI).

Evaluation: 150 other frames (every 5th from frame 7): person boxes at score
>= 0.5 after NMS, int8 against float at IoU 0.5; then fp32 and int8 on one
thread, interleaved, 30 runs per round. Numbers: docs/benchmarks.md.
"""
import sys, time, numpy as np, cv2
from int8 import build, calibrate, session

import os
from pathlib import Path

MODELS = Path(os.environ.get("VIDAR_MODEL_DIR", Path(__file__).resolve().parents[2] / ".cache/models"))
SRC = str(MODELS / "ssd_mobilenet_v2_coco_raw_batch.onnx")
CALIBRATION = Path(__file__).resolve().parents[1] / "ssd_int8_calibration.json"
VIDEO = os.environ.get("VIDAR_VTEST", "/usr/share/doc/opencv-doc/examples/data/vtest.avi")
INPUT = "normalized_input_image_tensor"

def frames(start, n, step):
    cap = cv2.VideoCapture(VIDEO)
    out, i = [], 0
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        if i >= start and (i - start) % step == 0:
            rgb = cv2.cvtColor(cv2.resize(f, (300, 300), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
            out.append(rgb[None].astype(np.uint8))
        i += 1
    return out

if sys.argv[1] == "calibrate":
    calib = frames(0, 40, 19)  # 40 frames over the video
    if len(calib) != 40:
        raise SystemExit(f"{VIDEO}: only {len(calib)} calibration frames")
    calibrate(SRC, INPUT, calib, CALIBRATION)
    print("written", CALIBRATION)
elif sys.argv[1] == "build":
    import onnx
    from int8 import exact_first_conv
    build(sys.argv[2], sys.argv[3], CALIBRATION)
    model = onnx.load(sys.argv[3])
    exact_first_conv(model)
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[3])
    print("written", sys.argv[3])
else:
    anchors = np.load(MODELS / "ssd_anchors_ycxchw.npy")  # (1917, 4) yc xc h w
    def decode(loc, scores, thr=0.5):
        yc = loc[:, 0] / 10 * anchors[:, 2] + anchors[:, 0]
        xc = loc[:, 1] / 10 * anchors[:, 3] + anchors[:, 1]
        h = np.exp(loc[:, 2] / 5) * anchors[:, 2]
        w = np.exp(loc[:, 3] / 5) * anchors[:, 3]
        s = scores[:, 1]  # convert_scores: already sigmoid probabilities
        keep = s >= thr
        boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], 1)[keep]
        s = s[keep]
        order = np.argsort(-s); out = []
        for i in order:
            b = boxes[i]
            if all(iou(b, o) < 0.5 for o in out):
                out.append(b)
        return out
    def iou(a, b):
        ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        u = (a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - inter
        return inter / u if u > 0 else 0
    out = os.environ.get("INT8", str(MODELS / "ssd_mobilenet_v2_coco_raw_int8.onnx"))
    fp, q = session(SRC), session(out)
    test = frames(7, 150, 5)  # other frames than the calibration ones
    tp = fn = fpos = 0
    for f in test:
        a = fp.run(None, {INPUT: f}); b = q.run(None, {INPUT: f})
        da = decode(a[0][0], a[1][0]); db = decode(b[0][0], b[1][0])
        used = set()
        for x in da:
            m = [j for j, y in enumerate(db) if j not in used and iou(x, y) >= 0.5]
            if m: used.add(m[0]); tp += 1
            else: fn += 1
        fpos += len(db) - len(used)
    p = tp / max(tp + fpos, 1); r = tp / max(tp + fn, 1)
    print(f"agreement with float on {len(test)} frames: person boxes {tp + fn} (float), P {p:.3f} R {r:.3f} F1 {2*p*r/max(p+r,1e-9):.3f}")
    if len(sys.argv) > 2:
        x = test[0]
        for rnd in range(int(sys.argv[2])):
            for name, s in (("fp32", fp), ("int8", q)):
                t0 = time.perf_counter()
                for _ in range(30): s.run(None, {INPUT: x})
                print(rnd, name, round((time.perf_counter() - t0) / 30 * 1000, 2), "ms", flush=True)
