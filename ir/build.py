"""GraphBuilder: add float nodes one at a time, with types inferred by the registry."""
from __future__ import annotations

from typing import Any

import numpy as np

from sieve.ir.graph import Graph, IRError, Node, Op
from sieve.ir.registry import opdef
from sieve.ir.types import DType, QuantParams, TensorType


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _pad4(v: Any) -> tuple[int, int, int, int]:
    """pad as one int, (h, w), or (top, left, bottom, right)."""
    if np.isscalar(v):
        return (int(v),) * 4
    v = tuple(int(x) for x in v)
    return v * 2 if len(v) == 2 else v


def normalize_attrs(op: Op, attrs: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and canonical tuple forms of spatial attributes."""
    a = dict(attrs)
    if op in (Op.CONV2D, Op.MAXPOOL, Op.AVGPOOL):
        a["kernel"] = _pair(a["kernel"])
        a["stride"] = _pair(a.get("stride", 1 if op is Op.CONV2D else a["kernel"]))
        a["pad"] = _pad4(a.get("pad", 0))
    if op is Op.CONV2D:
        a["dilation"] = _pair(a.get("dilation", 1))
        a["groups"] = int(a.get("groups", 1))
    if op in (Op.CONV2D, Op.DENSE, Op.ADD, Op.AFFINE):
        a.setdefault("act", "none")
        if a["act"] not in ("none", "relu", "clip"):
            raise IRError(f"unknown activation '{a['act']}' (supported: none, relu, clip)")
        if a["act"] == "clip":
            a["clip_min"], a["clip_max"] = float(a["clip_min"]), float(a["clip_max"])
    return a


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
        if op in (Op.CONV2D, Op.DENSE) and "b" not in params:
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
