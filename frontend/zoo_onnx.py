"""Zoo models built as ONNX (so that importing is what gets exercised), with seeded weights.

ResNet-18/50 (He et al. 2016), MobileNetV2 (Sandler et al. 2018) and VGG-16
(Simonyan and Zisserman 2015) at their published layer shapes, with
BatchNormalization nodes left in for the importer to fold. Weights are He-normal
from a seed; batch-norm statistics are mild random values. Nothing is trained.
"""
from __future__ import annotations

import numpy as np

IR_VERSION = 9          # readable by the onnxruntime versions Sieve is tested against
OPSET = 17


class OnnxNet:
    """A small helper that appends ONNX nodes and seeded initializers."""

    def __init__(self, name: str, input_shape: tuple[int, ...], seed: int):
        from onnx import TensorProto, helper
        self.helper, self.TensorProto = helper, TensorProto
        self.name, self.rng = name, np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0
        self.input = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def _init(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self._name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int | None = None,
             groups: int = 1, bias: bool = False) -> str:
        pad = k // 2 if pad is None else pad
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)
        name = self._name("conv")
        inputs = [x, self._init(name + ".w", w)]
        if bias:
            inputs.append(self._init(name + ".b", self.rng.standard_normal(cout) * 0.01))
        self.nodes.append(self.helper.make_node("Conv", inputs, [name], name=name, kernel_shape=[k, k],
                                                strides=[stride, stride], pads=[pad] * 4, group=groups))
        return name

    def bn(self, x: str, c: int) -> str:
        name = self._name("bn")
        params = [self._init(f"{name}.{p}", v) for p, v in (
            ("gamma", 1 + 0.1 * self.rng.standard_normal(c)), ("beta", 0.05 * self.rng.standard_normal(c)),
            ("mean", 0.05 * self.rng.standard_normal(c)), ("var", 1 + 0.1 * np.abs(self.rng.standard_normal(c))))]
        self.nodes.append(self.helper.make_node("BatchNormalization", [x] + params, [name], name=name))
        return name

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                act: str | None = "relu") -> str:
        y = self.bn(self.conv(x, cin, cout, k, stride, groups=groups), cout)
        if act == "relu":
            return self.node("Relu", [y])
        if act == "relu6":
            lo, hi = self._init(self._name("c") + ".min", 0.0), self._init(self._name("c") + ".max", 6.0)
            return self.node("Clip", [y, lo, hi])
        return y

    def gemm(self, x: str, cin: int, cout: int) -> str:
        name = self._name("fc")
        w = self._init(name + ".w", self.rng.standard_normal((cout, cin)) * np.sqrt(2.0 / cin))
        b = self._init(name + ".b", self.rng.standard_normal(cout) * 0.01)
        self.nodes.append(self.helper.make_node("Gemm", [x, w, b], [name], name=name, transB=1))
        return name

    def head(self, x: str, cin: int, classes: int) -> str:
        x = self.node("GlobalAveragePool", [x])
        return self.gemm(self.node("Flatten", [x], axis=1), cin, classes)

    def model(self, output: str):
        return self.model_multi([output])

    def model_multi(self, outputs: list[str]):
        h = self.helper
        outs = [h.make_tensor_value_info(o, self.TensorProto.FLOAT, None) for o in outputs]
        graph = h.make_graph(self.nodes, self.name, [self.input], outs, self.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="sieve zoo")
        model.ir_version = IR_VERSION
        return model


def _resnet(name: str, blocks: list[int], bottleneck: bool, size: int, classes: int, seed: int):
    net = OnnxNet(name, (1, 3, size, size), seed)
    x = net.conv_bn("input", 3, 64, 7, 2)
    x = net.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin, expansion = 64, 4 if bottleneck else 1
    for stage, n in enumerate(blocks):
        width = 64 * 2 ** stage
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            cout = width * expansion
            if bottleneck:
                y = net.conv_bn(x, cin, width, 1)
                y = net.conv_bn(y, width, width, 3, stride)
                y = net.conv_bn(y, width, cout, 1, act=None)
            else:
                y = net.conv_bn(x, cin, width, 3, stride)
                y = net.conv_bn(y, width, cout, 3, act=None)
            short = net.conv_bn(x, cin, cout, 1, stride, act=None) if (stride != 1 or cin != cout) else x
            x = net.node("Relu", [net.node("Add", [y, short])])
            cin = cout
    return net.model(net.head(x, cin, classes))


