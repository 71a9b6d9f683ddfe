"""The CLI as a user drives it: every command of the walking skeleton, and bad inputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sieve.cli import main
from sieve.simulator import run
from tests.helpers import skip_unless_ort_exact


def sieve(*args: str, expect: int = 0, capsys=None) -> tuple[str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == expect, (code, out, err)
    return out, err


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_walking_skeleton_commands(workdir, capsys):
    out, _ = sieve("zoo", "list", capsys=capsys)
    assert "lenet5" in out and "mlp" in out
    sieve("zoo", "export", "lenet5", "-o", "lenet5.sv", capsys=capsys)
    assert Path("lenet5.sv").exists() and Path("lenet5.npz").exists()
    x = np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float32)
    np.save("digit.npy", x)
    out, err = sieve("compile", "lenet5.sv", "--arch", "default", "-o", "lenet5.sieve", capsys=capsys)
    assert "wrote lenet5.sieve" in out and "no calibration data" in err
    out, _ = sieve("run", "lenet5.sieve", "--input", "digit.npy", "--output", "out.npz", "--stats",
                   "stats.json", capsys=capsys)
    assert "conv1" in out and "total" in out and "energy by component" in out
    sieve("interpret", "lenet5.sv", "--input", "digit.npy", "--output", "ref.npz", capsys=capsys)
    got, ref = np.load("out.npz"), np.load("ref.npz")
    assert set(got.files) == set(ref.files) == {"logits", "logits.int8"}
    assert got["logits.int8"].shape == (3, 10)
    for k in ref.files:
        np.testing.assert_array_equal(got[k], ref[k])
    stats = json.loads(Path("stats.json").read_text())
    assert stats["stats_version"] == 2 and stats["inferences"] == 3
    assert stats["cycles"] >= max(l["end_cycle"] for l in stats["layers"])
    assert stats["macs"] == 416520
    assert stats["energy_total_pj"] == pytest.approx(sum(stats["energy_pj"].values()))
    layer = stats["layers"][0]
    assert {"cycles", "utilization", "macs", "events", "energy_pj", "busy_cycles"} <= set(layer)
    out, _ = sieve("disasm", "lenet5.sieve", capsys=capsys)
    Path("lenet5.s").write_text(out)
    sieve("asm", "lenet5.s", "-o", "again.sieve", capsys=capsys)
    assert Path("again.sieve").read_bytes() == Path("lenet5.sieve").read_bytes()
    out, _ = sieve("run", "lenet5.sieve", "--timing-only", "-q", capsys=capsys)
    assert "timing only" in out


@pytest.mark.parametrize("partition", ["auto", "channels", "rows", "batch"])
def test_multicore_compile_run_trace_and_retarget(workdir, capsys, partition):
    """The issue's session: a multi-core preset, a forced partition, a bit-exact run with stats and a
    Perfetto trace, then the same binary on another L2 without recompiling."""
    sieve("zoo", "export", "lenet5", "-o", "lenet5.sv", capsys=capsys)
    np.save("x.npy", np.random.default_rng(1).random((2, 1, 32, 32)).astype(np.float32))
    out, _ = sieve("arch", "multicore", capsys=capsys)
    Path("big-l2.toml").write_text(out.replace("l2_bytes = 1048576", "l2_bytes = 4194304"))
    sieve("compile", "lenet5.sv", "--arch", "multicore", "--partition", partition, "-o", "mc.sieve", capsys=capsys)
    out, _ = sieve("run", "mc.sieve", "--input", "x.npy", "--output", "out.npz", "--stats", "s.json", "--trace",
                   "t.json", capsys=capsys)
    assert "per core" in out and "memory levels" in out and "L2 1,024 KiB" in out
    sieve("interpret", "lenet5.sv", "--input", "x.npy", "--output", "ref.npz", capsys=capsys)
    np.testing.assert_array_equal(np.load("out.npz")["logits.int8"], np.load("ref.npz")["logits.int8"])
    stats = json.loads(Path("s.json").read_text())
    assert len(stats["cores"]) == 4 and stats["memory"]["l2"]["capacity_bytes"] == 1 << 20
    assert sum(c["events"]["macs"] for c in stats["cores"]) == stats["macs"]
    assert any(len(layer["cores"]) > 1 for layer in stats["layers"])
    trace = json.loads(Path("t.json").read_text())
    assert {e["pid"] for e in trace["traceEvents"] if e["ph"] == "X"} == {0, 1, 2, 3}
    out, _ = sieve("run", "mc.sieve", "--arch", "big-l2.toml", "--timing-only", "--stats", "s4.json", capsys=capsys)
    big = json.loads(Path("s4.json").read_text())
    assert big["memory"]["l2"]["capacity_bytes"] == 4 << 20
    assert big["memory"]["l2"]["misses"] <= stats["memory"]["l2"]["misses"]


def _one_line_error(err: str, pattern: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sieve: error: "), err
    import re
    assert re.search(pattern, lines[0]), lines[0]


def test_bad_inputs_give_one_line_and_nonzero_exit(workdir, capsys):
    Path("bad.sv").write_text("model a\ninput x [1, 4]\nd = dense(x, out_features=2 { w = [1] }\noutput d\n")
    _, err = sieve("compile", "bad.sv", expect=1, capsys=capsys)
    _one_line_error(err, r"bad.sv:3:29: syntax error")
    Path("bad.toml").write_text("[core]\npe_rows = 'many'\n")
    sieve("zoo", "export", "mlp", "-o", "mlp.sv", capsys=capsys)
    _, err = sieve("compile", "mlp.sv", "--arch", "bad.toml", expect=1, capsys=capsys)
    _one_line_error(err, r"bad.toml: key 'core.pe_rows' must be int")
    sieve("compile", "mlp.sv", "-o", "mlp.sieve", capsys=capsys)
    raw = bytearray(Path("mlp.sieve").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    Path("corrupt.sieve").write_bytes(raw)
    _, err = sieve("run", "corrupt.sieve", "--timing-only", expect=1, capsys=capsys)
    _one_line_error(err, r"corrupt.sieve: section \d .* checksum mismatch")
    Path("short.sieve").write_bytes(Path("mlp.sieve").read_bytes()[:100])
    _, err = sieve("disasm", "short.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"short.sieve: truncated")
    _, err = sieve("run", "mlp.sieve", "--arch", "edge", "--timing-only", expect=1, capsys=capsys)
    _one_line_error(err, r"compiled for arch 'default'.*recompile for this arch")
    np.save("wrong.npy", np.zeros((1, 63), np.float32))
    _, err = sieve("run", "mlp.sieve", "--input", "wrong.npy", expect=1, capsys=capsys)
    _one_line_error(err, r"wrong.npy: 'x' has shape \[1, 63\], the model expects \[1, 64\]")
    _, err = sieve("run", "missing.sieve", "--timing-only", expect=1, capsys=capsys)
    _one_line_error(err, r"missing.sieve: cannot read")
    _, err = sieve("compile", "nope.sv", expect=1, capsys=capsys)
    _one_line_error(err, r"nope.sv: cannot read")
    _, err = sieve("zoo", "export", "alexnet", "-o", "a.sv", expect=1, capsys=capsys)
    _one_line_error(err, r"no zoo model named 'alexnet'")


def test_installed_command_and_help():
    exe = Path(sys.executable).with_name("sieve")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    for cmd in ("zoo", "compile", "run", "interpret", "disasm", "asm"):
        assert cmd in done.stdout
    done = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True, check=True)
    assert "--timing-only" in done.stdout and "--stats" in done.stdout
    bad = subprocess.run([str(exe), "frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_onnx_float_and_quantized_models(workdir, capsys):
    """sieve zoo export -> .onnx; compile (Sieve quantizes) and interpret agree; an onnxruntime-quantized
    QOperator model compiles with its own scales and runs with onnxruntime's integers."""
    skip_unless_ort_exact()
    import warnings

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from tests.onnx.ort_models import IR_VERSION, ort_run
    sieve("zoo", "export", "resnet18", "--size", "32", "-o", "r18.onnx", capsys=capsys)
    rng = np.random.default_rng(0)
    np.save("calib.npy", rng.standard_normal((4, 3, 32, 32)).astype(np.float32))
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.save("batch.npy", x)
    out, err = sieve("compile", "r18.onnx", "--calibrate", "calib.npy", "--calibration", "percentile",
                     "-o", "r18.sieve", capsys=capsys)
    assert "quantization: by Sieve, percentile calibration" in out and err == ""
    sieve("run", "r18.sieve", "--input", "batch.npy", "--output", "out.npz", "-q", capsys=capsys)
    sieve("interpret", "r18.onnx", "--input", "batch.npy", "--calibrate", "calib.npy", "--calibration",
          "percentile", "--output", "ref.npz", capsys=capsys)
    got, ref = np.load("out.npz"), np.load("ref.npz")
    assert set(got.files) == set(ref.files) and len(got.files) == 2
    for k in ref.files:
        np.testing.assert_array_equal(got[k], ref[k])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": c[None]} for c in np.load("calib.npy")])

        def get_next(self):
            return next(self.it, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static("r18.onnx", "raw_int8.onnx", Reader(), quant_format=QuantFormat.QOperator)
        # without quant_pre_process the batch norms stay float: Sieve computes them as onnxruntime does
        sieve("compile", "raw_int8.onnx", "-o", "raw.sieve", "-q", capsys=capsys)
        np.save("two.npy", x[:1])
        sieve("run", "raw.sieve", "--input", "two.npy", "--output", "raw.npz", "-q", capsys=capsys)
        import onnx
        raw_model = onnx.load("raw_int8.onnx")
        raw_model.ir_version = min(raw_model.ir_version, IR_VERSION)
        raw_want = ort_run(raw_model, {"input": x[:1]})[0]
        raw_got = np.load("raw.npz")
        np.testing.assert_array_equal(raw_got[[k for k in raw_got.files if "." not in k][0]], raw_want)
        quant_pre_process("r18.onnx", "r18_pre.onnx")          # folds BatchNormalization, as ort advises
        quantize_static("r18_pre.onnx", "r18_int8.onnx", Reader(), quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    out, err = sieve("compile", "r18_int8.onnx", "-o", "r18q.sieve", capsys=capsys)
    assert "quantization: a quantized model, its own scales kept" in out and "no calibration data" not in err
    np.save("one.npy", x[:1])
    sieve("run", "r18q.sieve", "--input", "one.npy", "--output", "q.npz", "-q", capsys=capsys)
    import onnx
    model = onnx.load("r18_int8.onnx")
    model.ir_version = min(model.ir_version, IR_VERSION)
    want = ort_run(model, {"input": x[:1]})[0]
    got = np.load("q.npz")
    float_key = [k for k in got.files if not k.endswith("8")][0]
    np.testing.assert_array_equal(got[float_key], want)
    assert got[float_key + ".uint8"].dtype == np.uint8
    sieve("interpret", "r18_int8.onnx", "--input", "one.npy", "--output", "qref.npz", capsys=capsys)
    np.testing.assert_array_equal(np.load("qref.npz")[float_key], want)


def test_prune_eval_and_report(workdir, capsys):
    """compile --prune 0.9 / 2:4 with --eval, and run --report against the dense twin."""
    sieve("zoo", "export", "lenet5", "-o", "lenet5.sv", capsys=capsys)
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 32, 32)).astype(np.float32)
    np.save("calib.npy", x[:8])
    np.savez("eval.npz", x=x, y=rng.integers(0, 10, 40))
    out, _ = sieve("compile", "lenet5.sv", "--calibrate", "calib.npy", "--prune", "0.9", "--eval", "eval.npz",
                   "--fusion", "none", "-o", "p.sieve", capsys=capsys)          # per layer: no fused stacks
    assert "unstructured" in out and "model size: float32 246,824 B" in out
    assert "top-1 on 40 examples" in out and "pruned 0.9" in out
    out, _ = sieve("run", "p.sieve", "--report", capsys=capsys)
    assert "sparsity" in out and "dense twin" in out and "timing only" in out
    from sieve.simulator import load_binary
    program = load_binary("p.sieve")
    conv2 = next(s for s in program.layers if s.name == "conv2")
    assert conv2.weight_format == "unstructured" and conv2.dense_cycles > 0 and conv2.dense_mac_cycles > 0
    result = run(program, functional=False)
    layer = next(l for l in result.stats.layers if l.name == "conv2")
    assert layer.mac_cycles < conv2.dense_mac_cycles / 3             # 90 % zeros: far fewer MAC cycles
    out, _ = sieve("compile", "lenet5.sv", "--calibrate", "calib.npy", "--prune", "2:4", "-o", "nm.sieve",
                   capsys=capsys)
    assert "2:4" in out
    sieve("disasm", "p.sieve", "-o", "p.s", capsys=capsys)
    sieve("asm", "p.s", "-o", "p2.sieve", capsys=capsys)
    assert Path("p2.sieve").read_bytes() == Path("p.sieve").read_bytes()
    _, err = sieve("compile", "lenet5.sv", "--prune", "lots", expect=1, capsys=capsys)
    _one_line_error(err, r"prune takes a fraction \(0.9\) or N:M \(2:4\), got 'lots'")


