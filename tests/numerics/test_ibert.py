"""I-BERT's integer-only functions against float: the error bounds docs/numerics.md reports."""
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

from sieve_numerics import ibert as I


def _quantize(x, scale):
    return np.round(np.asarray(x) / scale).astype(np.int64)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**62 - 1), st.integers(0, 2**20))
def test_integer_square_root_is_the_exact_floor(big, small):
    n = np.array([0, 1, 2, 3, 4, 15, 16, 17, big, small, small * small, 2**62 - 1], np.int64)
    r = I.i_sqrt(n)
    assert np.all(r * r <= n) and np.all((r + 1) * (r + 1) > n)
    np.testing.assert_array_equal(I.i_sqrt_newton(n), r)          # the rule the vector unit runs
    k = [(2**62 - 1) >> s for s in range(62)] + [big >> s for s in range(62)]
    assert max(_newton_steps(v) for v in k) <= I.SQRT_ITERATIONS   # what LAYERNORM is charged per row


def _newton_steps(n: int) -> int:
    if n == 0:
        return 0
    x, steps = 1 << ((n.bit_length() + 1) // 2), 0
    while True:
        y, steps = (x + n // x) // 2, steps + 1
        if y >= x:
            return steps
        x = y


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(10, 16), spread=st.floats(0.5, 4.0), seed=st.integers(0, 2**16))
def test_gelu_error(bits, spread, seed):
    x = np.random.default_rng(seed).standard_normal(20000) * spread
    scale = float(np.abs(x).max()) / 2 ** (bits - 1)
    q, s = I.i_gelu(_quantize(x, scale), scale)
    err = np.abs(q * s - x * 0.5 * (1 + erf(x / math.sqrt(2))))
    # the polynomial erf costs ~0.018 at worst (I-BERT), the input's own quantization up to a step more
    assert err.max() < 0.02 + scale and err.mean() < 0.01


@settings(max_examples=20, deadline=None)
@given(bits=st.integers(12, 16), seed=st.integers(0, 2**16))
def test_exp_and_softmax_error(bits, seed):
    rng = np.random.default_rng(seed)
    x = -np.abs(rng.standard_normal(20000)) * 4
    scale = 16.0 / 2 ** (bits - 1)
    q, s = I.i_exp(_quantize(x, scale), scale)
    # the polynomial costs ~0.002 (I-BERT); the input's quantization up to a step more
    assert np.abs(q * s - np.exp(x)).max() < 0.0025 + scale
    logits = rng.standard_normal((32, 128)) * 3
    p = I.i_softmax(_quantize(logits, scale), scale, out_bits=8)
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    assert np.abs(p / 256 - want).max() < 0.0021 + 2 * scale     # half an 8-bit step, plus the input's
    assert np.all(np.abs(p.sum(axis=1) - 256) <= 128 * 0.5 + 1)  # rows still sum to one (within rounding)


@settings(max_examples=20, deadline=None)
@given(width=st.integers(8, 1024), offset=st.floats(-5, 5), spread=st.floats(0.1, 20), seed=st.integers(0, 2**16))
def test_layernorm_error(width, offset, spread, seed):
    h = np.random.default_rng(seed).standard_normal((8, width)) * spread + offset
    scale = float(np.abs(h).max()) / 2**15
    y, s = I.i_layernorm(_quantize(h, scale), out_frac_bits=8)
    want = (h - h.mean(axis=1, keepdims=True)) / h.std(axis=1, keepdims=True)
    assert np.abs(y * s - want).max() < 0.01                    # a few 2^-8 steps
