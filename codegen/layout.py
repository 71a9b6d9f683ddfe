"""DRAM allocation and tensor memory layouts.

Activations live in DRAM channel-last (NHWC); a flatten is a view of its input
(no data moves), and the dense layer after it reads its weights in the
matching order. Constants are placed from address 0, activations after them.
"""
from __future__ import annotations

from dataclasses import dataclass

from sieve.ir.graph import Graph

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


def plan_tensors(graph: Graph, start: int, orders: dict, views: set[str],
                 placed: dict[str, int] | None = None) -> tuple[dict[str, TensorLayout], int]:
    """Give every tensor a DRAM address (each its own buffer; ``views`` share their input's; ``placed``
    tensors, the constants, are already in the data image); return layouts and DRAM end. ``orders`` are
    the memory orders the scheduler chose (Schedule.orders)."""
    layouts: dict[str, TensorLayout] = {}
    addr = start
    placed = placed or {}
    for node in graph:
        o = orders[node.name]
        if node.name in placed:
            layouts[node.name] = TensorLayout(placed[node.name], node.out.shape, o.view_shape, o.perm)
            continue
        if node.name in views and node.inputs:
            layouts[node.name] = TensorLayout(layouts[node.inputs[0]].addr, node.out.shape, o.view_shape, o.perm)
            continue
        layouts[node.name] = TensorLayout(addr, node.out.shape, o.view_shape, o.perm)
        addr += -(-node.out.size * node.out.dtype.np.itemsize // DRAM_ALIGN) * DRAM_ALIGN
    return layouts, addr
