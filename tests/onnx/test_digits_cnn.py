"""Real data: a small CNN trained here on sklearn's bundled digits, exported from PyTorch, quantized
and compiled by Sieve: INT8 top-1 on held-out digits within 1 point of float."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from arch import load_arch
from cli.pipeline import quantize_model
from codegen import generate
from frontend import load_onnx
from ir import run_float
from scheduler import schedule
from simulator import run


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory):
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]            # [N, 1, 8, 8]
    y = d.target.astype(np.int64)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                        nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[:1400]), torch.from_numpy(y[:1400])
    for epoch in range(15):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), path, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"])
    return path, x, y


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_int8_top1_within_one_point_of_float(digits_onnx, method):
    path, x, y = digits_onnx
    graph = load_onnx(path)
    x_test, y_test = x[1400:], y[1400:]
    out = graph.outputs[0]
    float_acc = (run_float(graph, {"x": x_test})[out].argmax(1) == y_test).mean()
    q = quantize_model(graph, {"x": x[:200]}, method)
    result = run(generate(schedule(q, load_arch("default"))), {"x": x_test})
    int_acc = (result.floats[out].argmax(1) == y_test).mean()
    assert float_acc > 0.9
    assert int_acc >= float_acc - 0.01, (method, float_acc, int_acc)
    print(f"{method}: float {float_acc:.4f}, int8 {int_acc:.4f}")
