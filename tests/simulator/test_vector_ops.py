"""Element-wise functions (LUT) and products of two activations (MUL): simulator == reference bit for bit
over shapes, scales, functions, archs, cores and partitions; MUL's three arithmetics equal onnxruntime."""
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import helper

from sieve.arch import load_arch, with_overrides
from sieve.ir import GraphBuilder, Op
from sieve.ir.interpret import run_int
from sieve.ir.types import DType, QuantParams
from sieve_numerics.tables import FUNCTIONS
from tests.helpers import check_bitexact, quantize, random_calibration, small_arch
from tests.onnx.ort_models import elem, finish, ort_run

# functions with parameters: a LeakyRelu slope, a pointwise chain (GELU as PyTorch exports it, by erf)
FN_PARAMS = {"leaky_relu": {"alpha": 0.1}, "expr": {"program": "x 1.4142135 div erf 1.0 add 0.5 mul x mul"}}
ARCHS = st.sampled_from(["small", "default", "multicore", "own_path"])


def _arch(name: str):
    if name == "small":
        return small_arch()
    if name == "own_path":
        return with_overrides(load_arch("multicore"), {"core.vector_own_path": True})
    return load_arch(name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, fn=st.sampled_from(sorted(FUNCTIONS)), n=st.integers(1, 3), c=st.integers(1, 24),
       hw=st.integers(1, 9), per_channel=st.booleans(), partition=st.sampled_from(["auto", "pipeline"]),
       spread=st.floats(0.1, 8.0), seed=st.integers(0, 2**16))
def test_lut_and_mul_are_bitexact(arch, fn, n, c, hw, per_channel, partition, spread, seed):
    """conv -> f(.) -> x · f(x) (or x · gate per channel, squeeze-and-excite) at scales set by ``spread``."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("vec")
    b.input("x", (n, c, hw, hw))
    b.add("conv", Op.CONV2D, ["x"], {"out_channels": c, "kernel": 1},
          {"w": rng.standard_normal((c, c, 1, 1)) * spread})
    b.add("f", Op.LUT, ["conv"], {"fn": fn, **FN_PARAMS.get(fn, {})})
    if per_channel:
        b.add("pool", Op.GLOBALAVGPOOL, ["f"])
        b.add("gate", Op.LUT, ["pool"], {"fn": "sigmoid"})
        b.add("y", Op.MUL, ["conv", "gate"])
    else:
        b.add("y", Op.MUL, ["f", "conv"])
    g = b.build(["y"])
    q = quantize(g, random_calibration(g, rng, 4))
    ops = [nd.op for nd in q]
    if fn == "sigmoid" and not per_channel:                  # x · sigmoid(x) became one SiLU table
        assert Op.MUL not in ops and [nd.attrs["fn"] for nd in q if nd.op is Op.LUT] == ["silu"]
    else:
        assert Op.LUT in ops and Op.MUL in ops
    check_bitexact(q, _arch(arch), random_calibration(g, rng, n), partition=partition)


def test_lut_takes_every_table_entry_to_the_simulator():
    """All 256 int8 values through one table (no calibration luck): the simulator reads the table as stored."""
    b = GraphBuilder("all")
    b.input("x", (1, 256), DType.INT8, QuantParams.per_tensor(0.008, 3))
    from sieve_numerics.tables import build_table
    b.add("y", Op.LUT, ["x"], {"fn": "tanh"}, {"table": build_table("tanh", {}, 0.008, 3, 1 / 128, 0)},
          DType.INT8, QuantParams.per_tensor(1 / 128, 0))
    q = b.build(["y"])
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    ref = run_int(q, {"x": x})["y"]
    assert len(np.unique(ref)) > 150                               # tanh at this scale: nearly one-to-one
    from sieve.codegen import generate
    from sieve.scheduler import schedule
    from sieve.simulator import run
    got = run(generate(schedule(q, small_arch())), {"x": x}).outputs["y"]
    np.testing.assert_array_equal(got, ref)


def _mul_model(a_dtype, b_dtype, y_dtype, b_shape, sa, za, sb, zb, sy, zy):
    inits = {"sa": np.float32(sa), "za": np.array(za, a_dtype), "sb": np.float32(sb), "zb": np.array(zb, b_dtype),
             "sy": np.float32(sy), "zy": np.array(zy, y_dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["af"]),
             helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["bf"]),
             helper.make_node("Mul", ["af", "bf"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "sy", "zy"], ["y"])]
    return finish(nodes, [helper.make_tensor_value_info("a", elem(a_dtype), [2, 8, 5, 5]),
                          helper.make_tensor_value_info("b", elem(b_dtype), b_shape)],
                  [helper.make_tensor_value_info("y", elem(y_dtype), [2, 8, 5, 5])], inits)


@pytest.mark.parametrize("types", [("u8", "u8", "u8"), ("s8", "s8", "s8"), ("s8", "u8", "u8")])
@settings(max_examples=15, deadline=None)
@given(per_channel=st.booleans(), seed=st.integers(0, 2**16))
def test_mul_equals_onnxruntime(types, per_channel, seed):
    """QLinearMul in uint8 and in int8, and (mixed types) the float DequantizeLinear -> Mul -> QuantizeLinear."""
    import sieve
    rng = np.random.default_rng(seed)
    dt = {"u8": np.uint8, "s8": np.int8}
    ad, bd, yd = (dt[t] for t in types)
    lim = {np.uint8: (0, 256), np.int8: (-128, 128)}
    sa, sb = (float(np.float32(10 ** rng.uniform(-3, -1))) for _ in range(2))
    # products of up to 255 x 255 steps land on about 50 to 400 output steps: a spread, some saturating
    sy = float(np.float32(sa * sb * 255 * 255 / rng.uniform(50, 400)))
    za, zb, zy = (int(rng.integers(*lim[d])) for d in (ad, bd, yd))
    b_shape = [2, 8, 1, 1] if per_channel else [2, 8, 5, 5]
    model = _mul_model(ad, bd, yd, b_shape, sa, za, sb, zb, sy, zy)
    a = rng.integers(*lim[ad], (2, 8, 5, 5)).astype(ad)
    bv = rng.integers(*lim[bd], b_shape).astype(bd)
    (want,) = ort_run(model, {"a": a, "b": bv})
    program = sieve.compile(model, dense_twin=False)
    res = sieve.simulate(program, {"a": a, "b": bv})
    (name, got), = res.model_outputs().items()                # in the model's own type
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 2                              # not all saturated


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, b=st.integers(1, 3), t=st.integers(1, 17), d=st.integers(1, 40), o=st.integers(1, 24),
       partition=st.sampled_from(["auto", "pipeline"]), seed=st.integers(0, 2**16))
def test_linear_on_token_tensors_is_bitexact(arch, b, t, d, o, partition, seed):
    """[B, T, D] x [D, O] (nn.Linear on tokens): one weight matrix for every token, then a token-wise
    function and a second projection."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder("tokens")
    g.input("x", (b, t, d))
    g.add("proj", Op.DENSE, ["x"], {"out_features": o}, {"w": rng.standard_normal((o, d)) * 0.3})
    g.add("act", Op.LUT, ["proj"], {"fn": "tanh"})
    g.add("out", Op.DENSE, ["act"], {"out_features": 5}, {"w": rng.standard_normal((5, o))})
    graph = g.build(["out"])
    assert graph["out"].out.shape == (b, t, 5)
    q = quantize(graph, random_calibration(graph, rng, 4))
    check_bitexact(q, _arch(arch), random_calibration(graph, rng, b), partition=partition)


