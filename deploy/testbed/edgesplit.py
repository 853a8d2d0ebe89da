#!/usr/bin/env python3
"""`deploy/testbed/edgesplit.py`: split training rounds (EdgeSplit, issue
13) on the testbed: real `vidar-master` (the trainer) and `vidar-edge`
processes, each node in its own network namespace and CPU cgroup, the
master's link shaped to --master-rate Mbit/s (the link the rounds share).

Each node's samples come from a labelled folder (--data, default CUHK01
from ../shared/data: research use only, read in place, never copied into
the repository), ids --ids split across the nodes (`vidar-edge training
import --part k/N`: one tracklet per person and camera). One site runs for
the whole scenario; rounds of every --algorithms are interleaved within
each of --rounds repeats (`POST /api/training {"rounds": 1, "algorithm":
A}`), and each round's figures are read from `GET /api/training`:

  round time   wall time of the round (the slowest node's), and the plan's
               prediction (the scheduler's model fed with the times the
               nodes and the master measured at start), with its error;
  cuts         each node's cut and share of the master's link;
  bytes        node <-> master bytes of the round (activations, gradients,
               weights), and what uploading the round's crops as JPEGs
               would have cost instead (centralised training).

Needs root, the release binaries and VIDAR_MODEL_DIR. Standard library
only. Not part of CI; the figures are in docs/benchmarks.md and
scheduler/RESULTS.md ("Testbed: EdgeSplit") with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import testbed as tb  # noqa: E402

ALGORITHMS = ("edgesplit", "edgesplit_fix", "adaptive_fl", "vanilla_fl")


def post(site: tb.Site, path: str, body: dict) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{tb.MASTER_IP}:{tb.HTTP_PORT}{path}", method="POST",
                                 data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {site.token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="100,100,100", help="each node's link, Mbit/s (one node per rate)")
    ap.add_argument("--cpus", default="0.9,0.45,0.2", help="each node's CPU quota, cores")
    ap.add_argument("--master-rate", type=float, default=20.0,
                    help="the master's link, Mbit/s: what the rounds share (the plan's B)")
    ap.add_argument("--data", type=Path, default=tb.ROOT.parent / "shared/data/reid/cuhk01")
    ap.add_argument("--ids", default="201-700")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--rounds", type=int, default=2, help="repeats; every algorithm once in each")
    ap.add_argument("--run-rounds", type=int, default=1,
                    help="rounds per run (one POST): a run trains on from its own rounds and adds one "
                         "candidate to the registry, whose file is printed (to measure with `vidar-edge eval reid`)")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-ids", type=int, default=8)
    ap.add_argument("--per-id", type=int, default=2)
    ap.add_argument("--cuts", default="3,131,259,387,396")
    ap.add_argument("--cameras", type=int, default=0,
                    help="vtest.avi cameras pinned to edge-1: its analysed frames/s is measured over --window "
                         "seconds without training, then while a round of each algorithm runs")
    ap.add_argument("--window", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=tb.ROOT / ".cache/testbed-edgesplit")
    ap.add_argument("--bin", type=Path, default=tb.ROOT / "target/release")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("edgesplit: needs root (network namespaces, veth pairs, tc, cgroups)")
    args.rates = [float(x) for x in args.rates.split(",") if x]
    args.cpus = [float(x) for x in args.cpus.split(",") if x]
    if len(args.cpus) != len(args.rates):
        sys.exit(f"edgesplit: --cpus has {len(args.cpus)} entries for {len(args.rates)} nodes")
    algorithms = [x for x in args.algorithms.split(",") if x]
    args.burst, args.detection_interval, args.cpu = 0, 1, 0.0
    args.pins = {f"cam-{i}": "edge-1" for i in range(args.cameras)}
    out: Path = args.out
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    n = len(args.rates)
    # Each node's samples: its share of the ids, imported before it starts.
    for k in range(n):
        subprocess.run([str(args.bin / "vidar-edge"), "training", "import", "--data", str(args.data),
                        "--ids", args.ids, "--part", f"{k}/{n}", "--file", str(out / f"edge-{k + 1}-training.db")],
                       check=True)
    cuts = ", ".join(x for x in args.cuts.split(",") if x)
    tb.MASTER_TOML = tb.MASTER_TOML.replace('role = "viewer"', 'role = "admin"') + (
        "\n[training]\n"
        f"cuts = [{cuts}]\nbatches = {args.batches}\nids = {args.batch_ids}\nper_id = {args.per_id}\n"
        f"bandwidth_mbit_s = {args.master_rate}\nstep_timeout_s = 600\n")
    tb.soak.EDGE_TOML = tb.soak.EDGE_TOML + (
        "\n[training]\ncollect = true\nrounds = true\npath = \"{dir}/{node}-training.db\"\n")
    site = tb.Site(args, out)
    cleanup = tb.stop_on_exit(site)
    site.net.up()
    site.start()
    # The master's link carries the rounds: shaped like the nodes' links.
    site.net.shape("master", args.master_rate)
    tb.wait_until(lambda: len([x for x in site.api("/api/nodes").get("nodes", []) if x.get("live")]) == n, 120)
    rows = []
    live: list[dict] = []
    if args.cameras:
        tb.wait_until(lambda: len(site.streaming()) == args.cameras, 120)
        time.sleep(20)
        live.append({"while": "no training", **analysed(site, args.window)})
    for rep in range(args.rounds):
        for algo in algorithms:
            code, body = post(site, "/api/training", {"rounds": args.run_rounds, "algorithm": algo})
            if code != 202:
                sys.exit(f"edgesplit: POST /api/training ({algo}): {code} {body}")
            if args.cameras:
                # Past the nodes' profiles (a few seconds), while the round trains.
                time.sleep(15)
                live.append({"while": f"{algo} round {rep + 1}", **analysed(site, args.window)})
            tb.wait_until(lambda: site.api("/api/training").get("state", {}).get("running") is False,
                          3600 * args.run_rounds, every=2)
            state = site.api("/api/training")["state"]
            if state.get("error"):
                sys.exit(f"edgesplit: {algo}: {state['error']}")
            for r in state["rounds"][-args.run_rounds:]:
                row = {"rep": rep + 1, "algorithm": algo, "round": r["round"], "seconds": r["seconds"],
                       "predicted_s": r["predicted_s"], "loss": r["loss"],
                       "bytes": sum(x["up_bytes"] + x["down_bytes"] for x in r["nodes"]),
                       "nodes": [{k: x[k] for k in ("node", "cut", "share_mbit_s", "seconds", "predicted_s",
                                                    "speed", "up_bytes", "down_bytes", "crops", "dropped")}
                                 for x in r["nodes"]]}
                rows.append(row)
                print(f"edgesplit: {rep + 1} {algo} round {r['round']}: {r['seconds']:.1f} s (predicted "
                      f"{r['predicted_s']:.1f}), cuts {[x['cut'] for x in r['nodes']]}, loss {r['loss']:.4f}, "
                      f"{row['bytes'] / 1e6:.1f} MB", flush=True)
            print(f"edgesplit: {rep + 1} {algo}: candidate {state.get('candidate')}: "
                  f"{candidate_file(out, state.get('candidate'))}", flush=True)
    (out / "nodes.json").write_text(json.dumps(site.api("/api/nodes"), indent=1))
    cleanup()
    # Crops a round trains on, as JPEGs (what centralised training uploads).
    jpeg_bytes = mean_jpeg_bytes(out, n)
    crops = args.batches * args.batch_ids * args.per_id * n
    report = {"command": " ".join(sys.argv), "rows": rows, "crops_per_round": crops,
              "mean_jpeg_bytes": jpeg_bytes, "live": live}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print()
    print(f"`{report['command']}`: {n} nodes at {args.cpus} cores, master link {args.master_rate:g} Mbit/s, "
          f"{args.batches} batches of {args.batch_ids} x {args.per_id} crops per node and round")
    print()
    print("| algorithm | round time, s (median) | predicted, s | error | vs vanilla FL | bytes per round, MB | cuts |")
    print("|---|---:|---:|---:|---:|---:|---|")
    med = {a: statistics.median(r["seconds"] for r in rows if r["algorithm"] == a) for a in algorithms}
    for a in algorithms:
        rs = [r for r in rows if r["algorithm"] == a]
        pred = statistics.median(r["predicted_s"] for r in rs)
        b = statistics.median(r["bytes"] for r in rs)
        cutsets = sorted({tuple(x["cut"] for x in r["nodes"]) for r in rs})
        vs = med.get("vanilla_fl")
        each = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        print(f"| {a} | {med[a]:.1f} ({each}) | {pred:.1f} | "
              f"{(pred - med[a]) / med[a] * 100:+.0f} % | {vs / med[a] if vs else float('nan'):.2f}x | "
              f"{b / 1e6:.1f} | {cutsets} |")
    print(f"| crops uploaded (centralised) | | | | | {crops * jpeg_bytes / 1e6:.2f} | |")
    if live:
        print()
        print(f"edge-1's cameras ({args.cameras} x 10 fps), analysed over {args.window:g} s windows:")
        print()
        print("| while | frames/s analysed (offered) | frames dropped | p99 capture to result, ms |")
        print("|---|---:|---:|---:|")
        for w in live:
            print(f"| {w['while']} | {w['fps']:.1f} ({10 * args.cameras}) | {w['dropped']:.0f} | {w['p99_ms']:.0f} |")
    return 0


def analysed(site: tb.Site, seconds: float) -> dict:
    """edge-1's cameras over `seconds`: frames analysed per second, frames
    dropped, and the p99 of capture-to-result latency from its histogram."""
    def scrape() -> dict:
        text = site.metrics(0) or ""
        out: dict = {}
        for name in ("vidar_frames_analysed_total", "vidar_frames_dropped_total"):
            out[name] = sum(float(m.group(1)) for m in
                            re.finditer(rf'^{name}\{{[^}}]*\}} (\S+)$', text, re.M))
        for m in re.finditer(r'^vidar_capture_to_result_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\} (\S+)$', text, re.M):
            key = ("bucket", m.group(1))
            out[key] = out.get(key, 0.0) + float(m.group(2))
        return out
    window, secs = tb.Window.sample(scrape, seconds)
    g = window.gained
    buckets = sorted(((float("inf") if k[1] == "+Inf" else float(k[1]), v) for k, v in g.items()
                      if isinstance(k, tuple)), key=lambda x: x[0])
    total = buckets[-1][1] if buckets else 0.0
    p99 = next((le for le, c in buckets if total and c >= 0.99 * total), float("nan"))
    return {"fps": g.get("vidar_frames_analysed_total", 0.0) / secs,
            "dropped": g.get("vidar_frames_dropped_total", 0.0), "p99_ms": p99 * 1000}


def candidate_file(out: Path, version: str | None) -> Path | None:
    """The registry's file of `version` (the master's `models` beside its database)."""
    try:
        registry = json.loads((out / "models" / "registry.json").read_text())
    except (OSError, ValueError):
        return None
    for v in registry.get("versions", []):
        if v.get("version") == version and v.get("sha256"):
            return out / "models" / f"{v['sha256']}.onnx"  # files are named by their content
    return None


def mean_jpeg_bytes(out: Path, n: int) -> float:
    """The mean JPEG size of the imported samples (sqlite3 is in Python's standard library)."""
    import sqlite3
    sizes = []
    for k in range(n):
        db = sqlite3.connect(out / f"edge-{k + 1}-training.db")
        try:
            sizes += [row[0] for row in db.execute("SELECT length(jpeg) FROM samples")]
        finally:
            db.close()
    return statistics.mean(sizes) if sizes else 0.0


if __name__ == "__main__":
    sys.exit(main())
