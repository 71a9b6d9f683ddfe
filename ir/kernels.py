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
