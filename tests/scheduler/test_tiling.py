from __future__ import annotations

import numpy as np
import pytest

from sieve.arch import load_arch
from sieve.arch.config import CoreConfig
from sieve.frontend import build
from sieve.scheduler import ScheduleError, schedule
from sieve.scheduler.plan import ConvGeom, MatmulTiling
from sieve.scheduler.tiling import NEAR, estimate, fits, matmul_spad, search
from tests.helpers import quantize, random_calibration, small_arch


@pytest.mark.parametrize("arch", [load_arch("default"), load_arch("edge"), small_arch()])
def test_every_plan_fits_and_says_why(arch):
    g = build("lenet5")
    s = schedule(quantize(g, random_calibration(g, np.random.default_rng(0))), arch)
    for plan in s.layers:
        assert plan.reason
        if plan.spad is not None:
            assert plan.spad.total <= arch.core.scratchpad_bytes
        if plan.kind == "matmul":
            t = plan.tiling
            assert t.k_t * t.oh_t * t.ow_t <= arch.acc_entries
            assert f"k_t={t.k_t}" in plan.reason and "candidates" in plan.reason


def test_search_picks_the_cheapest_fitting_candidate():
    """Within NEAR of the cheapest estimate, the candidate moving the fewest DRAM bytes."""
    arch = load_arch("default")
    g = ConvGeom(1, 28, 28, 32, 64, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1)
    best, est, _ = search(g, arch)
    cheapest = min(estimate(g, MatmulTiling(k_t, rows, 28, 32, "k_outer"), arch).cycles
                   for k_t in (16, 32, 64) for rows in (1, 7, 14, 28)
                   if fits(g, MatmulTiling(k_t, rows, 28, 32, "k_outer"), arch))
    assert est.cycles <= cheapest * (1 + NEAR)
    for k_t in (16, 32, 64):
        for rows in (1, 7, 14, 28):
            t = MatmulTiling(k_t, rows, 28, 32, "k_outer")
            if fits(g, t, arch):
                other = estimate(g, t, arch)
                assert other.cycles * (1 + NEAR) >= est.cycles
                if other.cycles <= est.cycles:           # as near the cheapest as the choice: no fewer bytes
                    assert other.dma >= est.dma


def test_bigger_scratchpad_never_costs_more():
    """Gemmini's greedy tiler ignores a bigger scratchpad; this search uses it."""
    g = ConvGeom(1, 56, 56, 64, 64, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1)
    costs = [search(g, small_arch(16, 16, spad, 65536, 16))[1].cycles for spad in (16384, 65536, 262144)]
    assert costs[0] * (1 + NEAR) >= costs[1] and costs[1] * (1 + NEAR) >= costs[2]
    assert costs[2] < costs[0]


def test_spad_layout_is_double_buffered():
    g = ConvGeom(1, 8, 8, 4, 16, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1)
    layout = matmul_spad(g, MatmulTiling(16, 4, 8, 4, "k_outer"), CoreConfig())
    offs = layout.offsets()
    assert set(offs) == {"w", "x", "out"}
    assert all(b - a >= size for (name, size), (a, b) in zip(layout.regions, offs.values()))


def test_layer_that_cannot_fit_is_a_clear_error():
    from sieve.ir import GraphBuilder, Op
    g = build("mlp")
    schedule(quantize(g, random_calibration(g, np.random.default_rng(0))), small_arch(scratchpad_bytes=4096))
    b = GraphBuilder("wide")                 # pooling keeps whole rows: 3 rows of 5000 bytes cannot fit
    b.input("x", (1, 1, 3, 5000))
    b.add("p", Op.MAXPOOL, ["x"], {"kernel": 3})
    wide = b.build(["p"])
    q = quantize(wide, random_calibration(wide, np.random.default_rng(0), 2))
    with pytest.raises(ScheduleError, match=r"layer 'p': one row of the pooling window does not fit"):
        schedule(q, small_arch(scratchpad_bytes=4096))