def test_onnx_matmul_on_token_tensors_imports(tmp_path):
    """A float MatMul + Add bias on [batch, tokens, features], as PyTorch exports nn.Linear on 3-D input."""
    import sieve
    rng = np.random.default_rng(0)
    inits = {"W": (rng.standard_normal((32, 16)) * 0.2).astype(np.float32),
             "B": (rng.standard_normal(16) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["y"])]
    model = finish(nodes, [helper.make_tensor_value_info("x", 1, [2, 8, 32])],
                   [helper.make_tensor_value_info("y", 1, [2, 8, 16])], inits)
    x = rng.standard_normal((8, 8, 32)).astype(np.float32)
    program = sieve.compile(model, calibrate=x, batch=2)
    res = sieve.simulate(program, x[:2])
    (name, got), = res.floats.items()
    want = x[:2] @ inits["W"] + inits["B"]
    assert got.shape == (2, 8, 16)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()      # int8 error only


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, h=st.integers(1, 80), w=st.integers(1, 80), c=st.integers(1, 20),
       partition=st.sampled_from(["auto", "pipeline"]), seed=st.integers(0, 2**16))
def test_squeeze_excite_on_large_maps_is_bitexact(arch, h, w, c, partition, seed):
    """A global average pool over more than 31 x 31 pixels (EfficientNet's early squeeze-and-excite) is
    summed in bands that fit the MATMUL's kernel fields, accumulating, then requantized once."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("se")
    b.input("x", (2, c, h, w))
    b.add("pool", Op.GLOBALAVGPOOL, ["x"])
    b.add("gate", Op.LUT, ["pool"], {"fn": "hard_sigmoid", "alpha": 1 / 6, "beta": 0.5})
    b.add("y", Op.MUL, ["x", "gate"])
    g = b.build(["y"])
    q = quantize(g, random_calibration(g, rng, 2))
    from sieve.scheduler import schedule
    plan = schedule(q, _arch(arch)).layers[1]
    assert plan.geom.band != (0, 0) if max(h, w) > 31 else plan.geom.band == (0, 0)
    check_bitexact(q, _arch(arch), random_calibration(g, rng, 2), partition=partition)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, b=st.integers(1, 3), t=st.integers(1, 40), d=st.integers(1, 48), which=st.integers(0, 2),
       partition=st.sampled_from(["auto", "pipeline"]), seed=st.integers(0, 2**16))
def test_constants_broadcast_over_leading_axes_are_bitexact(arch, b, t, d, which, partition, seed):
    """A constant repeating over the leading axes (a bias [D], position embeddings [T, D] or [1, T, D])
    added to and multiplied with [B, T, D]: tiles are whole periods or divide the period."""
    rng = np.random.default_rng(seed)
    shape = [(d,), (t, d), (1, t, d)][which]
    g = GraphBuilder("bcast")
    g.input("x", (b, t, d))
    g.add("proj", Op.DENSE, ["x"], {"out_features": d}, {"w": rng.standard_normal((d, d)) * 0.3})
    g.add("pos", Op.CONST, [], {}, {"value": rng.standard_normal(shape)})
    g.add("sum", Op.ADD, ["proj", "pos"])
    g.add("y", Op.MUL, ["sum", "pos"])
    graph = g.build(["y"])
    q = quantize(graph, random_calibration(graph, rng, 2))
    assert q["pos"].params["value"].dtype == np.int8
    check_bitexact(q, _arch(arch), random_calibration(graph, rng, b), partition=partition)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, b=st.integers(1, 3), m=st.integers(1, 40), k=st.integers(1, 80), n=st.integers(1, 40),
       tb=st.booleans(), partition=st.sampled_from(["auto", "pipeline"]), seed=st.integers(0, 2**16))
def test_product_of_two_activations_is_bitexact(arch, b, m, k, n, tb, partition, seed):
    """[B, M, K] x [B, K, N] (attention's Q·Kᵀ and P·V): the second operand widened to int16 weights
    (b − zb, transposed) by WIDEN, multiplied by the MAC array, both zero points honoured."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder("bmm")
    g.input("q", (b, m, k))
    g.input("kt", (b, n, k) if tb else (b, k, n))              # transpose_b: K stored [N][K] (Q·Kᵀ)
    g.add("s", Op.BMM, ["q", "kt"], {"transpose_b": tb})
    g.add("y", Op.LUT, ["s"], {"fn": "tanh"})
    graph = g.build(["y"])
    q = quantize(graph, random_calibration(graph, rng, 2))
    check_bitexact(q, _arch(arch), random_calibration(graph, rng, b), partition=partition)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, b=st.integers(1, 3), t=st.integers(1, 30), d=st.integers(1, 200), spread=st.floats(0.1, 4.0),
       partition=st.sampled_from(["auto", "pipeline"]), seed=st.integers(0, 2**16))
