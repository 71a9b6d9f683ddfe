"""Real data: a small ViT (patch embedding, nn.MultiheadAttention, nn.LayerNorm, nn.GELU, token mean) trained
here on sklearn's bundled digits, exported from PyTorch and compiled by Sieve with integer-only softmax,
LayerNorm and GELU: int8 top-1 on held-out digits within 1 point of float, dense and at 50 % sparsity after a
short gradual magnitude pruning of every Linear (attention projections included)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import sieve
from sieve.frontend import load_onnx
from sieve.ir import Op, run_float
from sieve.ir.passes import weight_sparsity
from sieve.pipeline import integer_model

TRAIN, CALIB = 1400, 200


class ViT(nn.Module):
    """8x8 digits in 2x2 patches: 16 tokens of 32 features, 2 pre-LayerNorm blocks of 2 heads."""

    def __init__(self, dim: int = 32, heads: int = 2, depth: int = 2):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 2, stride=2)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.1)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            self.blocks.append(nn.ModuleDict({
                "ln1": nn.LayerNorm(dim), "attn": nn.MultiheadAttention(dim, heads, batch_first=True),
                "ln2": nn.LayerNorm(dim), "ff": nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(),
                                                             nn.Linear(2 * dim, dim))}))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for b in self.blocks:
            y = b["ln1"](x)
            x = x + b["attn"](y, y, y, need_weights=False)[0]
            x = x + b["ff"](b["ln2"](x))
        return self.head(self.norm(x).mean(dim=1))


def _linears(net: nn.Module) -> list[torch.Tensor]:
    """Every Linear's weight, the attention's packed q/k/v projection and its output projection included."""
    ws = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
    ws += [m.in_proj_weight for m in net.modules() if isinstance(m, nn.MultiheadAttention)]
    return ws


def train(sparsity: float = 0.0, epochs: int = 60):
    """The ViT trained on the first digits, every Linear pruned gradually to ``sparsity`` (the example's
    schedule, examples/prune_digits.py)."""
    from tests.onnx.test_digits_cnn import _example
    x, y = _example().digits()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)              # the float sums' order, so the model is the one measured (and the
    try:                                  # same under `make test`'s one-thread workers)
        torch.manual_seed(0)
        net = ViT()
        torch.manual_seed(0)                              # the batches' order
        return _example().fit(net, _linears(net), x[:TRAIN], y[:TRAIN], sparsity, epochs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    from tests.onnx.test_digits_cnn import _example
    return _example().digits()


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory):
    x, y = digits
    dense, pruned = train(), train(0.5)
    out = {}
    folder = tmp_path_factory.mktemp("vit")
    for name, net in (("dense", dense), ("pruned", pruned)):
        path = folder / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, torch.from_numpy(x[:1]), path, dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["logits"])
        out[name] = (path, net)
    return out


@pytest.mark.parametrize("which", ["dense", "pruned"])
def test_int8_top1_within_one_point_of_float(models, digits, which):
    path, net = models[which]
    x, y = digits
    x_test, y_test = x[TRAIN:], y[TRAIN:]
    graph = load_onnx(path)
    ops = {n.op for n in graph}
    assert {Op.LAYERNORM, Op.BMM, Op.QSOFTMAX, Op.LUT, Op.MOVE} <= ops
    with torch.no_grad():
        torch_logits = net(torch.from_numpy(x_test)).numpy()
    float_logits = run_float(graph, {"x": x_test})[graph.outputs[0]]
    np.testing.assert_allclose(float_logits, torch_logits, atol=2e-4)        # the import is the model
    float_acc = (float_logits.argmax(1) == y_test).mean()
    q = integer_model(graph, calibrate={"x": x[:CALIB]}).qgraph
    assert {n.attrs.get("arith") for n in q if n.op is Op.QSOFTMAX} == {"int"}       # integer-only
    if which == "pruned":
        dense_linears = [s for n, s in weight_sparsity(q).items() if q[n].op is Op.DENSE]
        assert min(dense_linears) >= 0.49
    int_acc = (sieve.interpret(q, {"x": x_test}).floats["logits"].argmax(1) == y_test).mean()
    print(f"{which}: float {float_acc:.4f}, int8 {int_acc:.4f}")
    assert float_acc > 0.9
    assert int_acc >= float_acc - 0.01, (which, float_acc, int_acc)
    # the golden model is what the accelerator computes: a few held-out digits through the binary
    program = sieve.compile(q, arch="default")
    sim = sieve.simulate(program, {"x": x_test[:8]})
    np.testing.assert_array_equal(sim.floats["logits"], sieve.interpret(q, {"x": x_test[:8]}).floats["logits"])
