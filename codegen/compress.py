"""Zero-value compression of DRAM transfers (``Schedule.compress``).

A compressed tensor keeps its place and layout in DRAM; each transfer of it moves, per row, a mask of
one bit per byte and the bytes that are not the tensor's zero value (its zero point: the byte that
stands for 0.0), and the DMA engine expands them at the scratchpad (or packs them on the way out).
So addresses stay static and only the traffic shrinks, as in compressing DMA engines (Rhu et al.,
HPCA 2018). How many bytes a transfer moves depends on the data: the simulator counts them in a
bit-exact run; the instruction carries the compiler's estimate (``zvc_density``, the fraction of bytes
that are not zero, in 255ths, rounded up) for timing-only runs.

Which transfers: those of intermediate int8 activations (``"activations"``; the model's inputs and
outputs are written and read by the host as they are) whose estimated density is below 7/8 (above it
the mask costs more than the zeros save), and weight loads (``"weights"``) whose bytes, known here
exactly, are at least 1/8 zeros.
"""
from __future__ import annotations

import math

import numpy as np

from sieve.arch.isa import Instruction, Opcode
from sieve.ir.graph import Graph
from sieve.ir.types import DType

WORTH = 7 / 8          # compress only below this density: a row moves 1/8 of its bytes as mask


def _extent(ins: Instruction) -> tuple[int, int]:
    """The DRAM bytes [lo, hi) a transfer spans."""
    return ins.dram_addr, ins.dram_addr + (ins.rows - 1) * ins.dram_stride + ins.row_bytes


def _density_code(density: float) -> int:
    return min(255, math.ceil(density * 255 - 1e-9))


def compress_transfers(code: list[Instruction], start: int, graph: Graph, tensors: list[str], layouts: dict,
                       data: bytes, which: frozenset, densities: dict) -> None:
    """Mark the transfers ``code[start:]`` (one layer on one core) that move compressed data; ``tensors``
    are the activations the layer reads and writes."""
    regions = []
    if "activations" in which:
        io = {n.name for n in graph.inputs} | set(graph.outputs)
        for name in tensors:
            node = graph[name]
            if name in io or name not in layouts or node.out.dtype is not DType.INT8:
                continue
            density = densities.get(name, 1.0)
            if density >= WORTH:
                continue
            lo = layouts[name].addr
            regions.append((lo, lo + math.prod(node.out.shape), int(node.out.quant.zp), density))
    consts = np.frombuffer(data, np.uint8)
    for i in range(start, len(code)):
        ins = code[i]
        if ins.opcode not in (Opcode.LOAD, Opcode.STORE) or ins.rows * ins.row_bytes == 0:
            continue
        lo, hi = _extent(ins)
        if hi <= len(consts):                                       # constants: weights (and their bundles)
            if "weights" not in which or ins.opcode is not Opcode.LOAD:
                continue
            view = np.lib.stride_tricks.as_strided(consts[lo:], (ins.rows, ins.row_bytes), (ins.dram_stride, 1))
            density = np.count_nonzero(view) / (ins.rows * ins.row_bytes)
            if density < WORTH:
                code[i] = ins.with_fields(zvc=1, zvc_zero=0, zvc_density=_density_code(density))
            continue
        for r_lo, r_hi, zero, density in regions:
            if r_lo <= lo and hi <= r_hi:
                code[i] = ins.with_fields(zvc=1, zvc_zero=zero, zvc_density=_density_code(density))
                break