def test_version_and_options_after_the_command(workdir, capsys):
    import sieve as api
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"sieve {api.__version__}"
    sieve("zoo", "export", "mlp", "-o", "mlp.sv", "-q", capsys=capsys)
    _, err = sieve("compile", "mlp.sv", "-o", "mlp.sieve", "-v", capsys=capsys)
    for stage in ("load model", "calibrate", "quantize", "schedule", "codegen"):
        assert f"sieve: INFO: {stage}: " in err, stage
    out, _ = sieve("run", "mlp.sieve", "--timing-only", "-q", capsys=capsys)
    assert len(out.strip().splitlines()) == 3 and "cycles" in out          # the summary, no tables
    out, _ = sieve("-q", "run", "mlp.sieve", "--timing-only", "--threads", "2", capsys=capsys)
    assert len(out.strip().splitlines()) == 3


def test_arch_prints_toml_that_arch_reads_back(workdir, capsys):
    from sieve.arch import load_arch
    out, _ = sieve("arch", capsys=capsys)
    assert "default" in out and "edge" in out
    for preset in ("default", "edge"):
        out, _ = sieve("arch", preset, capsys=capsys)
        Path(f"{preset}.toml").write_text(out)
        again = load_arch(f"{preset}.toml")
        assert again == load_arch(preset) and again.fingerprint() == load_arch(preset).fingerprint()
        assert "0 = derived from capacity" in out            # derived SRAM energies are explained
        out2, _ = sieve("arch", f"{preset}.toml", capsys=capsys)
        assert out2 == out


