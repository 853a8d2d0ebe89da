"""Static QDQ int8 quantisation of the default re-ID model (OSNet x0.25,
MSMT17 combineall; issue 14), reproducible as the int8 SSD is
(quantize_ssd_int8.py):

    python models/scripts/quantize_reid_int8.py calibrate        # once: writes models/reid_int8_calibration.json
    python models/scripts/quantize_reid_int8.py build SRC DST    # make models (recipe reid-int8)
    python models/scripts/quantize_reid_int8.py eval [ROUNDS]    # cosine to float, then A/B speed rounds

Calibration crops are people the project's own float detector finds in
vtest.avi (OpenCV's sample video): every 10th frame of the first 800, person
boxes at score >= 0.6 from the post-processed SSD, each cut from the full
frame with 10 % margin and pre-processed as the node does (256x128 RGB,
pixels / 255, ImageNet mean/std). At most 300 crops. The MinMax ranges are
kept in the repository (ONNX Runtime's calibration cache format) so `build`
is deterministic on any CPU. Evaluation: crops from frames 5, 15, ... (not
the calibration frames): cosine between float and int8 embeddings, then
batch-16 speed, fp32 and int8 interleaved. Accuracy on labelled people is
measured with `vidar-edge eval reid --model osnet-x0-25-msmt17-combineall-int8`
(docs/benchmarks.md).
"""
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from int8 import build, calibrate, session

MODELS = Path(os.environ.get("VIDAR_MODEL_DIR", Path(__file__).resolve().parents[2] / ".cache/models"))
SRC = str(MODELS / "reid_osnet_x0_25_msmt17_combineall.onnx")
DETECTOR = str(MODELS / "ssd_mobilenet_v2_coco_quant.onnx")
CALIBRATION = Path(__file__).resolve().parents[1] / "reid_int8_calibration.json"
VIDEO = os.environ.get("VIDAR_VTEST", "/usr/share/doc/opencv-doc/examples/data/vtest.avi")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def crops(first, step, limit, most):
    """People in frames first, first + step, ... < limit, as model inputs."""
    det = session(DETECTOR)
    cap = cv2.VideoCapture(VIDEO)
    out, i = [], 0
    while len(out) < most and i < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if i >= first and (i - first) % step == 0:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            small = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR)[None]
            boxes, classes, scores, count = det.run(None, {"normalized_input_image_tensor": small})
            for k in range(int(count[0])):
                if int(classes[0][k]) != 0 or scores[0][k] < 0.6:
                    continue
                y0, x0, y1, x1 = boxes[0][k]
                my, mx = (y1 - y0) * 0.1, (x1 - x0) * 0.1
                ya, yb = int(max(0, y0 - my) * h), int(min(1, y1 + my) * h)
                xa, xb = int(max(0, x0 - mx) * w), int(min(1, x1 + mx) * w)
                if yb - ya < 32 or xb - xa < 16:
                    continue
                crop = cv2.resize(rgb[ya:yb, xa:xb], (128, 256), interpolation=cv2.INTER_LINEAR)
                x = ((crop.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]
                out.append(np.ascontiguousarray(x, dtype=np.float32))
        i += 1
    return out[:most]


if sys.argv[1] == "calibrate":
    xs = crops(0, 10, 800, 300)
    if len(xs) < 100:
        raise SystemExit(f"{VIDEO}: only {len(xs)} calibration crops")
    calibrate(SRC, "input", xs, CALIBRATION)
    print(f"written {CALIBRATION} from {len(xs)} crops")
elif sys.argv[1] == "build":
    build(sys.argv[2], sys.argv[3], CALIBRATION)
    print("written", sys.argv[3])
else:
    out = os.environ.get("INT8", str(MODELS / "reid_osnet_x0_25_msmt17_combineall_int8.onnx"))
    fp, q = session(SRC), session(out)
    xs = crops(5, 10, 800, 200)
    cos = []
    for x in xs:
        a = fp.run(None, {"input": x})[0][0]
        b = q.run(None, {"input": x})[0][0]
        cos.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    cos = np.array(cos)
    print(f"cosine int8 to float on {len(xs)} crops: mean {cos.mean():.4f}, min {cos.min():.4f}, "
          f"5th percentile {np.percentile(cos, 5):.4f}")
    if len(sys.argv) > 2:
        batch = np.concatenate(xs[:16])
        for rnd in range(int(sys.argv[2])):
            for name, s in (("fp32", fp), ("int8", q)):
                t0 = time.perf_counter()
                for _ in range(20):
                    s.run(None, {"input": batch})
                print(rnd, name, round((time.perf_counter() - t0) / 20 / 16 * 1000, 3), "ms/crop", flush=True)
