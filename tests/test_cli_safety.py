"""No data loss and no silent wrong answers: an output that is an input is refused, an output whose
extension names another format is refused with a hint, outputs are written atomically, NaN or infinite
weights, inputs and calibration data are refused with the tensor's name, and nothing is left behind."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from sieve import files
from sieve.cli import main
from tests.test_cli import _one_line_error, sieve


@pytest.fixture()
def lenet(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sieve("zoo", "export", "lenet5", "-o", "l.sv", capsys=capsys)
    np.save("x.npy", np.random.default_rng(0).random((2, 1, 32, 32)).astype(np.float32))
    sieve("compile", "l.sv", "--calibrate", "x.npy", "-o", "l.sieve", "-q", capsys=capsys)
    return {p: Path(p).read_bytes() for p in ("l.sv", "l.npz", "l.sieve", "x.npy")}


def _unchanged(before: dict) -> None:
    for path, raw in before.items():
        assert Path(path).read_bytes() == raw, f"{path} was modified"
    assert not list(Path(".").glob(".*.part")), "a temporary file was left behind"


@pytest.mark.parametrize("argv,pattern", [
    (["compile", "l.sv", "-o", "l.sv"], r"l.sv: compile writes a Sieve binary .*'.sv' is the extension of a Sieve text"),
    (["compile", "l.sv", "-o", "l.npz"], r"l.npz: compile writes a Sieve binary"),
    (["compile", "l.sv", "-o", "pruned.onnx"], r"pruned.onnx: .*ONNX model.*hint: `sieve quantize -o MODEL.onnx`"),
    (["compile", "l.sv", "-o", "l.sieve", "--calibrate", "l.sieve"], r"cannot read array file"),
    (["quantize", "l.sv", "-o", "q.sieve"], r"q.sieve: quantize writes an ONNX model.*`sieve compile`"),
    (["disasm", "l.sieve", "-o", "l.sieve"], r"l.sieve: disasm -o writes assembly text"),
    (["run", "l.sieve", "--input", "x.npy", "--output", "x.npy"], r"x.npy: --output writes an array archive"),
    (["run", "l.sieve", "--input", "x.npy", "--stats", "l.sieve"], r"--stats writes JSON"),
    (["run", "l.sieve", "--input", "x.npy", "--output", "o.npz", "--stats", "o.npz"], r"--stats writes JSON"),
    (["interpret", "l.sv", "--input", "x.npy", "--output", "l.npz"], r"l.npz: --output would overwrite an input"),
    (["zoo", "export", "lenet5", "-o", "l.sieve"], r"zoo export writes an ONNX model"),
])
def test_outputs_that_would_destroy_an_input_or_lie_about_their_format_are_refused(lenet, capsys, argv, pattern):
    _, err = sieve(*argv, expect=1, capsys=capsys)
    _one_line_error(err, pattern)
    _unchanged(lenet)


def test_an_output_named_as_an_input_is_refused_whatever_its_extension(lenet, capsys):
    sieve("disasm", "l.sieve", "-o", "l.s", capsys=capsys)
    _, err = sieve("asm", "l.s", "-o", "l.s", expect=1, capsys=capsys)
    _one_line_error(err, r"l.s: asm -o writes a Sieve binary")
    Path("l.s").rename("prog.sieve")                                    # assembly named like a binary
    _, err = sieve("asm", "prog.sieve", "-o", "prog.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"prog.sieve: asm -o would overwrite an input of this command")
    np.savez("io.npz", x=np.load("x.npy"))
    _, err = sieve("run", "l.sieve", "--input", "io.npz", "--output", "io.npz", expect=1, capsys=capsys)
    _one_line_error(err, r"io.npz: --output would overwrite an input of this command")
    _, err = sieve("interpret", "l.sv", "--input", "io.npz", "--output", "io.npz", expect=1, capsys=capsys)
    _one_line_error(err, r"io.npz: --output would overwrite an input")
    Path("sub").mkdir()
    _, err = sieve("interpret", "l.sv", "--input", "io.npz", "--output", "./sub/../io.npz", expect=1, capsys=capsys)
    _one_line_error(err, r"would overwrite an input")


def test_atomic_writes_leave_the_old_file_or_none(tmp_path):
    target = tmp_path / "out.sieve"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with files.atomic(target) as tmp:
            tmp.write_bytes(b"half of the new")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.sieve"]
    fresh = tmp_path / "fresh.npz"
    with pytest.raises(RuntimeError):
        with files.atomic(fresh) as tmp:
            tmp.write_bytes(b"x")
            raise RuntimeError("disk full")
    assert not fresh.exists() and [p.name for p in tmp_path.iterdir()] == ["out.sieve"]
    files.save_npz(fresh, {"a": np.arange(3)})
    assert np.load(fresh)["a"].tolist() == [0, 1, 2]


def test_a_failing_compile_writes_nothing(lenet, capsys, monkeypatch):
    import sieve.pipeline as pipeline

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "generate", boom)
    assert main(["compile", "l.sv", "-o", "l.sieve", "-q"]) == 130          # interrupted during codegen
    assert main(["compile", "l.sv", "-o", "new.sieve", "-q"]) == 130
    capsys.readouterr()
    _unchanged(lenet)
    assert not Path("new.sieve").exists()


def test_nan_or_infinite_weights_are_refused_with_the_tensor_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sieve("zoo", "export", "lenet5", "-o", "l.sv", capsys=capsys)
    w = dict(np.load("l.npz"))
    w["conv2.w"] = w["conv2.w"].copy()
    w["conv2.w"][3, 1, 2, 2] = np.nan
    np.savez("l.npz", **w)
    _, err = sieve("compile", "l.sv", "-o", "l.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"node 'conv2': parameter 'w' has 1 NaN or infinite value")
    assert not Path("l.sieve").exists()
    sieve("zoo", "export", "resnet18", "--size", "32", "-o", "r.onnx", capsys=capsys)
    m = onnx.load("r.onnx")
    init = next(t for t in m.graph.initializer if t.name.endswith(".w"))
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[7] = np.inf
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    onnx.save(m, "r.onnx")
    _, err = sieve("compile", "r.onnx", "-o", "r.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"parameter 'w' has 1 NaN or infinite value")


def test_nan_inputs_and_calibration_data_are_refused(lenet, capsys):
    x = np.load("x.npy")
    x[1, 0, 5, 5] = np.nan
    np.save("bad.npy", x)
    _, err = sieve("run", "l.sieve", "--input", "bad.npy", expect=1, capsys=capsys)
    _one_line_error(err, r"bad.npy: 'x' has 1 NaN or infinite value")
    _, err = sieve("compile", "l.sv", "--calibrate", "bad.npy", "-o", "c.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"bad.npy: 'x' has 1 NaN or infinite value")
    _, err = sieve("interpret", "l.sv", "--input", "bad.npy", "--output", "r.npz", expect=1, capsys=capsys)
    _one_line_error(err, r"bad.npy: 'x' has 1 NaN")
    assert not Path("c.sieve").exists() and not Path("r.npz").exists()
    import sieve as api
    with pytest.raises(api.ERRORS, match="inputs: 'x' has 1 NaN"):
        api.simulate(api.load("l.sieve"), x)
