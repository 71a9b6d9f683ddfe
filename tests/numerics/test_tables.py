"""The lookup tables equal onnxruntime on every int8/uint8 input value, for any scales."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from sieve_numerics.tables import apply_table, build_table
from tests.onnx.ort_models import elem, finish, ort_run

# op as the model holds it (between DequantizeLinear and QuantizeLinear) -> (table name, attributes)
CASES = {
    "Sigmoid": ("sigmoid", {}),
    "Tanh": ("tanh", {}),
    "HardSigmoid": ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
    "HardSwish": ("hard_swish", {}),
    "LeakyRelu": ("leaky_relu", {"alpha": 0.1}),
    "SiLU": ("silu", {}),
}


def _model(op: str, attrs: dict, sx, zx, sy, zy, dtype):
    inits = {"sx": np.float32(sx), "zx": np.array(zx, dtype), "sy": np.float32(sy), "zy": np.array(zy, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["xf"])]
    if op == "SiLU":                                   # as PyTorch exports nn.SiLU
        nodes += [helper.make_node("Sigmoid", ["xf"], ["sg"]), helper.make_node("Mul", ["xf", "sg"], ["yf"])]
    else:
        nodes.append(helper.make_node(op, ["xf"], ["yf"], **attrs))
    nodes.append(helper.make_node("QuantizeLinear", ["yf", "sy", "zy"], ["y"]))
    return finish(nodes, [helper.make_tensor_value_info("x", elem(dtype), [1, 256])],
                  [helper.make_tensor_value_info("y", elem(dtype), [1, 256])], inits)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(sorted(CASES)), sx=st.floats(1e-3, 0.3), sy=st.floats(1e-3, 0.05),
       zx=st.integers(-128, 127), zy=st.integers(-128, 127), uint8=st.booleans())
def test_table_equals_onnxruntime_on_all_256_values(op, sx, sy, zx, zy, uint8):
    name, attrs = CASES[op]
    sx, sy = float(np.float32(sx)), float(np.float32(sy))
    dtype, off = (np.uint8, 128) if uint8 else (np.int8, 0)
    x = (np.arange(-128, 128) + off).astype(dtype).reshape(1, 256)
    (want,) = ort_run(_model(op, attrs, sx, zx + off, sy, zy + off, dtype), {"x": x})
    # Sieve stores a uint8 tensor as int8 = uint8 - 128, its zero point shifted alike
    stored = (x.astype(np.int16) - off).astype(np.int8)
    got = apply_table(stored, build_table(name, attrs, sx, zx, sy, zy))
    np.testing.assert_array_equal(got.astype(np.int16) + off, want.astype(np.int16))


def test_tables_saturate_and_are_monotone_where_the_function_is():
    t = build_table("sigmoid", {}, 0.1, 0, 1 / 256, -128)
    assert t[0] == -128 + 0 and t[-1] == 127 and np.all(np.diff(t.astype(int)) >= 0)
    assert np.all(np.diff(build_table("tanh", {}, 0.05, 0, 1 / 128, 0).astype(int)) >= 0)


@settings(max_examples=40, deadline=None)
@given(sx=st.floats(1e-3, 0.3), d=st.integers(1, 300), zx=st.integers(-128, 127), uint8=st.booleans(),
       seed=st.integers(0, 2**16))
def test_softmax_rows_equal_onnxruntime(sx, d, zx, uint8, seed):
    """DequantizeLinear -> Softmax -> QuantizeLinear (onnxruntime fuses it into QLinearSoftmax) on random
    rows: the integer rule gives onnxruntime's integers."""
    from sieve_numerics.integer import qlinear_softmax, qlinear_softmax_table
    sx = float(np.float32(sx))
    dtype, off = (np.uint8, 128) if uint8 else (np.int8, 0)
    zy = -128 + off
    inits = {"sx": np.float32(sx), "zx": np.array(zx + off, dtype), "sy": np.float32(1 / 256),
             "zy": np.array(zy, dtype)}
    nodes = [helper.make_node("DequantizeLinear", ["x", "sx", "zx"], ["xf"]),
             helper.make_node("Softmax", ["xf"], ["p"], axis=-1),
             helper.make_node("QuantizeLinear", ["p", "sy", "zy"], ["y"])]
    model = finish(nodes, [helper.make_tensor_value_info("x", elem(dtype), [6, d])],
                   [helper.make_tensor_value_info("y", elem(dtype), [6, d])], inits)
    x = np.random.default_rng(seed).integers(-128, 128, (6, d)).astype(np.int16)
    (want,) = ort_run(model, {"x": (x + off).astype(dtype)})
    got = qlinear_softmax(x.astype(np.int8), qlinear_softmax_table(sx, d), 1 / 256, zy - off, uint8)
    np.testing.assert_array_equal(got.astype(np.int16) + off, want.astype(np.int16))
