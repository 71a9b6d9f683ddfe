"""`sieve quantize`: the model Sieve compiles, written as QDQ ONNX. onnxruntime's default session runs it to
exactly the integers of the compiled binary, and compiling the written file gives the same binary as
compiling the float model with the same options."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import sieve
from sieve.arch import encode_program
from tests.onnx.test_ort_defaults import _integers, _ort
from tests.helpers import skip_unless_ort_exact


@pytest.mark.parametrize("name,prune", [("resnet18", None), ("resnet18", "0.9"), ("resnet18", "2:4"),
                                        ("mobilenetv2", "0.5"), ("lenet5", "2:4"), ("mlp", None),
                                        ("efficientnet_b0", None), ("mobilenetv3", "0.5")])
def test_quantized_export_runs_in_onnxruntime_to_sieves_integers(tmp_path, name, prune):
    skip_unless_ort_exact()
    rng = np.random.default_rng(0)
    if name in ("lenet5", "mlp"):                      # built in code: a float sieve Graph
        model = sieve.zoo.graph(name)
        in_shape = model.inputs[0].out.shape
    else:                                              # an onnx.ModelProto
        model, in_shape = sieve.zoo.onnx_model(name, size=32), (1, 3, 32, 32)
    calib = rng.standard_normal((8,) + tuple(in_shape[1:])).astype(np.float32)
    qdq = sieve.quantize(model, calibrate=calib, prune=prune)
    onnx.checker.check_model(qdq)
    path = tmp_path / "q.onnx"
    onnx.save(qdq, path)
    from_float = sieve.compile(model, calibrate=calib, prune=prune)
    from_file = sieve.compile(path)
    assert encode_program(from_file) == encode_program(from_float)       # the same binary, byte for byte
    x = rng.standard_normal((3,) + tuple(in_shape[1:])).astype(np.float32)
    want = _ort(path, x)
    res = sieve.simulate(from_float, x)
    (out_name, got_q), = res.model_outputs().items()
    d = from_float.outputs[0]
    assert got_q.dtype == np.int8 and d.dtype == "int8"
    np.testing.assert_array_equal(_integers(want, d.scale, d.zero_point + 128) - 128, got_q.astype(np.int64))
    np.testing.assert_array_equal(res.floats[out_name], want)
    if prune == "0.9":
        weights = [n for n in sieve.integer_model(path).qgraph if "w" in n.params]
        assert np.mean(np.concatenate([(n.params["w"] == 0).ravel() for n in weights])) > 0.85


def test_export_keeps_names_and_refuses_what_onnxruntime_would_compute_otherwise(tmp_path):
    g = sieve.zoo.graph("lenet5")
    q = sieve.quantize(g, calibrate=np.random.default_rng(0).standard_normal((4, 1, 32, 32)).astype(np.float32))
    assert [i.name for i in q.graph.input] == ["x"] and [o.name for o in q.graph.output] == ["logits"]
    assert {p.key: p.value for p in q.metadata_props} == {"sieve.activations": "int8"}
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "MaxPool", "Flatten"} <= ops
    assert "Relu" not in ops                  # fused ReLUs are the uint8 saturation: nothing to write
    with pytest.raises(sieve.ERRORS, match="pruning needs a float model"):
        sieve.quantize(q, prune=0.5)
    # an imported int8 QLinearAdd (signed arithmetic) cannot be written for onnxruntime's uint8 kernel
    from sieve.frontend.onnx_export import export_qdq
    from sieve.ir import Op
    r18 = sieve.integer_model(sieve.zoo.onnx_model("resnet18", size=32)).qgraph
    bad = r18.replace_nodes([n.with_attrs(arith="s8") if n.op is Op.ADD else n for n in r18])
    with pytest.raises(sieve.ERRORS, match="s8 arithmetic"):
        export_qdq(bad)
