#!/usr/bin/env python3
"""`deploy/testbed/ents.py`: the ENTS scenario (issue 15, item 3): analytics
jobs placed by OTFA against the baselines TP, LR and BR on the testbed,
measured on real processes, with the scheduler's prediction beside each row.

A site of --rates edge nodes (each node's link shaped both ways, as
`testbed.py` does), --cameras streams of vtest.avi placed by JSTSH, and one
job per camera (--jobs of them), each a person-attribute pipeline:

  cam (source, --job-rate frames/s) -> det (detect) -> trk (track)
      -> attr (onnx: OSNet x0.25 on every crop) -> out (records sink)

(the example job file, deploy/jobs/attributes.toml).

For each policy (the master's `jobs_policy`), in turn and over --rounds
(policies interleaved within a round): a fresh site with the job files in
its job book, given --settle seconds to place and stream, then measured
over --window seconds:

  throughput  items per second that reach each job's sink (the sink
              stage's `vidar_job_stage_items` on its node), mean over jobs;
  predicted   the scheduler's predicted rate of each job in the plan in
              force (`/api/jobs` `predicted_rate`), and the error;
  frames      bytes/s the jobs' flows sent across nodes
              (`vidar_job_flow_bytes`), and items dropped at their shares.

All processes share this machine's cores, so a node's compute is a share of
the same CPUs; the links are real (tc tbf), without delay or loss (no netem).

Needs root. Standard library only. Not part of CI; the figures are in
docs/benchmarks.md and scheduler/RESULTS.md ("Testbed: ENTS") with the
command.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import testbed as tb  # noqa: E402

POLICIES = ("otfa", "tp", "lr", "br")

# The example job file shipped with Vidar, one per camera.
EXAMPLE = (tb.ROOT / "deploy/jobs/attributes.toml").read_text()


def job_file(i: int, rate: float) -> str:
    """The example job on camera cam-<i>, as job-<i>, at `rate` frames/s."""
    text = EXAMPLE.replace('id = "attributes"', f'id = "job-{i}"', 1)
    text = text.replace('camera = "cam-0"', f'camera = "cam-{i}"', 1)
    return re.sub(r"^rate = [0-9.]+", f"rate = {rate}", text, count=1, flags=re.M)


def scrape(site: tb.Site) -> dict:
    """(node, job, stage, what) -> the counter's value, every node."""
    out: dict[tuple[int, str, str, str], float] = {}
    for k in range(len(site.nodes)):
        text = site.metrics(k) or ""
        for name, key in (("vidar_job_stage_items_total", "items"), ("vidar_job_flow_bytes_total", "bytes"),
                          ("vidar_job_flow_dropped_total", "dropped")):
            for m in re.finditer(rf'^{name}\{{([^}}]*)\}} (\S+)$', text, re.M):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
                out[(k, labels.get("job", "?"), labels.get("stage", "?"), key)] = float(m.group(2))
    return out


def job_gains(gained: dict) -> dict[str, dict[str, float]]:
    """Per job: items its sink took, bytes its flows sent, items dropped at
    shares, from what each series gained over the window
    (`testbed.Window`: a stage that moved mid-window keeps what it counted
    on its old node)."""
    out: dict[str, dict[str, float]] = {}
    for (k, job, stage, what), v in gained.items():
        if what == "items" and stage != "out":
            continue
        d = out.setdefault(job, {"items": 0.0, "bytes": 0.0, "dropped": 0.0})
        d[what] += v
    return out


