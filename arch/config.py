"""The accelerator description: frozen dataclasses, loaded from TOML and validated.

Field names carry their units. Unknown keys, wrong types and impossible values
raise one ``ArchError`` that names the key and the file.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any


class ArchError(Exception):
    def __init__(self, message: str, source: str = "", hint: str = ""):
        self.hint = hint
        text = f"{source}: {message}" if source else message
        if hint:
            text += f" (hint: {hint})"
        super().__init__(text)


@dataclass(frozen=True)
class CoreConfig:
    pe_rows: int = 16                 # PE rows: output channels computed in parallel
    simd_lanes: int = 16              # lanes per PE row: reduction values per cycle
    int4_macs_per_lane: int = 2       # int4 x int8 products a lane computes per cycle (1: int4 at int8's rate)
    scratchpad_bytes: int = 262144    # software-managed scratchpad per core
    scratchpad_banks: int = 8         # banks, interleaved every scratchpad_port_bytes
    scratchpad_port_bytes: int = 16   # bytes per cycle one bank's read port feeds the MAC array
    accumulator_bytes: int = 65536    # int32 accumulator buffer per core
    vector_lanes: int = 16            # elements per cycle in the vector/post-processing unit
    matmul_fill_cycles: int = 8       # MAC-array pipeline skew and drain per MATMUL instruction
    vector_fill_cycles: int = 4       # vector-unit pipeline fill per vector instruction
    weights_double_buffered: bool = True   # the array loads the next weight block while computing
    vector_own_path: bool = False     # the vector unit runs beside the MAC array (own ports), in program order


@dataclass(frozen=True)
class MemoryConfig:
    l2_bytes: int = 0                 # shared L2 (all cores); 0 = none
    l2_ways: int = 8                  # set associativity (LRU, write-back, write-allocate)
    l2_line_bytes: int = 64           # the unit of tags, fills and write-backs
    l2_banks: int = 4                 # lines interleaved over banks (line address mod banks)
    l2_bank_bytes_per_cycle: int = 32 # what one bank delivers per cycle
    l2_latency_cycles: int = 12       # hit latency; a miss adds dram_latency_cycles
    l2_mshrs: int = 32                # misses in flight at once (bounds the DRAM bandwidth it can use)
    dram_bytes_per_cycle: float = 16.0  # one channel, shared by all cores
    dram_latency_cycles: int = 100
    dram_burst_bytes: int = 64        # DRAM moves whole bursts (without an L2)
    dma_outstanding: int = 32         # requests each DMA engine (per core: load, store) keeps in flight


@dataclass(frozen=True)
class EnergyConfig:
    """pJ per event. Zero/absent SRAM figures are derived from capacity (see docs/arch.md)."""
    mac_pj: float = 0.23              # 8-bit multiply 0.2 + 8-bit add 0.03 (Horowitz 2014)
    mac_int4_pj: float = 0.13         # 4x8-bit multiply (half the partial products) 0.1 + 8-bit add 0.03
    acc_add_pj: float = 0.1           # 32-bit integer add (Horowitz 2014)
    spad_pj_per_byte: float = 0.0     # derived: 64-bit read 10 pJ * sqrt(bytes / 8 KiB), / 8
    acc_pj_per_byte: float = 0.0      # derived the same way from accumulator_bytes
    l2_pj_per_byte: float = 0.0       # derived the same way from l2_bytes (per byte of each line accessed)
    dram_pj_per_byte: float = 243.75  # 1.95 nJ per 64 bits, middle of 1.3-2.6 nJ (Horowitz 2014)
    metadata_pj_per_byte: float = 0.0 # derived: equal to a scratchpad byte
    vector_op_pj: float = 3.9         # fp32 multiply 3.7 + int32 add 0.1 + 8-bit clamp 0.1
    leakage_pj_per_cycle: float = 10.0  # per core; an assumption, not a Horowitz figure


# the core fields an instruction stream depends on: MAC-array shape (weight packing, row batches) and
# the scratchpad and accumulator sizes (every address in the stream lies within them)
VISIBLE = ("pe_rows", "simd_lanes", "int4_macs_per_lane", "scratchpad_bytes", "accumulator_bytes")


@dataclass(frozen=True)
class AreaConfig:
    """µm² per unit (45 nm, docs/arch.md). A 0 SRAM figure is derived from a 6T bit cell."""
    mac_um2: float = 419.0            # 8-bit multiply 282 + 32-bit add 137 (Horowitz 2014)
    vector_lane_um2: float = 7837.0   # fp32 multiply 7700 + 32-bit add 137 (Horowitz 2014)
    sram_um2_per_kib: float = 0.0     # derived: 8192 cells of 0.346 µm² at 70 % array efficiency
    l2_um2_per_kib: float = 0.0       # derived the same way


@dataclass(frozen=True)
class ArchConfig:
    name: str = "default"
    cores: int = 1
    clock_mhz: float = 1000.0
    core: CoreConfig = CoreConfig()
    memory: MemoryConfig = MemoryConfig()
    energy: EnergyConfig = EnergyConfig()
    area: AreaConfig = AreaConfig()

    @property
    def acc_entries(self) -> int:
        return self.core.accumulator_bytes // 4

    def fingerprint(self) -> str:
        """sha256 of what the instruction stream can see: the core count and the fields that bound or
        shape its instructions (``VISIBLE``). The other core fields (ports, banks, fills, vector lanes,
        double buffering, the vector unit's path) only change how long instructions take: a binary
        runs on any of their values."""
        visible = {"cores": self.cores, "core": {k: getattr(self.core, k) for k in VISIBLE}}
        return hashlib.sha256(json.dumps(visible, sort_keys=True).encode()).hexdigest()

    @functools.cached_property
    def energy_table(self) -> EnergyConfig:
        """The energy table as priced: SRAM figures left at 0 are derived from the capacities here,
        so changing a capacity (in a sweep, with overrides) changes its energy per byte too."""
        e = self.energy
        spad = e.spad_pj_per_byte or sram_pj_per_byte(self.core.scratchpad_bytes)
        return dataclasses.replace(
            e, spad_pj_per_byte=spad,
            acc_pj_per_byte=e.acc_pj_per_byte or sram_pj_per_byte(self.core.accumulator_bytes),
            l2_pj_per_byte=e.l2_pj_per_byte or sram_pj_per_byte(self.memory.l2_bytes),
            metadata_pj_per_byte=e.metadata_pj_per_byte or spad)

    def area_mm2(self) -> dict[str, float]:
        """Silicon area per component and in total (mm²): counts of units times the area table."""
        a, c = self.area, self.core
        sram = a.sram_um2_per_kib or SRAM_CELL_UM2 * 8192 / SRAM_EFFICIENCY
        l2 = a.l2_um2_per_kib or sram
        parts = {"mac": self.cores * c.pe_rows * c.simd_lanes * a.mac_um2,
                 "vector": self.cores * c.vector_lanes * a.vector_lane_um2,
                 "scratchpad": self.cores * c.scratchpad_bytes / 1024 * sram,
                 "accumulator": self.cores * c.accumulator_bytes / 1024 * sram,
                 "l2": self.memory.l2_bytes / 1024 * l2}
        out = {k: v / 1e6 for k, v in parts.items()}
        out["total"] = sum(out.values())
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_toml(self) -> str:
        """TOML that ``load_arch`` reads back to this arch; derived energies are shown as comments."""
        derived = self.energy_table
        area = self.area_mm2()
        lines = [f"# arch '{self.name}' (fingerprint {self.fingerprint()[:16]})",
                 f"# area {area['total']:.2f} mm² at 45 nm: " + ", ".join(f"{k} {v:.2f}" for k, v in area.items()
                                                                         if k != "total"),
                 f"name = {json.dumps(self.name)}", f"cores = {self.cores}", f"clock_mhz = {self.clock_mhz!r}"]
        for section in ("core", "memory", "energy", "area"):
            lines += ["", f"[{section}]"]
            for f in fields(getattr(self, section)):
                value = getattr(getattr(self, section), f.name)
                line = f"{f.name} = {json.dumps(value) if isinstance(value, bool) else repr(value)}"
                if section == "energy" and value == 0 and getattr(derived, f.name):
                    line += f"    # 0 = derived from capacity: {getattr(derived, f.name):.4g}"
                if section == "area" and value == 0:
                    line += f"    # 0 = derived: {SRAM_CELL_UM2 * 8192 / SRAM_EFFICIENCY:.4g} (a 6T cell)"
                lines.append(line)
        return "\n".join(lines) + "\n"


# 45 nm 6T SRAM bit cell (Intel, Mistry et al., IEDM 2007) and the share of an array that is cells
SRAM_CELL_UM2 = 0.346
SRAM_EFFICIENCY = 0.7


def sram_pj_per_byte(capacity_bytes: int) -> float:
    """Horowitz 2014: 64-bit read 10/20/100 pJ at 8 KB/32 KB/1 MB ~ 10 pJ * sqrt(size / 8 KiB)."""
    if capacity_bytes <= 0:
        return 0.0
    return 10.0 * math.sqrt(capacity_bytes / 8192) / 8


_SECTIONS = {"core": CoreConfig, "memory": MemoryConfig, "energy": EnergyConfig, "area": AreaConfig}
_TOP = {"name": str, "cores": int, "clock_mhz": float}


def _typed(value: Any, want: type, key: str, source: str) -> Any:
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is bool:
        if not isinstance(value, bool):
            raise ArchError(f"key '{key}' must be true or false, got {value!r}", source)
        return value
    if not isinstance(value, want) or isinstance(value, bool):
        raise ArchError(f"key '{key}' must be {want.__name__}, got {value!r} ({type(value).__name__})", source)
    return value


def _unknown(key: str, known: list[str], source: str) -> ArchError:
    close = difflib.get_close_matches(key.split(".")[-1], known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
    return ArchError(f"unknown key '{key}'", source, hint)


def _section(cls: type, table: Any, prefix: str, source: str):
    if not isinstance(table, dict):
        raise ArchError(f"'{prefix}' must be a table", source)
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise _unknown(f"{prefix}.{key}", list(known), source)
        values[key] = _typed(value, type(known[key].default), f"{prefix}.{key}", source)
    return cls(**values)


def _check(cond: bool, key: str, message: str, source: str) -> None:
    if not cond:
        raise ArchError(f"key '{key}' {message}", source)


# every number's range, inclusive: wide enough for any design a sweep explores, narrow enough that no
# count the simulator derives from them overflows or allocates without bound (docs/arch.md)
RANGES: dict[str, tuple[float, float]] = {
    "cores": (1, 64), "clock_mhz": (1e-3, 1e6),
    "core.pe_rows": (1, 256), "core.simd_lanes": (1, 256), "core.int4_macs_per_lane": (1, 4), "core.scratchpad_bytes": (4096, 1 << 24),
    "core.scratchpad_banks": (1, 64), "core.scratchpad_port_bytes": (1, 4096),
    "core.accumulator_bytes": (1024, 1 << 22), "core.vector_lanes": (1, 4096),
    "core.matmul_fill_cycles": (0, 1 << 20), "core.vector_fill_cycles": (0, 1 << 20),
    "memory.l2_bytes": (0, 1 << 30), "memory.l2_ways": (1, 1024), "memory.l2_line_bytes": (8, 4096),
    "memory.l2_banks": (1, 1024), "memory.l2_bank_bytes_per_cycle": (1, 1 << 16),
    "memory.l2_latency_cycles": (0, 1 << 20), "memory.l2_mshrs": (1, 1 << 16),
    "memory.dram_bytes_per_cycle": (1 / 1024, 1 << 20), "memory.dram_latency_cycles": (0, 1 << 24),
    "memory.dram_burst_bytes": (1, 1 << 16), "memory.dma_outstanding": (1, 1 << 16),
    **{f"energy.{f.name}": (0, 1e9) for f in fields(EnergyConfig)},
    **{f"area.{f.name}": (0, 1e12) for f in fields(AreaConfig)},
}


def _value(arch: ArchConfig, key: str):
    obj = arch
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def validate(arch: ArchConfig, source: str = "") -> ArchConfig:
    """Every number finite and within ``RANGES``; the few rules that relate fields."""
    for key, (lo, hi) in RANGES.items():
        v = _value(arch, key)
        if not (lo <= v <= hi) or isinstance(v, float) and not math.isfinite(v):
            shown = f"{lo:g}..{hi:g}" if isinstance(v, float) else f"{int(lo)}..{int(hi)}"
            got = repr(v) if len(repr(v)) <= 40 else f"a number of {len(repr(v))} digits"
            raise ArchError(f"key '{key}' must be in {shown}, got {got}", source)
    m = arch.memory
    _check(arch.core.accumulator_bytes % 4 == 0, "core.accumulator_bytes",
           f"must be a multiple of 4, got {arch.core.accumulator_bytes}", source)
    for key in ("memory.l2_line_bytes", "memory.dram_burst_bytes"):
        v = _value(arch, key)
        _check(v & (v - 1) == 0, key, f"must be a power of two, got {v}", source)
    _check(m.l2_bytes % (m.l2_ways * m.l2_line_bytes) == 0, "memory.l2_bytes",
           "must be a multiple of l2_ways * l2_line_bytes", source)
    return arch


def arch_from_dict(data: dict[str, Any], source: str = "<dict>") -> ArchConfig:
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            top[key] = _section(_SECTIONS[key], value, key, source)
        elif key in _TOP:
            top[key] = _typed(value, _TOP[key], key, source)
        else:
            raise _unknown(key, list(_TOP) + list(_SECTIONS), source)
    return validate(ArchConfig(**top), source)


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("sieve.arch.presets").iterdir() if p.name.endswith(".toml"))


def read_text(path: Path, error: type[Exception]) -> str:
    """A text file's contents; a file that cannot be read or is not UTF-8 raises ``error(message, path)``."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"cannot read: {err.strerror}", str(path)) from None
    except UnicodeDecodeError as err:
        raise error(f"not UTF-8 text: byte {err.object[err.start]:#04x} at offset {err.start}", str(path)) from None


def load_arch(name_or_path: str | Path) -> ArchConfig:
    """A preset name (``edge``, ``default``) or the path of a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and str(name_or_path) in preset_names():
        text = resources.files("sieve.arch.presets").joinpath(f"{name_or_path}.toml").read_text()
        source = f"preset '{name_or_path}'"
    elif path.is_file():
        text, source = read_text(path, ArchError), str(path)
    else:
        raise ArchError(f"no arch file or preset named '{name_or_path}'",
                        hint=f"presets: {', '.join(preset_names())}")
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as err:   # ValueError: a 4,300-digit number
        raise ArchError(f"malformed TOML: {str(err) or type(err).__name__}", source) from None
    return arch_from_dict(data, source)


def with_overrides(arch: ArchConfig, overrides: dict[str, Any]) -> ArchConfig:
    """Replace dotted keys (``core.pe_rows``) and re-validate."""
    data = arch.to_dict()
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        table = data
        for p in parents:
            table = table.setdefault(p, {})
        table[leaf] = value
    return arch_from_dict(data, "overrides")
