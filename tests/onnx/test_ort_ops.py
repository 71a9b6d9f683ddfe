"""Seeded random QLinearConv / QLinearMatMul models against onnxruntime, exact: per-channel
scales, zero points at the extremes, saturation, uint8 and int8 activations."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sieve.arch import load_arch
from sieve.codegen import generate
from sieve.frontend import import_model
from sieve.ir import verify
from sieve.scheduler import schedule
from sieve.simulator import run
from tests.helpers import ORT_U8S8_SATURATES, skip_unless_ort_exact, small_arch
from tests.onnx.ort_models import ort_run, qlinearconv, qlinearmatmul

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ARCHS = st.sampled_from([load_arch("default"), load_arch("edge"), small_arch(3, 4, 8192, 2048, 4)])


def _sieve(model, x, arch):
    graph = verify(import_model(model))
    program = generate(schedule(graph, arch))
    result = run(program, {program.inputs[0].name: x})
    return result.model_outputs()[program.outputs[0].name]


@SETTINGS
@given(arch=ARCHS, c=st.integers(1, 12), k=st.integers(1, 20), hw=st.integers(3, 10), kernel=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), pad=st.integers(0, 1), uint8=st.booleans(), per_channel=st.booleans(),
       extreme=st.booleans(), seed=st.integers(0, 2**16))
def test_qlinearconv_matches_onnxruntime(arch, c, k, hw, kernel, stride, pad, uint8, per_channel, extreme, seed):
    assume(not (uint8 and ORT_U8S8_SATURATES))        # tests.helpers.U8S8_REASON
    rng = np.random.default_rng(seed)
    model, x = qlinearconv((1, c, hw, hw), k, kernel, stride, pad, 1, np.uint8 if uint8 else np.int8,
                           per_channel, rng, extreme)
    want = ort_run(model, {"x": x})[0]
    got = _sieve(model, x, arch)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(arch=ARCHS, c=st.integers(2, 16), hw=st.integers(3, 9), uint8=st.booleans(), seed=st.integers(0, 2**16))
def test_qlinearconv_depthwise_matches_onnxruntime(arch, c, hw, uint8, seed):
    rng = np.random.default_rng(seed)
    model, x = qlinearconv((1, c, hw, hw), c, 3, 1, 1, c, np.uint8 if uint8 else np.int8, True, rng)
    np.testing.assert_array_equal(_sieve(model, x, arch), ort_run(model, {"x": x})[0])


@SETTINGS
@given(arch=ARCHS, m=st.integers(1, 9), kdim=st.integers(1, 70), n=st.integers(1, 40), uint8=st.booleans(),
       per_column=st.booleans(), extreme=st.booleans(), seed=st.integers(0, 2**16))
def test_qlinearmatmul_matches_onnxruntime(arch, m, kdim, n, uint8, per_column, extreme, seed):
    assume(not (uint8 and ORT_U8S8_SATURATES))
    rng = np.random.default_rng(seed)
    model, a = qlinearmatmul(m, kdim, n, np.uint8 if uint8 else np.int8, per_column, rng, extreme)
    np.testing.assert_array_equal(_sieve(model, a, arch), ort_run(model, {"a": a})[0])


def test_saturation_is_exercised():
    """Extreme zero points and large scales drive outputs to the rails; they still match."""
    skip_unless_ort_exact()
    rng = np.random.default_rng(5)
    model, x = qlinearconv((1, 8, 6, 6), 8, 3, 1, 1, 1, np.uint8, True, rng, zp_extreme=True)
    want = ort_run(model, {"x": x})[0]
    assert (want == 0).any() or (want == 255).any()
    np.testing.assert_array_equal(_sieve(model, x, load_arch("default")), want)


def _bn_model(c: int, act: str, u8: bool, rng):
    """DequantizeLinear -> BatchNormalization [-> Relu/Clip] -> QuantizeLinear with random parameters."""
    from onnx import TensorProto, helper, numpy_helper
    dt, lo, hi = (np.uint8, 0, 255) if u8 else (np.int8, -128, 127)
    p = {"g": 1 + 0.5 * rng.standard_normal(c), "b": 0.3 * rng.standard_normal(c), "m": 0.3 * rng.standard_normal(c),
         "v": 0.2 + np.abs(rng.standard_normal(c))}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in p.items()]
    inits += [numpy_helper.from_array(np.float32(10 ** rng.uniform(-3, -1)), "sx"),
              numpy_helper.from_array(np.array(rng.integers(lo, hi + 1), dt), "zx"),
              numpy_helper.from_array(np.float32(10 ** rng.uniform(-3, -1)), "sy"),
              numpy_helper.from_array(np.array(rng.integers(lo, hi + 1), dt), "zy")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["xf"]),
             helper.make_node("BatchNormalization", ["xf", "g", "b", "m", "v"], ["bn"],
                              epsilon=float(10 ** rng.uniform(-6, -2)))]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["bn"], ["a"]))
    elif act == "clip":
        inits += [numpy_helper.from_array(np.float32(-0.5), "cmin"), numpy_helper.from_array(np.float32(1.5), "cmax")]
        nodes.append(helper.make_node("Clip", ["bn", "cmin", "cmax"], ["a"]))
    nodes.append(helper.make_node("QuantizeLinear", ["a" if act != "none" else "bn", "sy", "zy"], ["y"]))
    elem = TensorProto.UINT8 if u8 else TensorProto.INT8
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", elem, [1, c, 6, 7])],
                              [helper.make_tensor_value_info("y", elem, [1, c, 6, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model, rng.integers(lo, hi + 1, (1, c, 6, 7)).astype(dt)


@SETTINGS
@given(arch=ARCHS, c=st.integers(1, 300), act=st.sampled_from(["none", "relu", "clip"]), uint8=st.booleans(),
       seed=st.integers(0, 2**16))
def test_float_batch_norm_between_dq_and_q_matches_onnxruntime(arch, c, act, uint8, seed):
    """onnxruntime computes it in float32 (mul then add, no FMA); the AFFINE instruction reproduces it."""
    model, x = _bn_model(c, act, uint8, np.random.default_rng(seed))
    want = ort_run(model, {"x": x})[0]
    np.testing.assert_array_equal(_sieve(model, x, arch), want)
