"""What the int8 quantisers share (quantize_ssd_int8.py, quantize_reid_int8.py):
ONNX Runtime's static QDQ settings, calibration into a cache kept in the
repository, and the deterministic build from that cache."""
import tempfile

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
