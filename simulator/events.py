"""What each instruction costs: unit cycles and event counts, from its fields and the arch.

These counts are data-independent, so timing-only simulation needs no data, and
every cycle and picojoule the simulator reports is a sum of these numbers.
"""
from __future__ import annotations

import math

from sieve.arch.config import ArchConfig
from sieve.arch.isa import Instruction, Opcode

# event counters, in the order of the ``counts`` vector
EVENTS = ("macs", "dense_macs", "lane_slots", "mac_slots", "acc_adds", "acc_bytes", "spad_read_bytes",
          "spad_write_bytes", "metadata_bytes", "dram_read_bytes", "dram_write_bytes", "vector_ops")
E = {name: i for i, name in enumerate(EVENTS)}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def matmul_shape(ins: Instruction) -> tuple[int, int, int]:
    """(k, reduction length per output, output columns) of a MATMUL."""
    taps = ins.kernel_h * ins.kernel_w
    return ins.k, taps if ins.depthwise else taps * ins.in_c, ins.out_h * ins.out_w


def cost(ins: Instruction, arch: ArchConfig) -> tuple[int, list[int]]:
    """(busy cycles of the instruction's unit, event counts). DMA cycles are the transfer only;
    the DRAM channel model in timing adds contention and latency."""
    c = arch.core
    n = [0] * len(EVENTS)
    op = ins.opcode
    if op is Opcode.LOAD or op is Opcode.STORE:
        nbytes = ins.rows * ins.row_bytes
        if op is Opcode.LOAD:
            n[E["dram_read_bytes"]] = n[E["spad_write_bytes"]] = nbytes
        else:
            n[E["dram_write_bytes"]] = n[E["spad_read_bytes"]] = nbytes
        return math.ceil(nbytes / arch.memory.dram_bytes_per_cycle), n
    if op is Opcode.MATMUL and ins.fmt in (1, 2):
        k, r, cols = matmul_shape(ins)
        n[E["macs"]] = ins.nnz * cols                       # effective: only the nonzero weights
        n[E["dense_macs"]] = k * r * cols
        n[E["lane_slots"]] = ins.groups * c.simd_lanes * cols
        n[E["mac_slots"]] = ins.batch_groups * c.pe_rows * c.simd_lanes * cols
        n[E["acc_adds"]] = ins.groups * cols
        n[E["acc_bytes"]] = 4 * k * cols * (2 if ins.accumulate else 1)
        values = ins.groups * c.simd_lanes
        meta = 4 * k + 2 * values if ins.fmt == 1 else (values + 1) // 2
        n[E["metadata_bytes"]] = meta
        n[E["spad_read_bytes"]] = values + ins.batch_groups * c.simd_lanes * cols
        return ins.batch_groups * cols + c.matmul_fill_cycles, n
    if op is Opcode.MATMUL:
        k, r, cols = matmul_shape(ins)
        passes = 2 if ins.fmt == 3 else 1           # wide (int16) weights take two passes
        groups, batches = _cdiv(r, c.simd_lanes) * passes, _cdiv(k, c.pe_rows)
        n[E["macs"]] = n[E["dense_macs"]] = n[E["lane_slots"]] = k * r * cols
        n[E["mac_slots"]] = batches * c.pe_rows * groups * c.simd_lanes * cols
        n[E["acc_adds"]] = k * groups * cols
        n[E["acc_bytes"]] = 4 * k * cols * (2 if ins.accumulate else 1)
        # weights once; activations once per row batch (a depthwise batch reads its own channels)
        n[E["spad_read_bytes"]] = k * r * passes + (k * r * cols if ins.depthwise else batches * r * cols)
        return batches * groups * cols + c.matmul_fill_cycles, n
    if op is Opcode.REQUANT:
        elems = ins.k * ins.cols
        n[E["acc_bytes"]] = 4 * elems
        n[E["spad_read_bytes"]] = 8 * ins.k
        n[E["spad_write_bytes"]] = elems * (4 if ins.out32 else 1)
        n[E["vector_ops"]] = elems
        return _cdiv(elems, c.vector_lanes) + c.vector_fill_cycles, n
    if op is Opcode.ADD or op is Opcode.RELU:
        ops = 2 * ins.count if op is Opcode.ADD else ins.count
        n[E["spad_read_bytes"]] = ops
        n[E["spad_write_bytes"]] = ins.count
        n[E["vector_ops"]] = ops
        return _cdiv(ops, c.vector_lanes) + c.vector_fill_cycles, n
    if op is Opcode.MAXPOOL:
        outs = ins.out_h * ins.out_w * ins.c
        ops = outs * ins.kernel_h * ins.kernel_w
        n[E["spad_read_bytes"]] = ops
        n[E["spad_write_bytes"]] = outs
        n[E["vector_ops"]] = ops
        return _cdiv(ops, c.vector_lanes) + c.vector_fill_cycles, n
    return 0, n      # HALT
