"""The IR: a graph of frozen nodes (networkx on demand, see Graph.to_networkx).

A node produces exactly one tensor, named after the node. Weights are node
parameters (numpy arrays), not separate graph nodes. The graph is immutable in
practice: passes build new graphs with ``Graph.from_nodes``.
"""
from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from sieve.ir.types import TensorType


class IRError(Exception):
    """An invalid graph: names the node and shows its neighbourhood."""

    def __init__(self, message: str, node: str | None = None, context: str = "", hint: str = ""):
        self.node = node
        self.hint = hint
        text = message if node is None else f"node '{node}': {message}"
        if hint:
            text += f" (hint: {hint})"
        if context:
            text += "\n" + context
        super().__init__(text)


class Op(enum.Enum):
    INPUT = "input"
    CONV2D = "conv2d"
    DENSE = "dense"
    ADD = "add"
    RELU = "relu"
    MAXPOOL = "maxpool"
    GLOBALAVGPOOL = "globalavgpool"
    AVGPOOL = "avgpool"      # windows with count_include_pad semantics (padding counts as zero)
    FLATTEN = "flatten"
    CONCAT = "concat"
    AFFINE = "affine"        # per channel x * scale + shift (a batch norm that is not folded)
    SOFTMAX = "softmax"      # runs on the host, in float, on a dequantized graph output
    QSOFTMAX = "qsoftmax"    # softmax over the last axis inside the network, in integers (onnxruntime's QLinearSoftmax)
    LUT = "lut"              # an element-wise function of one tensor (sigmoid, silu, ...): a 256-entry table
    MUL = "mul"              # product of two tensors, the second equal in shape or one value per channel
    BMM = "bmm"              # product of two activations [.., M, K] x [.., K, N] (attention's Q·Kᵀ, P·V)
    RESIZE = "resize"        # nearest-neighbour upsampling by integer factors (each pixel repeated)
    CONST = "const"          # a constant tensor (a bias added after a MatMul, position embeddings)
    LAYERNORM = "layernorm"  # normalization over the last axis, then gamma and beta (integer mean, variance, isqrt)
    MOVE = "move"            # a strided view of a tensor, copied: reshapes and transposes (attention heads)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _frozen(arr: np.ndarray) -> bool:
    """An array no reference can change: read-only, and owning its data or viewing immutable bytes (an ONNX
    initializer's), or a view of such."""
    while arr is not None:
        if arr.flags.writeable:
            return False
        if arr.base is None or isinstance(arr.base, bytes):
            return True
        arr = arr.base if isinstance(arr.base, np.ndarray) else None
    return False


@dataclass(frozen=True, eq=False)
class Node:
    """One operation. ``attrs`` are hashable scalars/tuples; ``params`` are arrays."""

    name: str
    op: Op
    inputs: tuple[str, ...]
    out: TensorType
    attrs: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "attrs", MappingProxyType({k: _freeze(v) for k, v in self.attrs.items()}))
        frozen = {}
        for key, arr in self.params.items():
            if not (isinstance(arr, np.ndarray) and _frozen(arr)):   # a node's own array is shared, not copied
                arr = np.array(arr, copy=True)
                arr.flags.writeable = False
            frozen[key] = arr
        object.__setattr__(self, "params", MappingProxyType(frozen))

    def __reduce__(self):
        """Pickled by its fields (a sweep hands graphs to worker processes)."""
        return (Node, (self.name, self.op, self.inputs, self.out, dict(self.attrs), dict(self.params)))

    def evolve(self, **changes: Any) -> "Node":
        """A copy with some fields replaced (attrs/params replaced whole)."""
        return replace(self, **changes)

    def with_attrs(self, **attrs: Any) -> "Node":
        return replace(self, attrs={**self.attrs, **attrs})

    def __repr__(self) -> str:
        return f"Node({self.name}: {self.op.value}({', '.join(self.inputs)}) -> {self.out})"


