#!/usr/bin/env bash
# `make demo`: a test camera serving two streams over RTSP on 127.0.0.1 and the
# edge node ingesting them, with live stats once a second. Ctrl-C stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
PORT="${VIDAR_DEMO_PORT:-8554}"
VTEST=/usr/share/doc/opencv-doc/examples/data/vtest.avi

mounts=(--mount "synthetic=synthetic:?width=1280&height=720&fps=30&seed=1&people=5")
if [ -f "$VTEST" ]; then
  mounts+=(--mount "street=$VTEST")
else
  mounts+=(--mount "synthetic2=synthetic:?width=1280&height=720&fps=30&seed=2&people=3")
fi

"$BIN/vidar-camera" --port "$PORT" "${mounts[@]}" > "$ROOT/.cache/demo-camera.log" 2>&1 &
CAM=$!
trap 'kill $CAM 2>/dev/null || true; wait $CAM 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  grep -q '^ready' "$ROOT/.cache/demo-camera.log" 2>/dev/null && break
  if ! kill -0 $CAM 2>/dev/null; then cat "$ROOT/.cache/demo-camera.log"; exit 1; fi
  sleep 0.2
done
grep '^serving' "$ROOT/.cache/demo-camera.log"
urls=$(grep '^serving' "$ROOT/.cache/demo-camera.log" | awk '{print $2}')
echo
echo "vidar-edge is ingesting these streams; stats once a second (Ctrl-C to stop)."
echo "Try killing the camera (kill $CAM) and watch the node back off and reconnect."
echo
# shellcheck disable=SC2086
"$BIN/vidar-edge" probe $urls ${VIDAR_DEMO_SECONDS:+--seconds "$VIDAR_DEMO_SECONDS"}