def resnet18(size: int = 224, classes: int = 1000, seed: int = 0):
    return _resnet("resnet18", [2, 2, 2, 2], False, size, classes, seed)


def resnet50(size: int = 224, classes: int = 1000, seed: int = 0):
    return _resnet("resnet50", [3, 4, 6, 3], True, size, classes, seed)


def mobilenetv2(size: int = 224, classes: int = 1000, seed: int = 0):
    net = OnnxNet("mobilenetv2", (1, 3, size, size), seed)
    x = net.conv_bn("input", 3, 32, 3, 2, act="relu6")
    cin = 32
    # (expansion t, channels c, repeats n, stride s), as in the paper's Table 2
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = net.conv_bn(x, cin, hidden, 1, act="relu6") if t != 1 else x
            y = net.conv_bn(y, hidden, hidden, 3, stride, groups=hidden, act="relu6")
            y = net.conv_bn(y, hidden, c, 1, act=None)
            x = net.node("Add", [y, x]) if stride == 1 and cin == c else y
            cin = c
    x = net.conv_bn(x, cin, 1280, 1, act="relu6")
    return net.model(net.head(x, 1280, classes))


def vgg16(size: int = 224, classes: int = 1000, seed: int = 0):
    net = OnnxNet("vgg16", (1, 3, size, size), seed)
    x, cin = "input", 3
    for cout, n in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(n):
            x = net.node("Relu", [net.conv(x, cin, cout, 3, bias=True)])
            cin = cout
        x = net.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    side = size // 32
    x = net.node("Flatten", [x], axis=1)
    x = net.node("Relu", [net.gemm(x, 512 * side * side, 4096)])
    x = net.node("Relu", [net.gemm(x, 4096, 4096)])
    return net.model(net.gemm(x, 4096, classes))


def fsrcnn(size: int = 256, scale: int = 2, seed: int = 0, d: int = 56, s: int = 12, m: int = 4):
    """FSRCNN-style super-resolution (Dong et al., ECCV 2016) on a one-channel image: feature extraction
    (5x5, d channels), shrinking (1x1, s), m mapping layers (3x3, s), expanding (1x1, d), each followed by
    a LeakyRelu (FSRCNN's PReLU with one slope); then, in place of the 9x9 transposed convolution, a
    bilinear x``scale`` Resize and a 3x3 reconstruction to one channel. Few channels, large feature maps:
    the activations, not the weights, are what moves."""
    net = OnnxNet("fsrcnn", (1, 1, size, size), seed)

    def layer(x: str, cin: int, cout: int, k: int) -> str:
        return net.node("LeakyRelu", [net.conv(x, cin, cout, k, bias=True)], alpha=0.25)
    x = layer("input", 1, d, 5)
    x = layer(x, d, s, 1)
    for _ in range(m):
        x = layer(x, s, s, 3)
    x = layer(x, s, d, 1)
    scales = net._init(net._name("up") + ".scales", np.array([1.0, 1.0, scale, scale]))
    x = net.node("Resize", [x, "", scales], mode="linear", coordinate_transformation_mode="half_pixel")
    return net.model(net.conv(x, d, 1, 3, bias=True))


def _act(net: OnnxNet, x: str, act: str) -> str:
    """relu, silu (Sigmoid then Mul, as PyTorch exports nn.SiLU) or hswish (HardSwish)."""
    if act == "relu":
        return net.node("Relu", [x])
    if act == "silu":
        return net.node("Mul", [x, net.node("Sigmoid", [x])])
    if act == "hswish":
        return net.node("HardSwish", [x])
    return x


