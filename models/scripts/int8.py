"""What the int8 quantisers share (quantize_ssd_int8.py, quantize_reid_int8.py):
ONNX Runtime's static QDQ settings, calibration into a cache kept in the
repository, and the deterministic build from that cache."""
import tempfile

import numpy as np
from onnx import numpy_helper as nh

import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

# Per-channel int8 weights, uint8 activations, QDQ nodes (what ONNX Runtime's
# CPU kernels and TensorRT's explicit quantisation both take).
SETTINGS = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, per_channel=True)


class _Reader(CalibrationDataReader):
    def __init__(self, input_name, xs):
        self.it = iter([{input_name: x} for x in xs])

    def get_next(self):
        return next(self.it, None)


def calibrate(src, input_name, xs, cache):
    """MinMax ranges of every activation of `src` over the inputs `xs`,
    written to `cache` (a Path; replaced)."""
    if cache.exists():
        cache.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        quantize_static(src, f"{tmp}/q.onnx", _Reader(input_name, xs), calibration_cache_path=cache, **SETTINGS)


def build(src, dst, cache):
    """The QDQ model of `src` at `dst`, from the ranges in `cache` only."""
    quantize_static(src, dst, None, calibration_cache_path=cache, **SETTINGS)


def session(path):
    """A one-thread CPU session (for the A/B speed rounds)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def exact_first_conv(m):
    """Stores the first convolution's weights as uint8 with zero point 128
    instead of int8 with zero point 0: the same weights to the bit, so the
    model computes the same numbers, but ONNX Runtime runs the layer on its
    u8 x u8 kernels. Its u8 x s8 kernels on x86 CPUs without VNNI (AVX2)
    add pairs of products in 16 bits, which saturates where full-range
    pixels meet large weights: on such a CPU the first layer's output, and so
    every score, depended on how the kernel paired the products (person
    scores up to 0.31 apart between two layouts of one convolution, and
    both further from float than the exact sum). Later layers saturate on
    such CPUs too, but the same way in every model that shares them; making
    them all exact as well costs about as much as float (docs/benchmarks.md,
    "int8 on CPUs without VNNI"), so only this layer is. `m` is changed in
    place (an onnx ModelProto); the layer must be a QDQ convolution whose
    weights are per-channel int8 with zero points 0."""
    g = m.graph
    init = {i.name: i for i in g.initializer}
    made_by = {o: n for n in g.node for o in n.output}
    conv = next(n for n in g.node if n.op_type == "Conv")
    dq = made_by.get(conv.input[1])
    if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3:
        raise SystemExit(f"first conv {conv.name}: its weights are not dequantised int8")
    w, zp = nh.to_array(init[dq.input[0]]), nh.to_array(init[dq.input[2]])
    if w.dtype != np.int8 or zp.dtype != np.int8 or zp.any():
        raise SystemExit(f"first conv {conv.name}: weights {w.dtype}, zero points {zp.dtype} {zp.any()}: not symmetric int8")
    for name, arr in [(dq.input[0], (w.astype(np.int16) + 128).astype(np.uint8)),
                      (dq.input[2], np.full(zp.shape, 128, np.uint8))]:
        init[name].CopyFrom(nh.from_array(arr, name))
