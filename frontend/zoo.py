"""Model zoo: small reference networks built in code with seeded weights."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sieve.frontend.errors import FrontendError
from sieve.ir.build import GraphBuilder
from sieve.ir.graph import Graph, Op


def _he(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def _bias(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal(n) * 0.05).astype(np.float32)


def mlp(seed: int = 0, batch: int = 1, features: int = 64, hidden: tuple[int, ...] = (128, 64),
        classes: int = 10) -> Graph:
    """A multi-layer perceptron (defaults fit sklearn's 8x8 digits: 64 -> 128 -> 64 -> 10)."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("mlp")
    x = b.input("x", (batch, features))
    prev = features
    for i, width in enumerate(hidden, 1):
        x = b.add(f"fc{i}", Op.DENSE, [x], {"out_features": width, "act": "relu"},
                  {"w": _he(rng, (width, prev)), "b": _bias(rng, width)})
        prev = width
    out = b.add("logits", Op.DENSE, [x], {"out_features": classes},
                {"w": _he(rng, (classes, prev)), "b": _bias(rng, classes)})
    return b.build([out])


def lenet5(seed: int = 0, batch: int = 1, classes: int = 10) -> Graph:
    """LeNet-5 on 1x32x32 inputs: conv5-relu-pool, conv5-relu-pool, fc120, fc84, fc10."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("lenet5")
    x = b.input("x", (batch, 1, 32, 32))
    x = b.add("conv1", Op.CONV2D, [x], {"out_channels": 6, "kernel": 5},
              {"w": _he(rng, (6, 1, 5, 5)), "b": _bias(rng, 6)})
    x = b.add("relu1", Op.RELU, [x])
    x = b.add("pool1", Op.MAXPOOL, [x], {"kernel": 2, "stride": 2})
    x = b.add("conv2", Op.CONV2D, [x], {"out_channels": 16, "kernel": 5},
              {"w": _he(rng, (16, 6, 5, 5)), "b": _bias(rng, 16)})
    x = b.add("relu2", Op.RELU, [x])
    x = b.add("pool2", Op.MAXPOOL, [x], {"kernel": 2, "stride": 2})
    x = b.add("flatten", Op.FLATTEN, [x])
    for i, (width, fan) in enumerate(((120, 400), (84, 120)), 3):
        x = b.add(f"fc{i}", Op.DENSE, [x], {"out_features": width},
                  {"w": _he(rng, (width, fan)), "b": _bias(rng, width)})
        x = b.add(f"relu{i}", Op.RELU, [x])
    out = b.add("logits", Op.DENSE, [x], {"out_features": classes},
                {"w": _he(rng, (classes, 84)), "b": _bias(rng, classes)})
    return b.build([out])


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[..., Graph]
    description: str
    onnx: Callable | None = None          # builds an onnx.ModelProto (the model's native form)


def _from_onnx(factory: Callable) -> Callable[..., Graph]:
    def build_graph(**kwargs) -> Graph:
        from sieve.frontend.onnx_import import import_model
        return import_model(factory(**kwargs), f"zoo:{factory.__name__}")
    return build_graph


def _zoo() -> dict[str, ZooEntry]:
    from sieve.frontend import zoo_onnx as z
    entries = [
        ZooEntry("mlp", mlp, "MLP 64-128-64-10 (sklearn digits sized), 17 K weights"),
        ZooEntry("lenet5", lenet5, "LeNet-5 on 1x32x32, 62 K weights, 0.42 MMAC"),
        ZooEntry("resnet18", _from_onnx(z.resnet18), "ResNet-18 (ONNX), 11.7 M weights, 1.8 GMAC at 224", z.resnet18),
        ZooEntry("resnet50", _from_onnx(z.resnet50), "ResNet-50 (ONNX), 25.6 M weights, 4.1 GMAC at 224", z.resnet50),
        ZooEntry("mobilenetv2", _from_onnx(z.mobilenetv2), "MobileNetV2 (ONNX), 3.5 M weights, 0.3 GMAC at 224",
                 z.mobilenetv2),
        ZooEntry("vgg16", _from_onnx(z.vgg16), "VGG-16 (ONNX), 138 M weights, 15.5 GMAC at 224", z.vgg16),
        ZooEntry("fsrcnn", _from_onnx(z.fsrcnn), "FSRCNN-style super-resolution x2 (ONNX): 5x5 feature extraction "
                 "(56), 1x1 shrink (12), four 3x3 mappings, 1x1 expand, LeakyRelu, bilinear x2 and a 3x3 "
                 "reconstruction; 8.4 K weights, 0.65 GMAC at 256 (--size)", z.fsrcnn),
        ZooEntry("efficientnet_b0", _from_onnx(z.efficientnet_b0), "EfficientNet-B0 style (ONNX): SiLU, "
                 "squeeze-and-excite, 5.2 M weights, 0.39 GMAC at 224", z.efficientnet_b0),
        ZooEntry("mobilenetv3", _from_onnx(z.mobilenetv3), "MobileNetV3-Large style (ONNX): HardSwish, "
                 "squeeze-and-excite, 5.5 M weights, 0.22 GMAC at 224", z.mobilenetv3),
        ZooEntry("yolo_like", _from_onnx(z.yolo_like), "YOLOv8n-style detector (ONNX): SiLU, C2f, SPPF, "
                 "Resize x2 neck, 3 heads, 1.7 M weights, 0.63 GMAC at 320", z.yolo_like),
        ZooEntry("bert_base", _from_onnx(z.bert_base), "BERT-base encoder (ONNX): 12 layers, 768 features, 12 heads, "
                 "85 M weights, 11 GMAC at 128 tokens (--size: tokens); input the embedded sequence", z.bert_base),
        ZooEntry("bert_tiny", _from_onnx(z.bert_tiny), "BERT-Tiny encoder (ONNX): 2 layers, 128 features, 2 heads, "
                 "0.4 M weights at 32 tokens (--size: tokens)", z.bert_tiny),
        ZooEntry("vit_tiny", _from_onnx(z.vit_tiny), "ViT-Ti/16 (ONNX): patch embedding, 12 pre-LayerNorm blocks, "
                 "3 heads, token mean, 5.7 M weights, 1.3 GMAC at 224", z.vit_tiny),
    ]
    return {e.name: e for e in entries}


ZOO = _zoo()


def _entry(name: str) -> ZooEntry:
    name = name.replace("-", "_")                 # bert-base and bert_base
    if name not in ZOO:
        raise FrontendError(f"no zoo model named '{name}'", hint=f"available: {', '.join(ZOO)}")
    return ZOO[name]


def build(name: str, **kwargs) -> Graph:
    """A zoo model as a float Graph (ONNX-built models go through the importer)."""
    return _entry(name).build(**kwargs)


def build_onnx(name: str, **kwargs):
    """A zoo model as an onnx.ModelProto (ONNX-built models only)."""
    entry = _entry(name)
    if entry.onnx is None:
        raise FrontendError(f"zoo model '{name}' is built in the Sieve text format; export it as .sv")
    return entry.onnx(**kwargs)
