#!/usr/bin/env bash
# `make demo`: a small site on 127.0.0.1.
#   - a test camera serving two RTSP streams (OpenCV's street video vtest.avi,
#     the second stream 3 s behind the first, as two cameras along one street);
#   - the master (zenoh router, JSTSH plans, global database, HTTP API/UI);
#   - two edge nodes that join it, take the cameras the plan gives them,
#     detect, track, re-identify (sharing identities) and record.
# Live lines every 2 s from each node; Ctrl-C stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/target/release"
PORT="${VIDAR_DEMO_PORT:-8554}"
HTTP_PORT="${VIDAR_DEMO_HTTP_PORT:-8080}"
ZENOH_PORT="${VIDAR_DEMO_ZENOH_PORT:-7447}"
METRICS_PORT="${VIDAR_DEMO_METRICS_PORT:-9100}"
VTEST=/usr/share/doc/opencv-doc/examples/data/vtest.avi
DEMO="$ROOT/.cache/demo"
mkdir -p "$DEMO"
# As the Makefile exports them, for running this script directly.
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.cache/libonnxruntime.so}"
export VIDAR_MODEL_DIR="${VIDAR_MODEL_DIR:-$ROOT/.cache/models}"
cd "$ROOT"

if [ -f "$VTEST" ]; then
  mounts=(--mount "street=$VTEST#start=3" --mount "street-b=$VTEST")
else
  echo "note: $VTEST not found (Debian package opencv-doc); using synthetic scenes"
  mounts=(--mount "street=synthetic:?width=1280&height=720&fps=15&seed=1&people=5"
          --mount "street-b=synthetic:?width=1280&height=720&fps=15&seed=1&people=5")
fi

PIDS=()
cleanup() {
  # Edges first (they flush their records), then the master, then the camera.
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    kill -INT "${PIDS[$i]}" 2>/dev/null || true
    wait "${PIDS[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT INT TERM

"$BIN/vidar-camera" --port "$PORT" "${mounts[@]}" > "$DEMO/camera.log" 2>&1 &
CAM=$!
PIDS+=("$CAM")
for _ in $(seq 1 300); do
  grep -q '^ready' "$DEMO/camera.log" 2>/dev/null && break
  if ! kill -0 "$CAM" 2>/dev/null; then cat "$DEMO/camera.log"; exit 1; fi
  sleep 0.2
done
grep '^serving' "$DEMO/camera.log"

# The site's keys, as in production (docs/security.md): a site CA, the
# master's bundle, one enrolled bundle per node; the cluster link is mutual
# TLS with the master's access list even on loopback.
"$BIN/vidar-master" ca init --dir "$DEMO/ca" --site demo --enroll edge-1 --enroll edge-2 --if-missing \
  > "$DEMO/ca.log" || { cat "$DEMO/ca.log"; exit 1; }
echo "site keys in $DEMO/ca: a site CA and bundles for master, edge-1, edge-2 (mutual TLS, signed plans)"

sed -e "s#127.0.0.1:8554#127.0.0.1:$PORT#g" -e "s#127.0.0.1:8080#127.0.0.1:$HTTP_PORT#" \
    -e "s#127.0.0.1:7447#127.0.0.1:$ZENOH_PORT#" deploy/demo-master.toml > "$DEMO/master.toml"
"$BIN/vidar-master" run --config "$DEMO/master.toml" > "$DEMO/master.log" 2>&1 &
PIDS+=("$!")

for n in 1 2; do
  sed -e "s#NODE#edge-$n#g" -e "s#127.0.0.1:9100#127.0.0.1:$((METRICS_PORT + n - 1))#" \
      -e "s#127.0.0.1:7447#127.0.0.1:$ZENOH_PORT#" deploy/demo-edge-cluster.toml > "$DEMO/edge-$n.toml"
done
cat <<MSG

Site starting: master + edge-1 + edge-2 (configs and logs in $DEMO).
  UI:       http://127.0.0.1:$HTTP_PORT/   login: admin / vidar-demo
  API:      curl -H 'Authorization: Bearer vidar-demo-token' http://127.0.0.1:$HTTP_PORT/api/plan
            (also /api/nodes, /api/identities, /api/trajectory?identity=N, /api/tiles)
  metrics:  master http://127.0.0.1:$HTTP_PORT/metrics
            edge-1 http://127.0.0.1:$METRICS_PORT/metrics   edge-2 http://127.0.0.1:$((METRICS_PORT + 1))/metrics
  queries:  target/release/vidar-edge query --db $DEMO/edge-1.db identities
  try:      kill one edge node (its camera moves to the other within seconds).
Live line per node every 2 s (fps per camera, tracks, drops, p99 latency, identities, records); Ctrl-C stops.

MSG
for n in 1 2; do
  "$BIN/vidar-edge" run --config "$DEMO/edge-$n.toml" --status-every 2 2> "$DEMO/edge-$n.log" &
  PIDS+=("$!")
done
sleep 3
for i in 1 2 3; do
  if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
    log="$DEMO/master.log"; [ "$i" -gt 1 ] && log="$DEMO/edge-$((i - 1)).log"
    echo "a process of the demo stopped at start; the end of $log:" >&2
    tail -n 15 "$log" >&2
    exit 1
  fi
done
if [ -n "${VIDAR_DEMO_SECONDS:-}" ]; then
  sleep "$VIDAR_DEMO_SECONDS"
  echo
  echo "plan:"
  curl -s -H 'Authorization: Bearer vidar-demo-token' "http://127.0.0.1:$HTTP_PORT/api/plan" | head -c 1500; echo
  echo "identities (global database, plus what the edges have not synced yet):"
  curl -s -H 'Authorization: Bearer vidar-demo-token' "http://127.0.0.1:$HTTP_PORT/api/identities?limit=10" | head -c 1500; echo
else
  wait "${PIDS[1]}"
fi
