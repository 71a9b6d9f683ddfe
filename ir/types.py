"""Tensor types: shape, element type and (for integer tensors) quantization."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class DType(enum.Enum):
    FLOAT32 = "float32"
    INT8 = "int8"
    INT32 = "int32"

    @property
    def np(self) -> np.dtype:
        return np.dtype(self.value)


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point).

    Activations are per tensor (one scale, one zero point); weights are per
    output channel along ``axis`` with zero point 0.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None
    unsigned: bool = False     # the model's tensor is uint8; stored here as int8 = uint8 - 128

    @staticmethod
    def per_tensor(scale: float, zero_point: int, unsigned: bool = False) -> "QuantParams":
        return QuantParams((float(np.float32(scale)),), (int(zero_point),), None, unsigned)

    @property
    def scale_f32(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float32)

    @property
    def zp(self) -> int:
        """The single zero point of a per-tensor quantization."""
        if len(self.zero_point) != 1:
            raise ValueError("zp is defined only for per-tensor quantization")
        return self.zero_point[0]


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: DType = DType.FLOAT32
    quant: QuantParams | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __str__(self) -> str:
        q = ""
        if self.quant is not None and len(self.quant.scale) == 1:
            q = f" s={self.quant.scale[0]:.6g} zp={self.quant.zero_point[0]}"
        return f"{self.dtype.value}[{', '.join(map(str, self.shape))}]{q}"
