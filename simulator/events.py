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
from sieve.arch.isa import Instruction, Opcode
from sieve.arch.stream import Stream

# event counters, in the order of the ``counts`` vector; the memory events of a transfer come from the
# memory system (``simulator.memory``) when the timing runs, the others from ``COST`` here
MEMORY_EVENTS = ("dram_read_bytes", "dram_write_bytes", "l2_hits", "l2_misses", "l2_writebacks", "l2_bytes")
EVENTS = ("macs", "dense_macs", "lane_slots", "mac_slots", "acc_adds", "acc_bytes", "spad_read_bytes",
          "spad_write_bytes", "metadata_bytes", "vector_ops", "weight_blocks", "spad_port_stall_cycles") + MEMORY_EVENTS
E = {name: i for i, name in enumerate(EVENTS)}
Fields = dict[str, np.ndarray]


def _cdiv(a, b):
    return -(-a // b)


def _dma(f: Fields, arch: ArchConfig, load: bool) -> tuple[np.ndarray, dict]:
    """The scratchpad side of a transfer; its cycles and its DRAM and L2 traffic come from the memory
    system when the timing runs."""
    nbytes = f["rows"] * f["row_bytes"]
    return 0, {"spad_write_bytes" if load else "spad_read_bytes": nbytes}


def _bank_bytes(lo, length, nbytes, bank: int, size: int):
    """Of ``nbytes`` read evenly over [lo, lo + length), the share that lies in bank ``bank``."""
    overlap = np.clip(np.minimum(lo + length, (bank + 1) * size) - np.maximum(lo, bank * size), 0, None)
    return nbytes * overlap / np.maximum(length, 1)


def _port_cycles(f: Fields, w_len, w_read, x_len, x_read, arch: ArchConfig):
    """Cycles the busiest scratchpad bank needs to deliver a MATMUL's operands: the weights (``w_read``
    bytes read evenly over the ``w_len`` bytes at ``w_addr``) and the activations (``x_read`` over
    ``x_len`` at ``x_addr``), each bank ``scratchpad_port_bytes`` per cycle."""
    c = arch.core
    size = c.scratchpad_bytes // c.scratchpad_banks
    worst = np.zeros(len(w_len))
    for b in range(c.scratchpad_banks):
        load = _bank_bytes(f["w_addr"], w_len, w_read, b, size) + _bank_bytes(f["x_addr"], x_len, x_read, b, size)
        worst = np.maximum(worst, load)
    return np.ceil(worst / c.scratchpad_port_bytes - 1e-9).astype(np.int64)


def _matmul(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
    """A weight-stationary array: the weights enter it a block (``pe_rows`` x ``simd_lanes``) at a
    time, then the output columns stream past, one per cycle. Per block it computes ``cols`` cycles;
    an array without double-buffered weights also stops to load the block (its bytes at one bank's
    port rate) and to drain before the next. The operands reach the array through the scratchpad
    ports, so the instruction takes at least the busiest bank's bytes / port bytes; plus the skew
    and drain once (``matmul_fill_cycles``)."""
    c = arch.core
    k, cols = f["k"], f["out_h"] * f["out_w"]
    taps = f["kernel_h"] * f["kernel_w"]
    dw = f["depthwise"] == 1
    r = np.where(dw, taps, taps * f["in_c"])
    packed = (f["fmt"] == 1) | (f["fmt"] == 2)
    acc_bytes = 4 * k * cols * np.where(f["accumulate"] == 1, 2, 1)
    # dense (fmt 0) and wide int16 (fmt 3, two passes): every reduction value, whole SIMD groups
    passes = np.where(f["fmt"] == 3, 2, 1)
    groups, batches = _cdiv(r, c.simd_lanes) * passes, _cdiv(k, c.pe_rows)
    # packed (fmt 1 unstructured, fmt 2 N:M): the group counts the instruction carries
    values = f["groups"] * c.simd_lanes
    meta = np.where(f["fmt"] == 1, 4 * k + 2 * values, (values + 1) // 2)
    blocks = np.where(packed, f["batch_groups"], batches * groups)
    # what the array reads: weights once; activations once per block row batch (a depthwise batch
    # reads its own channels for every row)
    w_read = np.where(packed, values + meta, k * r * passes)
    x_read = np.where(packed, f["batch_groups"] * c.simd_lanes * cols,
                      np.where(dw, k * r * cols, batches * r * cols))
    x_len = f["in_h"] * f["in_w"] * np.where(dw, k, f["in_c"])
    port = _port_cycles(f, w_read, w_read, x_len, x_read, arch)
    load = _cdiv(c.pe_rows * c.simd_lanes, c.scratchpad_port_bytes)
    per_block = cols if c.weights_double_buffered else cols + load + c.matmul_fill_cycles
    mac_cycles = blocks * per_block
    cycles = np.maximum(mac_cycles, port) + c.matmul_fill_cycles
    ev = {
        "macs": np.where(packed, f["nnz"] * cols, k * r * cols),       # effective: only nonzero weights
        "dense_macs": k * r * cols,
        "lane_slots": np.where(packed, values * cols, k * r * cols),
        "mac_slots": blocks * c.pe_rows * c.simd_lanes * cols,
        "acc_adds": np.where(packed, f["groups"], k * groups) * cols,
        "acc_bytes": acc_bytes,
        "metadata_bytes": np.where(packed, meta, 0),
        "spad_read_bytes": w_read + x_read - np.where(packed, meta, 0),
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
}


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
