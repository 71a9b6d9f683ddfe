"""ONNX import: each bad model is one clear FrontendError."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from sieve.frontend import FrontendError, build_onnx, import_model, load_onnx
from tests.onnx.ort_models import finish


def _relu_model(shape, opset=17, op="Relu"):
    node = helper.make_node(op, ["x"], ["y"], name="my_node")
    return finish([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {}, opset)


def test_unsupported_op_names_type_node_and_supported_list():
    with pytest.raises(FrontendError, match=r"node 'my_node' \(Selu\): unsupported op type 'Selu'.*"
                                            r"supported: .*Conv.*QLinearConv"):
        import_model(_relu_model([1, 4], op="Selu"), "m.onnx")


def test_dynamic_shape_that_cannot_be_resolved():
    with pytest.raises(FrontendError, match=r"input 'x' has a dynamic dimension 2 \('height'\)"):
        import_model(_relu_model(["N", 3, "height", 8]), "m.onnx")


def test_symbolic_batch_takes_the_compile_batch():
    g = import_model(_relu_model(["N", 3, 8, 8]), "m.onnx")
    assert g.inputs[0].out.shape == (1, 3, 8, 8)


def test_opset_out_of_range():
    with pytest.raises(FrontendError, match=r"opset 9 is out of the supported range 10\.\."):
        import_model(_relu_model([1, 4], opset=9), "m.onnx")


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9])
def test_truncated_or_malformed_file(tmp_path, cut):
    raw = build_onnx("resnet18", size=32, classes=10).SerializeToString()
    path = tmp_path / "bad.onnx"
    path.write_bytes(raw[:int(len(raw) * cut)] + (b"\xff\x00garbage" if cut == 0.0 else b""))
    with pytest.raises(FrontendError, match=r"bad.onnx: (not a readable ONNX model|the ONNX model has no nodes)"):
        load_onnx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FrontendError, match="cannot read"):
        load_onnx(tmp_path / "none.onnx")


def test_dynamic_weights_are_refused():
    """A convolution's weights must be constants (a MatMul of two tensors is a product of activations)."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[1, 1])
    model = finish([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3]),
                            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 4, 1, 1])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {})
    with pytest.raises(FrontendError, match=r"weight 'w' must be a constant"):
        import_model(model, "m.onnx")


def test_pytorch_style_shape_subgraph_is_folded():
    """x.view(x.size(0), -1): Shape -> Gather -> Unsqueeze -> Concat -> Reshape becomes a flatten."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    model = finish(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    g = import_model(model)
    assert g[g.outputs[0]].out.shape == (1, 24)
    assert [n.op.value for n in g] == ["input", "flatten"]


def test_float_concat_and_host_softmax_import_and_run():
    """Concat of two convolutions and a final Softmax: Sieve quantizes, the host finishes the softmax."""
    from sieve.arch import load_arch
    from sieve.pipeline import integer_model
    from sieve.codegen import generate
    from sieve.ir import run_float
    from sieve.scheduler import schedule
    from sieve.simulator import run
    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((4, 3, 1, 1)).astype(np.float32), rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((10, 9 * 4 * 4)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]),
             helper.make_node("Conv", ["x", "w2"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["p"], axis=-1)]
    model = finish(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                   [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)], {"w1": w1, "w2": w2, "fc": fc})
    g = import_model(model)
    x = rng.standard_normal((4, 3, 4, 4)).astype(np.float32)
    q = integer_model(g, calibrate={"x": x}).qgraph
    result = run(generate(schedule(q, load_arch("default"))), {"x": x})
    probs, want = result.floats["p"], run_float(g, {"x": x})["p"]
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    assert (probs.argmax(1) == want.argmax(1)).mean() >= 0.75
    assert np.abs(probs - want).max() < 0.1


@pytest.mark.parametrize("pads,include", [([0, 0, 0, 0], 0), ([1, 1, 1, 1], 1)])
def test_average_pool_matches_onnxruntime_float(pads, include):
    from sieve.ir import run_float
    from tests.onnx.ort_models import ort_run
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=pads,
                            count_include_pad=include)
    model = finish([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9, 9])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {})
    x = np.random.default_rng(0).standard_normal((1, 4, 9, 9)).astype(np.float32)
    g = import_model(model)
    np.testing.assert_allclose(run_float(g, {"x": x})[g.outputs[0]], ort_run(model, {"x": x})[0], rtol=1e-5,
                               atol=1e-6)


def test_average_pool_not_counting_padding_is_refused():
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="ap")
    model = finish([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9, 9])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {})
    with pytest.raises(FrontendError, match=r"node 'ap' \(AveragePool\): .*count_include_pad=0"):
        import_model(model)
