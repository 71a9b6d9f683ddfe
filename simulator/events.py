"""What each instruction costs: unit cycles and event counts, from its fields and the arch.

One entry per opcode in ``COST``; each prices every instruction of its opcode at once, from the
field arrays of the decoded stream (``arch.stream``). These counts are data-independent, so
timing-only simulation needs no data, and every cycle and picojoule the simulator reports is a
sum of these numbers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from sieve.arch.config import ArchConfig
from sieve.arch.formats import BITS_OF, KIND_OF, group_lanes, multiplier_count, tile_layout
from sieve.arch.isa import Instruction, Opcode
from sieve.arch.stream import Stream

# event counters, in the order of the ``counts`` vector; the memory events of a transfer come from the
# memory system (``simulator.memory``) when the timing runs, the others from ``COST`` here
MEMORY_EVENTS = ("dram_read_bytes", "dram_write_bytes", "l2_hits", "l2_misses", "l2_writebacks", "l2_bytes")
# what zero-value compression did to the transfers that use it: their bytes as stored, and the mask and
# nonzero bytes moved instead (``simulator.timing``, from the data or the binary's estimate)
ZVC_EVENTS = ("zvc_raw_bytes", "zvc_bytes")
EVENTS = ("macs", "int4_macs", "dense_macs", "lane_slots", "mac_slots", "acc_adds", "scale_mults", "acc_bytes",
          "spad_read_bytes", "spad_write_bytes", "metadata_bytes", "vector_ops", "weight_blocks",
          "spad_port_stall_cycles") + ZVC_EVENTS + MEMORY_EVENTS
E = {name: i for i, name in enumerate(EVENTS)}
Fields = dict[str, np.ndarray]


def _cdiv(a, b):
    return -(-a // b)


def _dma(f: Fields, arch: ArchConfig, load: bool) -> tuple[np.ndarray, dict]:
    """The scratchpad side of a transfer; its cycles and its DRAM and L2 traffic come from the memory
    system when the timing runs."""
    nbytes = f["rows"] * f["row_bytes"]
    return 0, {"spad_write_bytes" if load else "spad_read_bytes": nbytes}


def _window_conflicts(f: Fields, arch: ArchConfig):
    """Cycles per output column of a depthwise matmul's activation reads: each cycle it reads a vector of
    ``k`` channels at every window position; a vector lies in bank (address / port bytes) mod banks, and
    the positions whose vectors land in one bank are read one after another there."""
    c = arch.core
    n = len(f["k"])
    worst = np.ones(n, np.int64)
    dw = np.flatnonzero(f["depthwise"] == 1)
    if dw.size == 0:
        return worst
    kh, kw, dil_h, dil_w = f["kernel_h"][dw], f["kernel_w"][dw], f["dil_h"][dw], f["dil_w"][dw]
    chans = np.where(f["x_pitch"][dw] > 0, f["x_pitch"][dw], f["in_c"][dw])   # bytes per pixel
    row = f["in_w"][dw] * chans
    hits = np.zeros((dw.size, c.scratchpad_banks), np.int64)
    for dy in range(int(kh.max())):
        for dx in range(int(kw.max())):
            bank = ((dy * dil_h * row + dx * dil_w * chans) // c.scratchpad_port_bytes) % c.scratchpad_banks
            live = (dy < kh) & (dx < kw)
            np.add.at(hits, (np.arange(dw.size)[live], bank[live]), 1)
    # a vector (a row batch's channels) wider than one port takes several cycles of its bank
    worst[dw] = hits.max(axis=1) * _cdiv(np.minimum(f["k"][dw], c.pe_rows), c.scratchpad_port_bytes)
    return worst


def _matmul(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """A weight-stationary array: the weights enter it a block (``pe_rows`` x ``simd_lanes``) at a
    time, then the output columns stream past, one per cycle. Per block it computes ``cols`` cycles;
    an array without double-buffered weights also stops to load the block (through the scratchpad
    ports) and to drain before the next. The operands reach the array through the ports, so the
    instruction takes at least (weight + activation bytes) / (banks x port bytes) cycles, and a
    depthwise window whose vectors crowd a bank takes that bank's pace; plus the skew and drain once
    (``matmul_fill_cycles``). docs/memory.md derives examples."""
    c = arch.core
    k, cols = f["k"], f["out_h"] * f["out_w"]
    taps = f["kernel_h"] * f["kernel_w"]
    dw = f["depthwise"] == 1
    r = np.where(dw, taps, taps * f["in_c"])
    code = f["fmt"]                                 # a weight format (arch.formats; verified)
    packed, bits = KIND_OF[code] != 0, BITS_OF[code]
    lanes = group_lanes(code, c.simd_lanes, c.int4_macs_per_lane)   # reduction values per SIMD group
    acc_bytes = 4 * k * cols * np.where(f["accumulate"] == 1, 2, 1)
    # dense: every reduction value, whole SIMD groups (int16 weights: two passes)
    passes = np.where(bits == 16, 2, 1)
    groups, batches = _cdiv(r, lanes) * passes, _cdiv(k, c.pe_rows)
    # packed (unstructured, N:M): the group counts the instruction carries
    values = f["groups"] * lanes
    mults = multiplier_count(k, f["in_c"], f["w_group"], f["depthwise"])
    _, head, meta_at, mult_at, end = tile_layout(code, k, r, values, f["nm_n"], f["nm_m"], mults)
    meta = head + mult_at - meta_at + mults          # row table, indices or offsets, scale multipliers
    blocks = np.where(packed, f["batch_groups"], batches * groups)
    # what the array reads: the weight tile once; activations once per block row batch (a depthwise
    # batch reads its own channels for every row)
    w_read = end
    x_read = np.where(packed, f["batch_groups"] * lanes * cols,
                      np.where(dw, k * r * cols, batches * r * cols))
    # the scratchpad: banks interleaved every port-width bytes, so a contiguous stream spreads over all of
    # them; together they deliver banks x port bytes per cycle to the array (weights and activations)
    port = _cdiv(w_read + x_read, c.scratchpad_banks * c.scratchpad_port_bytes)
    # a depthwise window reads several vectors per cycle, which can crowd a bank
    port = np.maximum(port, np.where(dw, batches * cols * _window_conflicts(f, arch), 0))
    load = _cdiv(c.pe_rows * c.simd_lanes, c.scratchpad_banks * c.scratchpad_port_bytes)
    per_block = cols if c.weights_double_buffered else cols + load + c.matmul_fill_cycles
    mac_cycles = blocks * per_block
    cycles = np.maximum(mac_cycles, port) + c.matmul_fill_cycles
    macs = np.where(packed, f["nnz"] * cols, k * r * cols)          # effective: only nonzero weights
    ev = {
        "macs": macs,
        "int4_macs": np.where(bits == 4, macs, 0),
        "dense_macs": k * r * cols,
        "lane_slots": np.where(packed, values * cols, k * r * cols),
        "mac_slots": blocks * c.pe_rows * lanes * cols,
        "acc_adds": np.where(packed, f["groups"], k * groups) * cols,
        "scale_mults": mults * taps * cols,        # a group's partial sum times its multiplier, per tap
        "acc_bytes": acc_bytes,
        "metadata_bytes": meta,
        "spad_read_bytes": w_read + x_read - meta,
        "weight_blocks": blocks,
        "spad_port_stall_cycles": np.maximum(port - mac_cycles, 0),
    }
    return cycles, ev


def _requant(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    elems = f["k"] * f["cols"]
    return _cdiv(elems, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "acc_bytes": 4 * elems, "spad_read_bytes": 8 * f["k"],
        "spad_write_bytes": elems * np.where(f["out32"] == 1, 4, 1), "vector_ops": elems}


def _eltwise(ops_per_elem: int) -> Callable:
    def cost(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
        ops = ops_per_elem * f["count"]
        return _cdiv(ops, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
            "spad_read_bytes": ops, "spad_write_bytes": f["count"], "vector_ops": ops}
    return cost


def _affine(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """Four float operations per element (dequantize, scale, shift, quantize); the channel parameters
    (8 bytes per channel) are read once."""
    ops = 4 * f["count"]
    return _cdiv(ops, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": f["count"] + 8 * f["c"], "spad_write_bytes": f["count"], "vector_ops": ops}


def _lut(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """One table read per element (the 256-byte table sits in the scratchpad)."""
    return _cdiv(f["count"], arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": 2 * f["count"], "spad_write_bytes": f["count"], "vector_ops": f["count"]}


def _mul(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """An integer product and a float scaling per element; b is read once per element of a."""
    ops = 2 * f["count"]
    return _cdiv(ops, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": 2 * f["count"], "spad_write_bytes": f["count"], "vector_ops": ops}


def _widen(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """A subtraction per element; int8 in, int16 out."""
    n = f["rows"] * f["cols"]
    return _cdiv(n, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": n, "spad_write_bytes": 2 * n, "vector_ops": n}


def _softmax(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """Five vector operations per element: the row maximum, the table read and the row sum, the product
    and the integer division; the 1 KiB table is in the scratchpad."""
    n = f["rows"] * f["cols"]
    return _cdiv(5 * n, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": 2 * n + 4 * n, "spad_write_bytes": n, "vector_ops": 5 * n}


def _layernorm(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """Per element: the row sum, the deviation, its square and the sum of squares, the division by the
    row's root, the gamma product with beta, the requantization (seven vector operations); per row the
    Newton square root, a division, an add and a shift per iteration, at most 6 iterations below 2^63
    (numerics.ibert.SQRT_ITERATIONS), counted as 18 operations."""
    n = f["rows"] * f["cols"]
    ops = 7 * n + 18 * f["rows"]
    return _cdiv(ops, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": 2 * n + 8 * f["cols"] * f["rows"], "spad_write_bytes": n, "vector_ops": ops}


def _lerp(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """Per output element: the two rows' weighted sum at both columns (four multiply-adds) and the
    requantization (five vector operations), reading four input values and the column's table entry."""
    n = f["out_w"] * f["c"]
    return _cdiv(5 * n, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": 4 * n + 6 * f["out_w"], "spad_write_bytes": n, "vector_ops": 5 * n}


def _maxpool(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    outs = f["out_h"] * f["out_w"] * f["c"]
    ops = outs * f["kernel_h"] * f["kernel_w"]
    return _cdiv(ops, arch.core.vector_lanes) + arch.core.vector_fill_cycles, {
        "spad_read_bytes": ops, "spad_write_bytes": outs, "vector_ops": ops}


COST: dict[Opcode, Callable[[Fields, ArchConfig], tuple[np.ndarray, dict]]] = {
    Opcode.HALT: lambda f, arch: (0, {}),
    Opcode.LOAD: lambda f, arch: _dma(f, arch, True),
    Opcode.STORE: lambda f, arch: _dma(f, arch, False),
    Opcode.MATMUL: _matmul,
    Opcode.REQUANT: _requant,
    Opcode.ADD: _eltwise(2),
    Opcode.RELU: _eltwise(1),
    Opcode.MAXPOOL: _maxpool,
    Opcode.AFFINE: _affine,
    Opcode.WAIT: lambda f, arch: (0, {}),            # holds its queue; costs nothing itself
    Opcode.LUT: _lut,
    Opcode.MUL: _mul,
    Opcode.WIDEN: _widen,
    Opcode.SOFTMAX: _softmax,
    Opcode.LAYERNORM: _layernorm,
    Opcode.LERP: _lerp,
}


# What a compute instruction touches that the other compute unit may also touch, per opcode: the MAC
# array reads weights and activations from the scratchpad and writes the accumulator; a vector
# instruction writes the scratchpad and (REQUANT) reads the accumulator. Ranges are [start, end):
# "w" and "x" scratchpad bytes read by a MATMUL, "dst" scratchpad bytes a vector op writes, "acc"
# accumulator entries. Used where the vector unit has its own path (``core.vector_own_path``).
def _matmul_touches(f: Fields, arch: ArchConfig) -> dict:
    c = arch.core
    taps = f["kernel_h"] * f["kernel_w"]
    code = f["fmt"]
    r = np.where(f["depthwise"] == 1, taps, taps * f["in_c"])
    values = f["groups"] * group_lanes(code, c.simd_lanes, c.int4_macs_per_lane)
    mults = multiplier_count(f["k"], f["in_c"], f["w_group"], f["depthwise"])
    w = tile_layout(code, f["k"], r, values, f["nm_n"], f["nm_m"], mults)[-1]
    pitch = np.where(f["x_pitch"] > 0, f["x_pitch"], f["in_c"])
    x_end = f["x_addr"] + (f["in_h"] * f["in_w"] - 1) * pitch + f["in_c"]
    return {"w": (f["w_addr"], f["w_addr"] + w), "x": (f["x_addr"], np.maximum(x_end, f["x_addr"])),
            "acc": (f["acc_addr"], f["acc_addr"] + f["k"] * f["out_h"] * f["out_w"])}


def _requant_touches(f: Fields, arch: ArchConfig) -> dict:
    n = f["k"] * f["cols"]
    row = f["k"] * np.where(f["out32"] == 1, 4, 1)
    pitch = np.where(f["dst_pitch"] > 0, f["dst_pitch"], row)
    end = f["dst_addr"] + (f["cols"] - 1) * pitch + row
    return {"acc": (f["acc_addr"], f["acc_addr"] + n), "dst": (f["dst_addr"], np.maximum(end, f["dst_addr"]))}


TOUCHES: dict[Opcode, Callable[[Fields, ArchConfig], dict]] = {
    Opcode.MATMUL: _matmul_touches,
    Opcode.REQUANT: _requant_touches,
    Opcode.ADD: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["count"])},
    Opcode.RELU: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["count"])},
    Opcode.AFFINE: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["count"])},
    Opcode.LUT: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["count"])},
    Opcode.MUL: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["count"])},
    Opcode.WIDEN: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + 2 * f["rows"] * f["cols"])},
    Opcode.SOFTMAX: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["rows"] * f["cols"])},
    Opcode.LAYERNORM: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["rows"] * f["cols"])},
    Opcode.LERP: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["out_w"] * f["c"])},
    Opcode.MAXPOOL: lambda f, arch: {"dst": (f["dst_addr"], f["dst_addr"] + f["c"] * f["out_h"] * f["out_w"])},
}


