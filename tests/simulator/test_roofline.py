"""Compiled layers against the roofline bound max(MACs / peak, compulsory DRAM bytes / bandwidth)."""
from __future__ import annotations

import numpy as np
import pytest

from sieve.arch import load_arch
from sieve.ir import GraphBuilder, Op
from sieve.scheduler import schedule
from sieve.codegen import generate
from sieve.simulator import simulate_timing
from tests.helpers import quantize, random_calibration


def _dense(n: int, c: int, k: int):
    rng = np.random.default_rng(0)
    b = GraphBuilder("mm")
    b.input("x", (n, c))
    b.add("y", Op.DENSE, ["x"], {"out_features": k}, {"w": rng.standard_normal((k, c))})
    g = b.build(["y"])
    return quantize(g, random_calibration(g, rng, 4))


@pytest.mark.parametrize("arch_name", ["default", "edge"])
@pytest.mark.parametrize("n,c,k,limit", [
    (256, 256, 256, 1.15),      # compute-bound
    (1, 1024, 512, 1.25),       # weight streaming: DRAM-bound
    (64, 512, 128, 1.3),
])
def test_cycles_within_roofline_band(arch_name, n, c, k, limit):
    arch = load_arch(arch_name)
    q = _dense(n, c, k)
    cycles = simulate_timing(generate(schedule(q, arch))).cycles
    peak = arch.core.pe_rows * arch.core.simd_lanes
    compulsory = n * c + k * c + n * k + 8 * k
    roofline = max(n * c * k / peak, compulsory / arch.memory.dram_bytes_per_cycle)
    assert roofline <= cycles <= limit * roofline, (cycles, roofline, cycles / roofline)