def test_softmax_inside_the_network_is_bitexact(arch, b, t, d, spread, partition, seed):
    """Rows of a [B, T, D] tensor through QLinearSoftmax's arithmetic, between two products."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder("softmax")
    g.input("x", (b, t, d))
    g.add("s", Op.DENSE, ["x"], {"out_features": d}, {"w": rng.standard_normal((d, d)) * spread})
    g.add("p", Op.QSOFTMAX, ["s"])
    g.add("y", Op.DENSE, ["p"], {"out_features": 3}, {"w": rng.standard_normal((3, d))})
    graph = g.build(["y"])
    q = quantize(graph, random_calibration(graph, rng, 2))
    check_bitexact(q, _arch(arch), random_calibration(graph, rng, b), partition=partition)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, n=st.integers(1, 2), c=st.integers(1, 20), h=st.integers(1, 9), w=st.integers(1, 9),
       sh=st.integers(1, 4), sw=st.integers(1, 4), coord=st.sampled_from(["half_pixel", "pytorch_half_pixel",
                                                                          "align_corners", "asymmetric"]),
       partition=st.sampled_from(["auto", "pipeline"]), seed=st.integers(0, 2**16))
# a part that starts mid-way (core 1's rows 5..9 of 20) straddles one input row more than bands from row 0:
# its input slot was sized for two rows and the load of three overran the next slot
@example(arch="multicore", n=1, c=13, h=5, w=9, sh=4, sw=4, coord="half_pixel", partition="auto", seed=0)
def test_bilinear_resize_is_bitexact(arch, n, c, h, w, sh, sw, coord, partition, seed):
    """conv -> bilinear resize -> conv, every coordinate mode, factors per axis, through the simulator; the
    integer interpolation (10-bit weights per axis) within one step of the float one on the same integers."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("lerp")
    b.input("x", (n, c, h, w))
    b.add("conv", Op.CONV2D, ["x"], {"out_channels": c, "kernel": 1}, {"w": rng.standard_normal((c, c, 1, 1))})
    b.add("up", Op.RESIZE, ["conv"], {"scale": (sh, sw), "mode": "linear", "coord": coord})
    b.add("y", Op.CONV2D, ["up"], {"out_channels": 2, "kernel": 1}, {"w": rng.standard_normal((2, c, 1, 1))})
    g = b.build(["y"])
    q = quantize(g, random_calibration(g, rng, 4))
    result = check_bitexact(q, _arch(arch), random_calibration(g, rng, n), partition=partition)
    assert result.stats.cycles > 0
    from sieve.ir.registry import opdef
    node, src = q["up"], q["conv"].out
    xi = rng.integers(-128, 128, src.shape).astype(np.int8)
    got = opdef(Op.RESIZE).ref_int(node, [xi], [src]).astype(np.float64)
    want = opdef(Op.RESIZE).ref_float(node, [xi.astype(np.float32) - src.quant.zp]) + src.quant.zp
    assert np.abs(got - want).max() <= 1.0
