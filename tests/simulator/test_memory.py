"""The memory system and the core's ports, on hand-written programs whose answers are derived here."""
from __future__ import annotations

import numpy as np
import pytest

from sieve.arch import Instruction, Opcode, Program, load_arch, with_overrides
from sieve.simulator import run, simulate_timing

BASE = load_arch("default")
LAT = BASE.memory.dram_latency_cycles                   # 100
BW = BASE.memory.dram_bytes_per_cycle                   # 16 B/cycle


def arch(cores: int = 1, **memory):
    over = {"cores": cores}
    over.update({f"memory.{k}": v for k, v in memory.items()})
    return with_overrides(BASE, over)


def program(a, *streams) -> Program:
    """One stream per core, each ending in a halt."""
    streams = [tuple(s) + (Instruction.make(Opcode.HALT),) for s in streams]
    return Program(a, tuple(streams), b"", 1 << 22, (), ())


def load(addr: int, n: int, signal: int = 0, waits=()) -> Instruction:
    return Instruction.make(Opcode.LOAD, signal=signal, waits=waits, dram_addr=addr, spad_addr=0, rows=1,
                            row_bytes=n, dram_stride=0, spad_stride=0)


def store(addr: int, n: int) -> Instruction:
    return Instruction.make(Opcode.STORE, dram_addr=addr, spad_addr=0, rows=1, row_bytes=n, dram_stride=0,
                            spad_stride=0)


def totals(p: Program):
    return run(p, functional=False).stats


# ---------------------------------------------------------------- the L2

L2 = dict(l2_bytes=16384, l2_ways=4, l2_line_bytes=64, l2_banks=4)     # 64 sets of 4 lines


def test_a_working_set_that_fits_hits_on_the_second_pass():
    # 8 KiB = 128 lines, 2 per set: the first pass misses every line, the second finds every line
    a = arch(**L2)
    passes = [load(i * 1024, 1024) for i in range(8)] * 2
    ev = totals(program(a, passes)).events
    assert (ev["l2_misses"], ev["l2_hits"]) == (128, 128)
    assert ev["dram_read_bytes"] == 128 * 64                       # each line read from DRAM once
    assert ev["l2_bytes"] == 256 * 64


def test_a_cyclic_working_set_larger_than_the_l2_thrashes():
    # 32 KiB = 512 lines, 8 per set of 4 ways, read in order twice: under LRU each line is evicted
    # (four newer lines of its set came after it) before its second use, so both passes miss
    a = arch(**L2)
    passes = [load(i * 1024, 1024) for i in range(32)] * 2
    ev = totals(program(a, passes)).events
    assert (ev["l2_misses"], ev["l2_hits"]) == (1024, 0)
    assert ev["dram_read_bytes"] == 1024 * 64


def test_dirty_lines_are_written_back_when_evicted():
    # store 16 KiB (fills the L2 with dirty lines; no DRAM reads), then load another 16 KiB: every load
    # miss evicts a dirty line, written back
    a = arch(**L2)
    stores = [store(i * 1024, 1024) for i in range(15)] + [Instruction.make(
        Opcode.STORE, signal=3, dram_addr=15 * 1024, spad_addr=0, rows=1, row_bytes=1024, dram_stride=0, spad_stride=0)]
    loads = [load(65536, 1024, waits=((3, 1),))] + [load(65536 + i * 1024, 1024) for i in range(1, 16)]
    stats = totals(program(a, stores + loads))          # the loads wait for the last store
    ev = stats.events
    assert ev["l2_misses"] == 512 and ev["l2_writebacks"] == 256
    assert ev["dram_read_bytes"] == 256 * 64 and ev["dram_write_bytes"] == 256 * 64
    assert stats.memory["l2"]["dirty_lines_at_end"] == 0


@pytest.mark.parametrize("cores", [2, 4, 16])
def test_cores_reading_the_same_weights_fetch_them_once_with_an_l2(cores):
    weights = [load(0, 4096)]
    with_l2 = totals(program(arch(cores, l2_bytes=65536), *[weights] * cores)).events
    without = totals(program(arch(cores), *[weights] * cores)).events
    assert with_l2["dram_read_bytes"] == 4096
    assert with_l2["l2_hits"] == (cores - 1) * 64 and with_l2["l2_misses"] == 64
    assert without["dram_read_bytes"] == cores * 4096


