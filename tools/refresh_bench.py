#!/usr/bin/env python3
"""A model refresh under load: does swapping the re-ID model cost frames or latency?

A master and one edge node with CAMERAS cameras (each its own `vidar-camera`
serving OpenCV's vtest.avi from its own offset) run on 127.0.0.1 with mutual
TLS, as `tools/soak.py` sets them up. Two versions of the re-ID weights are
added to the master's registry (`vidar-master model add`: the MSMT17 and the
Market-1501 OSNet x0.25, the same graph). Then, over ROUNDS rounds, windows of
WINDOW seconds alternate: in a "swap" window the other version is promoted at
the window's start (`vidar-master model promote`: the master publishes it
signed, the node checks it, builds a session and swaps it into its re-ID
worker), in a "quiet" window nothing happens. The order within a round
alternates (quiet-swap, swap-quiet, ...), so drift on a shared machine falls
on both sides.

Per window, from the node's own metrics: frames received, dropped (the
ingest queues' drop-oldest) and analysed over every camera; the p99 of
capture-to-result latency (from the histogram's increase in the window);
swaps done (must be 1 in a swap window, 0 in a quiet one). It reports the
median over rounds of the swap/quiet p99 ratio with its spread, and the
frames dropped on each side.

Standard library only; not part of CI (a benchmark): docs/benchmarks.md has
its figures and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak  # noqa: E402  (the site set-up and the metrics helpers)

ROOT = soak.ROOT


def counter(text: str, name: str) -> float:
    """A counter summed over its label sets (0 if absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rpartition(" ")[2])
    return total


def sample(metrics_url: str) -> dict:
    text = soak.http_get(metrics_url) or ""
    return {
        "received": counter(text, "vidar_frames_total"),
        "dropped": counter(text, "vidar_frames_dropped_total"),
        "analysed": counter(text, "vidar_frames_analysed_total"),
        "swaps": counter(text, "vidar_model_swaps_total"),
        "refused": counter(text, "vidar_model_refreshes_refused_total"),
        "hist": soak.histogram(text),
    }


