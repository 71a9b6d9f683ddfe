"""The scalar integer rules, specified once: the golden model (``ir``) and the simulator both call them.

Each function is the exact arithmetic of one step of the contract in docs/onnx.md: requantization,
onnxruntime's QLinearAdd sequence, the float round trips onnxruntime runs for unfused ops, and (in
``numerics.tables``) the 256-entry lookup tables of element-wise functions. They take numpy arrays
and plain numbers, know nothing of graphs or instructions, and import nothing of Sieve: the layer
below both ``ir`` and ``simulator``. What stays independent between those two is where bugs really
live: tiling, packing, addressing and ordering.
"""
from __future__ import annotations

import math

import numpy as np


def requantize(acc: np.ndarray, scale, zero_point: int, lo: int = -128, hi: int = 127) -> np.ndarray:
    """y = clamp(round_half_even(float32(acc) * float32(scale)) + zp, lo, hi), the contract's requantization
    (onnxruntime's QLinearConv/QLinearMatMul on the CPU). ``acc`` is int32 (already wrapped), ``scale``
    broadcasts against it; lo/hi carry fused activations (ReLU: lo = zp) and lie in the int8 range.
    Adding zp in float32 is exact below 2**24, and anything larger saturates the same way."""
    y = np.asarray(acc).astype(np.float32)
    scale = np.asarray(scale, np.float32)
    with np.errstate(over="ignore"):              # a product beyond float32 is infinite and saturates
        y = np.multiply(y, scale, out=y if np.broadcast_shapes(y.shape, scale.shape) == y.shape else None)
    np.rint(y, out=y)
    y += np.float32(zero_point)
    return np.clip(y, lo, hi, out=y).astype(np.int8)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Host-side quantization of a float tensor: saturate(round_half_even(x / s) + zp)."""
    with np.errstate(over="ignore"):              # beyond float32 or the int8 range: saturates
        q = np.rint(x.astype(np.float32) / np.float32(scale)).astype(np.float64) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def fma32(x, y, z) -> np.ndarray:
    """float32 fused multiply-add x·y + z, rounded once, for float32 (or small integer) x and float32 y, z:
    the product is exact in float64 (at most 48 significant bits), the sum in float64 plus its exact
    error (TwoSum); a second rounding to float32 can differ from the one rounding only at a float32
    midpoint, where the error's sign decides."""
    p = np.asarray(x, np.float64) * np.asarray(np.float32(y), np.float64)    # exact
    z64 = np.asarray(z, np.float32).astype(np.float64)
    s = p + z64
    bb = s - p
    e = (p - (s - bb)) + (z64 - bb)                                  # s + e == p + z exactly (TwoSum)
    r = np.asarray(s.astype(np.float32))
    r64 = r.astype(np.float64)
    d = s - r64
    near = (e != 0) & (d != 0)          # rounding s again can differ only when s is a float32 midpoint
    if np.any(near):
        n = np.nextafter(r, np.where(d > 0, np.float32(np.inf), np.float32(-np.inf))).astype(np.float32)
        tie = near & (s == (r64 + n.astype(np.float64)) * 0.5) & (np.sign(e) == np.sign(d))
        r = np.where(tie, n, r)
    return r


def dq_requantize(x: np.ndarray, zx: int, sx, zy: int, sy, lo: int = -128, hi: int = 127) -> np.ndarray:
    """Requantization through float, as onnxruntime's QLinearConcat lookup table (and a float
    DequantizeLinear -> QuantizeLinear pair) computes it: clamp(rhe(f32(f32(x - zx) * sx) / sy) + zy)."""
    v = (x.astype(np.float32) - np.float32(zx)) * np.float32(sx)
    return np.clip(np.rint(v / np.float32(sy)).astype(np.float64) + zy, lo, hi).astype(np.int8)


def affine_float(x: np.ndarray, zx: int, sx, scale: np.ndarray, shift: np.ndarray, zy: int, sy, lo: int = -128,
                 hi: int = 127) -> np.ndarray:
    """A per-channel affine map through float, as onnxruntime runs DequantizeLinear -> BatchNormalization
    -> QuantizeLinear: clamp(rhe(f32(f32(f32(f32(x - zx) * sx) * scale[c]) + shift[c]) / sy) + zy), every
    step a float32 operation (no fused multiply-add), ``scale``/``shift`` broadcast along x's channels."""
    v = (x.astype(np.float32) - np.float32(zx)) * np.float32(sx)
    v = v * scale.astype(np.float32) + shift.astype(np.float32)
    return np.clip(np.rint(v / np.float32(sy)).astype(np.float64) + zy, lo, hi).astype(np.int8)


