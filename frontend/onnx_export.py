"""QDQ export: the integer graph Sieve compiles, as an ONNX model that onnxruntime runs to exactly
Sieve's integers (with its default session options, on x86-64).

Each int8 tensor becomes a QuantizeLinear of its float value, read by one DequantizeLinear per
consumer; weights are int8 per output channel (zero point 0) behind a DequantizeLinear, biases
int32 at scale s_in * s_w. onnxruntime fuses every group into its integer kernels (QLinearConv,
QGemm, QLinearAdd, QLinearGlobalAveragePool, QLinearConcat, integer MaxPool).

Activations are written as uint8 (Sieve's int8 + 128, the same integers): onnxruntime's x86 CPU
provider fuses int8 QDQ convolutions only where it can convert a tensor to uint8, which it cannot
for a tensor with several consumers (a residual block's input), and runs those in float. The model
records ``sieve.activations = int8`` in its metadata, so that Sieve reads the tensors back as int8
and compiling the file gives the same binary as compiling the float model.
"""
from __future__ import annotations

import numpy as np

from sieve.frontend.errors import FrontendError
from sieve.ir.graph import Graph, Node, Op
from sieve.ir.registry import act_bounds, add_arith, move_view, opdef
from sieve.ir.types import DType

OPSET = 17
IR_VERSION = 9                      # readable by the onnxruntime versions Sieve is tested against
METADATA_KEY = "sieve.activations"  # "int8": uint8 tensors are Sieve's int8 + 128


class _Writer:
    def __init__(self, graph: Graph):
        from onnx import TensorProto, helper, numpy_helper
        self.g, self.helper, self.nh, self.TP = graph, helper, numpy_helper, TensorProto
        self.nodes, self.inits = [], []
        self.q: dict[str, str] = {}                # int8 tensor -> its QuantizeLinear output (uint8)
        self.uses: dict[str, int] = {}

    def error(self, node: Node, message: str) -> FrontendError:
        return FrontendError(f"layer '{node.name}' ({node.op.value}): {message}", "<QDQ export>")

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.nh.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def quantize(self, tensor: str, float_value: str) -> None:
        """float_value -> QuantizeLinear (uint8, the tensor's scale) named tensor_q."""
        q = self.g[tensor].out.quant
        s = self.init(f"{tensor}.scale", np.float32(q.scale[0]))
        z = self.init(f"{tensor}.zero_point", np.uint8(q.zp + 128))
        self.q[tensor] = self.node("QuantizeLinear", [float_value, s, z], f"{tensor}_q")

    def dequantize(self, tensor: str, output: str | None = None) -> str:
        """A DequantizeLinear of an int8 tensor, one per consumer."""
        i = self.uses[tensor] = self.uses.get(tensor, 0) + 1
        return self.node("DequantizeLinear", [self.q[tensor], f"{tensor}.scale", f"{tensor}.zero_point"],
                         output or f"{tensor}_dq{i}")

    def weights(self, node: Node, s_in: float) -> list[str]:
        """DequantizeLinear of int8 weights [K, ...] per output channel, and of the int32 bias."""
        w = node.params["w"]
        if w.dtype != np.int8 or "w_scale" not in node.params:
            raise self.error(node, "only int8 weights with their per-channel scales can be exported")
        s_w = node.params["w_scale"].astype(np.float32)
        k = w.shape[0]
        n = node.name
        wq = self.node("DequantizeLinear", [self.init(f"{n}.w", w), self.init(f"{n}.w_scale", s_w),
                                            self.init(f"{n}.w_zero_point", np.zeros(k, np.int8))],
                       f"{n}.w_dq", axis=0)
        b_scale = (np.float32(s_in) * s_w).astype(np.float32)
        bq = self.node("DequantizeLinear", [self.init(f"{n}.b", node.params["b"].astype(np.int32)),
                                            self.init(f"{n}.b_scale", b_scale),
                                            self.init(f"{n}.b_zero_point", np.zeros(k, np.int32))],
                       f"{n}.b_dq", axis=0)
        return [wq, bq]

    def activation(self, node: Node, value: str) -> str:
        """A fused ReLU/Clip is exported only when it is not already the int8 saturation (then
        onnxruntime would compute it in float): Sieve's own quantizer never needs one."""
        if node.attrs.get("act", "none") != "none" and act_bounds(node) != (-128, 127):
            raise self.error(node, "its fused activation clips inside the int8 range; onnxruntime would "
                             "run it in float, so the export could not match")
        return value


