"""One regression test per class of bad input the fuzzer found (docs/reliability.md): each is one
clear error of Sieve's own types, naming the file and what is wrong, never an internal error."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sieve
from sieve.arch import BinaryFormatError, Instruction, Program, decode_program, load_arch
from sieve.arch.binary import SectionKind
from sieve.arch.isa import FIELDS, HEADER_BITS, WORD_BYTES, Opcode
from sieve.cli import main
from sieve.codegen import AsmError, assemble, disassemble
from sieve.errors import ERRORS, UsageError
from sieve.frontend import FrontendError, build, load_onnx, parse_sv
from sieve.fuzz import _container, _png, _sections
from sieve.simulator import Trap
from tests.helpers import compile_bytes, quantize, random_calibration


@pytest.fixture(scope="module")
def raw() -> bytes:
    g = build("lenet5")
    return compile_bytes(quantize(g, random_calibration(g, np.random.default_rng(0))), load_arch("default"))


def _with_meta(raw: bytes, change) -> bytes:
    sections = _sections(raw)
    out = []
    for kind, core, payload in sections:
        if kind == SectionKind.META:
            meta = json.loads(payload)
            change(meta)
            payload = json.dumps(meta).encode()
        out.append((kind, core, payload))
    return _container(raw, out)


def _with_field(raw: bytes, opcode: Opcode, name: str, value: int, nth: int = 0) -> bytes:
    """The ``nth`` instruction of ``opcode`` with field ``name`` set, checksums recomputed."""
    sections = _sections(raw)
    kind, core, code = next(s for s in sections if s[0] == SectionKind.CODE)
    words = [bytearray(code[i:i + WORD_BYTES]) for i in range(0, len(code), WORD_BYTES)]
    at = [i for i, w in enumerate(words) if w[0] == int(opcode)][nth]
    word = int.from_bytes(words[at], "little")
    pos = HEADER_BITS
    for fname, _, bits in FIELDS[opcode]:
        if fname == name:
            word = (word & ~(((1 << bits) - 1) << pos)) | ((value & ((1 << bits) - 1)) << pos)
            break
        pos += bits
    words[at] = bytearray(word.to_bytes(WORD_BYTES, "little"))
    new = b"".join(words)
    return _container(raw, [(k, c, new if k == SectionKind.CODE and c == core else p) for k, c, p in sections])


# ---------------------------------------------------------------- binaries: valid checksums, bad contents

@pytest.mark.parametrize("change,match", [
    (lambda m: m.update(dram_bytes="many"), r"'dram_bytes' = many is not int"),
    (lambda m: m.update(dram_bytes=2 ** 62), r"at most 1,073,741,824 bytes \(set SIEVE_MAX_DRAM_BYTES"),
    (lambda m: m.update(dram_bytes=16), r"must hold the .*-byte data section"),
    (lambda m: m["inputs"][0].update(scale=float("inf")), r"input 'x': 'scale' = inf is not a number"),
    (lambda m: m["inputs"][0].update(scale=0), r"scale 0.0 or zero point"),
    (lambda m: m["inputs"][0].update(dram_addr=2 ** 40), r"input 'x': .* lies outside the .*-byte DRAM"),
    (lambda m: m["outputs"][0].update(shape=[0]), r"shape must be whole numbers of at least 1"),
    (lambda m: m["outputs"][0].update(perm=[5]), r"disagree"),
    (lambda m: m["layers"][0].update(end=10 ** 6), r"layer symbol .* lie outside the code"),
    (lambda m: m["layers"][0].update(macs=-1), r"a count is negative"),
    (lambda m: m["layers"][0].update(members=7), r"'members' = 7 is not list"),
    (lambda m: m.update(inputs={}), r"'inputs' = \{\} is not list"),
])
def test_metadata_of_the_wrong_type_or_range_is_refused(raw, change, match):
    with pytest.raises(BinaryFormatError, match="x.sieve: malformed metadata: .*" + match + "|x.sieve: .*" + match):
        decode_program(_with_meta(raw, change), "x.sieve")


def test_a_symbol_past_the_end_after_instructions_are_removed(raw):
    sections = _sections(raw)
    cut = [(k, c, p[:-2 * WORD_BYTES] if k == SectionKind.CODE else p) for k, c, p in sections]
    with pytest.raises(BinaryFormatError, match="lie outside the code"):
        decode_program(_container(raw, cut), "x.sieve")


def test_code_sections_for_cores_the_arch_lacks(raw):
    sections = _sections(raw)
    extra = sections + [(SectionKind.CODE, 5, next(p for k, _, p in sections if k == SectionKind.CODE))]
    with pytest.raises(BinaryFormatError, match=r"code sections for cores \[0, 5\], the arch has 1"):
        decode_program(_container(raw, extra), "x.sieve")


# ---------------------------------------------------------------- well-formed, meaningless instructions

@pytest.mark.parametrize("opcode,field,value,match", [
    (Opcode.MATMUL, "stride_h", 0, r"MATMUL breaks the rule that these fields are at least 1 .*stride_h=0"),
    (Opcode.MATMUL, "dil_w", 0, r"dil_w=0"),
    (Opcode.MATMUL, "k", 0, r"k=0"),
    (Opcode.MATMUL, "kernel_h", 0, r"kernel_h=0"),
    (Opcode.MATMUL, "out_w", 4095, r"accumulator entries|window work"),
    (Opcode.MAXPOOL, "stride_w", 0, r"MAXPOOL breaks .*stride_w=0"),
    (Opcode.LOAD, "rows", 65535, r"LOAD breaks the rule that it moves at most a scratchpad's worth"),
    (Opcode.LOAD, "dram_addr", 2 ** 32 - 1, r"DRAM region"),
])
def test_meaningless_instructions_are_refused_even_timing_only(raw, opcode, field, value, match):
    bad = _with_field(raw, opcode, field, value)
    for timing_only in (True, False):
        with pytest.raises(Trap, match=r"core 0, instruction \d+ \(layer '\w+'\): .*" + match):
            x = np.zeros((1, 1, 32, 32), np.float32)
            sieve.simulate(bad, inputs=None if timing_only else x, timing_only=timing_only)


def test_an_nm_block_of_zero_is_refused():
    arch = load_arch("default")
    text = disassemble(sieve.compile(build("lenet5"), arch, prune="2:4", dense_twin=False))
    line = next(ln for ln in text.splitlines() if "fmt=2" in ln)
    bad = text.replace(line, line.replace("nm_n=2", "nm_n=0"), 1)
    with pytest.raises(Trap, match=r"an N:M block has 1 <= N <= M .*nm_n=0"):
        sieve.simulate(assemble(bad), timing_only=True)


def test_a_softmax_over_empty_rows_is_refused():
    """Found by the long fuzz run (binary case 158924): cols=0 reached a reduction over nothing."""
    halt = Instruction.make(Opcode.HALT)
    soft = Instruction.make(Opcode.SOFTMAX, src_addr=0, dst_addr=64, rows=2, cols=0, table_addr=256, ys=0.5, zy=0,
                            mode=0)
    program = Program(load_arch("default"), ((soft, halt),), b"", 1 << 16, (), ())
    for timing_only in (True, False):
        with pytest.raises(Trap, match=r"SOFTMAX breaks the rule that these fields are at least 1 .*cols=0"):
            sieve.simulate(program, inputs=None if timing_only else {}, timing_only=timing_only)


# ---------------------------------------------------------------- assembly

def test_assembly_numbers_beyond_any_field(raw):
    text = disassemble(decode_program(raw))
    with pytest.raises(AsmError, match=r"x.s:\d+:\d+: bad value: Exceeds the limit \(4300 digits\)"):
        assemble(text.replace("stride_h=1", "stride_h=" + "9" * 5000, 1), "x.s")
    out = next(ln for ln in text.splitlines() if ln.startswith(".output"))       # hex has no digit limit
    huge = re.sub(r"addr=0x[0-9a-f]+", "addr=0x" + "9" * 5000, out)
    with pytest.raises(AsmError, match=r"x.s:\d+:\d+: bad value: the number 0x9999999999... has 5000 hex digits"):
        assemble(text.replace(out, huge), "x.s")
    add = "add a_addr=0 b_addr=0 dst_addr=0 count=1 za=0 zb=0 zc=0 ma=1e39 mb=1 relu=0 hi=127\nhalt"
    with pytest.raises(AsmError, match=r"x.s:\d+:\d+: ADD: a field is not a number: 1e\+39 does not fit a float32"):
        assemble(text.replace("halt", add, 1), "x.s")


def test_deep_nesting_in_every_text_format(tmp_path):
    deep = "[" * 5000 + "1" + "]" * 5000
    with pytest.raises(AsmError, match=r"x.s:3:1: nested too deeply"):
        assemble(f".arch preset=default\n.core 0\nhalt x={deep}\n", "x.s")
    with pytest.raises(FrontendError, match=r"x.sv:3:1: nested too deeply"):
        parse_sv(f"model a\ninput x [1, 2]\nd = dense(x, out_features=2) {{ w = {deep} }}\noutput d\n", "x.sv")
    (tmp_path / "deep.toml").write_text(f"name = {deep}\n")
    with pytest.raises(sieve.ERRORS, match=r"deep.toml: malformed TOML"):
        load_arch(tmp_path / "deep.toml")


def test_assembly_descriptors_are_checked_as_in_a_binary(raw):
    text = disassemble(decode_program(raw))
    line = next(ln for ln in text.splitlines() if ln.startswith(".input"))
    with pytest.raises(AsmError, match=r"x.s: malformed metadata: input 'x': .* lies outside"):
        assemble(text.replace(line, line.replace("addr=", "addr=999999999999 old=")), "x.s")


# ---------------------------------------------------------------- ONNX

def _model(nodes, inits, x_type=TensorProto.FLOAT, x_shape=(1, 2, 6, 6)):
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", x_type, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _w(shape, name="w"):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


@pytest.mark.parametrize("model,match", [
    (_model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], fuzz=1)], [_w((4, 2, 3, 3))]),
     r"node 'y' \(Conv\): unknown attribute 'fuzz'"),
    (_model([helper.make_node("MaxPool", ["x"], ["y"])], []), r"lacks the required attribute 'kernel_shape'"),
    (_model([helper.make_node("Relu", ["x", "x"], ["y"])], []), r"has 2 input\(s\); the operator takes 1"),
    (_model([helper.make_node("Conv", ["x", "w", "b"], ["y"])], [_w((4, 2, 3, 3)), _w((7,), "b")]),
     r"a bias of shape \[7\] for 4 output channels"),
    (_model([helper.make_node("Conv", ["x", "w"], ["y"])], [_w((4, 2, 3, 3))], TensorProto.UINT8),
     r"input 'x' is uint8, read by an op that takes float data"),
    (_model([helper.make_node("ConstantOfShape", ["s"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])],
            [numpy_helper.from_array(np.array([1, 2 ** 40], np.int64), "s")]),
     r"the constant it makes has 1,099,511,627,776 elements, more than the limit .*SIEVE_MAX_TENSOR_ELEMENTS"),
    (_model([helper.make_node("Relu", ["x"], ["y"])], [], x_shape=(1, 2 ** 31)),
     r"input .* more than the limit of 67,108,864"),
    (_model([helper.make_node("Gemm", ["x", "w"], ["y"])], [_w((6,))], x_shape=(1, 6)),
     r"node 'y' \(Gemm\): its inputs and attributes do not fit together"),
    (_model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[5, 5])], [_w((4, 2, 3, 3))]),
     r"kernel_shape \[5, 5\] disagrees with the weights' kernel \[3, 3\]"),
    (_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[4095, 2, 4095, 2])], [_w((4, 2, 3, 3))]),
     r"pad \[4095, 2, 4095, 2\] is more than 15, the most a window instruction encodes"),
    (_model([helper.make_node("BatchNormalization", ["x", "g", "g", "g", "v"], ["y"])],
            [_w((2,), "g"), numpy_helper.from_array(-np.ones(2, np.float32), "v")]),
     r"a variance plus epsilon is not positive"),
])
def test_onnx_models_that_break_their_operators(tmp_path, model, match):
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ERRORS, match=match):
        sieve.compile(path, "default", dense_twin=False)


def test_a_malformed_initializer_is_named(tmp_path):
    w = _w((4, 2, 3, 3))
    w.raw_data = w.raw_data[:-3]
    path = tmp_path / "m.onnx"
    onnx.save(_model([helper.make_node("Conv", ["x", "w"], ["y"])], [w]), str(path))
    with pytest.raises(FrontendError, match=r"m.onnx: initializer 'w' is malformed"):
        load_onnx(path)


def test_weights_too_small_for_a_float32_step_quantize_to_zero(tmp_path):
    path = tmp_path / "m.onnx"
    w = numpy_helper.from_array(np.full((4, 2, 3, 3), 1e-45, np.float32), "w")
    onnx.save(_model([helper.make_node("Conv", ["x", "w"], ["y"])], [w]), str(path))
    prog = sieve.compile(path, "default", dense_twin=False)
    res = sieve.simulate(prog, inputs=np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32))
    assert (res.floats["y"] == 0).all()


def test_infinite_weights_are_refused(tmp_path):
    w = np.ones((4, 2, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.inf
    path = tmp_path / "m.onnx"
    onnx.save(_model([helper.make_node("Conv", ["x", "w"], ["y"])], [numpy_helper.from_array(w, "w")]), str(path))
    with pytest.raises(ERRORS, match=r"NaN or infinite"):
        sieve.compile(path, "default", dense_twin=False)


# ---------------------------------------------------------------- .sv text and its side files

SV = "model a\nweights \"w.npz\"\ninput x [1, 2, 4, 4]\nc = conv2d(x, out_channels=2, kernel=1) -> [1, 2, 4, 4]\noutput c\n"


@pytest.mark.parametrize("write,match", [
    (lambda p: np.save(p.with_suffix(".npy"), np.ones(4)) or p.with_suffix(".npy").rename(p),
     r"is one array, not an .npz archive"),
    (lambda p: p.write_bytes(b"PK\x03\x04garbage"), r"cannot read weights file"),
    (lambda p: p.write_bytes(b""), r"not a .npy or .npz file"),
    (lambda p: np.savez(p, **{"c.w": np.array(["a", "b", "c", "d"])}), r"'c.w' is not an array of real numbers"),
    (lambda p: np.savez(p, **{"c.w": np.ones(4, np.complex64)}), r"'c.w' is not an array of real numbers"),
    (lambda p: np.savez(p, **{"c.w": np.ones((4, 1), np.float32)}), r"weights have shape \[4, 1\], expected"),
])
def test_weight_side_files_of_the_wrong_kind(tmp_path, write, match):
    (tmp_path / "a.sv").write_text(SV)
    write(tmp_path / "w.npz")
    with pytest.raises(FrontendError, match=r"a.sv:2:1: .*" + match + "|a.sv:4:1: .*" + match):
        sieve.compile(tmp_path / "a.sv", "default", dense_twin=False)


@pytest.mark.parametrize("text,match", [
    ("model a\ninput x [1, " + "9" * 5000 + "]\noutput x\n", r"x.sv:2:1: bad value: Exceeds the limit"),
    ("model a\ninput x [1, 1000000, 1000000]\noutput x\n", r"more than the limit of 67,108,864"),
    ("model a\ninput x [1, 2]\nd = dense(x, out_features=2) { w = [[1, 2], [3]] }\noutput d\n",
     r"'w' is not a rectangular array"),
    ("model a\ninput x [1, 2, 4, 4]\nc = conv2d(x, out_channels=2) { w = [1, 2, 3, 4] }\noutput c\n",
     r"conv2d needs the attribute 'kernel'"),
    ("model a\ninput x [1, 2]\nd = dense(x, out_features=2) { w = [1e39, 1, 1, 1] }\noutput d\n",
     r"not a rectangular array of float32 numbers"),
])
def test_sv_values_out_of_range(text, match):
    with pytest.raises(FrontendError, match=match):
        parse_sv(text, "x.sv")


# ---------------------------------------------------------------- inputs and calibration data

@pytest.fixture(scope="module")
def program():
    return sieve.compile(build("lenet5"), "default", dense_twin=False)


@pytest.mark.parametrize("make,match", [
    (lambda p: np.zeros((0, 1, 32, 32), np.float32), r"has shape \[0, 1, 32, 32\]"),
    (lambda p: (p.write_bytes(b"PK\x03\x04\x00"), p)[1], r"cannot read array file"),
    (lambda p: np.savez(p, x=np.empty((1, 1, 32, 32), object)) or p, r"holds Python objects, not numbers"),
    (lambda p: np.ones((1, 1, 32, 32), np.complex64), r"element type complex64, not numbers"),
    (lambda p: np.ones((1, 1, 32, 32), bool), r"element type bool, not numbers"),
    (lambda p: np.zeros((1, 1, 32, 32), "datetime64[s]"), r"element type datetime64"),
    (lambda p: np.zeros((1, 1, 32, 32), [("a", "f4")]), r"element type"),
    (lambda p: np.full((1, 1, 32, 32), -np.inf, np.float32), r"1,024 NaN or infinite values"),
])
def test_run_inputs_that_are_not_numbers(tmp_path, program, make, match):
    data = make(tmp_path / "d.npz")
    with pytest.raises(ERRORS, match=match):
        sieve.simulate(program, inputs=data)


def test_calibration_values_beyond_float32_and_image_bombs(tmp_path):
    with pytest.raises(UsageError, match=r"as float32 \(values beyond its range\) has 1 NaN"):
        x = np.zeros((2, 1, 32, 32))
        x[0, 0, 0, 0] = 1e300
        sieve.compile(build("lenet5"), "default", calibrate=x, dense_twin=False)
    (tmp_path / "imgs").mkdir()
    bomb = tmp_path / "imgs" / "bomb.png"
    bomb.write_bytes(_png(9000, 9000))                 # 81 M pixels in a few kilobytes
    with pytest.raises(UsageError, match=r"bomb.png: an image of 9000 x 9000 pixels has 81,000,000 elements, more "
                                         r"than the limit .* SIEVE_MAX_TENSOR_ELEMENTS"):
        sieve.compile(build("lenet5"), "default", calibrate=tmp_path / "imgs", dense_twin=False)
    bomb.write_bytes(_png(65535, 65535))               # beyond Pillow's own limit: its message, one line
    with pytest.raises(UsageError, match=r"bomb.png: cannot read image: .*decompression bomb"):
        sieve.compile(build("lenet5"), "default", calibrate=tmp_path / "imgs", dense_twin=False)


# ---------------------------------------------------------------- the last resort

def test_the_catch_all_names_the_input_and_asks_for_a_report(tmp_path, monkeypatch, capsys):
    model = tmp_path / "m.sv"
    sieve.frontend.dump_sv(build("lenet5"), model, inline=True)
    import sieve.pipeline as pipeline

    def broken(*a, **k):
        raise RuntimeError("a bug")
    monkeypatch.setattr(pipeline, "integer_model", broken)
    code = main(["compile", str(model), "-o", str(tmp_path / "m.sieve"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1, err
    assert err[0].startswith(f"sieve: internal error on {model}: RuntimeError: a bug (a bug in Sieve: please report")
    assert not (tmp_path / "m.sieve").exists()



# ---------------------------------------------------------------- a missing wait

@pytest.mark.parametrize("arch,opts", [("default", {}), ("multicore", {}), ("default", {"fusion": "max"}),
                                       ("multicore", {"partition": "pipeline"}), ("default", {"prune": "2:4"})])
@pytest.mark.parametrize("model", ["lenet5", "fsrcnn", "bert_tiny"])
def test_compiled_programs_order_every_read_after_its_write(model, arch, opts):
    from sieve.frontend import zoo_onnx
    from sieve.simulator import unordered_reads
    m = {"lenet5": lambda: build("lenet5"), "fsrcnn": lambda: zoo_onnx.fsrcnn(size=16, d=16, s=8, m=2),
         "bert_tiny": lambda: zoo_onnx.bert(1, 32, 2, 64, 8, 0, "b")}[model]()
    assert unordered_reads(sieve.compile(m, arch, dense_twin=False, **opts)) == []


@pytest.mark.parametrize("arch", ["default", "multicore"])
def test_a_removed_wait_is_found_and_run_check_refuses_it(tmp_path, capsys, arch):
    import re
    from sieve.simulator import unordered_reads
    prog = sieve.compile(build("lenet5"), arch, dense_twin=False)
    lines = disassemble(prog).splitlines()
    j = next(i for i, ln in enumerate(lines) if ln.strip().startswith("matmul") and "wait=" in ln)
    reader = int(lines[j].rsplit(";", 1)[1])            # the disassembly ends each line with its index
    lines[j] = re.sub(r" wait=\d+:\d+", "", lines[j])
    bad = assemble("\n".join(lines))
    races = unordered_reads(bad)
    assert races and races[0].reader == (0, reader) and "MATMUL" in races[0].reader_what
    assert races[0].writer[0] == 0 and "LOAD" in races[0].writer_what
    path = tmp_path / "bad.sieve"
    sieve.save(bad, path)
    capsys.readouterr()
    assert main(["check", str(path), "--show", "1"]) == 1
    out, err = capsys.readouterr()
    assert out.count("with no wait between them") == 1
    assert err.strip() == f"sieve: error: {path}: {len(races)} read(s) not ordered after the write they read: " \
                          "a missing wait"
    assert main(["run", str(path), "--check", "--timing-only"]) == 1
    assert "a read not ordered after the write it reads (a missing wait): core 0 instruction" in \
        capsys.readouterr().err


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    import os
    model = tmp_path / "m.sv"
    sieve.frontend.dump_sv(build("lenet5"), model, inline=True)

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "replace", refuse)
    assert main(["compile", str(model), "-o", str(tmp_path / "m.sieve"), "--quiet"]) == 1
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if "WARNING" not in ln]
    assert err == [f"sieve: error: {tmp_path / 'm.sieve'}: cannot write: Permission denied"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sv"]      # no partial file left
