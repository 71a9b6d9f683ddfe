"""INT4/UINT4 ONNX weights (DequantizeLinear per channel or per block, opset 21) and onnxruntime's
MatMulNBits, imported onto Sieve's int4 grid, against onnxruntime.

onnxruntime's x86 CPU provider runs these layers in float32 (it has no int4 integer kernel; MatMulNBits
at accuracy_level 0 dequantizes B and runs an sgemm). With power-of-two scales every product and sum is
exact in float32, so its result is the exact rational one and Sieve's integer result must equal it bit
for bit: that checks the nibble order, signs, zero points, block layout and axes of the import. Other
scales are checked to be within a step.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from sieve.arch import load_arch
from sieve.codegen import generate
from sieve.frontend import import_model
from sieve.frontend.errors import FrontendError
from sieve.ir import verify
from sieve.scheduler import schedule
from sieve.simulator import run
from tests.onnx.ort_models import ort_run

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ARCH = load_arch("default")


def _model(core, inits, x_shape, y_shape):
    nodes = [h.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xd"]), *core,
             h.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"])]
    inits = inits + [nh.from_array(np.float32(2 ** -4), "xs"), nh.from_array(np.uint8(128), "xz"),
                     nh.from_array(np.float32(2 ** -1), "ys"), nh.from_array(np.uint8(128), "yz")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.UINT8, x_shape)],
                     [h.make_tensor_value_info("yq", T.UINT8, y_shape)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 21), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 10
    return m


def _int4(name, values, unsigned=False):
    return h.make_tensor(name, T.UINT4 if unsigned else T.INT4, values.shape, values.ravel().tolist())


def _pow2(rng, shape):
    return (2.0 ** -rng.integers(4, 8, shape)).astype(np.float32)


def _sieve(model, x):
    """Sieve's output, and the format each weighted layer took."""
    graph = verify(import_model(model))
    plan = schedule(graph, ARCH)
    program = generate(plan)
    out = run(program, {program.inputs[0].name: x}).model_outputs()[program.outputs[0].name]
    return out, [p.geom.fmt for p in plan.layers if p.geom is not None]


def _values(rng, shape, unsigned):
    """int4 values, or uint4 ones with zero point 8 (the same int4 weights)."""
    return rng.integers(0, 16, shape).astype(np.uint8) if unsigned else rng.integers(-8, 8, shape).astype(np.int8)


@SETTINGS
@given(c=st.sampled_from([4, 8, 16, 32]), k=st.integers(1, 12), block=st.sampled_from([0, 2, 4, 8]),
       unsigned=st.booleans(), kernel=st.sampled_from([1, 3]), seed=st.integers(0, 2 ** 16))
