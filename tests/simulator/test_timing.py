"""Timing with answers known by hand, from programs written without the compiler."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sieve.arch import Instruction, Opcode, Program, load_arch, with_overrides
from sieve.simulator import run, simulate_timing
from sieve.simulator.energy import energy_pj
from sieve.simulator.events import E, EVENTS

ARCH = load_arch("default")           # 16x16 MACs, 16 B/cycle DRAM, 100-cycle latency, fill 8
LAT, BW = ARCH.memory.dram_latency_cycles, ARCH.memory.dram_bytes_per_cycle


def program(*instructions: Instruction, dram: int = 1 << 16) -> Program:
    return Program(ARCH, (tuple(instructions) + (Instruction.make(Opcode.HALT),),), b"", dram, (), ())


def load(n: int, rows: int = 1, signal: int = 0, waits=(), spad: int = 0) -> Instruction:
    return Instruction.make(Opcode.LOAD, signal=signal, waits=waits, dram_addr=0, spad_addr=spad, rows=rows,
                            row_bytes=n // rows, dram_stride=n // rows, spad_stride=n // rows)


def store(n: int, signal: int = 0, waits=()) -> Instruction:
    return Instruction.make(Opcode.STORE, signal=signal, waits=waits, dram_addr=0, spad_addr=0, rows=1,
                            row_bytes=n, dram_stride=0, spad_stride=0)


def matmul(k: int, c: int, cols: int, signal: int = 0, waits=()) -> Instruction:
    return Instruction.make(Opcode.MATMUL, signal=signal, waits=waits, w_addr=0x8000, x_addr=0, acc_addr=0,
                            k=k, out_h=1, out_w=cols, in_h=1, in_w=cols, in_c=c, kernel_h=1, kernel_w=1,
                            stride_h=1, stride_w=1, dil_h=1, dil_w=1, pad_top=0, pad_left=0, x_zp=0,
                            accumulate=0, fmt=0, depthwise=0)


BURST = ARCH.memory.dram_burst_bytes


def bursts(n: int, rows: int) -> int:
    """Each row of a transfer moves the DRAM bursts it touches, whole."""
    rb = n // rows
    return sum(((r * rb) % BURST + rb + BURST - 1) // BURST for r in range(rows))


@pytest.mark.parametrize("n,rows", [(1000, 1), (1000, 10), (16, 1), (1, 1), (65536, 64)])
def test_single_dma_is_latency_plus_bursts_over_bandwidth(n, rows):
    t = simulate_timing(program(load(n, rows)))
    assert t.cycles == LAT + math.ceil(bursts(n, rows) * BURST / BW)
    assert bursts(1000, 1) == 16 and bursts(1000, 10) == 25 and bursts(1, 1) == 1


PORTS = ARCH.core.scratchpad_banks * ARCH.core.scratchpad_port_bytes     # 8 banks x 16 B per cycle


def test_dense_tile_fed_at_the_mac_rate():
    # k=32 rows -> 2 row batches of 16; reduction 64 -> 4 groups of 16 lanes; 100 columns: 800 cycles.
    # The ports deliver the weights (2048 B) and the activations (read once per row batch, 2 * 64 * 100 B)
    # in (2048 + 12800) / 128 = 116 cycles
    t = simulate_timing(program(matmul(32, 64, 100)))
    assert t.cycles == 2 * 4 * 100 + ARCH.core.matmul_fill_cycles == 808


def test_one_column_tile_is_bound_by_the_scratchpad_ports():
    # 1 column: the array computes its 8 blocks in 8 cycles, but the 2048 weight bytes and 128 activation
    # bytes need ceil(2176 / 128) = 17 cycles of the ports
    t = simulate_timing(program(matmul(32, 64, 1)))
    assert t.cycles == -(-(32 * 64 + 2 * 64) // PORTS) + ARCH.core.matmul_fill_cycles == 25


def test_ragged_tile_costs_its_padded_groups_and_batches():
    # k=17 -> 2 batches; reduction 17 -> 2 groups; 30 columns: 120 cycles of the array (the ports need
    # (289 + 2 * 17 * 30) / 128 = 11)
    t = simulate_timing(program(matmul(17, 17, 30)))
    assert t.cycles == 2 * 2 * 30 + ARCH.core.matmul_fill_cycles


def test_independent_load_and_compute_overlap():
    dma = LAT + 16 * BURST // BW                            # 1000 B are 16 bursts: 164
    t = simulate_timing(program(load(1000), matmul(32, 64, 10)))
    assert t.cycles == max(dma, 88) == 164


def test_token_serializes_compute_after_load():
    t = simulate_timing(program(load(1000, signal=1), matmul(32, 64, 10, waits=((1, 1),))))
    assert t.cycles == 164 + 88


def test_back_to_back_loads_pipeline_behind_one_latency():
    # the DMA engine issues the second transfer while the first is in flight
    t = simulate_timing(program(load(1600), load(1600)))
    assert t.cycles == 100 + 100 + LAT


def test_load_and_store_share_the_dram_channel():
    # different queues, one DRAM channel shared equally while both move: the store's 800 B are 13
    # bursts, 832 B at 8 B/cycle: they end at 104; the load's other 1600 - 832 B then move at 16 B/cycle
    # (48 cycles): 152; each completes a latency after its data phase
    t = simulate_timing(program(load(1600), store(800)))
    assert t.end[0][1] == 104 + LAT                 # the store completes first
    assert t.cycles == 104 + 48 + LAT


def test_deadlock_is_reported_not_hung():
    from sieve.simulator import SimulatorError
    with pytest.raises(SimulatorError, match="deadlock"):
        simulate_timing(program(matmul(16, 16, 1, waits=((1, 1),))))


def test_energy_is_counts_times_table():
    p = program(load(1000, signal=1), matmul(32, 64, 10, waits=((1, 1),)))
    stats = run(p, functional=False).stats
    e = ARCH.energy
    assert stats.events["macs"] == 32 * 64 * 10
    assert stats.events["dram_read_bytes"] == 1024           # 16 whole bursts
    assert stats.energy_pj["mac"] == pytest.approx(32 * 64 * 10 * e.mac_pj)
    assert stats.energy_pj["dram"] == pytest.approx(1024 * e.dram_pj_per_byte)
    assert stats.energy_pj["leakage"] == pytest.approx(stats.cycles * e.leakage_pj_per_cycle)
    counts = np.array([stats.events[k] for k in EVENTS])
    assert energy_pj(counts, stats.cycles, ARCH, ARCH.cores) == stats.energy_pj
    assert counts[E["spad_write_bytes"]] == 1000


def test_out_of_bounds_traps_with_instruction_index():
    from sieve.simulator import Trap
    bad = Instruction.make(Opcode.LOAD, dram_addr=0xFF00, spad_addr=0, rows=1, row_bytes=512,
                           dram_stride=0, spad_stride=0)
    with pytest.raises(Trap, match=r"instruction 1\b.*DRAM"):
        run(program(load(16), bad, dram=0x10000), {})


def _requant(k: int, cols: int, acc: int, dst: int = 0x10000) -> Instruction:
    return Instruction.make(Opcode.REQUANT, acc_addr=acc, dst_addr=dst, cols=cols, k=k, bias_addr=0x9000,
                            scale_addr=0x9100, zp=0, lo=-128, hi=127, out32=0)


def _mm(acc: int, x: int = 0, accumulate: int = 0) -> Instruction:
    # k=16, reduction 16, 100 columns: 100 cycles of the array + fill 8 = 108
    return Instruction.make(Opcode.MATMUL, w_addr=0x8000, x_addr=x, acc_addr=acc, k=16, out_h=1, out_w=100,
                            in_h=1, in_w=100, in_c=16, kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, dil_h=1,
                            dil_w=1, pad_top=0, pad_left=0, x_zp=0, accumulate=accumulate, fmt=0, depthwise=0)


OWN = with_overrides(ARCH, {"core.vector_own_path": True})
MM, RQ = 108, 16 * 100 // 16 + ARCH.core.vector_fill_cycles          # 108 and 104 cycles


def _cycles(arch, *instructions) -> int:
    return simulate_timing(Program(arch, (tuple(instructions) + (Instruction.make(Opcode.HALT),),), b"", 1 << 20,
                                   (), ())).cycles


def test_vector_unit_on_the_compute_path_runs_after_the_mac_array():
    # one unit for both: matmul, requant, matmul, requant one after another
    assert _cycles(ARCH, _mm(0), _requant(16, 100, 0), _mm(1600), _requant(16, 100, 1600)) == 2 * MM + 2 * RQ


def test_vector_unit_with_its_own_path_overlaps_the_next_matmul():
    # the second matmul fills the other accumulator half while the first tile is requantized:
    # M1 [0, 108), R1 [108, 212), M2 [108, 216), R2 [216, 320)
    assert _cycles(OWN, _mm(0), _requant(16, 100, 0), _mm(1600), _requant(16, 100, 1600)) == 2 * MM + RQ == 320


def test_vector_unit_waits_for_data_it_shares_with_the_mac_array():
    # the same accumulator half: the second matmul waits for the requant that reads it (no overlap)
    assert _cycles(OWN, _mm(0), _requant(16, 100, 0), _mm(0), _requant(16, 100, 0)) == 2 * MM + 2 * RQ
    # a requant whose output lands on the activations the next matmul reads: that matmul waits too
    assert _cycles(OWN, _mm(0), _requant(16, 100, 0, dst=0), _mm(1600), _requant(16, 100, 1600)) == 2 * MM + 2 * RQ
    # the requant of the first matmul's accumulator waits for it either way
    assert _cycles(OWN, _mm(0), _requant(16, 100, 0)) == MM + RQ


def test_compute_queue_signals_in_program_order_with_its_own_vector_path():
    # a long matmul, then a short vector op that does not touch its data: the vector op ends first, but
    # its signal (here: what lets the store go) waits until the matmul has completed too
    add = Instruction.make(Opcode.ADD, signal=1, a_addr=0x20000, b_addr=0x20000, dst_addr=0x30000, count=160,
                           za=0, zb=0, zc=0, ma=1.0, mb=1.0, relu=0, hi=127, mode=2, sc=1.0)
    st = Instruction.make(Opcode.STORE, waits=((1, 1),), dram_addr=0, spad_addr=0x30000, rows=1, row_bytes=64,
                          dram_stride=0, spad_stride=0)
    t = simulate_timing(Program(OWN, ((_mm(0), add, st, Instruction.make(Opcode.HALT)),), b"", 1 << 20, (), ()))
    add_cycles = 2 * 160 // 16 + ARCH.core.vector_fill_cycles
    assert t.end[0][1] == add_cycles                     # the add ran beside the matmul
    assert t.start[0][2] == MM                           # the store started when the matmul completed
