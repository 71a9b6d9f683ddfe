"""DRAM allocation and tensor memory layouts.

Activations live in DRAM channel-last (NHWC); a flatten is a view of its input
(no data moves), and the dense layer after it reads its weights in the
matching order. Constants are placed from address 0, activations after them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ir.graph import Graph, Node, Op

DRAM_ALIGN = 64


class CodegenError(Exception):
    def __init__(self, message: str, node: str | None = None, hint: str = ""):
        self.node, self.hint = node, hint
        text = f"layer '{node}': {message}" if node else message
        super().__init__(text + (f" (hint: {hint})" if hint else ""))


@dataclass(frozen=True)
class TensorLayout:
    addr: int
    shape: tuple[int, ...]       # logical
    view_shape: tuple[int, ...]  # logical before flatten
    perm: tuple[int, ...]        # view -> memory

    @property
    def mem_shape(self) -> tuple[int, ...]:
        return tuple(self.view_shape[p] for p in self.perm)


class DataImage:
    """The constant part of DRAM, built up by appending aligned blobs."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def put(self, blob: bytes) -> int:
        addr = len(self.buf)
        self.buf += blob
        self.buf += bytes((-len(self.buf)) % DRAM_ALIGN)
        return addr


def _natural(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (0, 2, 3, 1) if len(shape) == 4 else tuple(range(len(shape)))


def plan_tensors(graph: Graph, start: int) -> tuple[dict[str, TensorLayout], int]:
    """Give every tensor a DRAM address (each its own buffer); return layouts and DRAM end."""
    layouts: dict[str, TensorLayout] = {}
    addr = start
    for node in graph:
        shape = node.out.shape
        if node.op in (Op.FLATTEN, Op.SOFTMAX):      # views: a flatten, or the host's softmax input
            src = layouts[node.inputs[0]]
            layouts[node.name] = TensorLayout(src.addr, shape, src.view_shape, src.perm)
            continue
        if node.op in (Op.ADD, Op.RELU, Op.CONCAT):
            src = layouts[node.inputs[0]]
            view, perm = src.view_shape, src.perm
            if node.op is Op.CONCAT:
                view = shape
            for other in node.inputs[1:]:
                if layouts[other].perm != perm or (node.op is not Op.CONCAT and layouts[other].view_shape != view):
                    raise CodegenError("operands are stored in different memory layouts", node.name,
                                       "add a flatten on both sides or neither")
        else:
            view, perm = shape, _natural(shape)
        layouts[node.name] = TensorLayout(addr, shape, view, perm)
        addr += -(-node.out.size * node.out.dtype.np.itemsize // DRAM_ALIGN) * DRAM_ALIGN
    return layouts, addr


def weight_matrix(graph: Graph, node: Node, layouts: dict[str, TensorLayout]) -> np.ndarray:
    """Weights as [K][KH][KW][C] in the order the input's memory layout presents channels."""
    w = np.asarray(node.params["w"])
    if node.op is Op.CONV2D:
        return np.ascontiguousarray(w.transpose(0, 2, 3, 1))
    if w.ndim == 3:                                   # batched dense: [B][K][C] -> [B*K][1][1][C]
        return np.ascontiguousarray(w.reshape(-1, 1, 1, w.shape[2]))
    src = layouts[node.inputs[0]]
    k = w.shape[0]
    inner = w.reshape((k,) + tuple(src.view_shape[1:]))
    mem = inner.transpose((0,) + tuple(src.perm[1:]))
    return np.ascontiguousarray(mem.reshape(k, 1, 1, -1))
