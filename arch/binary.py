"""The program and its `.sieve` container.

Layout (all integers little-endian):

    header  60 bytes : magic "SIEVEBIN", u16 major, u16 minor, 32-byte arch fingerprint,
                       u32 section count, u32 crc32 of (header[0:48] + section table),
                       8 reserved bytes that must be zero
    table   32 bytes per section : u32 kind, u32 core, u64 offset, u64 size, u32 crc32, u32 0
    payload the sections, in table order

Sections: ARCH (canonical JSON of the arch it was compiled for), CODE (one per core,
32-byte instruction words), DATA (the constant DRAM image, placed at DRAM address 0),
META (canonical JSON: DRAM size, inputs/outputs, layer symbols).
"""
from __future__ import annotations

import enum
import json
import struct
import zlib
import math
from dataclasses import MISSING, asdict, dataclass, field, fields

import numpy as np

from sieve_numerics.limits import MAX_DRAM_BYTES, MAX_INSTRUCTIONS

from sieve.arch.config import VISIBLE, ArchConfig, ArchError, arch_from_dict
from sieve.arch.isa import Instruction, ISAError, decode_stream, encode_stream

MAGIC = b"SIEVEBIN"
VERSION = (7, 0)
HEADER = struct.Struct("<8sHH32sII8x")
ENTRY = struct.Struct("<IIQQII")


class BinaryFormatError(Exception):
    """A `.sieve` file that cannot be loaded: truncated, corrupted, wrong version or arch."""


class SectionKind(enum.IntEnum):
    ARCH = 1
    CODE = 2
    DATA = 3
    META = 4