def _squeeze_excite(net: OnnxNet, x: str, c: int, squeezed: int, inner: str, gate: str) -> str:
    """Global average pool, 1x1 conv down (+ activation), 1x1 conv up, gate, times x per channel."""
    s = net.node("GlobalAveragePool", [x])
    s = _act(net, net.conv(s, c, squeezed, 1, bias=True), inner)
    s = net.conv(s, squeezed, c, 1, bias=True)
    s = net.node("Sigmoid", [s]) if gate == "sigmoid" else net.node("HardSigmoid", [s], alpha=1 / 6, beta=0.5)
    return net.node("Mul", [x, s])


def efficientnet_b0(size: int = 224, classes: int = 1000, seed: int = 0):
    """EfficientNet-B0's layer shapes (Tan and Le 2019, Table 1): MBConv blocks with SiLU, squeeze-and-
    excite (a quarter of the block's input channels) and residual adds."""
    net = OnnxNet("efficientnet_b0", (1, 3, size, size), seed)
    x = _act(net, net.bn(net.conv("input", 3, 32, 3, 2), 32), "silu")
    cin = 32
    # (expansion, channels, repeats, stride, kernel)
    for t, c, n, s, k in ((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3),
                          (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)):
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = _act(net, net.bn(net.conv(x, cin, hidden, 1), hidden), "silu") if t != 1 else x
            y = _act(net, net.bn(net.conv(y, hidden, hidden, k, stride, groups=hidden), hidden), "silu")
            y = _squeeze_excite(net, y, hidden, max(1, cin // 4), "silu", "sigmoid")
            y = net.bn(net.conv(y, hidden, c, 1), c)
            x = net.node("Add", [y, x]) if stride == 1 and cin == c else y
            cin = c
    x = _act(net, net.bn(net.conv(x, cin, 1280, 1), 1280), "silu")
    return net.model(net.head(x, 1280, classes))


def _divisible(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


def mobilenetv3(size: int = 224, classes: int = 1000, seed: int = 0):
    """MobileNetV3-Large's layer shapes (Howard et al. 2019, Table 1): HardSwish, squeeze-and-excite
    gated by HardSigmoid, residual adds."""
    net = OnnxNet("mobilenetv3", (1, 3, size, size), seed)
    x = _act(net, net.bn(net.conv("input", 3, 16, 3, 2), 16), "hswish")
    cin = 16
    # (kernel, expanded, out, squeeze-and-excite, activation, stride)
    for k, e, c, se, act, s in ((3, 16, 16, 0, "relu", 1), (3, 64, 24, 0, "relu", 2), (3, 72, 24, 0, "relu", 1),
                                (5, 72, 40, 1, "relu", 2), (5, 120, 40, 1, "relu", 1), (5, 120, 40, 1, "relu", 1),
                                (3, 240, 80, 0, "hswish", 2), (3, 200, 80, 0, "hswish", 1),
                                (3, 184, 80, 0, "hswish", 1), (3, 184, 80, 0, "hswish", 1),
                                (3, 480, 112, 1, "hswish", 1), (3, 672, 112, 1, "hswish", 1),
                                (5, 672, 160, 1, "hswish", 2), (5, 960, 160, 1, "hswish", 1),
                                (5, 960, 160, 1, "hswish", 1)):
        y = _act(net, net.bn(net.conv(x, cin, e, 1), e), act) if e != cin else x
        y = _act(net, net.bn(net.conv(y, e, e, k, s, groups=e), e), act)
        if se:
            y = _squeeze_excite(net, y, e, _divisible(e / 4), "relu", "hard_sigmoid")
        y = net.bn(net.conv(y, e, c, 1), c)
        x = net.node("Add", [y, x]) if s == 1 and cin == c else y
        cin = c
    x = _act(net, net.bn(net.conv(x, cin, 960, 1), 960), "hswish")
    x = net.node("GlobalAveragePool", [x])
    x = _act(net, net.conv(x, 960, 1280, 1, bias=True), "hswish")
    return net.model(net.gemm(net.node("Flatten", [x], axis=1), 1280, classes))


def _cbs(net: OnnxNet, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
    """Conv, batch norm, SiLU: YOLO's basic block."""
    return _act(net, net.bn(net.conv(x, cin, cout, k, stride), cout), "silu")


def _c2f(net: OnnxNet, x: str, cin: int, cout: int, n: int, shortcut: bool) -> str:
    """YOLOv8's C2f: a 1x1 conv, its halves through n bottlenecks (each kept), concatenated, a 1x1 conv.
    The split is written as two 1x1 convs (Sieve has no Split)."""
    half = cout // 2
    a, b = _cbs(net, x, cin, half, 1), _cbs(net, x, cin, half, 1)
    outs = [a, b]
    for _ in range(n):
        y = _cbs(net, _cbs(net, outs[-1], half, half, 3), half, half, 3)
        outs.append(net.node("Add", [outs[-1], y]) if shortcut else y)
    return _cbs(net, net.node("Concat", outs, axis=1), half * (n + 2), cout, 1)


def yolo_like(size: int = 320, classes: int = 80, seed: int = 0):
    """A YOLOv8n-style detector (Jocher et al. 2023): SiLU everywhere, C2f blocks, SPPF (max pools
    concatenated), an upsampling neck (Resize nearest x2, as nn.Upsample exports it, and Concat of
    tensors with different scales) and three 1x1 detection heads (boxes and classes per cell)."""
    net = OnnxNet("yolo_like", (1, 3, size, size), seed)
    x = _cbs(net, "input", 3, 16, 3, 2)
    x = _cbs(net, x, 16, 32, 3, 2)
    x = _c2f(net, x, 32, 32, 1, True)
    x = _cbs(net, x, 32, 64, 3, 2)
    p3 = _c2f(net, x, 64, 64, 2, True)
    x = _cbs(net, p3, 64, 128, 3, 2)
    p4 = _c2f(net, x, 128, 128, 2, True)
    x = _cbs(net, p4, 128, 256, 3, 2)
    x = _c2f(net, x, 256, 256, 1, True)
    s = _cbs(net, x, 256, 128, 1)                               # SPPF
    m1 = net.node("MaxPool", [s], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    m2 = net.node("MaxPool", [m1], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    m3 = net.node("MaxPool", [m2], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    p5 = _cbs(net, net.node("Concat", [s, m1, m2, m3], axis=1), 512, 256, 1)

    def up(t: str) -> str:
        scales = net._init(net._name("scales"), np.array([1, 1, 2, 2], np.float32))
        return net.node("Resize", [t, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                        nearest_mode="floor")

    n4 = _c2f(net, net.node("Concat", [up(p5), p4], axis=1), 384, 128, 1, False)
    n3 = _c2f(net, net.node("Concat", [up(n4), p3], axis=1), 192, 64, 1, False)
    heads = []
    for t, c in ((n3, 64), (n4, 128), (p5, 256)):
        heads.append(net.conv(_cbs(net, t, c, 64, 3), 64, 4 * 16 + classes, 1, bias=True))
    return net.model_multi(heads)


# ---------------------------------------------------------------- transformers

def _linear(net: OnnxNet, x: str, din: int, dout: int) -> str:
    """nn.Linear as PyTorch exports it on [B, T, D]: MatMul by the transposed weight, then Add of the bias."""
    name = net._name("linear")
    w = net._init(name + ".w", net.rng.standard_normal((din, dout)) * np.sqrt(1.0 / din))
    b = net._init(name + ".b", net.rng.standard_normal(dout) * 0.02)
    return net.node("Add", [net.node("MatMul", [x, w]), b])


def _layernorm(net: OnnxNet, x: str, d: int) -> str:
    name = net._name("ln")
    g = net._init(name + ".gamma", 1 + 0.1 * net.rng.standard_normal(d))
    b = net._init(name + ".beta", 0.05 * net.rng.standard_normal(d))
    return net.node("LayerNormalization", [x, g, b], axis=-1, epsilon=1e-5)


def _gelu(net: OnnxNet, x: str) -> str:
    """nn.GELU as PyTorch exports it: x · 0.5 · (1 + erf(x / sqrt 2))."""
    c = {k: net._init(net._name("c"), np.float32(v)) for k, v in (("s", np.sqrt(2.0)), ("one", 1.0), ("h", 0.5))}
    e = net.node("Add", [net.node("Erf", [net.node("Div", [x, c["s"]])]), c["one"]])
    return net.node("Mul", [x, net.node("Mul", [e, c["h"]])])


def _attention(net: OnnxNet, x: str, t: int, d: int, heads: int) -> str:
    """Multi-head self-attention as a hand-written PyTorch module exports it: q, k, v projections,
    heads split by Reshape [B, T, H, d] and Transpose, Q·Kᵀ / sqrt(d), Softmax, P·V, heads merged back."""
    hd = d // heads
    shape4 = net._init(net._name("shape"), np.array([1, t, heads, hd], np.int64))
    shape3 = net._init(net._name("shape"), np.array([1, t, d], np.int64))

    def split(y: str, perm: list[int]) -> str:
        return net.node("Transpose", [net.node("Reshape", [y, shape4])], perm=perm)

    q = split(_linear(net, x, d, d), [0, 2, 1, 3])
    k = split(_linear(net, x, d, d), [0, 2, 3, 1])                       # Kᵀ: [B, H, d, T]
    v = split(_linear(net, x, d, d), [0, 2, 1, 3])
    scale = net._init(net._name("c"), np.float32(np.sqrt(hd)))
    p = net.node("Softmax", [net.node("Div", [net.node("MatMul", [q, k]), scale])], axis=-1)
    ctx = net.node("Transpose", [net.node("MatMul", [p, v])], perm=[0, 2, 1, 3])
    return _linear(net, net.node("Reshape", [ctx, shape3]), d, d)


def bert(layers: int = 12, dim: int = 768, heads: int = 12, ff: int = 3072, size: int = 128, seed: int = 0,
         name: str = "bert_base"):
    """A BERT encoder (Devlin et al. 2019): post-LayerNorm layers of self-attention and a GELU feed-forward
    block, on the embedded sequence [1, size, dim] (the token, position and segment embeddings summed:
    the lookup by token id is a host step, docs/onnx.md); the output is the last hidden state."""
    net = OnnxNet(name, (1, size, dim), seed)
    x = _layernorm(net, "input", dim)
    for _ in range(layers):
        x = _layernorm(net, net.node("Add", [x, _attention(net, x, size, dim, heads)]), dim)
        y = _linear(net, _gelu(net, _linear(net, x, dim, ff)), ff, dim)
        x = _layernorm(net, net.node("Add", [x, y]), dim)
    return net.model(x)


def bert_base(size: int = 128, seed: int = 0):
    return bert(12, 768, 12, 3072, size, seed, "bert_base")


def bert_tiny(size: int = 32, seed: int = 0):
    """BERT-Tiny's shape (Turc et al. 2019): 2 layers, 128 features, 2 heads."""
    return bert(2, 128, 2, 512, size, seed, "bert_tiny")


def vit_tiny(size: int = 224, classes: int = 1000, seed: int = 0, patch: int = 16, dim: int = 192,
             depth: int = 12, heads: int = 3):
    """ViT-Ti/16 (Dosovitskiy et al. 2021; Touvron et al. 2021): a patch embedding conv, learned position
    embeddings, pre-LayerNorm blocks, and the mean of the tokens (instead of a class token) into the head."""
    net = OnnxNet("vit_tiny", (1, 3, size, size), seed)
    n = (size // patch) ** 2
    x = net.conv("input", 3, dim, patch, patch, pad=0, bias=True)
    x = net.node("Reshape", [x, net._init(net._name("shape"), np.array([1, dim, n], np.int64))])
    x = net.node("Transpose", [x], perm=[0, 2, 1])                          # [1, N, D] tokens
    x = net.node("Add", [x, net._init(net._name("pos"), net.rng.standard_normal((1, n, dim)) * 0.1)])
    for _ in range(depth):
        x = net.node("Add", [x, _attention(net, _layernorm(net, x, dim), n, dim, heads)])
        y = _linear(net, _gelu(net, _linear(net, _layernorm(net, x, dim), dim, 4 * dim)), 4 * dim, dim)
        x = net.node("Add", [x, y])
    x = net.node("ReduceMean", [_layernorm(net, x, dim)], axes=[1], keepdims=0)
    return net.model(net.gemm(x, dim, classes))
