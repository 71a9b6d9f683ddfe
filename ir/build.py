"""GraphBuilder: add float nodes one at a time, with types inferred by the registry."""
from __future__ import annotations

from typing import Any

import numpy as np

from sieve.ir.graph import Graph, IRError, Node, Op
from sieve.ir.registry import act_attrs, opdef
from sieve.ir.types import DType, QuantParams, TensorType


def normalize_attrs(op: Op, attrs: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and canonical tuple forms of the op's attributes (its registry entry's rules)."""
    d = opdef(op)
    a = d.attrs(dict(attrs))
    return act_attrs(a) if d.act else a


class GraphBuilder:
    def __init__(self, name: str = "model"):
        self.name = name
        self.nodes: dict[str, Node] = {}

    def input(self, name: str, shape: tuple[int, ...], dtype: DType = DType.FLOAT32,
              quant: QuantParams | None = None) -> str:
        self._add(Node(name, Op.INPUT, (), TensorType(tuple(shape), dtype, quant)))
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
        if d.weighted and "b" not in params:
            k = params["w"].shape[0] if params["w"].ndim != 3 else params["w"].shape[:2]
            params["b"] = np.zeros(k, np.float32 if dtype is DType.FLOAT32 else np.int32)
        proto = Node(name, op, tuple(inputs), TensorType((0,)), normalize_attrs(op, attrs or {}), params)
        shape = d.infer(proto, [self.nodes[i].out for i in inputs])
        return self._add(proto.evolve(out=TensorType(shape, dtype, quant)))

    def _add(self, node: Node) -> str:
        if node.name in self.nodes:
            raise IRError("duplicate node name", node.name)
        self.nodes[node.name] = node
        return node.name

    def build(self, outputs: list[str], io_names: dict[str, str] | None = None) -> Graph:
        return Graph(self.nodes.values(), outputs, self.name, io_names)
