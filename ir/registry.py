"""One registry entry per op: shape inference, MAC count, float and integer reference.

Adding an op means adding one ``OpDef`` here (plus its lowering in the
scheduler/codegen), never an ``if op == ...`` chain elsewhere in ``ir``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sieve.ir import kernels as K
from sieve_numerics import integer as Q
from sieve.ir.graph import IRError, Node, Op
from sieve.ir.types import DType, TensorType

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

def act_float(node: Node, y: np.ndarray) -> np.ndarray:
    """The fused activation on float values: none, relu, or clip(clip_min, clip_max)."""
    act = node.attrs.get("act", "none")
    if act == "relu":
        y = np.asarray(y, np.float32)
        return np.maximum(y, 0, out=y) if y.flags.writeable and y.base is None else np.maximum(y, np.float32(0))
    if act == "clip":
        return np.clip(y, node.attrs["clip_min"], node.attrs["clip_max"]).astype(np.float32, copy=False)
    return y


def act_bounds(node: Node) -> tuple[int, int]:
    """The fused activation as int8 bounds on the output: relu clamps at the zero point."""
    act, q = node.attrs.get("act", "none"), node.out.quant
    if act == "relu":
        return max(-128, q.zp), 127
    if act == "clip":
        s = np.float32(q.scale[0])
        lo = np.rint(np.float32(node.attrs["clip_min"]) / s) + q.zp
        hi = np.rint(np.float32(node.attrs["clip_max"]) / s) + q.zp
        return int(np.clip(lo, -128, 127)), int(np.clip(hi, -128, 127))
    return -128, 127


def _finish_int(node: Node, acc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int32 outputs (ConvInteger-style) keep the accumulator; int8 outputs are requantized."""
    if node.out.dtype is DType.INT32:
        return acc.astype(np.int32)
    return Q.requantize(acc.astype(np.int32), scale, node.out.quant.zp, *act_bounds(node))


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
    groups = node.attrs.get("groups", 1)
    k = node.attrs["out_channels"]
    if c % groups or k % groups:
        raise IRError(f"groups={groups} must divide input channels {c} and output channels {k}", node.name)
    wshape = node.params["w"].shape
    if wshape != (k, c // groups, kh, kw):
        raise IRError(f"weight shape {list(wshape)} does not match [{k}, {c // groups}, {kh}, {kw}]", node.name)
    oh, ow = K.out_size(h, kh, sh, pt, pb, dh), K.out_size(w, kw, sw, pl, pr, dw)
    if oh < 1 or ow < 1:
        raise IRError(f"kernel {kh}x{kw} does not fit input {h}x{w} with padding", node.name)
    return (n, k, oh, ow)


def _conv_macs(node: Node, ins: Types) -> int:
    n, k, oh, ow = node.out.shape
    kh, kw = node.attrs["kernel"]
    return n * k * oh * ow * node.params["w"].shape[1] * kh * kw


def _grouped(node: Node, x: np.ndarray, pad_value, dtype=np.float64) -> np.ndarray:
    """Convolution of x (already shifted to real zero) with groups -> [N,K,OH,OW]."""
    _, stride, pad, dil = _conv_geometry(node)
    return K.conv2d(K.pad_nchw(x, pad, pad_value), node.params["w"], stride, dil,
                    node.attrs.get("groups", 1), dtype)


def _conv_float(node: Node, xs: Arrays) -> np.ndarray:
    y = _grouped(node, xs[0], 0.0, np.float32)
    y += node.params["b"].astype(np.float32)[None, :, None, None]          # in place: a fresh array
    return act_float(node, y)


def _conv_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    x = xs[0].astype(np.int32) - ins[0].quant.zp          # padding is a real zero
    acc = _grouped(node, x, 0).astype(np.int64) + node.params["b"].astype(np.int64)[None, :, None, None]
    return _finish_int(node, acc, node.params.get("requant", np.ones(1, np.float32))[None, :, None, None])


# ---------------------------------------------------------------- dense

def _dense_infer(node: Node, ins: Types) -> tuple[int, ...]:
    """[N, C] x w[K, C] -> [N, K]; batched: [B, M, C] x w[B, K, C] -> [B, M, K]."""
    x, w = ins[0].shape, node.params["w"].shape
    k = node.attrs["out_features"]
    if len(x) == 2 and w == (k, x[1]):
        return (x[0], k)
    if len(x) == 3 and w == (x[0], k, x[2]):
        return (x[0], x[1], k)
    raise IRError(f"weight shape {list(w)} does not fit input {list(x)} with {k} output features", node.name)


def _dense_macs(node: Node, ins: Types) -> int:
    return int(np.prod(node.out.shape)) * ins[0].shape[-1]


def _dense_acc(node: Node, x: np.ndarray, dtype=np.float64) -> np.ndarray:
    w = node.params["w"].astype(dtype)
    y = np.matmul(x.astype(dtype), np.swapaxes(w, -1, -2))
    b = node.params["b"].astype(dtype)
    return y + (b[:, None, :] if b.ndim == 2 else b)


def _dense_float(node: Node, xs: Arrays) -> np.ndarray:
    return act_float(node, _dense_acc(node, xs[0], np.float32).astype(np.float32))


def _dense_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    acc = _dense_acc(node, xs[0].astype(np.int32) - ins[0].quant.zp).astype(np.int64)
    scale = node.params.get("requant", np.ones(1, np.float32))
    return _finish_int(node, acc, scale[:, None, :] if scale.ndim == 2 else scale)


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
    return act_float(node, np.add(xs[0], xs[1], dtype=np.float32))


# The arithmetic of an integer Add, as onnxruntime computes it on x86-64 (docs/onnx.md):
#   "u8": QLinearAdd on uint8 tensors (int8 tensors of a QDQ model become uint8 there);
#   "s8": QLinearAdd on int8 tensors; "float": DequantizeLinear, float Add, QuantizeLinear.
ADD_ARITHS = ("s8", "u8", "float")


def add_arith(node: Node) -> str:
    return node.attrs.get("arith") or ("u8" if node.out.quant.unsigned else "s8")


def _add_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    arith = add_arith(node)
    za, zb, zc = ins[0].quant.zp, ins[1].quant.zp, node.out.quant.zp
    if arith == "float":
        return Q.add_float(xs[0], xs[1], za, zb, ins[0].quant.scale[0], ins[1].quant.scale[0],
                           node.out.quant.scale[0], zc, *act_bounds(node))
    ma, mb = add_multipliers(ins, node.out)
    return Q.add_qlinear(xs[0], xs[1], za, zb, ma, mb, zc, *act_bounds(node), u8=arith == "u8")


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
    """The window maximum as the running maximum of the window's shifted, strided slices (a reduction
    over the two small window axes of a 6-D view is several times slower)."""
    xp = K.pad_nchw(x, node.attrs["pad"], pad_value)
    (kh, kw), (sh, sw) = node.attrs["kernel"], node.attrs["stride"]
    _, _, oh, ow = node.out.shape
    out = None
    for i in range(kh):
        for j in range(kw):
            part = xp[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]
            out = part.copy() if out is None else np.maximum(out, part, out=out)
    return out


def _pool_float(node: Node, xs: Arrays) -> np.ndarray:
    return _pool(node, xs[0], -np.inf).astype(np.float32)


def _pool_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    return _pool(node, xs[0], -128).astype(np.int8)


def _gap_infer(node: Node, ins: Types) -> tuple[int, ...]:
    _need_rank(node, ins[0], 4)
    return ins[0].shape[:2] + (1, 1)


def _gap_macs(node: Node, ins: Types) -> int:
    return int(np.prod(ins[0].shape))          # one accumulation per input element


def _gap_float(node: Node, xs: Arrays) -> np.ndarray:
    return xs[0].astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(np.float32)


def gap_scale(s_in: float, s_out: float, count: int) -> np.float32:
    """onnxruntime's QLinearGlobalAveragePool multiplier: s_in / (s_out * count) in float32."""
    return np.float32(np.float32(s_in) / np.float32(np.float32(s_out) * np.float32(count)))


def _gap_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    acc = (xs[0].astype(np.int64) - ins[0].quant.zp).sum(axis=(2, 3), keepdims=True)
    return _finish_int(node, acc, node.params["requant"][None, :, None, None])


def _avgpool_float(node: Node, xs: Arrays) -> np.ndarray:
    kh, kw = node.attrs["kernel"]
    xp = K.pad_nchw(xs[0].astype(np.float64), node.attrs["pad"], 0.0)
    return (K.windows(xp, node.attrs["kernel"], node.attrs["stride"]).sum(axis=(4, 5)) / (kh * kw)).astype(np.float32)


def _avgpool_macs(node: Node, ins: Types) -> int:
    kh, kw = node.attrs["kernel"]
    return int(np.prod(node.out.shape)) * kh * kw


def _avgpool_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    """Window sums of (x - zp), padding counting as zero, requantized by s_in / (s_out * kh * kw)."""
    xp = K.pad_nchw(xs[0].astype(np.int64) - ins[0].quant.zp, node.attrs["pad"], 0)
    acc = K.windows(xp, node.attrs["kernel"], node.attrs["stride"]).sum(axis=(4, 5))
    return _finish_int(node, acc, node.params["requant"][None, :, None, None])


def _flatten_infer(node: Node, ins: Types) -> tuple[int, ...]:
    return (ins[0].shape[0], int(np.prod(ins[0].shape[1:])))


def _flatten(node: Node, xs: Arrays, ins: Types = ()) -> np.ndarray:
    return xs[0].reshape(xs[0].shape[0], -1)


def _concat_infer(node: Node, ins: Types) -> tuple[int, ...]:
    axis = node.attrs.get("axis", 1)
    base = ins[0].shape
    for t in ins[1:]:
        if len(t.shape) != len(base) or any(a != b for i, (a, b) in enumerate(zip(t.shape, base)) if i != axis):
            raise IRError(f"cannot concatenate {list(t.shape)} with {list(base)} on axis {axis}", node.name)
    if axis != 1:
        raise IRError(f"concatenation along axis {axis} is not supported (channels only)", node.name)
    return base[:1] + (sum(t.shape[1] for t in ins),) + base[2:]


def _concat_float(node: Node, xs: Arrays) -> np.ndarray:
    return np.concatenate(xs, axis=1).astype(np.float32)


def _concat_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    """Each input requantized to the output's scale through float, as onnxruntime's QLinearConcat."""
    q = node.out.quant
    parts = [Q.dq_requantize(x, t.quant.zp, t.quant.scale[0], q.zp, q.scale[0]) for x, t in zip(xs, ins)]
    return np.concatenate(parts, axis=1)


def _per_channel(node: Node, x: np.ndarray, key: str) -> np.ndarray:
    """A parameter [C] shaped to broadcast along x's channel axis (axis 1)."""
    return node.params[key].reshape((1, -1) + (1,) * (x.ndim - 2))


def _affine_infer(node: Node, ins: Types) -> tuple[int, ...]:
    c = ins[0].shape[1] if len(ins[0].shape) >= 2 else 0
    for key in ("scale", "shift"):
        if node.params[key].shape != (c,):
            raise IRError(f"parameter '{key}' must have one value per channel ({c})", node.name)
    return ins[0].shape


def _affine_float(node: Node, xs: Arrays) -> np.ndarray:
    x = xs[0].astype(np.float32)
    return act_float(node, x * _per_channel(node, x, "scale").astype(np.float32)
                     + _per_channel(node, x, "shift").astype(np.float32))


def _affine_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    """As onnxruntime computes a batch norm between DequantizeLinear and QuantizeLinear (in float)."""
    qi, qo = ins[0].quant, node.out.quant
    return Q.affine_float(xs[0], qi.zp, qi.scale[0], _per_channel(node, xs[0], "scale"),
                          _per_channel(node, xs[0], "shift"), qo.zp, qo.scale[0], *act_bounds(node))


def _softmax_float(node: Node, xs: Arrays) -> np.ndarray:
    return Q.softmax_host(xs[0], node.attrs.get("axis", -1))


def _softmax_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    """The host's softmax: float, on the dequantized integer input."""
    return _softmax_float(node, [Q.dequantize(xs[0], ins[0].quant.scale[0], ins[0].quant.zp)])


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
    Op.GLOBALAVGPOOL: OpDef(1, _gap_infer, _gap_macs, _gap_float, _gap_int),
    Op.AVGPOOL: OpDef(1, _pool_infer, _avgpool_macs, _avgpool_float, _avgpool_int),
    Op.FLATTEN: OpDef(1, _flatten_infer, _no_macs, _flatten, _flatten),
    Op.CONCAT: OpDef(-1, _concat_infer, _no_macs, _concat_float, _concat_int),
    Op.AFFINE: OpDef(1, _affine_infer, _no_macs, _affine_float, _affine_int),
    Op.SOFTMAX: OpDef(1, _same_shape_infer, _no_macs, _softmax_float, _softmax_int),
}


def opdef(op: Op) -> OpDef:
    return REGISTRY[op]


def macs(graph) -> int:
    """Total MACs of a graph."""
    return sum(REGISTRY[n.op].macs(n, [graph[i].out for i in n.inputs]) for n in graph)
