"""Every arch field changes what docs/arch.md says it changes: a field the simulator or the compiler
ignored would be a number a researcher could set to no effect. Each case perturbs one field and checks
the figure it claims to move."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sieve.arch import ArchConfig, Instruction, Opcode, Program, load_arch, with_overrides
from sieve.arch.isa import Queue
from sieve.arch.config import CoreConfig, EnergyConfig, MemoryConfig
from sieve.arch.formats import DENSE, WeightFormat
from sieve.codegen import generate
from sieve.frontend import build
from sieve.scheduler import schedule
from sieve.simulator import run, simulate_timing
from tests.helpers import quantize, random_calibration

BASE = load_arch("default")
L2 = {"memory.l2_bytes": 16384, "memory.l2_ways": 2, "memory.l2_line_bytes": 64, "memory.l2_banks": 2}


def _program(arch: ArchConfig, *streams) -> Program:
    return Program(arch, tuple(tuple(s) + (Instruction.make(Opcode.HALT),) for s in streams), b"", 1 << 22, (), ())


def _load(addr: int, rows: int, row_bytes: int, stride: int, signal: int = 0) -> Instruction:
    return Instruction.make(Opcode.LOAD, signal=signal, dram_addr=addr, spad_addr=0, rows=rows, row_bytes=row_bytes,
                            dram_stride=stride, spad_stride=row_bytes)


def _matmul(k: int, c: int, cols: int, depthwise: int = 0, kernel: int = 1, in_w: int = 0, waits=(),
            fmt: int = 0) -> Instruction:
    return Instruction.make(Opcode.MATMUL, waits=waits, w_addr=0x8000, x_addr=0, acc_addr=0, k=k, out_h=1,
                            out_w=cols, in_h=kernel, in_w=in_w or cols, in_c=c, kernel_h=kernel, kernel_w=kernel,
                            stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=0, pad_left=0, x_zp=0, accumulate=0,
                            fmt=fmt, depthwise=depthwise)


def _streams(arch: ArchConfig):
    """A small workload that exercises every unit: two cores loading overlapping data (through the L2
    when there is one) in strided rows, a matmul of one column (the ports bind), a depthwise window, a
    requant-free vector op, and a store."""
    core = [
        _load(0, 64, 48, 100, signal=1),
        _load(0, 64, 48, 100),
        _load(1 << 16, 128, 64, 256),
        _load(1 << 18, 8, 64, 8192),                    # 8 lines of one L2 set, twice: hits with enough ways
        _load(1 << 18, 8, 64, 8192),
        _matmul(32, 64, 1, waits=((1, 1),)),
        _matmul(32, 64, 40),
        _matmul(32, 64, 40, fmt=WeightFormat(DENSE, 4).code),      # int4 weights
        _matmul(16, 16, 6, depthwise=1, kernel=3, in_w=8),
        Instruction.make(Opcode.ADD, a_addr=0, b_addr=512, dst_addr=1024, count=4000, za=0, zb=0, zc=0, ma=1.0,
                         mb=1.0, relu=0, hi=127, mode=2, sc=1.0),
        Instruction.make(Opcode.STORE, dram_addr=1 << 20, spad_addr=0, rows=1, row_bytes=8192, dram_stride=0,
                         spad_stride=0),
    ]
    return [core] * arch.cores


def _figures(arch: ArchConfig) -> dict:
    program = _program(arch, *_streams(arch))
    stats = run(program, functional=False).stats
    t = simulate_timing(program)
    compute = [t.end[c][t.streams[c].queue == int(Queue.COMPUTE)].max() for c in range(arch.cores)]
    return {"cycles": stats.cycles, "time_us": stats.time_us, "events": stats.events, "energy": stats.energy_pj,
            "stalls": stats.stall_cycles, "compute": sum(c.busy_cycles["compute"] for c in stats.cores),
            "compute_end": max(compute)}


def _model_cycles(arch: ArchConfig) -> int:
    g = build("resnet18", size=32, classes=10)
    q = quantize(g, random_calibration(g, np.random.default_rng(0), 2))
    return run(generate(schedule(q, arch)), functional=False).stats.cycles


# field -> (the other value, what must change: total cycles, the cores' compute-unit cycles, when the last
# compute instruction ends, event counts,
# stall cycles, time, or a model's cycles through the compiler's plans). The workload runs on a 2-core arch
# with an L2 unless the field needs otherwise (noted).
CASES = {
    "cores": (4, "cycles"),
    "clock_mhz": (500.0, "time_us"),
    "core.pe_rows": (8, "compute"),
    "core.simd_lanes": (8, "compute"),
    "core.int4_macs_per_lane": (1, "compute"),
    "core.scratchpad_bytes": (8192, "model"),
    "core.scratchpad_banks": (2, "compute"),
    "core.scratchpad_port_bytes": (4, "compute"),
    "core.accumulator_bytes": (1024, "model"),
    "core.vector_lanes": (4, "compute"),
    "core.matmul_fill_cycles": (30, "compute"),
    "core.vector_fill_cycles": (40, "compute"),
    "core.weights_double_buffered": (False, "compute"),
    "core.vector_own_path": (True, "compute_end"),
    "memory.l2_bytes": (0, "events"),
    "memory.l2_ways": (8, "events"),
    "memory.l2_line_bytes": (128, "events"),
    "memory.l2_banks": (8, "stalls"),
    "memory.l2_bank_bytes_per_cycle": (2, "cycles"),
    "memory.l2_latency_cycles": (300, "cycles"),
    "memory.l2_mshrs": (1, "cycles"),
    "memory.dram_bytes_per_cycle": (2.0, "cycles"),
    "memory.dram_latency_cycles": (400, "cycles"),
    "memory.dram_burst_bytes": (256, "events"),       # without an L2
    "memory.dma_outstanding": (1, "cycles"),
}
ENERGY = {f"energy.{f.name}": f.name.removesuffix("_pj_per_byte").removesuffix("_pj_per_cycle").removesuffix("_pj")
          for f in dataclasses.fields(EnergyConfig)}


def test_every_field_has_a_case():
    keys = {"cores", "clock_mhz"} | {f"core.{f.name}" for f in dataclasses.fields(CoreConfig)} | {
        f"memory.{f.name}" for f in dataclasses.fields(MemoryConfig)}
    assert keys == set(CASES)
    assert set(ENERGY) == {f"energy.{f.name}" for f in dataclasses.fields(EnergyConfig)}


@pytest.mark.parametrize("key", sorted(CASES))
def test_the_field_changes_what_it_claims(key):
    value, what = CASES[key]
    base = with_overrides(BASE, {"cores": 2, **L2})
    if key == "memory.dram_burst_bytes":
        base = with_overrides(base, {"memory.l2_bytes": 0})
    other = with_overrides(base, {key: value})
    if what == "model":
        assert _model_cycles(other) != _model_cycles(base)
        return
    a, b = _figures(base), _figures(other)
    assert a[what] != b[what], (key, a[what])


ENERGY_EVENT = {"mac": "mac", "mac_int4": "mac", "acc_add": "accumulator", "spad": "scratchpad", "acc": "accumulator", "l2": "l2",
                "dram": "dram", "metadata": "metadata", "vector_op": "vector", "leakage": "leakage"}


@pytest.mark.parametrize("key", sorted(ENERGY))
def test_each_energy_figure_prices_its_component(key):
    base = with_overrides(BASE, {"cores": 2, **L2})
    other = with_overrides(base, {key: 77.0})
    component = ENERGY_EVENT[ENERGY[key]]
    a, b = _figures(base)["energy"], _figures(other)["energy"]
    if component == "metadata":             # dense programs read no metadata: check the price instead
        assert other.energy_table.metadata_pj_per_byte == 77.0 != base.energy_table.metadata_pj_per_byte
        return
    assert a[component] != b[component], key