@dataclass(frozen=True)
class TensorDesc:
    """A graph input or output in DRAM. mem = logical.reshape(view_shape).transpose(perm)."""
    name: str
    dram_addr: int
    shape: tuple[int, ...]        # logical shape (NCHW semantics, as in the model)
    view_shape: tuple[int, ...]   # logical shape before any flatten
    perm: tuple[int, ...]         # view -> memory axis order (NCHW -> NHWC is (0, 2, 3, 1))
    scale: float
    zero_point: int
    dtype: str = "int8"           # "int8"; "uint8" (stored as int8 = uint8 - 128); "int32"
    post: str = ""                # host work after dequantization: "" or "softmax" (last axis)

    @property
    def itemsize(self) -> int:
        return 4 if self.dtype == "int32" else 1

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.itemsize

    def to_memory(self, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.reshape(self.view_shape).transpose(self.perm))

    def from_memory(self, mem: np.ndarray) -> np.ndarray:
        view = mem.reshape(tuple(self.view_shape[p] for p in self.perm))
        return view.transpose(np.argsort(self.perm)).reshape(self.shape)

    def stored_dtype(self) -> np.dtype:
        return np.dtype(np.int32 if self.dtype == "int32" else np.int8)

    def to_model(self, stored: np.ndarray) -> np.ndarray:
        """Stored integers as the model's own type (uint8 tensors are shifted back by 128)."""
        if self.dtype == "uint8":
            return (stored.astype(np.int16) + 128).astype(np.uint8)
        return stored

    def from_model(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == np.uint8:
            return (x.astype(np.int16) - 128).astype(np.int8)
        return x


@dataclass(frozen=True)
class LayerSymbol:
    """Instructions [start, end) of one core's stream belong to one layer. A layer split across
    cores has one symbol per core; all of them carry the layer's figures (MACs, plan, twin)."""
    name: str
    op: str
    core: int
    start: int
    end: int
    macs: int = 0
    info: str = ""
    weight_format: str = "dense"      # "dense", "unstructured", "N:M" (matmul layers)
    dense_cycles: int = 0             # the same layer compiled dense on the same arch, simulated at
    dense_mac_cycles: int = 0         # compile time (0: no dense twin was simulated)
    dense_energy_pj: float = 0.0
    partition: str = "single"         # how the layer is split across cores (scheduler.partition)
    # a fused stack (scheduler.fusion): its layers, band height, overlap mode, the MACs done more than
    # once, the scratchpad it uses, where each tensor lived as (tensor, "DRAM" or "scratchpad", region
    # bytes), and the same layers compiled one by one on the same arch and simulated at compile time
    # (0: no unfused twin)
    members: tuple = ()
    band_rows: int = 0
    band_cols: int = 0                # columns per tile (0: whole rows)
    overlap: str = ""
    recomputed_macs: int = 0
    spad_bytes: int = 0
    residency: tuple = ()
    unfused_cycles: int = 0
    unfused_energy_pj: float = 0.0
    unfused_dram_bytes: int = 0


def from_json_lists(v):
    """JSON lists back to the tuples they were written from."""
    return tuple(from_json_lists(x) for x in v) if isinstance(v, list) else v


@dataclass(frozen=True)
class Program:
    arch: ArchConfig
    streams: tuple[tuple[Instruction, ...], ...]   # one per core
    data: bytes                                     # constant DRAM image at address 0
    dram_bytes: int                                 # size of the DRAM the program uses
    inputs: tuple[TensorDesc, ...]
    outputs: tuple[TensorDesc, ...]
    layers: tuple[LayerSymbol, ...] = field(default=())

    def layer_groups(self) -> dict[str, list[LayerSymbol]]:
        """Layer name -> its symbols (one per core it runs on), in program order."""
        out: dict[str, list[LayerSymbol]] = {}
        for sym in self.layers:
            out.setdefault(sym.name, []).append(sym)
        return out

    def layer_of(self, core: int, index: int) -> str:
        for sym in self.layers:
            if sym.core == core and sym.start <= index < sym.end:
                return sym.name
        return "?"


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def meta_dict(p: Program) -> dict:
    return {"dram_bytes": p.dram_bytes,
            "inputs": [asdict(t) for t in p.inputs],
            "outputs": [asdict(t) for t in p.outputs],
            "layers": [asdict(s) for s in p.layers]}


def encode_program(p: Program) -> bytes:
    sections = [(SectionKind.ARCH, 0, p.arch.to_json().encode())]
    sections += [(SectionKind.CODE, core, encode_stream(s)) for core, s in enumerate(p.streams)]
    sections += [(SectionKind.DATA, 0, bytes(p.data)), (SectionKind.META, 0, _canonical(meta_dict(p)))]
    offset = HEADER.size + ENTRY.size * len(sections)
    table = b""
    for kind, core, payload in sections:
        table += ENTRY.pack(kind, core, offset, len(payload), zlib.crc32(payload), 0)
        offset += len(payload)
    fp = bytes.fromhex(p.arch.fingerprint())
    head = HEADER.pack(MAGIC, *VERSION, fp, len(sections), 0)
    crc = zlib.crc32(head[:48] + table)
    head = HEADER.pack(MAGIC, *VERSION, fp, len(sections), crc)
    return head + table + b"".join(payload for _, _, payload in sections)


def _field(d: dict, key: str, kind, what: str, default=None):
    """``d[key]`` of the JSON type ``kind`` (int: not a bool; float: an int or a finite float)."""
    if key not in d:
        if default is not None:
            return default
        raise ValueError(f"{what}: no '{key}'")
    v = d[key]
    if kind is float and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    if kind is int and isinstance(v, int) and not isinstance(v, bool):
        return v
    if kind in (str, list) and isinstance(v, (list, tuple) if kind is list else str):
        return v
    raise ValueError(f"{what}: '{key}' = {str(v)[:40]} is not {'a number' if kind is float else kind.__name__}")


def _ints(v: list, what: str, lo: int = 0) -> tuple[int, ...]:
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= lo for x in v):
        raise ValueError(f"{what} must be whole numbers of at least {lo}")
    return tuple(v)


