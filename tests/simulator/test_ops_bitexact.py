"""Each op: simulator output equals the integer reference, bit for bit, across shapes and archs,
including tiles that do not divide the tensor evenly (small scratchpads force many tiles)."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve.ir import GraphBuilder, Op
from tests.helpers import check_bitexact, quantize, random_calibration, small_arch

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def archs(draw):
    return small_arch(pe_rows=draw(st.sampled_from([1, 3, 4, 16])),
                      simd_lanes=draw(st.sampled_from([1, 4, 8, 16])),
                      scratchpad_bytes=draw(st.sampled_from([4096, 8192, 65536])),
                      accumulator_bytes=draw(st.sampled_from([1024, 4096])),
                      vector_lanes=draw(st.sampled_from([1, 8])),
                      dram_bytes_per_cycle=draw(st.sampled_from([1.0, 8.0, 32.0])),
                      dram_latency_cycles=draw(st.sampled_from([0, 50])))


def _run(b: GraphBuilder, out: str, arch, seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = b.build([out])
    q = quantize(g, random_calibration(g, rng))
    check_bitexact(q, arch, random_calibration(g, rng, n=g.inputs[0].out.shape[0]))


@SETTINGS
@given(arch=archs(), n=st.integers(1, 2), c=st.integers(1, 20), h=st.integers(1, 11), w=st.integers(1, 11),
       k=st.integers(1, 40), kernel=st.integers(1, 5), stride=st.integers(1, 3), pad=st.integers(0, 2),
       dil=st.integers(1, 2), relu=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d(arch, n, c, h, w, k, kernel, stride, pad, dil, relu, seed):
    span = dil * (kernel - 1) + 1
    if span > h + 2 * pad or span > w + 2 * pad:
        kernel, dil = 1, 1
    rng = np.random.default_rng(seed)
    b = GraphBuilder("conv")
    b.input("x", (n, c, h, w))
    b.add("y", Op.CONV2D, ["x"], {"out_channels": k, "kernel": kernel, "stride": stride, "pad": pad,
                                  "dilation": dil, "act": "relu" if relu else "none"},
          {"w": rng.standard_normal((k, c, kernel, kernel)), "b": rng.standard_normal(k)})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), pads=st.tuples(*[st.integers(0, 3)] * 4), seed=st.integers(0, 2**16))
def test_conv2d_asymmetric_padding(arch, pads, seed):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("conv")
    b.input("x", (1, 5, 7, 6))
    b.add("y", Op.CONV2D, ["x"], {"out_channels": 7, "kernel": (3, 2), "stride": (2, 1), "pad": pads},
          {"w": rng.standard_normal((7, 5, 3, 2))})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), n=st.integers(1, 4), c=st.integers(1, 300), k=st.integers(1, 70), relu=st.booleans(),
       seed=st.integers(0, 2**16))
def test_dense(arch, n, c, k, relu, seed):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("dense")
    b.input("x", (n, c))
    b.add("y", Op.DENSE, ["x"], {"out_features": k, "act": "relu" if relu else "none"},
          {"w": rng.standard_normal((k, c)), "b": rng.standard_normal(k)})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), n=st.integers(1, 2), c=st.integers(1, 40), h=st.integers(2, 14), w=st.integers(2, 14),
       kernel=st.integers(1, 3), stride=st.integers(1, 3), pad=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_maxpool(arch, n, c, h, w, kernel, stride, pad, seed):
    kernel = min(kernel, h, w)
    pad = min(pad, kernel // 2)
    b = GraphBuilder("pool")
    b.input("x", (n, c, h, w))
    b.add("y", Op.MAXPOOL, ["x"], {"kernel": kernel, "stride": stride, "pad": pad})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), shape=st.sampled_from([(1, 7), (3, 100), (1, 3, 5, 5), (2, 16, 9, 9), (1, 600)]),
       relu=st.booleans(), seed=st.integers(0, 2**16))
def test_add(arch, shape, relu, seed):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("add")
    b.input("x", shape)
    # the two operands get different scales: one passes through a 1x1 conv / dense
    if len(shape) == 4:
        b.add("t", Op.CONV2D, ["x"], {"out_channels": shape[1], "kernel": 1},
              {"w": 3 * rng.standard_normal((shape[1], shape[1], 1, 1))})
    else:
        b.add("t", Op.DENSE, ["x"], {"out_features": shape[1]}, {"w": 3 * rng.standard_normal((shape[1], shape[1]))})
    b.add("y", Op.ADD, ["t", "x"], {"act": "relu" if relu else "none"})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), shape=st.sampled_from([(1, 7), (2, 3, 4, 5), (1, 5000)]), seed=st.integers(0, 2**16))
def test_relu_standalone(arch, shape, seed):
    b = GraphBuilder("relu")
    b.input("x", shape)
    b.add("y", Op.RELU, ["x"])        # follows an input: nothing to fuse into, runs on the vector unit
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), c=st.integers(1, 8), h=st.integers(1, 6), w=st.integers(1, 6), k=st.integers(1, 12),
       seed=st.integers(0, 2**16))
def test_flatten_then_dense(arch, c, h, w, k, seed):
    """The dense weights are re-ordered to the channel-last memory order of the flattened tensor."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("flat")
    b.input("x", (1, c, h, w))
    b.add("f", Op.FLATTEN, ["x"])
    b.add("y", Op.DENSE, ["f"], {"out_features": k}, {"w": rng.standard_normal((k, c * h * w))})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), seed=st.integers(0, 2**16))
