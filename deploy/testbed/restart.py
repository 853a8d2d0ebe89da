#!/usr/bin/env python3
"""A master restart on the testbed (root): does the site go on as it was?

A master that restarts (a crash, an upgrade, its box rebooted) should change
nothing the nodes do: they keep analysing and recording while it is away,
and the plan it makes when it is back should be the one in force. This
scenario measures that, for a base build against this one, alternated.

    python3 deploy/testbed/restart.py --base-bin DIR [--bin DIR] [--rounds 3]

The site is testbed.py's: a network namespace per role, every node's link
shaped with tc (--rates), each node in a CPU cgroup (--cpu), mutual TLS.
Every round restarts the master once with each build, the base first: the
master runs that build for --settle s (its plans and measured figures
settle), is SIGKILLed, started again --down s later, and watched for
--watch s from the kill. Reported per restart:
  versions   plan versions the restarted master published;
  moved      cameras that streamed, at some point of the watch, on another
             node than the one they streamed on before the kill;
  analysed   frames the site analysed per second in the watch, against the
             --window s before the kill;
  first plan seconds from the start until the master answers with a plan;
  figures    the rest of a frame's work it plans the cameras with
             (`/api/plan`'s planned `ingest_work`, summed) at its first
             answer, against before the kill.
The edge nodes and cameras run --bin's build throughout; only the master's
binary changes. Standard library only; not part of CI (root, minutes).
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
import dcei  # noqa: E402  (its scrape of the nodes' counters)
import testbed as tb  # noqa: E402


def analysed_total(site: tb.Site) -> dict:
    """Frames analysed so far: `dcei.scrape`'s series of them, one per node
    and camera (a camera that moves leaves its old node's series and starts
    one on the new node; `tb.Window` counts what each gained)."""
    return {k: v for k, v in dcei.scrape(site).items() if k[1] == "analysed"}


def planned_work(plan: dict) -> float | None:
    """The ingest work the plan's cameras are planned with, summed."""
    cams = plan.get("planned") or []
    return round(sum(c.get("ingest_work", 0.0) for c in cams), 3) if cams else None


def use_build(site: tb.Site, bin_dir: Path) -> None:
    """The master's next life runs `bin_dir`'s vidar-master."""
    assert site.master is not None
    argv = site.master.argv
    at = next(i for i, a in enumerate(argv) if a.endswith("/vidar-master"))
    argv[at] = str(bin_dir / "vidar-master")


def restart_master(site: tb.Site, down: float) -> None:
    assert site.master is not None
    site.master.kill(signal.SIGKILL)
    site.master.wait(10)
    time.sleep(down)
    site.master.start()


