"""Real data: a small CNN trained here on sklearn's bundled digits, exported from PyTorch, quantized
and compiled by Sieve: INT8 top-1 on held-out digits within 1 point of float."""
from __future__ import annotations

import numpy as np
import pytest

from sieve.arch import load_arch
from sieve.pipeline import integer_model
from sieve.codegen import generate
from sieve.frontend import load_onnx
from sieve.ir import run_float
from sieve.scheduler import schedule
from sieve.simulator import run


def quantize_model(graph, calib, method="minmax"):
    return integer_model(graph, calibrate=calib, calibration=method).qgraph


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory):
    """The CNN of examples/prune_digits.py, trained here (dense) on 1,400 digits and exported."""
    ex = _example()
    x, y = ex.digits()
    net = ex.train(x[:1400], y[:1400], 0.0, epochs=15)
    return ex.export(net, tmp_path_factory.mktemp("digits") / "digits.onnx"), x, y


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


def test_pruned_accuracy_beside_float_and_dense_int8(digits_onnx):
    """Post-training magnitude pruning at 50/75/90 % (first and last layers kept dense): top-1 of the
    compiled, simulated binary beside float and dense int8."""
    from sieve.ir.passes import prune_magnitude, weight_sparsity
    path, x, y = digits_onnx
    graph = load_onnx(path)
    x_test, y_test = x[1400:], y[1400:]
    out = graph.outputs[0]
    acc = {"float": (run_float(graph, {"x": x_test})[out].argmax(1) == y_test).mean()}
    for sparsity in (0.0, 0.5, 0.75, 0.9):
        q = quantize_model(prune_magnitude(graph, sparsity, keep_ends=True), {"x": x[:200]})
        middle = list(weight_sparsity(q).values())[1:-1]
        assert min(middle) >= sparsity - 0.01
        result = run(generate(schedule(q, load_arch("default"))), {"x": x_test})
        acc[sparsity] = (result.floats[out].argmax(1) == y_test).mean()
    print("post-training top-1:", {k: round(float(v), 4) for k, v in acc.items()})
    assert acc[0.0] >= acc["float"] - 0.01
    assert acc[0.5] >= acc[0.0] - 0.02
    assert acc[0.75] >= acc[0.0] - 0.1
    assert acc[0.9] > 0.5


def _example():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "prune_digits", Path(__file__).parents[2] / "examples" / "prune_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", [0.5, 0.75, 0.9])
def test_gradual_pruning_during_training(tmp_path, target):
    """examples/prune_digits.py: pruning while training keeps accuracy; Sieve's int8 within 1 point."""
    ex = _example()
    x, y = ex.digits()
    net = ex.train(x[:1400], y[:1400], target, epochs=20)
    f, q = ex.sieve_top1(ex.export(net, tmp_path / "p.onnx"), x[:200], x[1400:], y[1400:])
    print(f"gradual {target}: float {f:.4f} int8 {q:.4f}")
    assert f > 0.9 and q >= f - 0.01


