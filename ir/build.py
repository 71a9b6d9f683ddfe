"""GraphBuilder: add float nodes one at a time, with types inferred by the registry."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from sieve_numerics.limits import MAX_TENSOR_ELEMENTS, over

from sieve.ir.graph import Graph, IRError, Node, Op
from sieve.ir.registry import act_attrs, opdef
from sieve.ir.types import DType, QuantParams, TensorType


def normalize_attrs(op: Op, attrs: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and canonical tuple forms of the op's attributes (its registry entry's rules)."""
    d = opdef(op)
    try:
        a = d.attrs(dict(attrs))
        return act_attrs(a) if d.act else a
    except KeyError as err:
        raise IRError(f"{op.value} needs the attribute {err}") from None
    except (TypeError, ValueError) as err:
        raise IRError(f"{op.value}: an attribute is not what it takes: {err}") from None


def check_shape(shape, what: str, name: str) -> tuple[int, ...]:
    """A tensor shape: whole numbers of at least 1, at most ``MAX_TENSOR_ELEMENTS`` elements in all."""
    if not isinstance(shape, (tuple, list)) or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool)
                                                       and n >= 1 for n in shape):
        raise IRError(f"{what} shape {list(shape) if isinstance(shape, (tuple, list)) else shape!r} is not whole "
                      "numbers of at least 1", name)
    size = math.prod(int(n) for n in shape)
    if size > MAX_TENSOR_ELEMENTS:
        raise IRError(over(f"{what} {[int(n) for n in shape]}", size, MAX_TENSOR_ELEMENTS,
                           "SIEVE_MAX_TENSOR_ELEMENTS"), name)
    return tuple(int(n) for n in shape)


class GraphBuilder:
    def __init__(self, name: str = "model"):
        self.name = name
        self.nodes: dict[str, Node] = {}

    def input(self, name: str, shape: tuple[int, ...], dtype: DType = DType.FLOAT32,
              quant: QuantParams | None = None) -> str:
        self._add(Node(name, Op.INPUT, (), TensorType(check_shape(shape, "input", name), dtype, quant)))
        return name

    def add(self, name: str, op: Op, inputs: list[str], attrs: dict[str, Any] | None = None,
            params: dict[str, np.ndarray] | None = None, dtype: DType = DType.FLOAT32,
            quant: QuantParams | None = None) -> str:
        """Add a node; float nodes get float32 parameters, integer nodes keep theirs as given."""
        for src in inputs:
            if src not in self.nodes:
                raise IRError(f"input '{src}' is not defined", name)
        d = opdef(op)
        if d.arity >= 0 and len(inputs) != d.arity:
            raise IRError(f"{op.value} takes {d.arity} input(s), got {len(inputs)}", name)
        if dtype is DType.FLOAT32:
            params = {k: np.asarray(v, dtype=np.float32) for k, v in (params or {}).items()}
        params = dict(params or {})
        if d.weighted and "w" not in params:
            raise IRError(f"{op.value} needs weights", name)
        if d.weighted and "b" not in params:
            k = params["w"].shape[0] if params["w"].ndim != 3 else params["w"].shape[:2]
            params["b"] = np.zeros(k, np.float32 if dtype is DType.FLOAT32 else np.int32)
        if d.weighted and params["w"].ndim != 3 and params["b"].shape != params["w"].shape[:1]:
            raise IRError(f"{op.value}: a bias of shape {list(params['b'].shape)} for {params['w'].shape[0]} "
                          "output channels", name)
        proto = Node(name, op, tuple(inputs), TensorType((0,)), normalize_attrs(op, attrs or {}), params)
        try:
            shape = d.infer(proto, [self.nodes[i].out for i in inputs])
        except IRError:
            raise
        except (IndexError, KeyError, ValueError, TypeError, ZeroDivisionError) as err:
            raise IRError(f"{op.value} cannot take these inputs and attributes: {err}", name) from None
        shape = check_shape(shape, "output", name)
        return self._add(proto.evolve(out=TensorType(shape, dtype, quant)))

    def _add(self, node: Node) -> str:
        if node.name in self.nodes:
            raise IRError("duplicate node name", node.name)
        self.nodes[node.name] = node
        return node.name

    def build(self, outputs: list[str], io_names: dict[str, str] | None = None) -> Graph:
        return Graph(self.nodes.values(), outputs, self.name, io_names)
