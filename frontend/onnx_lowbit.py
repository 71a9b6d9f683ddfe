"""Low-bit weights as ONNX stores them, onto Sieve's int4 grid.

ONNX keeps int4 weights as INT4/UINT4 initializers behind a DequantizeLinear (one scale, one per
output channel, or one per block of ``block_size`` elements along an axis; opset 21), and
onnxruntime's ``MatMulNBits`` keeps them packed two per byte with one scale (and zero point) per block
of the reduction. Both say: weight = scale · (q − zero_point).

Sieve's int4 layers hold w = step · m · w4: a float step per output channel, an integer multiplier m in
1..15 per group of input channels (shared by a convolution's kernel taps) and w4 in −8..7. So

- per-tensor or per-channel scales are that with m = 1, exactly;
- block scales along the reduction, equal over the kernel taps, are groups of ``block_size``: the step
  is the channel's largest scale divided by the smallest Q in 1..15 that makes every block's scale an
  integer multiple of it (exact), or by 15 with each multiplier rounded (the scale error is reported);
- the values q − zero_point must lie in −8..7 (int4, or uint4 with zero point 8); otherwise, and for
  blocks that are not groups (scales that vary over the kernel taps, or a reduction the accelerator
  reorders), the layer takes int8 weights: m · (q − zero_point) when that fits, else the dequantized
  weights rounded per channel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_MULT = 15


@dataclass(frozen=True)
class Grid:
    """A layer's imported weights on Sieve's grid: weight = step[k] · ints (ints = m · w4 for int4)."""
    ints: np.ndarray              # the model's layout, int8
    step: np.ndarray              # float32 [K]
    mult: np.ndarray | None       # uint8 [K][groups]: int4 with scale groups
    group: int                    # input channels per group (0: per channel)
    bits: int                     # 4 or 8
    scale_error: float            # largest relative error of a block's scale (0: exact)
    value_error: float            # int8 fallback: largest error of a weight, in steps (0: exact)
    k_axis: int = 0               # the output channels' axis of ``ints``

    def float_weights(self) -> np.ndarray:
        """The weights this grid stands for, float32 in the model's layout."""
        shape = [-1 if i == self.k_axis else 1 for i in range(self.ints.ndim)]
        return (self.ints.astype(np.float64) * self.step.astype(np.float64).reshape(shape)).astype(np.float32)

    @property
    def exact(self) -> bool:
        return self.scale_error == 0 and self.value_error == 0


def is_low_bit(values: np.ndarray) -> bool:
    return values.dtype.name in ("int4", "uint4")


def scales_per_element(scale: np.ndarray, shape: tuple[int, ...], axis: int, block: int) -> np.ndarray:
    """A DequantizeLinear's scale (or zero point) broadcast to its input's shape: one value, one per
    index of ``axis``, or (block > 0) one per block of ``block`` indices along ``axis``."""
    scale = np.asarray(scale)
    if scale.size == 1:
        return np.broadcast_to(scale.reshape(()), shape)
    if block:
        return np.repeat(scale, block, axis=axis)[tuple(slice(0, d) for d in shape)]
    return np.broadcast_to(scale.reshape([-1 if i == axis else 1 for i in range(len(shape))]), shape)


def to_grid(values: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, block: int,
            k_axis: int, red_axis: int | None, four_bit: bool) -> Grid:
    """Weights scale · (values − zp), output channels along ``k_axis``, on Sieve's grid (module
    docstring). ``red_axis``: the input-channel axis when the accelerator reduces along it in the model's
    order (scale groups can follow blocks along it), else None."""
    shape = values.shape
    v = values.astype(np.int64)
    if zp is not None:
        v = v - scales_per_element(zp, shape, axis, block).astype(np.int64)
    s = scales_per_element(np.asarray(scale, np.float32), shape, axis, block).astype(np.float32)
    v = np.where(s == 0, 0, v)                                  # a zero scale: those weights are zeros
    flat_s = np.moveaxis(s, k_axis, 0).reshape(s.shape[k_axis], -1)
    if (flat_s == flat_s[:, :1]).all():                         # per tensor or per output channel
        step = np.where(flat_s[:, 0] > 0, flat_s[:, 0], 1).astype(np.float32)
        return _finish(v, k_axis, step, None, 0, four_bit, 0.0)
    blocked = block >= 2 and not block & (block - 1) and red_axis is not None and axis == red_axis
    if blocked:
        sg = np.moveaxis(s, (k_axis, red_axis), (0, 1)).reshape(s.shape[k_axis], s.shape[red_axis], -1)
        blocked = bool((sg == sg[:, :, :1]).all())                # one scale over the kernel taps
    if not blocked:
        return _int8_fallback(v, s, k_axis)
    sg = sg[:, ::block, 0]                                        # [K][groups]
    step, mult, err = _two_level(sg.astype(np.float64))
    return _finish(v, k_axis, step, mult, block, four_bit, err)


