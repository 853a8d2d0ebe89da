#!/usr/bin/env python3
"""`make soak`: a site under faults for an hour, with mutual TLS on.

A master, NODES edge nodes and CAMERAS cameras (each its own `vidar-camera`
process serving OpenCV's vtest.avi from its own offset) run on 127.0.0.1 with
the site CA of `vidar-master ca init`: mutual TLS, signed plans, the master's
access list. Every EVENT_EVERY seconds the soak SIGKILLs one camera (restarted
30 s later, as a camera that reboots) and SIGKILLs one edge node (restarted
10 s later, as a node that crashes and comes back), in turn.

It reports, from what the processes themselves show:
  - RSS per process over time (from /proc), and its growth after the first
    10 minutes of each process's life;
  - p99 capture-to-result latency per window (from the nodes' Prometheus
    histograms, summed over cameras and nodes, restarts included);
  - records lost or duplicated: after the end, every record key (node_id, seq)
    in each node's own database must be in the master's global database with
    the same content, and no sighting may be stored twice under two keys.

Standard library only. Not part of CI (it is a benchmark): docs/benchmarks.md
gives its figures and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VTEST_SECONDS = 79  # vtest.avi is 795 frames at 10 fps
HISTOGRAM = "vidar_capture_to_result_seconds_bucket"
# Record tables an edge writes and the master synchronises (store/src/schema.rs),
# with the columns that identify a record's content.
RECORD_TABLES = {
    "cameras": "camera_id, name, recorded_ms",
    "tracks": "camera_id, track_id, first_ms, last_ms",
    "sightings": "identity_id, camera_id, track_id, first_ms, last_ms, length(path)",
    "identities": "identity_id, camera_id, first_seen_ms, dim, length(embedding)",
    "snapshots": "identity_id, camera_id, t_ms, length(jpeg)",
}

MASTER_TOML = """config_version = 1
master_id = "master"
database = "{dir}/global.db"
http_addr = "127.0.0.1:0"
sync_every_s = 10
node_timeout_s = 3
metrics_public = true

[[users]]
name = "admin"
role = "admin"
password_hash = "pbkdf2-sha256$600000$RBefAysBS3+d63MBVuvM7Q==$RPzva2Y77kvRt0HjK8r2EtAjprqt6DJ2rMT38n7JK68="

[cluster]
site = "soak"
listen = ["tls/127.0.0.1:0"]
bundle = "{dir}/ca/master"
"""

CAMERA_TOML = """
[[cameras]]
camera = "cam-{i}"
source = "rtsp://{host}:{port}/cam-{i}"
fps = 10
width = 768
height = 576
"""

EDGE_TOML = """config_version = 1
node_id = "{node}"
database = "{dir}/{node}.db"
metrics_addr = "{metrics_addr}"
detection_interval = {interval}

[models]
dir = "{models}"

[models.runtime]
intra_threads = 1

[detector]
model = "ssd-mobilenet-v2-person"
score_threshold = 0.5
max_batch = 1

[gallery]

[cluster]
site = "{site}"
connect = ["tls/{master}:{zenoh}"]
bundle = "{dir}/ca/nodes/{node}"

[sharing]
reid_service = true

