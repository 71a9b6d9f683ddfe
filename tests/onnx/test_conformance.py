"""The ONNX project's own conformance cases for the quantized ops, rebuilt offline by
onnx.backend.test.case.node.collect_testcases(): every QLinearConv, QLinearMatMul, ConvInteger and
MatMulInteger case with int8 or uint8 data, through the integer reference and the simulator."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import numpy_helper

from sieve.arch import decode_program, encode_program, load_arch
from sieve.codegen import generate
from sieve.frontend import import_model
from sieve.ir import run_int, verify
from sieve.scheduler import schedule
from sieve.simulator import run
from tests.helpers import small_arch

OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger")


def _cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    out = []
    for c in cases:
        if c.model.graph.node[0].op_type in OPS and len(c.model.graph.node) == 1:
            data = [np.asarray(v) for v in c.data_sets[0][0]]
            if data[0].dtype in (np.int8, np.uint8):
                out.append(c)
    return out


CASES = _cases()


def test_every_integer_case_is_collected():
    names = {c.name for c in CASES}
    assert {"test_qlinearconv", "test_convinteger_with_padding", "test_convinteger_without_padding",
            "test_matmulinteger"} <= names
    assert sum("qlinearmatmul" in n for n in names) == 8


def _frozen(case):
    """The model with every input but the first frozen as a constant (weights are compiled in)."""
    model = type(case.model)()
    model.CopyFrom(case.model)
    ins = case.data_sets[0][0]
    for inp, value in list(zip(model.graph.input, ins))[1:]:
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), inp.name))
    while len(model.graph.input) > 1:
        model.graph.input.pop()
    return model


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("arch", [load_arch("default"), small_arch(pe_rows=1, simd_lanes=2)],
                         ids=["default", "tiny"])
def test_conformance_case_bitexact(case, arch):
    ins, outs = case.data_sets[0]
    want = np.asarray(outs[0])
    graph = verify(import_model(_frozen(case), case.name))
    x = np.asarray(ins[0])
    program = decode_program(encode_program(generate(schedule(graph, arch))))
    result = run(program, {program.inputs[0].name: x})
    got = result.model_outputs()[program.outputs[0].name]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    stored = x if x.dtype == np.int8 else (x.astype(np.int16) - 128).astype(np.int8)
    ref = run_int(graph, {graph.inputs[0].name: stored})[graph.outputs[0]]
    np.testing.assert_array_equal(program.outputs[0].to_model(ref), want)