class Graph:
    """A DAG of nodes kept in topological order, with named graph outputs. ``io_names`` maps an input
    or output node to the name the model gave that tensor, where the two differ (an imported name
    that is not a valid node name, or an output produced by a node the importer named otherwise)."""

    def __init__(self, nodes: Iterable[Node], outputs: Iterable[str], name: str = "model",
                 io_names: Mapping[str, str] | None = None):
        self.name = name
        self._nodes: dict[str, Node] = {}
        for node in nodes:
            if node.name in self._nodes:
                raise IRError("duplicate node name", node.name)
            self._nodes[node.name] = node
        # the edges as ordered adjacency (each edge once), kept here: the graph algorithms Sieve needs
        # are a topological sort and neighbours, and importing networkx costs 0.2 s per command
        self._succ: dict[str, list[str]] = {name: [] for name in self._nodes}
        self._pred: dict[str, list[str]] = {name: [] for name in self._nodes}
        for node in self._nodes.values():
            for src in dict.fromkeys(node.inputs):
                if src not in self._nodes:
                    raise IRError(f"input '{src}' is not produced by any node", node.name,
                                  hint="define the producer before using it")
                self._succ[src].append(node.name)
                self._pred[node.name].append(src)
        self._order = self._topological_order()
        self.outputs = tuple(outputs)
        for out in self.outputs:
            if out not in self._nodes:
                raise IRError(f"graph output '{out}' is not a node")
        self.io_names = MappingProxyType({k: v for k, v in (io_names or {}).items() if k in self._nodes})

    def __reduce__(self):
        return (Graph, (list(self._nodes.values()), self.outputs, self.name, dict(self.io_names)))

    def _topological_order(self) -> list[str]:
        """Kahn's algorithm, taking among the ready nodes the one given first (networkx's
        lexicographical order keyed by position)."""
        index = {name: i for i, name in enumerate(self._nodes)}
        names = list(self._nodes)
        indegree = {name: len(p) for name, p in self._pred.items()}
        ready = [index[n] for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(name)
            for succ in self._succ[name]:
                indegree[succ] -= 1
                if indegree[succ] == 0:
                    heapq.heappush(ready, index[succ])
        if len(order) < len(names):
            import networkx as nx                      # only to name the cycle in the error
            g = nx.DiGraph([(p, n) for n, preds in self._pred.items() for p in preds])
            cycle = nx.find_cycle(g)
            raise IRError(f"graph has a cycle: {' -> '.join(a for a, _ in cycle)}")
        return order

    def to_networkx(self):
        """The graph as a networkx.DiGraph (for analysis and drawing)."""
        import networkx as nx
        g = nx.DiGraph()
        g.add_nodes_from(self._order)
        g.add_edges_from((p, n) for n in self._order for p in self._pred[n])
        return g

    def io_name(self, name: str) -> str:
        """The model's own name of an input or output tensor."""
        return self.io_names.get(name, name)

    @classmethod
    def from_nodes(cls, nodes: Iterable[Node], outputs: Iterable[str], name: str = "model") -> "Graph":
        return cls(nodes, outputs, name)

    def __iter__(self) -> Iterator[Node]:
        return (self._nodes[n] for n in self._order)

    def __len__(self) -> int:
        return len(self._nodes)

    def __getitem__(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise IRError(f"no node named '{name}'") from None

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(n for n in self if n.op is Op.INPUT)

    def consumers(self, name: str) -> list[Node]:
        return [self._nodes[s] for s in self._succ[name]]

    def replace_nodes(self, nodes: Iterable[Node], outputs: Iterable[str] | None = None,
                      renamed: Mapping[str, str] | None = None) -> "Graph":
        """A new graph of ``nodes``; ``renamed`` (old node -> new node) carries the model's names along."""
        io_names = dict(self.io_names)
        for old, new in (renamed or {}).items():
            if old in self.outputs or old in io_names:
                io_names[new] = io_names.pop(old, old)
        return Graph(nodes, self.outputs if outputs is None else outputs, self.name, io_names)

    def neighbourhood(self, name: str) -> str:
        """A few lines of the graph around one node, for error messages."""
        lines = []
        for pred in self._pred[name]:
            lines.append(f"    {self._nodes[pred]!r}")
        lines.append(f"  > {self._nodes[name]!r}")
        for succ in self._succ[name]:
            lines.append(f"    {self._nodes[succ]!r}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        body = "\n".join(f"  {n!r}" for n in self)
        return f"Graph {self.name} (outputs: {', '.join(self.outputs)})\n{body}"