def _export_tokens(w: _Writer, graph: Graph, node: Node, f: str) -> str:
    """A dense layer on tokens [B, T, C]: the quantized tokens reshaped to rows [B·T, C] (uint8: no
    rounding), the 2-D layer exported as it is (onnxruntime's QGemm, bit-exact), its quantized output
    reshaped back to [B, T, K] and dequantized."""
    x = graph[node.inputs[0]].out
    b, t, c = x.shape
    k = node.out.shape[-1]
    n = node.name
    rows = w.node("Reshape", [w.q[node.inputs[0]], w.init(f"{n}.rows", np.array([b * t, c], np.int64))],
                  f"{n}__rows_q")
    xf = w.node("DequantizeLinear", [rows, f"{node.inputs[0]}.scale", f"{node.inputs[0]}.zero_point"],
                f"{n}__rows")
    value = w.activation(node, w.node("Gemm", [xf] + w.weights(node, x.quant.scale[0]), f"{n}__gemm", transB=1))
    q = node.out.quant
    s = w.init(f"{n}.gemm_scale", np.float32(q.scale[0]))
    z = w.init(f"{n}.gemm_zero_point", np.uint8(q.zp + 128))
    yq = w.node("QuantizeLinear", [value, s, z], f"{n}__gemm_q")
    back = w.node("Reshape", [yq, w.init(f"{n}.tokens", np.array([b, t, k], np.int64))], f"{n}__tokens_q")
    return w.node("DequantizeLinear", [back, s, z], f)


def _export_matmul(w: _Writer, graph: Graph, node: Node, f: str) -> str:
    ins = node.inputs
    if node.op is Op.DENSE and len(graph[ins[0]].out.shape) == 3 and node.params["w"].ndim == 2:
        return _export_tokens(w, graph, node, f)
    if node.op is Op.DENSE and len(graph[ins[0]].out.shape) != 2:
        raise w.error(node, "a batched (3-D) matmul with weights per batch cannot be exported")
    args = [w.dequantize(ins[0])] + w.weights(node, graph[ins[0]].out.quant.scale[0])
    if node.op is Op.CONV2D:
        a = node.attrs
        value = w.node("Conv", args, f, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                       pads=list(a["pad"]), dilations=list(a["dilation"]), group=int(a.get("groups", 1)))
    else:
        value = w.node("Gemm", args, f, transB=1)
    return w.activation(node, value)


def _export_binary(kind: str):
    def export(w: _Writer, graph: Graph, node: Node, f: str) -> str:
        if add_arith(node) != "u8":
            raise w.error(node, f"its {add_arith(node)} arithmetic (an imported model's) cannot be written so "
                          "that onnxruntime computes it the same way")
        return w.activation(node, w.node(kind, [w.dequantize(i) for i in node.inputs], f))
    return export


def _export_plain(kind: str, **fixed):
    def export(w: _Writer, graph: Graph, node: Node, f: str) -> str:
        a = node.attrs
        attrs = dict(fixed)
        if node.op is Op.MAXPOOL:
            attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=list(a["pad"]))
        return w.node(kind, [w.dequantize(i) for i in node.inputs], f, **attrs)
    return export


# Sieve's element-wise functions as the ONNX ops onnxruntime computes them with (numerics.tables)
_LUT_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "hard_sigmoid": "HardSigmoid", "hard_swish": "HardSwish",
            "leaky_relu": "LeakyRelu"}


