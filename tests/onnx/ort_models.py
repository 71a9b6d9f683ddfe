"""Small ONNX models built in code, and onnxruntime as the oracle."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 9          # what the installed onnxruntime reads


def finish(nodes, inputs, outputs, inits, opset: int = 17, ms: bool = False) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = IR_VERSION
    return model


def ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def elem(dtype) -> int:
    return TensorProto.UINT8 if np.dtype(dtype) == np.uint8 else TensorProto.INT8


def qlinearconv(x_shape, k, kernel, stride, pad, group, act_dtype, per_channel, rng, zp_extreme=False):
    c = x_shape[1]
    lo, hi = (0, 255) if act_dtype == np.uint8 else (-128, 127)
    w = rng.integers(-127, 128, (k, c // group, kernel, kernel)).astype(np.int8)
    xs = np.float32(10 ** rng.uniform(-3, -1))
    ws = (10 ** rng.uniform(-3, -1, k if per_channel else 1)).astype(np.float32)
    ys = np.float32(10 ** rng.uniform(-2, 0))
    xz = act_dtype(hi if zp_extreme else rng.integers(lo, hi + 1))
    yz = act_dtype(lo if zp_extreme else rng.integers(lo, hi + 1))
    inits = {"xs": xs, "xz": np.array(xz, act_dtype), "w": w, "ws": ws,
             "wz": np.zeros(ws.shape, np.int8), "ys": ys, "yz": np.array(yz, act_dtype),
             "b": rng.integers(-5000, 5000, k).astype(np.int32)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, group=group)
    x_info = helper.make_tensor_value_info("x", elem(act_dtype), list(x_shape))
    y_info = helper.make_tensor_value_info("y", elem(act_dtype), None)
    x = rng.integers(lo, hi + 1, x_shape).astype(act_dtype)
    return finish([node], [x_info], [y_info], inits), x


def qlinearmatmul(m, kdim, n, act_dtype, per_column, rng, zp_extreme=False):
    lo, hi = (0, 255) if act_dtype == np.uint8 else (-128, 127)
    b = rng.integers(-127, 128, (kdim, n)).astype(np.int8)
    inits = {"as": np.float32(10 ** rng.uniform(-3, -1)), "az": np.array(hi if zp_extreme else
                                                                          rng.integers(lo, hi + 1), act_dtype),
             "b": b, "bs": (10 ** rng.uniform(-3, -1, n if per_column else 1)).astype(np.float32),
             "bz": np.zeros(n if per_column else 1, np.int8), "ys": np.float32(10 ** rng.uniform(-2, 0)),
             "yz": np.array(lo if zp_extreme else rng.integers(lo, hi + 1), act_dtype)}
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    a_info = helper.make_tensor_value_info("a", elem(act_dtype), [m, kdim])
    y_info = helper.make_tensor_value_info("y", elem(act_dtype), None)
    a = rng.integers(lo, hi + 1, (m, kdim)).astype(act_dtype)
    return finish([node], [a_info], [y_info], inits), a
