from __future__ import annotations

import numpy as np
import pytest

from sieve.frontend import build
from sieve.ir import IRError, Node, Op, TensorType, run_float, run_int, verify
from sieve_numerics.integer import quantize, requantize
from sieve.ir.passes import calibrate_minmax, fuse_activations, quantize_graph
from tests.helpers import quantize as quantize_model, random_calibration


def test_requantize_rounds_half_to_even_and_saturates():
    acc = np.array([1, 3, 5, -1, -3, 1000, -1000], np.int32)
    y = requantize(acc, np.float32(0.5), 0)
    assert y.tolist() == [0, 2, 2, 0, -2, 127, -128]
    assert requantize(acc, np.float32(0.5), -10, lo=-10).tolist() == [-10, -8, -8, -10, -10, 127, -10]
    assert requantize(acc, np.float32(0.5), -10, lo=-10, hi=20).tolist() == [-10, -8, -8, -10, -10, 20, -10]


def test_fuse_activations_folds_relu_into_producer():
    g = fuse_activations(build("lenet5"))
    assert [n.op for n in g].count(Op.RELU) == 0
    assert g["conv1"].attrs["act"] == "relu" and g["pool1"].inputs == ("conv1",)


def test_quantization_contract():
    g = verify(fuse_activations(build("lenet5")))
    q = verify(quantize_graph(g, calibrate_minmax(g, random_calibration(g, np.random.default_rng(0), 16))))
    conv = q["conv1"]
    assert conv.params["w"].dtype == np.int8 and np.abs(conv.params["w"]).max() == 127
    assert conv.params["b"].dtype == np.int32 and conv.params["requant"].dtype == np.float32
    s_in, s_out = np.float32(q["x"].out.quant.scale[0]), np.float32(conv.out.quant.scale[0])
    expect = (np.float32(s_in) * conv.params["w_scale"]).astype(np.float32) / s_out
    np.testing.assert_array_equal(conv.params["requant"], expect.astype(np.float32))
    assert q["pool1"].out.quant == conv.out.quant            # pooling keeps its input's scale
    assert conv.out.quant.zp == -128                          # post-ReLU range starts at 0


def test_int8_model_tracks_float_model():
    rng = np.random.default_rng(0)
    g = build("lenet5")
    q = quantize_model(g, random_calibration(g, rng, 64))
    x = rng.standard_normal((32, 1, 32, 32)).astype(np.float32)
    want = run_float(g, {"x": x})["logits"]
    from sieve.ir import dequantize_outputs, quantize_inputs
    got = dequantize_outputs(q, run_int(q, quantize_inputs(q, {"x": x})))["logits"]
    assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.99
    assert (want.argmax(1) == got.argmax(1)).mean() >= 0.9


def test_verify_names_node_and_shows_neighbourhood():
    g = build("mlp")
    bad = [n if n.name != "fc2" else n.evolve(out=TensorType((1, 99))) for n in g]
    with pytest.raises(IRError, match=r"node 'fc2': declared shape \[1, 99\] but inference gives \[1, 64\]"
                                      r"(.|\n)*> Node\(fc2"):
        verify(g.replace_nodes(bad))


def test_graph_rejects_cycles_duplicates_and_dangling_inputs():
    t = TensorType((1, 2))
    with pytest.raises(IRError, match="duplicate"):
        from sieve.ir import Graph
        Graph([Node("a", Op.INPUT, (), t), Node("a", Op.INPUT, (), t)], ["a"])
    with pytest.raises(IRError, match="not produced by any node"):
        from sieve.ir import Graph
        Graph([Node("a", Op.RELU, ("zz",), t)], ["a"])
    with pytest.raises(IRError, match="cycle"):
        from sieve.ir import Graph
        Graph([Node("a", Op.RELU, ("b",), t), Node("b", Op.RELU, ("a",), t)], ["a"])


def test_int_interpreter_requires_int8_input():
    g = build("mlp")
    q = quantize_model(g, random_calibration(g, np.random.default_rng(0)))
    with pytest.raises(IRError, match="needs int8 input"):
        run_int(q, {"x": np.zeros((1, 64), np.float32)})


def test_host_quantize_matches_definition():
    x = np.array([0.25, 0.75, -0.25, 100.0], np.float32)
    assert quantize(x, 0.5, 1).tolist() == [1, 3, 1, 127]
