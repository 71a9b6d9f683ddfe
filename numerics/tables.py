"""Element-wise functions of one int8 tensor as 256-entry lookup tables, built at compile time.

An int8 input takes 256 values, so any function of it alone is a table: entry ``v + 128`` holds
``clamp(round_half_even(f(float32(v - zx) * sx) / sy) + zy)``. The table equals onnxruntime's result
when ``f`` is computed as onnxruntime computes it in float32, whether onnxruntime fuses the op into a
table of its own (QLinearSigmoid, QLinearLeakyRelu) or runs DequantizeLinear -> f -> QuantizeLinear
(Tanh, HardSigmoid, HardSwish, SiLU as Sigmoid -> Mul): MLAS's logistic and tanh are rational
polynomials evaluated with fused multiply-adds (its FMA3 kernels, what an x86-64 machine with AVX2
runs), and the others are plain float32 arithmetic. Each entry of ``FUNCTIONS`` is one of them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from sieve_numerics.integer import fma32

f32 = np.float32

# MLAS's logistic: x clamped to [-18, 18], p(x) / q(x) + 0.5 clamped to [0, 1] (Eigen's coefficients)
_LOGISTIC_P = (4.37031012579801e-11, 1.15627324459942e-07, 6.08574864600143e-05, 8.51377133304701e-03,
               2.48287947061529e-01)
_LOGISTIC_Q = (6.10247389755681e-13, 5.76102136993427e-09, 6.29106785017040e-06, 1.70198817374094e-03,
               1.16817656904453e-01, 9.93151921023180e-01)
# MLAS's tanh: x clamped to [-9, 9], p(x) / q(x)
_TANH_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
           1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
_TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


def _horner(x2: np.ndarray, coeffs: tuple[float, ...]) -> np.ndarray:
    """c0·x2^n + ... by fused multiply-adds: fma(x2, c0, c1), then fma(p, x2, c_i)."""
    p = fma32(x2, f32(coeffs[0]), f32(coeffs[1]))
    for c in coeffs[2:]:
        p = fma32(p, x2, f32(c))
    return p


def logistic(x: np.ndarray) -> np.ndarray:
    """onnxruntime's float32 sigmoid (MlasComputeLogistic, FMA kernel)."""
    x = np.clip(np.asarray(x, f32), f32(-18), f32(18))
    x2 = x * x
    p = _horner(x2, _LOGISTIC_P) * x
    q = _horner(x2, _LOGISTIC_Q)
    return np.clip(p / q + f32(0.5), f32(0), f32(1)).astype(f32)


def tanh(x: np.ndarray) -> np.ndarray:
    """onnxruntime's float32 tanh (MlasComputeTanh, FMA kernel)."""
    x = np.clip(np.asarray(x, f32), f32(-9), f32(9))
    x2 = x * x
    return (_horner(x2, _TANH_P) * x / _horner(x2, _TANH_Q)).astype(f32)


def hard_sigmoid(x: np.ndarray, alpha: float = 0.2, beta: float = 0.5) -> np.ndarray:
    """max(0, min(1, alpha·x + beta)) in float32, multiply and add rounded separately."""
    x = np.asarray(x, f32)
    return np.clip(f32(alpha) * x + f32(beta), f32(0), f32(1)).astype(f32)


def hard_swish(x: np.ndarray) -> np.ndarray:
    """x · HardSigmoid(x; 1/6, 1/2): onnxruntime rewrites HardSwish into HardSigmoid and Mul."""
    x = np.asarray(x, f32)
    return (x * hard_sigmoid(x, 1.0 / 6.0, 0.5)).astype(f32)


def silu(x: np.ndarray) -> np.ndarray:
    """x · sigmoid(x), as exported (Sigmoid then Mul) and computed in float32."""
    x = np.asarray(x, f32)
    return (x * logistic(x)).astype(f32)


def leaky_relu(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    x = np.asarray(x, f32)
    return np.where(x >= 0, x, f32(alpha) * x).astype(f32)


# name -> (float32 function of x and the op's parameters, the parameters' names)
FUNCTIONS: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
    "sigmoid": (logistic, ()),
    "tanh": (tanh, ()),
    "hard_sigmoid": (hard_sigmoid, ("alpha", "beta")),
    "hard_swish": (hard_swish, ()),
    "silu": (silu, ()),
    "leaky_relu": (leaky_relu, ("alpha",)),
}


def function(name: str, params: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The float32 function ``name`` with its parameters bound."""
    fn, names = FUNCTIONS[name]
    kwargs = {k: float(v) for k, v in (params or {}).items() if k in names}
    return lambda x: fn(x, **kwargs)


def _sigmoid_ref(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(f32)


# the float model's own functions (numpy's exp and tanh: fast on whole tensors, for the float reference
# and calibration); the tables use onnxruntime's arithmetic above, on 256 values
REFERENCE: dict[str, Callable[..., np.ndarray]] = {
    "sigmoid": _sigmoid_ref,
    "tanh": lambda x: np.tanh(x).astype(f32),
    "silu": lambda x: (x * _sigmoid_ref(x)).astype(f32),
}


def reference(name: str, params: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The float32 function ``name`` for the float model: numpy's math where onnxruntime's emulation
    would be slow, the same function otherwise."""
    if name in REFERENCE:
        return REFERENCE[name]
    return function(name, params)


def build_table(name: str, params: dict | None, sx: float, zx: int, sy: float, zy: int) -> np.ndarray:
    """The int8 table [256] of ``name``: entry v + 128 is the output for stored input v."""
    v = np.arange(-128, 128, dtype=np.int32)
    x = (v.astype(f32) - f32(zx)) * f32(sx)
    y = function(name, params)(x)
    q = np.rint(y / f32(sy)).astype(np.float64) + zy
    return np.clip(q, -128, 127).astype(np.int8)


def apply_table(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Look up each int8 value of x in an int8 table [256]."""
    return np.asarray(table, np.int8)[np.asarray(x, np.int8).view(np.uint8) ^ np.uint8(128)]
