"""Memory order of every tensor, and weights in the accelerator's reduction order.

Activations are stored channel-last (NHWC); a flatten or the host's softmax is a view
of its input; elementwise ops and concat keep their inputs' order. A dense layer after
a flatten therefore reduces over (h, w, c), and its weights are reordered to match.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sieve.ir.graph import Graph, Node, Op
from sieve.scheduler.plan import ScheduleError


@dataclass(frozen=True)
class MemoryOrder:
    view_shape: tuple[int, ...]   # logical shape before any flatten
    perm: tuple[int, ...]         # view -> memory axis order


def _natural(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (0, 2, 3, 1) if len(shape) == 4 else tuple(range(len(shape)))


def memory_orders(graph: Graph) -> dict[str, MemoryOrder]:
    orders: dict[str, MemoryOrder] = {}
    for node in graph:
        if node.op in (Op.FLATTEN, Op.SOFTMAX):
            orders[node.name] = orders[node.inputs[0]]
        elif node.op is Op.AFFINE:                      # per channel: channels must be stored innermost
            src = orders[node.inputs[0]]
            if src.perm[-1] != 1 or src.view_shape != node.out.shape:
                raise ScheduleError("a per-channel affine needs its input stored channels-last", node.name)
            orders[node.name] = src
        elif node.op in (Op.ADD, Op.RELU, Op.CONCAT):
            first = orders[node.inputs[0]]
            for other in node.inputs[1:]:
                o = orders[other]
                if o.perm != first.perm or (node.op is not Op.CONCAT and o.view_shape != first.view_shape):
                    raise ScheduleError("operands are stored in different memory layouts", node.name,
                                        "add a flatten on both sides or neither")
            view = node.out.shape if node.op is Op.CONCAT else first.view_shape
            orders[node.name] = MemoryOrder(view, first.perm)
        else:
            orders[node.name] = MemoryOrder(node.out.shape, _natural(node.out.shape))
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
    inner = w.reshape((k,) + tuple(src.view_shape[1:]))
    mem = inner.transpose((0,) + tuple(src.perm[1:]))
    return np.ascontiguousarray(mem.reshape(k, 1, 1, -1))