def test_flatten_as_graph_output(arch, seed):
    b = GraphBuilder("flatout")
    b.input("x", (1, 3, 4, 5))
    b.add("p", Op.MAXPOOL, ["x"], {"kernel": 2, "stride": 1})
    b.add("f", Op.FLATTEN, ["p"])
    _run(b, "f", arch, seed)


@SETTINGS
@given(arch=archs(), n=st.integers(1, 2), c=st.integers(1, 24), h=st.integers(1, 10), w=st.integers(1, 10),
       kernel=st.integers(1, 5), stride=st.integers(1, 2), pad=st.integers(0, 2), mult=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_depthwise_and_grouped_conv(arch, n, c, h, w, kernel, stride, pad, mult, seed):
    """groups == channels runs on the depthwise MATMUL; a channel multiplier of 2 runs per group."""
    if kernel > h + 2 * pad or kernel > w + 2 * pad:
        kernel = 1
    rng = np.random.default_rng(seed)
    b = GraphBuilder("dw")
    b.input("x", (n, c, h, w))
    b.add("y", Op.CONV2D, ["x"], {"out_channels": c * mult, "kernel": kernel, "stride": stride, "pad": pad,
                                  "groups": c, "act": "relu"},
          {"w": rng.standard_normal((c * mult, 1, kernel, kernel)), "b": rng.standard_normal(c * mult)})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), groups=st.sampled_from([2, 3]), cg=st.integers(1, 5), kg=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_grouped_conv(arch, groups, cg, kg, seed):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("grouped")
    b.input("x", (1, groups * cg, 6, 7))
    b.add("y", Op.CONV2D, ["x"], {"out_channels": groups * kg, "kernel": 3, "pad": 1, "groups": groups},
          {"w": rng.standard_normal((groups * kg, cg, 3, 3))})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), n=st.integers(1, 2), c=st.integers(1, 40), h=st.integers(1, 12), w=st.integers(1, 12),
       seed=st.integers(0, 2**16))
def test_global_average_pool(arch, n, c, h, w, seed):
    b = GraphBuilder("gap")
    b.input("x", (n, c, h, w))
    b.add("y", Op.GLOBALAVGPOOL, ["x"])
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), lo=st.floats(-1.0, 0.0), hi=st.floats(0.5, 3.0), seed=st.integers(0, 2**16))
def test_clip_activation(arch, lo, hi, seed):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("clip")
    b.input("x", (1, 3, 5, 5))
    b.add("y", Op.CONV2D, ["x"], {"out_channels": 6, "kernel": 3, "act": "clip", "clip_min": lo, "clip_max": hi},
          {"w": rng.standard_normal((6, 3, 3, 3))})
    _run(b, "y", arch, seed)


@SETTINGS
@given(arch=archs(), cs=st.lists(st.integers(1, 12), min_size=2, max_size=3), hw=st.integers(1, 7),
       seed=st.integers(0, 2**16))
def test_concat_channels(arch, cs, hw, seed):
    """Inputs with their own scales, requantized into one output scale."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("cat")
    b.input("x", (1, 3, hw, hw))
    parts = []
    for i, c in enumerate(cs):
        parts.append(b.add(f"c{i}", Op.CONV2D, ["x"], {"out_channels": c, "kernel": 1},
                           {"w": (i + 1) * rng.standard_normal((c, 3, 1, 1))}))
    b.add("y", Op.CONCAT, parts, {"axis": 1})
    _run(b, "y", arch, seed)


def test_softmax_runs_on_the_host():
    from tests.helpers import quantize as q_model
    rng = np.random.default_rng(0)
    b = GraphBuilder("sm")
    b.input("x", (2, 8))
    b.add("logits", Op.DENSE, ["x"], {"out_features": 5}, {"w": rng.standard_normal((5, 8))})
    b.add("p", Op.SOFTMAX, ["logits"])
    g = b.build(["p"])
    q = q_model(g, random_calibration(g, rng))
    result = check_bitexact(q, small_arch(), random_calibration(g, rng, 2))
    probs = result.floats["p"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert result.program.outputs[0].post == "softmax"
    assert result.stats.layers[-1].name == "logits"          # no accelerator work for the softmax


@SETTINGS
@given(arch=archs(), c=st.integers(1, 20), hw=st.integers(2, 10), kernel=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_average_pool(arch, c, hw, kernel, stride, pad, seed):
    kernel = min(kernel, hw)
    pad = min(pad, kernel // 2)
    b = GraphBuilder("avg")
    b.input("x", (1, c, hw, hw))
    b.add("y", Op.AVGPOOL, ["x"], {"kernel": kernel, "stride": stride, "pad": pad})
    _run(b, "y", arch, seed)
