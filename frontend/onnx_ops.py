"""Per-op ONNX handlers: float ops, QOperator ops, and the QDQ groups that fold into integer ops."""
from __future__ import annotations

import copy
import logging
import math

import numpy as np
from sieve_numerics.integer import int_softmax_table, qlinear_softmax_table
from sieve_numerics.tables import FUNCTIONS, build_table

from sieve.frontend.onnx_import import HANDLERS, View, _Importer, _Q
from sieve.frontend.onnx_lowbit import Grid, is_low_bit, to_grid, unpack_nbits
from sieve.ir.graph import Op
from sieve.ir.registry import bmm_multiplier, gap_scale, row_major
from sieve.frontend.errors import FrontendError
from sieve.ir.types import DType, TensorType


log = logging.getLogger("sieve")


def handles(*ops: str):
    def register(fn):
        for op in ops:
            HANDLERS[op] = fn
        return fn
    return register


# ---------------------------------------------------------------- geometry

def _conv_attrs(imp: _Importer, node, x_shape, kernel) -> dict:
    a = imp.attrs(node)
    if len(kernel) != 2:
        raise imp.error(f"only 2-D kernels are supported, got {list(kernel)}", node)
    given = imp.attrs(node).get("kernel_shape")
    if given is not None and list(given) != list(kernel):
        raise imp.error(f"kernel_shape {list(given)} disagrees with the weights' kernel {list(kernel)}", node)
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for i in range(2):
            size = x_shape[2 + i]
            total = max((-(-size // strides[i]) - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = list(a.get("pads", [0, 0, 0, 0]))
    return {"kernel": tuple(kernel), "stride": tuple(strides), "pad": tuple(pads), "dilation": tuple(dil),
            "group": int(a.get("group", 1))}


# ---------------------------------------------------------------- quantized building blocks

def _int_input(imp: _Importer, tensor: str, q: _Q) -> None:
    """Give a raw integer graph input its quantization when its first consumer names it (or a view of it)."""
    if tensor in imp.views:
        base = imp.views[tensor].base
        raw = next((k for k, (ir, _, _) in imp.raw_inputs.items() if ir == base), None)
        if raw is not None:
            imp.qinfo[tensor] = q
            tensor = raw
    if tensor in imp.raw_inputs:
        name, dims, unsigned = imp.raw_inputs.pop(tensor)
        imp.b.input(name, dims, DType.INT8, q.activation())
        imp.qinfo[tensor] = q


def _act_attrs(act: tuple) -> dict:
    kind, lo, hi = act
    if kind == "clip":
        return {"act": "clip", "clip_min": lo, "clip_max": hi}
    return {"act": kind}


def _int_weights(w: np.ndarray, wq: _Q, k_axis: int) -> np.ndarray:
    """Weights minus their zero points: int8 when they fit, else int16 (the wide weight format)."""
    zp = wq.zp.reshape([-1 if i == k_axis else 1 for i in range(w.ndim)]) if wq.zp.size > 1 else wq.zp[0]
    wi = w.astype(np.int32) - zp
    if wi.min(initial=0) >= -128 and wi.max(initial=0) <= 127:
        return wi.astype(np.int8)
    return wi.astype(np.int16)


def _requant(xq: _Q, w_scale: np.ndarray, yq: _Q, k: int) -> np.ndarray:
    """onnxruntime's multiplier: float32(x_scale * w_scale[k]) / y_scale, per output channel."""
    ws = np.broadcast_to(w_scale, (k,)) if w_scale.size == 1 else w_scale
    return (np.float32(xq.scale[0]) * ws.astype(np.float32) / np.float32(yq.scale[0])).astype(np.float32)


def _grid(imp: _Importer, node, w: np.ndarray, wq: _Q | None, k_axis: int, red_axis: int | None,
          quiet: bool = False) -> Grid | None:
    """Low-bit weights (INT4/UINT4, or scales per block) on Sieve's grid; None for 8-bit weights with
    one scale per tensor or channel. A grid that only approximates the model's weights is logged."""
    if wq is None or not (is_low_bit(w) or wq.block):
        return None
    axis = wq.axis + w.ndim if wq.axis < 0 else wq.axis
    if wq.scale.size > 1 and not 0 <= axis < w.ndim:
        raise imp.error(f"DequantizeLinear axis {wq.axis} is outside weights of rank {w.ndim}", node)
    tiny = np.finfo(np.float32).tiny
    bad = ~np.isfinite(wq.scale) | (wq.scale < 0) | ((wq.scale > 0) & (wq.scale < tiny))
    if bad.any():
        raise imp.error(f"its low-bit weights' scale {float(wq.scale[bad][0])!r} is not a finite positive "
                        f"float32 of at least {tiny:.3g} (or 0)", node)
    scale = wq.scale.reshape(_block_shape(w.shape, axis, wq.block)) if wq.block and wq.scale.size > 1 else wq.scale
    zp = wq.zp.reshape(scale.shape) if wq.zp.size > 1 else wq.zp
    grid = to_grid(w, scale, zp, axis, wq.block, k_axis, red_axis, is_low_bit(w))
    if np.abs(grid.ints).max(initial=0) * float(grid.step.max(initial=0)) > float(np.finfo(np.float32).max):
        raise imp.error("its dequantized low-bit weights overflow float32", node)
    name = node.name or node.output[0]
    if quiet:
        return grid
    if grid.scale_error:
        log.warning("%s: the block scales of '%s' are not integer multiples of one step per output channel: "
                    "Sieve rounds them to step x 1..15 (largest scale error %.1f%%)", imp.source, name,
                    100 * grid.scale_error)
    if grid.value_error:
        log.warning("%s: the int4 weights of '%s' do not fit Sieve's int4 grid (blocks that are not groups of "
                    "input channels, or values outside -8..7 after the zero point): they are rounded to int8 "
                    "per channel (largest error %.2f of a step)", imp.source, name, grid.value_error)
    return grid


def _block_shape(shape: tuple[int, ...], axis: int, block: int) -> tuple[int, ...]:
    return tuple(-(-d // block) if i == axis else d for i, d in enumerate(shape))


def _grid_params(grid: Grid) -> tuple[dict, dict]:
    """(attrs, params) that mark a layer's weights as int4 (what ``passes.lowbit_weights`` records)."""
    if grid.bits != 4:
        return {}, {}
    params = {"w_step": grid.step} | ({"w_mult": grid.mult} if grid.mult is not None else {})
    return {"w_bits": 4, "w_group": grid.group}, params


def _float_weights(imp: _Importer, node, w: np.ndarray, wq: _Q | None, k_axis: int,
                   red_axis: int | None) -> tuple[np.ndarray, dict, dict]:
    """Weights of a float layer (its input not quantized): float32, dequantized when a DequantizeLinear
    holds them, with the int4 grid's attrs and params when they are low-bit."""
    if wq is None:
        return w, {}, {}
    grid = _grid(imp, node, w, wq, k_axis, red_axis)
    if grid is not None:
        return grid.float_weights(), *_grid_params(grid)
    scale = wq.scale.reshape([-1 if i == k_axis else 1 for i in range(w.ndim)]) if wq.scale.size > 1 else wq.scale[0]
    zp = wq.zp.reshape([-1 if i == k_axis else 1 for i in range(w.ndim)]) if wq.zp.size > 1 else wq.zp[0]
    return ((w.astype(np.float32) - np.float32(zp)) * scale).astype(np.float32), {}, {}


def _reordered(imp: _Importer, a: str) -> bool:
    """Whether the accelerator reduces a dense layer's input in another order than the model's (a
    flattened image, read channels-last): scale groups cannot follow the model's blocks then."""
    def image(shape) -> bool:                       # an image of more than one pixel: stored channels-last
        return len(shape) == 4 and shape[2] * shape[3] > 1

    if a in imp.views:
        return image(imp.base_shape(imp.views[a].base))
    name = imp.names.get(a)
    node = imp.b.nodes.get(name) if name is not None else None
    return node is None or (node.op is Op.FLATTEN and image(imp.b.nodes[node.inputs[0]].out.shape))


def emit_int_conv(imp: _Importer, node, out: str, x: str, xq: _Q, w, wq: _Q, bias, yq: _Q | None,
                  act=("none", 0, 0)) -> None:
    _int_input(imp, x, xq)
    ca = _conv_attrs(imp, node, imp.shape(x), w.shape[2:])
    k = w.shape[0]
    grid = _grid(imp, node, w, wq, 0, 1 if ca["group"] == 1 else None)
    params = {"w": _int_weights(w, wq, 0) if grid is None else grid.ints,
              "b": np.zeros(k, np.int32) if bias is None else np.asarray(bias).astype(np.int32)}
    attrs = {"out_channels": k, "kernel": ca["kernel"], "stride": ca["stride"], "pad": ca["pad"],
             "dilation": ca["dilation"], "groups": ca["group"]}
    if yq is None:                                   # ConvInteger: raw int32 output
        imp.emit(out, Op.CONV2D, [x], attrs, params, DType.INT32)
        return
    w_scale = wq.scale if grid is None else grid.step
    params["requant"] = _requant(xq, w_scale, yq, k)
    params["w_scale"] = np.broadcast_to(w_scale, (k,)).astype(np.float32)
    if grid is not None:
        low_attrs, low_params = _grid_params(grid)
        attrs, params = {**attrs, **low_attrs}, {**params, **low_params}
    imp.emit(out, Op.CONV2D, [x], {**attrs, **_act_attrs(act)}, params, DType.INT8, yq.activation())
    imp.qinfo[out] = yq


def emit_int_dense(imp: _Importer, node, out: str, a: str, aq: _Q, w_ck, wq: _Q, bias, yq: _Q | None,
                   act=("none", 0, 0)) -> None:
    """w_ck: weights as the model holds them, [C, K] (or batched [B, C, K]); zero points per K."""
    _int_input(imp, a, aq)
    w = np.swapaxes(w_ck, -1, -2)                    # [K, C] / [B, K, C]
    x_shape = imp.shape(a)
    if len(x_shape) != w.ndim and not (len(x_shape) == 3 and w.ndim == 2):
        raise imp.error(f"input of rank {len(x_shape)} with weights of rank {w_ck.ndim} is not supported "
                        "(2-D weights take [batch, features] or [batch, tokens, features])", node)
    k = w.shape[-2]
    grid = _grid(imp, node, w_ck, wq, 1, None if _reordered(imp, a) else 0) if w_ck.ndim == 2 else None
    wi = _int_weights(w, wq, w.ndim - 2) if grid is None else np.ascontiguousarray(grid.ints.T)
    per_k = w.shape[:-1]
    params = {"w": wi, "b": np.broadcast_to(np.zeros(1, np.int32) if bias is None else
                                            np.asarray(bias).astype(np.int32), per_k).copy()}
    if yq is None:
        imp.emit(out, Op.DENSE, [a], {"out_features": k}, params, DType.INT32)
        return
    w_scale = wq.scale if grid is None else grid.step
    params["requant"] = np.broadcast_to(_requant(aq, w_scale, yq, k), per_k).astype(np.float32).copy()
    params["w_scale"] = np.broadcast_to(w_scale if w_scale.size > 1 else w_scale[0], per_k).astype(np.float32)
    low_attrs = {}
    if grid is not None:
        low_attrs, low_params = _grid_params(grid)
        params.update(low_params)
    imp.emit(out, Op.DENSE, [a], {"out_features": k, **_act_attrs(act), **low_attrs}, params, DType.INT8,
             yq.activation())
    imp.qinfo[out] = yq


def emit_int_add(imp: _Importer, out: str, a: str, b: str, yq: _Q, act=("none", 0, 0), arith: str = "") -> None:
    arith = arith or ("u8" if yq.unsigned else "s8")          # QLinearAdd: the model's own type
    imp.emit(out, Op.ADD, [a, b], {**_act_attrs(act), "arith": arith}, None, DType.INT8, yq.activation())
    imp.qinfo[out] = yq


def emit_int_gap(imp: _Importer, out: str, x: str, xq: _Q, yq: _Q) -> None:
    n, c, h, w = imp.shape(x)
    scale = gap_scale(float(xq.scale[0]), float(yq.scale[0]), h * w)
    imp.emit(out, Op.GLOBALAVGPOOL, [x], {}, {"requant": np.full(c, scale, np.float32)}, DType.INT8,
             yq.activation())
    imp.qinfo[out] = yq


def _same_quant(imp: _Importer, out: str, x: str) -> tuple[DType, object]:
    node = imp.b.nodes[imp.ir(x)]
    if x in imp.qinfo:
        imp.qinfo[out] = imp.qinfo[x]
    return node.out.dtype, node.out.quant


# ---------------------------------------------------------------- QDQ: DequantizeLinear / QuantizeLinear

def _q_of(imp: _Importer, node, scale_i: int, zp_i: int) -> _Q:
    scale = imp.const(node.input[scale_i], node, "scale")
    zp = imp.opt_const(node, zp_i)
    unsigned = zp is None or zp.dtype.name in ("uint8", "uint4")
    q = _Q(scale, zp, unsigned)
    q.as_int8 = imp.int8_io
    return q


@handles("DequantizeLinear")
def _dequantize(imp: _Importer, node) -> None:
    q = _q_of(imp, node, 1, 2)
    src = node.input[0]
    if src in imp.consts:                            # weights, or an int32 bias
        a = imp.attrs(node)
        q.axis, q.block = a.get("axis", 1), a.get("block_size", 0)
        if q.block < 0:
            raise imp.error(f"block_size {q.block} is negative", node)
        imp.dq_const[node.output[0]] = (imp.consts[src], q)
        return
    if src in imp.raw_inputs:                        # an integer graph input: its scale is this DQ's
        _int_input(imp, src, q)
    if src not in imp.qinfo:
        raise imp.error("DequantizeLinear of a tensor that is not quantized", node)
    imp.dq[node.output[0]] = src


@handles("QuantizeLinear")
def _quantize(imp: _Importer, node) -> None:
    x, out = node.input[0], node.output[0]
    q = _q_of(imp, node, 1, 2)
    q.ort_u8 = imp.ort_u8(node, q)
    view = imp.views.get(x) if x not in imp.dq else None
    if view is not None and imp.b.nodes[view.base].op is Op.INPUT:
        # a view of a graph input (a transposition, a reshape) before its quantization: quantize the input
        # itself on the host, and read the view of the integers
        _quantize_input(imp, node, view.base, q)
        imp.views[out], imp.qinfo[out] = view, q
        return
    node_name = imp.names.get(x)
    if x in imp.exprs and imp.exprs[x][0] in imp.qinfo:   # a pointwise chain of dequantized integers: a table
        from sieve_numerics.tables import canonical
        src, program = imp.exprs.pop(x)
        _finish_lut(imp, x, q, src, *canonical(program))
        imp.finished[x] = q
        imp.names[out], imp.qinfo[out] = imp.names[x], q
        return
    if x in imp.pending:                             # the QuantizeLinear that closes a QDQ group:
        kind, args = imp.pending.pop(x)
        FINISH[kind](imp, x, q, *args)               # the integer op, named after the float op's output
        imp.finished[x] = q
        imp.names[out], imp.qinfo[out] = imp.names[x], q
        return
    if x in imp.finished:                            # another QuantizeLinear of the same value (a dedicated
        if not imp.finished[x].same(q):              # Q/DQ pair per consumer): the same integers
            raise imp.error("two QuantizeLinear nodes quantize one value with different scales (a "
                            "requantization); that is not supported", node)
        imp.names[out], imp.qinfo[out] = imp.names[x], q
        return
    if x in imp.dq:                                  # DQ -> (reshape, transpose) -> Q with the same parameters
        src = imp.dq[x]
        sq = imp.qinfo[src]
        if not (np.array_equal(sq.scale, q.scale) and np.array_equal(sq.zp, q.zp)):
            raise imp.error("a DequantizeLinear -> QuantizeLinear pair that changes the scale "
                            "(a requantization) is not supported", node)
        imp.alias(out, src)
        return
    if node_name is not None and imp.b.nodes[node_name].op is Op.INPUT:
        _quantize_input(imp, node, node_name, q)     # quantization of a float graph input happens on the host
        imp.names[out] = node_name
        imp.qinfo[out] = q
        return
    raise imp.error("QuantizeLinear of a float value that is neither a graph input nor the result of a "
                    "DequantizeLinear -> op group", node)


def _quantize_input(imp: _Importer, node, name: str, q: _Q) -> None:
    """A graph input becomes int8, quantized on the host (once, or again with the same scale)."""
    node_ir = imp.b.nodes[name]
    if node_ir.out.dtype is DType.INT8:
        if not (np.float32(node_ir.out.quant.scale[0]) == q.scale[0] and node_ir.out.quant.zp == q.activation().zp):
            raise imp.error("a graph input quantized twice with different scales is not supported", node)
    else:
        imp.b.nodes[name] = node_ir.evolve(out=TensorType(node_ir.out.shape, DType.INT8, q.activation()))


def _dq_input(imp: _Importer, tensor: str):
    """(integer tensor, its quantization) behind a DequantizeLinear output, or None."""
    if tensor in imp.dq:
        src = imp.dq[tensor]
        return src, imp.qinfo[src]
    return None


def _finish_conv(imp, out, yq, node, x, xq, w, wq, bias, act):
    if not (imp.qinfo[x].ort_u8 and yq.ort_u8):           # onnxruntime on x86: int8 convolutions run in float
        imp.float_layers.append(out)
    emit_int_conv(imp, node, out, x, xq, w, wq, bias, yq, act)


def _finish_dense(imp, out, yq, node, a, aq, w_ck, wq, bias, act):
    xu8 = imp.qinfo[a].ort_u8
    if (xu8 != yq.ort_u8) if node.op_type == "Gemm" else not (xu8 and yq.ort_u8):   # QGemm takes int8 too
        imp.float_layers.append(out)
    emit_int_dense(imp, node, out, a, aq, w_ck, wq, bias, yq, act)


def _finish_add(imp, out, yq, a, b, act):
    types = {imp.qinfo[a].ort_u8, imp.qinfo[b].ort_u8, yq.ort_u8}
    # one type: QLinearAdd in that type; mixed: onnxruntime adds in float (exact to emulate)
    emit_int_add(imp, out, a, b, yq, act, arith=("u8" if yq.ort_u8 else "s8") if len(types) == 1 else "float")


def _finish_gap(imp, out, yq, x, xq):
    if imp.qinfo[x].ort_u8 != yq.ort_u8:                  # a float mean in onnxruntime
        imp.float_layers.append(out)
    emit_int_gap(imp, out, x, xq, yq)


def _finish_same(imp, out, yq, op, x, attrs):
    """MaxPool/Flatten/Relu between DQ and Q keep the scale; a different Q scale is a requantize."""
    xq = imp.qinfo[x]
    if not (np.array_equal(xq.scale, yq.scale) and np.array_equal(xq.zp, yq.zp)):
        raise FrontendError(f"{op.value} changes the scale between its DequantizeLinear and QuantizeLinear; "
                            "that requantization is not supported", imp.source)
    imp.emit(out, op, [x], attrs, None, DType.INT8, yq.activation())
    imp.qinfo[out] = yq


FINISH = {"conv": _finish_conv, "dense": _finish_dense, "add": _finish_add, "gap": _finish_gap,
          "same": _finish_same}


def _attach_act(imp: _Importer, node, x: str, act: tuple) -> bool:
    """Relu/Clip after a pending QDQ op joins it; returns whether it did."""
    if x not in imp.pending:
        return False
    kind, args = imp.pending.pop(x)
    if kind not in ("conv", "dense", "add", "affine"):
        raise imp.error("an activation after this op inside a QDQ group is not supported", node)
    args = (*args[:-1], act)
    imp.pending[node.output[0]] = (kind, args)
    return True


# ---------------------------------------------------------------- conv / gemm / matmul

def _const_weight(imp: _Importer, node, name: str):
    """(values, quantization or None) of a weight: an initializer or a DequantizeLinear of one."""
    if name in imp.dq_const:
        return imp.dq_const[name]
    return imp.const(name, node, "weight"), None


@handles("Conv")
def _conv(imp: _Importer, node) -> None:
    x, out = node.input[0], node.output[0]
    w, wq = _const_weight(imp, node, node.input[1])
    bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    dq = _dq_input(imp, x)
    if dq is not None:                                            # QDQ group
        if wq is None:
            raise imp.error("a quantized input with float weights is not supported", node)
        bias = imp.dq_const[bias_name][0] if bias_name else None
        imp.pending[out] = ("conv", (node, dq[0], dq[1], w, wq, bias, ("none", 0, 0)))
        return
    ca = _conv_attrs(imp, node, imp.shape(x), w.shape[2:])
    b = imp.const(bias_name, node, "bias") if bias_name else np.zeros(w.shape[0], np.float32)
    w, low_attrs, low_params = _float_weights(imp, node, w, wq, 0, 1 if ca["group"] == 1 else None)
    imp.emit(out, Op.CONV2D, [x], {"out_channels": w.shape[0], "kernel": ca["kernel"], "stride": ca["stride"],
                                   "pad": ca["pad"], "dilation": ca["dilation"], "groups": ca["group"],
                                   **low_attrs},
             {"w": w, "b": b, **low_params})


@handles("QLinearConv")
def _qlinearconv(imp: _Importer, node) -> None:
    x = node.input[0]
    xq, wq, yq = _q_of(imp, node, 1, 2), _q_of(imp, node, 4, 5), _q_of(imp, node, 6, 7)
    wq.unsigned = imp.const(node.input[3], node, "weight").dtype == np.uint8
    bias = imp.opt_const(node, 8)
    emit_int_conv(imp, node, node.output[0], x, xq, imp.const(node.input[3], node, "weight"), wq, bias, yq)


@handles("ConvInteger")
def _convinteger(imp: _Importer, node) -> None:
    x = node.input[0]
    xz, wz = imp.opt_const(node, 2), imp.opt_const(node, 3)
    w = imp.const(node.input[1], node, "weight")
    xq = _Q(np.ones(1), xz, (xz.dtype == np.uint8) if xz is not None else imp.raw_unsigned(x))
    emit_int_conv(imp, node, node.output[0], x, xq, w, _Q(np.ones(1), wz, w.dtype == np.uint8), None, None)


def _gemm_weights(imp: _Importer, node):
    a = imp.attrs(node)
    if a.get("transA", 0):
        raise imp.error("transA=1 is not supported", node)
    w, wq = _const_weight(imp, node, node.input[1])
    if not a.get("transB", 0):
        return a, w, wq                                           # as [C, K]
    if wq is not None and w.ndim == 2 and wq.scale.size > 1:       # scales along the other axis now
        axis = wq.axis % 2
        wq = copy.copy(wq)
        if wq.block:
            shape = _block_shape(w.shape, axis, wq.block)
            wq.scale = wq.scale.reshape(shape).T.ravel()
            wq.zp = wq.zp.reshape(shape).T.ravel() if wq.zp.size > 1 else wq.zp
        wq.axis = 1 - axis
    return a, w.T, wq


@handles("Gemm")
def _gemm(imp: _Importer, node) -> None:
    a, w_ck, wq = _gemm_weights(imp, node)
    x, out = node.input[0], node.output[0]
    c_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    dq = _dq_input(imp, x)
    if dq is not None:
        if wq is None:
            raise imp.error("a quantized input with float weights is not supported", node)
        bias = imp.dq_const[c_name][0] if c_name else None
        imp.pending[out] = ("dense", (node, dq[0], dq[1], w_ck, wq, bias, ("none", 0, 0)))
        return
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    k = w_ck.shape[1]
    bias = np.broadcast_to(imp.const(c_name, node, "bias") * beta, (k,)) if c_name else np.zeros(k)
    w_ck, low_attrs, low_params = _float_weights(imp, node, w_ck, wq, 1, None if _reordered(imp, x) else 0)
    if "w_step" in low_params:
        low_params["w_step"] = (low_params["w_step"] * np.float32(alpha)).astype(np.float32)
    imp.emit(out, Op.DENSE, [x], {"out_features": k, **low_attrs}, {"w": (w_ck * alpha).T, "b": bias, **low_params})


@handles("MatMul")
def _matmul(imp: _Importer, node) -> None:
    x, out = node.input[0], node.output[0]
    if node.input[1] not in imp.consts and node.input[1] not in imp.dq_const:     # two activations
        b = node.input[1]
        da, db = _dq_input(imp, x), _dq_input(imp, b)
        if (da is None) != (db is None):
            raise imp.error("MatMul of a dequantized tensor by a float one is not supported", node)
        if da is not None:
            imp.pending[out] = ("bmm", (da[0], *_unswap(imp, db[0])))
            return
        imp.emit(out, Op.BMM, [x, *_unswap(imp, b)[:1]], {"transpose_b": _unswap(imp, b)[1]})
        return
    w, wq = _const_weight(imp, node, node.input[1])
    dq = _dq_input(imp, x)
    if dq is not None:
        imp.pending[out] = ("dense", (node, dq[0], dq[1], w, wq, None, ("none", 0, 0)))
        return
    if w.ndim != 2:
        raise imp.error("a float MatMul needs 2-D constant weights", node)
    w, low_attrs, low_params = _float_weights(imp, node, w, wq, 1, None if _reordered(imp, x) else 0)
    imp.emit(out, Op.DENSE, [x], {"out_features": w.shape[1], **low_attrs}, {"w": w.T, **low_params})


@handles("MatMulNBits")
def _matmulnbits(imp: _Importer, node) -> None:
    """onnxruntime's weight-only quantized MatMul: B [N][blocks][bytes] of 4-bit values (two per byte,
    the first in the low bits), a scale per (column, block), zero points packed the same way (8 when
    absent), an optional float bias. A dequantized input makes it one QDQ group with the QuantizeLinear
    after it; a float input a float dense layer with int4 weights."""
    a = imp.attrs(node)
    for req in ("K", "N", "bits", "block_size"):
        if req not in a:
            raise imp.error(f"lacks the required attribute '{req}'", node)
    k, n, bits, block = a["K"], a["N"], a["bits"], a["block_size"]
    if bits != 4:
        raise imp.error(f"bits={bits} is not supported (Sieve imports 4-bit MatMulNBits)", node)
    if k < 1 or n < 1 or block < 16 or block & (block - 1):
        raise imp.error(f"K={k}, N={n}, block_size={block}: K and N must be positive and block_size a power "
                        "of two of at least 16", node)
    if len(node.input) < 3:
        raise imp.error("needs inputs A, B and scales", node)
    blocks = -(-k // block)
    b = imp.const(node.input[1], node, "B")
    if b.dtype != np.uint8 or b.size != n * blocks * block // 2:
        raise imp.error(f"B must be uint8 [{n}][{blocks}][{block // 2}], got {b.dtype} {list(b.shape)}", node)
    scales = imp.const(node.input[2], node, "scales")
    if scales.dtype != np.float32 or scales.size != n * blocks:
        raise imp.error(f"scales must be float32 with {n * blocks} values (one per column and block), got "
                        f"{scales.dtype} {list(scales.shape)}", node)
    zp_in = imp.opt_const(node, 3)
    if zp_in is None:
        zp = np.full((n, blocks), 8, np.int64)
    elif zp_in.dtype == np.uint8 and zp_in.size == n * -(-blocks // 2):
        zp = unpack_nbits(zp_in, n, blocks, 4).astype(np.int64)
    else:
        raise imp.error(f"zero points must be uint8, two per byte ({n * -(-blocks // 2)} bytes); got "
                        f"{zp_in.dtype} {list(zp_in.shape)} (float zero points are not supported)", node)
    g_idx = imp.opt_const(node, 4)
    if g_idx is not None and not np.array_equal(np.asarray(g_idx).ravel(), np.arange(k) // block):
        raise imp.error("a g_idx that reorders the blocks (act-order) is not supported", node)
    bias = imp.opt_const(node, 5)
    if bias is not None and bias.size != n:
        raise imp.error(f"bias must have N={n} values, got {bias.size}", node)
    features = imp.shape(imp.dq.get(node.input[0], node.input[0]))[-1]
    if features != k:
        raise imp.error(f"input A has {features} features, K={k}", node)
    q = unpack_nbits(b, n, k, 4)                                   # [N][K]
    wq = _Q(scales.reshape(n, blocks).T, zp.T, True)               # [blocks][N], as w_ck is [K][N]
    wq.axis, wq.block = 0, block
    w_ck = np.ascontiguousarray(q.T).astype(np.uint8).view(_uint4())
    x, out = node.input[0], node.output[0]
    dq = _dq_input(imp, x)
    if dq is not None:
        int_bias = None
        if bias is not None:                       # a float bias, added at the accumulator's scale
            grid = _grid(imp, node, w_ck, wq, 1, None if _reordered(imp, dq[0]) else 0, quiet=True)
            s_acc = np.float64(dq[1].scale[0]) * grid.step.astype(np.float64)
            int_bias = np.clip(np.rint(bias.astype(np.float64) / s_acc), -2**31, 2**31 - 1).astype(np.int32)
        imp.pending[out] = ("dense", (node, dq[0], dq[1], w_ck, wq, int_bias, ("none", 0, 0)))
        return
    w, low_attrs, low_params = _float_weights(imp, node, w_ck, wq, 1, None if _reordered(imp, x) else 0)
    imp.emit(out, Op.DENSE, [x], {"out_features": n, **low_attrs},
             {"w": w.T, "b": np.zeros(n, np.float32) if bias is None else bias.astype(np.float32), **low_params})


def _uint4():
    """numpy's uint4 type (ml_dtypes, which onnx uses for INT4/UINT4 tensors)."""
    import ml_dtypes
    return np.dtype(ml_dtypes.uint4)


def _unswap(imp: _Importer, b: str) -> tuple[str, bool]:
    """The second operand of a product as (tensor, transpose_b): a view whose last two axes, swapped back,
    are rows in memory (attention's Kᵀ, a Transpose of K) is read untransposed, the MAC array's operand
    widened from it in transposed order, so no copy transposes it byte by byte."""
    v = imp.views.get(b)
    if v is None or len(v.shape) < 2 or v.strides[-1] == 1:
        return b, False
    rank = len(v.shape)
    w = v.permute(list(range(rank - 2)) + [rank - 1, rank - 2])
    if w.strides[-1] != 1:
        return b, False
    name = f"{b}__untransposed"
    imp.views[name] = w
    if b in imp.qinfo:
        imp.qinfo[name] = imp.qinfo[b]
    return name, True


@handles("QLinearMatMul")
def _qlinearmatmul(imp: _Importer, node) -> None:
    aq, bq, yq = _q_of(imp, node, 1, 2), _q_of(imp, node, 4, 5), _q_of(imp, node, 6, 7)
    if node.input[3] not in imp.consts:                  # two activations
        b = node.input[3]
        _int_input(imp, node.input[0], aq)
        _int_input(imp, b, bq)
        _finish_bmm(imp, node.output[0], yq, node.input[0], *_unswap(imp, b))
        return
    b = imp.const(node.input[3], node, "weight")
    emit_int_dense(imp, node, node.output[0], node.input[0], aq, b, bq, None, yq)


@handles("MatMulInteger")
def _matmulinteger(imp: _Importer, node) -> None:
    az, bz = imp.opt_const(node, 2), imp.opt_const(node, 3)
    b = imp.const(node.input[1], node, "weight")
    aq = _Q(np.ones(1), az, (az.dtype == np.uint8) if az is not None else imp.raw_unsigned(node.input[0]))
    emit_int_dense(imp, node, node.output[0], node.input[0], aq, b, _Q(np.ones(1), bz, b.dtype == np.uint8),
                   None, None)


@handles("QGemm")
def _qgemm(imp: _Importer, node) -> None:
    a = imp.attrs(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0:
        raise imp.error("QGemm with transA or alpha != 1 is not supported", node)
    if len(node.input) < 8 or not node.input[7]:
        raise imp.error("QGemm without y_scale (float output) is not supported", node)
    aq, bq = _q_of(imp, node, 1, 2), _q_of(imp, node, 4, 5)
    yq = _q_of(imp, node, 7, 8)
    b = imp.const(node.input[3], node, "weight")
    w_ck = b.T if a.get("transB", 0) else b
    bias = imp.opt_const(node, 6)
    emit_int_dense(imp, node, node.output[0], node.input[0], aq, w_ck, bq, bias, yq)


# ---------------------------------------------------------------- elementwise

@handles("Add")
def _add(imp: _Importer, node) -> None:
    if _pointwise(imp, node):
        return
    a, b = node.input
    out = node.output[0]
    if a in imp.consts or b in imp.consts:
        x = b if a in imp.consts else a
        if _foldable(imp, x, imp.consts[a if x == b else b]):
            _fold_affine(imp, node, "add")               # into the bias of the conv/dense before it
        else:
            imp.emit(out, Op.ADD, [x, _const_tensor(imp, node, imp.consts[a if x == b else b])])
        return
    for x, c in ((a, b), (b, a)):                        # DQ(x) + DQ(an integer constant): QLinearAdd
        if c in imp.dq_const and x in imp.dq:
            imp.pending[out] = ("add", (imp.dq[x], _int_const_tensor(imp, node, *imp.dq_const[c]), ("none", 0, 0)))
            return
    da, db = _dq_input(imp, a), _dq_input(imp, b)
    if da is not None and db is not None:
        imp.pending[out] = ("add", (da[0], db[0], ("none", 0, 0)))
        return
    imp.emit(out, Op.ADD, [a, b])


def _foldable(imp: _Importer, x: str, c) -> bool:
    """Whether constant c can join the bias of x's producer: a float conv/dense that only this op reads,
    c one value or one per output channel."""
    prod = imp.b.nodes.get(imp.names.get(x, ""), None)
    return (prod is not None and prod.op in (Op.CONV2D, Op.DENSE) and prod.out.dtype is DType.FLOAT32
            and imp.consumers.get(x, 0) == 1 and prod.attrs.get("act", "none") == "none"
            and np.size(c) in (1, prod.params["w"].shape[0])
            and (np.ndim(c) <= 1 or prod.op is Op.CONV2D or np.shape(c)[-1] == np.size(c)))


def _const_tensor(imp: _Importer, node, value) -> str:
    """A float constant operand as a CONST node (its ONNX name)."""
    name = f"{node.output[0]}__const"
    imp.emit(name, Op.CONST, [], {}, {"value": np.asarray(value, np.float32)})
    return name


def _int_const_tensor(imp: _Importer, node, value, q: _Q) -> str:
    """An integer constant behind a DequantizeLinear as a CONST node with its quantization."""
    name = f"{node.output[0]}__const"
    v = np.asarray(value).astype(np.int64) - (128 if q.unsigned else 0)
    imp.emit(name, Op.CONST, [], {}, {"value": v.astype(np.int8)}, DType.INT8, q.activation())
    imp.qinfo[name] = q
    return name


@handles("QLinearAdd")
def _qlinearadd(imp: _Importer, node) -> None:
    yq = _q_of(imp, node, 6, 7)
    a, b = node.input[0], node.input[3]
    if a in imp.consts:                                  # a constant operand (a MatMul's bias): second
        a, b = b, _int_const_tensor(imp, node, imp.consts[a], _q_of(imp, node, 1, 2))
    elif b in imp.consts:
        b = _int_const_tensor(imp, node, imp.consts[b], _q_of(imp, node, 4, 5))
    emit_int_add(imp, node.output[0], a, b, yq)


@handles("Div", "Sub")
def _div_sub(imp: _Importer, node) -> None:
    if _pointwise(imp, node):
        return
    a, b = node.input
    if b in imp.consts and not _foldable(imp, a, imp.consts[b]) and _is_float(imp, a):
        c = np.asarray(imp.consts[b], np.float32)         # by a constant vector: a product or a sum
        if node.op_type == "Div":
            imp.emit(node.output[0], Op.MUL, [a, _const_tensor(imp, node, np.float32(1) / c)])
        else:
            imp.emit(node.output[0], Op.ADD, [a, _const_tensor(imp, node, -c)])
        return
    _fold_affine(imp, node, node.op_type.lower())


@handles("Mul")
def _mul(imp: _Importer, node) -> None:
    """By a constant: folded into the conv/dense before it. Of two tensors: MUL, the second operand of the
    first's shape or one value per channel (squeeze-and-excite); x · Sigmoid(x) in one QDQ group is SiLU."""
    if _pointwise(imp, node):
        return
    a, b = node.input
    out = node.output[0]
    if a in imp.consts or b in imp.consts:
        x, c = (b, imp.consts[a]) if a in imp.consts else (a, imp.consts[b])
        if _is_float(imp, x) and not _foldable(imp, x, c):  # by a constant vector (LayerNorm's gamma, ...)
            imp.emit(out, Op.MUL, [x, _const_tensor(imp, node, c)])
            return
    if a in imp.consts or b in imp.consts or a in imp.dq_const or b in imp.dq_const:
        _fold_affine(imp, node, "mul")
        return
    for x, s in ((a, b), (b, a)):                       # DQ(x) · Sigmoid(DQ(x)) before one QuantizeLinear
        kind, args = imp.pending.get(s, ("", ()))
        if kind == "lut" and args[1] == "sigmoid" and x in imp.dq and imp.dq[x] == args[0]:
            imp.pending.pop(s)
            imp.pending[out] = ("lut", (args[0], "silu", {}))
            return
    da, db = _dq_input(imp, a), _dq_input(imp, b)
    if (da is None) != (db is None):
        raise imp.error("Mul of a dequantized tensor by a float one is not supported", node)
    src_a, src_b = _larger_first(imp, *((da[0], db[0]) if da is not None else (a, b)))
    if da is not None:
        imp.pending[out] = ("mul", (src_a, src_b))
        return
    imp.emit(out, Op.MUL, [src_a, src_b])


def _larger_first(imp: _Importer, a: str, b: str) -> tuple[str, str]:
    """The operands of a product, the one with a value per channel ([N, C, 1, 1]) second."""
    sa, sb = imp.shape(a), imp.shape(b)
    if len(sb) == len(sa) and sb != sa and all(d == 1 for d in sa[2:]):
        return b, a
    return a, b


def _finish_mul(imp, out, yq, a, b):
    types = {imp.qinfo[a].ort_u8, imp.qinfo[b].ort_u8, yq.ort_u8}
    # one type: QLinearMul in that type; mixed: onnxruntime multiplies in float (exact to emulate)
    arith = ("u8" if yq.ort_u8 else "s8") if len(types) == 1 else "float"
    imp.emit(out, Op.MUL, [a, b], {"arith": arith}, None, DType.INT8, yq.activation())
    imp.qinfo[out] = yq


FINISH["mul"] = _finish_mul


def _finish_bmm(imp, out, yq, a, b, tb=False):
    xq, wq, q = imp.qinfo[a].activation(), imp.qinfo[b].activation(), yq.activation()
    m = np.array([bmm_multiplier(xq.scale[0], wq.scale[0], q.scale[0])], np.float32)
    imp.emit(out, Op.BMM, [a, b], {"transpose_b": tb}, {"requant": m}, DType.INT8, q)
    imp.qinfo[out] = yq


FINISH["bmm"] = _finish_bmm


# ONNX op -> (Sieve's element-wise function, its attributes with ONNX's defaults)
UNARY = {"Sigmoid": ("sigmoid", {}), "Tanh": ("tanh", {}), "HardSigmoid": ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
         "HardSwish": ("hard_swish", {}), "LeakyRelu": ("leaky_relu", {"alpha": 0.01}), "Gelu": ("gelu", {}),
         "Erf": ("erf", {}), "Exp": ("exp", {}), "Sqrt": ("sqrt", {}), "Neg": ("neg", {}), "Abs": ("abs", {}),
         "Reciprocal": ("reciprocal", {}), "Softplus": ("softplus", {})}

# the binary ops that join a pointwise chain (with a scalar constant, or two chains of one tensor)
BINARY_TOKENS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow", "Min": "min", "Max": "max"}


def _num(v) -> str:
    """A float32 constant as a program token (exact: float32 -> Python float -> float32)."""
    return repr(float(np.float32(np.ravel(v)[0])))


def _expr_of(imp: _Importer, t: str) -> tuple[str, str]:
    """(source tensor, program) of a float tensor: its chain, or itself (a dequantized tensor: its integers,
    the chain then closed by a QuantizeLinear into one integer table)."""
    if t in imp.exprs:
        return imp.exprs[t]
    return (imp.dq[t], "x") if t in imp.dq else (t, "x")


def _is_float(imp: _Importer, t: str) -> bool:
    """Whether t is a float activation (not a constant, not quantized data)."""
    if t in imp.exprs:
        return True
    if t in imp.consts or t in imp.dq or t in imp.dq_const or t in imp.pending or t in imp.raw_inputs:
        return False
    base = imp.views[t].base if t in imp.views else imp.names.get(t)
    return base is not None and imp.b.nodes[base].out.dtype is DType.FLOAT32


def _pointwise(imp: _Importer, node) -> bool:
    """x op c with a scalar constant c, or f(x) op g(x), on float tensors: the chain goes on (one table at
    its end). A constant that the conv or dense layer before can take into its weights is left to it."""
    a, b = node.input[:2]
    tok = BINARY_TOKENS[node.op_type]
    ca, cb = (imp.consts.get(t) if t in imp.consts and np.size(imp.consts[t]) == 1 else None for t in (a, b))
    if (ca is None and not (_is_float(imp, a) or a in imp.dq)) or \
            (cb is None and not (_is_float(imp, b) or b in imp.dq)) or (ca is not None and cb is not None):
        return False
    if ca is None and cb is None:
        (sa, pa), (sb, pb) = _expr_of(imp, a), _expr_of(imp, b)
        if sa != sb:
            return False
        imp.exprs[node.output[0]] = (sa, f"{pa} {pb} {tok}")
        return True
    t, c = (b, ca) if ca is not None else (a, cb)
    src, p = _expr_of(imp, t)
    if p == "x" and tok in ("add", "sub", "mul", "div") and (ca is None or tok in ("add", "mul")) \
            and _foldable(imp, t, c):
        return False
    imp.exprs[node.output[0]] = (src, f"{_num(c)} {p} {tok}" if ca is not None else f"{p} {_num(c)} {tok}")
    return True


@handles("Pow", "Min", "Max")
def _pow_min_max(imp: _Importer, node) -> None:
    if len(node.input) != 2 or not _pointwise(imp, node):
        raise imp.error(f"{node.op_type} is supported on one float tensor and scalar constants only", node)


@handles(*UNARY)
def _unary(imp: _Importer, node) -> None:
    """An element-wise function of one tensor: a 256-entry table on the accelerator."""
    fn, defaults = UNARY[node.op_type]
    a = imp.attrs(node)
    params = {k: float(a.get(k, v)) for k, v in defaults.items()}
    x, out = node.input[0], node.output[0]
    if x in imp.dq and fn in FUNCTIONS:                # onnxruntime's table (QLinearSigmoid, ...) or float op
        imp.pending[out] = ("lut", (imp.dq[x], fn, params))
        return
    if node.op_type == "Gelu" and a.get("approximate", "none") == "tanh":
        fn = "gelu_tanh"
    src, program = _expr_of(imp, x)
    token = ":".join([fn] + [_num(params[k]) for k in defaults])
    imp.exprs[out] = (src, f"{program} {token}")


def _finish_lut(imp, out, yq, src, fn, params):
    xq, q = imp.qinfo[src].activation(), yq.activation()
    table = build_table(fn, params, xq.scale[0], xq.zp, q.scale[0], q.zp)
    imp.emit(out, Op.LUT, [src], {"fn": fn, **params}, {"table": table}, DType.INT8, q)
    imp.qinfo[out] = yq


FINISH["lut"] = _finish_lut


@handles("QLinearSigmoid", "QLinearLeakyRelu")
def _qlinear_unary(imp: _Importer, node) -> None:
    """onnxruntime's table-based QOperator forms (com.microsoft): X, X_scale, X_zp, Y_scale, Y_zp."""
    fn = "sigmoid" if node.op_type == "QLinearSigmoid" else "leaky_relu"
    params = {"alpha": float(imp.attrs(node).get("alpha", 0.01))} if fn == "leaky_relu" else {}
    _int_input(imp, node.input[0], _q_of(imp, node, 1, 2))
    _finish_lut(imp, node.output[0], _q_of(imp, node, 3, 4), node.input[0], fn, params)


@handles("QLinearMul")
def _qlinearmul(imp: _Importer, node) -> None:
    """com.microsoft QLinearMul: A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp; in the model's type."""
    yq = _q_of(imp, node, 6, 7)
    a, b = _larger_first(imp, node.input[0], node.input[3])
    imp.emit(node.output[0], Op.MUL, [a, b], {"arith": "u8" if yq.unsigned else "s8"}, None, DType.INT8,
             yq.activation())
    imp.qinfo[node.output[0]] = yq


def _fold_affine(imp: _Importer, node, kind: str) -> None:
    """x op constant, folded into the conv/dense that produces x (scale and/or shift per channel)."""
    a, b = node.input
    x, c = (a, imp.consts.get(b)) if b in imp.consts else (b, imp.consts.get(a))
    if c is None or (kind in ("div", "sub") and x != a):
        raise imp.error(f"{node.op_type} of two tensors, or of a constant by a tensor, is not supported", node)
    prod = imp.b.nodes.get(imp.names.get(x, ""), None)
    if prod is None or prod.op not in (Op.CONV2D, Op.DENSE) or prod.out.dtype is not DType.FLOAT32 \
            or imp.consumers.get(x, 0) != 1 or prod.attrs.get("act", "none") != "none":
        raise imp.error(f"{node.op_type} by a constant is supported only right after a float conv or "
                        "dense layer (it is folded into its weights)", node)
    k = prod.params["w"].shape[0]                       # output channels / features
    per_k = np.asarray(c, np.float64).reshape(-1)
    if per_k.size not in (1, k):
        raise imp.error(f"constant of shape {list(np.shape(c))} does not broadcast per channel", node)
    per_k = np.broadcast_to(per_k, (k,))
    bias = prod.params["b"].astype(np.float64)
    if kind in ("add", "sub"):                          # the bias alone moves
        params = {"w": prod.params["w"], "b": (bias + (per_k if kind == "add" else -per_k)).astype(np.float32)}
    else:
        scale = per_k if kind == "mul" else 1.0 / per_k
        w = prod.params["w"].astype(np.float64) * scale.reshape((k,) + (1,) * (prod.params["w"].ndim - 1))
        params = {"w": w.astype(np.float32), "b": (bias * scale).astype(np.float32)}
        prod = _off_grid(imp, prod)
    imp.b.nodes[prod.name] = prod.evolve(params={**prod.params, **params})
    imp.names[node.output[0]] = prod.name


def _off_grid(imp: _Importer, prod):
    """A layer whose weights a per-channel scale is folded into: off the int4 grid it was imported on
    (a negative scale takes -8 out of int4), so its weights are quantized as a float layer's."""
    if prod.attrs.get("w_bits") != 4:
        return prod
    log.warning("%s: '%s': a scale folded into its int4 weights takes them off their grid; they are "
                "quantized again like float weights (to int8, or to int4 with --weights int4)", imp.source, prod.name)
    attrs = {k: v for k, v in prod.attrs.items() if k not in ("w_bits", "w_group")}
    params = {k: v for k, v in prod.params.items() if k not in ("w_step", "w_mult")}
    return prod.evolve(attrs=attrs, params=params)


def _float_const(imp: _Importer, node, name: str, what: str) -> np.ndarray:
    """A float constant, or a DequantizeLinear of one, computed as onnxruntime folds it:
    float32(q - zero_point) * scale (per tensor, or per channel along the tensor's only axis)."""
    if name in imp.dq_const:
        q, qp = imp.dq_const[name]
        zp = (qp.zp if qp.zp.size > 1 else qp.zp[0])
        return ((q.astype(np.int64) - zp).astype(np.float32) * (qp.scale if qp.scale.size > 1 else qp.scale[0]))
    return imp.const(name, node, what).astype(np.float32)


def _batchnorm_params(imp: _Importer, node, params, x: str) -> None:
    """Scale, shift, mean and variance: finite vectors with one value per channel, variance + epsilon > 0."""
    c = imp.shape(x)[1] if len(imp.shape(x)) > 1 else 0
    eps = float(imp.attrs(node).get("epsilon", 1e-5))
    for what, v in zip(("scale", "bias", "mean", "variance"), params):
        v = np.asarray(v, np.float64)
        if v.shape != (c,) or not np.isfinite(v).all():
            raise imp.error(f"its {what} is not {c} finite values (shape {list(v.shape)})", node)
    if not (np.asarray(params[3], np.float64) + eps > 0).all() or not math.isfinite(eps):
        raise imp.error("a variance plus epsilon is not positive", node)


@handles("BatchNormalization")
def _batchnorm(imp: _Importer, node) -> None:
    x = node.input[0]
    eps = imp.attrs(node).get("epsilon", 1e-5)
    if x in imp.dq:                                   # a batch norm left between DQ and Q: runs in float
        src = imp.dq[x]
        gamma, beta, mean, var = (_float_const(imp, node, n, "batch-norm parameter") for n in node.input[1:5])
        _batchnorm_params(imp, node, (gamma, beta, mean, var), src)
        # onnxruntime's arithmetic, float32 throughout: 1 / sqrt(var + eps), times gamma; beta - mean * that
        inv = np.float32(1) / np.sqrt(var + np.float32(eps))
        scale = (inv * gamma).astype(np.float32)
        shift = (beta - mean * scale).astype(np.float32)
        imp.pending[node.output[0]] = ("affine", (src, scale, shift, ("none", 0, 0)))
        return
    scale, shift, mean, var = (imp.const(n, node, "batch-norm parameter") for n in node.input[1:5])
    _batchnorm_params(imp, node, (scale, shift, mean, var), x)
    s = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    t = shift - mean * s
    prod = imp.b.nodes.get(imp.names.get(x, ""))
    if prod is not None and prod.op is Op.CONV2D and imp.consumers.get(x, 0) == 1 \
            and prod.out.dtype is DType.FLOAT32:
        w = prod.params["w"].astype(np.float64) * s[:, None, None, None]
        b = prod.params["b"].astype(np.float64) * s + t
        prod = _off_grid(imp, prod)
        imp.b.nodes[prod.name] = prod.evolve(params={**prod.params, "w": w.astype(np.float32),
                                                     "b": b.astype(np.float32)})
        imp.names[node.output[0]] = prod.name
        return
    c = imp.shape(x)[1]                       # a standalone batch norm: a depthwise 1x1 conv
    imp.emit(node.output[0], Op.CONV2D, [x], {"out_channels": c, "kernel": 1, "groups": c},
             {"w": s.reshape(c, 1, 1, 1), "b": t})


@handles("Relu")
def _relu(imp: _Importer, node) -> None:
    x = node.input[0]
    if _attach_act(imp, node, x, ("relu", 0, 0)):
        return
    if x in imp.exprs:
        src, p = imp.exprs[x]
        imp.exprs[node.output[0]] = (src, f"{p} relu")
        return
    if x in imp.dq:
        src, q = _dq_input(imp, x)
        imp.pending[node.output[0]] = ("same", (Op.RELU, src, {}))
        return
    dtype, quant = _same_quant(imp, node.output[0], x)
    imp.emit(node.output[0], Op.RELU, [x], None, None, dtype, quant)


@handles("Clip")
def _clip(imp: _Importer, node) -> None:
    a = imp.attrs(node)
    lo = imp.opt_const(node, 1)
    hi = imp.opt_const(node, 2)
    lo = float(lo) if lo is not None else float(a.get("min", -np.inf))
    hi = float(hi) if hi is not None else float(a.get("max", np.inf))
    x = node.input[0]
    if _attach_act(imp, node, x, ("clip", lo, hi)):
        return
    if x in imp.exprs or (_is_float(imp, x) and not (lo == 0 and hi == np.inf)
                          and not (imp.names.get(x) in imp.b.nodes and imp.consumers.get(x, 0) == 1
                                   and imp.b.nodes[imp.names[x]].op in (Op.CONV2D, Op.DENSE, Op.ADD))):
        src, p = _expr_of(imp, x)
        imp.exprs[node.output[0]] = (src, p + (f" {_num(lo)} max" if lo > -np.inf else "")
                                     + (f" {_num(hi)} min" if hi < np.inf else ""))
        return
    prod = imp.b.nodes.get(imp.names.get(x, ""))
    if prod is not None and prod.op in (Op.CONV2D, Op.DENSE, Op.ADD) and prod.out.dtype is DType.FLOAT32 \
            and imp.consumers.get(x, 0) == 1 and prod.attrs.get("act", "none") == "none":
        imp.b.nodes[prod.name] = prod.with_attrs(act="clip", clip_min=lo, clip_max=hi)
        imp.names[node.output[0]] = prod.name
        return
    if lo == 0 and hi == np.inf:
        _relu(imp, node)
        return
    raise imp.error("Clip is supported only right after a conv, dense or add layer (it is fused)", node)


# ---------------------------------------------------------------- pooling and shapes

def _nearest_source(out: int, size: int, scale: float, coord: str, rounding: str) -> np.ndarray:
    """The input index each output index reads under ONNX Resize's nearest mode."""
    x = np.arange(out, dtype=np.float64)
    if coord == "asymmetric":
        orig = x / scale
    elif coord in ("half_pixel", "pytorch_half_pixel"):
        orig = (x + 0.5) / scale - 0.5 if (coord == "half_pixel" or out > 1) else np.zeros(out)
    elif coord == "align_corners":
        orig = x * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    elif coord == "tf_half_pixel_for_nn":
        orig = (x + 0.5) / scale
    else:
        return np.full(out, -1)
    frac = orig - np.floor(orig)
    idx = {"floor": np.floor(orig), "ceil": np.ceil(orig),
           "round_prefer_floor": np.where(frac == 0.5, np.floor(orig), np.round(orig)),
           "round_prefer_ceil": np.where(frac == 0.5, np.ceil(orig), np.round(orig))}.get(rounding)
    return np.full(out, -1) if idx is None else np.clip(idx, 0, size - 1).astype(np.int64)


@handles("Resize", "Upsample")
def _resize(imp: _Importer, node) -> None:
    """Upsampling by integer factors over H and W: nearest (each pixel repeated) or linear (bilinear, integer
    weights on a 10-bit grid per axis, under the coordinate modes PyTorch exports and asymmetric)."""
    a = imp.attrs(node)
    x, out = node.input[0], node.output[0]
    src = imp.dq[x] if x in imp.dq else x
    n, c, h, w = imp.shape(src)
    mode = a.get("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    mode = "linear" if mode == "bilinear" else mode           # Upsample's older name
    if mode not in ("nearest", "linear"):
        raise imp.error(f"Resize mode '{mode}' is not supported (nearest and linear)", node)
    scales = imp.opt_const(node, 1 if node.op_type == "Upsample" else 2)
    sizes = imp.opt_const(node, 3) if node.op_type == "Resize" else None
    if sizes is not None and np.size(sizes):
        out_shape = [int(v) for v in np.asarray(sizes).ravel()]
    elif scales is not None and np.size(scales):
        if not (np.isfinite(np.asarray(scales, np.float64)) & (np.asarray(scales, np.float64) > 0)).all():
            raise imp.error(f"Resize scales {np.asarray(scales).ravel().tolist()} are not positive numbers", node)
        out_shape = [int(np.floor(d * float(s))) for d, s in zip((n, c, h, w), np.asarray(scales).ravel())]
    else:
        raise imp.error("Resize needs constant scales or sizes", node)
    if out_shape[:2] != [n, c] or out_shape[2] % h or out_shape[3] % w:
        raise imp.error(f"Resize from {[n, c, h, w]} to {out_shape} is not an integer upsampling of H and W", node)
    sh, sw = out_shape[2] // h, out_shape[3] // w
    if sh == sw == 1:                                   # the same size: onnxruntime copies
        if x in imp.dq:
            imp.dq[out] = imp.dq[x]
        else:
            imp.alias(out, x)
        return
    coord = a.get("coordinate_transformation_mode", "half_pixel" if node.op_type == "Resize" else "asymmetric")
    rounding = a.get("nearest_mode", "round_prefer_floor")
    coord, rounding = (v.decode() if isinstance(v, bytes) else v for v in (coord, rounding))
    if mode == "linear":
        from sieve.ir.registry import RESIZE_COORDS
        if coord not in RESIZE_COORDS:
            raise imp.error(f"linear Resize with coordinate_transformation_mode={coord} is not supported "
                            f"({', '.join(RESIZE_COORDS)})", node)
        attrs = {"scale": (sh, sw), "mode": "linear", "coord": coord}
        if x in imp.dq:
            imp.pending[out] = ("same", (Op.RESIZE, imp.dq[x], attrs))
            return
        dtype, quant = _same_quant(imp, out, x)
        imp.emit(out, Op.RESIZE, [x], attrs, None, dtype, quant)
        return
    for size, s in ((h, sh), (w, sw)):
        if not np.array_equal(_nearest_source(size * s, size, s, coord, rounding), np.arange(size * s) // s):
            raise imp.error(f"Resize with coordinate_transformation_mode={coord}, nearest_mode={rounding} does "
                            "not repeat each pixel; not supported", node)
    attrs = {"scale": (sh, sw)}
    if x in imp.dq:
        imp.pending[out] = ("same", (Op.RESIZE, imp.dq[x], attrs))
        return
    dtype, quant = _same_quant(imp, out, x)
    imp.emit(out, Op.RESIZE, [x], attrs, None, dtype, quant)


@handles("MaxPool")
def _maxpool(imp: _Importer, node) -> None:
    a = imp.attrs(node)
    x, out = node.input[0], node.output[0]
    if a.get("ceil_mode", 0):
        raise imp.error("ceil_mode=1 is not supported", node)
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise imp.error("dilated max pooling is not supported", node)
    if imp.pending.get(x, ("",))[0] == "affine":     # a float max pool after a float batch norm
        src = imp.pending[x][1][0]
        ca = _conv_attrs(imp, node, imp.shape(src), a["kernel_shape"])
        attrs = {"kernel": ca["kernel"], "stride": ca["stride"], "pad": ca["pad"]}
        imp.pending[out] = ("affine_pool", (x, imp.pending.pop(x)[1], attrs))
        return
    ca = _conv_attrs(imp, node, imp.shape(_dq_input(imp, x)[0] if x in imp.dq else x), a["kernel_shape"])
    attrs = {"kernel": ca["kernel"], "stride": ca["stride"], "pad": ca["pad"]}
    if x in imp.dq:
        imp.pending[out] = ("same", (Op.MAXPOOL, imp.dq[x], attrs))
        return
    dtype, quant = _same_quant(imp, out, x)
    imp.emit(out, Op.MAXPOOL, [x], attrs, None, dtype, quant)


@handles("GlobalAveragePool", "AveragePool")
def _avgpool(imp: _Importer, node) -> None:
    x, out = node.input[0], node.output[0]
    src = imp.dq[x] if x in imp.dq else x
    shape = imp.shape(src)
    if node.op_type == "AveragePool":
        a = imp.attrs(node)
        if tuple(a["kernel_shape"]) != tuple(shape[2:]) or any(a.get("pads", [0] * 4)):
            if x in imp.dq:
                raise imp.error("a quantized windowed AveragePool is not supported (only global)", node)
            if a.get("ceil_mode", 0) or (any(a.get("pads", [0] * 4)) and not a.get("count_include_pad", 0)):
                raise imp.error("AveragePool with ceil_mode, or padding not counted (count_include_pad=0), "
                                "is not supported", node)
            ca = _conv_attrs(imp, node, shape, a["kernel_shape"])
            imp.emit(out, Op.AVGPOOL, [x], {"kernel": ca["kernel"], "stride": ca["stride"], "pad": ca["pad"]})
            return
    if x in imp.dq:
        imp.pending[out] = ("gap", (src, imp.qinfo[src]))
        return
    imp.emit(out, Op.GLOBALAVGPOOL, [x])


@handles("ReduceMean")
def _reducemean(imp: _Importer, node) -> None:
    """The mean over the tokens of [B, T, D] (a ViT's or a sentence encoder's pooling): a global average
    pool of the tokens seen as a [B, D, T, 1] image (stored [B, T, 1, D] channels-last: no data moves)."""
    x, out = node.input[0], node.output[0]
    src = imp.dq.get(x, x)
    shape = imp.shape(src)
    a = imp.attrs(node)
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = imp.const(node.input[1], node, "axes")
    axes = sorted(int(v) % len(shape) for v in np.ravel(axes)) if axes is not None else None
    if len(shape) != 3 or axes != [1]:
        raise imp.error(f"ReduceMean over axes {axes} of shape {list(shape)} is not supported (the mean over "
                        "the tokens of [batch, tokens, features] only)", node)
    if x in imp.dq:
        raise imp.error("a quantized ReduceMean is not supported (float models only)", node)
    b, t, d = shape
    image, pooled = f"{out}__tokens", f"{out}__pooled"
    imp.set_view(image, imp.view_of(src).permute((0, 2, 1)).reshape((b, d, t, 1)), src)
    name = imp.emit(pooled, Op.GLOBALAVGPOOL, [image])
    keep = a.get("keepdims", 1)
    imp.set_view(out, View(name, (b, 1, d) if keep else (b, d), row_major((b, 1, d) if keep else (b, d))), pooled)


@handles("QLinearGlobalAveragePool")
def _qlineargap(imp: _Importer, node) -> None:
    if imp.attrs(node).get("channels_last", 0):
        raise imp.error("channels_last=1 is not supported", node)
    emit_int_gap(imp, node.output[0], node.input[0], _q_of(imp, node, 1, 2), _q_of(imp, node, 3, 4))


def _view(imp: _Importer, node, make, out: str | None = None) -> None:
    """A data-movement op as a view of its input (no data moves until an op reads it): ``make`` maps the
    input's view to the output's, or returns None when that needs the input copied in order first."""
    x = node.input[0]
    src = imp.dq.get(x, x)
    v = make(imp.view_of(src))
    if v is None:
        imp.ir(src)                                   # copied in order, then viewed again
        v = make(imp.view_of(src))
    imp.set_view(out or node.output[0], v, src, dequantized=x in imp.dq)


def _reshape_to(imp: _Importer, node, target) -> None:
    x, out = node.input[0], node.output[0]
    src = imp.dq.get(x, x)
    if int(np.prod(target)) != int(np.prod(imp.shape(src))):
        raise imp.error(f"cannot reshape {list(imp.shape(src))} to {list(target)}", node)
    if src not in imp.views and len(imp.shape(src)) == 4 and len(target) == 2 and target[0] == imp.shape(src)[0]:
        # an image flattened to [batch, features]: a view of the channels-last tensor (the dense layer
        # that reads it reduces in memory order, its weights reordered to match)
        dtype, quant = _same_quant(imp, out, src)
        imp.emit(out, Op.FLATTEN, [src], None, None, dtype, quant)
        if x in imp.dq:                               # still a dequantized view, now of the flat tensor
            imp.dq[out] = out
        return
    _view(imp, node, lambda v: v.reshape(tuple(target)))


@handles("Flatten")
def _flatten(imp: _Importer, node) -> None:
    x = node.input[0]
    shape = imp.shape(imp.dq.get(x, x))
    axis = imp.attrs(node).get("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    _reshape_to(imp, node, (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))


@handles("Reshape")
def _reshape(imp: _Importer, node) -> None:
    x = node.input[0]
    shape = imp.shape(imp.dq.get(x, x))
    target = [int(s) for s in imp.const(node.input[1], node, "shape")]
    allowzero = imp.attrs(node).get("allowzero", 0)
    target = [shape[i] if s == 0 and not allowzero else s for i, s in enumerate(target)]
    if -1 in target:
        known = int(np.prod([s for s in target if s != -1]))
        target[target.index(-1)] = int(np.prod(shape)) // max(known, 1)
    _reshape_to(imp, node, tuple(target))


def _axes(imp: _Importer, node, rank: int) -> list[int] | None:
    """The axes of Squeeze/Unsqueeze: an attribute before opset 13, a constant input after."""
    axes = imp.attrs(node).get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = imp.const(node.input[1], node, "axes")
    return None if axes is None else [int(a) + rank if int(a) < 0 else int(a) for a in np.ravel(axes)]


@handles("Unsqueeze")
def _unsqueeze(imp: _Importer, node) -> None:
    x = node.input[0]
    shape = list(imp.shape(imp.dq.get(x, x)))
    axes = sorted(_axes(imp, node, len(shape) + len(_axes(imp, node, 0) or [])) or [])
    for a in axes:
        shape.insert(a, 1)
    _view(imp, node, lambda v: v.reshape(tuple(shape)))


@handles("Squeeze")
def _squeeze(imp: _Importer, node) -> None:
    x = node.input[0]
    shape = imp.shape(imp.dq.get(x, x))
    axes = _axes(imp, node, len(shape))
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else axes
    if any(shape[a] != 1 for a in axes):
        raise imp.error(f"cannot squeeze axes {axes} of shape {list(shape)}", node)
    _view(imp, node, lambda v: v.reshape(tuple(d for i, d in enumerate(shape) if i not in axes)))


@handles("Identity", "Dropout")
def _identity(imp: _Importer, node) -> None:
    imp.alias(node.output[0], node.input[0])


@handles("Transpose")
def _transpose(imp: _Importer, node) -> None:
    """A view with its axes permuted: a product folds a swap of the last two axes into its second operand;
    other orders are copied (by strided loads) where an op reads them (attention's heads)."""
    x = node.input[0]
    rank = len(imp.shape(imp.dq.get(x, x)))
    perm = imp.attrs(node).get("perm")
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise imp.error(f"perm {perm} is not a permutation of {rank} axes", node)
    _view(imp, node, lambda v: v.permute(perm))


def _select(v, axis: int, start: int, count: int, step: int = 1, keep: bool = True):
    """A view of ``count`` indices from ``start`` by ``step`` along ``axis`` (the axis dropped if not kept)."""
    shape, strides = list(v.shape), list(v.strides)
    offset = v.offset + start * strides[axis]
    shape[axis], strides[axis] = count, strides[axis] * step
    if not keep:
        del shape[axis], strides[axis]
    return type(v)(v.base, tuple(shape), tuple(strides), offset)


def _affine_indices(idx: np.ndarray) -> tuple[int, tuple[int, ...]] | None:
    """(first, steps per axis) when idx[i0, i1, ...] = first + Σ i_k · step_k with steps >= 0, else None."""
    first = int(idx.flat[0])
    steps = tuple(int(idx[tuple(1 if j == k else 0 for j in range(idx.ndim))]) - first if idx.shape[k] > 1 else 0
                  for k in range(idx.ndim))
    grid = first + sum(np.arange(n).reshape([-1 if j == k else 1 for j in range(idx.ndim)]) * st
                       for k, (n, st) in enumerate(zip(idx.shape, steps)))
    if min(steps, default=0) < 0 or not np.array_equal(np.broadcast_to(grid, idx.shape), idx):
        return None
    return first, steps


@handles("Gather")
def _gather(imp: _Importer, node) -> None:
    """Of an activation by constant indices that step evenly along each of their axes (one index: a slice
    of the tensor, as PyTorch's MultiheadAttention picks q, k and v; a grid of them: a view, as Sieve
    exports one): a view."""
    x = node.input[0]
    shape = imp.shape(imp.dq.get(x, x))
    axis = imp.attrs(node).get("axis", 0)
    axis = axis + len(shape) if axis < 0 else axis
    idx = np.asarray(imp.const(node.input[1], node, "indices")).astype(np.int64)
    idx = np.where(idx < 0, idx + shape[axis], idx)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= shape[axis]:
        raise imp.error(f"indices {idx.tolist()} are out of range for axis {axis} of size {shape[axis]}", node)
    affine = _affine_indices(idx) if idx.ndim else (int(idx), ())
    if affine is None:
        raise imp.error("Gather of an activation needs indices that step evenly along each axis", node,
                        "a gather of token embeddings by id is a host step: feed the embedded sequence")
    first, steps = affine

    def make(v):
        shape_, strides = list(v.shape), list(v.strides)
        return type(v)(v.base, tuple(shape_[:axis]) + idx.shape + tuple(shape_[axis + 1:]),
                       tuple(strides[:axis]) + tuple(st * strides[axis] for st in steps) + tuple(strides[axis + 1:]),
                       v.offset + first * strides[axis])
    _view(imp, node, make)


@handles("Slice")
def _slice(imp: _Importer, node) -> None:
    x = node.input[0]
    shape = imp.shape(imp.dq.get(x, x))
    starts = imp.const(node.input[1], node, "starts")
    ends = imp.const(node.input[2], node, "ends")
    axes = imp.opt_const(node, 3)
    steps = imp.opt_const(node, 4)
    axes = range(len(starts)) if axes is None else [int(a) + len(shape) if a < 0 else int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]

    def make(v):
        for a, b, e, st in zip(axes, starts, ends, steps):
            if st < 1:
                raise imp.error("Slice of an activation with a negative or zero step is not supported", node)
            d = shape[a]
            b, e = (int(b) + d if b < 0 else int(b)), (int(e) + d if e < 0 else min(int(e), d))
            b, e = min(max(b, 0), d), min(max(e, 0), d)
            count = max(0, -(-(e - b) // st))
            if count == 0:
                raise imp.error(f"the slice of axis {a} is empty", node)
            v = _select(v, a, b, count, st)
        return v
    _view(imp, node, make)


@handles("Split")
def _split(imp: _Importer, node) -> None:
    x = node.input[0]
    shape = imp.shape(imp.dq.get(x, x))
    a = imp.attrs(node)
    axis = a.get("axis", 0)
    axis = axis + len(shape) if axis < 0 else axis
    sizes = a.get("split")
    if sizes is None and len(node.input) > 1 and node.input[1]:
        sizes = imp.const(node.input[1], node, "split")
    n = len(node.output)
    sizes = [int(v) for v in sizes] if sizes is not None else [-(-shape[axis] // n)] * n
    sizes[-1] = shape[axis] - sum(sizes[:-1])
    start = 0
    for out, size in zip(node.output, sizes):
        _view(imp, node, lambda v, s0=start, k=size: _select(v, axis, s0, k), out)
        start += size


@handles("LayerNormalization")
def _layernorm(imp: _Importer, node) -> None:
    """Over the last axis, gamma and beta constants: integer mean, variance and square root on the vector
    unit (numerics.integer.int_layernorm)."""
    a = imp.attrs(node)
    x, out = node.input[0], node.output[0]
    src = imp.dq.get(x, x)
    rank = len(imp.shape(src))
    if a.get("axis", -1) not in (-1, rank - 1):
        raise imp.error(f"LayerNormalization over axis {a.get('axis')} is not supported (the last axis only)", node)
    d = imp.shape(src)[-1]
    gamma = np.broadcast_to(_float_const(imp, node, node.input[1], "scale"), (d,)).astype(np.float32)
    beta = (np.broadcast_to(_float_const(imp, node, node.input[2], "bias"), (d,)).astype(np.float32)
            if len(node.input) > 2 and node.input[2] else np.zeros(d, np.float32))
    eps = float(a.get("epsilon", 1e-5))
    if len(node.output) > 1 and any(node.output[1:]):
        raise imp.error("LayerNormalization's mean and inverse deviation outputs are not supported", node)
    if x in imp.dq:
        imp.pending[out] = ("layernorm", (src, gamma, beta, eps))
        return
    imp.emit(out, Op.LAYERNORM, [x], {"eps": eps}, {"gamma": gamma, "beta": beta})


def _finish_layernorm(imp, out, yq, src, gamma, beta, eps):
    """DequantizeLinear -> LayerNormalization -> QuantizeLinear: Sieve's integer LayerNorm at the model's
    scales (onnxruntime computes it in float: the two can differ by a step)."""
    from sieve_numerics.integer import int_layernorm_params
    xq, q = imp.qinfo[src].activation(), yq.activation()
    g, b, eps_q, m = int_layernorm_params(gamma, beta, eps, imp.shape(src)[-1], xq.scale[0], q.scale[0])
    imp.emit(out, Op.LAYERNORM, [src], {"eps": eps, "eps_q": eps_q},
             {"gamma": g, "beta": b, "requant": np.array([m], np.float32)}, DType.INT8, q)
    imp.qinfo[out] = yq


FINISH["layernorm"] = _finish_layernorm


@handles("Softmax")
def _softmax(imp: _Importer, node) -> None:
    """Softmax over the last axis: at the end of a network, on the host in float after the accelerator;
    inside it (attention), in integers as onnxruntime's QLinearSoftmax computes it."""
    x, out = node.input[0], node.output[0]
    axis = imp.attrs(node).get("axis", -1)
    src = imp.dq.get(x, x)
    if axis not in (-1, len(imp.shape(src)) - 1):
        raise imp.error("softmax is supported over the last axis only", node)
    if x in imp.dq and imp.consumers.get(out, 0) >= 1 and out not in {o.name for o in imp.graph.output}:
        imp.pending[out] = ("qsoftmax", (src,))     # DQ -> Softmax -> Q: QLinearSoftmax
        return
    if imp.consumers.get(out, 0) == 1 and out in {o.name for o in imp.graph.output}:
        imp.emit(out, Op.SOFTMAX, [src], {"axis": -1})
        return
    if x in imp.dq:
        raise imp.error("a softmax on dequantized data must be quantized again (inside the network) or be a "
                        "graph output (on the host)", node)
    imp.emit(out, Op.QSOFTMAX, [x])                  # a float graph: quantized later


def _finish_qsoftmax(imp, out, yq, src):
    """onnxruntime's QLinearSoftmax arithmetic; in a model Sieve quantized, its own integer-only softmax
    (ONNX has no op for it: the file says Softmax, and onnxruntime's result can differ by a step)."""
    xq = imp.qinfo[src].activation()
    if imp.int8_io:
        arith, table = "int", int_softmax_table(xq.scale[0])
    else:
        arith, table = "u8" if yq.ort_u8 else "s8", qlinear_softmax_table(xq.scale[0], imp.shape(src)[-1])
    imp.emit(out, Op.QSOFTMAX, [src], {"arith": arith}, {"table": table}, DType.INT8, yq.activation())
    imp.qinfo[out] = yq


FINISH["qsoftmax"] = _finish_qsoftmax


@handles("QLinearSoftmax")
def _qlinearsoftmax(imp: _Importer, node) -> None:
    """com.microsoft QLinearSoftmax: X, X_scale, X_zero_point, Y_scale, Y_zero_point (last axis)."""
    x = node.input[0]
    _int_input(imp, x, _q_of(imp, node, 1, 2))
    axis = imp.attrs(node).get("axis", -1)
    if axis not in (-1, len(imp.shape(x)) - 1):
        raise imp.error("QLinearSoftmax is supported over the last axis only", node)
    yq = _q_of(imp, node, 3, 4)
    xq = imp.qinfo[x].activation()
    table = qlinear_softmax_table(xq.scale[0], imp.shape(x)[-1])
    imp.emit(node.output[0], Op.QSOFTMAX, [x], {"arith": "u8" if yq.unsigned else "s8"}, {"table": table},
             DType.INT8, yq.activation())
    imp.qinfo[node.output[0]] = yq


@handles("Concat")
def _concat(imp: _Importer, node) -> None:
    out, axis = node.output[0], imp.attrs(node).get("axis", 1)
    if axis != 1:
        raise imp.error(f"concatenation along axis {axis} is not supported (channels only)", node)
    views = [_dq_input(imp, i) for i in node.input]
    if all(v is not None for v in views):
        imp.pending[out] = ("concat", ([v[0] for v in views],))
        return
    imp.emit(out, Op.CONCAT, list(node.input), {"axis": 1})


def _finish_concat(imp, out, yq, srcs):
    imp.emit(out, Op.CONCAT, srcs, {"axis": 1}, None, DType.INT8, yq.activation())
    imp.qinfo[out] = yq


FINISH["concat"] = _finish_concat


@handles("QLinearConcat")
def _qlinearconcat(imp: _Importer, node) -> None:
    """com.microsoft QLinearConcat: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per input; each
    input requantized to the output's scale through float (the same table as onnxruntime's)."""
    if imp.attrs(node).get("axis", 1) != 1:
        raise imp.error("concatenation along another axis than channels is not supported", node)
    if (len(node.input) - 2) % 3:
        raise imp.error(f"QLinearConcat needs 2 + 3·n inputs, has {len(node.input)}", node)
    srcs = []
    for i in range(2, len(node.input), 3):
        _int_input(imp, node.input[i], _q_of(imp, node, i + 1, i + 2))
        srcs.append(node.input[i])
    _finish_concat(imp, node.output[0], _q_of(imp, node, 0, 1), srcs)


def _finish_affine(imp, out, yq, src, scale, shift, act):
    """A batch norm (and a Relu/Clip after it) between DequantizeLinear and QuantizeLinear: the float
    arithmetic, emulated exactly; the activation is a clamp of the result (quantization is monotone)."""
    imp.emit(out, Op.AFFINE, [src], _act_attrs(act), {"scale": scale, "shift": shift}, DType.INT8,
             yq.activation())
    imp.qinfo[out] = yq


FINISH["affine"] = _finish_affine


def _finish_affine_pool(imp, out, yq, affine_out, affine_args, attrs):
    """Batch norm [-> Relu] -> MaxPool in float, then QuantizeLinear: quantization is monotone, so it
    commutes with the maximum; the batch norm is quantized with the pool's scale, then pooled."""
    _finish_affine(imp, affine_out, yq, *affine_args)
    imp.emit(out, Op.MAXPOOL, [affine_out], attrs, None, DType.INT8, yq.activation())
    imp.qinfo[out] = yq


FINISH["affine_pool"] = _finish_affine_pool
