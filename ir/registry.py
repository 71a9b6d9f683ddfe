"""One registry entry per op: shape inference, MAC count, float and integer reference.

Adding an op means adding one ``OpDef`` here (plus its lowering in the
scheduler/codegen), never an ``if op == ...`` chain elsewhere in ``ir``.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sieve.ir import kernels as K
from sieve_numerics import integer as Q
from sieve_numerics import tables as T
from sieve.ir.graph import IRError, Node, Op
from sieve.ir.types import DType, TensorType

Arrays = Sequence[np.ndarray]
Types = Sequence[TensorType]


def _no_attrs(attrs: dict) -> dict:
    return attrs


@dataclass(frozen=True)
class OpDef:
    """Everything ``ir`` knows about one op. The passes consult these fields, never the op's name."""
    arity: int                                               # inputs (-1: any number)
    infer: Callable[[Node, Types], tuple[int, ...]]          # output shape
    macs: Callable[[Node, Types], int]
    ref_float: Callable[[Node, Arrays], np.ndarray]
    ref_int: Callable[[Node, Arrays, Types], np.ndarray]
    attrs: Callable[[dict], dict] = _no_attrs                # defaults and canonical forms of attributes
    act: bool = False                                        # may carry a fused activation ("act")
    # the int8 output's quantization: "own" (calibrated), "keep" (the input's), "host" (stays float, on
    # the host after the accelerator, as a graph output)
    scale: str = "own"
    weighted: bool = False                                   # has weights "w" (pruned, counted)
    # (node, input types, int8 output type) -> the integer node's params and attributes
    quantize: Callable[[Node, Types, TensorType], tuple[dict, dict]] | None = None
    check_int: Callable[[Node, Types], None] | None = None   # checks an integer node's params
    dequantize: Callable[[Node, Types], dict] | None = None  # float params of an integer node


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


# ---------------------------------------------------------------- attribute rules (from the builder)

def _int(v, what: str, least: int) -> int:
    """An integral attribute value of at least ``least``."""
    try:
        i = int(v)
        whole = float(v) == i
    except (TypeError, ValueError, OverflowError):
        whole = False
    if isinstance(v, bool) or not whole or i < least:
        raise IRError(f"{what} takes whole numbers of at least {least}, got {v!r}")
    return i


def _pair(v, what: str = "kernel", least: int = 1) -> tuple[int, int]:
    """One value for both axes, or (h, w)."""
    if np.isscalar(v):
        return (_int(v, what, least),) * 2
    v = tuple(v)
    if len(v) != 2:
        raise IRError(f"{what} takes one value or two (h, w), got {len(v)}: {list(v)}")
    return _int(v[0], what, least), _int(v[1], what, least)


def _pad4(v) -> tuple[int, int, int, int]:
    """pad as one int, (h, w), or (top, left, bottom, right)."""
    if np.isscalar(v):
        return (_int(v, "pad", 0),) * 4
    v = tuple(_int(x, "pad", 0) for x in v)
    if len(v) not in (2, 4):
        raise IRError(f"pad takes one value, two (h, w) or four (top, left, bottom, right), got {len(v)}")
    return v * 2 if len(v) == 2 else v


MAX_PAD = 15                 # what the accelerator's window instructions encode (4-bit pad fields)


def _window_attrs(a: dict, default_stride=None) -> dict:
    a["kernel"] = _pair(a["kernel"], "kernel")
    a["stride"] = _pair(a.get("stride", a["kernel"] if default_stride is None else default_stride), "stride")
    a["pad"] = _pad4(a.get("pad", 0))
    if max(a["pad"]) > MAX_PAD:
        raise IRError(f"pad {list(a['pad'])} is more than {MAX_PAD}, the most a window instruction encodes")
    return a


def _conv_attrs(a: dict) -> dict:
    a = _window_attrs(a, 1)
    a["dilation"] = _pair(a.get("dilation", 1), "dilation")
    a["groups"] = _int(a.get("groups", 1), "groups", 1)
    if "out_channels" in a:
        a["out_channels"] = _int(a["out_channels"], "out_channels", 1)
    return a