[sharing.ingest]
transport = "tcp"
"""


@dataclass
class Proc:
    """One role (master, edge-1, cam-3, ...) and the process now playing it."""

    role: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen | None = None
    lives: int = 0
    started: float = 0.0
    # (t, life, VmRSS kB, RssAnon kB)
    rss: list[tuple[float, int, int, int]] = field(default_factory=list)
    # (t, life, CPU seconds used so far: user + system, all threads).
    cpu: list[tuple[float, int, float]] = field(default_factory=list)
    # (t, life, SQLite heap bytes, gallery identities, merge window bytes,
    # streams up, heap in use bytes, heap free bytes) from the process' /metrics
    gauges: list[tuple[float, int, float, float, float, float, float, float]] = field(
        default_factory=list)

    @property
    def ready_file(self) -> Path:
        return self.log.with_suffix(".ready")

    def start(self) -> None:
        out = open(self.log, "ab")
        self.ready_file.unlink(missing_ok=True)
        env = dict(os.environ, VIDAR_READY_FILE=str(self.ready_file))
        self.popen = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT, env=env
        )
        out.close()
        self.lives += 1
        self.started = time.monotonic()

    def ready(self) -> dict[str, list[str]] | None:
        """What this life announced it listens on (its ready file), once it serves."""
        try:
            text = self.ready_file.read_text()
        except OSError:
            return None
        got: dict[str, list[str]] = {}
        for line in text.splitlines():
            k, _, v = line.partition("=")
            got.setdefault(k, []).append(v)
        return got

    def port(self, key: str) -> int | None:
        """The port of the first `key` address (http, zenoh, rtsp) this life announced."""
        r = self.ready()
        return int(r[key][0].rsplit(":", 1)[1]) if r and key in r else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def sample_rss(self, t: float) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        try:
            # VmRSS, and its anonymous part (heap, stacks): the rest is
            # files mapped (the binary's pages as code paths first run,
            # SQLite's shared WAL index), which is no leak.
            kb = {}
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    kb[key] = int(rest.split()[0])
            if "VmRSS" in kb:
                self.rss.append((t, self.lives, kb["VmRSS"], kb.get("RssAnon", 0)))
            # Fields 14 and 15 of stat (utime, stime), after the name in
            # parentheses (which may hold spaces).
            stat = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(stat[11]) + int(stat[12])
            self.cpu.append((t, self.lives, ticks / os.sysconf("SC_CLK_TCK")))
        except (OSError, ValueError, IndexError):
            pass


def add_site_args(ap: argparse.ArgumentParser, out: str, interval: int) -> None:
    """The options every site harness takes: detection interval, output folder, binaries."""
    ap.add_argument("--detection-interval", type=int, default=interval)
    ap.add_argument("--out", type=Path, default=ROOT / out)
    ap.add_argument("--bin", type=Path, default=ROOT / "target/release")


def require_vtest(who: str) -> None:
    """Exits naming what is missing when the cameras' video is not installed."""
    if not VTEST.exists():
        sys.exit(f"{who}: {VTEST} missing (Debian package opencv-doc; `make setup` installs it)")


def start_cameras(cams: list[Proc]) -> list[int]:
    """Starts every camera, waits for the RTSP port each bound, and pins it
    there (a camera restarted later comes back on the same port)."""
    for c in cams:
        c.start()
    rtsp = []
    for c in cams:
        wait_for(c.role, lambda c=c: c.port("rtsp") is not None, 60)
        rtsp.append(c.port("rtsp"))
        c.argv[c.argv.index("--port") + 1] = str(rtsp[-1])
    return rtsp


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"{Path(sys.argv[0]).stem}: {what} not ready after {timeout:.0f} s")


def http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except OSError:
        return None


def histogram(text: str) -> dict[tuple[str, float], float]:
    """Cumulative bucket counts of the capture-to-result histogram, per (camera, bound)."""
    out: dict[tuple[str, float], float] = {}
    for line in text.splitlines():
        if not line.startswith(HISTOGRAM + "{"):
            continue
        labels, _, value = line.rpartition(" ")
        le = labels.split('le="', 1)[1].split('"', 1)[0]
        cam = labels.split('camera="', 1)[1].split('"', 1)[0] if 'camera="' in labels else ""
        bound = float("inf") if le == "+Inf" else float(le)
        out[(cam, bound)] = float(value)
    return out


def gauge(text: str, name: str, label: str = "") -> float:
    """The value of a gauge (the first member carrying `label`, e.g.
    'state="in_use"', when given), 0 if absent."""
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line:
            return float(line.rpartition(" ")[2])
    return 0.0


def heap(text: str) -> tuple[float, float]:
    """vidar_process_heap_bytes: (in use, free in the allocator)."""
    return (gauge(text, "vidar_process_heap_bytes", 'state="in_use"'),
            gauge(text, "vidar_process_heap_bytes", 'state="free"'))


