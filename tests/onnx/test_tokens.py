"""nn.Linear on token tensors ([batch, tokens, features]) as float, QDQ and QOperator ONNX models:
the reference equals onnxruntime and the simulator equals the reference."""
import logging
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import sieve
from tests.onnx.ort_models import finish
from tests.helpers import skip_unless_ort_exact


def _linear_model():
    rng = np.random.default_rng(0)
    inits = {"W": (rng.standard_normal((32, 16)) * 0.2).astype(np.float32),
             "B": (rng.standard_normal(16) * 0.1).astype(np.float32),
             "W2": (rng.standard_normal((16, 8)) * 0.2).astype(np.float32),
             "P": (rng.standard_normal((8, 8)) * 0.5).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "W2"], ["m2"]),
             helper.make_node("Add", ["m2", "P"], ["y"])]                 # position-wise constant [T, D]
    return finish(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 32])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 8])], inits)


def _ort_quantized(model, tmp_path, fmt: str, act: str, calib: list[dict], feed: dict):
    """(path of the model quantized by onnxruntime's quantize_static on ``calib``, per-channel int8
    weights; onnxruntime's default session's output on ``feed``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    import onnxruntime as ort
    src, path = tmp_path / "float.onnx", tmp_path / f"{fmt}_{act}.onnx"
    onnx.save(model, src)
    batches = iter(calib)

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger().setLevel(logging.ERROR)
        quantize_static(str(src), str(path), Reader(), quant_format=getattr(QuantFormat, fmt),
                        activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8, per_channel=True)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return path, ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, feed)[0]


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_linear_on_tokens_quantized_by_onnxruntime_is_bit_exact(tmp_path, fmt):
    skip_unless_ort_exact()
    x = np.random.default_rng(1).standard_normal((12, 8, 32)).astype(np.float32)
    path, want = _ort_quantized(_linear_model(), tmp_path, fmt, "QUInt8",
                                [{"x": x[i:i + 2]} for i in range(0, 8, 2)], {"x": x[8:10]})
    ref = sieve.interpret(path, x[8:10])
    (name, got), = ref.floats.items()
    np.testing.assert_array_equal(got, want)
    kinds = {n.op for n in sieve.integer_model(path).qgraph}
    assert sieve.ir.Op.CONST in kinds                      # the biases stay constants added in integers
    sim = sieve.simulate(sieve.compile(path, dense_twin=False), x[8:10])
    np.testing.assert_array_equal(sim.model_outputs()[name], ref.outputs[name])


def test_linear_on_tokens_in_float_compiles_and_runs():
    x = np.random.default_rng(1).standard_normal((8, 8, 32)).astype(np.float32)
    model = _linear_model()
    program = sieve.compile(model, calibrate=x, batch=2)
    res = sieve.simulate(program, x[:2])
    (name, got), = res.floats.items()
    assert got.shape == (2, 8, 8) and np.abs(got).max() > 0


def _two_activation_model():
    """A projection, then the product of two activations (as attention's Q·Kᵀ), then another."""
    rng = np.random.default_rng(2)
    inits = {"Wq": (rng.standard_normal((32, 16)) * 0.3).astype(np.float32),
             "Wv": (rng.standard_normal((12, 16)) * 0.3).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "Wq"], ["q"]),                  # [B, 8, 16]
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),    # [B, 12, 16] -> [B, 16, 12]
             helper.make_node("MatMul", ["q", "kt"], ["s"]),                  # Q·Kᵀ: [B, 8, 12]
             helper.make_node("MatMul", ["s", "v"], ["y"])]                   # [B, 8, 12] x [B, 12, 16]
    del inits["Wv"]
    return finish(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 32]),
                          helper.make_tensor_value_info("k", TensorProto.FLOAT, [2, 12, 16]),
                          helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 12, 16])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 16])], inits)


