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
from dataclasses import asdict, dataclass, field

import numpy as np

from sieve.arch.config import VISIBLE, ArchConfig, ArchError, arch_from_dict
from sieve.arch.isa import Instruction, ISAError, decode_stream, encode_stream

MAGIC = b"SIEVEBIN"
VERSION = (5, 0)
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


def _desc(d: dict) -> TensorDesc:
    return TensorDesc(d["name"], d["dram_addr"], tuple(d["shape"]), tuple(d["view_shape"]),
                      tuple(d["perm"]), d["scale"], d["zero_point"], d.get("dtype", "int8"), d.get("post", ""))


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
        arch = arch_from_dict(json.loads(by_kind[SectionKind.ARCH][0][1]), f"{source} (embedded arch)")
        meta = json.loads(by_kind[SectionKind.META][0][1])
        streams = tuple(decode_stream(p) for _, p in sorted(by_kind[SectionKind.CODE]))
        program = Program(arch, streams, by_kind[SectionKind.DATA][0][1], int(meta["dram_bytes"]),
                          tuple(_desc(d) for d in meta["inputs"]), tuple(_desc(d) for d in meta["outputs"]),
                          tuple(LayerSymbol(**{k: from_json_lists(v) for k, v in s.items()}) for s in meta["layers"]))
    except (ArchError, ISAError) as err:
        raise BinaryFormatError(f"{source}: {err}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise BinaryFormatError(f"{source}: malformed metadata: {err}") from None
    if bytes.fromhex(arch.fingerprint()) != fp:
        raise BinaryFormatError(f"{source}: embedded arch does not match the header fingerprint")
    if len(streams) != arch.cores:
        raise BinaryFormatError(f"{source}: {len(streams)} code sections for {arch.cores} cores")
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