def restart(site: tb.Site, args) -> dict:
    """One measured restart of the master (its build already chosen)."""
    window, secs = tb.Window.sample(lambda: analysed_total(site), args.window)
    fps_before = sum(window.gained.values()) / secs
    before = site.streaming()
    plan = site.plan()
    version_before, work_before = plan.get("version"), planned_work(plan)
    t0 = time.monotonic()
    window = tb.Window(analysed_total(site))
    restart_master(site, args.down)
    started = time.monotonic()
    moved: set[str] = set()
    versions: list[int] = []
    first_plan = work_first = None
    while time.monotonic() - t0 < args.watch:
        now = site.streaming()
        moved |= {c for c, n in before.items() if now.get(c) not in (None, n)}
        p = site.plan()
        v = p.get("version")
        if v is not None:
            if first_plan is None:
                first_plan = time.monotonic() - started
                work_first = planned_work(p)
            if v != version_before and v not in versions:
                versions.append(v)
        window.add(analysed_total(site))
        time.sleep(0.5)
    fps_watch = sum(window.gained.values()) / (time.monotonic() - t0)
    return {
        "versions": len(versions), "moved": sorted(moved), "before": before,
        "analysed_fps_before": round(fps_before, 2), "analysed_fps_watch": round(fps_watch, 2),
        "first_plan_s": None if first_plan is None else round(first_plan, 1),
        "ingest_work_before": work_before, "ingest_work_first": work_first,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-bin", type=Path, required=True, help="the base build's binaries (its vidar-master)")
    ap.add_argument("--bin", type=Path, default=tb.ROOT / "target/release")
    ap.add_argument("--rates", default="30,10,5", help="each node's link, Mbit/s (one node per rate)")
    ap.add_argument("--cpu", type=float, default=0.5, help="CPU cores each node may use")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--detection-interval", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=float, default=90, help="seconds a build's master runs before its restart")
    ap.add_argument("--window", type=float, default=20, help="seconds of analysis measured before the kill")
    ap.add_argument("--down", type=float, default=5, help="seconds the master is away")
    ap.add_argument("--watch", type=float, default=60, help="seconds watched from the kill")
    ap.add_argument("--out", type=Path, default=tb.ROOT / ".cache/testbed-restart")
    args = ap.parse_args()
    args.rates = [float(x) for x in args.rates.split(",") if x]
    args.burst, args.sndbuf = 0, 0
    if os.geteuid() != 0:
        sys.exit("restart: needs root (network namespaces, veth pairs, tc, cgroups)")
    for b in (args.bin, args.base_bin):
        if not (b / "vidar-master").exists():
            sys.exit(f"restart: {b / 'vidar-master'} missing")
    out: Path = args.out
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    site = tb.Site(args, out)
    cleanup = tb.stop_on_exit(site)
    site.net.up()
    site.start()
    print(f"restart: {len(site.nodes)} nodes ({', '.join(f'{r:g} Mbit/s' for r in args.rates)}, "
          f"{args.cpu:g} cores each), {args.cameras} cameras; logs in {out}", flush=True)
    builds = [("base", args.base_bin), ("this", args.bin)]
    rows = []
    print("\n| round | build | versions published | cameras moved | analysed frames/s before / in the watch "
          "| first plan, s | ingest work before / at first plan |")
    print("|---|---|---:|---|---|---:|---|", flush=True)
    for r in range(args.rounds):
        for name, b in builds:
            use_build(site, b)
            restart_master(site, 1)  # this build's first life: not measured
            time.sleep(args.settle)
            row = {"round": r + 1, "build": name, **restart(site, args)}
            rows.append(row)
            print(f"| {r + 1} | {name} | {row['versions']} | {', '.join(row['moved']) or '-'} | "
                  f"{row['analysed_fps_before']} / {row['analysed_fps_watch']} | {row['first_plan_s']} | "
                  f"{row['ingest_work_before']} / {row['ingest_work_first']} |", flush=True)
    print("\n| build | restarts | restarts that moved a camera | cameras moved (median) | versions (median) "
          "| analysed in the watch / before (median, range) |")
    print("|---|---:|---:|---:|---:|---|")
    summary = {}
    for name, _ in builds:
        mine = [x for x in rows if x["build"] == name]
        kept = [x["analysed_fps_watch"] / x["analysed_fps_before"] for x in mine if x["analysed_fps_before"]]
        s = {"restarts": len(mine), "moving": sum(1 for x in mine if x["moved"]),
             "moved_median": statistics.median(len(x["moved"]) for x in mine),
             "versions_median": statistics.median(x["versions"] for x in mine),
             "analysed_ratio_median": round(statistics.median(kept), 3) if kept else None,
             "analysed_ratio_range": [round(min(kept), 3), round(max(kept), 3)] if kept else None}
        summary[name] = s
        print(f"| {name} | {s['restarts']} | {s['moving']} | {s['moved_median']} | {s['versions_median']} | "
              f"{s['analysed_ratio_median']} ({s['analysed_ratio_range']}) |")
    cleanup()
    report = {"command": " ".join(sys.argv), "rows": rows, "summary": summary}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