# ---------------------------------------------------------------- DRAM

@pytest.mark.parametrize("cores", [1, 2, 4, 8])
def test_cores_streaming_share_the_dram_bandwidth(cores):
    # each core loads 16 KiB at cycle 0: the channel is shared equally, so every data phase ends when
    # all cores' bytes have moved at the full bandwidth, cores * 16384 / 16 cycles (each core gets
    # 16 / cores B/cycle; its engine alone could take 32 * 64 / 100 = 20.48)
    a = arch(cores)
    t = simulate_timing(program(a, *[[load(c * 16384, 16384)] for c in range(cores)]))
    ends = [int(t.end[c][0]) for c in range(cores)]
    assert ends == [cores * 16384 // 16 + LAT] * cores
    assert t.cycles == cores * 1024 + LAT


def test_one_transfer_is_limited_by_its_engine_requests_in_flight():
    # 8 requests of 64 B per 128-cycle round trip: 4 B/cycle, below the channel's 16
    a = arch(dma_outstanding=8, dram_latency_cycles=128)
    t = simulate_timing(program(a, [load(0, 5120)]))
    assert t.cycles == 5120 // 4 + 128


def test_a_transfer_moves_whole_bursts():
    # 16 rows of 8 bytes, 100 bytes apart: each row touches one or two 64-byte bursts
    a = arch()
    ins = Instruction.make(Opcode.LOAD, dram_addr=0, spad_addr=0, rows=16, row_bytes=8, dram_stride=100,
                           spad_stride=8)
    touched = sum(((r * 100) % 64 + 8 + 63) // 64 for r in range(16))
    ev = totals(program(a, [ins])).events
    assert ev["dram_read_bytes"] == touched * 64 == 17 * 64          # only the row at offset 60 straddles


def test_l2_bank_conflicts_cost_the_busiest_banks_pace():
    # 16 lines 256 B apart all map to bank 0 of 4: the L2 serves them at one bank's 32 B/cycle rather
    # than four banks' 128; a warm L2 so that only the L2 is involved
    a = arch(l2_bytes=65536, l2_banks=4, l2_bank_bytes_per_cycle=32, l2_latency_cycles=12)
    strided = Instruction.make(Opcode.LOAD, dram_addr=0, spad_addr=0, rows=16, row_bytes=64, dram_stride=256,
                               spad_stride=64)
    warm = simulate_timing(program(a, [strided, strided]))
    phase = int(warm.busy[0][1])
    assert phase == 16 * 64 // 32 == 32                          # 1024 B through one bank
    assert int(warm.stalls[0][1][1]) == 32 - 16 * 64 // 128      # the conflict: 24 cycles


# ---------------------------------------------------------------- cross-core synchronization

def test_a_wait_holds_the_load_queue_until_the_other_core_stored():
    a = arch(2)
    producer = [Instruction.make(Opcode.STORE, signal=3, dram_addr=0, spad_addr=0, rows=1, row_bytes=1600,
                                 dram_stride=0, spad_stride=0)]
    consumer = [Instruction.make(Opcode.WAIT, core=0, counter=3, value=1), load(0, 1600)]
    t = simulate_timing(program(a, producer, consumer))
    stored = 1600 // 16 + LAT                                     # 200
    assert t.start[1][1] == stored
    assert t.cycles == stored + 100 + LAT
    assert int(t.stalls[1][0][3]) == stored                       # the wait, charged to "core"


def test_a_wait_on_a_core_that_does_not_exist_is_an_error():
    from sieve.simulator import SimulatorError
    bad = [Instruction.make(Opcode.WAIT, core=5, counter=3, value=1)]
    with pytest.raises(SimulatorError, match=r"WAIT on core 5 .* 2 core"):
        simulate_timing(program(arch(2), bad, []))


# ---------------------------------------------------------------- the scratchpad ports

def matmul(k: int, c: int, cols: int, in_w: int = 0, depthwise: int = 0, kernel: int = 1) -> Instruction:
    return Instruction.make(Opcode.MATMUL, w_addr=0x8000, x_addr=0x0, acc_addr=0, k=k, out_h=1, out_w=cols,
                            in_h=kernel, in_w=in_w or cols, in_c=c, kernel_h=kernel, kernel_w=kernel, stride_h=1,
                            stride_w=1, dil_h=1, dil_w=1, pad_top=0, pad_left=0, x_zp=0, accumulate=0, fmt=0,
                            depthwise=depthwise)


FILL = BASE.core.matmul_fill_cycles


def test_a_depthwise_window_crowding_a_bank_costs_what_the_docs_say():
    # 16 channels (one 16-byte vector = one port width) at each of the 3x3 window positions, every column;
    # banks interleave every 16 bytes: position (dy, dx) is in bank (dy * in_w + dx) mod 8.
    # in_w = 8: the three rows of the window land on banks 0, 1, 2 alike: 3 reads per column on each;
    # in_w = 10: banks 0-2, 2-4, 4-6: at most 2. Six columns; the array itself needs 6 cycles and the
    # ports together (144 + 16 * 9 * 6) / 128 = 8.
    crowded = simulate_timing(program(BASE, [matmul(16, 16, 6, in_w=8, depthwise=1, kernel=3)]))
    spread = simulate_timing(program(BASE, [matmul(16, 16, 6, in_w=10, depthwise=1, kernel=3)]))
    assert crowded.cycles == 3 * 6 + FILL
    assert spread.cycles == 2 * 6 + FILL
    assert int(crowded.stalls[0][0][2]) == 3 * 6 - 6                # charged to the port


def test_the_fc_layer_is_bounded_by_the_scratchpad_ports():
    """ResNet-18's classifier, 512 -> 1000 at batch 1, on a 32x32 array: its weight blocks of one column
    each would take the array at most 2000 cycles (the old model priced ~900, which needs ~890 weight
    bytes per cycle), but the 512,000 weight bytes come through 8 ports of 16 B: at least 4000 cycles."""
    from sieve.ir import GraphBuilder, Op
    from tests.helpers import check_bitexact, quantize, random_calibration
    rng = np.random.default_rng(0)
    b = GraphBuilder("fc")
    b.input("x", (1, 512))
    b.add("fc", Op.DENSE, ["x"], {"out_features": 1000}, {"w": rng.standard_normal((1000, 512))})
    g = b.build(["fc"])
    q = quantize(g, random_calibration(g, rng, 4))
    a = with_overrides(BASE, {"core.pe_rows": 32, "core.simd_lanes": 32})
    result = check_bitexact(q, a, random_calibration(g, rng, 1))
    layer = result.stats.layers[0]
    ports = 512 * 1000 // (a.core.scratchpad_banks * a.core.scratchpad_port_bytes)
    assert layer.mac_cycles >= ports == 4000                       # the old model: 905
    # one column per block: each matmul is its blocks, or longer when the ports bind, plus its fill
    matmuls = sum(ins.opcode is Opcode.MATMUL for ins in result.program.streams[0])
    assert layer.mac_cycles == layer.events["weight_blocks"] + layer.stall_cycles["spad_port"] + \
        matmuls * a.core.matmul_fill_cycles


def test_without_double_buffered_weights_each_block_stops_the_array():
    # k=32, 64 channels, 10 columns: 8 blocks of 16x16; loading one through the ports takes 256 / 128 = 2
    # cycles, then the drain (fill 8): 8 * (10 + 2 + 8) = 160
    a = with_overrides(BASE, {"core.weights_double_buffered": False})
    t = simulate_timing(program(a, [matmul(32, 64, 10)]))
    assert t.cycles == 8 * (10 + 2 + 8) + FILL
    db = simulate_timing(program(BASE, [matmul(32, 64, 10)]))
    assert db.cycles == 8 * 10 + FILL                               # double-buffered: only the columns
