"""The transformer ops: simulator == reference interpreter bit for bit over shapes, scales, archs, cores and
partitions (hypothesis) — views copied by MOVE (any permutation, reshape, slice of a tensor, through every
memory order), the integer-only LayerNorm and softmax; and their integer rules against float."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve.ir import GraphBuilder, Op, run_float
from sieve.ir.registry import row_major
from sieve_numerics import integer as Q
from tests.helpers import check_bitexact, quantize, random_calibration
from tests.simulator.test_vector_ops import ARCHS, _arch


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, dims=st.lists(st.integers(1, 5), min_size=3, max_size=3), data=st.data(),
       image=st.booleans(), partition=st.sampled_from(["auto", "pipeline"]), seed=st.integers(0, 2**16))
def test_views_are_bitexact(arch, dims, data, image, partition, seed):
    """A conv (its output stored channels-last) or a dense layer, then a random permutation of a random
    reshape of it, sliced, copied by a MOVE and read by a dense layer."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("views")
    if image:                                             # [1, C, H, W], stored [1, H, W, C]
        c, h, w = dims[0] + 1, dims[1], dims[-1]
        b.input("x", (1, c, h, w))
        b.add("src", Op.CONV2D, ["x"], {"out_channels": c, "kernel": 1}, {"w": rng.standard_normal((c, c, 1, 1))})
        shape = (1, c, h, w)
    else:                                                 # [1, T, D], seen as [1, T, D1, D2] (heads)
        t, f = dims[0], dims[1] * dims[2]
        b.input("x", (1, t, f))
        b.add("src", Op.DENSE, ["x"], {"out_features": f}, {"w": rng.standard_normal((f, f))})
        shape = (1, t, dims[1], dims[2])
    perm = data.draw(st.permutations(range(len(shape))))
    view_shape = tuple(shape[p] for p in perm)
    strides = tuple(row_major(shape)[p] for p in perm)
    axis = data.draw(st.integers(0, len(shape) - 1))          # keep a part of one axis
    start = data.draw(st.integers(0, view_shape[axis] - 1))
    count = data.draw(st.integers(1, view_shape[axis] - start))
    offset = start * strides[axis]
    view_shape = view_shape[:axis] + (count,) + view_shape[axis + 1:]
    n = int(np.prod(view_shape))
    b.add("view", Op.MOVE, ["src"], {"shape": view_shape, "strides": strides, "offset": offset, "to": (1, n)})
    b.add("y", Op.DENSE, ["view"], {"out_features": 3}, {"w": rng.standard_normal((3, n))})
    g = b.build(["y"])
    x = rng.standard_normal(g.inputs[0].out.shape).astype(np.float32)
    src = run_float(g, {"x": x}, keep_all=True)
    want = np.lib.stride_tricks.as_strided(src["src"].ravel()[offset:], view_shape,
                                           tuple(4 * s for s in strides)).reshape(1, n)
    np.testing.assert_array_equal(run_float(g, {"x": x}, keep_all=True)["view"], want)
    q = quantize(g, random_calibration(g, rng, 4))
    check_bitexact(q, _arch(arch), random_calibration(g, rng, 1), partition=partition)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=ARCHS, b=st.integers(1, 3), t=st.integers(1, 20), d=st.integers(2, 300), spread=st.floats(0.05, 8.0),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]), partition=st.sampled_from(["auto", "pipeline"]),
       seed=st.integers(0, 2**16))
def test_layernorm_and_softmax_are_bitexact(arch, b, t, d, spread, eps, partition, seed):
    """dense -> LayerNorm -> softmax -> dense on [B, T, D], at scales set by ``spread``."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder("rows")
    g.input("x", (b, t, d))
    g.add("s", Op.DENSE, ["x"], {"out_features": d}, {"w": rng.standard_normal((d, d)) * spread / np.sqrt(d)})
    g.add("ln", Op.LAYERNORM, ["s"], {"eps": eps}, {"gamma": rng.standard_normal(d) * spread,
                                                    "beta": rng.standard_normal(d)})
    g.add("p", Op.QSOFTMAX, ["ln"])
    g.add("y", Op.DENSE, ["p"], {"out_features": 3}, {"w": rng.standard_normal((3, d))})
    graph = g.build(["y"])
    q = quantize(graph, random_calibration(graph, rng, 2))
    assert {n.attrs["arith"] for n in q if n.op is Op.QSOFTMAX} == {"int"}
    check_bitexact(q, _arch(arch), random_calibration(graph, rng, b), partition=partition)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(2, 1024), spread=st.floats(0.01, 20.0), zp=st.integers(-60, 60), seed=st.integers(0, 2**16))
def test_integer_layernorm_is_within_a_step_of_float(d, spread, zp, seed):
    """On the int8 input's own values: the integer LayerNorm lands within one output step of the float
    LayerNorm of the same values (half a step is the output's rounding)."""
    rng = np.random.default_rng(seed)
    x = np.clip(np.rint(rng.standard_normal((6, d)) * 30) + zp, -128, 127).astype(np.int8)
    sx = spread / 40
    g, beta = rng.standard_normal(d), rng.standard_normal(d) * 0.2
    xf = (x.astype(np.float64) - zp) * sx
    want = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + 1e-5) * g + beta
    sy = np.abs(want).max() / 127
    gq, bq, eps_q, m = Q.int_layernorm_params(g, beta, 1e-5, d, sx, sy)
    got = Q.int_layernorm(x, zp, gq, bq, eps_q, m, 0).astype(np.float64) * sy
    assert np.abs(got - want).max() <= sy * 1.0 + 1e-9


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 1000), sx=st.floats(0.001, 1.0), seed=st.integers(0, 2**16))
def test_integer_softmax_is_within_a_step_of_float(d, sx, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (5, d)).astype(np.int8)
    xf = x.astype(np.float64) * sx
    e = np.exp(xf - xf.max(-1, keepdims=True))
    want = e / e.sum(-1, keepdims=True)
    got = (Q.int_softmax(x, Q.int_softmax_table(sx), 1 / 255, -128).astype(np.float64) + 128) / 255
    assert np.abs(got - want).max() <= 1 / 255 * 0.5 + 1e-4
