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

# event counters, in the order of the ``counts`` vector
EVENTS = ("macs", "dense_macs", "lane_slots", "mac_slots", "acc_adds", "acc_bytes", "spad_read_bytes",
          "spad_write_bytes", "metadata_bytes", "dram_read_bytes", "dram_write_bytes", "vector_ops")
E = {name: i for i, name in enumerate(EVENTS)}
Fields = dict[str, np.ndarray]


def _cdiv(a, b):
    return -(-a // b)


def _dma(f: Fields, arch: ArchConfig, load: bool) -> tuple[np.ndarray, dict]:
    """Cycles on the DRAM channel are the transfer only; the channel model in timing adds contention
    and latency."""
    nbytes = f["rows"] * f["row_bytes"]
    cycles = np.ceil(nbytes / arch.memory.dram_bytes_per_cycle).astype(np.int64)
    if load:
        return cycles, {"dram_read_bytes": nbytes, "spad_write_bytes": nbytes}
    return cycles, {"dram_write_bytes": nbytes, "spad_read_bytes": nbytes}


def _matmul(f: Fields, arch: ArchConfig) -> tuple[np.ndarray, dict]:
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
    dense_cycles = batches * groups * cols + c.matmul_fill_cycles
    dense_spad = k * r * passes + np.where(dw, k * r * cols, batches * r * cols)
    # packed (fmt 1 unstructured, fmt 2 N:M): the group counts the instruction carries
    values = f["groups"] * c.simd_lanes
    sparse_cycles = f["batch_groups"] * cols + c.matmul_fill_cycles
    meta = np.where(f["fmt"] == 1, 4 * k + 2 * values, (values + 1) // 2)
    ev = {
        "macs": np.where(packed, f["nnz"] * cols, k * r * cols),       # effective: only nonzero weights
        "dense_macs": k * r * cols,
        "lane_slots": np.where(packed, values * cols, k * r * cols),
        "mac_slots": np.where(packed, f["batch_groups"], batches * groups) * c.pe_rows * c.simd_lanes * cols,
        "acc_adds": np.where(packed, f["groups"], k * groups) * cols,
        "acc_bytes": acc_bytes,
        "metadata_bytes": np.where(packed, meta, 0),
        # weights once; activations once per row batch (a depthwise batch reads its own channels)
        "spad_read_bytes": np.where(packed, values + f["batch_groups"] * c.simd_lanes * cols, dense_spad),
    }
    return np.where(packed, sparse_cycles, dense_cycles), ev


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
