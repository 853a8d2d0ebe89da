#!/usr/bin/env bash
# Tracker evaluation: Vidar vs peer Python trackers on degraded TUD ground
# truth, scored with motmetrics. Writes tracker/eval/results.md (ours vs
# peers) and tracker/eval/ablation.md (our design choices, one at a time).
# Usage: tracker/eval/run.sh [--seeds N] [--work DIR] [--levels easy,harsh]
# (default 5 seeds, every level). Builds into $CARGO_TARGET_DIR when set
# (e.g. a separate target dir while other builds run), else target/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
py="${PY:-$root/.cache/venv/bin/python}"
if [[ ! -x "$py" ]]; then
    echo "error: no Python venv at $py; run deploy/setup.sh (or make setup) first" >&2
    exit 1
fi
cargo build --release -p vidar-tracker --bin vidar-track-eval
bin="${CARGO_TARGET_DIR:-target}/release/vidar-track-eval"
"$py" tracker/eval/compare.py --bin "$bin" --out tracker/eval/results.md "$@"
"$py" tracker/eval/compare.py --bin "$bin" --out tracker/eval/ablation.md --ablation "$@"