def act_attrs(a: dict) -> dict:
    """The fused activation of an op that carries one: none, relu or clip(clip_min, clip_max)."""
    a.setdefault("act", "none")
    if a["act"] not in ("none", "relu", "clip"):
        raise IRError(f"unknown activation '{a['act']}' (supported: none, relu, clip)")
    if a["act"] == "clip":
        a["clip_min"], a["clip_max"] = float(a["clip_min"]), float(a["clip_max"])
    return a


# ---------------------------------------------------------------- quantization rules (from quantize_graph)

def quantize_weights(node: Node, s_in: np.float32, s_out: np.float32) -> dict[str, np.ndarray]:
    """int8 weights symmetric per output channel, int32 bias at s_in·s_w, float32 multiplier. Weights on
    an int4 grid (``passes.lowbit_weights``: attrs w_bits, params w_step, w_mult) take its step as s_w:
    their int8 values are the int4 values times their group's multiplier, exactly."""
    w = node.params["w"]
    k = w.shape[0]
    low = node.attrs.get("w_bits") == 4
    if low:
        s_w = node.params["w_step"].astype(np.float32)
    else:
        amax = np.abs(w.reshape(k, -1)).max(axis=1).astype(np.float64)   # exact in the weights' own type
        s_w = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    s_w[s_w < np.finfo(np.float32).tiny] = 1.0        # weights too small for a float32 step: all zeros
    bshape = (k,) + (1,) * (w.ndim - 1)
    q = np.divide(w, s_w.reshape(bshape), dtype=np.float64)            # in float64, without a float64 copy of w
    wq = np.clip(np.rint(q, out=q), -127, 127, out=q).astype(np.int8)
    s_acc = (np.float32(s_in) * s_w).astype(np.float32)
    bias = np.rint(node.params["b"].astype(np.float64) / s_acc.astype(np.float64))
    bias = np.clip(bias, -2**31, 2**31 - 1).astype(np.int32)
    requant = (s_acc / np.float32(s_out)).astype(np.float32)
    out = {"w": wq, "b": bias, "requant": requant, "w_scale": s_w}
    if low and "w_mult" in node.params:
        out["w_mult"] = node.params["w_mult"]
    return out


def _weighted_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    return quantize_weights(node, np.float32(ins[0].quant.scale[0]), np.float32(out.quant.scale[0])), {}


def _add_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    add_multipliers(ins, out)                                      # validates the scales
    # int8 tensors of Sieve's QDQ export become uint8 in onnxruntime: its uint8 Add arithmetic
    return dict(node.params), {"arith": "u8"}