def test_report_fits_and_never_cuts_numbers_and_is_in_the_stats(workdir, capsys):
    sieve("zoo", "export", "lenet5", "-o", "l.sv", capsys=capsys)
    sieve("compile", "l.sv", "--prune", "0.9", "--fusion", "none", "-o", "p.sieve", "-q", capsys=capsys)
    out, _ = sieve("run", "p.sieve", "--report", "--stats", "s.json", capsys=capsys)
    assert "…" not in out and "weight layers" in out and "end to end" in out
    stats = json.loads(Path("s.json").read_text())
    rep = stats["sparsity"]
    assert rep["dense_twin"] and {"weight_layer_speedup", "end_to_end_speedup", "density"} <= set(rep["total"])
    assert rep["total"]["weight_layer_speedup"] > rep["total"]["end_to_end_speedup"] > 1.0
    conv2 = next(r for r in rep["layers"] if r["name"] == "conv2")
    assert conv2["weight_format"] == "unstructured" and conv2["density"] < 0.2
    assert f"{conv2['skipped_macs']:,}" in out and f"{rep['total']['end_to_end_speedup']:.2f}x" in out
    for width in (60, 80):                     # a narrow terminal: cells wrap, no digit is cut
        lines = _in_terminal(["run", "p.sieve", "--report"], width)
        assert max(len(line) for line in lines) <= width
        assert not any("…" in line for line in lines)
        assert any(f"{conv2['skipped_macs']:,}" in line for line in lines)


