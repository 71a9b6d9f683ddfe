"""A YOLO-style detector (SiLU, C2f, SPPF, an upsampling neck, Concat of tensors with different scales,
three heads) quantized by onnxruntime: the reference equals onnxruntime on every head, the simulator the
reference; Resize's nearest modes that repeat pixels import, the others are refused by name."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import sieve
from sieve.frontend.errors import FrontendError
from tests.onnx import test_ort_defaults as T
from tests.onnx.ort_models import finish, ort_run
from tests.helpers import skip_unless_ort_exact

SIZE = 64


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("detector")


@pytest.mark.parametrize("fmt,act", [("QDQ", "QUInt8"), ("QOperator", "QUInt8"), ("QOperator", "QInt8")])
def test_yolo_like_matches_onnxruntime_on_every_head(workdir, monkeypatch, fmt, act):
    skip_unless_ort_exact(act == "QUInt8")
    import onnxruntime as ort
    monkeypatch.setattr(T, "SIZE", SIZE)
    path = T._quantize(workdir, "yolo_like", fmt, act, True)
    x = np.random.default_rng(1).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    want = [np.concatenate(parts) for parts in zip(*(sess.run(None, {"input": x[i:i + 1]}) for i in range(2)))]
    ref = sieve.interpret(path, x)
    assert len(ref.floats) == 3
    for got, w in zip(ref.floats.values(), want):
        np.testing.assert_array_equal(got, w)
    sim = sieve.simulate(sieve.compile(path, dense_twin=False), x)
    for name, q in ref.outputs.items():
        np.testing.assert_array_equal(sim.model_outputs()[name], q)


def _resize_model(h, w, scale, coord, rounding, mode="nearest"):
    """x -> QuantizeLinear -> DequantizeLinear -> Resize -> QuantizeLinear -> DequantizeLinear -> y."""
    inits = {"scales": np.array([1, 1, scale, scale], np.float32), "s": np.float32(0.05), "z": np.uint8(128)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"]),
             helper.make_node("Resize", ["xf", "", "scales"], ["r"], mode=mode,
                              coordinate_transformation_mode=coord, nearest_mode=rounding),
             helper.make_node("QuantizeLinear", ["r", "s", "z"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "s", "z"], ["y"])]
    return finish(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), scale=st.integers(1, 4),
       coord=st.sampled_from(["asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners",
                              "tf_half_pixel_for_nn"]),
       rounding=st.sampled_from(["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"]),
       seed=st.integers(0, 2**16))
def test_resize_nearest_imports_exactly_or_is_refused(h, w, scale, coord, rounding, seed):
    """Where onnxruntime repeats each pixel, Sieve's result is the same; elsewhere one clear error."""
    model = _resize_model(h, w, scale, coord, rounding)
    x = np.random.default_rng(seed).standard_normal((1, 3, h, w)).astype(np.float32)
    (want,) = ort_run(model, {"x": x})
    xq = (np.clip(np.rint(x / np.float32(0.05)) + 128, 0, 255) - 128) * np.float32(0.05)
    repeats = np.array_equal(want, np.repeat(np.repeat(xq, scale, 2), scale, 3))
    try:
        program = sieve.compile(model, dense_twin=False)
    except FrontendError as err:
        assert not repeats and "Resize" in str(err)
        return
    assert repeats
    (got,) = sieve.simulate(program, {"x": x}).floats.values()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("coord", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"])
def test_bilinear_resize_between_quantizations_is_within_a_step_of_onnxruntime(coord):
    """DequantizeLinear -> Resize (linear) -> QuantizeLinear: Sieve's integer interpolation (10-bit weights)
    and onnxruntime's differ by at most one step; the simulator equals Sieve's reference."""
    model = _resize_model(5, 7, 2, coord, "floor", mode="linear")
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 7)).astype(np.float32) * 3
    (want,) = ort_run(model, {"x": x})
    program = sieve.compile(model, dense_twin=False)
    (got,) = sieve.simulate(program, {"x": x}).floats.values()
    np.testing.assert_array_equal(got, sieve.interpret(model, {"x": x}).floats["y"])
    assert np.abs(got - want).max() <= 0.05 + 1e-6                  # one step (scale 0.05)
    assert np.mean(got == want) > 0.9


def test_cubic_resize_is_refused_by_name():
    with pytest.raises(FrontendError, match="Resize mode 'cubic' is not supported"):
        sieve.compile(_resize_model(4, 4, 2, "half_pixel", "floor", mode="cubic"), dense_twin=False)


def test_yolo_like_quantized_by_sieve_runs_in_onnxruntime_to_sieves_integers(tmp_path):
    """sieve quantize writes the Resize neck, the SiLU tables and the Concat as QDQ; onnxruntime computes
    the same integers on every head, and the file compiles to the same binary as the float model."""
    skip_unless_ort_exact()
    import onnx
    from sieve.arch import encode_program
    rng = np.random.default_rng(0)
    model = sieve.zoo.onnx_model("yolo_like", size=SIZE)
    calib = rng.standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    path = tmp_path / "y.onnx"
    onnx.save(sieve.quantize(model, calibrate=calib), path)
    from_float = sieve.compile(model, calibrate=calib)
    assert encode_program(sieve.compile(path)) == encode_program(from_float)
    x = rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    res = sieve.simulate(from_float, x)
    outs = ort_run(onnx.load(path), {"input": x})
    assert len(outs) == 3
    for got, w in zip(res.floats.values(), outs):
        np.testing.assert_array_equal(got, w)
