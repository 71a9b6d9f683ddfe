"""Per-layer and total statistics, every figure a sum of per-instruction event counts."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.isa import Opcode, Queue
from sieve.simulator.energy import energy_pj
from sieve.simulator.events import EVENTS, E
from sieve.simulator.timing import STALLS, Timeline

# The JSON schema of `sieve run --stats`, documented in docs/stats.md.
STATS_VERSION = 2


@dataclass(frozen=True)
class LayerStats:
    name: str
    op: str
    start_cycle: int
    end_cycle: int
    cycles: int               # end_cycle - start_cycle
    instructions: int
    macs: int                 # useful multiply-accumulates
    utilization: float        # macs / (cycles * pe_rows * simd_lanes * cores the layer runs on)
    busy_cycles: dict         # per queue: cycles its unit was occupied (summed over its cores)
    mac_cycles: int           # cycles the MAC array was busy (MATMUL instructions)
    events: dict              # event name -> count
    energy_pj: dict           # component -> pJ
    cores: tuple = ()         # the cores it runs on
    stall_cycles: dict = None  # cause (timing.STALLS) -> cycles
    partition: str = "single"  # how it is split across them

    @property
    def energy_total_pj(self) -> float:
        return sum(self.energy_pj.values())


@dataclass(frozen=True)
class CoreStats:
    core: int
    end_cycle: int            # its last completion
    instructions: int
    macs: int
    utilization: float        # macs / (run cycles * pe_rows * simd_lanes)
    busy_cycles: dict         # per queue
    stall_cycles: dict        # cause -> cycles
    events: dict
    energy_pj: dict           # its events priced; leakage over the whole run for one core

    @property
    def energy_total_pj(self) -> float:
        return sum(self.energy_pj.values())


@dataclass(frozen=True)
class RunStats:
    arch: str
    clock_mhz: float
    cycles: int
    macs: int
    utilization: float
    events: dict
    energy_pj: dict
    layers: tuple[LayerStats, ...]
    cores: tuple[CoreStats, ...] = ()
    memory: dict = None       # per level: "l2" (None without one), "dram"
    stall_cycles: dict = None

    @property
    def time_us(self) -> float:
        return self.cycles / self.clock_mhz

    @property
    def energy_total_pj(self) -> float:
        return sum(self.energy_pj.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stats_version"] = STATS_VERSION
        d["time_us"] = self.time_us
        d["energy_total_pj"] = self.energy_total_pj
        for layer, obj in zip(d["layers"], self.layers):
            layer["energy_total_pj"] = obj.energy_total_pj
        for core, obj in zip(d["cores"], self.cores):
            core["energy_total_pj"] = obj.energy_total_pj
        return d


def _events(v: np.ndarray) -> dict:
    return {name: int(v[i]) for i, name in enumerate(EVENTS)}


def _stalls(v: np.ndarray) -> dict:
    return {name: int(v[i]) for i, name in enumerate(STALLS)}


def _busy(t: Timeline, core: int, sl: slice) -> dict:
    queue = t.streams[core].queue[sl]
    busy = t.busy[core][sl]
    return {q.name.lower(): int(busy[queue == int(q)].sum()) for q in Queue}


def collect(p: Program, t: Timeline) -> RunStats:
    """Per layer (summed over the cores it runs on; its span from the first start to the last end),
    per core, per memory level and in total."""
    arch = p.arch
    peak = arch.core.pe_rows * arch.core.simd_lanes
    layers = []
    for name, syms in p.layer_groups().items():
        s = e = None
        counts = np.zeros(len(EVENTS), np.int64)
        stalls = np.zeros(len(STALLS), np.int64)
        busy = {q.name.lower(): 0 for q in Queue}
        mac_cycles = instructions = 0
        for sym in syms:
            sl = slice(sym.start, sym.end)
            if sym.end > sym.start:
                s0, e0 = int(t.start[sym.core][sl].min()), int(t.end[sym.core][sl].max())
                s, e = (s0, e0) if s is None else (min(s, s0), max(e, e0))
            counts += t.counts[sym.core][sl].sum(axis=0)
            stalls += t.stalls[sym.core][sl].sum(axis=0)
            for q, v in _busy(t, sym.core, sl).items():
                busy[q] += v
            mac_cycles += int(t.busy[sym.core][sl][t.streams[sym.core].opcode[sl] == int(Opcode.MATMUL)].sum())
            instructions += sym.end - sym.start
        s, e = s or 0, e or 0
        cycles = e - s
        macs = int(counts[E["macs"]])
        cores = tuple(sorted({sym.core for sym in syms}))   # a pipelined layer: one core, a part per image
        layers.append(LayerStats(name, syms[0].op, s, e, cycles, instructions, macs,
                                 macs / (cycles * peak * len(cores)) if cycles else 0.0, busy, mac_cycles,
                                 _events(counts), energy_pj(counts, cycles, arch, len(cores)), cores, _stalls(stalls),
                                 syms[0].partition))
    cores = []
    for core, stream in enumerate(t.streams):
        counts = t.counts[core].sum(axis=0)
        macs = int(counts[E["macs"]])
        cores.append(CoreStats(core, int(t.end[core].max(initial=0)), len(stream), macs,
                               macs / (t.cycles * peak) if t.cycles else 0.0, _busy(t, core, slice(None)),
                               _stalls(t.stalls[core].sum(axis=0)), _events(counts),
                               energy_pj(counts, t.cycles, arch, 1)))
    total = sum(c.sum(axis=0) for c in t.counts)
    macs = int(total[E["macs"]])
    util = macs / (t.cycles * peak * arch.cores) if t.cycles else 0.0
    ev = _events(total)
    return RunStats(arch.name, arch.clock_mhz, t.cycles, macs, util, ev, energy_pj(total, t.cycles, arch, arch.cores),
                    tuple(layers), tuple(cores), _memory(arch, ev, t), _stalls(sum(x.sum(axis=0) for x in t.stalls)))


def _memory(arch, ev: dict, t: Timeline) -> dict:
    """Per level: the L2's lines and bytes, the DRAM's bytes and how much of its bandwidth they used."""
    m = arch.memory
    moved = ev["dram_read_bytes"] + ev["dram_write_bytes"]
    dram = {"read_bytes": ev["dram_read_bytes"], "write_bytes": ev["dram_write_bytes"],
            "bytes_per_cycle": m.dram_bytes_per_cycle,
            "bandwidth_utilization": moved / (t.cycles * m.dram_bytes_per_cycle) if t.cycles else 0.0}
    l2 = None
    if m.l2_bytes:
        lines = ev["l2_hits"] + ev["l2_misses"]
        l2 = {"capacity_bytes": m.l2_bytes, "hits": ev["l2_hits"], "misses": ev["l2_misses"],
              "write_backs": ev["l2_writebacks"], "hit_rate": ev["l2_hits"] / lines if lines else 0.0,
              "bytes": ev["l2_bytes"], "dirty_lines_at_end": t.l2_dirty_lines}
    zvc = None
    if t.zvc:                   # zero-value-compressed transfers: bytes as stored, bytes moved (mask + nonzeros)
        zvc = {"raw_bytes": ev["zvc_raw_bytes"], "moved_bytes": ev["zvc_bytes"], "sizes": t.zvc}
    return {"l2": l2, "dram": dram, "zvc": zvc}
