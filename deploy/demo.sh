#!/usr/bin/env bash
# `make demo`: a test camera serving two RTSP streams on 127.0.0.1 (OpenCV's
# street video vtest.avi, the second stream 3 s behind the first, as two cameras
# along one street) and an edge node detecting, tracking, re-identifying and
# recording the people in them. Live stats every 2 s; Ctrl-C stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
PORT="${VIDAR_DEMO_PORT:-8554}"
METRICS_PORT="${VIDAR_DEMO_METRICS_PORT:-9100}"
VTEST=/usr/share/doc/opencv-doc/examples/data/vtest.avi
DEMO="$ROOT/.cache/demo"
mkdir -p "$DEMO"
cd "$ROOT"

if [ -f "$VTEST" ]; then
  mounts=(--mount "street=$VTEST#start=3" --mount "street-b=$VTEST")
else
  echo "note: $VTEST not found (Debian package opencv-doc); using synthetic scenes"
  mounts=(--mount "street=synthetic:?width=1280&height=720&fps=15&seed=1&people=5"
          --mount "street-b=synthetic:?width=1280&height=720&fps=15&seed=1&people=5")
fi

"$BIN/vidar-camera" --port "$PORT" "${mounts[@]}" > "$DEMO/camera.log" 2>&1 &
CAM=$!
EDGE=""
cleanup() {
  [ -n "$EDGE" ] && kill -INT "$EDGE" 2>/dev/null && wait "$EDGE" 2>/dev/null || true
  kill "$CAM" 2>/dev/null || true
  wait "$CAM" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
for _ in $(seq 1 300); do
  grep -q '^ready' "$DEMO/camera.log" 2>/dev/null && break
  if ! kill -0 "$CAM" 2>/dev/null; then cat "$DEMO/camera.log"; exit 1; fi
  sleep 0.2
done
grep '^serving' "$DEMO/camera.log"

sed -e "s#127.0.0.1:8554#127.0.0.1:$PORT#g" -e "s#127.0.0.1:9100#127.0.0.1:$METRICS_PORT#" \
  deploy/demo-edge.toml > "$DEMO/edge.toml"
cat <<MSG

Edge node starting (config $DEMO/edge.toml, database $DEMO/vidar-edge.db).
  metrics:  http://127.0.0.1:$METRICS_PORT/metrics   health: http://127.0.0.1:$METRICS_PORT/healthz
  queries:  target/release/vidar-edge query --db $DEMO/vidar-edge.db identities
            target/release/vidar-edge query --db $DEMO/vidar-edge.db trajectory <identity>
  camera:   kill $CAM to see streams back off; they reconnect when it returns.
Live line every 2 s (fps per camera, tracks, drops, p99 latency, identities, records); Ctrl-C stops.

MSG
"$BIN/vidar-edge" run --config "$DEMO/edge.toml" --status-every 2 &
EDGE=$!
if [ -n "${VIDAR_DEMO_SECONDS:-}" ]; then
  sleep "$VIDAR_DEMO_SECONDS"
  kill -INT "$EDGE"
  wait "$EDGE" || true
  EDGE=""
  echo
  "$BIN/vidar-edge" query --db "$DEMO/vidar-edge.db" identities --limit 10
else
  wait "$EDGE"
fi
