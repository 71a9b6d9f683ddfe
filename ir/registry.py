"""One registry entry per op: shape inference, MAC count, float and integer reference.

Adding an op means adding one ``OpDef`` here (plus its lowering in the
scheduler/codegen), never an ``if op == ...`` chain elsewhere in ``ir``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ir import kernels as K
from ir.graph import IRError, Node, Op
from ir.types import TensorType

Arrays = Sequence[np.ndarray]
Types = Sequence[TensorType]


@dataclass(frozen=True)
class OpDef:
    arity: int
    infer: Callable[[Node, Types], tuple[int, ...]]
    macs: Callable[[Node, Types], int]
    ref_float: Callable[[Node, Arrays], np.ndarray]
    ref_int: Callable[[Node, Arrays, Types], np.ndarray]


# ---------------------------------------------------------------- helpers

def _relu(node: Node) -> bool:
    return node.attrs.get("act", "none") == "relu"


def _need_rank(node: Node, t: TensorType, rank: int) -> None:
    if len(t.shape) != rank:
        raise IRError(f"expects a rank-{rank} input, got shape {list(t.shape)}", node.name)


def _conv_geometry(node: Node):
    a = node.attrs
    return a["kernel"], a["stride"], a["pad"], a.get("dilation", (1, 1))


def add_multipliers(in_types: Types, out: TensorType) -> tuple[np.float32, np.float32]:
    """The float32 multipliers sa/sc and sb/sc of an integer Add."""
    sc = np.float32(out.quant.scale[0])
    return (np.float32(np.float32(in_types[0].quant.scale[0]) / sc),
            np.float32(np.float32(in_types[1].quant.scale[0]) / sc))


# ---------------------------------------------------------------- conv2d

def _conv_infer(node: Node, ins: Types) -> tuple[int, ...]:
    _need_rank(node, ins[0], 4)
    n, c, h, w = ins[0].shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = _conv_geometry(node)
    wshape = node.params["w"].shape
    if wshape != (node.attrs["out_channels"], c, kh, kw):
        raise IRError(f"weight shape {list(wshape)} does not match "
                      f"[{node.attrs['out_channels']}, {c}, {kh}, {kw}]", node.name)
    oh, ow = K.out_size(h, kh, sh, pt, pb, dh), K.out_size(w, kw, sw, pl, pr, dw)
    if oh < 1 or ow < 1:
        raise IRError(f"kernel {kh}x{kw} does not fit input {h}x{w} with padding", node.name)
    return (n, node.attrs["out_channels"], oh, ow)


def _conv_macs(node: Node, ins: Types) -> int:
    n, k, oh, ow = node.out.shape
    kh, kw = node.attrs["kernel"]
    return n * k * oh * ow * ins[0].shape[1] * kh * kw


def _conv_float(node: Node, xs: Arrays) -> np.ndarray:
    _, stride, pad, dil = _conv_geometry(node)
    y = K.conv2d_exact(K.pad_nchw(xs[0], pad, 0.0), node.params["w"], stride, dil)
    y = y + node.params["b"].astype(np.float64)[None, :, None, None]
    y = y.astype(np.float32)
    return np.maximum(y, 0) if _relu(node) else y


def _conv_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    _, stride, pad, dil = _conv_geometry(node)
    x = xs[0].astype(np.int32) - ins[0].quant.zp          # padding is a real zero
    acc = K.conv2d_exact(K.pad_nchw(x, pad, 0), node.params["w"], stride, dil)
    acc = acc.astype(np.int64) + node.params["b"].astype(np.int64)[None, :, None, None]
    scale = node.params["requant"][None, :, None, None]
    return K.requantize(acc.astype(np.int32), scale, node.out.quant.zp, _relu(node))


# ---------------------------------------------------------------- dense

def _dense_infer(node: Node, ins: Types) -> tuple[int, ...]:
    _need_rank(node, ins[0], 2)
    wshape = node.params["w"].shape
    if wshape != (node.attrs["out_features"], ins[0].shape[1]):
        raise IRError(f"weight shape {list(wshape)} does not match "
                      f"[{node.attrs['out_features']}, {ins[0].shape[1]}]", node.name)
    return (ins[0].shape[0], node.attrs["out_features"])


def _dense_macs(node: Node, ins: Types) -> int:
    return int(np.prod(node.out.shape)) * ins[0].shape[1]


def _dense_float(node: Node, xs: Arrays) -> np.ndarray:
    y = xs[0].astype(np.float64) @ node.params["w"].astype(np.float64).T + node.params["b"]
    y = y.astype(np.float32)
    return np.maximum(y, 0) if _relu(node) else y


def _dense_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    x = (xs[0].astype(np.int32) - ins[0].quant.zp).astype(np.float64)
    acc = (x @ node.params["w"].astype(np.float64).T).astype(np.int64) + node.params["b"]
    return K.requantize(acc.astype(np.int32), node.params["requant"][None, :],
                        node.out.quant.zp, _relu(node))


# ---------------------------------------------------------------- elementwise and pooling

def _same_shape_infer(node: Node, ins: Types) -> tuple[int, ...]:
    for t in ins[1:]:
        if t.shape != ins[0].shape:
            raise IRError(f"operand shapes differ: {list(ins[0].shape)} vs {list(t.shape)}",
                          node.name, hint="broadcasting is not supported")
    return ins[0].shape


def _no_macs(node: Node, ins: Types) -> int:
    return 0


def _add_float(node: Node, xs: Arrays) -> np.ndarray:
    y = (xs[0] + xs[1]).astype(np.float32)
    return np.maximum(y, 0) if _relu(node) else y


def _add_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    ma, mb = add_multipliers(ins, node.out)
    return K.add_requantize(xs[0], xs[1], ins[0].quant.zp, ins[1].quant.zp, ma, mb,
                            node.out.quant.zp, _relu(node))


def _relu_float(node: Node, xs: Arrays) -> np.ndarray:
    return np.maximum(xs[0], 0).astype(np.float32)


def _relu_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    return np.maximum(xs[0], np.int8(ins[0].quant.zp))


def _pool_infer(node: Node, ins: Types) -> tuple[int, ...]:
    _need_rank(node, ins[0], 4)
    n, c, h, w = ins[0].shape
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = node.attrs["kernel"], node.attrs["stride"], node.attrs["pad"]
    oh, ow = K.out_size(h, kh, sh, pt, pb), K.out_size(w, kw, sw, pl, pr)
    if oh < 1 or ow < 1:
        raise IRError(f"pool window {kh}x{kw} does not fit input {h}x{w}", node.name)
    return (n, c, oh, ow)


def _pool(node: Node, x: np.ndarray, pad_value) -> np.ndarray:
    xp = K.pad_nchw(x, node.attrs["pad"], pad_value)
    return K.windows(xp, node.attrs["kernel"], node.attrs["stride"]).max(axis=(4, 5))


def _pool_float(node: Node, xs: Arrays) -> np.ndarray:
    return _pool(node, xs[0], -np.inf).astype(np.float32)


def _pool_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    return _pool(node, xs[0], -128).astype(np.int8)


def _flatten_infer(node: Node, ins: Types) -> tuple[int, ...]:
    return (ins[0].shape[0], int(np.prod(ins[0].shape[1:])))


def _flatten(node: Node, xs: Arrays, ins: Types = ()) -> np.ndarray:
    return xs[0].reshape(xs[0].shape[0], -1)


def _input_infer(node: Node, ins: Types) -> tuple[int, ...]:
    return node.out.shape


def _input_ref(node: Node, xs: Arrays, ins: Types = ()) -> np.ndarray:
    raise IRError("an input node is fed, not computed", node.name)


REGISTRY: dict[Op, OpDef] = {
    Op.INPUT: OpDef(0, _input_infer, _no_macs, _input_ref, _input_ref),
    Op.CONV2D: OpDef(1, _conv_infer, _conv_macs, _conv_float, _conv_int),
    Op.DENSE: OpDef(1, _dense_infer, _dense_macs, _dense_float, _dense_int),
    Op.ADD: OpDef(2, _same_shape_infer, _no_macs, _add_float, _add_int),
    Op.RELU: OpDef(1, _same_shape_infer, _no_macs, _relu_float, _relu_int),
    Op.MAXPOOL: OpDef(1, _pool_infer, _no_macs, _pool_float, _pool_int),
    Op.FLATTEN: OpDef(1, _flatten_infer, _no_macs, _flatten, _flatten),
}


def opdef(op: Op) -> OpDef:
    return REGISTRY[op]


def macs(graph) -> int:
    """Total MACs of a graph."""
    return sum(REGISTRY[n.op].macs(n, [graph[i].out for i in n.inputs]) for n in graph)
