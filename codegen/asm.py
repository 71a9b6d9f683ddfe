"""Disassembler and assembler: the text form of a Program, round-tripping byte for byte.

Both sides are driven by the ISA field table (``arch.isa.FIELDS``), so an
instruction added there is disassembled and assembled with no change here.
"""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import lark
import numpy as np

from sieve.arch.binary import (BinaryFormatError, LayerSymbol, Program, TensorDesc, decode_program, encode_program,
                               from_json_lists)
from sieve.arch.config import ArchConfig, ArchError, arch_from_dict, load_arch, read_text
from sieve.arch.isa import FIELDS, Instruction, ISAError, Opcode

@functools.cache
def _parser() -> lark.Lark:
    """The grammar, built on first use (building it costs tens of milliseconds at import)."""
    return lark.Lark(resources.files("sieve.codegen").joinpath("asm.lark").read_text(), parser="lalr",
                     propagate_positions=True, maybe_placeholders=False)
_HEX_FIELDS = {"dram_addr", "spad_addr", "w_addr", "x_addr", "acc_addr", "dst_addr", "bias_addr",
               "scale_addr", "a_addr", "b_addr", "src_addr", "param_addr"}
DATA_LINE = 64


class AsmError(Exception):
    def __init__(self, message: str, source: str = "", line: int | None = None, column: int | None = None):
        where = f"{source}:{line}:{column}: " if line is not None else (f"{source}: " if source else "")
        super().__init__(where + message)


# ---------------------------------------------------------------- disassembler

def _v(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_v(x) for x in value) + "]"
    return repr(value)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k in sorted(d):
        if isinstance(d[k], dict):
            out += _flatten(d[k], f"{prefix}{k}.")
        else:
            out.append((prefix + k, d[k]))
    return out


def format_instruction(ins: Instruction) -> str:
    parts = [ins.opcode.name.lower()]
    for (name, kind, _), value in zip(FIELDS[ins.opcode], ins.args):
        parts.append(f"{name}={value:#x}" if name in _HEX_FIELDS else f"{name}={value!r}")
    if ins.signal:
        parts.append(f"signal={ins.signal}")
    parts += [f"wait={c}:{v}" for c, v in ins.waits]
    return " ".join(parts)


def _desc_line(kind: str, d: TensorDesc) -> str:
    return (f".{kind} {d.name} addr={d.dram_addr:#x} shape={_v(d.shape)} view={_v(d.view_shape)} "
            f"perm={_v(d.perm)} scale={d.scale!r} zp={d.zero_point} dtype={_v(d.dtype)} post={_v(d.post)}")


STACK_FIELDS = ("members", "band_rows", "band_cols", "overlap", "recomputed_macs", "spad_bytes", "residency", "unfused_cycles",
                "unfused_energy_pj", "unfused_dram_bytes")


def _stack_of(s: LayerSymbol) -> dict:
    """A fused stack's symbol fields (one JSON string in the ``.layer`` directive)."""
    return {k: getattr(s, k) for k in STACK_FIELDS}


def disassemble(p: Program) -> str:
    lines = [f"; Sieve assembly: {len(p.streams)} core(s), arch '{p.arch.name}'",
             ".arch " + " ".join(f"{k}={_v(v)}" for k, v in _flatten(p.arch.to_dict())),
             f".dram {p.dram_bytes}", f".data_size {len(p.data)}"]
    lines += [_desc_line("input", d) for d in p.inputs] + [_desc_line("output", d) for d in p.outputs]
    data = np.frombuffer(p.data, np.uint8)
    for off in range(0, len(data), DATA_LINE):
        chunk = data[off:off + DATA_LINE]
        if chunk.any():
            lines.append(f'.data {off:#x} "{chunk.tobytes().hex()}"')
    for core, stream in enumerate(p.streams):
        lines.append(f".core {core}")
        starts = {s.start: s for s in p.layers if s.core == core}
        ends = {s.end for s in p.layers if s.core == core}
        for i, ins in enumerate(stream):
            if i in ends:
                lines.append(".endlayer")
            if i in starts:
                s = starts[i]
                lines.append(f".layer {s.name} op={_v(s.op)} macs={s.macs} info={_v(s.info)} "
                             f"format={_v(s.weight_format)} dense_cycles={s.dense_cycles} "
                             f"dense_mac_cycles={s.dense_mac_cycles} dense_energy_pj={s.dense_energy_pj!r} "
                             f"partition={_v(s.partition)}" + (f" fused={_v(json.dumps(_stack_of(s)))}"
                                                               if s.members else ""))
            lines.append(f"    {format_instruction(ins)}    ; {i}")
        if len(stream) in ends:
            lines.append(".endlayer")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- assembler

