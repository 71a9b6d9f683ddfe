"""Structure-aware fuzzing of every input surface: binaries, assembly, ONNX, .sv, arch TOML, data.

Each case is made from seeds that Sieve accepts (tiny models built in code, the programs compiled
from them, their assembly, the arch presets) by a few mutations that know the format: an
instruction field set to an edge value with the checksums recomputed (so it reaches the decoder
and the simulator), a metadata value of the wrong type, an ONNX attribute of 0 or 2^40, a TOML
value of infinity, an array of complex numbers. The case then runs the way the command line runs
it (load, compile, simulate). Its outcome is one of

    accepted    it ran to the end
    rejected    it raised one of Sieve's user errors (``sieve.ERRORS``): one line, named
    internal    any other exception: a bug (the catch-all would have printed "internal error")
    warning     it ran or was rejected, but a Python warning (a numpy RuntimeWarning) escaped
    hang        it ran longer than the time limit: 10 s of its worker's CPU time, so a busy machine
                does not make hangs (a case still running after 3x the limit in wall time is
                killed and its worker restarted)
    memory      its worker's peak memory passed the limit (the worker is restarted)

Cases are generated from (seed, surface, number), so any case reproduces by its number:

    python -m sieve.fuzz --cases 2000                      # every surface, 2 worker processes
    python -m sieve.fuzz --surface onnx --case 123 -v      # one case again, with its traceback

Only bad outcomes (internal, warning, hang, memory) are listed; docs/reliability.md has the figures.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import resource
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SURFACES = ("binary", "asm", "onnx", "sv", "arch", "inputs")
KINDS = ("accepted", "rejected", "internal", "warning", "hang", "memory")
BAD = ("internal", "warning", "hang", "memory")
TIME_LIMIT = 10.0                    # CPU seconds per case
WALL_FACTOR = 3                      # a case still running after this many limits of wall time is killed
MEMORY_LIMIT = 2 << 30               # bytes of peak resident memory per worker

# edge values that mutations draw from
INT_EDGES = (0, 1, -1, 2, 3, 7, 255, 256, 4095, 65535, 2 ** 20, 2 ** 24 - 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32,
             2 ** 40, 2 ** 62, 2 ** 63 - 1, -2 ** 31, -2 ** 63)
FLOAT_EDGES = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-45, 5e-324, 1e38, 3.5e38, 1e308, math.inf, -math.inf, math.nan)


# ---------------------------------------------------------------- seeds

def _onnx_cnn():
    """A tiny CNN with most image operators: conv (dense, depthwise), BN, ReLU, a residual add, HardSwish,
    a squeeze-and-excite gate (global pool, HardSigmoid, Mul), max and average pool, concat, flatten, gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(7)

    def init(name, shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [init("w1", (8, 4, 3, 3)), init("b1", (8,)), init("w2", (8, 1, 3, 3)), init("g", (8,)),
             init("beta", (8,)), init("mean", (8,)), numpy_helper.from_array(np.ones(8, np.float32), "var"),
             init("w3", (10, 16)), init("b3", (10,))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
             helper.make_node("BatchNormalization", ["c2", "g", "beta", "mean", "var"], ["n2"]),
             helper.make_node("Add", ["n2", "r1"], ["a2"]),
             helper.make_node("HardSwish", ["a2"], ["h2"]),                   # a squeeze-and-excite gate
             helper.make_node("GlobalAveragePool", ["h2"], ["s2"]),
             helper.make_node("HardSigmoid", ["s2"], ["g2"]),
             helper.make_node("Mul", ["h2", "g2"], ["m2"]),
             helper.make_node("MaxPool", ["m2"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["m2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Concat", ["p1", "p2"], ["cat"], axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["gp"]),
             helper.make_node("Flatten", ["gp"], ["fl"], axis=1),
             helper.make_node("Gemm", ["fl", "w3", "b3"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "fuzz_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _onnx_zoo():
    from sieve.frontend import zoo_onnx
    return [_onnx_cnn(), zoo_onnx.bert(1, 16, 2, 32, 8, 0, "fuzz_bert"), zoo_onnx.fsrcnn(size=8, d=8, s=4, m=1)]


def _onnx_int4():
    """Int4 weights as ONNX holds them: a Conv behind an INT4 DequantizeLinear (per channel), a
    MatMulNBits with two blocks and packed zero points."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh
    rng = np.random.default_rng(4)
    w = rng.integers(-8, 8, (32, 4, 3, 3))
    q = rng.integers(0, 16, (10, 32)).astype(np.uint8)
    inits = [h.make_tensor("w", T.INT4, w.shape, w.ravel().tolist()),
             nh.from_array((rng.random(32) * 0.05 + 0.01).astype(np.float32), "ws"),
             nh.from_array((q[:, 0::2] | (q[:, 1::2] << 4)).reshape(10, 2, 8), "b"),
             nh.from_array((rng.random(20) * 0.05 + 0.01).astype(np.float32), "sc"),
             nh.from_array(np.full(10, 0x88, np.uint8), "zp")]
    nodes = [h.make_node("DequantizeLinear", ["w", "ws"], ["wd"], axis=0),
             h.make_node("Conv", ["x", "wd"], ["c"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c"], ["r"]),
             h.make_node("GlobalAveragePool", ["r"], ["g"]), h.make_node("Flatten", ["g"], ["f"]),
             h.make_node("MatMulNBits", ["f", "b", "sc", "zp"], ["y"], domain="com.microsoft", K=32, N=10, bits=4,
                         block_size=16)]
    graph = h.make_graph(nodes, "fuzz_int4", [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 6, 6])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, 10])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21), h.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


@dataclass
class Seeds:
    """What every mutation starts from, built once per worker."""
    onnx: list = field(default_factory=list)            # onnx.ModelProto
    sv: list = field(default_factory=list)              # .sv text (weights inline)
    graphs: list = field(default_factory=list)          # quantized graphs, for compiling under fuzzed archs
    programs: list = field(default_factory=list)        # encoded binaries
    asm: list = field(default_factory=list)             # their disassembly
    arch: list = field(default_factory=list)            # TOML text
    small: object = None                                # a small ArchConfig

    @classmethod
    def build(cls) -> "Seeds":
        from sieve.api import compile as compile_model
        from sieve.arch import encode_program, load_arch, with_overrides
        from sieve.codegen import disassemble
        from sieve.frontend import import_model, sv_text
        from sieve.pipeline import integer_model
        s = cls()
        base = load_arch("default")
        s.small = with_overrides(base, {"name": "fuzz", "core.scratchpad_bytes": 65536,
                                        "core.accumulator_bytes": 16384, "memory.l2_bytes": 32768})
        two = with_overrides(s.small, {"name": "fuzz2", "cores": 2})
        s.onnx = _onnx_zoo()
        floats = [import_model(model) for model in s.onnx]
        s.onnx.append(_onnx_int4())                      # mutated as ONNX only
        s.sv = [sv_text(graph)[0] for graph in floats]
        s.graphs = [integer_model(graph).qgraph for graph in floats]
        for graph, arch, opts in ((s.graphs[0], s.small, {}), (s.graphs[0], two, {"fusion": "max"}),
                                  (s.graphs[1], s.small, {}), (s.graphs[2], two, {}),
                                  (floats[0], s.small, {"prune": "2:4"}), (floats[0], s.small, {"prune": 0.7}),
                                  (floats[0], s.small, {"weights": "int4", "group": 4, "prune": "2:4"}),
                                  (floats[0], two, {"weights": "int4", "prune": 0.7}),
                                  (floats[0], two, {"prune": 0.5, "compress_activations": "zvc",
                                                    "compress_weights": "zvc"})):
            prog = compile_model(graph, arch, dense_twin=False, **opts)
            s.programs.append(encode_program(prog))
            s.asm.append(disassemble(prog))
        s.arch = [load_arch(n).to_toml() for n in ("default", "edge", "multicore")] + [s.small.to_toml()]
        return s


# ---------------------------------------------------------------- mutations

def _edge_int(rng, bits: int | None = None) -> int:
    v = int(rng.choice(INT_EDGES)) if rng.random() < 0.7 else int(rng.integers(-300, 300))
    if bits is not None:
        v = v % (1 << bits)
    return v


def _edge_value(rng):
    """A JSON/TOML-ish value of a random type."""
    r = rng.integers(8)
    return [lambda: _edge_int(rng), lambda: float(rng.choice(FLOAT_EDGES)), lambda: "x",
            lambda: bool(rng.integers(2)), lambda: [], lambda: {}, lambda: None,
            lambda: [_edge_int(rng)] * int(rng.integers(1, 6))][r]()


def _paths(obj, prefix=()):
    """Every (path, value) of a nested JSON-like value."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _mutate_json(obj, rng, n: int = 1):
    """Set, delete or retype values at random paths of a JSON-like value (in place; returns it)."""
    for _ in range(n):
        paths = [p for p, _ in _paths(obj) if p]
        if not paths:
            return obj
        path = paths[int(rng.integers(len(paths)))]
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        key, old = path[-1], parent[path[-1]]
        r = rng.random()
        if r < 0.15 and isinstance(parent, dict):
            del parent[key]
        elif r < 0.5 and isinstance(old, (int, float)) and not isinstance(old, bool):
            parent[key] = _edge_int(rng) if isinstance(old, int) else float(rng.choice(FLOAT_EDGES))
        elif r < 0.6 and isinstance(old, list) and old:
            del old[int(rng.integers(len(old)))]
        elif r < 0.65 and isinstance(parent, dict):
            parent["fuzz_unknown"] = _edge_value(rng)
        else:
            parent[key] = _edge_value(rng)
    return obj


def _mutate_text(text: str, rng, n: int = 1) -> str:
    """Line and token mutations of a text format: numbers set to edge values, lines deleted,
    duplicated or swapped, words exchanged, bytes inserted, the text cut."""
    import re
    lines = text.split("\n")
    for _ in range(n):
        r = rng.random()
        i = int(rng.integers(len(lines)))
        if r < 0.45:
            nums = list(re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?", lines[i]))
            if nums:
                m = nums[int(rng.integers(len(nums)))]
                choice = rng.random()
                v = (str(_edge_int(rng)) if choice < 0.75 else
                     repr(float(rng.choice(FLOAT_EDGES))) if choice < 0.95 else "9" * 5000)
                lines[i] = lines[i][:m.start()] + v + lines[i][m.end():]
        elif r < 0.55:
            del lines[i]
            if not lines:
                lines = [""]
        elif r < 0.65:
            lines.insert(i, lines[int(rng.integers(len(lines)))])
        elif r < 0.72:
            j = int(rng.integers(len(lines)))
            lines[i], lines[j] = lines[j], lines[i]
        elif r < 0.82:
            words = re.findall(r"[A-Za-z_][\w.]*", text)
            here = list(re.finditer(r"[A-Za-z_][\w.]*", lines[i]))
            if words and here:
                m = here[int(rng.integers(len(here)))]
                lines[i] = lines[i][:m.start()] + words[int(rng.integers(len(words)))] + lines[i][m.end():]
        elif r < 0.88:
            at = int(rng.integers(len(lines[i]) + 1))
            junk = rng.choice(["[" * 3000, "{", "}", "\"", "\x00", "\u00e9", "=", ",", "#", "\\", "1e999", "nan",
                               "-", ")", "("])
            lines[i] = lines[i][:at] + junk + lines[i][at:]
        elif r < 0.93:
            return "\n".join(lines)[:int(rng.integers(len(text) + 1))]
        else:
            lines.insert(i, lines[i])
            lines[i] = lines[i].replace("1", "0")
    return "\n".join(lines)


def _sections(raw: bytes) -> list[tuple[int, int, bytes]]:
    from sieve.arch.binary import ENTRY, HEADER
    count = HEADER.unpack_from(raw)[4]
    out = []
    for i in range(count):
        kind, core, off, size, _, _ = ENTRY.unpack_from(raw, HEADER.size + i * ENTRY.size)
        out.append((kind, core, raw[off:off + size]))
    return out


def _container(raw: bytes, sections: list[tuple[int, int, bytes]], fingerprint: bytes | None = None) -> bytes:
    """Sections back into a container with every checksum recomputed."""
    from sieve.arch.binary import ENTRY, HEADER, MAGIC
    _, major, minor, fp, _, _ = HEADER.unpack_from(raw)
    fp = fingerprint or fp
    offset = HEADER.size + ENTRY.size * len(sections)
    table = b""
    for kind, core, payload in sections:
        table += ENTRY.pack(kind, core, offset, len(payload), zlib.crc32(payload), 0)
        offset += len(payload)
    head = HEADER.pack(MAGIC, major, minor, fp, len(sections), 0)
    crc = zlib.crc32(head[:48] + table)
    return HEADER.pack(MAGIC, major, minor, fp, len(sections), crc) + table + b"".join(p for _, _, p in sections)


def _mutate_code(payload: bytes, rng) -> bytes:
    """One instruction of a code section changed: a field at an edge of its width (or a float edge),
    the signal or a wait, or instructions deleted, duplicated, swapped."""
    from sieve.arch.isa import FIELDS, HEADER_BITS, Opcode, WORD_BYTES
    words = [payload[i:i + WORD_BYTES] for i in range(0, len(payload), WORD_BYTES)]
    if not words:
        return payload
    i = int(rng.integers(len(words)))
    r = rng.random()
    if r < 0.7:
        word = int.from_bytes(words[i], "little")
        op = word & 0xFF
        fields = FIELDS.get(Opcode(op), []) if op in {int(o) for o in Opcode} else []
        if fields and rng.random() < 0.85:
            j = int(rng.integers(len(fields)))
            pos = HEADER_BITS + sum(b for _, _, b in fields[:j])
            _, kind, bits = fields[j]
            if kind == "f":
                with np.errstate(over="ignore"):
                    value = int(np.float32(rng.choice(FLOAT_EDGES)).view(np.uint32))
            else:
                value = _edge_int(rng, bits) if rng.random() < 0.8 else int(rng.integers(0, 1 << bits))
            word = (word & ~(((1 << bits) - 1) << pos)) | (value << pos)
        else:                                            # the header: opcode, signal, waits
            pos, bits = [(0, 8), (8, 4), (12, 4), (16, 20), (36, 4), (40, 20)][int(rng.integers(6))]
            word = (word & ~(((1 << bits) - 1) << pos)) | (_edge_int(rng, bits) << pos)
        words[i] = word.to_bytes(WORD_BYTES, "little")
    elif r < 0.8:
        del words[i]
    elif r < 0.9:
        words.insert(i, words[int(rng.integers(len(words)))])
    else:
        j = int(rng.integers(len(words)))
        words[i], words[j] = words[j], words[i]
    return b"".join(words)


def mutate_binary(raw: bytes, rng) -> bytes:
    from sieve.arch.binary import SectionKind
    sections = _sections(raw)
    fingerprint = None
    for _ in range(int(rng.integers(1, 4))):
        r = rng.random()
        i = int(rng.integers(len(sections)))
        kind, core, payload = sections[i]
        want = (SectionKind.CODE if r < 0.55 else SectionKind.META if r < 0.75 else SectionKind.ARCH if r < 0.83
                else SectionKind.DATA if r < 0.9 else None)
        have = [k for k, s in enumerate(sections) if s[0] == want]
        if want is not None and not have:
            continue
        if r < 0.55:
            j = have[int(rng.integers(len(have)))]
            sections[j] = (sections[j][0], sections[j][1], _mutate_code(sections[j][2], rng))
        elif r < 0.75:
            j = have[0]
            meta = _mutate_json(json.loads(sections[j][2]), rng, int(rng.integers(1, 3)))
            sections[j] = (SectionKind.META, 0, json.dumps(meta).encode())
        elif r < 0.83:
            j = have[0]
            arch = _mutate_json(json.loads(sections[j][2]), rng)
            text = json.dumps(arch, sort_keys=True, separators=(",", ":"))
            sections[j] = (SectionKind.ARCH, 0, text.encode())
            try:                                         # a consistent header, so the arch gets checked
                from sieve.arch import arch_from_dict
                fingerprint = bytes.fromhex(arch_from_dict(arch).fingerprint())
            except Exception:                            # noqa: BLE001 - invalid archs keep the old one
                pass
        elif r < 0.9:
            j = have[0]
            data = bytearray(sections[j][2])
            if data and rng.random() < 0.5:
                data = data[:int(rng.integers(len(data)))]
            else:
                data += bytes(int(rng.integers(1, 4096)))
            sections[j] = (SectionKind.DATA, 0, bytes(data))
        elif r < 0.95:
            if rng.random() < 0.5 and len(sections) > 1:
                del sections[i]
            else:
                sections.insert(i, sections[int(rng.integers(len(sections)))])
        else:
            sections[i] = (int(rng.choice([kind, 0, 5, 2 ** 32 - 1])),
                           int(rng.choice([core, 1, 63, 2 ** 32 - 1])), payload)
    return _container(raw, sections, fingerprint)


def mutate_onnx(model, rng):
    """Attribute values at edges, attributes dropped or unknown ones added, inputs dropped, added or
    renamed, initializers reshaped, truncated, retyped or filled with 1e-45/inf, graph input shapes
    and types changed, huge ConstantOfShape/Range nodes, external data that is not there."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for _ in range(int(rng.integers(1, 3))):
        r = rng.random()
        node = g.node[int(rng.integers(len(g.node)))]
        if r < 0.3 and node.attribute:
            a = node.attribute[int(rng.integers(len(node.attribute)))]
            if a.type == onnx.AttributeProto.INT:
                a.i = max(-2 ** 63, min(2 ** 63 - 1, _edge_int(rng)))
            elif a.type == onnx.AttributeProto.INTS and rng.random() < 0.5:
                del a.ints[:]
                a.ints.extend(max(-2 ** 63, min(2 ** 63 - 1, _edge_int(rng))) for _ in range(int(rng.integers(0, 6))))
            elif a.type == onnx.AttributeProto.FLOAT:
                with np.errstate(over="ignore"):
                    a.f = float(np.float32(rng.choice(FLOAT_EDGES)))
            elif rng.random() < 0.5:
                node.attribute.remove(a)
            else:
                a.name = "fuzz_unknown"
        elif r < 0.4:
            node.attribute.append(helper.make_attribute(
                str(rng.choice(["kernel_shape", "strides", "pads", "group", "axis", "dilations", "perm", "mode",
                                "auto_pad", "fuzz"])),
                [int(rng.choice(INT_EDGES[:8]))] * int(rng.integers(1, 5)) if rng.random() < 0.5 else
                str(rng.choice(["SAME_UPPER", "VALID", "x"]))))
        elif r < 0.55:
            choice = rng.random()
            if choice < 0.35 and node.input:
                del node.input[int(rng.integers(len(node.input)))]
            elif choice < 0.6:
                node.input.append(str(rng.choice([i.name for i in g.initializer] + ["", "missing"])))
            elif node.input:
                node.input[int(rng.integers(len(node.input)))] = str(rng.choice(
                    [i.name for i in g.initializer] + [n.output[0] for n in g.node] + ["", "missing"]))
        elif r < 0.62:
            node.op_type = str(rng.choice(["Conv", "Relu", "Gemm", "MatMul", "Add", "Mul", "Softmax", "MaxPool",
                                           "Reshape", "Transpose", "Concat", "Resize", "Sigmoid", "Fuzz",
                                           "LayerNormalization", "QuantizeLinear", "DequantizeLinear"]))
        elif r < 0.8 and g.initializer:
            t = g.initializer[int(rng.integers(len(g.initializer)))]
            choice = rng.random()
            try:
                arr = numpy_helper.to_array(t)
            except Exception:                            # noqa: BLE001 - an earlier mutation broke it
                arr = np.zeros(0, np.float32)
            if choice < 0.25:
                dims = list(t.dims) or [1]
                dims[int(rng.integers(len(dims)))] = int(rng.choice([0, 1, 2, 3, 2 ** 31, 2 ** 40]))
                del t.dims[:]
                t.dims.extend(dims)
            elif choice < 0.45:
                raw = arr.tobytes()
                t.ClearField("float_data")
                t.ClearField("int64_data")
                t.raw_data = raw[:int(rng.integers(len(raw) + 1))]
            elif choice < 0.6:
                t.data_type = int(rng.choice([TensorProto.UINT8, TensorProto.INT64, TensorProto.DOUBLE,
                                              TensorProto.FLOAT16, TensorProto.STRING, TensorProto.BOOL,
                                              TensorProto.COMPLEX64, 0, 99]))
            elif choice < 0.8 and arr.dtype.kind == "f" and arr.size:
                arr = arr.copy()
                with np.errstate(over="ignore"):
                    arr.flat[int(rng.integers(max(arr.size, 1)))] = float(rng.choice(FLOAT_EDGES))
                t.CopyFrom(numpy_helper.from_array(arr, t.name))
            else:
                t.data_location = TensorProto.EXTERNAL
                del t.external_data[:]
                for k, v in (("location", str(rng.choice(["missing.bin", "../../etc/passwd", "", "/dev/zero"]))),
                             ("offset", str(rng.choice([0, -1, 2 ** 40]))), ("length", str(rng.choice([4, 2 ** 40])))):
                    if rng.random() < 0.8:
                        e = t.external_data.add()
                        e.key, e.value = k, v
                t.ClearField("raw_data")
                t.ClearField("float_data")
        elif r < 0.9:
            vi = g.input[0]
            tt = vi.type.tensor_type
            if rng.random() < 0.6 and tt.shape.dim:
                d = tt.shape.dim[int(rng.integers(len(tt.shape.dim)))]
                if rng.random() < 0.2:
                    d.dim_param = "N"
                else:
                    d.dim_value = int(rng.choice([0, 1, 2, 3, 5, 2 ** 31, 2 ** 40]))   # malformed or small: a large
                    # model compiles in time proportional to its size, which is not a defect
            else:
                tt.elem_type = int(rng.choice([TensorProto.UINT8, TensorProto.INT8, TensorProto.INT64,
                                               TensorProto.FLOAT16, TensorProto.STRING, TensorProto.BOOL]))
        else:                                            # a huge constant feeding an existing tensor
            size = int(rng.choice([2 ** 20, 2 ** 31, 2 ** 40, 0]))
            kind = rng.random()
            if kind < 0.5:
                shape = numpy_helper.from_array(np.array([1, size], np.int64), "fuzz_shape")
                g.initializer.append(shape)
                g.node.append(helper.make_node("ConstantOfShape", ["fuzz_shape"], ["fuzz_big"]))
            else:
                for name, v in (("fuzz_start", 0), ("fuzz_limit", size), ("fuzz_delta", 1)):
                    g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), name))
                g.node.append(helper.make_node("Range", ["fuzz_start", "fuzz_limit", "fuzz_delta"], ["fuzz_big"]))
            target = g.node[int(rng.integers(len(g.node) - 1))]
            target.input.append("fuzz_big")
    if rng.random() < 0.05:
        m.opset_import[0].version = int(rng.choice([1, 6, 11, 13, 21, 99]))
    return m


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        return '""'
    return str(v)


def _toml(d: dict) -> str:
    top = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    tables = [f"\n[{k}]\n" + "\n".join(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
              for k, v in d.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


def mutate_arch(text: str, rng) -> str:
    import tomllib
    if rng.random() < 0.25:
        return _mutate_text(text, rng, int(rng.integers(1, 3)))
    d = tomllib.loads(text)
    for _ in range(int(rng.integers(1, 3))):
        paths = [p for p, v in _paths(d) if p and not isinstance(v, dict)]
        path = paths[int(rng.integers(len(paths)))]
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        r = rng.random()
        if r < 0.1:
            del parent[path[-1]]
        elif r < 0.15 and isinstance(parent, dict):
            parent["fuzz_unknown"] = 1
        elif r < 0.7:
            parent[path[-1]] = _edge_int(rng) if rng.random() < 0.5 else float(rng.choice(FLOAT_EDGES))
        else:
            parent[path[-1]] = _edge_value(rng)
    return _toml(d)


def _png(width: int, height: int, body: bytes | None = None) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (a decompression bomb when the body is small)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if body is None:
        body = zlib.compress(b"\x00" * min((width + 1) * height, 1 << 24), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def make_data(shape: tuple[int, ...], rng, where: Path) -> Path | np.ndarray | dict:
    """A data argument for a model input of ``shape``: an array of a random type, shape and values,
    as given in Python, or written as .npy/.npz (sometimes corrupt), or a folder of images."""
    r = rng.random()
    if r < 0.12:                                         # a folder of images
        folder = where / "images"
        folder.mkdir()
        from PIL import Image
        for i in range(int(rng.integers(0, 3))):
            c = rng.random()
            path = folder / f"{i}.png"
            if c < 0.3:
                path.write_bytes(_png(int(rng.choice([1, 30000, 65535])), int(rng.choice([1, 30000, 65535]))))
            elif c < 0.5:
                path.write_bytes(bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8)))
            else:
                mode = str(rng.choice(["L", "RGB", "RGBA", "I;16", "1", "P", "LA"]))
                size = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
                Image.new(mode, size).save(path)
        return folder
    dtype = rng.choice(["float32", "float32", "float64", "float16", "int8", "uint8", "int64", "bool",
                        "complex64", "datetime64[s]", "U3", "object", "struct"])
    shp = list(shape)
    c = rng.random()
    if c < 0.15:
        shp[0] = 0
    elif c < 0.3:
        shp = shp[1:] if rng.random() < 0.5 else shp + [2]
    elif c < 0.4:
        shp[int(rng.integers(len(shp)))] += 1
    elif c < 0.5:
        shp[0] = int(rng.integers(2, 5))
    if dtype == "struct":
        x = np.zeros(shp, dtype=[("a", "f4"), ("b", "i4")])
    elif dtype == "object":
        x = np.empty(shp, dtype=object)
    else:
        x = (rng.standard_normal(shp) * 2).astype(np.float64)
        if rng.random() < 0.3 and x.size:
            x.flat[int(rng.integers(x.size))] = float(rng.choice(FLOAT_EDGES))
        with np.errstate(all="ignore"):
            x = x.astype(dtype) if dtype != "U3" else x.astype(str).astype("U3")
    r = rng.random()
    if r < 0.3:
        return x
    if r < 0.4:
        return {"fuzz": x} if rng.random() < 0.5 else {"x": x, "other": x}
    path = where / ("data.npy" if r < 0.6 else "data.npz")
    if path.suffix == ".npy":
        np.save(path, x, allow_pickle=True)
    else:
        np.savez(path, **{str(rng.choice(["x", "input", "fuzz"])): x})
    c = rng.random()
    if c < 0.1:
        path.write_bytes(path.read_bytes()[:int(rng.integers(path.stat().st_size + 1))])
    elif c < 0.15:
        path.write_bytes(b"")
    elif c < 0.2:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("x.npy", bytes(rng.integers(0, 256, 64, dtype=np.uint8)))
        path.write_bytes(buf.getvalue())
    return path


# ---------------------------------------------------------------- running a case

def _simulate(raw_or_program, rng) -> None:
    """Bit-exact on random inputs of the program's shapes, as ``sieve run`` does (its timing is the
    timing-only run's; one case in four also runs timing-only on its own)."""
    from sieve.api import load, simulate
    prog = load(raw_or_program) if isinstance(raw_or_program, bytes) else raw_or_program
    if rng.random() < 0.25:
        simulate(prog, timing_only=True)
    inputs = {d.name: rng.standard_normal(d.shape).astype(np.float32) for d in prog.inputs}
    simulate(prog, inputs=inputs, threads=None)          # the worker holds BLAS at one thread


def run_case(surface: str, index: int, seeds: Seeds, seed: int = 0) -> None:
    """Make case ``index`` of ``surface`` and run it; returns when Sieve accepted it, raises what
    Sieve raised otherwise."""
    rng = np.random.default_rng([seed, SURFACES.index(surface), index])
    with tempfile.TemporaryDirectory(prefix="sieve-fuzz-") as tmp:
        where = Path(tmp)
        if surface == "binary":
            _simulate(mutate_binary(seeds.programs[int(rng.integers(len(seeds.programs)))], rng), rng)
        elif surface == "asm":
            from sieve.codegen import assemble_file
            text = _mutate_text(seeds.asm[int(rng.integers(len(seeds.asm)))], rng, int(rng.integers(1, 4)))
            path = where / "prog.s"
            path.write_bytes(text.encode("utf-8", "surrogatepass"))
            _simulate(assemble_file(path), rng)
        elif surface in ("onnx", "sv"):
            from sieve.api import compile as compile_model
            i = int(rng.integers(len(seeds.onnx if surface == "onnx" else seeds.sv)))
            if surface == "onnx":
                path = where / "model.onnx"              # the bytes as they are (onnx.save would check them)
                path.write_bytes(mutate_onnx(seeds.onnx[i], rng).SerializeToString())
            else:
                path = where / "model.sv"
                path.write_text(_mutate_text(seeds.sv[i], rng, int(rng.integers(1, 4))), encoding="utf-8")
            prog = compile_model(path, seeds.small, fusion=str(rng.choice(["none", "auto", "max"])),
                                 dense_twin=False, prune=[None, None, 0.5, "2:4"][int(rng.integers(4))])
            _simulate(prog, rng)
        elif surface == "arch":
            from sieve.api import compile as compile_model
            path = where / "arch.toml"
            path.write_text(mutate_arch(seeds.arch[int(rng.integers(len(seeds.arch)))], rng), encoding="utf-8")
            graph = seeds.graphs[int(rng.integers(len(seeds.graphs)))]
            _simulate(compile_model(graph, path, dense_twin=False), rng)
        elif surface == "inputs":
            from sieve.api import compile as compile_model
            from sieve.api import load, simulate
            i = int(rng.integers(2))
            if rng.random() < 0.6:
                prog = load(seeds.programs[[0, 2][i]])
                data = make_data(prog.inputs[0].shape, rng, where)
                simulate(prog, inputs=data, threads=None)
            else:
                graph = seeds.onnx[[0, 1][i]]
                shape = tuple(d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim)
                data = make_data(shape, rng, where)
                compile_model(graph, seeds.small, calibrate=data, dense_twin=False, fusion="none")
        else:
            raise ValueError(f"unknown surface {surface}")


def classify(surface: str, index: int, seeds: Seeds, seed: int = 0) -> tuple[str, str]:
    """(kind, detail) of one case run in this process (no time or memory limit)."""
    from sieve.errors import ERRORS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run_case(surface, index, seeds, seed)
            kind, detail = "accepted", ""
        except ERRORS as err:
            kind, detail = "rejected", (str(err).splitlines() or [""])[0]
        except (Exception, RecursionError) as err:        # noqa: BLE001 - what the harness is for
            tb = traceback.extract_tb(err.__traceback__)
            root = str(Path(__file__).resolve().parents[1])
            ours = [f for f in tb if f.filename.startswith(root) and "-packages" not in f.filename]
            inner = f" (in {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb and tb[-1] not in ours[-1:] else ""
            where = (f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?") + inner
            return "internal", f"{type(err).__name__} at {where}: {str(err)[:200]}"
    loud = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    if loud:
        w = loud[0]
        return "warning", f"{w.category.__name__} at {Path(w.filename).name}:{w.lineno}: {w.message}"
    return kind, detail


# ---------------------------------------------------------------- workers and the report

def _worker(conn, seed: int, memory_limit: int) -> None:
    """Runs cases sent by the parent: (surface, index) -> (kind, detail, seconds, peak rss bytes)."""
    from sieve.threads import blas_threads
    logging_quiet()
    seeds = Seeds.build()
    for surface in SURFACES:                         # compile (numba) and warm every path before timing cases
        classify(surface, -1, seeds, seed)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    base = _vsize()
    cap = base + 2 * memory_limit                      # a case that asks for far more fails at once
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    conn.send(("ready", _rss_peak()))
    with blas_threads(1):
        try:
            while True:
                job = conn.recv()
                if job is None:
                    return
                surface, index = job
                t0 = time.process_time()
                kind, detail = classify(surface, index, seeds, seed)
                conn.send((kind, detail, time.process_time() - t0, _rss_peak()))
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return                                   # the parent is gone: stop quietly


def logging_quiet() -> None:
    import logging
    logging.getLogger("sieve").setLevel(logging.ERROR)


def _vsize() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _rss_peak() -> int:
    """This process's peak resident memory (VmHWM of its address space: unlike getrusage's maxrss, it does
    not carry over the parent's peak through fork and exec, which made workers of a large parent look
    2 GiB big from the start)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Tally:
    cases: int = 0
    kinds: dict = field(default_factory=lambda: {k: 0 for k in KINDS})
    peak_rss: int = 0
    slowest: float = 0.0
    seconds: float = 0.0
    bad: list = field(default_factory=list)          # (index, kind, detail)


class _Worker:
    def __init__(self, ctx, seed: int, memory_limit: int):
        self.parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, seed, memory_limit), daemon=True)
        self.proc.start()
        child.close()
        self.job, self.started, self.base_rss = None, 0.0, 0

    def ready(self) -> "_Worker":
        """Wait until the worker has built its seeds."""
        try:
            self.base_rss = self.parent.recv()[1]
        except EOFError:
            raise RuntimeError("a fuzz worker died while building its seeds") from None
        return self

    def send(self, job) -> None:
        self.job, self.started = job, time.perf_counter()
        self.parent.send(job)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()


def fuzz(cases: dict[str, int], workers: int = 2, seed: int = 0, time_limit: float = TIME_LIMIT,
         memory_limit: int = MEMORY_LIMIT, start: int = 0, progress=None) -> dict[str, Tally]:
    """Run ``cases[surface]`` cases of each surface (numbers ``start`` ..) on ``workers`` processes.
    A case over ``time_limit`` seconds of CPU time is a hang (one still running after ``WALL_FACTOR``
    times that in wall time is killed), one that takes its worker's peak resident memory over
    ``memory_limit`` bytes is a memory blow-up; either restarts the worker."""
    import multiprocessing
    from multiprocessing.connection import wait
    ctx = multiprocessing.get_context("spawn")
    jobs = [(s, start + i) for s, n in cases.items() for i in range(n)]
    jobs.reverse()
    tallies = {s: Tally() for s in cases}
    pool = [_Worker(ctx, seed, memory_limit) for _ in range(max(1, min(workers, len(jobs))))]
    pool = [w.ready() for w in pool]
    done, total = 0, len(jobs)

    def record(surface, index, kind, detail, seconds, rss):
        nonlocal done
        t = tallies[surface]
        t.cases += 1
        t.kinds[kind] += 1
        t.peak_rss, t.slowest = max(t.peak_rss, rss), max(t.slowest, seconds)
        t.seconds += seconds
        if kind in BAD:
            t.bad.append((index, kind, detail))
        done += 1
        if progress:
            progress(done, total)

    try:
        for w in pool:
            if jobs:
                w.send(jobs.pop())
        while any(w.job for w in pool):
            busy = [w for w in pool if w.job]
            ready = wait([w.parent for w in busy], timeout=0.5)
            now = time.perf_counter()
            for i, w in enumerate(pool):
                if not w.job:
                    continue
                restart = False
                if w.parent in ready:
                    try:
                        kind, detail, seconds, rss = w.parent.recv()
                    except EOFError:                     # the worker died (a crash in native code)
                        kind, detail, seconds, rss = "internal", "worker process died", now - w.started, 0
                        restart = True
                    if rss > memory_limit and kind != "internal":
                        kind, detail, restart = "memory", f"peak resident memory {rss / 2 ** 30:.2f} GiB", True
                    elif seconds > time_limit:
                        kind, detail = "hang", f"took {seconds:.1f} s of CPU time"
                    record(*w.job, kind, detail, seconds, rss)
                elif now - w.started > WALL_FACTOR * time_limit:
                    record(*w.job, "hang", f"killed after {WALL_FACTOR * time_limit:.0f} s of wall time",
                           now - w.started, 0)
                    restart = True
                else:
                    continue
                if restart:
                    w.kill()
                    w = pool[i] = _Worker(ctx, seed, memory_limit).ready()
                w.job = None
                if jobs:
                    w.send(jobs.pop())
    finally:
        for w in pool:
            try:
                w.parent.send(None)
            except (OSError, BrokenPipeError):
                pass
            w.proc.join(timeout=5)
            if w.proc.is_alive():
                w.kill()
    return tallies


def report(tallies: dict[str, Tally]) -> str:
    lines = [f"{'surface':<8} {'cases':>9} {'rejected':>9} {'accepted':>9} {'internal':>9} {'warning':>8} "
             f"{'hang':>5} {'memory':>7} {'peak MiB':>9} {'slowest s':>10} {'ms/case':>8}"]
    for s, t in tallies.items():
        k = t.kinds
        lines.append(f"{s:<8} {t.cases:>9,} {k['rejected']:>9,} {k['accepted']:>9,} {k['internal']:>9,} "
                     f"{k['warning']:>8,} {k['hang']:>5,} {k['memory']:>7,} {t.peak_rss / 2 ** 20:>9.0f} "
                     f"{t.slowest:>10.2f} {1000 * t.seconds / max(t.cases, 1):>8.1f}")
    for s, t in tallies.items():
        seen = {}
        for index, kind, detail in t.bad:
            seen.setdefault((kind, detail.split(":")[0] if kind == "internal" else detail[:60]), (index, detail))
        for (kind, _), (index, detail) in seen.items():
            lines.append(f"  {s} case {index}: {kind}: {detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sieve.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000, help="cases per surface (default %(default)s)")
    p.add_argument("--surface", action="append", choices=SURFACES, help="only these surfaces (repeatable)")
    p.add_argument("--case", type=int, help="run one case in this process and show what happened")
    p.add_argument("--start", type=int, default=0, help="first case number")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", metavar="FILE", help="write the tallies as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    surfaces = args.surface or list(SURFACES)
    if args.case is not None:
        logging_quiet()
        seeds = Seeds.build()
        for s in surfaces:
            if args.verbose:
                try:
                    run_case(s, args.case, seeds, args.seed)
                    print(f"{s} case {args.case}: accepted")
                except Exception:                        # noqa: BLE001
                    traceback.print_exc()
            else:
                print(f"{s} case {args.case}:", *classify(s, args.case, seeds, args.seed))
        return 0
    t0 = time.perf_counter()
    tallies = fuzz({s: args.cases for s in surfaces}, args.workers, args.seed, start=args.start)
    print(report(tallies))
    print(f"{sum(t.cases for t in tallies.values()):,} cases in {time.perf_counter() - t0:.0f} s "
          f"on {args.workers} workers")
    if args.json:
        Path(args.json).write_text(json.dumps({s: {"cases": t.cases, **t.kinds, "peak_rss_bytes": t.peak_rss,
                                                   "slowest_s": t.slowest, "cpu_s": t.seconds,
                                                   "bad": t.bad[:100]} for s, t in tallies.items()}, indent=1))
    return int(any(t.kinds[k] for t in tallies.values() for k in BAD))


if __name__ == "__main__":
    sys.exit(main())
