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


@dataclass(frozen=True)
class Lifetime:
    """When a tensor's buffer is in use, in emission steps (the parts of layers in the order they are
    emitted): written from ``first`` (-1: by the host, before the run), last read at ``last`` (None: read
    by the host after the run, a graph output), by the parts on ``cores``."""
    first: int
    last: int | None
    cores: frozenset


def plan_tensors(graph: Graph, start: int, orders: dict, views: set[str],
                 placed: dict[str, int] | None = None,
                 lifetimes: dict[str, Lifetime] | None = None,
                 on_chip: set[str] | None = None) -> tuple[dict[str, TensorLayout], int]:
    """Give every tensor a DRAM address; return the layouts and the DRAM end. ``views`` share their input's
    buffer; ``placed`` tensors (the constants) are in the
    data image. With ``lifetimes``, a tensor takes the buffer of one that is dead by the time it is first
    written, when both live on one and the same core: a core's queues keep its layers' reads before a later
    layer's writes (its loads complete in order, and a layer's stores follow its own loads), while another
    core's writes are ordered only after the data they read, so buffers are never shared across cores.
    ``orders`` are the memory orders the scheduler chose (Schedule.orders). Tensors ``on_chip`` (inside a
    fused stack) get no buffer."""
    layouts: dict[str, TensorLayout] = {}
    addr = start
    placed = placed or {}
    free: list[list] = []                                   # [addr, size, free after step, core]
    for node in graph:
        o = orders[node.name]
        if node.name in (on_chip or ()):
            continue
        if node.name in placed:
            layouts[node.name] = TensorLayout(placed[node.name], node.out.shape, o.view_shape, o.perm)
            continue
        if node.name in views and node.inputs:
            layouts[node.name] = TensorLayout(layouts[node.inputs[0]].addr, node.out.shape, o.view_shape, o.perm)
            continue
        size = buffer_bytes(node)
        life = (lifetimes or {}).get(node.name)
        at = None
        if life is not None and len(life.cores) == 1:
            core = next(iter(life.cores))
            fits = [b for b in free if b[1] >= size and b[2] < life.first and b[3] == core]
            if fits:
                block = min(fits, key=lambda b: b[1])             # the smallest block that holds it
                at = block[0]
                block[0], block[1] = block[0] + size, block[1] - size
        if at is None:
            at, addr = addr, addr + size
        layouts[node.name] = TensorLayout(at, node.out.shape, o.view_shape, o.perm)
        if life is not None and life.last is not None and len(life.cores) == 1:
            free.append([at, size, life.last, next(iter(life.cores))])
    return layouts, addr


def buffer_bytes(node) -> int:
    """A tensor's DRAM buffer: its bytes, aligned."""
    return -(-node.out.size * node.out.dtype.np.itemsize // DRAM_ALIGN) * DRAM_ALIGN
