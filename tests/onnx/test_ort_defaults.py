"""Zoo models quantized by onnxruntime's quantize_static (after quant_pre_process), run by onnxruntime's
default InferenceSession (all graph optimizations) and by Sieve: the integers of every graph output
are equal, in QDQ and QOperator form, uint8 and int8 activations, per-channel and per-tensor weights.

One case is not bit-exact, by onnxruntime's design: int8 activations in QDQ form. On x86-64
onnxruntime fuses int8 QDQ convolutions only after converting the tensors to uint8, which it does
for a QuantizeLinear with one consumer; a tensor with several (a residual block's input) stays int8
and its consumers run in float32. Sieve reports exactly those layers, and computes everything else
(uint8 and int8 QLinearAdd, the float Add) as onnxruntime does; the test checks both.
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter

import numpy as np
import onnx
import pytest

import sieve
from sieve.ir import Op
from tests.onnx.ort_models import IR_VERSION
from tests.helpers import skip_unless_ort_exact

SIZE = 32
MODELS = ("resnet18", "resnet50", "mobilenetv2", "efficientnet_b0", "mobilenetv3")


def _quantize(tmp_path, name: str, fmt: str, act: str, per_channel: bool, preprocess: bool = True):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    src, pre = tmp_path / f"{name}.onnx", tmp_path / f"{name}_pre.onnx"
    if not src.exists():
        onnx.save(sieve.zoo.onnx_model(name, size=SIZE), src)
    if preprocess and not pre.exists():
        quant_pre_process(str(src), str(pre))
    if not preprocess:
        pre = src
    rng = np.random.default_rng(0)
    batches = iter([{"input": rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)} for _ in range(4)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    out = tmp_path / f"{name}_{fmt}_{act}_{int(per_channel)}{'' if preprocess else '_raw'}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger().setLevel(logging.ERROR)
        quantize_static(str(pre), str(out), Reader(), quant_format=getattr(QuantFormat, fmt),
                        activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8,
                        per_channel=per_channel)
    return out


def _ort(path, x: np.ndarray, optimized=None):
    """onnxruntime's default session (graph optimizations on: ORT_ENABLE_ALL), one image at a time."""
    import onnxruntime as ort
    model = onnx.load(str(path))
    model.ir_version = min(model.ir_version, IR_VERSION)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    if optimized:
        opts.optimized_model_filepath = str(optimized)
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _integers(y: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """The integers a DequantizeLinear output came from (exactly: (q - zp) * s divided by s rounds back)."""
    return (np.rint(y / np.float32(scale)) + zp).astype(np.int64)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ort_defaults")


CASES = [(m, f, a, pc) for m in MODELS for f in ("QDQ", "QOperator") for a in ("QUInt8", "QInt8")
         for pc in (True, False) if not (f == "QDQ" and a == "QInt8")]


@pytest.mark.parametrize("name,fmt,act,per_channel", CASES)
def test_quantized_zoo_model_matches_onnxruntime_default_session(workdir, name, fmt, act, per_channel):
    skip_unless_ort_exact()
    path = _quantize(workdir, name, fmt, act, per_channel)
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    want = _ort(path, x)
    ref = sieve.interpret(path, x)                    # the golden model, on the imported integer graph
    (out_name, got_f), = ref.floats.items()
    got_q = ref.outputs[out_name]
    np.testing.assert_array_equal(got_f, want)
    program = sieve.compile(path, dense_twin=False)
    d = program.outputs[0]
    np.testing.assert_array_equal(_integers(want, d.scale, d.zero_point + (128 if d.dtype == "uint8" else 0)),
                                  got_q.astype(np.int64))
    if name in ("resnet18", "efficientnet_b0", "mobilenetv3"):   # and the compiled binary, simulated, too
        sim = sieve.simulate(program, x)
        np.testing.assert_array_equal(sim.model_outputs()[out_name], got_q)
    assert len(np.unique(got_q)) > 3


@pytest.mark.parametrize("name,fmt,act", [("resnet18", "QDQ", "QUInt8"), ("mobilenetv2", "QDQ", "QUInt8"),
                                          ("resnet18", "QOperator", "QUInt8"), ("resnet50", "QOperator", "QInt8")])
def test_models_quantized_without_pre_processing_match_too(workdir, name, fmt, act):
    """Without quant_pre_process, quantize_static leaves every BatchNormalization in float between a
    DequantizeLinear and a QuantizeLinear (QOperator: followed by a float Relu and MaxPool). onnxruntime
    runs them in float32; Sieve emulates that arithmetic exactly with its AFFINE instruction."""
    skip_unless_ort_exact()
    path = _quantize(workdir, name, fmt, act, True, preprocess=False)
    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert ops["BatchNormalization"] > 10
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    want = _ort(path, x)
    ref = sieve.interpret(path, x)
    np.testing.assert_array_equal(next(iter(ref.floats.values())), want)
    g = sieve.integer_model(path).qgraph
    assert sum(n.op is Op.AFFINE for n in g) == ops["BatchNormalization"]
    if name == "resnet18":
        sim = sieve.simulate(sieve.compile(path, dense_twin=False), x)
        np.testing.assert_array_equal(next(iter(sim.floats.values())), want)


def test_a_float_op_onnxruntime_cannot_be_matched_on_is_refused_by_name(workdir):
    """MobileNetV2 in QOperator form without pre-processing ends in a float GlobalAveragePool of a float
    batch norm: a float mean whose rounding Sieve cannot reproduce in integers."""
    path = _quantize(workdir, "mobilenetv2", "QOperator", "QUInt8", True, preprocess=False)
    with pytest.raises(sieve.ERRORS, match=r"float value inside a quantized model .*quant_pre_process"):
        sieve.integer_model(path)


@pytest.mark.parametrize("name", MODELS)
def test_int8_qdq_layers_onnxruntime_runs_in_float_are_reported(workdir, name, caplog):
    """Sieve's account of onnxruntime's x86 choices equals the session's optimized graph: the float
    convolutions it warns about, the float Adds, and the int8/uint8 QLinearAdds."""
    skip_unless_ort_exact()
    path = _quantize(workdir, name, "QDQ", "QInt8", True)
    x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    optimized = workdir / f"{name}_qdq_int8_optimized.onnx"
    want = _ort(path, x, optimized)
    ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    with caplog.at_level(logging.WARNING, logger="sieve"):
        lowered = sieve.integer_model(path)
    g = lowered.qgraph
    warning = [r.getMessage() for r in caplog.records if "in float32" in r.getMessage()]
    n_float = ops["Conv"] + ops["MatMul"] + ops["Gemm"] + ops["GlobalAveragePool"]
    assert n_float > 0 and len(warning) == 1 and f"runs {n_float} layer(s)" in warning[0]
    adds = Counter(n.attrs["arith"] for n in g if n.op is Op.ADD)
    assert adds["float"] == ops["Add"] and adds["u8"] + adds["s8"] == ops["QLinearAdd"]
    # the float convolutions make some values differ, but no more than a few steps of the output
    got = sieve.interpret(path, x).floats
    out = next(iter(got.values()))
    step = g[g.outputs[0]].out.quant.scale[0]
    assert np.abs(out - want).max() <= 16 * step


def test_int8_qdq_without_shared_tensors_is_bit_exact(tmp_path):
    """A plain CNN (no tensor read twice): onnxruntime converts every tensor to uint8 and fuses all."""
    skip_unless_ort_exact()
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    init = lambda name, shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)  # noqa
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "plain", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
                              [init("w1", (8, 3, 3, 3)), init("b1", (8,)), init("w2", (8, 1, 3, 3)), init("b2", (8,)),
                               init("w3", (10, 8)), init("b3", (10,))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    onnx.save(model, tmp_path / "plain.onnx")
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static
    batches = iter([{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(batches, None)

    quantize_static(str(tmp_path / "plain.onnx"), str(tmp_path / "q.onnx"), Reader(), per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    want = _ort(tmp_path / "q.onnx", x)
    got = sieve.simulate(sieve.compile(tmp_path / "q.onnx", dense_twin=False), x)
    np.testing.assert_array_equal(got.floats["logits"], want)
    assert got.model_outputs()["logits"].dtype == np.int8
