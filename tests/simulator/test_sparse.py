"""Sparse weights end to end: bit-exact on random shapes and patterns, zoo models at several
sparsities on two archs, and a cycle count computed by hand."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve.arch import load_arch
from sieve.codegen import generate
from sieve.frontend import build
from sieve.ir import GraphBuilder, Op, quantize_inputs, run_int
from sieve.ir.passes import prune_magnitude, prune_nm
from sieve.scheduler import schedule
from sieve.simulator import run
from tests.helpers import check_bitexact, quantize, random_calibration, small_arch
from tests.simulator.test_ops_bitexact import archs

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(arch=archs(), conv=st.booleans(), c=st.integers(1, 24), k=st.integers(1, 40), hw=st.integers(1, 8),
       sparsity=st.sampled_from([0.5, 0.9, 0.99, 1.0]), zero_rows=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_random_sparse_layers_bitexact(arch, conv, c, k, hw, sparsity, zero_rows, seed):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("sparse")
    if conv:
        b.input("x", (1, c, hw, hw))
        w = rng.standard_normal((k, c, 3, 3))
        attrs = {"out_channels": k, "kernel": 3, "pad": 1}
    else:
        b.input("x", (hw, c * 4))
        w = rng.standard_normal((k, c * 4))
        attrs = {"out_features": k}
    w[rng.random(w.shape) < sparsity] = 0                   # 1.0: a layer that is entirely zero
    w[:min(zero_rows, k)] = 0                               # output channels with no nonzero at all
    b.add("y", Op.CONV2D if conv else Op.DENSE, ["x"], attrs, {"w": w, "b": rng.standard_normal(k)})
    g = b.build(["y"])
    q = quantize(g, random_calibration(g, rng))
    check_bitexact(q, arch, random_calibration(g, rng, g.inputs[0].out.shape[0]))


@pytest.mark.parametrize("model", ["mlp", "lenet5", "resnet18", "resnet50", "mobilenetv2", "vgg16"])
@pytest.mark.parametrize("prune", ["0", "0.5", "0.9", "0.99", "2:4"])
@pytest.mark.parametrize("arch", ["default", "edge"])
def test_zoo_models_bitexact_when_pruned(model, prune, arch):
    rng = np.random.default_rng(1)
    g = build(model) if model in ("mlp", "lenet5") else build(model, size=32, classes=10)
    g = prune_nm(g, 2, 4) if prune == "2:4" else prune_magnitude(g, float(prune))
    q = quantize(g, random_calibration(g, rng, 4))
    result = check_bitexact(q, load_arch(arch), random_calibration(g, rng, 1))
    ev = result.stats.events
    if prune in ("0.9", "0.99") and model != "mobilenetv2":
        assert ev["macs"] < 0.2 * ev["dense_macs"]           # the zeros are skipped, not multiplied
    elif prune in ("0.9", "0.99", "2:4"):
        assert ev["macs"] < ev["dense_macs"]                 # (depthwise layers are not pruned)
    # at 50 % the cost model may rightly keep a DMA-bound layer dense: packed bytes would cost more


def test_sparse_cycles_match_hand_count():
    """Rows with 5, 0, 9, 1 nonzeros on 4 lanes are 2, 0, 3, 1 groups; balanced on 2 PE rows the
    batches cost 3 and 1 groups; 3 output columns: 4 * 3 cycles plus the pipeline fill."""
    arch = small_arch(pe_rows=2, simd_lanes=4, scratchpad_bytes=65536, accumulator_bytes=4096)
    w = np.zeros((4, 16))
    for row, nnz in enumerate((5, 0, 9, 1)):
        w[row, :nnz] = np.arange(1, nnz + 1)
    b = GraphBuilder("hand")
    b.input("x", (3, 16))
    b.add("y", Op.DENSE, ["x"], {"out_features": 4}, {"w": w})
    g = b.build(["y"])
    q = quantize(g, random_calibration(g, np.random.default_rng(0)))
    sched = schedule(q, arch, formats=("unstructured",))
    assert sched.plan("y").geom.fmt.kind == "unstructured"
    x = quantize_inputs(q, random_calibration(g, np.random.default_rng(1), 3))
    result = run(generate(sched), x)
    np.testing.assert_array_equal(result.outputs["y"], run_int(q, x)["y"])
    layer = result.stats.layers[0]
    assert layer.mac_cycles == 4 * 3 + arch.core.matmul_fill_cycles
    assert layer.events["macs"] == 15 * 3 and layer.events["dense_macs"] == 64 * 3
    assert layer.events["lane_slots"] == 6 * 4 * 3                       # 6 groups of 4 lanes
    assert layer.events["metadata_bytes"] == 4 * 4 + 2 * 6 * 4           # row table + u16 indices


def test_two_four_halves_the_mac_array_time():
    rng = np.random.default_rng(0)
    b = GraphBuilder("nm")
    b.input("x", (1, 64, 8, 8))
    b.add("y", Op.CONV2D, ["x"], {"out_channels": 64, "kernel": 3, "pad": 1}, {"w": rng.standard_normal((64, 64, 3, 3))})
    g = b.build(["y"])
    arch = load_arch("default")
    dense = quantize(g, random_calibration(g, rng))
    sparse = quantize(prune_nm(g, 2, 4), random_calibration(g, rng))
    d = run(generate(schedule(dense, arch)), functional=False).stats.layers[0]
    s = run(generate(schedule(sparse, arch)), functional=False).stats.layers[0]
    assert schedule(sparse, arch).plan("y").geom.fmt.kind == "nm"
    assert d.mac_cycles / s.mac_cycles >= 1.9
