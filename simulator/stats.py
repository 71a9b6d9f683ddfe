"""Per-layer and total statistics, every figure a sum of per-instruction event counts."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.isa import Opcode, Queue
from sieve.simulator.energy import energy_pj
from sieve.simulator.events import EVENTS, E
from sieve.simulator.timing import Timeline

# The JSON schema of `sieve run --stats`, documented in docs/stats.md.
STATS_VERSION = 1


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
    busy_cycles: dict         # per queue: cycles its unit was occupied
    mac_cycles: int           # cycles the MAC array was busy (MATMUL instructions)
    events: dict              # event name -> count
    energy_pj: dict           # component -> pJ

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
        return d


def _events(v: np.ndarray) -> dict:
    return {name: int(v[i]) for i, name in enumerate(EVENTS)}


def collect(p: Program, t: Timeline) -> RunStats:
    """Per layer (summed over the cores it runs on; its span from the first start to the last end)
    and in total."""
    arch = p.arch
    peak = arch.core.pe_rows * arch.core.simd_lanes
    layers = []
    for name, syms in p.layer_groups().items():
        s = e = None
        counts = np.zeros(len(EVENTS), np.int64)
        busy = {q.name.lower(): 0 for q in Queue}
        mac_cycles = instructions = 0
        for sym in syms:
            sl = slice(sym.start, sym.end)
            if sym.end > sym.start:
                s0, e0 = int(t.start[sym.core][sl].min()), int(t.end[sym.core][sl].max())
                s, e = (s0, e0) if s is None else (min(s, s0), max(e, e0))
            counts += t.counts[sym.core][sl].sum(axis=0)
            stream, busy_cycles = t.streams[sym.core], t.busy[sym.core][sl]
            queue = stream.queue[sl]
            for q in Queue:
                busy[q.name.lower()] += int(busy_cycles[queue == int(q)].sum())
            mac_cycles += int(busy_cycles[stream.opcode[sl] == int(Opcode.MATMUL)].sum())
            instructions += sym.end - sym.start
        s, e = s or 0, e or 0
        cycles = e - s
        macs = int(counts[E["macs"]])
        cores = len(syms)
        layers.append(LayerStats(name, syms[0].op, s, e, cycles, instructions, macs,
                                 macs / (cycles * peak * cores) if cycles else 0.0, busy, mac_cycles,
                                 _events(counts), energy_pj(counts, cycles, arch, cores)))
    total = sum(c.sum(axis=0) for c in t.counts)
    macs = int(total[E["macs"]])
    util = macs / (t.cycles * peak * arch.cores) if t.cycles else 0.0
    return RunStats(arch.name, arch.clock_mhz, t.cycles, macs, util, _events(total),
                    energy_pj(total, t.cycles, arch, arch.cores), tuple(layers))
