"""ONNX import: float models, and quantized models in QDQ and QOperator form.

Float models become a float Graph (Sieve quantizes them). Quantized models
become an int8 Graph that keeps the model's own scales and zero points:

- QOperator nodes (QLinearConv, QLinearMatMul, QGemm, QLinearAdd,
  QLinearGlobalAveragePool, ConvInteger, MatMulInteger) map one to one;
- in QDQ form, DequantizeLinear -> op [-> Relu/Clip] -> QuantizeLinear groups
  fold into the same integer ops;
- QuantizeLinear on a graph input and DequantizeLinear on a graph output stay
  on the host (the binary's input/output descriptors carry the scales);
- uint8 tensors are stored as int8 shifted by 128 (QuantParams.unsigned), an
  exact transformation for every integer op.

Shape subgraphs (Shape, Gather, Concat, Unsqueeze, ... on constants) are
folded while importing; unsupported ops are one FrontendError naming the op,
the node and the supported list.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sieve_numerics.limits import MAX_TENSOR_ELEMENTS, over

from sieve.frontend.errors import FrontendError
from sieve.frontend.onnx_fold import FOLD, fold
from sieve.ir.build import GraphBuilder
from sieve.ir.graph import Graph, IRError, Op
from sieve.ir.registry import row_major
from sieve.ir.types import DType, QuantParams

log = logging.getLogger("sieve")
MIN_OPSET = 10               # the integer ops (QLinearConv, ConvInteger, ...) date from opset 10


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - onnx is a core dependency
        raise FrontendError("the onnx package is not installed") from None
    return onnx, numpy_helper


class _Q:
    """Quantization of an integer tensor in the model: float scale(s), zero point(s), signedness."""

    def __init__(self, scale: np.ndarray, zp: np.ndarray, unsigned: bool, ort_u8: bool | None = None):
        self.scale = np.asarray(scale, np.float32).ravel()
        self.zp = np.asarray(zp).astype(np.int64).ravel() if zp is not None else np.zeros(1, np.int64)
        self.unsigned = unsigned
        # the type onnxruntime's x86 CPU provider computes this tensor in: uint8 when the model says
        # so, or when it converts an int8 QuantizeLinear -> DequantizeLinear pair (see ort_u8 below)
        self.ort_u8 = unsigned if ort_u8 is None else ort_u8
        self.as_int8 = False        # a uint8 tensor that stands for Sieve's int8 (+ 128): see onnx_export
        self.axis, self.block = 1, 0   # a weight's DequantizeLinear: the scales' axis and block size

    def same(self, other: "_Q") -> bool:
        return (np.array_equal(self.scale, other.scale) and np.array_equal(self.zp, other.zp)
                and self.unsigned == other.unsigned)

    def activation(self) -> QuantParams:
        """Per-tensor params as stored in Sieve (uint8 values shifted into int8)."""
        if self.scale.size != 1 or self.zp.size != 1:
            raise ValueError("activations must be quantized per tensor")
        return QuantParams.per_tensor(float(self.scale[0]), int(self.zp[0]) - (128 if self.unsigned else 0),
                                      self.unsigned and not self.as_int8)


@dataclass(frozen=True)
class View:
    """An ONNX tensor that is a strided view of an IR tensor (Reshape, Transpose, Squeeze, Gather of one index,
    Slice, Split: no data moves until an op reads it). Offset and strides count elements of the IR tensor's
    row-major order."""
    base: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0

    def contiguous(self) -> bool:
        return self.offset == 0 and all(s == r for s, r, d in zip(self.strides, row_major(self.shape), self.shape)
                                        if d > 1)

    def permute(self, perm) -> "View":
        return View(self.base, tuple(self.shape[p] for p in perm), tuple(self.strides[p] for p in perm), self.offset)

    def reshape(self, shape: tuple[int, ...]) -> "View | None":
        """The same elements as ``shape`` without a copy, or None when the strides do not allow it (old
        axes that merge into one new axis must be contiguous with each other), as numpy decides it."""
        od = [d for d in self.shape if d != 1]
        os_ = [s for d, s in zip(self.shape, self.strides) if d != 1]
        nd = list(shape)
        ns = [0] * len(nd)
        oi, oj, ni, nj = 0, 1, 0, 1
        while ni < len(nd) and oi < len(od):
            pn, po = nd[ni], od[oi]
            while pn != po:
                if pn < po:
                    pn *= nd[nj]
                    nj += 1
                else:
                    po *= od[oj]
                    oj += 1
            if any(os_[k] != od[k + 1] * os_[k + 1] for k in range(oi, oj - 1)):
                return None
            ns[nj - 1] = os_[oj - 1]
            for k in range(nj - 1, ni, -1):
                ns[k - 1] = ns[k] * nd[k]
            ni, nj, oi, oj = nj, nj + 1, oj, oj + 1
        return View(self.base, tuple(shape), tuple(ns), self.offset)


# ops whose 4-D operands are images (NCHW): a 4-D view they read is stored as one
IMAGE_OPS = frozenset({Op.CONV2D, Op.MAXPOOL, Op.AVGPOOL, Op.GLOBALAVGPOOL, Op.AFFINE, Op.RESIZE, Op.CONCAT})


def collapse(shape: tuple[int, ...]) -> tuple[int, ...]:
    """How a tensor of rank 4 or more is stored in the IR when it is not an image: its leading axes merged
    ([B, H, T, d] -> [B·H, T, d]); 4-D IR tensors are images (NCHW, stored channels-last)."""
    if len(shape) <= 3:
        return tuple(shape)
    return (int(np.prod(shape[:-2])),) + tuple(shape[-2:])


def _clean(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.]", "_", name).strip("_.") or "t"
    return clean if clean[0].isalpha() else "t_" + clean


def _sanitize(name: str, taken: set[str]) -> str:
    clean = _clean(name)
    base, i = clean, 1
    while clean in taken:
        clean, i = f"{base}_{i}", i + 1
    taken.add(clean)
    return clean


class _Importer:
    def __init__(self, model, source: str, batch: int):
        onnx, self.nh = _onnx()
        self.source, self.batch = source, batch
        self.graph = model.graph
        self.opset = {o.domain or "": o.version for o in model.opset_import}
        self.consts: dict[str, np.ndarray] = {t.name: self._initializer(t) for t in self.graph.initializer}
        for value in self.consts.values():             # read-only: nodes share them (and views of them)
            value.flags.writeable = False
        self.names: dict[str, str] = {}            # onnx tensor -> IR node
        self.taken: set[str] = set()
        self.b = GraphBuilder(_sanitize(self.graph.name or Path(source).stem, set()))
        self.qinfo: dict[str, _Q] = {}              # onnx tensor that is an integer activation
        self.dq: dict[str, str] = {}                # DequantizeLinear output -> integer onnx tensor
        self.dq_const: dict[str, tuple[np.ndarray, _Q]] = {}   # DQ of a constant: (ints, quant)
        self.views: dict[str, View] = {}            # onnx tensor -> the view of an IR tensor it is
        self.moved: dict[tuple, str] = {}           # (a view, the shape it is stored as) copied -> its IR node
        # a pointwise chain of one float tensor (onnx tensor -> (source onnx tensor, postfix program)):
        # one 256-entry table on the accelerator once the chain ends (numerics.tables.expression)
        self.exprs: dict[str, tuple[str, str]] = {}
        self.pending: dict[str, tuple] = {}         # QDQ float op waiting for its QuantizeLinear
        self.raw_inputs: dict[str, tuple] = {}      # integer graph inputs not yet given a scale
        # written by `sieve quantize`: its uint8 tensors are int8 + 128, read back as int8
        self.int8_io = any(p.key == "sieve.activations" and p.value == "int8" for p in model.metadata_props)
        self.finished: dict[str, _Q] = {}          # float output of a QDQ group -> its first QuantizeLinear
        self.float_layers: list[str] = []           # layers onnxruntime computes in float on x86
        self.consumers: dict[str, int] = {}
        self.readers: dict[str, list] = {}
        for n in self.graph.node:
            for i in set(n.input):
                self.consumers[i] = self.consumers.get(i, 0) + 1
                self.readers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in self.graph.output}
        for o in self.graph_outputs:
            self.consumers[o] = self.consumers.get(o, 0) + 1

    def _initializer(self, t) -> np.ndarray:
        """An initializer as an array, its declared size checked before it is read."""
        dims = list(t.dims)
        if any(d < 0 for d in dims):
            raise FrontendError(f"initializer '{t.name}' has a negative dimension {dims}", self.source)
        size = math.prod(dims)
        if size > MAX_TENSOR_ELEMENTS:
            raise FrontendError(over(f"initializer '{t.name}' {dims}", size, MAX_TENSOR_ELEMENTS,
                                     "SIEVE_MAX_TENSOR_ELEMENTS"), self.source)
        try:
            return self.nh.to_array(t)
        except Exception as err:                        # onnx raises several types for a malformed tensor
            raise FrontendError(f"initializer '{t.name}' is malformed (type {t.data_type}, dims {dims}): "
                                f"{str(err) or type(err).__name__}", self.source) from None

    def _check_node(self, node) -> None:
        """A node against its operator's schema (onnx.defs) at the model's opset: how many inputs and
        outputs it has, which attributes (required ones present, no unknown ones) and their types."""
        onnx, _ = _onnx()
        domain = node.domain or ""
        if domain not in ("", "ai.onnx", "com.microsoft"):
            return
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opset.get(domain, self.opset.get("", 1)), domain)
        except onnx.defs.SchemaError:
            return                                      # an unknown op: its handler (or the lack of one) says so
        n_in = len(node.input)
        if not schema.min_input <= n_in <= schema.max_input:
            raise self.error(f"has {n_in} input(s); the operator takes {schema.min_input}"
                             + (f"..{schema.max_input}" if schema.max_input != schema.min_input else ""), node)
        if not schema.min_output <= len(node.output) <= schema.max_output:
            raise self.error(f"has {len(node.output)} output(s); the operator takes {schema.min_output}"
                             f"..{schema.max_output}", node)
        for a in node.attribute:
            known = schema.attributes.get(a.name)
            if known is None:
                raise self.error(f"unknown attribute '{a.name}'", node,
                                 f"{node.op_type} takes: {', '.join(sorted(schema.attributes)) or 'none'}")
            if a.type != known.type.value and a.type != 0:
                raise self.error(f"attribute '{a.name}' has type {onnx.AttributeProto.AttributeType.Name(a.type)}, "
                                 f"the operator takes {known.type.name}", node)
        given = {a.name for a in node.attribute}
        for name, known in schema.attributes.items():
            if known.required and name not in given:
                raise self.error(f"lacks the required attribute '{name}'", node)

    # ---------------------------------------------------------------- helpers
    def error(self, message: str, node=None, hint: str = "") -> FrontendError:
        where = f"node '{node.name or node.output[0]}' ({node.op_type}): " if node is not None else ""
        return FrontendError(where + message, self.source, hint=hint)

    def const(self, name: str, node, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.error(f"{what} '{name}' must be a constant (an initializer)", node,
                             "weights are compiled into the binary")
        return self.consts[name]

    def opt_const(self, node, i: int):
        return self.consts.get(node.input[i]) if len(node.input) > i and node.input[i] else None

    def shape(self, tensor: str) -> tuple[int, ...]:
        """The tensor's ONNX shape (a view's own; the IR node's otherwise)."""
        if tensor in self.exprs:
            return self.shape(self.exprs[tensor][0])
        if tensor in self.views:
            return self.views[tensor].shape
        return self.b.nodes[self.ir(tensor)].out.shape

    def view_of(self, tensor: str) -> View:
        if tensor in self.views:
            return self.views[tensor]
        if tensor in self.raw_inputs:                   # an integer input whose scale comes later
            name, dims, _ = self.raw_inputs[tensor]
            return View(name, tuple(dims), row_major(tuple(dims)))
        name = self.ir(tensor)
        shape = self.b.nodes[name].out.shape
        return View(name, shape, row_major(shape))

    def base_shape(self, name: str) -> tuple[int, ...]:
        if name in self.b.nodes:
            return self.b.nodes[name].out.shape
        return next(dims for ir, dims, _ in self.raw_inputs.values() if ir == name)   # not yet given a scale

    def set_view(self, out: str, view: View, like: str, dequantized: bool = False) -> None:
        """ONNX tensor ``out`` is ``view`` (of the quantization of tensor ``like``; a float view of
        dequantized integers when ``dequantized``)."""
        if view.contiguous() and view.shape == self.base_shape(view.base):
            self.names[out] = view.base
        else:
            self.views[out] = view
        if like in self.qinfo:
            self.qinfo[out] = self.qinfo[like]
        if dequantized:
            self.dq[out] = out

    def materialize(self, tensor: str, image: bool = False) -> str:
        """The IR node holding a view's elements: the viewed node when the view is its memory in order,
        else a MOVE copying it (once per distinct view). The tensor is then a plain reshape of that node.
        A 4-D view read by an image op stays an image (NCHW); for other ops its leading axes merge."""
        v = self.views[tensor]
        to = tuple(v.shape) if image and len(v.shape) == 4 else collapse(v.shape)
        base = self.b.nodes[v.base]
        if v.contiguous() and to == base.out.shape:
            return v.base
        key = (v, to)
        if key not in self.moved:
            name = _sanitize(tensor, self.taken)
            try:
                self.b.add(name, Op.MOVE, [v.base], {"shape": v.shape, "strides": v.strides, "offset": v.offset,
                                                     "to": to}, None, base.out.dtype, base.out.quant)
            except IRError as err:
                raise FrontendError(f"tensor '{tensor}': {err}", self.source) from None
            self.moved[key] = name
        name = self.moved[key]
        self.views[tensor] = View(name, v.shape, row_major(v.shape))
        return name

    def tabulate(self, tensor: str) -> str:
        """The IR node of a pointwise chain: one LUT of its source (a named function where it is one)."""
        from sieve_numerics.tables import canonical
        src, program = self.exprs[tensor]
        if src in self.qinfo:
            raise FrontendError(f"'{tensor}' is a float function of dequantized integers with no QuantizeLinear "
                                "after it, read by an op that has no integer form here", self.source)
        del self.exprs[tensor]
        if program == "x":
            self.alias(tensor, src)
            return self.ir(tensor)
        fn, params = canonical(program)
        return self.emit(tensor, Op.LUT, [src], {"fn": fn, **params})

    def ir(self, tensor: str, image: bool = False) -> str:
        if tensor in self.exprs:
            return self.tabulate(tensor)
        if tensor in self.views:
            return self.materialize(tensor, image)
        if tensor in self.dq and tensor not in self.names:
            raise FrontendError(f"'{tensor}' is dequantized (float) data inside a quantized model, read by an "
                                "op that has no integer form here; Sieve runs quantized models in integers "
                                "only", self.source,
                                hint="run onnxruntime's quant_pre_process before quantize_static so that "
                                     "BatchNormalization is folded into the convolutions")
        if tensor in self.pending:
            raise FrontendError(f"'{tensor}' is a float value inside a quantized model (the result of a "
                                f"{self.pending[tensor][0]} group with no QuantizeLinear after it), read by an op "
                                "that onnxruntime would also compute in float and that Sieve cannot reproduce "
                                "in integers", self.source,
                                hint="run onnxruntime's quant_pre_process before quantize_static")
        if tensor not in self.names:
            raise FrontendError(f"tensor '{tensor}' is used before it is produced (or is a float value "
                                "inside a quantized region)", self.source)
        if tensor in self.raw_inputs and self.names[tensor] not in self.b.nodes:
            raise FrontendError(f"input '{tensor}' is {'u' * self.raw_unsigned(tensor)}int8, read by an op that "
                                "takes float data (an integer input needs a DequantizeLinear or a quantized op "
                                "after it)", self.source)
        return self.names[tensor]

    def ort_u8(self, q_node, q: "_Q") -> bool:
        """Whether onnxruntime's x86 CPU provider runs this QuantizeLinear's tensor as uint8. Its int8
        fusions (QLinearConv, QLinearMatMul) are ARM-only, so it turns an int8 QuantizeLinear ->
        DequantizeLinear pair into uint8 when the QuantizeLinear has exactly one consumer, a
        DequantizeLinear that is not shared (a shared one is first duplicated per consumer), with a
        constant scalar int8 zero point, and its output is not a graph output."""
        if q.unsigned:
            return True
        out = q_node.output[0]
        readers = self.readers.get(out, [])
        if out in self.graph_outputs or len(readers) != 1 or readers[0].op_type != "DequantizeLinear":
            return False
        dq = readers[0]
        if len(self.readers.get(dq.output[0], [])) > 1 or q.zp.size != 1:
            return False
        zp_q, zp_dq = self.opt_const(q_node, 2), self.opt_const(dq, 2)
        return zp_q is not None and zp_dq is not None and zp_q.size == 1 and zp_dq.size == 1 \
            and zp_q.dtype == np.int8 and zp_dq.dtype == np.int8 and int(zp_q.ravel()[0]) == int(zp_dq.ravel()[0])

    def attrs(self, node) -> dict:
        onnx, _ = _onnx()
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def emit(self, onnx_out: str, op: Op, inputs: list[str], attrs=None, params=None, dtype=DType.FLOAT32,
             quant: QuantParams | None = None) -> str:
        name = _sanitize(onnx_out, self.taken)
        ir_inputs = [self.ir(i, op in IMAGE_OPS) for i in inputs]
        try:
            self.b.add(name, op, ir_inputs, attrs, params, dtype, quant)
        except IRError as err:
            raise FrontendError(f"tensor '{onnx_out}': {err}", self.source) from None
        self.names[onnx_out] = name
        # an op on [B, H, T, d] stored as [B·H, T, d]: its output keeps the leading axes
        lead = self.views[inputs[0]].shape[:-2] if inputs and inputs[0] in self.views else ()
        out = self.b.nodes[name].out.shape
        if len(lead) > 1 and len(out) == 3 and out[0] == int(np.prod(lead)):
            self.views[onnx_out] = View(name, lead + out[1:], row_major(lead + out[1:]))
        return name

    def alias(self, onnx_out: str, onnx_in: str) -> None:
        if onnx_in in self.exprs:
            self.exprs[onnx_out] = self.exprs[onnx_in]
        elif onnx_in in self.views:
            self.views[onnx_out] = self.views[onnx_in]
        else:
            self.names[onnx_out] = self.ir(onnx_in)
        if onnx_in in self.qinfo:
            self.qinfo[onnx_out] = self.qinfo[onnx_in]
        if onnx_in in self.dq:
            self.dq[onnx_out] = self.dq[onnx_in]

    # ---------------------------------------------------------------- driver
    def _check_order(self) -> None:
        """Every node reads only what is defined before it (graph inputs, initializers, earlier nodes'
        outputs), as ONNX requires: a cycle or a use before its producer is named here."""
        defined = {i.name for i in self.graph.input} | set(self.consts)
        for node in self.graph.node:
            for name in node.input:
                if name and name not in defined:
                    raise self.error(f"reads '{name}', which no graph input, initializer or earlier node defines "
                                     "(the nodes must be in topological order)", node)
            for name in node.output:
                if name in defined and name:
                    raise self.error(f"writes '{name}', which is already defined", node)
                defined.add(name)

    def run(self) -> Graph:
        self._check_opset()
        self._check_order()
        self._inputs()
        for node in self.graph.node:
            self._node(node)
        outputs = []
        io_names = {ir: onnx_name for onnx_name, ir in self.names.items()
                    if onnx_name in {i.name for i in self.graph.input}}
        for o in self.graph.output:
            name = o.name
            if name in self.dq:                         # DequantizeLinear at the end: on the host
                name = self.dq[name]
            if name in self.pending:
                raise FrontendError(f"output '{o.name}' is a float op in a quantized model with no "
                                    "QuantizeLinear after it", self.source)
            ir = self.ir(name)
            clean = _clean(o.name)
            if clean != ir and clean not in self.b.nodes and ir not in io_names:
                ir = self._rename(ir, clean)                  # the node is named as the model's output
            outputs.append(ir)
            io_names.setdefault(ir, o.name)             # the model's name, where it is not a valid node name
        if self.float_layers:
            log.warning("%s: onnxruntime's x86-64 CPU provider runs %d layer(s) of this int8 QDQ model in float32 "
                        "(%s): their input or output tensor has several consumers, so it cannot convert it to "
                        "uint8, and it fuses int8 convolutions only on ARM. Sieve computes them in integers; a "
                        "few values can differ from onnxruntime by one step. For bit-exact parity quantize with "
                        "activation_type=QUInt8 or extra_options={'DedicatedQDQPair': True}, or use `sieve "
                        "quantize` (docs/onnx.md)", self.source, len(self.float_layers),
                        ", ".join(self.float_layers[:6]) + (", ..." if len(self.float_layers) > 6 else ""))
        try:
            return self.b.build(outputs, io_names)
        except IRError as err:
            raise FrontendError(str(err), self.source) from None

    def _rename(self, old: str, new: str) -> str:
        """Rename an IR node (and the references to it); returns the new name."""
        nodes = {}
        for name, n in self.b.nodes.items():
            if name == old:
                n = n.evolve(name=new)
            elif old in n.inputs:
                n = n.evolve(inputs=tuple(new if i == old else i for i in n.inputs))
            nodes[n.name] = n
        self.b.nodes = nodes
        self.taken.add(new)
        for k, v in list(self.names.items()):
            if v == old:
                self.names[k] = new
        return new

    def _check_opset(self) -> None:
        onnx, _ = _onnx()
        newest = onnx.defs.onnx_opset_version()
        version = self.opset.get("", self.opset.get("ai.onnx", 0))
        if not MIN_OPSET <= version <= newest:
            raise FrontendError(f"opset {version} is out of the supported range {MIN_OPSET}..{newest}",
                                self.source, hint="convert the model with onnx.version_converter")

    def _inputs(self) -> None:
        for inp in self.graph.input:
            if inp.name in self.consts:
                continue
            t = inp.type.tensor_type
            dims = []
            for i, d in enumerate(t.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(d.dim_value)
                elif i == 0:
                    dims.append(self.batch)             # a symbolic batch takes the compile batch
                else:
                    raise FrontendError(f"input '{inp.name}' has a dynamic dimension {i} "
                                        f"('{d.dim_param or '?'}') that cannot be resolved", self.source,
                                        hint="export the model with fixed spatial sizes")
            elem = t.elem_type
            if elem == 1:                               # float
                self.names[inp.name] = _sanitize(inp.name, self.taken)
                self.b.input(self.names[inp.name], tuple(dims))
            elif elem in (2, 3):                        # uint8 / int8 raw integer input
                self._int_input(inp.name, tuple(dims), elem == 2)
            else:
                raise FrontendError(f"input '{inp.name}' has element type {elem}; float32, int8 and uint8 "
                                    "inputs are supported", self.source)

    def _int_input(self, name: str, dims, unsigned: bool) -> None:
        """A raw integer graph input; its scale comes from the first op that consumes it."""
        self.names[name] = _sanitize(name, self.taken)
        self.raw_inputs[name] = (self.names[name], dims, unsigned)

    def raw_unsigned(self, name: str) -> bool:
        entry = self.raw_inputs.get(name)
        return bool(entry and entry[2])

    def _node(self, node) -> None:
        self._check_node(node)
        op = node.op_type
        domain = node.domain or ""
        if all((i in self.consts) or not i for i in node.input) and op in FOLD and domain == "":
            try:
                values = fold(node, [self.consts.get(i) for i in node.input], self.attrs(node))
            except FrontendError:
                raise
            except (ValueError, IndexError, TypeError, KeyError, AttributeError, ZeroDivisionError,
                    OverflowError) as err:
                raise self.error(f"cannot fold these constant inputs and attributes: {err}", node) from None
            for name, value in zip(node.output, values):
                self.consts[name] = value
            return
        x = node.input[0] if node.input else ""
        if op == "Shape" and (x in self.names or x in self.views or x in self.exprs or x in self.dq):
            a = self.attrs(node)
            shape = self.shape(self.dq.get(x, x))
            self.consts[node.output[0]] = np.array(shape[a.get("start", 0):a.get("end", len(shape))], np.int64)
            return
        handler = HANDLERS.get(op)
        if handler is None:
            raise self.error(f"unsupported op type '{op}'", node,
                             f"supported: {', '.join(sorted(set(HANDLERS) | set(FOLD)))}")
        try:
            handler(self, node)
        except (FrontendError, IRError):
            raise
        except (ValueError, IndexError, TypeError, KeyError, ZeroDivisionError, OverflowError) as err:
            # the schema check above found nothing wrong with the node alone: its inputs' shapes or
            # values do not fit one another (a bias longer than the weights, a 1-D Gemm weight)
            raise self.error(f"its inputs and attributes do not fit together: {err}", node) from None


def load_onnx(path: str | Path, batch: int = 1) -> Graph:
    """Import an ONNX file (float, QDQ or QOperator) into a Graph."""
    onnx, _ = _onnx()
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise FrontendError(f"cannot read: {err.strerror}", str(path)) from None
    try:
        model = onnx.load_from_string(raw)
    except Exception as err:                            # protobuf raises several types
        raise FrontendError(f"not a readable ONNX model (malformed or truncated): {err}", str(path)) from None
    if not model.graph.node:
        raise FrontendError("the ONNX model has no nodes (malformed or truncated)", str(path))
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data
    if any(uses_external_data(t) for t in model.graph.initializer):
        try:                                            # beside the model, wherever it is run from
            load_external_data_for_model(model, str(path.parent))
        except Exception as err:                        # missing, unreadable or out-of-folder data files
            raise FrontendError(f"cannot read the model's external data: {err}", str(path)) from None
    return import_model(model, str(path), batch)


def import_model(model, source: str = "<onnx>", batch: int = 1) -> Graph:
    import sieve.frontend.onnx_ops  # noqa: F401  (registers the handlers)
    return _Importer(model, source, batch).run()


# the per-op handlers live in frontend/onnx_ops.py; they fill this table
HANDLERS: dict[str, Callable[[_Importer, object], None]] = {}
