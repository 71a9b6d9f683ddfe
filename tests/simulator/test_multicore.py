"""Several cores: bit-exact on every zoo model at 1, 2, 4 and 16 cores, with and without an L2, dense and
sparse, each partition; property tests over shapes, core counts and L2 geometries; the counts add up
per core and per level; the roofline is never beaten."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve.arch import Opcode, load_arch, with_overrides
from sieve.codegen import generate
from sieve.scheduler import schedule
from sieve.frontend import build
from sieve.ir import GraphBuilder, Op
from sieve.ir.passes import prune_magnitude, prune_nm
from sieve.simulator.events import EVENTS
from tests.helpers import check_bitexact, quantize, random_calibration

MODELS = ["mlp", "lenet5", "resnet18", "resnet50", "mobilenetv2", "vgg16"]
PARTITIONS = ["auto", "channels", "rows", "batch", "pipeline"]
CORES = [1, 2, 4, 16]


def multicore(cores: int, l2_bytes: int = 0, **over) -> object:
    values = {"cores": cores, "memory.l2_bytes": l2_bytes, "memory.l2_ways": 8, "memory.l2_banks": 8}
    values.update(over)
    return with_overrides(load_arch("default"), values)


def _graph(model: str):
    return build(model) if model in ("mlp", "lenet5") else build(model, size=32, classes=10)


def _cases():
    """Each model once per partition; across its five runs every core count appears, and about half the
    runs have an L2, half sparse weights, half a vector unit with its own path (a rotating covering
    design, 30 runs in all)."""
    for m, model in enumerate(MODELS):
        for p, partition in enumerate(PARTITIONS):
            yield (model, partition, CORES[(p + m + p // 4) % 4], (p + m) % 2 == 0, (p + m // 2) % 2 == 1,
                   (p + (m + 1) // 2) % 2 == 1)


@pytest.mark.parametrize("model,partition,cores,l2,sparse,own", list(_cases()))
def test_zoo_bitexact_across_cores(model, partition, cores, l2, sparse, own):
    rng = np.random.default_rng(3)
    g = _graph(model)
    if sparse:
        g = prune_nm(g, 2, 4) if model in ("resnet18", "vgg16") else prune_magnitude(g, 0.9)
    q = quantize(g, random_calibration(g, rng, 4))
    arch = multicore(cores, 1 << 20 if l2 else 0, **{"core.vector_own_path": own})
    result = check_bitexact(q, arch, random_calibration(g, rng, 2), partition=partition)
    _check_counts_add_up(result.stats, arch)
    if cores > 1 and partition == "pipeline":       # whole layers, on more than one core
        assert all(len(layer.cores) == 1 for layer in result.stats.layers)
        assert len({c for layer in result.stats.layers for c in layer.cores}) > 1
    elif cores > 1:
        assert max(len(layer.cores) for layer in result.stats.layers) > 1


def test_every_core_count_model_and_l2_appear_in_the_zoo_cases():
    cases = list(_cases())
    for model in MODELS:
        mine = [c for c in cases if c[0] == model]
        assert set(c[2] for c in mine) == set(CORES)
        assert {c[3] for c in mine} == {True, False}
    assert {c[4] for c in cases} == {True, False}
    assert abs(sum(c[5] for c in cases) - len(cases) // 2) <= 3


def _check_counts_add_up(stats, arch):
    """Per core and per level, the counts add up to the totals."""
    for name in EVENTS:
        assert sum(c.events[name] for c in stats.cores) == stats.events[name], name
    for cause in stats.stall_cycles:
        assert sum(c.stall_cycles[cause] for c in stats.cores) == stats.stall_cycles[cause]
    assert sum(c.energy_total_pj for c in stats.cores) == pytest.approx(stats.energy_total_pj)
    assert sum(layer.macs for layer in stats.layers) == stats.macs
    ev, m = stats.events, arch.memory
    if m.l2_bytes:
        l2 = stats.memory["l2"]
        assert l2["hits"] + l2["misses"] == ev["l2_hits"] + ev["l2_misses"]
        assert ev["dram_write_bytes"] == l2["write_backs"] * m.l2_line_bytes
        assert ev["dram_read_bytes"] <= l2["misses"] * m.l2_line_bytes
        assert ev["l2_bytes"] == (ev["l2_hits"] + ev["l2_misses"] + ev["l2_writebacks"]) * m.l2_line_bytes
    else:
        assert stats.memory["l2"] is None and ev["l2_hits"] == ev["l2_misses"] == 0
        assert ev["dram_read_bytes"] % m.dram_burst_bytes == 0
    moved = ev["dram_read_bytes"] + ev["dram_write_bytes"]
    assert stats.memory["dram"]["bandwidth_utilization"] == pytest.approx(moved / (stats.cycles * m.dram_bytes_per_cycle))
    assert moved <= stats.cycles * m.dram_bytes_per_cycle + 1e-6     # the channel's bandwidth is never beaten


# ---------------------------------------------------------------- properties

@st.composite
def layers(draw):
    conv = draw(st.booleans())
    c, k = draw(st.integers(1, 40)), draw(st.integers(1, 70))
    hw = draw(st.integers(3, 14))
    return conv, c, k, hw, draw(st.integers(1, 3))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=layers(), cores=st.sampled_from([1, 2, 3, 4, 7, 16]), partition=st.sampled_from(PARTITIONS),
       l2=st.sampled_from([0, 4096, 16384, 65536]), ways=st.sampled_from([1, 2, 4]),
       line=st.sampled_from([32, 64, 128]), banks=st.sampled_from([1, 2, 4]), sparsity=st.sampled_from([0.0, 0.8]),
       own=st.booleans())
def test_any_layer_any_cores_any_l2_is_bitexact(layer, cores, partition, l2, ways, line, banks, sparsity, own):
    conv, c, k, hw, n = layer
    rng = np.random.default_rng(c * 100 + k)
    b = GraphBuilder("prop")
    if conv:
        b.input("x", (n, c, hw, hw))
        w = rng.standard_normal((k, c, 3, 3))
        b.add("y", Op.CONV2D, ["x"], {"out_channels": k, "kernel": 3, "pad": 1}, {"w": w, "b": rng.standard_normal(k)})
    else:
        b.input("x", (n * hw, c * 4))
        w = rng.standard_normal((k, c * 4))
        b.add("y", Op.DENSE, ["x"], {"out_features": k}, {"w": w, "b": rng.standard_normal(k)})
    w[rng.random(w.shape) < sparsity] = 0
    g = b.build(["y"])
    q = quantize(g, random_calibration(g, rng))
    l2 = l2 - l2 % (ways * line)
    arch = with_overrides(load_arch("default"), {
        "cores": cores, "core.scratchpad_bytes": 16384, "core.accumulator_bytes": 4096, "core.scratchpad_banks": 4,
        "memory.l2_bytes": l2, "memory.l2_ways": ways, "memory.l2_line_bytes": line, "memory.l2_banks": banks,
        "core.vector_own_path": own})
    result = check_bitexact(q, arch, random_calibration(g, rng, g.inputs[0].out.shape[0]), partition=partition)
    _check_counts_add_up(result.stats, arch)


# ---------------------------------------------------------------- the roofline

@pytest.mark.parametrize("cores,l2", list(itertools.product([1, 4, 16], [0, 1 << 20])))
def test_the_roofline_is_never_beaten(cores, l2):
    """Cycles >= max(MACs over all cores' peak, the bytes that must come from DRAM over its bandwidth):
    the weights and the input (with an L2 an output may stay in it)."""
    rng = np.random.default_rng(0)
    for n, c, k in ((1, 1024, 512), (256, 256, 256), (64, 512, 128)):
        b = GraphBuilder("mm")
        b.input("x", (n, c))
        b.add("y", Op.DENSE, ["x"], {"out_features": k}, {"w": rng.standard_normal((k, c))})
        g = b.build(["y"])
        q = quantize(g, random_calibration(g, rng, 4))
        arch = multicore(cores, l2)
        stats = check_bitexact(q, arch, random_calibration(g, rng, n)).stats
        peak = arch.core.pe_rows * arch.core.simd_lanes * cores
        compulsory = n * c + k * c + (0 if l2 else n * k)
        bound = max(n * c * k / peak, compulsory / arch.memory.dram_bytes_per_cycle)
        assert stats.cycles >= bound, (n, c, k, stats.cycles, bound)


# ---------------------------------------------------------------- consecutive layers on different cores

def _chain(images: int, layers: int = 4):
    rng = np.random.default_rng(0)
    b = GraphBuilder("chain")
    b.input("x", (images, 16, 16, 16))
    prev = "x"
    for i in range(layers):
        b.add(f"c{i}", Op.CONV2D, [prev], {"out_channels": 32, "kernel": 3, "pad": 1},
              {"w": rng.standard_normal((32, 16 if i == 0 else 32, 3, 3)), "b": rng.standard_normal(32)})
        prev = f"c{i}"
    g = b.build([prev])
    return g, quantize(g, random_calibration(g, rng, images))


def test_pipeline_runs_each_stage_on_its_core_image_by_image():
    g, q = _chain(4)
    x = random_calibration(g, np.random.default_rng(1), 4)
    arch = multicore(4, 0, **{"memory.dram_bytes_per_cycle": 1024.0})
    result = check_bitexact(q, arch, x, partition="pipeline")
    layers = {layer.name: layer for layer in result.stats.layers}
    # four equal-ish layers, four cores: one stage each, in order
    assert [layers[f"c{i}"].cores for i in range(4)] == [(0,), (1,), (2,), (3,)]
    assert all(layers[f"c{i}"].partition == "pipeline" for i in range(4))
    # a stage starts its first image while the stage before it is still working on the others
    for i in range(1, 4):
        assert layers[f"c{i}"].start_cycle < layers[f"c{i - 1}"].end_cycle
    # each stage's images wait for the previous stage's store of that image only: one WAIT per image,
    # for a counter value that grows image by image
    program = generate(schedule(q, arch, partition="pipeline"))
    for core in range(1, 4):
        waits = [ins for ins in program.streams[core] if ins.opcode is Opcode.WAIT]
        assert [w.core for w in waits] == [core - 1] * 4
        values = [w.value for w in waits]
        assert values == sorted(values) and len(set(values)) == 4
    # the stages overlap: faster than one core running the same layers
    single = check_bitexact(q, multicore(1, 0, **{"memory.dram_bytes_per_cycle": 1024.0}), x).stats.cycles
    assert result.stats.cycles < 0.75 * single


def test_pipeline_stages_balance_the_estimates():
    from sieve.scheduler.pipeline import stages
    assert stages([5, 5, 5, 5], 2) == [0, 0, 1, 1]
    assert stages([9, 1, 1, 1, 1, 1], 3) == [0, 1, 1, 1, 1, 1]
    assert stages([1, 1, 1], 8) == [0, 1, 2]
    assert stages([], 4) == []


@settings(max_examples=200, deadline=None)
@given(costs=st.lists(st.integers(1, 100), min_size=1, max_size=9), cores=st.integers(1, 5))
def test_pipeline_stages_are_optimal_contiguous_cuts(costs, cores):
    from sieve.scheduler.pipeline import stages
    got = stages(costs, cores)
    assert got[0] == 0 and all(b - a in (0, 1) for a, b in zip(got, got[1:])) and got[-1] < cores
    worst = max(sum(c for c, s in zip(costs, got) if s == k) for k in set(got))
    # every way to cut the list into at most `cores` runs: none has a smaller largest run
    best = min(max(sum(costs[a:b]) for a, b in zip((0,) + cut, cut + (len(costs),)))
               for n in range(min(cores, len(costs)))
               for cut in itertools.combinations(range(1, len(costs)), n))
    assert worst == best


def test_pipeline_with_one_image_is_correct_on_every_core_count():
    g, q = _chain(1, 5)
    x = random_calibration(g, np.random.default_rng(2), 1)
    for cores in (2, 3, 16):
        result = check_bitexact(q, multicore(cores, 1 << 16), x, partition="pipeline")
        used = [layer.cores[0] for layer in result.stats.layers]
        assert used == sorted(used) and len(set(used)) == min(cores, 5)