def add_float(a: np.ndarray, b: np.ndarray, za: int, zb: int, sa, sb, sc, zc: int, lo: int = -128,
              hi: int = 127) -> np.ndarray:
    """Add through float, as onnxruntime runs DequantizeLinear x2 -> Add -> QuantizeLinear unfused:
    clamp(rhe((f32(f32(a - za) * sa) + f32(f32(b - zb) * sb)) / sc) + zc)."""
    fa = (a.astype(np.float32) - np.float32(za)) * np.float32(sa)
    fb = (b.astype(np.float32) - np.float32(zb)) * np.float32(sb)
    return np.clip(np.rint((fa + fb) / np.float32(sc)).astype(np.float64) + zc, lo, hi).astype(np.int8)


def add_qlinear(a: np.ndarray, b: np.ndarray, za: int, zb: int, ma: np.float32, mb: np.float32,
                   zc: int, lo: int = -128, hi: int = 127, u8: bool = False) -> np.ndarray:
    """Integer Add, as onnxruntime's QLinearAdd computes it with its AVX2 kernel (ma = sa/sc, mb = sb/sc):
    k = f32(zc) - fma(ma, za, f32(mb*zb)) (the compiler contracts ma*za + mb*zb into an FMA);
    y = clamp(rhe(fma(a, ma, fma(b, mb, k))), lo, hi). With u8 the arithmetic runs on the uint8
    values (stored shifted by -128), as in the model."""
    off = 128 if u8 else 0
    ma, mb = np.float32(ma), np.float32(mb)
    k = np.float32(np.float32(zc + off) - fma32(za + off, ma, np.float32(mb * np.float32(zb + off))))
    t = fma32(b.astype(np.int16) + off, mb, k)
    c = fma32(a.astype(np.int16) + off, ma, t)
    y = np.rint(c).astype(np.float64) - off
    return np.clip(y, lo, hi).astype(np.int8)


def softmax_host(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """The host's softmax, in float64 on float32 values, returned as float32 (after the accelerator
    has written the logits)."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def mul_qlinear(a: np.ndarray, b: np.ndarray, za: int, zb: int, ratio, zc: int, lo: int = -128, hi: int = 127,
                u8: bool = False) -> np.ndarray:
    """Integer Mul of two activations, as onnxruntime's QLinearMul computes it on x86-64 (ratio =
    float32(float32(sa * sb) / sc)): clamp(rhe(float32(float32((a - za)(b - zb)) * ratio) + float32(zc))).
    The zero point is added in float32 before rounding, so with u8 (a model's uint8 tensors, stored
    here as int8 = uint8 - 128) the sum is formed with the uint8 zero point. ``b`` broadcasts."""
    off = 128 if u8 else 0
    p = (a.astype(np.int32) - za) * (b.astype(np.int32) - zb)           # |p| <= 255 * 255: exact in float32
    v = p.astype(np.float32) * np.float32(ratio)
    v += np.float32(zc + off)
    y = np.rint(v).astype(np.float64) - off
    return np.clip(y, lo, hi).astype(np.int8)


def mul_ratio(sa, sb, sc) -> np.float32:
    """QLinearMul's multiplier: float32(float32(sa * sb) / sc)."""
    return np.float32(np.float32(np.float32(sa) * np.float32(sb)) / np.float32(sc))


def mul_float(a: np.ndarray, b: np.ndarray, za: int, zb: int, sa, sb, sc, zc: int, lo: int = -128,
              hi: int = 127) -> np.ndarray:
    """Mul through float, as onnxruntime runs DequantizeLinear x2 -> Mul -> QuantizeLinear unfused:
    clamp(rhe(f32(f32(f32(a - za) * sa) * f32(f32(b - zb) * sb)) / sc) + zc)."""
    fa = (a.astype(np.float32) - np.float32(za)) * np.float32(sa)
    fb = (b.astype(np.float32) - np.float32(zb)) * np.float32(sb)
    return np.clip(np.rint((fa * fb) / np.float32(sc)).astype(np.float64) + zc, lo, hi).astype(np.int8)


def qlinear_softmax_table(x_scale: float, reduce_len: int) -> np.ndarray:
    """onnxruntime's QLinearSoftmax table (float32 [256]): entry i = exp((i − 255 + shift)·s) computed in
    double, shift = max(0, ln(FLT_MAX / reduce_len) − 5) / s (a row's sum stays finite, the largest
    entries large)."""
    s = float(np.float32(x_scale))
    shift = max(0.0, math.log(float(np.finfo(np.float32).max) / reduce_len) - 5.0) / s
    i = np.arange(256, dtype=np.float64)
    return np.exp((i - 255 + shift) * s).astype(np.float32)


