"""Constant folding of the small shape subgraphs exporters emit (numpy, on constants only)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from sieve_numerics.limits import MAX_TENSOR_ELEMENTS, over


def _axes(attrs: dict, inputs: list, index: int = 1):
    if len(inputs) > index and inputs[index] is not None:
        return [int(a) for a in np.asarray(inputs[index]).ravel()]
    return list(attrs.get("axes", []))


def _unsqueeze(x, attrs, inputs):
    out = np.asarray(x)
    for a in sorted(_axes(attrs, inputs)):
        out = np.expand_dims(out, a if a >= 0 else a + out.ndim + 1)
    return out


def _squeeze(x, attrs, inputs):
    axes = _axes(attrs, inputs)
    return np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)


def _slice(attrs, inputs):
    x = inputs[0]
    if len(inputs) > 1:
        starts, ends = inputs[1], inputs[2]
        axes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
        steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    else:
        starts, ends = attrs["starts"], attrs["ends"]
        axes, steps = attrs.get("axes", range(len(starts))), [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(min(e, np.iinfo(np.int64).max)), int(st))
    return x[tuple(index)]


def _reshape(attrs, inputs):
    x, shape = inputs[0], [int(s) for s in inputs[1]]
    shape = [x.shape[i] if s == 0 and not attrs.get("allowzero", 0) else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _cast(attrs, inputs):
    from onnx import helper
    return inputs[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))


def _constant(attrs, inputs):
    from onnx import numpy_helper
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key in ("value_float", "value_int"):
        if key in attrs:
            return np.array(attrs[key])
    for key in ("value_floats", "value_ints"):
        if key in attrs:
            return np.array(attrs[key])
    raise ValueError("unsupported Constant attribute")


def _constant_of_shape(attrs, inputs):
    from onnx import numpy_helper
    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    return np.full([int(s) for s in inputs[0]], value.ravel()[0], value.dtype)


FOLD: dict[str, Callable[[dict, list], np.ndarray]] = {
    "Constant": _constant,
    "Identity": lambda a, i: i[0],
    "Cast": _cast,
    "Gather": lambda a, i: np.take(i[0], np.asarray(i[1]).astype(np.int64), axis=a.get("axis", 0)),
    "Unsqueeze": lambda a, i: _unsqueeze(i[0], a, i),
    "Squeeze": lambda a, i: _squeeze(i[0], a, i),
    "Concat": lambda a, i: np.concatenate([np.atleast_1d(x) for x in i], axis=a["axis"]),
    "Slice": _slice,
    "Reshape": _reshape,
    "Add": lambda a, i: i[0] + i[1],
    "Sub": lambda a, i: i[0] - i[1],
    "Mul": lambda a, i: i[0] * i[1],
    "Div": lambda a, i: (i[0] // i[1]) if np.issubdtype(np.asarray(i[0]).dtype, np.integer) else i[0] / i[1],
    "ConstantOfShape": _constant_of_shape,
    "Range": lambda a, i: np.arange(i[0], i[1], i[2]),
    "Transpose": lambda a, i: np.transpose(i[0], a.get("perm")),
    "Flatten": lambda a, i: i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])), -1),
    "Equal": lambda a, i: np.equal(i[0], i[1]),
    "Mod": lambda a, i: np.fmod(i[0], i[1]) if a.get("fmod", 0) else np.mod(i[0], i[1]),
    "Sqrt": lambda a, i: np.sqrt(i[0]),
    "Pow": lambda a, i: np.power(i[0], i[1]),
    "Neg": lambda a, i: np.negative(i[0]),
    "Max": lambda a, i: np.maximum(i[0], i[1]),
    "Min": lambda a, i: np.minimum(i[0], i[1]),
    "Expand": lambda a, i: i[0] * np.ones([int(s) for s in i[1]], dtype=np.asarray(i[0]).dtype),
    "Where": lambda a, i: np.where(i[0], i[1], i[2]),
}


def _size(node, inputs: list) -> int:
    """The elements an op that makes a tensor from sizes would make, known before it is made."""
    if node.op_type in ("ConstantOfShape", "Expand"):
        shape = np.asarray(inputs[0 if node.op_type == "ConstantOfShape" else 1]).ravel()
        if (shape < 0).any():
            raise ValueError(f"a negative size in {shape.tolist()}")
        return math.prod(int(s) for s in shape) * (np.asarray(inputs[0]).size if node.op_type == "Expand" else 1)
    if node.op_type == "Range":
        start, limit, delta = (float(np.asarray(x).ravel()[0]) for x in inputs[:3])
        if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
            raise ValueError(f"Range({start}, {limit}, {delta}) is not a finite sequence")
        return max(0, math.ceil((limit - start) / delta))
    return 0


def fold(node, inputs: list, attrs: dict) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants (one output); a tensor over the limit is refused
    before it is made."""
    if any(x is None for x in inputs[:1]):
        raise ValueError("its first input is missing")
    size = _size(node, inputs)
    if size > MAX_TENSOR_ELEMENTS:
        raise ValueError(over("the constant it makes", size, MAX_TENSOR_ELEMENTS, "SIEVE_MAX_TENSOR_ELEMENTS"))
    with np.errstate(all="ignore"):               # folded arithmetic follows numpy (integer division by zero: 0)
        return [np.asarray(FOLD[node.op_type](attrs, [x for x in inputs]))]
