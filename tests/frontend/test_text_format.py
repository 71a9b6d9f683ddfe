from __future__ import annotations

import numpy as np
import pytest

from sieve.frontend import FrontendError, ZOO, build, dump_sv, load_sv, parse_sv
from sieve.ir import Op, run_float


# BERT-base's 85 M weights (340 MB of .npz) add nothing BERT-Tiny's same ops do not cover
@pytest.mark.parametrize("name,inline", [(n, False) for n in ZOO if n != "bert_base"] + [("mlp", True), ("lenet5", True)])
def test_zoo_round_trips_through_text(tmp_path, name, inline):
    import inspect
    params = inspect.signature(ZOO[name].onnx).parameters if ZOO[name].onnx else {}
    small = {k: v for k, v in (("size", 32), ("classes", 10)) if k in params}
    g = build(name, seed=3, **small)
    files = dump_sv(g, tmp_path / f"{name}.sv", inline=inline)
    assert len(files) == (1 if inline else 2)
    g2 = load_sv(files[0])
    assert [n.name for n in g2] == [n.name for n in g] and g2.outputs == g.outputs
    x = {i.name: np.random.default_rng(0).standard_normal(i.out.shape).astype(np.float32) for i in g.inputs}
    for k, v in run_float(g, x).items():
        np.testing.assert_array_equal(run_float(g2, x)[k], v)


def test_inline_weights_and_shapes():
    g = parse_sv("""
        model tiny   # a comment
        input x [2, 3]
        h = dense(x, out_features=2, act="relu") -> [2, 2] { w = [[1, 0, -1], [0.5, 0.5, 0.5]] b = [0, 1] }
        // flat weights are reshaped
        y = dense(h, out_features=1) { w = [1, -1] }
        output y
    """)
    assert g.name == "tiny" and g["h"].attrs["act"] == "relu"
    out = run_float(g, {"x": np.array([[1, 2, 3], [0, 0, 0]], np.float32)})["y"]
    np.testing.assert_allclose(out, [[0 - 4.0], [0 - 1.0]])


@pytest.mark.parametrize("text,match", [
    ("model a\ninput x [1, 4]\nd = dense(x, out_features=2 { w = [1] }\noutput d",
     r"m.sv:3:29: syntax error"),
    ("model a\ninput x [1, 4]\nd = dense(x, out_features=2) -> [1, 3] { w = [1,2,3,4,5,6,7,8] }\noutput d",
     r"m.sv:3:1: layer 'd' is declared \[1, 3\] but computes \[1, 2\]"),
    ("model a\ninput x [1, 4]\nd = dense(y, out_features=2) { w = [1,2,3,4,5,6,7,8] }\noutput d",
     r"m.sv:3:1: node 'd': input 'y' is not defined"),
    ("model a\ninput x [1, 4]\nd = frob(x)\noutput d", r"m.sv:3:1: unknown op 'frob'.*supported: conv2d"),
    ("model a\ninput x [1, 4]\nd = dense(x, out_features=2) { w = [1, 2] }\noutput d",
     r"m.sv:3:1: layer 'd': weights have 2 values, expected 8"),
    ("model a\ninput x [1, 4]\nd = dense(x, out_features=2)\noutput d", r"m.sv:3:1: layer 'd' has no weights"),
    ("model a\ninput x [1, 1, 4, 4]\nc = conv2d(x, out_channels=1, kernel=7) { w = [" + ",".join(["1"] * 49) +
     "] }\noutput c", r"m.sv:3:1: .*kernel 7x7 does not fit input 4x4"),
    ("model a\n", r"needs at least one input and one output"),
    ('model a\nweights "missing.npz"\ninput x [1,2]\noutput x', r"m.sv:2:1: cannot read weights file"),
])
def test_errors_report_file_line_column(text, match):
    with pytest.raises(FrontendError, match=match):
        parse_sv(text, "m.sv")


def test_zoo_models_have_expected_size():
    from sieve.ir import macs
    lenet = build("lenet5")
    assert macs(lenet) == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    assert [n.op for n in lenet].count(Op.CONV2D) == 2
    with pytest.raises(FrontendError, match="available: mlp, lenet5, resnet18"):
        build("resnet9000")
