#!/usr/bin/env python3
"""Vidar tracker vs peer Python trackers on degraded TUD ground truth.

For each sequence (TUD-Campus, TUD-Stadtmitte), difficulty (easy, medium,
hard, harsh) and seed, `vidar-track-eval degrade` makes the detections (the seeded
model is documented in tracker/src/degrade.rs). Every tracker runs on the
same detection files; results are scored with motmetrics 1.4.0 (MOTA, IDF1,
ID switches, pooled over sequences and seeds per level). Frames/s counts only
the time inside each tracker's per-frame update call, with inputs prepared
beforehand, so every tracker does the same work.

Peers get a small grid of their main parameters (score threshold, match
threshold) and the best configuration per level (by MOTA + IDF1) is reported:
tuned on the test data, in the peers' favour. Ours runs with its defaults.

The script also cross-checks the crate's own scorer (`vidar-track-eval
score`, used by the Rust integration test) against motmetrics on every result
file it produces, and exits non-zero if they disagree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# motmetrics 1.4.0 calls np.asfarray, removed in NumPy 2.0.
if not hasattr(np, "asfarray"):
    np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # type: ignore[attr-defined]

import motmetrics as mm  # noqa: E402

SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
# Both TUD sequences are 640x480; ours is told the camera resolution, as the
# edge node always knows it (the peers have no such option).
FRAME_SIZE = "640x480"
LEVELS = ("easy", "medium", "hard", "harsh")
METRICS = ["mota", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects"]


def load_frames(det_file: Path) -> list[tuple[int, np.ndarray]]:
    """Detections per frame 1..last as arrays of [x, y, w, h, score]."""
    rows = np.loadtxt(det_file, delimiter=",", ndmin=2)
    last = int(rows[:, 0].max()) if len(rows) else 0
    frames = []
    for f in range(1, last + 1):
        sel = rows[rows[:, 0] == f]
        frames.append((f, sel[:, [2, 3, 4, 5, 6]].astype(np.float64)))
    return frames


def write_results(path: Path, rows: list[tuple[int, int, float, float, float, float]]) -> None:
    with path.open("w") as fh:
        for f, i, x, y, w, h in rows:
            fh.write(f"{f},{i},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,-1,-1,-1\n")


# --------------------------------------------------------------------------
# Peers. Each factory returns (prepare, update): prepare(frames) builds the
# tracker's own input objects outside the timed region; update(tracker, item)
# runs one frame and returns [(id, x, y, w, h)].


@dataclass
class Peer:
    name: str
    version: str
    grid: list[dict]
    run: callable  # (frames, params) -> (rows, seconds)


def run_norfair(frames, p):
    import norfair

    tracker = norfair.Tracker(
        distance_function="iou",
        distance_threshold=p["distance_threshold"],
        hit_counter_max=p["hit_counter_max"],
        initialization_delay=p["initialization_delay"],
    )
    inputs = []
    for _, d in frames:
        d = d[d[:, 4] >= p["score"]]
        inputs.append(
            [
                norfair.Detection(
                    points=np.array([[x, y], [x + w, y + h]]), scores=np.array([s, s])
                )
                for x, y, w, h, s in d
            ]
        )
    rows, busy = [], 0.0
    for (f, _), dets in zip(frames, inputs):
        t0 = time.perf_counter()
        objs = tracker.update(detections=dets)
        busy += time.perf_counter() - t0
        for o in objs:
            (x1, y1), (x2, y2) = o.estimate
            rows.append((f, o.id, x1, y1, x2 - x1, y2 - y1))
    return rows, busy


def run_motpy(frames, p):
    from motpy import Detection, MultiObjectTracker

    tracker = MultiObjectTracker(
        dt=1 / 25,
        tracker_kwargs={"max_staleness": p["max_staleness"]},
        matching_fn_kwargs={"min_iou": p["min_iou"]},
        active_tracks_kwargs={"min_steps_alive": p["min_steps_alive"], "max_staleness": 1},
    )
    inputs = []
    for _, d in frames:
        d = d[d[:, 4] >= p["score"]]
        inputs.append([Detection(box=np.array([x, y, x + w, y + h]), score=s) for x, y, w, h, s in d])
    ids: dict[str, int] = {}
    rows, busy = [], 0.0
    for (f, _), dets in zip(frames, inputs):
        t0 = time.perf_counter()
        tracks = tracker.step(detections=dets)
        busy += time.perf_counter() - t0
        for t in tracks:
            i = ids.setdefault(t.id, len(ids) + 1)
            x1, y1, x2, y2 = t.box
            rows.append((f, i, x1, y1, x2 - x1, y2 - y1))
    return rows, busy


def run_bytetrack(frames, p):
    import supervision as sv

    tracker = sv.ByteTrack(
        track_activation_threshold=p["activation"],
        lost_track_buffer=30,
        minimum_matching_threshold=p["matching"],
        frame_rate=25,
        minimum_consecutive_frames=p["consecutive"],
    )
    inputs = []
    for _, d in frames:
        xyxy = np.column_stack([d[:, 0], d[:, 1], d[:, 0] + d[:, 2], d[:, 1] + d[:, 3]]) if len(d) else np.zeros((0, 4))
        inputs.append(
            sv.Detections(xyxy=xyxy, confidence=d[:, 4].copy(), class_id=np.zeros(len(d), dtype=int))
        )
    rows, busy = [], 0.0
    for (f, _), dets in zip(frames, inputs):
        t0 = time.perf_counter()
        out = tracker.update_with_detections(dets)
        busy += time.perf_counter() - t0
        for (x1, y1, x2, y2), i in zip(out.xyxy, out.tracker_id):
            rows.append((f, int(i), x1, y1, x2 - x1, y2 - y1))
    return rows, busy


def grid(**axes) -> list[dict]:
    keys = list(axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(axes[k] for k in keys))]


def available_peers() -> list[Peer]:
    from importlib.metadata import PackageNotFoundError, version

    peers = []
    candidates = [
        ("norfair", "norfair", run_norfair,
         grid(score=[0.3, 0.5], distance_threshold=[0.7, 0.8], hit_counter_max=[15], initialization_delay=[2])),
        ("motpy", "motpy", run_motpy,
         grid(score=[0.3, 0.5], min_iou=[0.1, 0.25], max_staleness=[12], min_steps_alive=[2])),
        ("ByteTrack (supervision)", "supervision", run_bytetrack,
         grid(activation=[0.4, 0.5], matching=[0.8], consecutive=[1, 2])),
    ]
    for name, dist, fn, g in candidates:
        try:
            v = version(dist)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                __import__(dist)
        except (PackageNotFoundError, ImportError) as exc:  # visible, not silent
            print(f"WARNING: peer {name} unavailable ({exc}); it is left out of the table", file=sys.stderr)
            continue
        peers.append(Peer(name, v, g, fn))
    return peers


# --------------------------------------------------------------------------


def mm_load(path: Path, gt: bool):
    return mm.io.loadtxt(str(path), fmt="mot15-2D", min_confidence=1 if gt else -1)


def accumulate(gt_file: Path, res_file: Path):
    return mm.utils.compare_to_groundtruth(mm_load(gt_file, True), mm_load(res_file, False), "iou", distth=0.5)


def cross_check(binary: Path, gt_file: Path, res_file: Path, mh) -> None:
    ours = json.loads(
        subprocess.run(
            [str(binary), "score", "--gt", str(gt_file), "--results", str(res_file)],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    ref = mh.compute(accumulate(gt_file, res_file), metrics=METRICS, name="x").iloc[0]
    bad = []
    for k in ("num_switches", "num_false_positives", "num_misses", "num_objects"):
        if int(ours[k]) != int(ref[k]):
            bad.append(f"{k}: ours {ours[k]} motmetrics {ref[k]}")
    for k in ("mota", "idf1"):
        if abs(ours[k] - float(ref[k])) > 1e-6:
            bad.append(f"{k}: ours {ours[k]} motmetrics {float(ref[k])}")
    if bad:
        raise SystemExit(f"scorer disagrees with motmetrics on {res_file}: " + "; ".join(bad))


def run_ours(binary: Path, det: Path, res: Path, repeat: int, config: Path | None = None,
             frame_size: str | None = FRAME_SIZE) -> float:
    cmd = [str(binary), "track", "--detections", str(det), "--out", str(res), "--repeat", str(repeat)]
    if frame_size:
        cmd += ["--frame-size", frame_size]
    if config:
        cmd += ["--config", str(config)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["seconds"])


# Ablation of our design choices: each row changes one thing from the defaults.
ABLATIONS = {
    "defaults": ("", FRAME_SIZE),
    "no frame size (exits not detected)": ("", None),
    "report_lost_frames = 0 (matched tracks only)": ("report_lost_frames = 0\n", FRAME_SIZE),
    "report_lost_hit_ratio = 100 (every lost track reported 8 frames)": ("report_lost_hit_ratio = 100.0\n", FRAME_SIZE),
    "SORT's noise (position and measurement 1/20)":
        ("[motion]\nstd_weight_position = 0.05\nstd_weight_measurement = 0.05\n", FRAME_SIZE),
    "measurement noise 1/20": ("[motion]\nstd_weight_measurement = 0.05\n", FRAME_SIZE),
    "position noise 1/20": ("[motion]\nstd_weight_position = 0.05\n", FRAME_SIZE),
    "previous defaults (SORT's noise, every lost track reported 8 frames)":
        ("report_lost_hit_ratio = 100.0\n[motion]\nstd_weight_position = 0.05\nstd_weight_measurement = 0.05\n",
         FRAME_SIZE),
    "no second stage (low-score detections ignored)": ("low_score_threshold = 0.5\n", FRAME_SIZE),
    "no score fusion": ("fuse_score = false\n", FRAME_SIZE),
    "Mahalanobis gate 0.95 (9.49)": ("[motion]\ngating_threshold = 9.4877\n", FRAME_SIZE),
    "no Mahalanobis gate": ("[motion]\ngating_threshold = 1e12\n", FRAME_SIZE),
    "min_hits = 3": ("min_hits = 3\n", FRAME_SIZE),
}


def ablation(args, mh, work: Path) -> str:
    lines = ["| variant | " + " | ".join(f"{lv} MOTA | {lv} IDF1 | {lv} IDsw" for lv in args.levels) + " |",
             "|---|" + "---:|" * (3 * len(args.levels))]
    for name, (toml_text, frame_size) in ABLATIONS.items():
        cfg = work / f"ablation-{abs(hash(name))}.toml"
        cfg.write_text(toml_text)
        cells = []
        for level in args.levels:
            accs, names = [], []
            for seq in SEQUENCES:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    det = work / f"{seq}-{level}-{seed}-det.txt"
                    if not det.exists():
                        subprocess.run([str(args.bin), "degrade", "--gt", str(args.data / seq / "gt.txt"),
                                        "--level", level, "--seed", str(seed), "--out", str(det)], check=True)
                    res = work / f"{seq}-{level}-{seed}-ablation.txt"
                    run_ours(args.bin, det, res, 1, cfg, frame_size)
                    accs.append(accumulate(args.data / seq / "gt.txt", res))
                    names.append(f"{seq}-{seed}")
            o = mh.compute_many(accs, names=names, metrics=METRICS, generate_overall=True).loc["OVERALL"]
            cells.append(f"{float(o['mota']):.3f} | {float(o['idf1']):.3f} | {int(o['num_switches'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TUNING_NOTE = """What was tuned on what: each peer's row is the best of its grid per level,
