"""The model zoo: reference networks built in code with seeded weights (nothing is downloaded).

    sieve.zoo.names()                         # ['mlp', 'lenet5', 'resnet18', ...]
    g = sieve.zoo.graph("lenet5")             # a float sieve Graph
    m = sieve.zoo.onnx_model("resnet50", size=64)   # an onnx.ModelProto (ImageNet models)
"""
from __future__ import annotations

from sieve.frontend.zoo import ZOO, build, build_onnx
from sieve.ir import Graph


def names() -> list[str]:
    return list(ZOO)


def describe(name: str) -> str:
    return ZOO[name].description if name in ZOO else ""


def graph(name: str, **kwargs) -> Graph:
    """A zoo model as a float Graph (keyword arguments: seed, and size for the ImageNet models)."""
    return build(name, **kwargs)


def onnx_model(name: str, **kwargs):
    """A zoo model as an onnx.ModelProto (ResNet-18/50, MobileNetV2, VGG-16)."""
    return build_onnx(name, **kwargs)