def _two_level(sg: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Block scales [K][groups] as step[K] · m[K][groups]: the smallest Q in 1..15 that makes every m an
    integer in float32, else Q = 15 and m rounded. Returns the largest relative scale error."""
    smax = sg.max(axis=1)
    smax = np.where(smax > 0, smax, 1.0)
    k = sg.shape[0]
    step = (smax / MAX_MULT).astype(np.float32)
    mult = np.clip(np.rint(sg / step[:, None]), 1, MAX_MULT)
    found = np.zeros(k, bool)
    for q in range(1, MAX_MULT + 1):
        st = (smax / q).astype(np.float32)
        m = np.rint(sg / st.astype(np.float64)[:, None])
        ok = ((m >= 1) & (m <= MAX_MULT) & ((st[:, None] * m.astype(np.float32)) == sg.astype(np.float32))
              | (sg == 0)).all(axis=1) & ~found
        step, mult = np.where(ok, st, step), np.where(ok[:, None], np.clip(m, 1, MAX_MULT), mult)
        found |= ok
    real = step.astype(np.float64)[:, None] * mult
    nz = sg > 0
    err = float((np.abs(real - sg)[nz] / sg[nz]).max(initial=0.0))
    return step, mult.astype(np.uint8), err


def _finish(v: np.ndarray, k_axis: int, step: np.ndarray, mult: np.ndarray | None, group: int,
            four_bit: bool, scale_error: float) -> Grid:
    """The grid's integers: int4 when the model's values are int4 (after the zero point), else int8."""
    if mult is not None:                                       # groups along the input channels
        vk = np.moveaxis(v, k_axis, 0)                          # [K][C][taps...]
        m = np.repeat(mult.astype(np.int64), group, axis=1)[:, :vk.shape[1]]
        combined = np.moveaxis(vk * m.reshape(m.shape + (1,) * (vk.ndim - 2)), 0, k_axis)
    else:
        combined = v
    fits4 = four_bit and v.min(initial=0) >= -8 and v.max(initial=0) <= 7
    if fits4:
        return Grid(combined.astype(np.int8), step, mult, group, 4, scale_error, 0.0, k_axis)
    if np.abs(combined).max(initial=0) <= 127:
        return Grid(combined.astype(np.int8), step, None, 0, 8, scale_error, 0.0, k_axis)
    real = combined * np.moveaxis(step.astype(np.float64).reshape((-1,) + (1,) * (v.ndim - 1)), 0, k_axis)
    return _int8_fallback(real, None, k_axis, scale_error)


def _int8_fallback(v: np.ndarray, s: np.ndarray | None, k_axis: int, scale_error: float = 0.0) -> Grid:
    """int8 weights rounded per channel from the real weights (v · s, or v when s is None)."""
    real = v.astype(np.float64) * (s.astype(np.float64) if s is not None else 1.0)
    rk = np.moveaxis(real, k_axis, 0)
    amax = np.abs(rk.reshape(rk.shape[0], -1)).max(axis=1)
    step = np.where(amax > 0, amax / 127, 1.0).astype(np.float32)
    q = rk / step.astype(np.float64).reshape((-1,) + (1,) * (rk.ndim - 1))
    ints = np.rint(q)
    err = float(np.abs(q - ints).max(initial=0.0))
    return Grid(np.moveaxis(ints, 0, k_axis).astype(np.int8), step, None, 0, 8, scale_error,
                err if err > 1e-9 else 0.0, k_axis)


def unpack_nbits(blob: np.ndarray, n: int, k: int, bits: int) -> np.ndarray:
    """MatMulNBits' B [N][blocks][bytes per block] (or its zero points [N][bytes]) -> uint values [N][k],
    the first value of each byte in its low bits."""
    per = 8 // bits
    b = np.asarray(blob, np.uint8).reshape(n, -1)
    vals = np.stack([(b >> (bits * i)) & ((1 << bits) - 1) for i in range(per)], axis=-1).reshape(n, -1)
    if vals.shape[1] < k:
        raise ValueError(f"{vals.shape[1]} values per row, {k} expected")
    return vals[:, :k]