def _in_terminal(argv: list[str], columns: int) -> list[str]:
    """The command's output lines in a pseudo-terminal of the given width (escape codes removed)."""
    import os
    import pty
    import re
    pid, fd = pty.fork()
    if pid == 0:                               # the child: exec the installed command
        os.environ.update(COLUMNS=str(columns), TERM="xterm")
        os.execv(str(Path(sys.executable).with_name("sieve")), ["sieve"] + argv)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    return [re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", line) for line in out.decode(errors="replace").splitlines()]


def test_batches_print_a_summary(workdir, capsys):
    sieve("zoo", "export", "mlp", "-o", "m.sv", capsys=capsys)
    sieve("compile", "m.sv", "-o", "m.sieve", "-q", capsys=capsys)
    np.save("b.npy", np.random.default_rng(0).standard_normal((40, 64)).astype(np.float32))
    out, _ = sieve("run", "m.sieve", "--input", "b.npy", capsys=capsys)
    assert "40 inferences" in out and "top-1 per inference" not in out and "most often" in out
    out, _ = sieve("interpret", "m.sv", "--input", "b.npy", "--output", "r.npz", capsys=capsys)
    assert "40 inferences" in out


def test_eval_shows_float_pruned_int8_and_compiled(workdir, capsys):
    sieve("zoo", "export", "lenet5", "-o", "l.sv", capsys=capsys)
    rng = np.random.default_rng(0)
    x = rng.random((30, 1, 32, 32)).astype(np.float32)
    np.savez("e.npz", x=x, y=rng.integers(0, 10, 30))
    out, _ = sieve("compile", "l.sv", "--calibrate", "e.npz", "--prune", "0.5", "--eval", "e.npz", "-o", "p.sieve",
                   capsys=capsys)
    for col in ("float32", "float32 pruned 0.5", "int8 (reference)", "int8 compiled"):
        assert col in out
    row = [l for l in out.splitlines() if l.count("%") == 4]
    assert len(row) == 1


def test_a_dynamic_batch_model_compiles_at_the_batch_asked(workdir, capsys):
    import warnings
    import torch
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 6 * 6, 4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 8, 8), "dyn.onnx", dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    sieve("compile", "dyn.onnx", "--batch", "4", "-o", "b4.sieve", "-q", capsys=capsys)
    import sieve as api
    assert api.load("b4.sieve").inputs[0].shape == (4, 3, 8, 8)
    sieve("compile", "dyn.onnx", "-o", "b1.sieve", "-q", capsys=capsys)
    assert api.load("b1.sieve").inputs[0].shape == (1, 3, 8, 8)
    sieve("zoo", "export", "mlp", "-o", "m.sv", capsys=capsys)
    _, err = sieve("compile", "m.sv", "--batch", "4", expect=1, capsys=capsys)
    _one_line_error(err, r"input 'x' has a fixed batch of 1; --batch 4 applies only to models exported with a "
                         r"dynamic batch")


