#!/usr/bin/env python3
"""Derive the dynamic-batch SSD-MobileNet-V2 raw model from the batch-1 raw model.

tf2onnx writes the TF-Lite graph with a fixed batch of 1: the input is
[1,300,300,3] and the box-predictor Reshapes carry a literal 1 as their first
dimension. This script renames the batch dimension to the symbol `N` on the
input and outputs and rewrites those Reshape shapes so that the batch is
carried through (0 = copy the input's dimension, -1 for the one Reshape whose
input is not batch-major). Nothing else in the graph changes; the output is
checked against the batch-1 model on random input (same values, batch of 3).

Usage: make_batched_ssd.py RAW_IN.onnx OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def make_batched(src: str, dst: str) -> None:
    model = onnx.load(src)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    rewritten = set()
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_name = node.input[1]
        if shape_name in rewritten:
            continue
        init = inits.get(shape_name)
        if init is None:
            raise SystemExit(f"Reshape {node.name}: shape {shape_name} is not a constant")
        shape = numpy_helper.to_array(init).copy()
        if shape[0] != 1:
            raise SystemExit(f"Reshape {node.name}: unexpected leading dim {shape}")
        # [1, C, 1, 1] turns an NHWC 1x1 map into NCHW: C is known, batch is -1.
        # Every other Reshape keeps the batch in front: 0 copies it.
        shape[0] = -1 if shape.tolist() == [1, 128, 1, 1] else 0
        if (shape == -1).sum() > 1:
            raise SystemExit(f"Reshape {node.name}: two inferred dims in {shape}")
        init.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), shape_name))
        rewritten.add(shape_name)
    for value in list(graph.input) + list(graph.output):
        dim0 = value.type.tensor_type.shape.dim[0]
        dim0.Clear()
        dim0.dim_param = "N"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, dst)


def check(src: str, dst: str) -> None:
    import onnxruntime as ort

    one = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    many = ort.InferenceSession(dst, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    batch = rng.integers(0, 256, size=(3, 300, 300, 3), dtype=np.uint8)
    got = many.run(None, {"normalized_input_image_tensor": batch})
    for i in range(batch.shape[0]):
        want = one.run(None, {"normalized_input_image_tensor": batch[i : i + 1]})
        for g, w in zip(got, want):
            err = float(np.abs(g[i : i + 1] - w).max())
            if err > 1e-4:
                raise SystemExit(f"batched model differs from batch-1 model by {err}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    make_batched(sys.argv[1], sys.argv[2])
    check(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]} (dynamic batch, checked against {sys.argv[1]})")