def _desc(d: dict, dram_bytes: int, what: str) -> TensorDesc:
    """A tensor descriptor, checked: its shapes, permutation, scale and type, and that it lies in DRAM."""
    if not isinstance(d, dict):
        raise ValueError(f"{what} is not an object")
    what = f"{what} '{str(d.get('name'))[:40]}'"
    shape = _ints(_field(d, "shape", list, what), f"{what}: shape", 1)
    view = _ints(_field(d, "view_shape", list, what), f"{what}: view_shape", 1)
    perm = _ints(_field(d, "perm", list, what), f"{what}: perm")
    if not shape or math.prod(shape) != math.prod(view) or sorted(perm) != list(range(len(view))):
        raise ValueError(f"{what}: shape {list(shape)}, view {list(view)} and perm {list(perm)} disagree")
    t = TensorDesc(_field(d, "name", str, what), _field(d, "dram_addr", int, what), shape, view, perm,
                   _field(d, "scale", float, what), _field(d, "zero_point", int, what),
                   _field(d, "dtype", str, what, "int8"), _field(d, "post", str, what, ""))
    if not 1e-30 <= t.scale <= 1e30 or not -128 <= t.zero_point <= 255:
        raise ValueError(f"{what}: scale {t.scale} or zero point {t.zero_point} out of range")
    if t.dtype not in ("int8", "uint8", "int32") or t.post not in ("", "softmax"):
        raise ValueError(f"{what}: type '{t.dtype[:20]}' or host step '{t.post[:20]}' unknown")
    if not 0 <= t.dram_addr <= dram_bytes - t.nbytes:
        raise ValueError(f"{what}: [{t.dram_addr}, {t.dram_addr + t.nbytes}) lies outside the "
                         f"{dram_bytes}-byte DRAM")
    return t


_SYMBOL_TYPES = {f.name: type(f.default) if f.default is not MISSING else (str if f.name in ("name", "op") else int)
                 for f in fields(LayerSymbol)}


def _symbol(d: dict, streams: tuple, what: str) -> LayerSymbol:
    """A layer symbol, checked: every field of its type, and its range inside its core's stream."""
    if not isinstance(d, dict):
        raise ValueError(f"{what} is not an object")
    unknown = set(d) - set(_SYMBOL_TYPES)
    if unknown:
        raise ValueError(f"{what}: unknown field '{sorted(unknown)[0][:40]}'")
    values = {}
    for key, kind in _SYMBOL_TYPES.items():
        if key in d:
            v = _field(d, key, list if kind is tuple else kind, what)
            values[key] = from_json_lists(v) if kind is tuple else v
    sym = LayerSymbol(**values)
    what = f"{what} '{sym.name[:40]}'"
    if not 0 <= sym.core < len(streams) or not 0 <= sym.start <= sym.end <= len(streams[sym.core]):
        raise ValueError(f"{what}: instructions [{sym.start}, {sym.end}) of core {sym.core} lie outside "
                         f"the code")
    if min(v for k, v in values.items() if isinstance(v, (int, float))) < 0:
        raise ValueError(f"{what}: a count is negative")
    return sym


def _sections(raw: bytes, source: str) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    if len(raw) < HEADER.size:
        raise BinaryFormatError(f"{source}: truncated: {len(raw)} bytes, header needs {HEADER.size}")
    magic, major, minor, fp, count, crc = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise BinaryFormatError(f"{source}: not a Sieve binary (magic {magic!r})")
    if major != VERSION[0]:
        raise BinaryFormatError(f"{source}: format version {major}.{minor}, this Sieve reads "
                                f"{VERSION[0]}.x; recompile the model")
    end_table = HEADER.size + ENTRY.size * count
    if count > 4096 or len(raw) < end_table:
        raise BinaryFormatError(f"{source}: truncated section table")
    if zlib.crc32(raw[:48] + raw[HEADER.size:end_table]) != crc or any(raw[52:HEADER.size]):
        raise BinaryFormatError(f"{source}: header checksum mismatch (file corrupted)")
    out = []
    for i in range(count):
        kind, core, off, size, scrc, _ = ENTRY.unpack_from(raw, HEADER.size + i * ENTRY.size)
        if off + size > len(raw):
            raise BinaryFormatError(f"{source}: truncated: section {i} ends at byte {off + size}, "
                                    f"file has {len(raw)}")
        payload = raw[off:off + size]
        if zlib.crc32(payload) != scrc:
            name = SectionKind(kind).name if kind in set(SectionKind) else f"kind {kind}"
            raise BinaryFormatError(f"{source}: section {i} ({name}) checksum mismatch (file corrupted)")
        out.append((kind, core, payload))
    return fp, out