def units(stream: Stream, arch: ArchConfig) -> tuple[np.ndarray, np.ndarray]:
    """(unit of each instruction: 0 the MAC array or a queue's only unit, 1 the vector unit where it has
    its own path; the instruction each must wait for on the other unit, or -1). Compute instructions
    issue in program order, each to its unit; one waits for the last instruction issued before it to
    the other unit only when their footprints (``TOUCHES``) overlap, and all earlier instructions on
    that unit ended before that one started."""
    n = len(stream)
    unit, dep = np.zeros(n, np.int64), np.full(n, -1, np.int64)
    if not arch.core.vector_own_path:
        return unit, dep
    ranges = {name: (np.zeros(n, np.int64), np.zeros(n, np.int64)) for name in ("w", "x", "acc", "dst")}
    for op, (idx, fields) in stream.fields.items():
        if op in TOUCHES:
            unit[idx] = int(op is not Opcode.MATMUL)
            for name, (lo, hi) in TOUCHES[op](fields, arch).items():
                ranges[name][0][idx], ranges[name][1][idx] = lo, hi
    compute = np.flatnonzero(np.isin(stream.opcode, [int(op) for op in TOUCHES]))
    u = unit[compute]
    # the last compute instruction before each one on the other unit (positions in ``compute``)
    last = [np.maximum.accumulate(np.where(u == side, np.arange(u.size), -1)) for side in (0, 1)]
    prev = np.where(u == 0, np.r_[-1, last[1][:-1]], np.r_[-1, last[0][:-1]])
    have = prev >= 0
    a, b = compute[have], compute[prev[have]]
    mm, vec = np.where(unit[a] == 0, a, b), np.where(unit[a] == 0, b, a)

    def overlap(one: str, other: str) -> np.ndarray:
        (lo1, hi1), (lo2, hi2) = ranges[one], ranges[other]
        return (lo1[mm] < hi2[vec]) & (lo2[vec] < hi1[mm]) & (lo1[mm] < hi1[mm]) & (lo2[vec] < hi2[vec])
    clash = overlap("acc", "acc") | overlap("w", "dst") | overlap("x", "dst")
    dep[a[clash]] = b[clash]
    return unit, dep


def costs(stream: Stream, arch: ArchConfig) -> tuple[np.ndarray, np.ndarray]:
    """(busy cycles of each instruction's unit [n], event counts [n, len(EVENTS)])."""
    n = len(stream)
    cycles = np.zeros(n, np.int64)
    counts = np.zeros((n, len(EVENTS)), np.int64)
    for op, (idx, fields) in stream.fields.items():
        cyc, ev = COST[op](fields, arch)
        cycles[idx] = cyc
        for name, values in ev.items():
            counts[idx, E[name]] = values
    return cycles, counts


def cost(ins: Instruction, arch: ArchConfig) -> tuple[int, list[int]]:
    """One instruction's (busy cycles, event counts): the same table, for hand checks."""
    cycles, counts = costs(Stream.of([ins]), arch)
    return int(cycles[0]), counts[0].tolist()