def run_one(args, policy: str, out: Path) -> dict:
    a = copy.copy(args)
    a.jobs_policy = policy
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    (out / "jobs").mkdir(parents=True)
    for i in range(args.jobs):
        (out / "jobs" / f"job-{i}.toml").write_text(job_file(i, args.job_rates[i]))
    site = tb.Site(a, out)
    try:
        site.net.up()
        site.start()

        def placed() -> bool:
            jobs = site.api("/api/jobs").get("jobs", [])
            return len(jobs) == args.jobs and all(j.get("state") == "placed" for j in jobs)

        tb.wait_until(placed, args.settle)
        time.sleep(args.settle)
        v0 = site.plan().get("version")
        window, secs = tb.Window.sample(lambda: scrape(site), args.window)
        jobs = site.api("/api/jobs").get("jobs", [])
        plan = site.plan()
        replans = 0 if plan.get("version") == v0 else 1
        # What the nodes told the master (capacity, CPU, cameras), for the record.
        (out / "nodes.json").write_text(json.dumps(site.api("/api/nodes"), indent=1))
    finally:
        site.stop()
        tb.Net.clean()
    per_job = {}
    moved = job_gains(window.gained)
    for j in jobs:
        jid = j["id"]
        d = moved.get(jid, {"items": 0.0, "bytes": 0.0, "dropped": 0.0})
        per_job[jid] = {
            "measured": round(d["items"] / secs, 3),
            "predicted": j.get("predicted_rate"),
            "flow_bytes_per_s": round(d["bytes"] / secs),
            "dropped_per_s": round(d["dropped"] / secs, 2),
            "state": j.get("state"),
            "waiting": j.get("waiting"),
            "stages": {s["name"]: s.get("node") for s in j.get("stages", [])},
            "flows": j.get("flows"),
        }
    measured = [v["measured"] for v in per_job.values()]
    predicted = [v["predicted"] for v in per_job.values() if v["predicted"] is not None]
    return {
        "policy": policy,
        "rates": args.rates,
        "mean_measured": round(statistics.mean(measured), 3) if measured else 0.0,
        "mean_predicted": round(statistics.mean(predicted), 3) if predicted else None,
        "flow_bytes_per_s": sum(v["flow_bytes_per_s"] for v in per_job.values()),
        "plan_changed_in_window": bool(replans),
        "cameras": {s["camera"]: s["node"] for s in plan.get("streams", [])},
        "jobs": per_job,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", type=float, default=0.0,
                    help="CPU cores each edge node may use (a cgroup quota; 0: no limit, all share the machine)")
    ap.add_argument("--cpus", default="",
                    help="CPU cores of each edge node, one per node in --rates order (instead of --cpu)")
    ap.add_argument("--rates", default="20,10,5,5", help="each node's link, Mbit/s (one node per rate)")
    ap.add_argument("--detect-fps", default="",
                    help="detector frames/s nodes offer the plans instead of profiling, "
                         "e.g. edge-1=22 (`[sharing] detect_fps`)")
    ap.add_argument("--pin", default="",
                    help="cameras pinned to nodes, e.g. cam-0=edge-1,cam-1=edge-1 (a camera on a node's LAN)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=3, help="one job per camera, from cam-0")
    ap.add_argument("--job-rate", type=float, default=4.0, help="frames/s each job's source takes")
    ap.add_argument("--job-rates", default="",
                    help="frames/s of each job's source, one per job (instead of --job-rate)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--detection-interval", type=int, default=2)
    ap.add_argument("--sndbuf", type=int, default=0,
                    help="TCP send buffer of each node's zenoh link, bytes (0: the kernel's autotuning)")
    ap.add_argument("--settle", type=float, default=90,
                    help="seconds after every job is placed, before the window (every link measured)")
    ap.add_argument("--window", type=float, default=40)
    ap.add_argument("--burst", type=int, default=0)
    ap.add_argument("--out", type=Path, default=tb.ROOT / ".cache/testbed-ents")
    ap.add_argument("--bin", type=Path, default=tb.ROOT / "target/release")
    args = ap.parse_args()
    args.rates = [float(x) for x in args.rates.split(",") if x]
    args.cpus = [float(x) for x in args.cpus.split(",") if x]
    if args.cpus and len(args.cpus) != len(args.rates):
        sys.exit(f"ents: --cpus has {len(args.cpus)} entries for {len(args.rates)} nodes")
    args.job_rates = [float(x) for x in args.job_rates.split(",") if x] or [args.job_rate] * args.jobs
    if len(args.job_rates) != args.jobs:
        sys.exit(f"ents: --job-rates has {len(args.job_rates)} entries for {args.jobs} jobs")
    args.pins = {}
    for pin in (x for x in args.pin.split(",") if x):
        camera, _, node = pin.partition("=")
        if not re.fullmatch(r"cam-\d+", camera) or not re.fullmatch(r"edge-\d+", node):
            sys.exit(f"ents: --pin {pin}: give CAMERA=NODE, e.g. cam-0=edge-1")
        args.pins[camera] = node
    offers, args.detect_fps = args.detect_fps, {}
    for offer in (x for x in offers.split(",") if x):
        node, _, fps = offer.partition("=")
        try:
            args.detect_fps[node] = float(fps)
        except ValueError:
            fps = ""
        if not re.fullmatch(r"edge-\d+", node) or not fps:
            sys.exit(f"ents: --detect-fps {offer}: give NODE=FRAMES_PER_S, e.g. edge-1=22")
    policies = [x for x in args.policies.split(",") if x]
    bad = [x for x in policies if x not in POLICIES + ("otfs",)]
    if bad:
        sys.exit(f"ents: --policies {','.join(bad)}: not one of {', '.join(POLICIES)}, otfs")
    if args.jobs > args.cameras:
        sys.exit("ents: --jobs must be at most --cameras (one job per camera)")
    if os.geteuid() != 0:
        sys.exit("ents: needs root (network namespaces, veth pairs, tc)")
    if not tb.soak.VTEST.exists():
        sys.exit(f"ents: {tb.soak.VTEST} missing (Debian package opencv-doc)")
    atexit.register(tb.Net.clean)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(1))
    rows = []
    for rnd in range(args.rounds):
        for policy in policies:
            print(f"ents: round {rnd + 1}, {policy} ...", flush=True)
            row = run_one(args, policy, args.out / f"r{rnd + 1}-{policy}")
            row["round"] = rnd + 1
            print("   ", json.dumps({k: v for k, v in row.items() if k != "jobs"}), flush=True)
            for jid, j in row["jobs"].items():
                print(f"      {jid}: {json.dumps(j)}", flush=True)
            rows.append(row)
    (args.out / "report.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    rates = ",".join(f"{r:g}" for r in args.rates)
    print(f"\n{len(args.rates)} nodes (links {rates} Mbit/s), {args.cameras} cameras of vtest.avi at 10 fps, "
          f"{args.jobs} jobs at {','.join(f'{r:g}' for r in args.job_rates)} frames/s "
          f"(detect, track, OSNet on every crop, records); "
          f"median over {args.rounds} round(s)\n")
    print("| policy | job items/s, mean over jobs (predicted, error) | job flows, kB/s | measured / OTFA |")
    print("|---|---|---:|---:|")
    base = med(r["mean_measured"] for r in rows if r["policy"] == "otfa")
    for policy in policies:
        rs = [r for r in rows if r["policy"] == policy]
        m, p = med(r["mean_measured"] for r in rs), med(r["mean_predicted"] for r in rs)
        e = f"{100 * (p - m) / m:+.0f} %" if m and p is not None else "-"
        kb = med(r["flow_bytes_per_s"] for r in rs)
        ratio = f"{m / base:.3f}" if m and base else "-"
        print(f"| {policy} | {m} ({p}, {e}) | {kb / 1000 if kb is not None else '-':.1f} | {ratio} |")
    print(f"\nreport: {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