def _window_sum_quantize(count: Callable[[Node, Types], int]):
    def rule(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
        scale = gap_scale(ins[0].quant.scale[0], out.quant.scale[0], count(node, ins))
        return {"requant": np.full(node.out.shape[1], scale, np.float32)}, {}
    return rule


# ---------------------------------------------------------------- integer parameter checks (from verify)

_INT_PARAMS = {"b": np.int32, "requant": np.float32}


def _weighted_check(node: Node, ins: Types) -> None:
    w = node.params["w"]
    # int16 weights hold imported weights with zero points that do not fit int8 (fmt 3)
    if w.dtype not in (np.int8, np.int16) or (w.dtype == np.int16 and np.abs(w).max(initial=0) > 255):
        raise IRError("parameter 'w' must be int8 (or int16 within +-255)", node.name)
    per_k = w.shape[:-1] if w.ndim in (2, 3) else w.shape[:1]
    for key, dt in _INT_PARAMS.items():
        arr = node.params.get(key)
        if arr is None or arr.dtype != dt:
            raise IRError(f"parameter '{key}' must be {np.dtype(dt).name}", node.name)
        if arr.shape != per_k:
            raise IRError(f"parameter '{key}' must have shape {list(per_k)}", node.name)


def _window_sum_check(node: Node, ins: Types) -> None:
    r = node.params.get("requant")
    if r is None or r.dtype != np.float32 or r.shape != (node.out.shape[1],):
        raise IRError("parameter 'requant' must be float32 per channel", node.name)


def _affine_check(node: Node, ins: Types) -> None:
    for key in ("scale", "shift"):
        if node.params[key].dtype != np.float32:
            raise IRError(f"parameter '{key}' must be float32", node.name)


# ---------------------------------------------------------------- dequantization rules (from dequantize_graph)

def _weighted_dequantize(node: Node, ins: Types) -> dict:
    """Weights and bias in float; s_w = requant · s_out / s_in (raw int32 outputs: no scales known)."""
    k_shape = node.params["b"].shape
    if node.out.dtype is DType.INT8:
        s_in = float(ins[0].quant.scale[0])
        s_w = node.params["requant"].astype(np.float64) * node.out.quant.scale[0] / s_in
    else:
        s_w, s_in = np.ones(k_shape), 1.0
    w = node.params["w"].astype(np.float64)
    per_k = s_w.reshape(k_shape + (1,) * (w.ndim - len(k_shape)))
    return {"w": (w * per_k).astype(np.float32),
            "b": (node.params["b"].astype(np.float64) * s_in * s_w).astype(np.float32)}


def _keep_params(node: Node, ins: Types) -> dict:
    return dict(node.params)


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
    """[N, C] x w[K, C] -> [N, K]; tokens: [B, T, C] x w[K, C] -> [B, T, K] (one weight matrix for every
    token); batched: [B, M, C] x w[B, K, C] -> [B, M, K] (each batch its own weights)."""
    x, w = ins[0].shape, node.params["w"].shape
    k = node.attrs["out_features"]
    if len(x) in (2, 3) and w == (k, x[-1]):
        return x[:-1] + (k,)
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

def trailing_broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """b repeats over a's leading axes: b's shape, right-aligned, is a's trailing axes (leading ones
    dropped), so in a row-major tensor b's values repeat every b.size elements. 4-D tensors (stored
    channels-last) broadcast over the batch only."""
    b = tuple(b)
    while b and b[0] == 1 and len(b) > 1:
        b = b[1:]
    if not b or len(b) > len(a) or b == tuple(a) or a[len(a) - len(b):] != b:
        return False
    return len(a) < 4 or len(b) >= 3


def _binary_infer(node: Node, ins: Types) -> tuple[int, ...]:
    a, b = ins[0].shape, ins[1].shape
    if b != a and not trailing_broadcast(a, b):
        raise IRError(f"operand shapes differ: {list(a)} vs {list(b)}", node.name,
                      hint="the second operand may repeat over the first's leading axes (a bias [D] on "
                           "[B, T, D]), otherwise the shapes must be equal")
    return a


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


# ---------------------------------------------------------------- element-wise functions (tables)

def _lut_attrs(a: dict) -> dict:
    fn = a.get("fn")
    if fn not in T.FUNCTIONS:
        raise IRError(f"unknown element-wise function {fn!r} (supported: {', '.join(sorted(T.FUNCTIONS))})")
    for key in T.FUNCTIONS[fn][1]:
        if key in a:
            a[key] = str(a[key]) if key in T.TEXT_PARAMS else float(a[key])
            if key not in T.TEXT_PARAMS and not math.isfinite(a[key]):
                raise IRError(f"{fn}: parameter {key} = {a[key]} is not a finite number")
    if fn == "expr":
        try:
            T.check_program(a.get("program", ""))
        except ValueError as err:
            raise IRError(str(err)) from None
    return a


def _lut_fn_params(node: Node) -> dict:
    return {k: node.attrs[k] for k in T.FUNCTIONS[node.attrs["fn"]][1] if k in node.attrs}


def _lut_float(node: Node, xs: Arrays) -> np.ndarray:
    return T.reference(node.attrs["fn"], _lut_fn_params(node))(np.asarray(xs[0], np.float32))


def _lut_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    return T.apply_table(xs[0], node.params["table"])


def lut_table(node: Node, x: TensorType, y: TensorType) -> np.ndarray:
    """The int8 table of a LUT node between input type x and output type y."""
    try:
        return T.build_table(node.attrs["fn"], _lut_fn_params(node), x.quant.scale[0], x.quant.zp,
                             y.quant.scale[0], y.quant.zp)
    except ValueError as err:
        raise IRError(f"its element-wise function: {err}", node.name) from None


def _lut_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    return {"table": lut_table(node, ins[0], out)}, {}


def _lut_check(node: Node, ins: Types) -> None:
    t = node.params.get("table")
    if t is None or t.dtype != np.int8 or t.shape != (256,):
        raise IRError("parameter 'table' must be int8 with 256 entries", node.name)


# ---------------------------------------------------------------- product of two activations

def _mul_infer(node: Node, ins: Types) -> tuple[int, ...]:
    a, b = ins[0].shape, ins[1].shape
    if b != a and b != a[:2] + (1,) * (len(a) - 2) and not trailing_broadcast(a, b):
        raise IRError(f"cannot multiply {list(a)} by {list(b)}", node.name,
                      hint="the second operand must have the first's shape or one value per channel "
                           f"({list(a[:2] + (1,) * (len(a) - 2))})")
    return a


def _mul_float(node: Node, xs: Arrays) -> np.ndarray:
    return np.multiply(xs[0], xs[1], dtype=np.float32)


# The arithmetic of an integer Mul, as onnxruntime computes it on x86-64 (as for Add, ADD_ARITHS):
# "s8"/"u8" its QLinearMul on int8/uint8 tensors, "float" an unfused DequantizeLinear -> Mul -> QuantizeLinear.
def _mul_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    arith = add_arith(node)
    qa, qb, qc = ins[0].quant, ins[1].quant, node.out.quant
    if arith == "float":
        return Q.mul_float(xs[0], xs[1], qa.zp, qb.zp, qa.scale[0], qb.scale[0], qc.scale[0], qc.zp)
    return Q.mul_qlinear(xs[0], xs[1], qa.zp, qb.zp, Q.mul_ratio(qa.scale[0], qb.scale[0], qc.scale[0]), qc.zp,
                         u8=arith == "u8")


def _mul_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    # int8 tensors of Sieve's QDQ export become uint8 in onnxruntime: its uint8 Mul arithmetic
    return {}, {"arith": "u8"}


def _bmm_attrs(a: dict) -> dict:
    tb = a.get("transpose_b", False)
    if tb not in (True, False, 0, 1):
        raise IRError(f"transpose_b must be 0 or 1, got {tb!r}")
    a["transpose_b"] = bool(tb)
    return a


def _bmm_b(node: Node, b: np.ndarray) -> np.ndarray:
    """The second operand as [.., K, N] (stored [.., N, K] with transpose_b: attention's Kᵀ)."""
    return np.swapaxes(b, -1, -2) if node.attrs.get("transpose_b") else b


def _bmm_infer(node: Node, ins: Types) -> tuple[int, ...]:
    a, b = ins[0].shape, ins[1].shape
    if node.attrs.get("transpose_b") and len(b) >= 2:
        b = b[:-2] + (b[-1], b[-2])
    if len(a) not in (2, 3) or len(b) != len(a) or a[:-2] != b[:-2] or a[-1] != b[-2]:
        raise IRError(f"cannot multiply {list(a)} by {list(b)}", node.name,
                      hint="[.., M, K] x [.., K, N] with equal leading axes (rank 2 or 3)")
    return a[:-1] + (b[-1],)


def _bmm_macs(node: Node, ins: Types) -> int:
    return int(np.prod(node.out.shape)) * ins[0].shape[-1]


def _bmm_float(node: Node, xs: Arrays) -> np.ndarray:
    return np.matmul(xs[0].astype(np.float32), _bmm_b(node, xs[1]).astype(np.float32))


def bmm_multiplier(sa, sb, sy) -> np.float32:
    """onnxruntime's QLinearMatMul multiplier: float32(float32(sa · sb) / sy)."""
    return np.float32(np.float32(np.float32(sa) * np.float32(sb)) / np.float32(sy))


def _bmm_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    """(a − za)(b − zb) exact (float64 products of 9-bit values), wrapped to int32, requantized."""
    a = xs[0].astype(np.float64) - ins[0].quant.zp
    b = _bmm_b(node, xs[1]).astype(np.float64) - ins[1].quant.zp
    acc = np.matmul(a, b).astype(np.int64).astype(np.int32)
    return Q.requantize(acc, node.params["requant"], node.out.quant.zp)


def _bmm_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    return {"requant": np.array([bmm_multiplier(ins[0].quant.scale[0], ins[1].quant.scale[0],
                                                out.quant.scale[0])], np.float32)}, {}


def _bmm_check(node: Node, ins: Types) -> None:
    r = node.params.get("requant")
    if r is None or r.dtype != np.float32 or r.shape != (1,):
        raise IRError("parameter 'requant' must be one float32 multiplier", node.name)


RESIZE_COORDS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")


def _resize_attrs(a: dict) -> dict:
    """nearest (each pixel repeated) or linear (bilinear, under one of ONNX's coordinate modes), by integer
    factors over H and W."""
    a["scale"] = _pair(a.get("scale", 2))
    if min(a["scale"]) < 1:
        raise IRError(f"resize factors must be positive integers, got {list(a['scale'])}")
    a["mode"] = a.get("mode", "nearest")
    if a["mode"] not in ("nearest", "linear"):
        raise IRError(f"resize mode {a['mode']!r} is not nearest or linear")
    if a["mode"] == "linear":
        a["coord"] = a.get("coord", "half_pixel")
        if a["coord"] not in RESIZE_COORDS:
            raise IRError(f"coordinate mode {a['coord']!r} is not one of {', '.join(RESIZE_COORDS)}")
    return a


def _resize_infer(node: Node, ins: Types) -> tuple[int, ...]:
    _need_rank(node, ins[0], 4)
    n, c, h, w = ins[0].shape
    sh, sw = node.attrs["scale"]
    return (n, c, h * sh, w * sw)


def resize_tables(node: Node, x: TensorType) -> tuple[np.ndarray, np.ndarray]:
    """The row and column tables of a linear resize (numerics.integer.linear_weights)."""
    _, _, h, w = x.shape
    sh, sw = node.attrs["scale"]
    coord = node.attrs["coord"]
    return Q.linear_weights(h * sh, h, sh, coord), Q.linear_weights(w * sw, w, sw, coord)


def _resize(node: Node, xs: Arrays, ins: Types = ()) -> np.ndarray:
    sh, sw = node.attrs["scale"]
    return np.repeat(np.repeat(xs[0], sh, axis=2), sw, axis=3)


def _resize_float(node: Node, xs: Arrays) -> np.ndarray:
    if node.attrs["mode"] == "nearest":
        return _resize(node, xs)
    x = np.asarray(xs[0], np.float32)
    (_, _, h, w), (sh, sw) = x.shape, node.attrs["scale"]
    y0, y1, ly = Q.linear_source(h * sh, h, sh, node.attrs["coord"])
    x0, x1, lx = Q.linear_source(w * sw, w, sw, node.attrs["coord"])
    ly, lx = ly.astype(np.float32)[:, None], lx.astype(np.float32)
    rows = x[:, :, y0] * (np.float32(1) - ly) + x[:, :, y1] * ly
    return (rows[..., x0] * (np.float32(1) - lx) + rows[..., x1] * lx).astype(np.float32)


def _resize_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    if node.attrs["mode"] == "nearest":
        return _resize(node, xs)
    return Q.resize_linear(xs[0], ins[0].quant.zp, *resize_tables(node, ins[0]))


def _const_infer(node: Node, ins: Types) -> tuple[int, ...]:
    return tuple(node.params["value"].shape)


def _const_float(node: Node, xs: Arrays) -> np.ndarray:
    return node.params["value"].astype(np.float32)


def _const_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    return node.params["value"]


def _const_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    return {"value": Q.quantize(node.params["value"], out.quant.scale[0], out.quant.zp)}, {}


def _const_check(node: Node, ins: Types) -> None:
    v = node.params.get("value")
    if v is None or v.dtype != np.int8:
        raise IRError("parameter 'value' must be int8", node.name)


def _const_dequantize(node: Node, ins: Types) -> dict:
    q = node.out.quant
    return {"value": Q.dequantize(node.params["value"], q.scale[0], q.zp)}


def _qsoftmax_float(node: Node, xs: Arrays) -> np.ndarray:
    return Q.softmax_host(xs[0], -1)


# The arithmetic of a softmax inside the network: "int" integer-only (numerics.integer.int_softmax: an
# integer exp table, an integer row sum and reciprocal), what Sieve quantizes float models to; "u8"/"s8"
# onnxruntime's QLinearSoftmax on uint8/int8 tensors (a float32 exp table), what imported models keep.
SOFTMAX_ARITHS = ("int", "u8", "s8")


def _qsoftmax_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    q = node.out.quant
    if add_arith(node) == "int":
        return Q.int_softmax(xs[0], node.params["table"], q.scale[0], q.zp)
    return Q.qlinear_softmax(xs[0], node.params["table"], q.scale[0], q.zp, add_arith(node) == "u8")


def qsoftmax_table(x: TensorType) -> np.ndarray:
    return Q.qlinear_softmax_table(x.quant.scale[0], x.shape[-1])


def _qsoftmax_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    return {"table": Q.int_softmax_table(ins[0].quant.scale[0])}, {"arith": "int"}


def _qsoftmax_check(node: Node, ins: Types) -> None:
    arith = add_arith(node)
    if arith not in SOFTMAX_ARITHS:
        raise IRError(f"softmax arithmetic '{arith}' is not one of {', '.join(SOFTMAX_ARITHS)}", node.name)
    t = node.params.get("table")
    want = np.int32 if arith == "int" else np.float32
    if t is None or t.dtype != want or t.shape != (256,):
        raise IRError(f"parameter 'table' must be {np.dtype(want).name} with 256 entries", node.name)


# ---------------------------------------------------------------- LayerNorm

def _layernorm_attrs(a: dict) -> dict:
    a["eps"] = float(a.get("eps", 1e-5))
    if not a["eps"] >= 0:
        raise IRError(f"LayerNorm epsilon must be non-negative, got {a['eps']}")
    return a


def _layernorm_infer(node: Node, ins: Types) -> tuple[int, ...]:
    d = ins[0].shape[-1]
    if d > Q.LAYERNORM_MAX_COLS:
        raise IRError(f"LayerNorm over {d} features: at most {Q.LAYERNORM_MAX_COLS} (the integer variance's "
                      "range)", node.name)
    for key in ("gamma", "beta"):
        if node.params[key].shape != (d,):
            raise IRError(f"parameter '{key}' must have one value per feature ({d}), has shape "
                          f"{list(node.params[key].shape)}", node.name)
    return ins[0].shape


def _layernorm_float(node: Node, xs: Arrays) -> np.ndarray:
    """As PyTorch and onnxruntime define it: float32 mean and (biased) variance over the last axis."""
    x = np.asarray(xs[0], np.float32)
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    d = x - mean
    var = (d * d).mean(axis=-1, keepdims=True, dtype=np.float32)
    y = d / np.sqrt(var + np.float32(node.attrs["eps"]))
    return (y * node.params["gamma"].astype(np.float32) + node.params["beta"].astype(np.float32)).astype(np.float32)


def _layernorm_int(node: Node, xs: Arrays, ins: Types) -> np.ndarray:
    p, q = node.params, node.out.quant
    return Q.int_layernorm(xs[0], ins[0].quant.zp, p["gamma"], p["beta"], node.attrs["eps_q"], p["requant"][0],
                           q.zp)


def _layernorm_quantize(node: Node, ins: Types, out: TensorType) -> tuple[dict, dict]:
    g, b, eps_q, m = Q.int_layernorm_params(node.params["gamma"], node.params["beta"], node.attrs["eps"],
                                            ins[0].shape[-1], ins[0].quant.scale[0], out.quant.scale[0])
    return {"gamma": g, "beta": b, "requant": np.array([m], np.float32)}, {"eps_q": eps_q}


def _layernorm_check(node: Node, ins: Types) -> None:
    for key, dt, shape in (("gamma", np.int32, (ins[0].shape[-1],)), ("beta", np.int32, (ins[0].shape[-1],)),
                           ("requant", np.float32, (1,))):
        v = node.params.get(key)
        if v is None or v.dtype != dt or v.shape != shape:
            raise IRError(f"parameter '{key}' must be {np.dtype(dt).name} of shape {list(shape)}", node.name)
    if not 0 <= int(node.attrs.get("eps_q", -1)) <= 2**62:
        raise IRError("attribute 'eps_q' must be an integer in [0, 2^62]", node.name)


def _layernorm_dequantize(node: Node, ins: Types) -> dict:
    s_acc = float(node.params["requant"][0]) * float(node.out.quant.scale[0])
    s_g = s_acc * 2.0 ** Q.LAYERNORM_FRAC_BITS
    return {"gamma": (node.params["gamma"] * s_g).astype(np.float32),
            "beta": (node.params["beta"] * s_acc).astype(np.float32)}


# ---------------------------------------------------------------- data movement

def _move_attrs(a: dict) -> dict:
    """A strided view (``offset``, ``shape``, ``strides`` in elements of the input's row-major order), stored
    as a tensor of shape ``to`` (the view's shape unless given: the same elements, reshaped)."""
    a["shape"] = tuple(_int(v, "a view's shape", 1) for v in a["shape"])
    a["strides"] = tuple(_int(v, "a view's strides", 0) for v in a.get("strides", row_major(a["shape"])))
    a["offset"] = _int(a.get("offset", 0), "a view's offset", 0)
    a["to"] = tuple(_int(v, "a view's stored shape", 1) for v in a.get("to", a["shape"]))
    if max(a["strides"] + (a["offset"],), default=0) >= 1 << 40:
        raise IRError("a view's strides and offset must be below 2^40 (strides "
                      f"{[v if v < 1 << 40 else '2^' + str(v.bit_length() - 1) + '+' for v in a['strides']]}, "
                      f"offset {a['offset'] if a['offset'] < 1 << 40 else 'past 2^40'})")
    if len(a["strides"]) != len(a["shape"]) or min(a["shape"], default=1) < 1 or min(a["strides"], default=0) < 0 \
            or a["offset"] < 0 or min(a["to"], default=1) < 1:
        raise IRError(f"a view needs positive sizes, non-negative strides and offset, one stride per axis "
                      f"(shape {list(a['shape'])}, strides {list(a['strides'])}, offset {a['offset']})")
    if math.prod(a["to"]) != math.prod(a["shape"]):          # exact: numpy's product wraps around
        raise IRError(f"cannot store a view of shape {list(a['shape'])} as {list(a['to'])}")
    return a


def row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a row-major (C-order) tensor."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def _move_infer(node: Node, ins: Types) -> tuple[int, ...]:
    a = node.attrs
    last = a["offset"] + sum((d - 1) * s for d, s in zip(a["shape"], a["strides"]))
    if last >= ins[0].size:
        raise IRError(f"the view (offset {a['offset']}, shape {list(a['shape'])}, strides {list(a['strides'])}) "
                      f"reaches element {last} of an input of {ins[0].size}", node.name)
    return a["to"]


def move_view(node: Node, x: np.ndarray) -> np.ndarray:
    """The view a MOVE node copies, of x in its logical (row-major) order."""
    a = node.attrs
    flat = np.ascontiguousarray(x).reshape(-1)
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat[a["offset"]:], a["shape"], tuple(s * item for s in a["strides"]),
                                           writeable=False)


