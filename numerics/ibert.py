"""Integer-only GELU, exp, Softmax, square root and LayerNorm, following I-BERT (Kim et al., ICML 2021).

Each function takes integers ``q`` that stand for real values ``S · q`` (``S`` a float scale known at
compile time: the scale of a matmul's int32 accumulator, or of an int8 tensor) and returns integers and
their scale. Only integer additions, multiplications, shifts, comparisons and divisions by constants or
by a value computed once per row run per element; the float arithmetic is on the scales, done once by the
compiler. These are the rules the vector unit's row operations will execute (and the golden model
call); ``docs/numerics.md`` gives each one's error against float on real activations.

Arrays are int64 throughout (products of int32 values and squared sums stay far inside int64 for the
tensor sizes of BERT-base).
"""
from __future__ import annotations

import math

import numpy as np

# erf(x) ~ sgn(x) [a (min(|x|, -b) + b)^2 + 1] (the second-order polynomial I-BERT fits on [0, -b])
GELU_A, GELU_B = -0.2888, -1.769
# exp(p) ~ a (p + b)^2 + c on p in (-ln 2, 0]
EXP_A, EXP_B, EXP_C = 0.3585, 1.353, 0.344


def _floor_div(x: np.ndarray, d: int) -> np.ndarray:
    return np.floor_divide(x, d)


def i_poly(q: np.ndarray, scale: float, a: float, b: float, c: float) -> tuple[np.ndarray, float]:
    """a (x + b)^2 + c for x = scale · q, in integers: (q + qb)^2 + qc at scale a · scale^2, with
    qb = floor(b / scale) and qc = floor(c / (a · scale^2)) computed once."""
    qb = math.floor(b / scale)
    qc = math.floor(c / (a * scale * scale))
    q = np.asarray(q, np.int64) + qb
    return q * q + qc, a * scale * scale


def i_erf(q: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """sgn(x) · (a (min(|x|, -b) + b)^2 + 1), x = scale · q."""
    q = np.asarray(q, np.int64)
    sgn = np.sign(q)
    top = math.floor(-GELU_B / scale)
    ql, s = i_poly(np.minimum(np.abs(q), top), scale, GELU_A, GELU_B, 1.0)
    return sgn * ql, s


def i_gelu(q: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """x · (1 + erf(x / sqrt 2)) / 2 in integers: q · (q_erf + floor(1 / S_erf)) at scale S · S_erf / 2."""
    q = np.asarray(q, np.int64)
    qe, se = i_erf(q, scale / math.sqrt(2.0))
    one = math.floor(1.0 / se)
    return q * (qe + one), scale * se / 2.0


def i_exp(q: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """exp(x) for x = scale · q <= 0: x = -ln2 · z + p with p in (-ln 2, 0], exp(p) by the polynomial,
    the power of two as a right shift."""
    q = np.asarray(q, np.int64)
    q_ln2 = max(math.floor(math.log(2.0) / scale), 1)
    z = _floor_div(-q, q_ln2)
    qp = q + z * q_ln2
    ql, s = i_poly(qp, scale, EXP_A, EXP_B, EXP_C)
    return np.right_shift(ql, np.minimum(z, 62)), s


def i_softmax(q: np.ndarray, scale: float, out_bits: int = 8, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` as unsigned ``out_bits``-bit integers at scale 2^-out_bits: exp of
    q - max(q) in integers, then each row normalized by one integer reciprocal 2^62 // sum (a
    multiply and a shift per element, no per-element division; qe <= sum keeps qe · reciprocal below
    2^62)."""
    q = np.asarray(q, np.int64)
    qe, _ = i_exp(q - q.max(axis=axis, keepdims=True), scale)
    total = np.maximum(qe.sum(axis=axis, keepdims=True), 1)
    recip = np.floor_divide(np.int64(1) << 62, total)                  # one division per row
    y = np.right_shift(qe * recip + (np.int64(1) << (62 - out_bits - 1)), 62 - out_bits)
    return np.minimum(y, (1 << out_bits) - 1)


SQRT_ITERATIONS = 6          # Newton steps from 2^ceil(bits/2) to the floor root, at most, below 2^63


def i_sqrt(n: np.ndarray) -> np.ndarray:
    """floor(sqrt(n)) of non-negative integers below 2^63: the value Newton's iteration reaches from a power
    of two above the root (integer steps x <- (x + n // x) // 2 until they stop decreasing; at most
    ``SQRT_ITERATIONS``, what the vector unit is charged), computed here from float64's square root
    corrected by one integer step either way (the floor root is unique, so both give the same integers)."""
    n = np.asarray(n, np.int64)
    if np.any(n < 0):
        raise ValueError("i_sqrt of a negative number")
    r = np.sqrt(n.astype(np.float64)).astype(np.int64)
    r -= (r * r > n).astype(np.int64)                         # float64 rounds up near a square
    r += ((r + 1) * (r + 1) <= n).astype(np.int64)            # ... or down
    return r


def i_sqrt_newton(n: np.ndarray) -> np.ndarray:
    """The Newton iteration itself (the rule i_sqrt's integers come from; the tests compare the two)."""
    n = np.asarray(n, np.int64)
    bits = np.where(n > 0, np.floor(np.log2(np.maximum(n, 1))).astype(np.int64) + 1, 0)
    x = np.left_shift(np.int64(1), (bits + 1) // 2)                    # 2^ceil(bits/2) > sqrt(n)
    x = np.where(n > 0, x, 1)
    while True:
        y = (x + n // x) // 2
        done = (y >= x) | (n == 0)
        if np.all(done):
            return np.where(n > 0, x, 0)
        x = np.where(done, x, y)


def i_layernorm(q: np.ndarray, out_frac_bits: int = 8, axis: int = -1) -> tuple[np.ndarray, float]:
    """(x - mean) / std along ``axis`` for integer q (any scale: normalization removes it). The mean and
    variance are integer sums, the standard deviation the integer square root (Newton), the division
    one per element by a per-row integer; the result keeps ``out_frac_bits`` fraction bits. Returns
    (integers, their scale 2^-out_frac_bits); gamma and beta join the requantization that follows."""
    q = np.asarray(q, np.int64)
    n = q.shape[axis]
    centred = q * n - q.sum(axis=axis, keepdims=True)                 # n · (x - mean): exact
    var_n3 = (centred * centred).sum(axis=axis, keepdims=True)         # n^3 · var
    std_n = i_sqrt(var_n3 // n)                                        # n · std (floor)
    std_n = np.maximum(std_n, 1)
    return np.floor_divide(centred << out_frac_bits, std_n), 2.0 ** -out_frac_bits
