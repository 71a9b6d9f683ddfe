"""Memory order of every tensor, and weights in the accelerator's reduction order.

Activations are stored channel-last (NHWC); a flatten or the host's softmax is a view
of its input; elementwise ops and concat keep their inputs' order. A dense layer after
a flatten therefore reduces over (h, w, c), and its weights are reordered to match.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sieve.ir.graph import Graph, Node, Op
from sieve.ir.registry import trailing_broadcast
from sieve.scheduler.plan import ScheduleError


@dataclass(frozen=True)
class MemoryOrder:
    view_shape: tuple[int, ...]   # logical shape before any flatten
    perm: tuple[int, ...]         # view -> memory axis order


def _natural(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (0, 2, 3, 1) if len(shape) == 4 else tuple(range(len(shape)))


def _view(graph: Graph, node: Node, orders: dict) -> MemoryOrder:
    """A flatten, or the host's softmax: a view of its input."""
    return orders[node.inputs[0]]


def _channels_last(graph: Graph, node: Node, orders: dict) -> MemoryOrder:
    """Per-channel parameters: channels must be stored innermost."""
    src = orders[node.inputs[0]]
    if src.perm[-1] != 1 or src.view_shape != node.out.shape:
        raise ScheduleError("a per-channel op needs its input stored channels-last", node.name)
    return src


def _elementwise(graph: Graph, node: Node, orders: dict) -> MemoryOrder:
    """Element by element: every operand in one layout, kept by the output."""
    first = orders[node.inputs[0]]
    for other in node.inputs[1:]:
        o = orders[other]
        if (trailing_broadcast(first.view_shape, o.view_shape) and first.perm == _natural(first.view_shape)
                and o.perm == _natural(o.view_shape)):
            continue                                  # repeats over the leading axes, in memory too
        if o.perm != first.perm or o.view_shape != first.view_shape:
            raise ScheduleError("operands are stored in different memory layouts", node.name,
                                "add a flatten on both sides or neither")
    return first


def _multiply(graph: Graph, node: Node, orders: dict) -> MemoryOrder:
    """Equal shapes: element-wise; one value per channel: the first operand channels-last."""
    b = graph[node.inputs[1]].out.shape
    if b == node.out.shape or trailing_broadcast(node.out.shape, b):
        return _elementwise(graph, node, orders)
    return _channels_last(graph, node, orders)


def _concat(graph: Graph, node: Node, orders: dict) -> MemoryOrder:
    first = orders[node.inputs[0]]
    if any(orders[o].perm != first.perm for o in node.inputs[1:]):
        raise ScheduleError("operands are stored in different memory layouts", node.name,
                            "add a flatten on both sides or neither")
    return MemoryOrder(node.out.shape, first.perm)


def _rows_last(graph: Graph, node: Node, orders: dict) -> MemoryOrder:
    """A row operation over the last axis: the input stored in its natural order (the last axis
    innermost)."""
    src = orders[node.inputs[0]]
    if src.perm != _natural(src.view_shape) or len(src.view_shape) == 4:
        raise ScheduleError(f"a {node.op.value} needs its last axis innermost in memory (tensors of rank 2 or 3)",
                            node.name)
    return src


def _natural_order(graph: Graph, node: Node, orders: dict) -> MemoryOrder:
    return MemoryOrder(node.out.shape, _natural(node.out.shape))


# how each op stores its output, given its inputs' orders (ops not listed: the natural order)
ORDER = {Op.FLATTEN: _view, Op.SOFTMAX: _view, Op.AFFINE: _channels_last, Op.ADD: _elementwise,
         Op.RELU: _elementwise, Op.CONCAT: _concat, Op.LUT: _elementwise, Op.MUL: _multiply,
         Op.QSOFTMAX: _rows_last, Op.LAYERNORM: _rows_last}


def memory_orders(graph: Graph) -> dict[str, MemoryOrder]:
    orders: dict[str, MemoryOrder] = {}
    for node in graph:
        orders[node.name] = ORDER.get(node.op, _natural_order)(graph, node, orders)
    return orders


def hw_weights(graph: Graph, node: Node, orders: dict[str, MemoryOrder]) -> np.ndarray:
    """Weights as [K][KH][KW][C]: the reduction order of the MATMUL instruction."""
    w = np.asarray(node.params["w"])
    if node.op is Op.CONV2D:
        return np.ascontiguousarray(w.transpose(0, 2, 3, 1))
    if w.ndim == 3:                                   # batched dense: [B][K][C] -> [B*K][1][1][C]
        return np.ascontiguousarray(w.reshape(-1, 1, 1, w.shape[2]))
    src = orders[node.inputs[0]]
    k = w.shape[0]
    if len(graph[node.inputs[0]].out.shape) == 3:     # tokens: the reduction is the last axis only
        return np.ascontiguousarray(w.reshape(k, 1, 1, -1))
    inner = w.reshape((k,) + tuple(src.view_shape[1:]))
    mem = inner.transpose((0,) + tuple(src.perm[1:]))
    return np.ascontiguousarray(mem.reshape(k, 1, 1, -1))
