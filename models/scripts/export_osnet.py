#!/usr/bin/env python3
"""Export a torchreid OSNet model to ONNX for Vidar's re-ID embedder, and print the manifest entries.

OSNet weights ship in no registry package, so this is for users who have them
(the torchreid model zoo, e.g. `osnet_x1_0_msmt17.pth`, or their own training).
Needs torch and torchreid (`pip install torch torchreid`, not part of Vidar's
pinned environment). The export takes the network in eval mode (feature
output, 512-d for osnet_x1_0), input RGB NCHW float [N, 3, 256, 128] with a
dynamic batch, ImageNet mean/std normalisation done by Vidar before the model.

Usage:
  export_osnet.py WEIGHTS.pth OUT_DIR [--arch osnet_x1_0] [--name osnet-x1-0]
Then append the printed TOML to models/manifest.toml (or to a manifest of your
own loaded with vidar_models::Manifest::from_path), copy the .onnx into
VIDAR_MODEL_DIR, and set the embedder's `model` to the printed name.
"""
import argparse
import hashlib
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("out_dir")
    parser.add_argument("--arch", default="osnet_x1_0")
    parser.add_argument("--name", default="osnet-x1-0")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch
    import torchreid
    from torchreid.utils import load_pretrained_weights

    model = torchreid.models.build_model(name=args.arch, num_classes=1000, pretrained=False)
    load_pretrained_weights(model, args.weights)
    model.eval()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    file = f"reid_{args.arch}.onnx"
    path = out_dir / file
    dummy = torch.randn(2, 3, 256, 128)
    torch.onnx.export(
        model, dummy, str(path), input_names=["input"], output_names=["embedding"],
        dynamic_axes={"input": {0: "N"}, "embedding": {0: "N"}}, opset_version=13,
    )
    with torch.no_grad():
        want = model(dummy).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": dummy.numpy()})[0]
    err = float(np.abs(got - want).max())
    if err > 1e-3:
        raise SystemExit(f"ONNX export differs from torch by {err}")
    dim = got.shape[1]
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    print(f"""# exported from {Path(args.weights).name} ({args.arch}); max abs diff vs torch {err:.1e}

[[file]]
file = "{file}"
sha256 = "{sha}"
size = {len(data)}
recipe = "user-export"

[[model]]
name = "{args.name}"
task = "embedding"
format = "embedding"
file = "{file}"
licence = "MIT (torchreid); check the licence of the weights you exported"
source = "torchreid {args.arch}, weights {Path(args.weights).name}, models/scripts/export_osnet.py"
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]
input_size = [256, 128]

[model.input]
name = "input"
dtype = "f32"
layout = "nchw"
shape = [-1, 3, 256, 128]

[[model.outputs]]
name = "embedding"
dtype = "f32"
shape = [-1, {dim}]""")


if __name__ == "__main__":
    main()
