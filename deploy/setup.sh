#!/usr/bin/env bash
# Vidar setup: idempotent. Installs the Debian/Ubuntu packages Vidar needs, the
# ONNX Runtime shared library (from the pinned PyPI wheel) and the Python tools
# used by evaluation scripts, into caches inside the repository.
#
# Usage: deploy/setup.sh            (everything)
#        VIDAR_SETUP_SKIP_APT=1 ...  (skip system packages, e.g. no root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
ORT_VERSION="1.32.0"
ORT_DIR="$CACHE/onnxruntime-$ORT_VERSION"
VENV="$CACHE/venv"
STAMP="$CACHE/setup.stamp"
mkdir -p "$CACHE"

say() { printf '[setup] %s\n' "$*"; }

# System packages, grouped by why Vidar needs them.
APT_PACKAGES=(
  # build
  build-essential pkg-config ca-certificates curl
  # GStreamer runtime: core, plugins (rtsp, x264, libav decoders), RTSP server
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-rtsp
  # GStreamer development headers for the gstreamer-rs crates
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  libgstreamer-plugins-bad1.0-dev libgstrtspserver-1.0-dev
  # test data: OpenCV's sample street video (vtest.avi)
  opencv-doc
  # python venv for evaluation scripts and the Python reference pipeline
  python3-venv
  # browser for UI tests
  chromium chromium-driver
  # network namespaces and shaped links for the link-probe test (ip, tc)
  iproute2
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${VIDAR_SETUP_SKIP_APT:-0}" = "1" ]; then
  say "skipping system packages (VIDAR_SETUP_SKIP_APT=1); missing: ${missing[*]:-none}"
elif [ ${#missing[@]} -eq 0 ]; then
  say "system packages: all ${#APT_PACKAGES[@]} present"
else
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  say "installing ${#missing[@]} system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  say "system packages installed"
fi

# Python venv (evaluation scripts, model conversion, Python reference pipeline).
PY_REQS="$ROOT/deploy/requirements.txt"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating Python venv at $VENV"
  python3 -m venv "$VENV"
fi
if [ ! -f "$VENV/.reqs" ] || ! cmp -s "$PY_REQS" "$VENV/.reqs"; then
  say "installing Python packages from deploy/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQS"
  cp "$PY_REQS" "$VENV/.reqs"
else
  say "Python packages: up to date"
fi

# ONNX Runtime shared library from the pinned PyPI wheel (no other download).
if [ ! -f "$ORT_DIR/libonnxruntime.so.$ORT_VERSION" ]; then
  ort_so=$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)
  if [ -z "$ort_so" ]; then
    say "ERROR: onnxruntime==$ORT_VERSION wheel did not provide libonnxruntime.so" >&2
    exit 1
  fi
  mkdir -p "$ORT_DIR"
  cp "$ort_so" "$ORT_DIR/libonnxruntime.so.$ORT_VERSION"
  say "ONNX Runtime $ORT_VERSION library cached at $ORT_DIR"
else
  say "ONNX Runtime $ORT_VERSION: cached"
fi
ln -sfn "onnxruntime-$ORT_VERSION/libonnxruntime.so.$ORT_VERSION" "$CACHE/libonnxruntime.so"

date -u +%FT%TZ > "$STAMP"
say "done (ORT_DYLIB_PATH=$CACHE/libonnxruntime.so)"