def qlinear_softmax(x: np.ndarray, table: np.ndarray, y_scale: float, zy: int, u8: bool) -> np.ndarray:
    """Softmax over the last axis as onnxruntime's QLinearSoftmax computes it, on Sieve's stored int8 (a
    uint8 tensor stored as uint8 − 128, ``zy`` likewise): e = table[255 − (max − x)], the row's sum in
    float32 added left to right, y = round_half_even(f32(e · floor(1 / y_scale)) / sum) + zero point;
    results above the type's maximum saturate (a probability of 1 at scale 1/256 is 256 steps)."""
    x = np.asarray(x, np.int16)
    e = np.asarray(table, np.float32)[255 - (x.max(axis=-1, keepdims=True) - x)]
    total = np.add.accumulate(e, axis=-1, dtype=np.float32)[..., -1:]          # sequential, in float32
    ys = np.float32(np.floor(np.float32(1.0) / np.float32(y_scale)))
    with np.errstate(over="ignore", invalid="ignore"):
        r = (e * ys) / total                       # e · ys can overflow float32 (a one-element row): saturates
    q = np.rint(np.minimum(np.nan_to_num(r, nan=0.0, posinf=2.0**24), 2.0**24)).astype(np.int64)
    if u8:
        return (np.minimum(q + zy + 128, 255) - 128).astype(np.int8)
    return np.minimum(q + zy, 127).astype(np.int8)


# ---------------------------------------------------------------- integer-only softmax and LayerNorm
# (the vector unit's row operations; no float arithmetic per element, docs/numerics.md)

SOFTMAX_EXP_BITS = 15        # exp table entries: round(2^15 · exp(-d · S)) for d = max - q in 0..255
SOFTMAX_OUT_BITS = 16        # the normalized probability before requantization: p · 2^16


def int_softmax_table(x_scale: float) -> np.ndarray:
    """int32 [256]: entry d is round(2^15 · exp(-d · S)), the exp of a value d input steps below its row's
    maximum (an int8 row spans at most 255 steps, so 256 entries cover every difference)."""
    d = np.arange(256, dtype=np.float64)
    return np.rint(np.exp(-d * float(np.float32(x_scale))) * (1 << SOFTMAX_EXP_BITS)).astype(np.int32)


def int_softmax(x: np.ndarray, table: np.ndarray, y_scale, zy: int) -> np.ndarray:
    """Softmax over the last axis in integers: e = table[max - q] per element, the integer row sum, one
    integer reciprocal 2^47 // sum per row, p = (e · recip + 2^30) >> 31 (p / 2^16 the probability), then
    requantized as a matmul's accumulator: clamp(rhe(f32(p) · f32(2^-16 / y_scale)) + zy)."""
    q = np.asarray(x, np.int8).astype(np.int64)
    e = np.asarray(table, np.int64)[q.max(axis=-1, keepdims=True) - q]
    total = e.sum(axis=-1, keepdims=True)                        # >= 2^15: the maximum's own entry
    recip = np.floor_divide(np.int64(1) << 47, total)
    p = np.right_shift(e * recip + (np.int64(1) << 30), 31)
    m = np.float32(np.float32(2.0 ** -SOFTMAX_OUT_BITS) / np.float32(y_scale))
    return requantize(p.astype(np.int32), m, zy)


LAYERNORM_FRAC_BITS = 8      # (x - mean) / std carries 8 fraction bits into the gamma product
LAYERNORM_SQRT_BITS = 8      # the square root is taken of the variance times 2^16: 8 fraction bits of its own
LAYERNORM_MAX_COLS = 16384   # rows up to this length stay inside int64 (docs/numerics.md)


