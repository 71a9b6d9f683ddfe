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


def erf(x: np.ndarray) -> np.ndarray:
    """erf in float32 by Abramowitz and Stegun 7.1.26 evaluated in float64 (error below 1.5e-7, about
    one float32 step near 1)."""
    x = np.asarray(x, np.float64)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x) * (1.0 - poly * np.exp(-x * x))).astype(f32)


def gelu(x: np.ndarray) -> np.ndarray:
    """x · (1 + erf(x / sqrt 2)) / 2 in float32 (PyTorch's nn.GELU, ONNX's Gelu)."""
    x = np.asarray(x, f32)
    return (x * (f32(1) + erf(x / f32(np.sqrt(2.0)))) * f32(0.5)).astype(f32)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU's tanh approximation (approximate="tanh")."""
    x = np.asarray(x, f32)
    return (f32(0.5) * x * (f32(1) + np.tanh(f32(np.sqrt(2 / np.pi)) * (x + f32(0.044715) * x * x * x)))).astype(f32)


# a pointwise expression of one tensor, as a postfix program: "x", numbers, and these operators (float32)
_UNARY_OPS = {"erf": erf, "tanh": lambda v: np.tanh(v).astype(f32), "sigmoid": lambda v: logistic(v),
              "exp": lambda v: np.exp(v).astype(f32), "sqrt": lambda v: np.sqrt(v).astype(f32),
              "neg": lambda v: (-v).astype(f32), "abs": lambda v: np.abs(v).astype(f32),
              "relu": lambda v: np.maximum(v, f32(0)).astype(f32), "reciprocal": lambda v: (f32(1) / v).astype(f32),
              "softplus": lambda v: np.logaddexp(f32(0), v).astype(f32)}
_BINARY_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
               "min": np.minimum, "max": np.maximum}


def _named(tok: str):
    """A named function as a program token, its parameters after colons ("leaky_relu:0.1"), or None."""
    name, *args = tok.split(":")
    if name not in FUNCTIONS or name == "expr" or len(args) != len(FUNCTIONS[name][1]):
        return None
    try:
        return function(name, dict(zip(FUNCTIONS[name][1], (float(a) for a in args))))
    except ValueError:
        return None


def check_program(program: str) -> None:
    """Raises ValueError unless ``program`` is a well-formed postfix expression of x."""
    depth = 0
    for tok in program.split():
        if tok in _BINARY_OPS:
            depth -= 1
        elif tok in _UNARY_OPS or _named(tok) is not None:
            pass
        elif tok == "x":
            depth += 1
        else:
            try:
                float(tok)
            except ValueError:
                raise ValueError(f"unknown token {tok!r} in the expression {program!r}") from None
            depth += 1
        if depth < 1:
            raise ValueError(f"the expression {program!r} takes an operand it does not have")
    if depth != 1:
        raise ValueError(f"the expression {program!r} does not leave exactly one value")


def expression(x: np.ndarray, program: str = "x") -> np.ndarray:
    """A postfix program of x evaluated in float32, each operator rounded as ONNX's float ops are."""
    x = np.asarray(x, f32)
    stack: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for tok in program.split():
            if tok in _BINARY_OPS:
                b, a = stack.pop(), stack.pop()
                stack.append(np.asarray(_BINARY_OPS[tok](a, b), f32))
            elif tok in _UNARY_OPS:
                stack.append(np.asarray(_UNARY_OPS[tok](stack.pop()), f32))
            elif tok != "x" and _named(tok) is not None:
                stack.append(np.asarray(_named(tok)(stack.pop()), f32))
            else:
                stack.append(x if tok == "x" else f32(float(tok)))
    return np.broadcast_to(stack[0], x.shape).astype(f32)


# name -> (float32 function of x and the op's parameters, the parameters' names)
FUNCTIONS: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
    "sigmoid": (logistic, ()),
    "tanh": (tanh, ()),
    "hard_sigmoid": (hard_sigmoid, ("alpha", "beta")),
    "hard_swish": (hard_swish, ()),
    "silu": (silu, ()),
    "leaky_relu": (leaky_relu, ("alpha",)),
    "gelu": (gelu, ()),
    "gelu_tanh": (gelu_tanh, ()),
    "expr": (expression, ("program",)),      # any other pointwise chain of one tensor (docs/onnx.md)
}

# parameters that are text, not numbers
TEXT_PARAMS = {"program"}


def canonical(program: str) -> tuple[str, dict]:
    """(function, parameters) of a program: one named function of x where it is one (sigmoid, SiLU,
    LeakyRelu, ...), else ("expr", {"program": program})."""
    toks = program.split()
    if len(toks) == 2 and toks[0] == "x" and _named(toks[1]) is not None:
        name, *args = toks[1].split(":")
        return name, dict(zip(FUNCTIONS[name][1], (float(a) for a in args)))
    if toks in (["x", "sigmoid", "x", "mul"], ["x", "x", "sigmoid", "mul"]):
        return "silu", {}
    return "expr", {"program": program}


def function(name: str, params: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The float32 function ``name`` with its parameters bound."""
    fn, names = FUNCTIONS[name]
    kwargs = {k: (v if k in TEXT_PARAMS else float(v)) for k, v in (params or {}).items() if k in names}
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
    with np.errstate(all="ignore"):               # infinities saturate; NaN has no int8 value
        y = function(name, params)(x)
        q = np.rint(y / f32(sy)).astype(np.float64) + zy
    if np.isnan(q).any():
        raise ValueError(f"{name} is not a number at {int(np.isnan(q).sum())} of its 256 input values")
    return np.clip(q, -128, 127).astype(np.int8)


def apply_table(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Look up each int8 value of x in an int8 table [256]."""
    return np.asarray(table, np.int8)[np.asarray(x, np.int8).view(np.uint8) ^ np.uint8(128)]