def test_torch_default_exporter_works_with_the_torch_extra(workdir, capsys):
    """torch.onnx.export's default (dynamo) exporter needs onnxscript: the [torch] extra installs it."""
    import warnings
    import torch
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 8 * 8, 3)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 1, 8, 8),), "default.onnx", input_names=["x"], output_names=["y"])
    np.save("x.npy", np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32))
    sieve("compile", "default.onnx", "--calibrate", "x.npy", "-o", "d.sieve", "-q", capsys=capsys)
    sieve("run", "d.sieve", "--input", "x.npy", "--output", "o.npz", "-q", capsys=capsys)
    assert np.load("o.npz")["y"].shape == (2, 3)


def test_fusion_options_and_the_fusion_report(workdir, capsys):
    """compile --fusion max --tile --overlap, the stacks in compile's table and run's, run --report fusion
    (against the unfused twin) and its JSON; --fusion none has no stacks; a 2-D tile is refused clearly."""
    sieve("zoo", "export", "lenet5", "-o", "l.sv", capsys=capsys)
    out, _ = sieve("compile", "l.sv", "--fusion", "max", "--tile", "3", "--overlap", "cache", "-o", "f.sieve",
                   capsys=capsys)
    assert "conv1 .. pool2" in out and "stack of 4" in out
    from sieve.simulator import load_binary
    stack = next(s for s in load_binary("f.sieve").layers if s.members)
    assert stack.members == ("conv1", "pool1", "conv2", "pool2")     # the ReLUs are fused into the convs
    assert stack.band_rows == 3 and stack.overlap == "cache" and stack.unfused_cycles > 0
    assert stack.spad_bytes > 0 and stack.recomputed_macs == 0            # cache mode computes each row once
    out, _ = sieve("run", "f.sieve", "--report", "fusion", "--stats", "s.json", capsys=capsys)
    assert "fused stacks" in out and "unfused twin" in out and "end to end" in out and "conv1 .. pool2" in out
    rep = json.loads(Path("s.json").read_text())["fusion"]
    assert rep["unfused_twin"] and len(rep["stacks"]) == 1
    row = rep["stacks"][0]
    assert row["band_rows"] == 3 and row["overlap"] == "cache"
    assert {t["home"] for t in row["tensors"]} == {"DRAM", "scratchpad"}
    assert row["dram_bytes"] < row["unfused_dram_bytes"]
    sieve("compile", "l.sv", "--fusion", "none", "-o", "n.sieve", "-q", capsys=capsys)
    assert not any(s.members for s in load_binary("n.sieve").layers)
    out, _ = sieve("run", "n.sieve", "--report", "fusion", capsys=capsys)
    assert "(none)" in out
    out, _ = sieve("compile", "l.sv", "--fusion", "max", "--tile", "2x2", "-o", "t.sieve", capsys=capsys)
    stack = next(s for s in load_binary("t.sieve").layers if s.members)          # pool2's output is 5x5
    assert (stack.band_rows, stack.band_cols, stack.overlap) == (2, 2, "recompute")
    assert "2 rows x 2 columns" in stack.info and stack.recomputed_macs > 0
    out, _ = sieve("run", "t.sieve", "--report", "fusion", capsys=capsys)
    assert "2x2" in out
    for bad in ("4x", "4x8x2", "rows"):
        _, err = sieve("compile", "l.sv", "--tile", bad, "-o", "b.sieve", expect=1, capsys=capsys)
        _one_line_error(err, rf"--tile takes output rows, or rows x columns, .* got '{bad}'")
        assert not Path("b.sieve").exists()
    _, err = sieve("compile", "l.sv", "--tile", "0x4", "-o", "b.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"--tile must be at least 1 row and 1 column")
    _, err = sieve("compile", "l.sv", "--fusion", "none", "--tile", "4", "-o", "b.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"--tile and --overlap shape fused stacks; with --fusion none there are none")
    _, err = sieve("compile", "l.sv", "--tile", "2x2", "--overlap", "cache", "-o", "b.sieve", expect=1,
                   capsys=capsys)
    _one_line_error(err, r"--overlap cache keeps rows and takes bands of whole rows")
    assert not Path("b.sieve").exists()


@pytest.mark.parametrize("argv", [["asm", "bad.s", "-o", "x.sieve"], ["compile", "bad.sv", "-o", "x.sieve"],
                                  ["compile", "ok.sv", "--arch", "bad.toml", "-o", "x.sieve"]])
def test_files_that_are_not_utf8_text_get_one_line(workdir, capsys, argv):
    """Assembly, .sv and TOML that are not UTF-8: one line naming the file and the first bad byte."""
    sieve("zoo", "export", "mlp", "-o", "ok.sv", "-q", capsys=capsys)
    for name in ("bad.s", "bad.sv", "bad.toml"):
        Path(name).write_bytes(b"\xff\xfe\x00model")
    _, err = sieve(*argv, expect=1, capsys=capsys)
    bad = next(a for a in argv if a.startswith("bad"))
    _one_line_error(err, rf"{bad}: not UTF-8 text: byte 0xff at offset 0")
    assert not Path("x.sieve").exists()


@pytest.mark.parametrize("old, new, message", [
    ("stride=[1, 1]", "stride=[0, 1]", r"layer 'conv1': stride takes whole numbers of at least 1, got 0"),
    ("dilation=[1, 1]", "dilation=[0, 1]", r"layer 'conv1': dilation takes whole numbers of at least 1, got 0"),
    ("groups=1", "groups=0", r"layer 'conv1': groups takes whole numbers of at least 1, got 0"),
    ("groups=1", "groups=4", r"layer 'conv1': groups=4 does not divide its 1 input channels"),
    ("pad=[0, 0, 0, 0]", "pad=[-1, 0, 0, 0]", r"layer 'conv1': pad takes whole numbers of at least 0, got -1"),
    ("pad=[0, 0, 0, 0]", "pad=[0, 0, 0]", r"pad takes one value, two \(h, w\) or four"),
    ("kernel=[5, 5]", "kernel=[5, 5, 5]", r"layer 'conv1': kernel takes one value or two \(h, w\), got 3"),
    ("out_channels=6", "out_channels=2.5", r"layer 'conv1': out_channels takes whole numbers of at least 1, got 2.5"),
])
def test_sv_conv_attributes_are_checked(workdir, capsys, old, new, message):
    """A conv's stride, dilation, groups, padding, kernel rank and channel count in .sv text: one line naming
    the file, line and layer, never an internal error, and no binary written."""
    sieve("zoo", "export", "lenet5", "-o", "l.sv", "-q", capsys=capsys)
    text = Path("l.sv").read_text()
    assert old in text
    Path("t.sv").write_text(text.replace(old, new, 1))
    Path("t.npz").write_bytes(Path("l.npz").read_bytes())
    _, err = sieve("compile", "t.sv", "-o", "t.sieve", expect=1, capsys=capsys)
    _one_line_error(err, r"t\.sv:5:1: .*" + message)
    assert not Path("t.sieve").exists()