def int_layernorm(x: np.ndarray, zx: int, gamma: np.ndarray, beta: np.ndarray, eps_q: int, scale,
                  zy: int) -> np.ndarray:
    """LayerNorm over the last axis in integers (I-BERT's structure): with n values per row and q = x - zx,
    c = n·q - Σq (n times the deviation, exact), v = (Σc² // n) · 2^16 + eps_q (n² times the variance plus
    epsilon, in input steps squared, with 16 fraction bits), s = isqrt(v) by Newton's iteration (n times the
    standard deviation, 8 fraction bits), z = floor(c · 2^16 / s) per element (the normalized value, 8
    fraction bits), acc = z · gamma + beta (int32 per channel) requantized by ``scale``. The input zero
    point cancels in c."""
    from sieve_numerics.ibert import i_sqrt
    q = np.asarray(x, np.int8).astype(np.int64) - int(zx)
    n = q.shape[-1]
    c = q * n - q.sum(axis=-1, keepdims=True)
    v = np.left_shift((c * c).sum(axis=-1, keepdims=True) // n, 2 * LAYERNORM_SQRT_BITS) + int(eps_q)
    s = np.maximum(i_sqrt(v), 1)
    z = np.floor_divide(np.left_shift(c, LAYERNORM_FRAC_BITS + LAYERNORM_SQRT_BITS), s)
    acc = z * np.asarray(gamma, np.int64) + np.asarray(beta, np.int64)
    acc = np.clip(acc, -2**31, 2**31 - 1)
    return requantize(acc.astype(np.int32), scale, zy)


def int_layernorm_params(gamma: np.ndarray, beta: np.ndarray, eps: float, n: int, x_scale, y_scale):
    """(gamma int32, beta int32, eps_q, float32 multiplier) of an integer LayerNorm: gamma on a symmetric
    15-bit grid of its largest magnitude, beta at that scale times 2^-8, epsilon in input steps squared
    times n² · 2^16 (saturated at 2^62)."""
    g = np.asarray(gamma, np.float64)
    s_g = max(float(np.abs(g).max(initial=0.0)), 1e-30) / 32767.0
    gq = np.clip(np.rint(g / s_g), -32767, 32767).astype(np.int32)
    s_acc = s_g * 2.0 ** -LAYERNORM_FRAC_BITS
    bq = np.clip(np.rint(np.asarray(beta, np.float64) / s_acc), -2**31, 2**31 - 1).astype(np.int32)
    sx = float(np.float32(x_scale))
    eps_q = int(min(np.floor(eps * n * n / (sx * sx) * 2.0 ** (2 * LAYERNORM_SQRT_BITS)), 2**62))
    return gq, bq, eps_q, np.float32(np.float32(s_acc) / np.float32(y_scale))


# ---------------------------------------------------------------- bilinear resize

LERP_BITS = 10               # interpolation weights on a 10-bit grid per axis: 2^20 for the four taps


def linear_source(out: int, size: int, scale: float, coord: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first index, second index, float weight of the second) each output index reads under ONNX Resize's
    linear mode, the source coordinate clamped to the input (edge pixels repeat)."""
    x = np.arange(out, dtype=np.float64)
    if coord == "asymmetric":
        orig = x / scale
    elif coord == "half_pixel" or (coord == "pytorch_half_pixel" and out > 1):
        orig = (x + 0.5) / scale - 0.5
    elif coord == "align_corners":
        orig = x * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    elif coord == "pytorch_half_pixel":
        orig = np.zeros(out)
    else:
        raise ValueError(f"coordinate_transformation_mode {coord!r}")
    orig = np.clip(orig, 0, size - 1)
    i0 = np.floor(orig).astype(np.int64)
    return i0, np.minimum(i0 + 1, size - 1), orig - i0


def linear_weights(out: int, size: int, scale: float, coord: str) -> np.ndarray:
    """int32 [out, 3]: first index, second index, the second's weight on the 10-bit grid (0..1024)."""
    i0, i1, lam = linear_source(out, size, scale, coord)
    return np.stack([i0, i1, np.rint(lam * (1 << LERP_BITS)).astype(np.int64)], axis=1).astype(np.int32)


def lerp_rows(r0: np.ndarray, r1: np.ndarray, ly: int, cols: np.ndarray, zp: int) -> np.ndarray:
    """One output row of a bilinear resize from input rows r0, r1 ([W, C] int8, zero point zp): the row weight
    ly and per output column (first, second, weight) on the 10-bit grid; the four integer products summed
    exactly, requantized by 2^-20 (the weights sum to 2^20: the input's own scale)."""
    one = 1 << LERP_BITS
    x0, x1, lx = (cols[:, k].astype(np.int64) for k in range(3))
    rows = (one - ly) * (np.asarray(r0, np.int64) - zp) + ly * (np.asarray(r1, np.int64) - zp)
    acc = (one - lx)[:, None] * rows[..., x0, :] + lx[:, None] * rows[..., x1, :]
    return requantize(acc.astype(np.int32), np.float32(2.0 ** (-2 * LERP_BITS)), zp)


def resize_linear(x: np.ndarray, zp: int, ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """Bilinear resize of int8 [N, C, H, W] by the row and column tables of ``linear_weights``."""
    q = np.moveaxis(np.asarray(x, np.int8), 1, -1)                       # [N, H, W, C]
    r0, r1 = q[:, ty[:, 0]], q[:, ty[:, 1]]                              # [N, OH, W, C]
    one = 1 << LERP_BITS
    ly = ty[:, 2].astype(np.int64)[None, :, None, None]
    rows = (one - ly) * (r0.astype(np.int64) - zp) + ly * (r1.astype(np.int64) - zp)
    x0, x1, lx = (tx[:, k].astype(np.int64) for k in range(3))
    acc = (one - lx)[None, None, :, None] * rows[:, :, x0] + lx[None, None, :, None] * rows[:, :, x1]
    y = requantize(acc.astype(np.int32), np.float32(2.0 ** (-2 * LERP_BITS)), zp)
    return np.moveaxis(y, -1, 1)
