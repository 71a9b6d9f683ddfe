"""A float CNN exported from PyTorch, quantized by onnxruntime's quantize_static in QOperator and QDQ
form, runs in Sieve with onnxruntime's integers exactly."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from torch import nn

from sieve.arch import load_arch
from sieve.codegen import generate
from sieve.frontend import load_onnx
from sieve.ir import verify
from sieve.scheduler import schedule
from sieve.simulator import run
from tests.onnx.ort_models import IR_VERSION, ort_run
from tests.helpers import skip_unless_ort_exact


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.c2(torch.relu(self.b1(self.c1(x)))) + x)


class Net(nn.Module):
    """Conv-BN-ReLU stem, max pool, a residual block, a depthwise conv, global pooling, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.block = Block(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.dw(self.block(self.stem(x))))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(x.view(x.size(0), -1))


class _Reader(CalibrationDataReader):
    def __init__(self, batches):
        self.it = iter([{"x": b} for b in batches])

    def get_next(self):
        return next(self.it, None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch")
    torch.manual_seed(0)
    net = Net().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 32, 32), d / "float.onnx", dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, 32, 32)).astype(np.float32) for _ in range(8)]
    out = {"float": d / "float.onnx", "net": net}
    for fmt in ("QOperator", "QDQ"):
        for act in ("QUInt8", "QInt8"):
            path = d / f"{fmt}_{act}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_static(str(d / "float.onnx"), str(path), _Reader(calib),
                                quant_format=getattr(QuantFormat, fmt), activation_type=getattr(QuantType, act),
                                weight_type=QuantType.QInt8, per_channel=True)
            out[fmt, act] = path
    return out


def _ort_integers(path) -> tuple[np.ndarray, np.ndarray]:
    """onnxruntime's output, and the integer tensor its final DequantizeLinear reads."""
    model = onnx.load(str(path))
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "y"][0]
    elem = onnx.TensorProto.UINT8 if "QUInt8" in str(path) else onnx.TensorProto.INT8
    model.graph.output.append(helper.make_tensor_value_info(dq.input[0], elem, None))
    model.ir_version = min(model.ir_version, IR_VERSION)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    y, q = ort_run(model, {"x": x})
    return x, y, q


def _sieve(path, x, arch="default"):
    graph = verify(load_onnx(path))
    program = generate(schedule(graph, load_arch(arch)))
    result = run(program, {program.inputs[0].name: x})
    name = program.outputs[0].name
    return result.model_outputs()[name], result.floats[name]


@pytest.mark.parametrize("act", ["QUInt8", "QInt8"])
@pytest.mark.parametrize("arch", ["default", "edge"])
def test_qoperator_model_matches_onnxruntime(models, act, arch):
    skip_unless_ort_exact(act == "QUInt8")
    x, y_ort, q_ort = _ort_integers(models["QOperator", act])
    q, y = _sieve(models["QOperator", act], x, arch)
    np.testing.assert_array_equal(q, q_ort)
    np.testing.assert_array_equal(y, y_ort)
    assert len(np.unique(q)) > 3                      # a real output, not a constant


@pytest.mark.parametrize("act", ["QUInt8", "QInt8"])
def test_qdq_twin_gives_the_same_integers(models, act):
    skip_unless_ort_exact(act == "QUInt8")
    x, _, q_ort = _ort_integers(models["QOperator", act])
    q_qdq, _ = _sieve(models["QDQ", act], x)
    np.testing.assert_array_equal(q_qdq, q_ort)


def test_float_export_imports_and_matches_torch(models):
    graph = verify(load_onnx(models["float"]))
    from sieve.ir import run_float
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
    want = models["net"](torch.from_numpy(x)).detach().numpy()
    got = run_float(graph, {graph.inputs[0].name: x})[graph.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
