#!/usr/bin/env python3
"""`deploy/testbed/dcei.py`: the DCEI scenario (issue 15, item 3): JSTSH
against the baselines NMNO, WMNO and NMWO on the testbed, measured on real
processes, with the scheduler's prediction beside each row.

For each bandwidth point (every node's link shaped to that rate, both
ways, as `testbed.py` does) and each planning algorithm (the master's
`plan_algorithm`), in turn (rate by rate, the algorithms interleaved within
each rate and over --rounds): a fresh site (master, --nodes edges, one
`vidar-camera` serving --cameras streams of vtest.avi, mutual TLS), given
--settle seconds to plan and stream, then measured over --window seconds:

  throughput  frames analysed per second, all nodes (`vidar_frames_analysed`)
              against the frames offered (cameras x 10 fps), and frames the
              ingest queues dropped (`vidar_frames_dropped`);
  latency     capture to result, p50 and p99 over the window, from the
              nodes' `vidar_capture_to_result_seconds` histograms (merged,
              interpolated within a bucket);
  the tail    each camera's p50 and p99 and the node that analysed it, and
              each node's CPU time (cores) and the share of the window its
              quota throttled it (with --cpu): a node whose quota runs out
              stops until the next 100 ms period, which is what sets p99.
  predicted   what the scheduler's load-aware model says of the plan in
              force (`/api/plan` `predicted`: mean frames/s per stream times
              the cameras, mean per-frame latency, the busiest node's
              utilisation), and the error of each against the measured
              frames/s, mean latency (the histograms' sums over their
              counts) and the busiest node's cores over its quota; and
              what the plan charges each camera (`/api/plan` `planned`).

All processes share this machine's cores: a node's "compute" here is a
share of the same CPUs, which the planner's per-node profiles do not know.
The links are real (tc tbf); delay and loss are not emulated (no netem).

Needs root. Standard library only. Not part of CI; the figures are in
docs/benchmarks.md ("Testbed: DCEI") with the command.
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

ALGORITHMS = ("jstsh", "nmno", "wmno", "nmwo")


COUNTERS = (("vidar_frames_analysed_total", "analysed"), ("vidar_frames_dropped_total", "dropped"))
BUCKET = re.compile(r'^vidar_capture_to_result_seconds_bucket\{([^}]*)\} (\S+)$', re.M)
SUM_COUNT = re.compile(r'^vidar_capture_to_result_seconds_(sum|count)\{([^}]*)\} (\S+)$', re.M)


def scrape(site: tb.Site) -> dict:
    """Every counter series of every node: (node, metric, labels) -> value."""
    out = {}
    for k in range(len(site.nodes)):
        text = site.metrics(k) or ""
        for name, key in COUNTERS:
            for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
                out[(k, key, m.group(1))] = float(m.group(2))
        for m in BUCKET.finditer(text):
            out[(k, "bucket", m.group(1))] = float(m.group(2))
        for m in SUM_COUNT.finditer(text):
            out[(k, "latency_" + m.group(1), m.group(2))] = float(m.group(3))
        # The node's CPU cgroup (with --cpu): time used and time throttled.
        for key, v in cpu_stat(site.nodes[k]).items():
            out[(k, key, "")] = v
    return out


def cpu_stat(node: str) -> dict[str, float]:
    """`node`'s cgroup CPU time used and throttled, seconds, and the periods
    it was throttled in: cgroup v2's `cpu.stat`; on v1, `cpu.stat` for the
    throttling and the group's processes' utime + stime for the time used
    (cpuacct may be mounted apart). Empty without a quota."""
    root = tb.Cpu.root()
    if root is None:
        return {}
    d = root / f"{tb.PREFIX}-{node}"
    try:
        stat = dict(line.split() for line in (d / "cpu.stat").read_text().splitlines() if line.strip())
    except (OSError, ValueError):
        return {}
    out = {}
    if "usage_usec" in stat:
        out["cpu_s"] = float(stat["usage_usec"]) / 1e6
    else:
        # cgroup v1 keeps usage in cpuacct, which may be mounted apart:
        # the CPU time of the processes in the group instead.
        try:
            ticks = os.sysconf("SC_CLK_TCK")
            used = 0
            for pid in (d / "cgroup.procs").read_text().split():
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                used += int(fields[11]) + int(fields[12])  # utime, stime
            out["cpu_s"] = used / ticks
        except (OSError, ValueError, IndexError):
            pass
    if "throttled_usec" in stat:
        out["throttled_s"] = float(stat["throttled_usec"]) / 1e6
    elif "throttled_time" in stat:
        out["throttled_s"] = float(stat["throttled_time"]) / 1e9
    if "nr_throttled" in stat:
        out["throttled_periods"] = float(stat["nr_throttled"])
    return out


class Window(tb.Window):
    """`testbed.Window` with DCEI's readers: totals and latency buckets."""

    def total(self, what: str) -> float:
        return sum(v for (_, key, _), v in self.gained.items() if key == what)

    def node_total(self, k: int, what: str) -> float:
        return sum(v for (n, key, _), v in self.gained.items() if n == k and key == what)

    def cameras(self) -> dict[str, int]:
        """camera -> the node whose latency histogram counted most of its
        frames in the window."""
        counts: dict[str, dict[int, float]] = {}
        for (k, key, labels), v in self.gained.items():
            cam = re.search(r'camera="([^"]+)"', labels)
            if key == "bucket" and cam and 'le="+Inf"' in labels:
                counts.setdefault(cam.group(1), {})[k] = v
        return {c: max(by, key=by.get) for c, by in counts.items()}

    def buckets(self, camera: str | None = None) -> dict:
        out = {}
        for (_, key, labels), v in self.gained.items():
            if key != "bucket" or (camera is not None and f'camera="{camera}"' not in labels):
                continue
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                edge = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
                out[edge] = out.get(edge, 0.0) + v
        return out


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, linear within its bucket."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] <= 0:
        return None
    want, lo, below = q * buckets[edges[-1]], 0.0, 0.0
    for le in edges:
        n = buckets[le]
        if n >= want:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * ((want - below) / (n - below) if n > below else 1.0)
        lo, below = le, n
    return None