class _Values(lark.Transformer):
    def hex(self, t):
        if len(t[0]) > 34:                             # beyond 128 bits: no field or address holds it
            raise ValueError(f"the number {t[0][:12]}... has {len(t[0]) - 2} hex digits")
        return int(t[0], 16)

    def int(self, t):
        return int(t[0])

    def float(self, t):
        return float(t[0])

    def string(self, t):
        return json.loads(t[0])

    def pair(self, t):
        a, b = t[0].split(":")
        return (int(a), int(b))

    def word(self, t):
        if t[0] in ("true", "false"):
            return t[0] == "true"
        return _Word(t[0])

    def list(self, t):
        return [x for x in t if x is not None]

    def kv(self, t):
        return (str(t[0]), t[1])


class _Word(str):
    pass


def _nest(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        *parents, leaf = key.split(".")
        table = out
        for p in parents:
            table = table.setdefault(p, {})
        table[leaf] = value
    return out


class _Assembler:
    def __init__(self, source: str):
        self.source = source
        self.arch: ArchConfig | None = None
        self.dram = None
        self.data_size = None
        self.data: dict[int, bytes] = {}
        self.inputs, self.outputs, self.layers = [], [], []
        self.streams: list[list[Instruction]] = []
        self.open_layer = None

    def error(self, message: str, meta) -> AsmError:
        return AsmError(message, self.source, meta.line, meta.column)

    def directive(self, name: str, items: list, meta) -> None:
        kv = dict(i for i in items if isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str))
        pos = [i for i in items if not (isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str))]
        if name == "arch":
            if "preset" in kv:
                self.arch = load_arch(str(kv.pop("preset")))
                if kv:
                    from sieve.arch.config import with_overrides
                    self.arch = with_overrides(self.arch, kv)
            else:
                self.arch = arch_from_dict(_nest(list(kv.items())), f"{self.source} (.arch)")
        elif name == "dram":
            self.dram = self._size(pos, ".dram", 1, meta)
        elif name == "data_size":
            self.data_size = self._size(pos, ".data_size", 0, meta)
        elif name == "data":
            addr, blob = self._size(pos, ".data address", 0, meta), bytes.fromhex(str(pos[1]) if len(pos) > 1 else "")
            self.data[addr] = blob
        elif name in ("input", "output"):
            d = TensorDesc(str(pos[0]), int(kv["addr"]), tuple(kv["shape"]), tuple(kv.get("view", kv["shape"])),
                           tuple(kv.get("perm", range(len(kv["shape"])))), float(kv.get("scale", 1.0)),
                           int(kv.get("zp", 0)), str(kv.get("dtype", "int8")), str(kv.get("post", "")))
            (self.inputs if name == "input" else self.outputs).append(d)
        elif name == "core":
            if int(pos[0]) != len(self.streams):
                raise self.error(f".core {pos[0]} out of order (expected {len(self.streams)})", meta)
            self.streams.append([])
        elif name == "layer":
            self._need_core(meta)
            self.open_layer = (str(pos[0]), str(kv.get("op", "")), len(self.streams[-1]),
                               int(kv.get("macs", 0)), str(kv.get("info", "")), str(kv.get("format", "dense")),
                               int(kv.get("dense_cycles", 0)), int(kv.get("dense_mac_cycles", 0)),
                               float(kv.get("dense_energy_pj", 0.0)), str(kv.get("partition", "single")),
                               self._stack(kv, meta))
        elif name == "endlayer":
            if self.open_layer is None:
                raise self.error(".endlayer without .layer", meta)
            n, op, start, macs, info, fmt, dc, dmc, de, part, stack = self.open_layer
            self.layers.append(LayerSymbol(n, op, len(self.streams) - 1, start, len(self.streams[-1]), macs, info,
                                           fmt, dc, dmc, de, part, **stack))
            self.open_layer = None
        else:
            raise self.error(f"unknown directive '.{name}'", meta)

    def _size(self, pos: list, what: str, least: int, meta) -> int:
        """A directive's byte count or address: an integer of at least ``least``."""
        value = pos[0] if pos else None
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.error(f"{what} must be an integer of at least {least}, got {value!r}", meta)
        return value

    def _stack(self, kv: dict, meta) -> dict:
        """A ``.layer``'s fused-stack fields, from its ``fused`` JSON string."""
        if "fused" not in kv:
            return {}
        try:
            d = json.loads(str(kv["fused"]))
            if not isinstance(d, dict) or set(d) - set(STACK_FIELDS):
                raise ValueError(f"fields other than {', '.join(STACK_FIELDS)}")
        except ValueError as err:
            raise self.error(f"fused= is not a stack's fields: {err}", meta) from None
        return {k: from_json_lists(v) for k, v in d.items()}

    def _need_core(self, meta) -> None:
        if not self.streams:
            self.streams.append([])

    def instr(self, mnemonic: str, items: list, meta) -> None:
        try:
            opcode = Opcode[mnemonic.upper()]
        except KeyError:
            raise self.error(f"unknown instruction '{mnemonic}' (known: "
                             f"{', '.join(o.name.lower() for o in Opcode)})", meta) from None
        fields, waits, signal = {}, [], 0
        for item in items:
            if not (isinstance(item, tuple) and isinstance(item[0], str)):
                raise self.error(f"operand {item!r} is not key=value", meta)
            key, value = item
            if key == "wait":
                waits.append(value)
            elif key == "signal":
                signal = int(value)
            else:
                fields[key] = value
        self._need_core(meta)
        try:
            self.streams[-1].append(Instruction.make(opcode, signal=signal, waits=tuple(waits), **fields))
        except (ISAError, TypeError, ValueError) as err:
            raise self.error(str(err), meta) from None

    def program(self) -> Program:
        if self.arch is None:
            raise AsmError("no .arch directive", self.source)
        size = max([a + len(b) for a, b in self.data.items()] + [self.data_size or 0])
        if self.dram is not None and size > self.dram:
            what = "the .data bytes end" if size > (self.data_size or 0) else ".data_size is"
            raise AsmError(f"{what} at {size:#x}, past the {self.dram}-byte DRAM of .dram", self.source)
        image = bytearray(size)
        for addr, blob in self.data.items():
            image[addr:addr + len(blob)] = blob
        streams = [tuple(s) for s in self.streams] or [()]
        if len(streams) != self.arch.cores:
            raise AsmError(f"{len(streams)} .core sections for an arch with {self.arch.cores} cores", self.source)
        dram = self.dram if self.dram is not None else size
        return Program(self.arch, tuple(streams), bytes(image), dram, tuple(self.inputs), tuple(self.outputs),
                       tuple(self.layers))