@example(c=4, k=1, block=8, unsigned=False, kernel=1, seed=0)        # one block wider than the channels
def test_int4_qdq_conv_equals_onnxruntime(c, k, block, unsigned, kernel, seed):
    rng = np.random.default_rng(seed)
    w = _values(rng, (k, c, kernel, kernel), unsigned)
    if block:      # one scale per (output channel, block of input channels), the same over the kernel taps
        blocks = -(-c // block)                                   # a last block may be short (or the only one)
        scale = np.broadcast_to(_pow2(rng, (k, blocks, 1, 1)), (k, blocks, kernel, kernel)).copy()
        dq = h.make_node("DequantizeLinear", ["w", "ws"] + (["wz"] if unsigned else []), ["wd"], axis=1,
                         block_size=block)
    else:
        scale = _pow2(rng, (k,))
        dq = h.make_node("DequantizeLinear", ["w", "ws"] + (["wz"] if unsigned else []), ["wd"], axis=0)
    inits = [_int4("w", w, unsigned), nh.from_array(scale, "ws")]
    if unsigned:
        inits.append(_int4("wz", np.full(scale.shape, 8, np.uint8), True))
    model = _model([dq, h.make_node("Conv", ["xd", "wd"], ["y"], pads=[kernel // 2] * 4)], inits,
                   [1, c, 6, 6], [1, k, 6, 6])
    x = rng.integers(0, 256, (1, c, 6, 6)).astype(np.uint8)
    got, fmts = _sieve(model, x)
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])
    want_group = block if block and block < c else 0
    assert [(f.bits, f.group) for f in fmts] == [(4, want_group)]


@SETTINGS
@given(c=st.sampled_from([16, 32, 64]), n=st.integers(1, 20), block=st.sampled_from([0, 4, 16]),
       unsigned=st.booleans(), gemm=st.booleans(), seed=st.integers(0, 2 ** 16))
@example(c=16, n=1, block=16, unsigned=False, gemm=True, seed=0)      # one block of one column: one scale
def test_int4_qdq_matmul_and_gemm_equal_onnxruntime(c, n, block, unsigned, gemm, seed):
    rng = np.random.default_rng(seed)
    w = _values(rng, (c, n), unsigned)                            # MatMul's [C][N]
    scale = _pow2(rng, (c // block, n)) if block else _pow2(rng, (n,))
    axis = 0 if block else 1
    zp = np.full(scale.shape, 8, np.uint8)
    if gemm:                                                      # Gemm with transB: [N][C], axes swapped
        w, scale, zp, axis = w.T.copy(), scale.T.copy(), zp.T.copy(), 1 - axis
    dq = h.make_node("DequantizeLinear", ["w", "ws"] + (["wz"] if unsigned else []), ["wd"], axis=axis,
                     **({"block_size": block} if block else {}))
    op = h.make_node("Gemm", ["xd", "wd"], ["y"], transB=1) if gemm else h.make_node("MatMul", ["xd", "wd"], ["y"])
    inits = [_int4("w", w, unsigned), nh.from_array(scale, "ws")] + ([_int4("wz", zp, True)] if unsigned else [])
    model = _model([dq, op], inits, [3, c], [3, n])
    x = rng.integers(0, 256, (3, c)).astype(np.uint8)
    got, fmts = _sieve(model, x)
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])
    assert [(f.bits, f.group) for f in fmts] == [(4, block if block and block < c else 0)]


def _nbits(rng, k, n, block, zero_points):
    """A MatMulNBits (and its packed inputs) with power-of-two scales; zero_points: none, 8 or random."""
    blocks = -(-k // block)
    q = rng.integers(0, 16, (n, blocks * block)).astype(np.uint8)
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(n, blocks, block // 2)
    inits = [nh.from_array(packed, "b"), nh.from_array(_pow2(rng, (n * blocks,)), "sc")]
    names = ["xd", "b", "sc"]
    if zero_points != "none":
        zp = np.full((n, blocks + blocks % 2), 8, np.uint8)
        if zero_points == "random":
            zp = rng.integers(0, 16, zp.shape).astype(np.uint8)
        inits.append(nh.from_array((zp[:, 0::2] | (zp[:, 1::2] << 4)).ravel(), "zp"))
        names.append("zp")
    node = h.make_node("MatMulNBits", names, ["y"], domain="com.microsoft", K=k, N=n, bits=4, block_size=block)
    return node, inits


@SETTINGS
@given(k=st.sampled_from([16, 32, 48, 64, 128]), n=st.integers(1, 24), block=st.sampled_from([16, 32]),
       zero_points=st.sampled_from(["none", "8", "random"]), seed=st.integers(0, 2 ** 16))
def test_matmulnbits_equals_onnxruntime(k, n, block, zero_points, seed):
    rng = np.random.default_rng(seed)
    node, inits = _nbits(rng, k, n, block, zero_points)
    model = _model([node], inits, [4, k], [4, n])
    x = rng.integers(0, 256, (4, k)).astype(np.uint8)
    got, fmts = _sieve(model, x)
    np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])
    # values minus a random zero point leave -8..7: those layers hold m * (q - zp) as int8
    assert fmts[0].bits == (8 if zero_points == "random" else 4)


def test_other_scales_are_within_a_step_and_inexact_blocks_are_reported(caplog):
    rng = np.random.default_rng(7)
    w = rng.integers(-8, 8, (16, 64)).astype(np.int8)
    per_channel = (rng.random(16) * 0.02 + 0.005).astype(np.float32)
    blocks = (rng.random((16, 4)) * 0.02 + 0.005).astype(np.float32)
    x = rng.integers(0, 256, (8, 64)).astype(np.uint8)
    for scale, kw in ((per_channel, {"axis": 0}), (blocks, {"axis": 1, "block_size": 16})):
        caplog.clear()
        dq = h.make_node("DequantizeLinear", ["w", "ws"], ["wd"], **kw)
        model = _model([dq, h.make_node("Gemm", ["xd", "wd"], ["y"], transB=1)],
                       [_int4("w", w), nh.from_array(scale, "ws")], [8, 64], [8, 16])
        with caplog.at_level(logging.WARNING, logger="sieve"):
            got, fmts = _sieve(model, x)
        diff = np.abs(got.astype(int) - ort_run(model, {"x": x})[0])
        assert fmts[0].bits == 4
        assert diff.max() <= (1 if scale is per_channel else 2)
        assert ("not integer multiples" in caplog.text) == (scale is blocks)


def test_weight_only_matmulnbits_in_a_float_model_keeps_its_int4_grid():
    from sieve import api
    from sieve.pipeline import compile_model
    rng = np.random.default_rng(3)
    node, inits = _nbits(rng, 64, 10, 32, "8")
    node.input[0] = "x"
    g = h.make_graph([node, h.make_node("Relu", ["y"], ["out"])], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [2, 64])], [h.make_tensor_value_info("out", T.FLOAT, [2, 10])],
                     inits)
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 21), h.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    graph = import_model(model)
    dense = next(n for n in graph if n.op.value == "dense")
    assert dense.attrs["w_bits"] == 4 and dense.attrs["w_group"] == 32
    x = rng.standard_normal((64, 64)).astype(np.float32) * 2
    want = ort_run(model, {"x": x[:2]})[0]
    for weights in ("int8", "int4"):                  # the model's own int4 weights either way
        result = compile_model(graph, ARCH, calibrate=x, weights=weights)
        q = next(n for n in result.qgraph if n.op.value == "dense")
        w_ints = q.params["w"].astype(np.int64)
        mult = np.repeat(q.params["w_mult"].astype(np.int64), 32, axis=1)
        assert (w_ints % mult == 0).all() and (np.abs(w_ints // mult) <= 8).all()
        got = next(iter(api.simulate(result.program, x[:2]).floats.values()))
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def _set_bits(node, inits):
    next(a for a in node.attribute if a.name == "bits").i = 8


def _short_b(node, inits):
    inits[0] = nh.from_array(np.zeros((4, 2, 4), np.uint8), "b")


@pytest.mark.parametrize("change, message", [
    (_set_bits, "bits=8 is not supported"),
    (_short_b, "B must be uint8"),
    (lambda n, i: n.input.extend(["", "gidx"]), "g_idx that reorders"),
])
def test_matmulnbits_errors_name_the_node(change, message):
    rng = np.random.default_rng(0)
    node, inits = _nbits(rng, 32, 4, 16, "none")
    inits.append(nh.from_array((np.arange(32) % 2).astype(np.int32), "gidx"))
    change(node, inits)
    model = _model([node], inits, [1, 32], [1, 4])
    with pytest.raises(FrontendError, match=message):
        import_model(model)


def test_a_batch_norm_folded_into_int4_weights_takes_them_off_the_grid(caplog):
    rng = np.random.default_rng(1)
    w = rng.integers(-8, 8, (4, 3, 3, 3)).astype(np.int8)
    bn = [nh.from_array(v.astype(np.float32), n) for n, v in
          (("g", -rng.random(4) - 0.5), ("b", rng.random(4)), ("m", rng.random(4)), ("v", rng.random(4) + 0.5))]
    g = h.make_graph([h.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0),
                      h.make_node("Conv", ["x", "wd"], ["c"], pads=[1, 1, 1, 1]),
                      h.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"])], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 6, 6])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 6, 6])],
                     [_int4("w", w), nh.from_array(_pow2(rng, (4,)), "ws"), *bn])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    model.ir_version = 10
    with caplog.at_level(logging.WARNING, logger="sieve"):
        graph = import_model(model)
    conv = next(n for n in graph if n.op.value == "conv2d")
    assert "w_bits" not in conv.attrs and "w_step" not in conv.params
    assert "off their grid" in caplog.text
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    from sieve.api import interpret
    got = next(iter(interpret(graph, x, float_model=True).floats.values()))
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale, message", [
    (np.inf, "scale inf is not a finite positive"), (np.nan, "scale nan is not a finite positive"),
    (1e-45, "is not a finite positive float32 of at least"), (-0.5, "scale -0.5 is not"),
    (3e38, "overflow float32")])
def test_broken_low_bit_scales_are_one_clear_error(scale, message):
    """Found by the long fuzz run: a non-finite, negative, subnormal or huge scale of int4 weights reached
    numpy as RuntimeWarnings and NaN weights."""
    rng = np.random.default_rng(0)
    node, inits = _nbits(rng, 32, 4, 16, "none")
    inits[1] = nh.from_array(np.array([scale] + [0.01] * 7, np.float32), "sc")
    with pytest.raises(FrontendError, match=message):
        import_model(_model([node], inits, [1, 32], [1, 4]))
    w = rng.integers(-8, 8, (4, 3, 1, 1)).astype(np.int8)
    g = h.make_graph([h.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0),
                      h.make_node("Conv", ["x", "wd"], ["y"])], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 2, 2])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 4, 2, 2])],
                     [_int4("w", w), nh.from_array(np.array([scale, 1, 1, 1], np.float32), "ws")])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 21)])
    model.ir_version = 10
    with pytest.raises(FrontendError, match=message):
        import_model(model)