def run_one(args, rate: float, algorithm: str, out: Path) -> dict:
    a = copy.copy(args)
    a.rates = [rate] * args.nodes
    a.algorithm = algorithm
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    site = tb.Site(a, out)
    try:
        site.net.up()
        site.start()
        placed = tb.wait_until(lambda: len(site.streaming()) == args.cameras, args.settle)
        time.sleep(max(0.0, args.settle - (placed or args.settle)))
        before = site.plan()
        window_ms = time.time() * 1000
        window, secs = Window.sample(lambda: scrape(site), args.window)
        plan = site.plan()
        where = site.streaming()
    finally:
        site.stop()
        tb.Net.clean()
    buckets = window.buckets()
    pred = plan.get("predicted") or {}
    streams = plan.get("streams", [])
    row = {
        "rate_mbit_s": rate, "algorithm": algorithm, "plan_algorithm": plan.get("algorithm"),
        "offered_fps": args.cameras * 10.0,
        "analysed_fps": round(window.total("analysed") / secs, 2),
        "dropped_per_s": round(window.total("dropped") / secs, 2),
        "p50_ms": None, "p99_ms": None,
        # The mean, which is what the model predicts (the tail keeps it above the median).
        "mean_ms": (round(1000 * window.total("latency_sum") / window.total("latency_count"), 1)
                    if window.total("latency_count") > 0 else None),
        "streaming": len(where),
        "offloaded": sum(1 for s in streams if s.get("node") != s.get("reid_node")),
        "predicted_fps": round(pred["mean_fps"] * len(streams), 2) if "mean_fps" in pred else None,
        "predicted_latency_ms": round(pred["mean_latency"] * 1000, 1) if "mean_latency" in pred else None,
        # The part up to the detection result: what capture-to-result measures
        # (re-ID and the crops' hop follow the result).
        "predicted_frame_latency_ms": (round(pred["mean_frame_latency"] * 1000, 1)
                                       if "mean_frame_latency" in pred else None),
        "predicted_max_utilisation": pred.get("max_utilisation"),
        "placement": {s["camera"]: [s["node"], s["reid_node"]] for s in streams},
        # Seconds from the placement in force to the window's start (a
        # version is the master's clock in ms when it was made; cameras
        # moved shortly before the window may still be handing over), and
        # whether it changed within the window.
        "plan_age_s": (round((window_ms - before["version"]) / 1000, 1)
                       if isinstance(before.get("version"), int) else None),
        "replanned_in_window": before.get("version") != plan.get("version"),
        # What the plan charges each camera per frame, in detector frames:
        # its measured detector share and the rest of its frame's work.
        "planned": {c["camera"]: {"detect_share": c.get("detect_share"), "ingest_work": c.get("ingest_work")}
                    for c in plan.get("planned", [])},
    }
    for q, key in ((0.5, "p50_ms"), (0.99, "p99_ms")):
        v = quantile(buckets, q)
        row[key] = None if v is None else round(v * 1000, 1)
    # Where the tail is: each camera's latency, and each node's CPU under
    # its quota (cores used, share of the window throttled).
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    row["cameras"] = {
        cam: {"node": site.nodes[k], "p50_ms": ms(quantile(window.buckets(cam), 0.5)),
              "p99_ms": ms(quantile(window.buckets(cam), 0.99))}
        for cam, k in sorted(window.cameras().items())}
    row["nodes"] = {
        node: {"cores": round(window.node_total(k, "cpu_s") / secs, 3),
               "throttled_share": round(window.node_total(k, "throttled_s") / secs, 3),
               "throttled_periods_per_s": round(window.node_total(k, "throttled_periods") / secs, 2)}
        for k, node in enumerate(site.nodes)}
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", type=float, default=0.0,
                    help="CPU cores each edge node may use (a cgroup quota; 0: no limit, all share the machine)")
    ap.add_argument("--rates", default="5,10,30", help="bandwidth points, Mbit/s (every node's link)")
    ap.add_argument("--algorithms", default=",".join(ALGORITHMS))
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--detection-interval", type=int, default=2)
    ap.add_argument("--sndbuf", type=int, default=0,
                    help="TCP send buffer of each node's zenoh link, bytes (0: the kernel's autotuning)")
    ap.add_argument("--settle", type=float, default=45, help="seconds from start to the window")
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--burst", type=int, default=0)
    ap.add_argument("--out", type=Path, default=tb.ROOT / ".cache/testbed-dcei")
    ap.add_argument("--bin", type=Path, default=tb.ROOT / "target/release")
    args = ap.parse_args()
    rates = [float(x) for x in args.rates.split(",") if x]
    algorithms = [x for x in args.algorithms.split(",") if x]
    bad = [x for x in algorithms if x not in ALGORITHMS + ("jstsh_greedy",)]
    if bad:
        sys.exit(f"dcei: --algorithms {','.join(bad)}: not one of {', '.join(ALGORITHMS)}, jstsh_greedy")
    if os.geteuid() != 0:
        sys.exit("dcei: needs root (network namespaces, veth pairs, tc)")
    if not tb.soak.VTEST.exists():
        sys.exit(f"dcei: {tb.soak.VTEST} missing (Debian package opencv-doc)")
    atexit.register(tb.Net.clean)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(1))
    rows = []
    for rnd in range(args.rounds):
        for rate in rates:
            for alg in algorithms:
                print(f"dcei: round {rnd + 1}, {rate:g} Mbit/s, {alg} ...", flush=True)
                row = run_one(args, rate, alg, args.out / f"r{rnd + 1}-{rate:g}-{alg}")
                row["round"] = rnd + 1
                print("   ", json.dumps({k: v for k, v in row.items() if k != "placement"}), flush=True)
                rows.append(row)
    (args.out / "report.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
    print(f"\n{args.nodes} nodes, {args.cameras} cameras of vtest.avi at 10 fps "
          f"({args.cameras * 10} frames/s offered), detection every {args.detection_interval} frames; "
          f"median over {args.rounds} round(s)\n")
    print("| Mbit/s per node | algorithm | analysed frames/s (predicted, error) | dropped/s | "
          "latency p50 / p99, ms | capture to result, mean, ms (predicted to the result, error) | "
          "predicted with re-ID and the crops' hop, ms | re-ID offloaded | measured / JSTSH frames/s |")
    print("|---:|---|---|---:|---|---|---:|---:|---:|")

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    def err(measured, predicted) -> str:
        if not measured or predicted is None:
            return "-"
        return f"{100 * (predicted - measured) / measured:+.0f} %"

    for rate in rates:
        base = med(r["analysed_fps"] for r in rows if r["rate_mbit_s"] == rate and r["algorithm"] == "jstsh")
        for alg in algorithms:
            rs = [r for r in rows if r["rate_mbit_s"] == rate and r["algorithm"] == alg]
            fps, pf = med(r["analysed_fps"] for r in rs), med(r["predicted_fps"] for r in rs)
            p50, p99 = med(r["p50_ms"] for r in rs), med(r["p99_ms"] for r in rs)
            pl = med(r["predicted_latency_ms"] for r in rs)
            pfl = med(r.get("predicted_frame_latency_ms") for r in rs)
            ratio = f"{fps / base:.3f}" if fps and base else "-"
            mean = med(r.get("mean_ms") for r in rs)
            print(f"| {rate:g} | {alg} | {fps} ({pf}, {err(fps, pf)}) | {med(r['dropped_per_s'] for r in rs)} | "
                  f"{p50} / {p99} | {mean} ({pfl}, {err(mean, pfl)}) | {pl} | {med(r['offloaded'] for r in rs)} | "
                  f"{ratio} |")
    print("\nWhere the tail is, per run: cameras per node, and each node with more than one camera "
          "(cores used under its quota, share of the window it was throttled); the worst camera's p99; "
          "the model's highest utilisation against the busiest node's cores over its quota; what the plan "
          "charges a camera per frame besides detection (mean over cameras, detector frames); how long the "
          "placement had been in force when the window began (s; * if it changed within the window).\n")
    print("| Mbit/s per node | algorithm | round | p99, ms | cameras per node | nodes with more than one camera: "
          "cores, throttled | worst camera p99, ms | utilisation predicted / measured | ingest work | "
          "placement age, s |")
    print("|---:|---|---:|---:|---|---|---:|---|---:|---:|")
    for r in rows:
        nodes, cams = r.get("nodes") or {}, r.get("cameras") or {}
        if not nodes:
            continue
        count = {n: sum(1 for c in cams.values() if c["node"] == n) for n in nodes}
        shared = "; ".join(f"{n}: {nodes[n]['cores']:.3f}, {100 * nodes[n]['throttled_share']:.0f} %"
                           for n in nodes if count[n] > 1) or "-"
        worst = max((c["p99_ms"] for c in cams.values() if c["p99_ms"] is not None), default=None)
        busiest = max(n["cores"] for n in nodes.values()) / args.cpu if args.cpu > 0 else None
        util = r.get("predicted_max_utilisation")
        util = f"{util:.2f} / {busiest:.2f}" if util is not None and busiest is not None else "-"
        work = [p["ingest_work"] for p in (r.get("planned") or {}).values() if p.get("ingest_work") is not None]
        work = f"{statistics.mean(work):.3f}" if work else "-"
        print(f"| {r['rate_mbit_s']:g} | {r['algorithm']} | {r['round']} | {r['p99_ms']} | "
              f"{' / '.join(str(count[n]) for n in nodes)} | {shared} | {worst} | {util} | {work} | "
              f"{r.get('plan_age_s')}{'*' if r.get('replanned_in_window') else ''} |")
    print(f"\nreport: {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