def increase(series: list[tuple[float, dict]], lo: float, hi: float) -> dict[float, float]:
    """What each bucket gained in [lo, hi), summed over cameras, as Prometheus'
    increase(): a per-camera counter that went down was reset (the node started
    that camera's pipeline again) and counts from zero."""
    out: dict[float, float] = {}
    prev: dict | None = None
    for t, h in series:
        if t >= hi:
            break
        if t >= lo:
            for key, c in h.items():
                before = (prev or {}).get(key, 0.0)
                gained = c - before if c >= before else c
                out[key[1]] = out.get(key[1], 0.0) + gained
        prev = h
    return out


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds to 0.1 ms (None stays None)."""
    return None if seconds is None else round(seconds * 1000, 1)


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets (seconds)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if b == float("inf"):
                return prev_bound
            if c == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (c - prev_count)
        prev_bound, prev_count = b, c
    return prev_bound


def node_keys(db: Path) -> dict[tuple[str, str, int], tuple]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for table, cols in RECORD_TABLES.items():
            for row in con.execute(f"SELECT node_id, seq, {cols} FROM {table}"):
                out[(table, row[0], row[1])] = tuple(row[2:])
        return out
    finally:
        con.close()


def last_seq(db: Path, node: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return max(
            con.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {t} WHERE node_id = ?", (node,)).fetchone()[0]
            for t in RECORD_TABLES
        )
    finally:
        con.close()


def acked(global_db: Path, node: str) -> int:
    try:
        con = sqlite3.connect(f"file:{global_db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT acked_seq FROM sync_cursors WHERE peer = ?", (node,)).fetchone()
            return row[0] if row else 0
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def synced(out: Path, edges: list[Proc]) -> bool:
    return all(acked(out / "global.db", e.role) >= last_seq(out / f"{e.role}.db", e.role) for e in edges)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--event-every", type=float, default=600, help="seconds between faults")
    ap.add_argument("--settle", type=float, default=600, help="seconds of a process life before RSS growth counts")
    ap.add_argument("--window", type=float, default=300, help="seconds per latency window")
    ap.add_argument("--sample-every", type=float, default=10)
    add_site_args(ap, out=".cache/soak", interval=2)
    args = ap.parse_args()
    require_vtest("soak")
    out: Path = args.out
    if out.exists():
        for p in out.glob("*"):
            if p.is_file():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    models = os.environ.get("VIDAR_MODEL_DIR", str(ROOT / ".cache/models"))
    # Every listener takes port 0 and each process announces what it bound
    # in its ready file (VIDAR_READY_FILE); a camera restarts on its port.
    nodes = [f"edge-{n + 1}" for n in range(args.nodes)]

    enroll = [a for n in nodes for a in ("--enroll", n)]
    subprocess.run(
        [str(args.bin / "vidar-master"), "ca", "init", "--dir", str(out / "ca"), "--site", "soak", *enroll,
         "--if-missing"],
        check=True, stdout=subprocess.DEVNULL, cwd=ROOT,
    )
    cams = [
        Proc(f"cam-{i}",
             [str(args.bin / "vidar-camera"), "--port", "0", "--mount",
              f"cam-{i}={VTEST}#start={(i * 17) % VTEST_SECONDS}"],
             out / f"cam-{i}.log")
        for i in range(args.cameras)
    ]
    master = Proc("master", [str(args.bin / "vidar-master"), "run", "--config", str(out / "master.toml")],
                  out / "master.log")
    edges = [Proc(node, [str(args.bin / "vidar-edge"), "run", "--config", str(out / f"{node}.toml")],
                  out / f"{node}.log") for node in nodes]
    procs = [master, *edges, *cams]

    def stop_all(*_):
        for p in reversed(procs):
            p.kill(signal.SIGINT)
        for p in reversed(procs):
            p.wait(20)

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    try:
        rtsp = start_cameras(cams)
        (out / "master.toml").write_text(MASTER_TOML.format(dir=out) + "".join(
            CAMERA_TOML.format(i=i, host="127.0.0.1", port=rtsp[i]) for i in range(args.cameras)
        ))
        master.start()
        wait_for("master", lambda: master.port("http") is not None, 60)
        http, zenoh = master.port("http"), master.port("zenoh")
        for node in nodes:
            (out / f"{node}.toml").write_text(
                EDGE_TOML.format(node=node, dir=out, site="soak", master="127.0.0.1", zenoh=zenoh,
                                 metrics_addr="127.0.0.1:0", models=models, interval=args.detection_interval)
            )
        for e in edges:
            e.start()
        for e in edges:
            wait_for(e.role, lambda e=e: e.port("http") is not None, 60)
        print(f"soak: master, {len(edges)} nodes, {len(cams)} cameras up (mutual TLS); "
              f"{args.minutes:.0f} min, a camera and a node SIGKILLed every {args.event_every:.0f} s; logs in {out}",
              flush=True)
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        # Latency histograms per (node, life): the last sample of each life.
        hist: dict[tuple[str, int], list[tuple[float, dict[float, float]]]] = {}
        restarts: list[tuple[float, Proc]] = []
        events = []
        next_event = t0 + args.event_every
        k = 0
        next_sample = t0
        while time.monotonic() < end:
            now = time.monotonic()
            for when, p in list(restarts):
                if now >= when:
                    p.start()
                    restarts.remove((when, p))
            if now >= next_event:
                cam = cams[k % len(cams)]
                node = edges[k % len(edges)]
                cam.kill(signal.SIGKILL)
                node.kill(signal.SIGKILL)
                cam.wait(5)
                node.wait(5)
                restarts += [(now + 30, cam), (now + 10, node)]
                events.append({"t_s": round(now - t0), "killed": [cam.role, node.role]})
                print(f"soak: t={now - t0:.0f} s SIGKILL {cam.role} and {node.role}", flush=True)
                k += 1
                next_event += args.event_every
            if now >= next_sample:
                t = now - t0
                for p in procs:
                    p.sample_rss(t)
                for n, e in enumerate(edges):
                    if e.alive():
                        port = e.port("http")
                        text = http_get(f"http://127.0.0.1:{port}/metrics") if port else None
                        if text:
                            hist.setdefault((e.role, e.lives), []).append((t, histogram(text)))
                            e.gauges.append((t, e.lives, gauge(text, "vidar_sqlite_memory_bytes"),
                                             gauge(text, "vidar_gallery_identities"), 0.0,
                                             float(sum(1 for line in text.splitlines()
                                                       if line.startswith("vidar_stream_up{")
                                                       and line.endswith(" 1"))),
                                             *heap(text)))
                text = http_get(f"http://127.0.0.1:{http}/metrics") if master.alive() else None
                if text:
                    master.gauges.append((t, master.lives, gauge(text, "vidar_sqlite_memory_bytes"), 0.0,
                                          gauge(text, "vidar_master_merge_window_bytes"), 0.0,
                                          *heap(text)))
                for p in procs:
                    if not p.alive() and not any(r[1] is p for r in restarts):
                        sys.exit(f"soak: {p.role} stopped by itself at t={t:.0f} s (see {p.log})")
                next_sample += args.sample_every
            time.sleep(0.2)

        # The end: cameras off, the nodes close their tracks, then every record
        # a node holds must reach the master.
        for p in restarts:
            p[1].start()
        for c in cams:
            c.kill(signal.SIGINT)
        for c in cams:
            c.wait(20)
        time.sleep(15)
        # A node records what it still holds when it stops (open tracks): start
        # it again so that the master pulls that too, until a stop adds nothing.
        for attempt in range(4):
            deadline = time.monotonic() + 180
            while not synced(out, edges) and time.monotonic() < deadline:
                time.sleep(2)
            for e in edges:
                e.kill(signal.SIGINT)
            for e in edges:
                e.wait(30)
            if synced(out, edges) or attempt == 3:
                break
            print("soak: the nodes recorded more as they stopped; starting them again to sync it", flush=True)
            for e in edges:
                e.start()
        master.kill(signal.SIGINT)
        master.wait(30)
    finally:
        stop_all()

    report = summarise(args, out, procs, edges, hist, events)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    return 0 if report["records"]["lost"] == 0 and report["records"]["duplicated"] == 0 else 1


def summarise(args, out: Path, procs: list[Proc], edges: list[Proc], hist, events) -> dict:
    windows = []
    n_windows = max(1, int(args.minutes * 60 // args.window))
    for w in range(n_windows):
        lo, hi = w * args.window, (w + 1) * args.window
        total: dict[float, float] = {}
        per_node: dict[str, dict[float, float]] = {}
        for (role, _life), series in hist.items():
            mine = per_node.setdefault(role, {})
            for b, c in increase(series, lo, hi).items():
                total[b] = total.get(b, 0.0) + c
                mine[b] = mine.get(b, 0.0) + c
        p99 = quantile(total, 0.99)
        p50 = quantile(total, 0.50)
        frames = total.get(float("inf"), 0.0)
        windows.append({
            "from_min": lo / 60, "to_min": hi / 60, "results": int(frames),
            "p50_ms": ms(p50),
            "p99_ms": ms(p99),
            # A p99 inside a bucket is interpolated (edges built before
            # session 16 had only 0.1, 0.25, 0.5 s there), so also the share
            # of results slower than 250 ms, a bound on both.
            "over_250ms": None if not frames else round(1.0 - total.get(0.25, 0.0) / frames, 4),
            # Which node the tail comes from (a node with more streams than
            # the others is behind first).
            "nodes": {
                role: {"results": int(b.get(float("inf"), 0.0)), "p99_ms": ms(quantile(b, 0.99))}
                for role, b in sorted(per_node.items())
            },
        })
    rss = []
    for p in procs:
        for life in sorted({x[1] for x in p.rss}):
            s = [(t, kb) for t, l, kb, _ in p.rss if l == life]
            anon = [(t, kb) for t, l, _, kb in p.rss if l == life]
            if not s:
                continue
            t_start = s[0][0]
            settled = [kb for t, kb in s if t - t_start >= args.settle]
            first10 = [kb for t, kb in s if t - t_start < args.settle]
            entry = {
                "role": p.role, "life": life, "from_min": round(t_start / 60, 1),
                "minutes": round((s[-1][0] - t_start) / 60, 1),
                "rss_mb_at_10min": None, "rss_mb_end": round(s[-1][1] / 1024, 1),
                "rss_mb_max": round(max(kb for _, kb in s) / 1024, 1),
                "growth_after_10min": None,
            }
            per_min = max(1, int(60 // args.sample_every))
            if settled and first10:
                # Median of the first minute after minute 10 against the last minute.
                ref = statistics.median(settled[:per_min])
                tail = statistics.median(settled[-per_min:])
                entry["rss_mb_at_10min"] = round(ref / 1024, 1)
                entry["growth_after_10min"] = round(tail / ref - 1, 4)
                a_settled = [kb for t, kb in anon if t - t_start >= args.settle]
                a_ref = statistics.median(a_settled[:per_min])
                a_tail = statistics.median(a_settled[-per_min:])
                if a_ref:
                    entry["anon_mb_at_10min"] = round(a_ref / 1024, 1)
                    entry["anon_mb_end"] = round(a_tail / 1024, 1)
                    entry["anon_growth_after_10min"] = round(a_tail / a_ref - 1, 4)
                # The same, less SQLite's own heap (page caches, capped): what
                # grows that is not a cache filling up to its bound.
                g = [(t, sq, gal, mw, up, hu, hf) for t, l, sq, gal, mw, up, hu, hf in p.gauges
                     if l == life and t - t_start >= args.settle]
                if g:
                    sq_ref = statistics.median(x[1] for x in g[:per_min]) / 1024
                    sq_tail = statistics.median(x[1] for x in g[-per_min:]) / 1024
                    entry["sqlite_mb_at_10min"] = round(sq_ref / 1024, 1)
                    entry["sqlite_mb_end"] = round(sq_tail / 1024, 1)
                    entry["growth_less_sqlite"] = round((tail - sq_tail) / (ref - sq_ref) - 1, 4)
                    # The master's merge window (identities of the last hour,
                    # at most 10,000) is the other bounded cache.
                    mw_ref = statistics.median(x[3] for x in g[:per_min]) / 1024
                    mw_tail = statistics.median(x[3] for x in g[-per_min:]) / 1024
                    if mw_ref or mw_tail:
                        entry["merge_window_mb_at_10min"] = round(mw_ref / 1024, 1)
                        entry["merge_window_mb_end"] = round(mw_tail / 1024, 1)
                        entry["growth_less_caches"] = round(
                            (tail - sq_tail - mw_tail) / (ref - sq_ref - mw_ref) - 1, 4)
                    entry["gallery_at_10min"] = int(statistics.median(x[2] for x in g[:per_min]))
                    entry["gallery_end"] = int(statistics.median(x[2] for x in g[-per_min:]))
                    # Growth means something only at the same load: a node
                    # that took a dead node's cameras holds more streams.
                    entry["streams_at_10min"] = int(statistics.median(x[4] for x in g[:per_min]))
                    entry["streams_end"] = int(statistics.median(x[4] for x in g[-per_min:]))
                    # The allocator's books: what the program holds (less
                    # SQLite's share) grows with a leak; what the allocator
                    # keeps free grows with fragmentation.
                    hu_ref = statistics.median(x[5] for x in g[:per_min]) / 2**20
                    hu_tail = statistics.median(x[5] for x in g[-per_min:]) / 2**20
                    if hu_ref:
                        hf_ref = statistics.median(x[6] for x in g[:per_min]) / 2**20
                        hf_tail = statistics.median(x[6] for x in g[-per_min:]) / 2**20
                        entry["heap_in_use_mb_at_10min"] = round(hu_ref, 1)
                        entry["heap_in_use_mb_end"] = round(hu_tail, 1)
                        entry["heap_free_mb_at_10min"] = round(hf_ref, 1)
                        entry["heap_free_mb_end"] = round(hf_tail, 1)
                        sq_mb = (sq_ref / 1024, sq_tail / 1024)
                        entry["heap_in_use_less_sqlite_growth"] = round(
                            (hu_tail - sq_mb[1]) / max(hu_ref - sq_mb[0], 1e-9) - 1, 4)
            # CPU cores used on average after the settling time (at the same
            # load, more CPU per result is what makes latency grow).
            c = [(t, sec) for t, l, sec in p.cpu if l == life and t - t_start >= args.settle]
            if len(c) >= 2 and c[-1][0] > c[0][0]:
                entry["cpu_cores"] = round((c[-1][1] - c[0][1]) / (c[-1][0] - c[0][0]), 3)
            # One point a minute, for a plot of RSS over the process's life.
            entry["series_mb"] = [[round(t / 60, 1), round(kb / 1024, 1)] for t, kb in s[::per_min]]
            rss.append(entry)
    records = records_check(out / "global.db", {e.role: out / f"{e.role}.db" for e in edges})
    return {
        "command": " ".join(sys.argv),
        "minutes": args.minutes, "nodes": args.nodes, "cameras": args.cameras,
        "settle_min": args.settle / 60,
        "detection_interval": args.detection_interval, "events": events,
        "latency_windows": windows, "rss": rss,
        "records": records,
    }


def records_check(global_db: Path, node_dbs: dict[str, Path]) -> dict:
    """Every record key (node, seq) in each node's own database must be in the
    global database with the same content ("lost" / "differ"), and no sighting
    may be stored twice under two keys ("duplicated" counts both)."""
    lost, mismatched, per_node = 0, 0, {}
    global_keys = node_keys(global_db)
    for role, db in node_dbs.items():
        mine = {k: v for k, v in node_keys(db).items() if k[1] == role}
        missing = [k for k in mine if k not in global_keys]
        differ = [k for k in mine if k in global_keys and global_keys[k] != mine[k]]
        lost += len(missing)
        mismatched += len(differ)
        per_node[role] = {"records": len(mine), "lost": len(missing), "differ": len(differ),
                          "examples": [list(k) for k in (missing + differ)[:5]]}
    con = sqlite3.connect(f"file:{global_db}?mode=ro", uri=True)
    try:
        dup_sightings = con.execute(
            "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM sightings "
            "GROUP BY node_id, camera_id, track_id, first_ms HAVING n > 1)"
        ).fetchone()[0]
    finally:
        con.close()
    return {"lost": lost, "duplicated": dup_sightings + mismatched, "per_node": per_node}


def print_report(r: dict) -> None:
    print(f"\nsoak: {r['minutes']:.0f} min, {r['nodes']} nodes, {r['cameras']} cameras, "
          f"{len(r['events'])} fault rounds (a camera and a node SIGKILLed each)")
    print("\n| window (min) | results | p50 ms | p99 ms | over 250 ms | per node: results, p99 ms |\n| --- | --- | --- | --- | --- | --- |")
    for w in r["latency_windows"]:
        nodes = "; ".join(f"{k} {v['results']}, {v['p99_ms']}" for k, v in w.get("nodes", {}).items())
        over = "-" if w.get("over_250ms") is None else f"{100 * w['over_250ms']:.2f} %"
        print(f"| {w['from_min']:.0f}-{w['to_min']:.0f} | {w['results']} | {w['p50_ms']} | {w['p99_ms']} | {over} | {nodes} |")
    m = f"min {r.get('settle_min', 10):g}"
    print(f"\n| process (life) | from min | minutes | RSS MB at its {m} | RSS MB end | max "
          f"| growth after {m} | SQLite MB {m} / end | growth less SQLite | gallery {m} / end "
          f"| streams {m} / end | CPU cores after {m} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    pct = lambda v: "n/a" if v is None else f"{v * 100:+.1f} %"
    for e in r["rss"]:
        g = f"n/a (lived < {m} + 1)" if e["growth_after_10min"] is None else pct(e["growth_after_10min"])
        sq = f"{e['sqlite_mb_at_10min']} / {e['sqlite_mb_end']}" if "sqlite_mb_end" in e else "n/a"
        gal = f"{e['gallery_at_10min']} / {e['gallery_end']}" if e.get("gallery_end") else "-"
        up = f"{e['streams_at_10min']} / {e['streams_end']}" if e.get("streams_end") else "-"
        print(f"| {e['role']} ({e['life']}) | {e['from_min']} | {e['minutes']} | {e['rss_mb_at_10min']} | "
              f"{e['rss_mb_end']} | {e['rss_mb_max']} | {g} | {sq} | {pct(e.get('growth_less_sqlite'))} | {gal} | {up} | {e.get('cpu_cores', '-')} |")
    for e in r["rss"]:
        if "anon_mb_end" in e:
            print(f"{e['role']} ({e['life']}): anonymous RSS {e['anon_mb_at_10min']} -> {e['anon_mb_end']} MB "
                  f"({pct(e['anon_growth_after_10min'])}; the rest is mapped files)")
    for e in r["rss"]:
        if "heap_in_use_mb_end" in e:
            print(f"{e['role']} ({e['life']}): heap in use {e['heap_in_use_mb_at_10min']} -> "
                  f"{e['heap_in_use_mb_end']} MB (less SQLite {pct(e['heap_in_use_less_sqlite_growth'])}), "
                  f"free in the allocator {e['heap_free_mb_at_10min']} -> {e['heap_free_mb_end']} MB")
    for e in r["rss"]:
        if "growth_less_caches" in e:
            print(f"{e['role']} ({e['life']}): merge window {e['merge_window_mb_at_10min']} -> "
                  f"{e['merge_window_mb_end']} MB; growth less SQLite and merge window "
                  f"{pct(e['growth_less_caches'])}")
    rec = r["records"]
    print(f"\nrecords: lost {rec['lost']}, duplicated or changed {rec['duplicated']}")
    for node, v in rec["per_node"].items():
        print(f"  {node}: {v['records']} records in its database; lost {v['lost']}, differ {v['differ']} "
              f"{v['examples'] if v['examples'] else ''}")


if __name__ == "__main__":
    sys.exit(main())
