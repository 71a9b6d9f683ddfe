"""Numpy kernels shared by the float and integer reference of each op.

Integer products are computed with float64 matrix multiplies: an int8 x int8
product is below 2**14 and any realistic reduction sum stays far below 2**53,
so float64 BLAS gives the exact integer result.
"""
from __future__ import annotations

import numpy as np


def pad_nchw(x: np.ndarray, pad: tuple[int, int, int, int], value: float) -> np.ndarray:
    top, left, bottom, right = pad
    if not (top or left or bottom or right):
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + top + bottom, w + left + right), value, x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def out_size(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int = 1) -> int:
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """[N, C, H, W] (already padded) -> [N, C, OH, OW, KH, KW] strided view."""
    kh, kw = kernel
    dh, dw = dilation
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    view = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    return view[:, :, ::stride[0], ::stride[1], ::dh, ::dw]


def conv2d(x: np.ndarray, w: np.ndarray, stride, dilation, groups: int = 1, dtype=np.float64) -> np.ndarray:
    """Convolution of padded x [N,C,H,W] with w [K,C/groups,KH,KW] -> [N,K,OH,OW] (contiguous). Per image
    and group one GEMM, weights [K, C·KH·KW] times the image's columns [C·KH·KW, OH·OW] (a strided view,
    copied once; a 1x1 stride-1 convolution needs no copy), so the result is already NCHW. float64 gives
    exact integer results; float32 is the fast float reference."""
    k, cg, kh, kw = w.shape
    n, c, h, wd = x.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    x = np.ascontiguousarray(x, dtype=dtype)
    kg = k // groups
    out = np.empty((n, k, oh, ow), dtype)
    if groups == c == k and cg == 1:                 # depthwise: a sum over the window per channel
        win = windows(x, (kh, kw), (sh, sw), (dh, dw))                  # N C OH OW KH KW
        wk = w.reshape(k, kh * kw).astype(dtype)
        out[:] = np.einsum("ncpt,ct->ncp", win.reshape(n, c, oh, ow, kh * kw).reshape(n, c, oh * ow, kh * kw),
                           wk).reshape(n, k, oh, ow)
        return out
    wm = w.reshape(groups, kg, cg * kh * kw).astype(dtype)
    s_n, s_c, s_h, s_w = x.strides
    for i in range(n):
        for g in range(groups):
            xi = x[i, g * cg:(g + 1) * cg]
            if kh == kw == 1 and sh == sw == 1:
                cols = xi.reshape(cg, h * wd)
            else:
                cols = np.lib.stride_tricks.as_strided(
                    xi, (cg, kh, kw, oh, ow), (s_c, dh * s_h, dw * s_w, sh * s_h, sw * s_w),
                    writeable=False).reshape(cg * kh * kw, oh * ow)
            np.matmul(wm[g], cols, out=out[i, g * kg:(g + 1) * kg].reshape(kg, oh * ow))
    return out


def requantize(acc: np.ndarray, scale: np.ndarray, zero_point: int, lo: int = -128, hi: int = 127) -> np.ndarray:
    """y = clamp(round_half_even(float32(acc) * float32(scale)) + zp, lo, hi); lo/hi carry fused
    activations (ReLU: lo = zp) and are within the int8 range."""
    prod = acc.astype(np.float32) * scale.astype(np.float32)
    y = np.rint(prod).astype(np.float64) + zero_point
    return np.clip(y, lo, hi).astype(np.int8)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Host-side quantization of a float tensor: saturate(round_half_even(x / s) + zp)."""
    q = np.rint(x.astype(np.float32) / np.float32(scale)).astype(np.float64) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def fma32(x, y, z) -> np.ndarray:
    """float32 fused multiply-add, rounded once, for integer x (up to 9 bits) and float32 y, z: the sum
    in float64 plus its exact error (TwoSum); a second rounding to float32 can differ from the one
    rounding only at a float32 midpoint, where the error's sign decides."""
    p = np.asarray(x, np.float64) * np.float64(np.float32(y))        # exact: at most 33 significant bits
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


def affine_float(x: np.ndarray, zx: int, sx, scale: np.ndarray, shift: np.ndarray, zy: int, sy) -> np.ndarray:
    """A per-channel affine map through float, as onnxruntime runs DequantizeLinear -> BatchNormalization
    -> QuantizeLinear: clamp(rhe(f32(f32(f32(f32(x - zx) * sx) * scale[c]) + shift[c]) / sy) + zy), every
    step a float32 operation (no fused multiply-add), ``scale``/``shift`` broadcast along x's channels."""
    v = (x.astype(np.float32) - np.float32(zx)) * np.float32(sx)
    v = v * scale.astype(np.float32) + shift.astype(np.float32)
    return np.clip(np.rint(v / np.float32(sy)).astype(np.float64) + zy, -128, 127).astype(np.int8)


def add_float(a: np.ndarray, b: np.ndarray, za: int, zb: int, sa, sb, sc, zc: int, lo: int = -128,
              hi: int = 127) -> np.ndarray:
    """Add through float, as onnxruntime runs DequantizeLinear x2 -> Add -> QuantizeLinear unfused:
    clamp(rhe((f32(f32(a - za) * sa) + f32(f32(b - zb) * sb)) / sc) + zc)."""
    fa = (a.astype(np.float32) - np.float32(za)) * np.float32(sa)
    fb = (b.astype(np.float32) - np.float32(zb)) * np.float32(sb)
    return np.clip(np.rint((fa + fb) / np.float32(sc)).astype(np.float64) + zc, lo, hi).astype(np.int8)


def add_requantize(a: np.ndarray, b: np.ndarray, za: int, zb: int, ma: np.float32, mb: np.float32,
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