# a pointwise chain's operators as ONNX ops (numerics.tables.expression); GELU as PyTorch exports it by erf
_EXPR_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow", "min": "Min", "max": "Max",
             "erf": "Erf", "tanh": "Tanh", "sigmoid": "Sigmoid", "exp": "Exp", "sqrt": "Sqrt", "neg": "Neg",
             "abs": "Abs", "relu": "Relu", "reciprocal": "Reciprocal", "softplus": "Softplus"}
_PROGRAMS = {"gelu": "x x 1.4142135381698608 div erf 1.0 add mul 0.5 mul",
             "gelu_tanh": "x 0.5 mul x x x mul x mul 0.044715 mul add 0.7978845834732056 mul tanh 1.0 add mul",
             "silu": "x x sigmoid mul"}


def _export_program(w: _Writer, node: Node, x: str, program: str, f: str) -> str:
    """A postfix program of x as ONNX nodes, its last one named f."""
    stack, toks = [], program.split()
    for i, tok in enumerate(toks):
        out = f if i == len(toks) - 1 else f"{node.name}__e{i}"
        name, *args = tok.split(":")
        if tok == "x":
            stack.append(x)
        elif tok in _EXPR_OPS and tok in ("add", "sub", "mul", "div", "pow", "min", "max"):
            b, a = stack.pop(), stack.pop()
            stack.append(w.node(_EXPR_OPS[tok], [a, b], out))
        elif tok in _EXPR_OPS:
            stack.append(w.node(_EXPR_OPS[tok], [stack.pop()], out))
        elif name in _LUT_OPS:
            attrs = dict(zip(("alpha", "beta"), (float(a) for a in args)))
            stack.append(w.node(_LUT_OPS[name], [stack.pop()], out, **attrs))
        else:
            stack.append(w.init(f"{node.name}__c{i}", np.float32(float(tok))))
    if stack[-1] != f:                                # the program is x itself or a constant
        return w.node("Identity", [stack[-1]], f)
    return f


def _export_lut(w: _Writer, graph: Graph, node: Node, f: str) -> str:
    x = w.dequantize(node.inputs[0])
    fn = node.attrs["fn"]
    if fn in _PROGRAMS or fn == "expr":               # as PyTorch exports them: a chain of float ops
        return _export_program(w, node, x, node.attrs["program"] if fn == "expr" else _PROGRAMS[fn], f)
    params = {k: v for k, v in node.attrs.items() if k in ("alpha", "beta")}
    return w.node(_LUT_OPS[fn], [x], f, **params)


def _export_bmm(w: _Writer, graph: Graph, node: Node, f: str) -> str:
    a, b = (w.dequantize(i) for i in node.inputs)
    if node.attrs.get("transpose_b"):
        rank = len(graph[node.inputs[1]].out.shape)
        b = w.node("Transpose", [b], f"{node.name}__bt", perm=list(range(rank - 2)) + [rank - 1, rank - 2])
    return w.node("MatMul", [a, b], f)


def _export_layernorm(w: _Writer, graph: Graph, node: Node, f: str) -> str:
    """LayerNormalization with the float gamma and beta the integer ones stand for (onnxruntime computes it
    in float, Sieve in integers: results can differ by a step)."""
    p = opdef(node.op).dequantize(node, [graph[i].out for i in node.inputs])
    gamma, beta = w.init(f"{node.name}.gamma", p["gamma"]), w.init(f"{node.name}.beta", p["beta"])
    return w.node("LayerNormalization", [w.dequantize(node.inputs[0]), gamma, beta], f, axis=-1,
                  epsilon=float(node.attrs.get("eps", 1e-5)))


def _export_move(w: _Writer, graph: Graph, node: Node, f: str) -> str:
    """The view as a Gather of the flattened input by the view's element indices."""
    x = graph[node.inputs[0]].out
    idx = move_view(node, np.arange(x.size, dtype=np.int64)).reshape(node.attrs["to"])
    flat = w.node("Reshape", [w.dequantize(node.inputs[0]), w.init(f"{node.name}.flat", np.array([-1], np.int64))],
                  f"{node.name}__flat")
    return w.node("Gather", [flat, w.init(f"{node.name}.indices", np.ascontiguousarray(idx))], f, axis=0)


