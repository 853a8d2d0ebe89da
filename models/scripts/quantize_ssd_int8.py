"""Static QDQ int8 quantisation of the raw SSD (issue 14, first step: a
measurement, not yet a manifest model nor a `precision` setting).

    python3 -m venv /tmp/q && /tmp/q/bin/pip install onnxruntime==1.32.0 onnx==1.17.0 \
        ml_dtypes opencv-python-headless numpy sympy
    /tmp/q/bin/python models/scripts/quantize_ssd_int8.py quant     # writes /tmp/int8/ssd_raw_int8.onnx
    /tmp/q/bin/python models/scripts/quantize_ssd_int8.py eval 5    # agreement, then 5 A/B speed rounds

Calibration: 40 frames of vtest.avi (OpenCV's sample video, from Debian's
opencv-doc), every 19th. Evaluation: 150 other frames (every 5th from frame 7):
person boxes at score >= 0.5 after NMS, int8 against float at IoU 0.5; then
fp32 and int8 on one thread, interleaved, 30 runs per round.
Numbers: docs/benchmarks.md, "int8 SSD: a first measurement".
"""
import sys, time, numpy as np, cv2, onnxruntime as ort
from onnxruntime.quantization import quantize_static, CalibrationDataReader, QuantFormat, QuantType

import os
from pathlib import Path

MODELS = Path(os.environ.get("VIDAR_MODEL_DIR", Path(__file__).resolve().parents[2] / ".cache/models"))
SRC = str(MODELS / "ssd_mobilenet_v2_coco_raw_batch.onnx")
OUT = "/tmp/int8/ssd_raw_int8.onnx"
os.makedirs("/tmp/int8", exist_ok=True)
VIDEO = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"

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

class Reader(CalibrationDataReader):
    def __init__(self, fs): self.it = iter([{"normalized_input_image_tensor": f} for f in fs])
    def get_next(self): return next(self.it, None)

if sys.argv[1] == "quant":
    calib = frames(0, 40, 19)  # 40 frames over the video
    pre = "/tmp/int8/ssd_pre.onnx"
    from onnxruntime.quantization.shape_inference import quant_pre_process
    quant_pre_process(SRC, pre)
    quantize_static(pre, OUT, Reader(calib), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    print("written", OUT)
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
    opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
    fp = ort.InferenceSession(SRC, opts, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(OUT, opts, providers=["CPUExecutionProvider"])
    test = frames(7, 150, 5)  # other frames than the calibration ones
    tp = fn = fpos = 0
    for f in test:
        a = fp.run(None, {"normalized_input_image_tensor": f}); b = q.run(None, {"normalized_input_image_tensor": f})
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
                for _ in range(30): s.run(None, {"normalized_input_image_tensor": x})
                print(rnd, name, round((time.perf_counter() - t0) / 30 * 1000, 2), "ms", flush=True)
