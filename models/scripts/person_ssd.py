"""The person SSD (issue 14): the batched raw SSD-MobileNet-V2 reduced to what
Vidar reads from it, in a form ONNX Runtime runs faster. Reproducible:

    python models/scripts/person_ssd.py fp32 SRC DST   # make models (recipe ssd-person): DST from the batched raw SSD
    python models/scripts/person_ssd.py int8 SRC DST   # make models (recipe ssd-person-int8): DST from the fp32 person SSD
    python models/scripts/person_ssd.py check FULL PERSON [FRAMES]   # the person outputs of both, compared

(`.cache/venv/bin/python`, made by deploy/setup.sh, has every package needed.)

Three rewrites, none of which changes a person score or a box:

1. **Person head only.** The class predictors (six 1x1 convolutions, 17.5 %
   of the network's multiply-adds) compute 91 COCO class logits per anchor;
   Vidar reads only the person's, and the scores are per-class sigmoids, so
   the other 89 cannot change it. Their weights are cut to background and
   person: the score output is [N, 1917, 2] with the person at index 1, as
   before.
2. **Space to depth.** The first convolution (3x3, stride 2, 3 input
   channels, padded below and right) is 13 % of the int8 network's time on
   one core: with 3 input channels ONNX Runtime's kernels gather 27 bytes per
   output pixel. The input is taken as 2x2 pixel blocks instead, [N, 150, 150,
   12], each block's pixels in (row, column, channel) order (TensorFlow's
   `space_to_depth`), and the convolution becomes 2x2, stride 1, over 12
   channels: the same products, with zero weights where the 2x2 blocks reach
   past the 3x3 kernel. The manifest calls this input layout `nhwc-s2d2`; the
   detector writes its input that way (`vidar_models::image::space_to_depth`).
3. **The int8 input as it is** (int8 only). The graph began with Cast, Sub
   128, quantise (scale 1, zero point 128), Mul by (about) 1/128, quantise
   (scale 1/128, zero point 128): on uint8 pixels the two quantisations give
   back the pixel itself. That chain is replaced by one DequantizeLinear
   (1/128, 128) of the input; `int8` first runs all 256 pixel values through
   the chain in float32 and refuses to fold unless each comes back.

The int8 model is quantised from the fp32 person SSD with the calibration
ranges kept in models/ssd_int8_calibration.json (the tensors they name keep
their names through 1 and 2, and a per-channel weight scale is the largest
magnitude of the channel, which the zero weights of 2 do not change), so its
integer arithmetic is the int8 raw SSD's. In both, the first convolution's
weights are stored as uint8 (`int8.exact_first_conv`), so that layer is
summed exactly on every x86 CPU: ONNX Runtime's u8 x s8 kernels on CPUs
without VNNI saturate 16-bit pair sums there, and did so differently for the
3x3 and the 2x2-block layouts. `check` compares the person scores
and boxes of a full model and its person model on vtest.avi frames: equal to
the last bit on ONNX Runtime's CPU provider (docs/benchmarks.md, "The person
SSD").
"""
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as oh
from onnx import numpy_helper as nh

CLASSES = 91
KEEP = (0, 1)  # background, person
BLOCK = 2
CALIBRATION = Path(__file__).resolve().parents[1] / "ssd_int8_calibration.json"