def _export_resize(w: _Writer, graph: Graph, node: Node, f: str) -> str:
    sh, sw = node.attrs["scale"]
    scales = w.init(f"{node.name}.scales", np.array([1, 1, sh, sw], np.float32))
    if node.attrs.get("mode") == "linear":          # onnxruntime interpolates in float: within a step of Sieve
        return w.node("Resize", [w.dequantize(node.inputs[0]), "", scales], f, mode="linear",
                      coordinate_transformation_mode=node.attrs["coord"])
    return w.node("Resize", [w.dequantize(node.inputs[0]), "", scales], f, mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")


# one exporter per op: the float ONNX value of the node, between its inputs' DequantizeLinear and its
# QuantizeLinear
EXPORT = {Op.CONV2D: _export_matmul, Op.DENSE: _export_matmul, Op.ADD: _export_binary("Add"),
          Op.MUL: _export_binary("Mul"), Op.MAXPOOL: _export_plain("MaxPool"), Op.RELU: _export_plain("Relu"),
          Op.FLATTEN: _export_plain("Flatten", axis=1), Op.GLOBALAVGPOOL: _export_plain("GlobalAveragePool"),
          Op.CONCAT: _export_plain("Concat", axis=1), Op.LUT: _export_lut, Op.RESIZE: _export_resize,
          Op.QSOFTMAX: _export_plain("Softmax", axis=-1), Op.BMM: _export_bmm, Op.LAYERNORM: _export_layernorm,
          Op.MOVE: _export_move}


def export_qdq(graph: Graph):
    """An int8 Graph -> onnx.ModelProto (QDQ, uint8 activations, metadata sieve.activations=int8)."""
    from onnx import helper
    w = _Writer(graph)
    for node in graph:
        n = node.name
        if node.op is Op.INPUT:
            if node.out.dtype is not DType.INT8:
                raise w.error(node, "the graph is not quantized")
            w.quantize(n, graph.io_name(n))
            continue
        if node.op is Op.CONST:                       # an initializer of its uint8 values
            q = node.out.quant
            w.init(f"{n}.scale", np.float32(q.scale[0]))
            w.init(f"{n}.zero_point", np.uint8(q.zp + 128))
            w.q[n] = w.init(f"{n}_q", (node.params["value"].astype(np.int16) + 128).astype(np.uint8))
            continue
        if opdef(node.op).scale == "host":
            continue                                  # on the host, after the graph output (below)
        if node.out.dtype is not DType.INT8:
            raise w.error(node, "raw int32 outputs cannot be exported as QDQ")
        if node.op not in EXPORT:
            raise w.error(node, "has no QDQ form that onnxruntime computes as Sieve does (windowed average "
                          "pooling, for one)")
        # the float value is named as the node (the importer names the integer node after it); a graph
        # output's name goes to its final DequantizeLinear instead
        w.quantize(n, EXPORT[node.op](w, graph, node, f"{n}__f" if n in graph.outputs else n))
    outputs = []
    for o in graph.outputs:
        node = graph[o]
        name = graph.io_name(o)
        if opdef(node.op).scale == "host":
            w.node("Softmax", [w.dequantize(node.inputs[0])], name, axis=-1)
        else:
            w.dequantize(o, name)
        outputs.append(helper.make_tensor_value_info(name, w.TP.FLOAT, list(node.out.shape)))
    inputs = [helper.make_tensor_value_info(graph.io_name(n.name), w.TP.FLOAT, list(n.out.shape))
              for n in graph.inputs]
    onnx_graph = helper.make_graph(w.nodes, graph.name, inputs, outputs, w.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sieve",
                              doc_string="Quantized by Sieve: int8 activations per tensor (written as uint8 = "
                                         "int8 + 128), int8 weights per output channel, int32 biases")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {METADATA_KEY: "int8"})
    return model