def window(before: dict, after: dict) -> dict:
    buckets: dict[float, float] = {}
    for key, c in after["hist"].items():
        buckets[key[1]] = buckets.get(key[1], 0.0) + c - before["hist"].get(key, 0.0)
    return {
        **{k: after[k] - before[k] for k in ("received", "dropped", "analysed", "swaps", "refused")},
        "p99_ms": soak.ms(soak.quantile(buckets, 0.99)),
        "p50_ms": soak.ms(soak.quantile(buckets, 0.50)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--window", type=float, default=20.0, help="seconds per window")
    ap.add_argument("--warmup", type=float, default=30.0)
    soak.add_site_args(ap, out=".cache/refresh-bench", interval=1)
    args = ap.parse_args()
    soak.require_vtest("refresh_bench")
    out: Path = args.out
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    models = Path(os.environ.get("VIDAR_MODEL_DIR", str(ROOT / ".cache/models")))
    versions = {
        "msmt17": models / "reid_osnet_x0_25_msmt17.onnx",
        "market1501": models / "reid_osnet_x0_25_market1501.onnx",
    }
    subprocess.run(
        [str(args.bin / "vidar-master"), "ca", "init", "--dir", str(out / "ca"), "--site", "soak",
         "--enroll", "edge-1"],
        check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
    )
    cams = [
        soak.Proc(f"cam-{i}",
                  [str(args.bin / "vidar-camera"), "--port", "0", "--mount",
                   f"cam-{i}={soak.VTEST}#start={(i * 17) % soak.VTEST_SECONDS}"],
                  out / f"cam-{i}.log")
        for i in range(args.cameras)
    ]
    master = soak.Proc("master", [str(args.bin / "vidar-master"), "run", "--config", str(out / "master.toml")],
                       out / "master.log")
    edge = soak.Proc("edge-1", [str(args.bin / "vidar-edge"), "run", "--config", str(out / "edge-1.toml")],
                     out / "edge-1.log")
    procs = [master, edge, *cams]

    def stop_all(*_):
        for p in reversed(procs):
            p.kill(signal.SIGINT)
        for p in reversed(procs):
            p.wait(20)

    def registry(*argv: str) -> None:
        subprocess.run([str(args.bin / "vidar-master"), "model", *argv, "--dir", str(out / "models")],
                       check=True, stdout=subprocess.DEVNULL, cwd=ROOT)

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        rtsp = soak.start_cameras(cams)
        (out / "master.toml").write_text(soak.MASTER_TOML.format(dir=out) + "".join(
            soak.CAMERA_TOML.format(i=i, host="127.0.0.1", port=rtsp[i]) for i in range(args.cameras)
        ))
        for name, path in versions.items():
            registry("add", str(path), "--version", name)
        master.start()
        soak.wait_for("master", lambda: master.port("http") is not None, 60)
        (out / "edge-1.toml").write_text(soak.EDGE_TOML.format(
            node="edge-1", dir=out, site="soak", master="127.0.0.1", zenoh=master.port("zenoh"),
            metrics_addr="127.0.0.1:0", models=models, interval=args.detection_interval))
        edge.start()
        soak.wait_for("edge-1", lambda: edge.port("http") is not None, 120)
        url = f"http://127.0.0.1:{edge.port('http')}/metrics"
        def streams_up() -> int:
            text = soak.http_get(url) or ""
            return sum(1 for line in text.splitlines()
                       if line.startswith("vidar_stream_up{") and line.endswith(" 1"))

        soak.wait_for("every stream up", lambda: streams_up() == args.cameras, 120)
        print(f"refresh_bench: {args.cameras} cameras streaming on one node; warm-up {args.warmup:.0f} s, "
              f"then {args.rounds} rounds of two {args.window:.0f} s windows; logs in {out}", flush=True)
        time.sleep(args.warmup)
        rows = []
        names = list(versions)
        promoted = 0
        for r in range(args.rounds):
            order = ["quiet", "swap"] if r % 2 == 0 else ["swap", "quiet"]
            for side in order:
                before = sample(url)
                if side == "swap":
                    registry("promote", names[promoted % 2], "--force")
                    promoted += 1
                time.sleep(args.window)
                w = {"round": r + 1, "side": side, **window(before, sample(url))}
                rows.append(w)
                print(json.dumps(w), flush=True)
        summary = summarise(rows)
        (out / "summary.json").write_text(json.dumps({"windows": rows, **summary}, indent=1))
        print(json.dumps(summary, indent=1))
        return 0 if summary["swap_windows_ok"] else 1
    finally:
        stop_all()


def summarise(rows: list[dict]) -> dict:
    by_round: dict[int, dict[str, dict]] = {}
    for w in rows:
        by_round.setdefault(w["round"], {})[w["side"]] = w
    ratios = [
        s["swap"]["p99_ms"] / s["quiet"]["p99_ms"]
        for s in by_round.values()
        if s.get("swap", {}).get("p99_ms") and s.get("quiet", {}).get("p99_ms")
    ]
    side = lambda name: [w for w in rows if w["side"] == name]  # noqa: E731
    total = lambda ws, k: sum(w[k] for w in ws)  # noqa: E731
    return {
        "p99_ratio_swap_over_quiet_median": round(statistics.median(ratios), 3) if ratios else None,
        "p99_ratio_min": round(min(ratios), 3) if ratios else None,
        "p99_ratio_max": round(max(ratios), 3) if ratios else None,
        "p99_ms_quiet": [w["p99_ms"] for w in side("quiet")],
        "p99_ms_swap": [w["p99_ms"] for w in side("swap")],
        "dropped_quiet": total(side("quiet"), "dropped"),
        "dropped_swap": total(side("swap"), "dropped"),
        "received_quiet": total(side("quiet"), "received"),
        "received_swap": total(side("swap"), "received"),
        "analysed_quiet": total(side("quiet"), "analysed"),
        "analysed_swap": total(side("swap"), "analysed"),
        "swap_windows_ok": all(w["swaps"] == 1 for w in side("swap"))
        and all(w["swaps"] == 0 for w in side("quiet")),
        "refused": total(rows, "refused"),
    }


if __name__ == "__main__":
    sys.exit(main())