def _index(g):
    init = {i.name: i for i in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return init, consumers


def _set(init, name, arr):
    init[name].CopyFrom(nh.from_array(np.ascontiguousarray(arr), name))


def person_head(m):
    """Cuts every class predictor to the KEEP classes of each anchor."""
    g = m.graph
    init, consumers = _index(g)
    shapes, heads = set(), 0
    for n in g.node:
        if n.op_type != "Conv" or init[n.input[1]].dims[0] % CLASSES:
            continue
        w, b = nh.to_array(init[n.input[1]]), nh.to_array(init[n.input[2]])
        keep = [a * CLASSES + k for a in range(w.shape[0] // CLASSES) for k in KEEP]
        _set(init, n.input[1], w[keep])
        _set(init, n.input[2], b[keep])
        nxt = consumers[n.output[0]][0]
        reshape = nxt if nxt.op_type == "Reshape" else consumers[nxt.output[0]][0]
        if reshape.op_type != "Reshape":
            raise SystemExit(f"class predictor {n.name}: expected a Reshape after it, found {reshape.op_type}")
        shapes.add(reshape.input[1])
        heads += 1
    if heads != 6:
        raise SystemExit(f"expected the SSD's 6 class predictors, found {heads}")
    for s in shapes:
        shape = nh.to_array(init[s]).copy()
        if shape[-1] != CLASSES:
            raise SystemExit(f"reshape {s}: last dim {shape[-1]}, expected {CLASSES}")
        shape[-1] = len(KEEP)
        _set(init, s, shape)
    for o in g.output:
        d = o.type.tensor_type.shape.dim
        if d[-1].dim_value == CLASSES:
            d[-1].dim_value = len(KEEP)


def _first_conv(g):
    init, _ = _index(g)
    conv = next(n for n in g.node if n.op_type == "Conv")
    attrs = {a.name: a for a in conv.attribute}
    want = {"strides": [2, 2], "kernel_shape": [3, 3], "pads": [0, 0, 1, 1], "dilations": [1, 1]}
    for k, v in want.items():
        if list(attrs[k].ints) != v:
            raise SystemExit(f"first conv {conv.name}: {k} {list(attrs[k].ints)}, expected {v}")
    return conv, attrs, init


def space_to_depth(m):
    """The first convolution over 2x2 pixel blocks; the input becomes [N, H/2, W/2, 12]."""
    g = m.graph
    conv, attrs, init = _first_conv(g)
    w = nh.to_array(init[conv.input[1]])  # [out, 3, 3, 3]
    out, c = w.shape[:2]
    w2 = np.zeros((out, BLOCK * BLOCK * c, 2, 2), w.dtype)
    for dy in range(BLOCK):
        for dx in range(BLOCK):
            for bh in range(2):
                for bw in range(2):
                    ky, kx = BLOCK * bh + dy, BLOCK * bw + dx
                    if ky < 3 and kx < 3:
                        w2[:, (dy * BLOCK + dx) * c:(dy * BLOCK + dx + 1) * c, bh, bw] = w[:, :, ky, kx]
    _set(init, conv.input[1], w2)
    attrs["strides"].ints[:] = [1, 1]
    attrs["kernel_shape"].ints[:] = [2, 2]
    d = g.input[0].type.tensor_type.shape.dim
    if [x.dim_value for x in d[1:]] != [300, 300, 3]:
        raise SystemExit(f"input {g.input[0].name}: expected [N, 300, 300, 3]")
    d[1].dim_value, d[2].dim_value, d[3].dim_value = 150, 150, BLOCK * BLOCK * c


def fold_int8_input(m):
    """Replaces the int8 graph's Cast .. quantise chain before the first
    transpose with one DequantizeLinear of the uint8 input (exact: checked)."""
    g = m.graph
    init, consumers = _index(g)
    inp = g.input[0].name
    val = lambda name: nh.to_array(init[name])  # noqa: E731
    cast = consumers[inp][0]
    sub = consumers[cast.output[0]][0]
    q1 = consumers[sub.output[0]][0]
    dq1 = consumers[q1.output[0]][0]
    mul = consumers[dq1.output[0]][0]
    q2 = consumers[mul.output[0]][0]
    dq2 = consumers[q2.output[0]][0]
    transpose = consumers[dq2.output[0]][0]
    ops = [n.op_type for n in (cast, sub, q1, dq1, mul, q2, dq2, transpose)]
    if ops != ["Cast", "Sub", "QuantizeLinear", "DequantizeLinear", "Mul", "QuantizeLinear",
               "DequantizeLinear", "Transpose"]:
        raise SystemExit(f"input chain is {ops}, not the one this folds")
    mul_const = next(i for i in mul.input if i != dq1.output[0])
    mdq = next(n for n in g.node if n.output[0] == mul_const)
    mzp = val(mdq.input[2]).astype(np.float32) if len(mdq.input) > 2 else np.float32(0)
    multiplier = (val(mdq.input[0]).astype(np.float32) - mzp) * val(mdq.input[1])
    # Every uint8 pixel through the chain, in float32 as ONNX Runtime computes it.
    x = np.arange(256, dtype=np.float32)
    q1v = np.clip(np.rint((x - val(sub.input[1])) / val(q1.input[1])) + val(q1.input[2]), 0, 255)
    t2 = (q1v - val(q1.input[2]).astype(np.float32)) * val(q1.input[1]) * multiplier
    q2v = np.clip(np.rint(t2 / val(q2.input[1])) + val(q2.input[2]), 0, 255)
    exact = (np.array_equal(q2v, x) and float(val(q2.input[1])) == 2.0 ** -7
             and int(val(q2.input[2])) == 128)
    if not exact:
        raise SystemExit("the input's quantisation does not give back the pixel at scale 1/128, zero point 128: not folding")
    g.initializer.extend([nh.from_array(np.array(2.0 ** -7, np.float32), "input_scale"),
                          nh.from_array(np.array(128, np.uint8), "input_zero_point")])
    drop = {id(n) for n in (cast, sub, q1, dq1, mul, q2, dq2)}
    nodes = [n for n in g.node if id(n) not in drop]
    dq = oh.make_node("DequantizeLinear", [inp, "input_scale", "input_zero_point"], ["input_dequantized"],
                      name="input_dequantize")
    transpose.input[0] = "input_dequantized"
    del g.node[:]
    g.node.extend([dq] + nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _save(m, dst):
    onnx.checker.check_model(m)
    onnx.save(m, dst)
    print("written", dst)


def frames(n, step, start=3):
    import cv2
    video = os.environ.get("VIDAR_VTEST", "/usr/share/doc/opencv-doc/examples/data/vtest.avi")
    cap, out, i = cv2.VideoCapture(video), [], 0
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        if i >= start and (i - start) % step == 0:
            out.append(cv2.cvtColor(cv2.resize(f, (300, 300)), cv2.COLOR_BGR2RGB)[None].astype(np.uint8))
        i += 1
    return out


def to_blocks(x):
    """[N, H, W, C] -> [N, H/2, W/2, 4C], each 2x2 block's pixels in (row, column, channel) order."""
    n, h, w, c = x.shape
    return np.ascontiguousarray(
        x.reshape(n, h // BLOCK, BLOCK, w // BLOCK, BLOCK, c).transpose(0, 1, 3, 2, 4, 5).reshape(
            n, h // BLOCK, w // BLOCK, BLOCK * BLOCK * c))


def check(full, person, count):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    a = ort.InferenceSession(full, opts, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(person, opts, providers=["CPUExecutionProvider"])
    name = a.get_inputs()[0].name
    worst_score = worst_box = 0.0
    exact = "int8" in person
    xs = frames(count, 5)
    for x in xs:
        boxes_a, scores_a = a.run(None, {name: x})
        boxes_b, scores_b = b.run(None, {name: to_blocks(x)})
        worst_score = max(worst_score, float(np.abs(scores_a[..., 1] - scores_b[..., 1]).max()))
        worst_box = max(worst_box, float(np.abs(boxes_a - boxes_b).max()))
    print(f"{len(xs)} frames: largest person score difference {worst_score}, largest box difference {worst_box}")
    # int8: the same integer arithmetic, so equal to the bit. fp32: the 2x2
    # convolution adds the same products in another order.
    if (worst_score or worst_box) if exact else (worst_score > 1e-5 or worst_box > 1e-4):
        raise SystemExit("the person model differs")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "fp32":
        model = onnx.load(sys.argv[2])
        person_head(model)
        space_to_depth(model)
        _save(model, sys.argv[3])
    elif cmd == "int8":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import tempfile

        from int8 import build, exact_first_conv
        with tempfile.TemporaryDirectory() as tmp:
            build(sys.argv[2], f"{tmp}/q.onnx", CALIBRATION)
            model = onnx.load(f"{tmp}/q.onnx")
        fold_int8_input(model)
        exact_first_conv(model)
        _save(model, sys.argv[3])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 40)
    else:
        raise SystemExit(__doc__)