def assemble(text: str, source: str = "<asm>") -> Program:
    """A program from its text. It is checked as its binary would be (``arch.binary.decode_program``):
    every field in range, the metadata consistent, every descriptor and symbol inside the program."""
    try:
        tree = _parser().parse(text if text.endswith("\n") else text + "\n")
    except lark.exceptions.UnexpectedInput as err:
        raise AsmError("syntax error\n" + err.get_context(text).rstrip(), source, err.line, err.column) from None
    except RecursionError:
        raise AsmError("nested too deeply", source) from None
    values = _Values()
    asm = _Assembler(source)
    for line in tree.children:
        try:
            items = [values.transform(c) if isinstance(c, lark.Tree) else c for c in line.children[1:]]
            items = [_Word(i) if isinstance(i, lark.Token) else i for i in items]
            getattr(asm, line.data)(str(line.children[0]), items, line.meta)
        except ArchError as err:
            raise AsmError(str(err), source, line.meta.line, line.meta.column) from None
        except lark.exceptions.VisitError as err:      # a number the transformer cannot take (4,300 digits)
            raise AsmError(f"bad value: {err.orig_exc}", source, line.meta.line, line.meta.column) from None
        except RecursionError:
            raise AsmError("nested too deeply", source, line.meta.line, line.meta.column) from None
        except (KeyError, IndexError, ValueError, TypeError, OverflowError) as err:
            raise AsmError(f"malformed .{line.children[0]}: {err}", source, line.meta.line,
                           line.meta.column) from None
    program = asm.program()
    try:
        return decode_program(encode_program(program), source)
    except ISAError as err:
        raise AsmError(str(err), source) from None
    except BinaryFormatError as err:
        raise AsmError(str(err).removeprefix(f"{source}: "), source) from None


def assemble_file(path: str | Path) -> Program:
    path = Path(path)
    return assemble(read_text(path, AsmError), str(path))
