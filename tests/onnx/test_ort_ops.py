"""Seeded random QLinearConv / QLinearMatMul models against onnxruntime, exact: per-channel
scales, zero points at the extremes, saturation, uint8 and int8 activations."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieve.arch import load_arch
from sieve.codegen import generate
from sieve.frontend import import_model
from sieve.ir import verify
from sieve.scheduler import schedule
from sieve.simulator import run
from tests.helpers import small_arch
from tests.onnx.ort_models import ort_run, qlinearconv, qlinearmatmul

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ARCHS = st.sampled_from([load_arch("default"), load_arch("edge"), small_arch(3, 4, 8192, 2048, 4)])


def _sieve(model, x, arch):
    graph = verify(import_model(model))
    program = generate(schedule(graph, arch))
    result = run(program, {program.inputs[0].name: x})
    return result.model_outputs()[program.outputs[0].name]


@SETTINGS
@given(arch=ARCHS, c=st.integers(1, 12), k=st.integers(1, 20), hw=st.integers(3, 10), kernel=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), pad=st.integers(0, 1), uint8=st.booleans(), per_channel=st.booleans(),
       extreme=st.booleans(), seed=st.integers(0, 2**16))
def test_qlinearconv_matches_onnxruntime(arch, c, k, hw, kernel, stride, pad, uint8, per_channel, extreme, seed):
    rng = np.random.default_rng(seed)
    model, x = qlinearconv((1, c, hw, hw), k, kernel, stride, pad, 1, np.uint8 if uint8 else np.int8,
                           per_channel, rng, extreme)
    want = ort_run(model, {"x": x})[0]
    got = _sieve(model, x, arch)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(arch=ARCHS, c=st.integers(2, 16), hw=st.integers(3, 9), uint8=st.booleans(), seed=st.integers(0, 2**16))
def test_qlinearconv_depthwise_matches_onnxruntime(arch, c, hw, uint8, seed):
    rng = np.random.default_rng(seed)
    model, x = qlinearconv((1, c, hw, hw), c, 3, 1, 1, c, np.uint8 if uint8 else np.int8, True, rng)
    np.testing.assert_array_equal(_sieve(model, x, arch), ort_run(model, {"x": x})[0])


@SETTINGS
@given(arch=ARCHS, m=st.integers(1, 9), kdim=st.integers(1, 70), n=st.integers(1, 40), uint8=st.booleans(),
       per_column=st.booleans(), extreme=st.booleans(), seed=st.integers(0, 2**16))
def test_qlinearmatmul_matches_onnxruntime(arch, m, kdim, n, uint8, per_column, extreme, seed):
    rng = np.random.default_rng(seed)
    model, a = qlinearmatmul(m, kdim, n, np.uint8 if uint8 else np.int8, per_column, rng, extreme)
    np.testing.assert_array_equal(_sieve(model, a, arch), ort_run(model, {"a": a})[0])


def test_saturation_is_exercised():
    """Extreme zero points and large scales drive outputs to the rails; they still match."""
    rng = np.random.default_rng(5)
    model, x = qlinearconv((1, 8, 6, 6), 8, 3, 1, 1, 1, np.uint8, True, rng, zp_extreme=True)
    want = ort_run(model, {"x": x})[0]
    assert (want == 0).any() or (want == 255).any()
    np.testing.assert_array_equal(_sieve(model, x, load_arch("default")), want)
