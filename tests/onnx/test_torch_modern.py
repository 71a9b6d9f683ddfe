"""Today's CNN building blocks exported from PyTorch (nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU,
nn.Tanh, squeeze-and-excite, nn.Upsample + torch.cat) and nn.Linear on token tensors: the float export
imports and matches torch; quantized by onnxruntime (QDQ and QOperator), Sieve's simulator gives
onnxruntime's outputs exactly."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from torch import nn

import sieve
from sieve.ir import run_float, verify
from sieve.frontend import load_onnx
from tests.onnx.ort_models import IR_VERSION, ort_run
from tests.helpers import skip_unless_ort_exact


class SqueezeExcite(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.down, self.up = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.up(nn.functional.silu(self.down(s))))


class ModernNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.SiLU())
        self.se = SqueezeExcite(16)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.Hardswish())
        self.mid = nn.Sequential(nn.Conv2d(32, 32, 1), nn.LeakyReLU(0.1))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = nn.Sequential(nn.Conv2d(48, 16, 3, padding=1), nn.Tanh())
        self.gate = nn.Sequential(nn.Conv2d(16, 16, 1), nn.Hardsigmoid())
        self.head = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        a = self.se(self.stem(x))
        b = self.mid(self.down(a))
        y = self.fuse(torch.cat([self.up(b), a], dim=1))
        return self.head(y * self.gate(y))


class TokenNet(nn.Module):
    """nn.Linear on [batch, tokens, features], with a learned position embedding added."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 8, 32) * 0.5)
        self.fc1, self.fc2 = nn.Linear(32, 48), nn.Linear(48, 16)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x + self.pos)))


class _Reader(CalibrationDataReader):
    def __init__(self, batches):
        self.it = iter([{"x": b} for b in batches])

    def get_next(self):
        return next(self.it, None)


def _export(net, shape, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(*shape), path, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"])
    model = onnx.load(path)
    model.ir_version = min(model.ir_version, IR_VERSION)
    onnx.save(model, path)


@pytest.fixture(scope="module", params=["modern", "tokens"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp(request.param)
    net, shape = (ModernNet(), (1, 3, 32, 32)) if request.param == "modern" else (TokenNet(), (1, 8, 32))
    net.eval()
    if request.param == "modern":
        bn = net.stem[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    _export(net, shape, d / "float.onnx")
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)]
    out = {"float": d / "float.onnx", "net": net, "shape": shape}
    for fmt in ("QDQ", "QOperator"):
        path = d / f"{fmt}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(d / "float.onnx"), str(path), _Reader(calib), quant_format=getattr(QuantFormat, fmt),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        out[fmt] = path
    return out


def test_float_export_imports_and_matches_torch(exported):
    graph = verify(load_onnx(exported["float"]))
    x = np.random.default_rng(2).standard_normal(exported["shape"]).astype(np.float32)
    want = exported["net"](torch.from_numpy(x)).detach().numpy()
    got = run_float(graph, {graph.inputs[0].name: x})[graph.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_quantized_by_onnxruntime_runs_to_its_outputs_exactly(exported, fmt):
    skip_unless_ort_exact()
    x = np.random.default_rng(1).standard_normal(exported["shape"]).astype(np.float32)
    (want,) = ort_run(onnx.load(exported[fmt]), {"x": x})
    res = sieve.simulate(sieve.compile(exported[fmt], dense_twin=False), x)
    (got,) = res.floats.values()
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 3


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dynamo", [False, True])
def test_bilinear_upsample_imports_and_runs_bitexact(tmp_path, align_corners, dynamo):
    """nn.Upsample(mode="bilinear") from both exporters (half_pixel / align_corners Resize): the float import
    equals torch, and the integer interpolation runs bit-exact on the simulator."""
    from sieve.arch import load_arch
    from tests.helpers import check_bitexact, quantize, random_calibration
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1),
                        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners),
                        nn.Conv2d(8, 4, 1)).eval()
    path = tmp_path / "up.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 9, 7), path, dynamo=dynamo, opset_version=18 if dynamo else 17,
                          input_names=["x"])
    g = verify(load_onnx(path))
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 7)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_float(g, {"x": x})[g.outputs[0]], want, atol=1e-5)
    rng = np.random.default_rng(1)
    q = quantize(g, random_calibration(g, rng, 4))
    check_bitexact(q, load_arch("multicore"), random_calibration(g, rng, 1))