@pytest.mark.parametrize("fmt,act", [("QDQ", "QUInt8"), ("QOperator", "QUInt8"), ("QOperator", "QInt8")])
def test_matmul_of_two_activations_matches_onnxruntime(tmp_path, fmt, act):
    skip_unless_ort_exact(act == "QUInt8")
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((2, 8, 32)).astype(np.float32),
              "k": rng.standard_normal((2, 12, 16)).astype(np.float32),
              "v": rng.standard_normal((2, 12, 16)).astype(np.float32)} for _ in range(5)]
    path, want = _ort_quantized(_two_activation_model(), tmp_path, fmt, act, feeds[:4], feeds[4])
    assert sum(n.op is sieve.ir.Op.BMM for n in sieve.integer_model(path).qgraph) == 2
    _runs_to(path, feeds[4], want)
    assert len(np.unique(want)) > 10


def _runs_to(path, feed, want):
    """The model compiled for multicore, layers split (auto) and pipelined, simulates to ``want`` exactly."""
    for partition in ("auto", "pipeline"):
        program = sieve.compile(path, dense_twin=False, arch="multicore", partition=partition)
        (got,) = sieve.simulate(program, feed).floats.values()
        np.testing.assert_array_equal(got, want)


def _softmax_model():
    """Scores, a softmax over them inside the network, and the weighted sum (attention's P·V)."""
    rng = np.random.default_rng(4)
    inits = {"Wq": (rng.standard_normal((32, 12)) * 0.4).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "Wq"], ["s"]),                  # [B, 8, 12]
             helper.make_node("Softmax", ["s"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]                   # [B, 8, 12] x [B, 12, 16]
    return finish(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 32]),
                          helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 12, 16])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 16])], inits)


@pytest.mark.parametrize("fmt,act", [("QDQ", "QUInt8"), ("QOperator", "QUInt8"), ("QOperator", "QInt8")])
def test_softmax_inside_the_network_matches_onnxruntime(tmp_path, fmt, act):
    """onnxruntime's QLinearSoftmax (a float32 exp table, a float32 row sum, one division per element)
    emulated exactly."""
    skip_unless_ort_exact(act == "QUInt8")
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.standard_normal((2, 8, 32)).astype(np.float32),
              "v": rng.standard_normal((2, 12, 16)).astype(np.float32)} for _ in range(5)]
    path, want = _ort_quantized(_softmax_model(), tmp_path, fmt, act, feeds[:4], feeds[4])
    assert sum(n.op is sieve.ir.Op.QSOFTMAX for n in sieve.integer_model(path).qgraph) == 1
    _runs_to(path, feeds[4], want)


def test_attention_core_quantized_by_sieve_runs_in_onnxruntime_to_sieves_integers(tmp_path):
    """Q·Kᵀ (Transpose folded), a softmax inside the network and P·V, quantized by `sieve quantize`: the
    file compiles to the same binary as the float model, and onnxruntime computes it to within a few
    output steps of the simulator (its softmax rounds differently from Sieve's integer one)."""
    from sieve.arch import encode_program
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]),
             helper.make_node("Softmax", ["s"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    model = finish(nodes, [helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 8, 16]),
                           helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, 12, 16]),
                           helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 12, 16])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16])], {})
    calib = {"q": rng.standard_normal((8, 8, 16)).astype(np.float32) * 2,
             "k": rng.standard_normal((8, 12, 16)).astype(np.float32),
             "v": rng.standard_normal((8, 12, 16)).astype(np.float32)}
    path = tmp_path / "att.onnx"
    onnx.save(sieve.quantize(model, calibrate=calib), path)
    from_float = sieve.compile(model, calibrate=calib)
    assert encode_program(sieve.compile(path)) == encode_program(from_float)
    feed = {k: v[:1] for k, v in calib.items()}
    from tests.onnx.ort_models import ort_run
    (want,) = ort_run(onnx.load(path), feed)
    (got,) = sieve.simulate(from_float, feed).floats.values()
    # the softmax is Sieve's integer-only one; onnxruntime runs the file's Softmax with its float table,
    # which rounds a probability differently now and then (P·V then moves a few output steps)
    step = float(sieve.integer_model(path).qgraph[sieve.integer_model(path).qgraph.outputs[0]].out.quant.scale[0])
    assert np.abs(got - want).max() <= 4 * step + 1e-6
    assert np.mean(got == want) > 0.8