chosen on these very seeds (in the peers' favour). Ours is one default config
for every level, no per-level tuning; but its defaults (measurement noise 1/10
of the box size, position noise 1/40, lost tracks reported for at most half as
many frames as they were matched, `report_lost_frames` 8, gate chi-square
0.999) were chosen among about 20 candidates by looking at seeds 1-5 (this
table) and 6-10 of all four levels with the crate's scorer, so this table is
not a hold-out for ours either. Seeds 11-15 were never looked at before the
choice was fixed: ours and the peers' best of grid on them are in
tracker/BENCHMARKS.md. The degradation is synthetic, the sequences small
(250 frames, 5-10 people per frame)."""


def header(args) -> str:
    """First lines of a generated file: how to regenerate it."""
    cmd = " ".join(["tracker/eval/compare.py"] + [str(a) for a in sys.argv[1:]])
    seeds = f"{args.first_seed}-{args.first_seed + args.seeds - 1}"
    return (
        f"Generated by `tracker/eval/run.sh --seeds {args.seeds}` (this file: `{cmd}`); "
        f"seeds {seeds} x TUD-Campus and TUD-Stadtmitte per level, pooled, scored by motmetrics 1.4.0.\n\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", type=Path, required=True, help="path to vidar-track-eval (release build)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "data")
    ap.add_argument("--seeds", type=int, default=5, help="N seeds per sequence and level")
    ap.add_argument("--first-seed", type=int, default=1,
                    help="seeds run from this one (default 1: seeds 1..N); e.g. 6 for held-out seeds 6..10")
    ap.add_argument("--out", type=Path, help="write the markdown table here")
    ap.add_argument("--work", type=Path, help="keep detection/result files here")
    ap.add_argument("--timing-repeats", type=int, default=5,
                    help="peers' speed: fastest of this many runs of the chosen configuration")
    ap.add_argument("--levels", default=",".join(LEVELS),
                    help="comma-separated subset of " + ", ".join(LEVELS))
    ap.add_argument("--ablation", action="store_true",
                    help="only run our tracker with one design choice changed at a time")
    args = ap.parse_args()
    args.levels = [lv for lv in args.levels.split(",") if lv]
    unknown = [lv for lv in args.levels if lv not in LEVELS]
    if unknown or not args.levels:
        ap.error(f"unknown level(s) {unknown}: expected a subset of {', '.join(LEVELS)}")

    mh = mm.metrics.create()
    work = args.work or Path(tempfile.mkdtemp(prefix="vidar-track-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.ablation:
        text = ablation(args, mh, work)
        print(text)
        if args.out:
            args.out.write_text(header(args) + "Ours only, one change at a time from the defaults.\n\n" + text + "\n")
        return 0
    peers = available_peers()

    # Sanity check of the scorer on motmetrics' own reference outputs, if present.
    for seq in SEQUENCES:
        ref_test = Path(mm.__file__).parent / "data" / seq / "test.txt"
        if ref_test.exists():
            cross_check(args.bin, args.data / seq / "gt.txt", ref_test, mh)

    table = []
    checks = 0
    for level in args.levels:
        runs = [(seq, seed) for seq in SEQUENCES for seed in range(args.first_seed, args.first_seed + args.seeds)]
        # Every tracker (ours, and each peer configuration) -> accs, frames, seconds
        results: dict[str, dict] = {}

        def record(key, seq, seed, res_file, seconds, frames):
            r = results.setdefault(key, {"accs": [], "names": [], "frames": 0, "seconds": 0.0})
            r["accs"].append(accumulate(args.data / seq / "gt.txt", res_file))
            r["names"].append(f"{seq}-{seed}")
            r["frames"] += frames
            r["seconds"] += seconds

        for seq, seed in runs:
            gt_file = args.data / seq / "gt.txt"
            det = work / f"{seq}-{level}-{seed}-det.txt"
            subprocess.run(
                [str(args.bin), "degrade", "--gt", str(gt_file), "--level", level, "--seed", str(seed), "--out", str(det)],
                check=True,
            )
            frames = load_frames(det)
            res = work / f"{seq}-{level}-{seed}-vidar.txt"
            secs = run_ours(args.bin, det, res, repeat=50)
            cross_check(args.bin, gt_file, res, mh)
            checks += 1
            record(("Vidar (ours)", ""), seq, seed, res, secs, len(frames))
            for peer in peers:
                for k, params in enumerate(peer.grid):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        rows, secs = peer.run(frames, params)
                    pres = work / f"{seq}-{level}-{seed}-{peer.name.split()[0].lower()}-{k}.txt"
                    write_results(pres, rows)
                    if k == 0:
                        cross_check(args.bin, gt_file, pres, mh)
                        checks += 1
                    record((peer.name, json.dumps(params, sort_keys=True)), seq, seed, pres, secs, len(frames))

        best: dict[str, tuple] = {}
        for (name, params), r in results.items():
            summary = mh.compute_many(r["accs"], names=r["names"], metrics=METRICS, generate_overall=True)
            overall = summary.loc["OVERALL"]
            fps = r["frames"] / r["seconds"] if r["seconds"] > 0 else float("inf")
            score = float(overall["mota"]) + float(overall["idf1"])
            if name not in best or score > best[name][0]:
                best[name] = (score, overall, fps, params)
        # Speed: re-time each peer's chosen configuration, fastest of
        # --timing-repeats runs per sequence (ours is the fastest of 50).
        for peer in peers:
            if peer.name not in best:
                continue
            params = json.loads(best[peer.name][3])
            frames_total, seconds_total = 0, 0.0
            for seq, seed in runs:
                frames = load_frames(work / f"{seq}-{level}-{seed}-det.txt")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    secs = min(peer.run(frames, params)[1] for _ in range(args.timing_repeats))
                frames_total += len(frames)
                seconds_total += secs
            sc, overall, _, p = best[peer.name]
            best[peer.name] = (sc, overall, frames_total / seconds_total, p)
        for name, (_, overall, fps, params) in best.items():
            table.append((level, name, overall, fps, params))

    versions = {p.name: p.version for p in peers}
    lines = [
        "| level | tracker | MOTA | IDF1 | IDsw | FP | FN | frames/s | config |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for level, name, o, fps, params in table:
        label = f"{name} {versions[name]}" if name in versions else name
        lines.append(
            f"| {level} | {label} | {float(o['mota']):.3f} | {float(o['idf1']):.3f} | {int(o['num_switches'])} "
            f"| {int(o['num_false_positives'])} | {int(o['num_misses'])} | {fps:,.0f} | {params or 'defaults'} |"
        )
    text = "\n".join(lines)
    print(text)
    print(f"\nscorer cross-check: {checks + len(SEQUENCES)} result files, Rust scorer == motmetrics", file=sys.stderr)

    # Goal check: ours against the best peer per level (not enforced here;
    # tracker/tests/tud.rs holds the floors).
    goals = []
    for level in args.levels:
        rows = [(n, o, f) for lv, n, o, f, _ in table if lv == level]
        ours = next((o, f) for n, o, f in rows if n == "Vidar (ours)")
        others = [(n, o, f) for n, o, f in rows if n != "Vidar (ours)"]
        if not others:
            continue
        best_mota = max(float(o["mota"]) for _, o, _ in others)
        best_idf1 = max(float(o["idf1"]) for _, o, _ in others)
        fastest = max(f for _, _, f in others)
        goals.append(
            f"- {level}: MOTA {float(ours[0]['mota']):.3f} vs best peer {best_mota:.3f}; "
            f"IDF1 {float(ours[0]['idf1']):.3f} vs {best_idf1:.3f}; "
            f"speed {ours[1] / fastest:,.0f}x the fastest peer"
        )
    print("\n".join(goals), file=sys.stderr)
    if args.out:
        args.out.write_text(
            header(args) + text + "\n\nOurs against the best peer of each column:\n\n"
            + "\n".join(goals) + "\n\n" + TUNING_NOTE + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
