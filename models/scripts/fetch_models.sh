#!/usr/bin/env bash
# Produce or verify the model files of models/manifest.toml in VIDAR_MODEL_DIR
# (default .cache/models). Idempotent; fast (checksums only) when all are cached.
# Runs under the project venv made by deploy/setup.sh. See fetch_models.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${VIDAR_PYTHON:-$ROOT/.cache/venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "[models] ERROR: $PY not found: run deploy/setup.sh (make setup) first" >&2
  exit 1
fi
export VIDAR_MODEL_DIR="${VIDAR_MODEL_DIR:-$ROOT/.cache/models}"
exec "$PY" "$ROOT/models/scripts/fetch_models.py" "$@"