def decode_program(raw: bytes, source: str = "<bytes>") -> Program:
    """Parse and check a `.sieve` file; every defect is one BinaryFormatError."""
    fp, sections = _sections(raw, source)
    by_kind: dict[int, list[tuple[int, bytes]]] = {}
    for kind, core, payload in sections:
        by_kind.setdefault(kind, []).append((core, payload))
    for kind in (SectionKind.ARCH, SectionKind.CODE, SectionKind.DATA, SectionKind.META):
        if kind not in by_kind:
            raise BinaryFormatError(f"{source}: missing {kind.name} section")
    try:
        arch_json = json.loads(by_kind[SectionKind.ARCH][0][1])
        if not isinstance(arch_json, dict):
            raise ValueError("the embedded arch is not an object")
        arch = arch_from_dict(arch_json, f"{source} (embedded arch)")
        cores = sorted(core for core, _ in by_kind[SectionKind.CODE])
        if cores != list(range(arch.cores)) or len(by_kind[SectionKind.DATA]) + len(by_kind[SectionKind.META]) != 2:
            raise BinaryFormatError(f"{source}: code sections for cores {cores[:8]}, the arch has {arch.cores} "
                                    "(and one DATA and one META section)")
        streams = tuple(decode_stream(p) for _, p in sorted(by_kind[SectionKind.CODE]))
        for core, s in enumerate(streams):
            if len(s) > MAX_INSTRUCTIONS:
                raise BinaryFormatError(f"{source}: core {core} has {len(s):,} instructions, more than the limit "
                                        f"of {MAX_INSTRUCTIONS:,} (set SIEVE_MAX_INSTRUCTIONS to raise it)")
        meta = json.loads(by_kind[SectionKind.META][0][1])
        if not isinstance(meta, dict):
            raise ValueError("not an object")
        data = by_kind[SectionKind.DATA][0][1]
        dram = _field(meta, "dram_bytes", int, "metadata")
        if not len(data) <= dram <= MAX_DRAM_BYTES:
            raise BinaryFormatError(f"{source}: DRAM of {dram:,} bytes: it must hold the {len(data):,}-byte data "
                                    f"section and be at most {MAX_DRAM_BYTES:,} bytes "
                                    "(set SIEVE_MAX_DRAM_BYTES to raise the limit)")
        program = Program(arch, streams, data, dram,
                          tuple(_desc(d, dram, "input") for d in _field(meta, "inputs", list, "metadata")),
                          tuple(_desc(d, dram, "output") for d in _field(meta, "outputs", list, "metadata")),
                          tuple(_symbol(d, streams, "layer symbol") for d in _field(meta, "layers", list, "metadata")))
    except (ArchError, ISAError) as err:
        raise BinaryFormatError(f"{source}: {err}") from None
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise BinaryFormatError(f"{source}: malformed metadata: {str(err) or type(err).__name__}") from None
    if bytes.fromhex(arch.fingerprint()) != fp:
        raise BinaryFormatError(f"{source}: embedded arch does not match the header fingerprint")
    return program


def check_compatible(program: Program, arch: ArchConfig, source: str = "") -> None:
    """A binary runs on an arch that differs only in what instructions cannot see."""
    if arch.fingerprint() != program.arch.fingerprint():
        diffs = [f"{k}: {getattr(program.arch.core, k)} vs {getattr(arch.core, k)}"
                 for k in VISIBLE if getattr(program.arch.core, k) != getattr(arch.core, k)]
        if arch.cores != program.arch.cores:
            diffs.insert(0, f"cores: {program.arch.cores} vs {arch.cores}")
        raise BinaryFormatError(f"{source}: compiled for arch '{program.arch.name}', which differs from "
                                f"'{arch.name}' in what the instruction stream sees ({'; '.join(diffs)}); "
                                "recompile for this arch")