def _move(node: Node, xs: Arrays, ins: Types = ()) -> np.ndarray:
    return move_view(node, xs[0]).reshape(node.attrs["to"]).copy()


def _input_infer(node: Node, ins: Types) -> tuple[int, ...]:
    return node.out.shape


def _input_ref(node: Node, xs: Arrays, ins: Types = ()) -> np.ndarray:
    raise IRError("an input node is fed, not computed", node.name)


def _gap_count(node: Node, ins: Types) -> int:
    return int(np.prod(ins[0].shape[2:]))


def _avgpool_count(node: Node, ins: Types) -> int:
    return int(np.prod(node.attrs["kernel"]))


REGISTRY: dict[Op, OpDef] = {
    Op.INPUT: OpDef(0, _input_infer, _no_macs, _input_ref, _input_ref),
    Op.CONV2D: OpDef(1, _conv_infer, _conv_macs, _conv_float, _conv_int, attrs=_conv_attrs, act=True,
                     weighted=True, quantize=_weighted_quantize, check_int=_weighted_check,
                     dequantize=_weighted_dequantize),
    Op.DENSE: OpDef(1, _dense_infer, _dense_macs, _dense_float, _dense_int, act=True, weighted=True,
                    quantize=_weighted_quantize, check_int=_weighted_check, dequantize=_weighted_dequantize),
    Op.ADD: OpDef(2, _binary_infer, _no_macs, _add_float, _add_int, act=True, quantize=_add_quantize),
    Op.RELU: OpDef(1, _same_shape_infer, _no_macs, _relu_float, _relu_int, scale="keep"),
    Op.MAXPOOL: OpDef(1, _pool_infer, _no_macs, _pool_float, _pool_int, attrs=_window_attrs, scale="keep"),
    Op.GLOBALAVGPOOL: OpDef(1, _gap_infer, _gap_macs, _gap_float, _gap_int,
                            quantize=_window_sum_quantize(_gap_count), check_int=_window_sum_check),
    Op.AVGPOOL: OpDef(1, _pool_infer, _avgpool_macs, _avgpool_float, _avgpool_int, attrs=_window_attrs,
                      quantize=_window_sum_quantize(_avgpool_count), check_int=_window_sum_check),
    Op.FLATTEN: OpDef(1, _flatten_infer, _no_macs, _flatten, _flatten, scale="keep"),
    Op.CONCAT: OpDef(-1, _concat_infer, _no_macs, _concat_float, _concat_int),
    Op.AFFINE: OpDef(1, _affine_infer, _no_macs, _affine_float, _affine_int, act=True, check_int=_affine_check,
                     dequantize=_keep_params),
    Op.SOFTMAX: OpDef(1, _same_shape_infer, _no_macs, _softmax_float, _softmax_int, scale="host"),
    Op.LUT: OpDef(1, _same_shape_infer, _no_macs, _lut_float, _lut_int, attrs=_lut_attrs, quantize=_lut_quantize,
                  check_int=_lut_check),
    Op.MUL: OpDef(2, _mul_infer, _no_macs, _mul_float, _mul_int, quantize=_mul_quantize),
    Op.QSOFTMAX: OpDef(1, _same_shape_infer, _no_macs, _qsoftmax_float, _qsoftmax_int, quantize=_qsoftmax_quantize,
                       check_int=_qsoftmax_check),
    Op.BMM: OpDef(2, _bmm_infer, _bmm_macs, _bmm_float, _bmm_int, attrs=_bmm_attrs, quantize=_bmm_quantize,
                  check_int=_bmm_check),
    Op.RESIZE: OpDef(1, _resize_infer, _no_macs, _resize_float, _resize_int, attrs=_resize_attrs, scale="keep"),
    Op.LAYERNORM: OpDef(1, _layernorm_infer, _no_macs, _layernorm_float, _layernorm_int, attrs=_layernorm_attrs,
                        quantize=_layernorm_quantize, check_int=_layernorm_check, dequantize=_layernorm_dequantize),
    Op.MOVE: OpDef(1, _move_infer, _no_macs, _move, _move, attrs=_move_attrs, scale="keep"),
    Op.CONST: OpDef(0, _const_infer, _no_macs, _const_float, _const_int, quantize=_const_quantize,
                    check_int=_const_check, dequantize=_const_dequantize),
}


def opdef(op: Op) -> OpDef:
    return REGISTRY[op]


def macs(graph) -> int:
    """Total MACs of a graph."""
    return sum(REGISTRY[n.op].macs(n, [graph[i].out for i in n.inputs]) for n in graph)