def test_float_accuracy_of_an_already_quantized_model(digits_onnx, tmp_path):
    """`interpret --float` and `--eval` on a model onnxruntime quantized: the dequantized-weight float
    model scores as the float original does (it used to run integer weights as floats: chance level)."""
    import warnings

    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    import sieve
    path, x, y = digits_onnx
    batches = iter([{"x": x[i:i + 1]} for i in range(64)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(path), str(tmp_path / "q.onnx"), Reader(), activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
    x_test, y_test = x[1400:], y[1400:]
    top1 = lambda outputs: float((next(iter(outputs.values())).argmax(1) == y_test).mean())  # noqa: E731
    float_acc = top1(sieve.interpret(path, x_test, float_model=True).floats)
    deq_acc = top1(sieve.interpret(tmp_path / "q.onnx", x_test, float_model=True).floats)
    int_acc = top1(sieve.interpret(tmp_path / "q.onnx", x_test).floats)
    assert float_acc > 0.9 and abs(deq_acc - float_acc) <= 0.01 and int_acc >= float_acc - 0.02, \
        (float_acc, deq_acc, int_acc)
    np.savez(tmp_path / "eval.npz", x=x_test, y=y_test)
    from sieve.cli import main
    assert main(["compile", str(tmp_path / "q.onnx"), "-o", str(tmp_path / "q.sieve"), "--eval",
                 str(tmp_path / "eval.npz"), "-q"]) == 0


def test_int4_top1_within_two_points_of_float(digits_onnx):
    """INT4 weights with MSE clipping (docs/low-bit.md): the compiled, simulated binary's top-1 within 2
    points of float, per output channel, with scale groups, and with 2:4 sparsity (against the float
    model pruned the same way); min-max clipping printed beside it."""
    path, x, y = digits_onnx
    graph = load_onnx(path)
    x_test, y_test = x[1400:], y[1400:]
    out = graph.outputs[0]

    def top1(q) -> float:
        result = run(generate(schedule(q, load_arch("default"))), {"x": x_test})
        return float((result.floats[out].argmax(1) == y_test).mean())

    acc = {"float": float((run_float(graph, {"x": x_test})[out].argmax(1) == y_test).mean())}
    from sieve.pipeline import prune_model
    acc["float 2:4"] = float((run_float(prune_model(graph, "2:4"), {"x": x_test})[out].argmax(1) == y_test).mean())
    for name, opts in {"int8": {}, "int4": {"weights": "int4"}, "int4 g8": {"weights": "int4", "group": 8},
                       "int4 minmax": {"weights": "int4", "weight_clip": "minmax"},
                       "int4 2:4": {"weights": "int4", "prune": "2:4"}}.items():
        acc[name] = top1(integer_model(graph, calibrate={"x": x[:200]}, **opts).qgraph)
    print("digits top-1:", {k: round(v, 4) for k, v in acc.items()})
    assert acc["float"] > 0.9
    assert acc["int4"] >= acc["float"] - 0.02 and acc["int4 g8"] >= acc["float"] - 0.02
    assert acc["int4 2:4"] >= acc["float 2:4"] - 0.02


def test_int4_with_2_4_pruned_while_training_is_within_two_points_of_float(digits_onnx, tmp_path):
    """int4 + 2:4 against the dense float model: pruned 2:4 while training (the example's N:M masks in the
    accelerator's reduction order, dense for the first third of the epochs), compiled with int4 weights
    and N:M blocks, simulated."""
    import torch
    from torch import nn
    path, x, y = digits_onnx
    graph = load_onnx(path)
    x_test, y_test = x[1400:], y[1400:]
    out = graph.outputs[0]
    dense = float((run_float(graph, {"x": x_test})[out].argmax(1) == y_test).mean())
    ex = _example()
    torch.manual_seed(0)
    net = ex.make_net()
    layers = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][1:]
    net = ex.fit(net, layers, x[:1400], y[:1400], epochs=15, nm=(2, 4), images={1: (32, 4, 4)})
    for w in layers:                                                  # 2 of every 4 are zeros
        assert (w == 0).float().mean() >= 0.5
    sparse = load_onnx(ex.export(net, tmp_path / "nm.onnx"))
    q = integer_model(sparse, calibrate={"x": x[:200]}, weights="int4", prune="2:4").qgraph

    plan = schedule(q, load_arch("default"))
    assert any(p.geom is not None and p.geom.fmt.nm == (2, 4) and p.geom.fmt.bits == 4 for p in plan.layers)
    result = run(generate(plan), {"x": x_test})
    acc = float((result.floats[q.io_name(q.outputs[0])].argmax(1) == y_test).mean())
    print(f"digits top-1: float {dense:.4f}, int4 + 2:4 trained {acc:.4f}")
    assert acc >= dense - 0.02
