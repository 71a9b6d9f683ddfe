"""Transaction-level timing of the three decoupled queues per core.

Each instruction starts when its queue is free and every counter it waits on
has reached its value; it then occupies its unit for the cycles ``events.cost``
gives. DMA transfers from all queues and cores share one DRAM channel: a
transfer starts when the channel is free, holds it for bytes / bandwidth
cycles, and completes ``dram_latency_cycles`` later (the DMA engine keeps
issuing while earlier requests are in flight). A signal increments its counter
at completion. Instructions are scheduled earliest-ready first, so the order of
issue is the order of simulated time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.isa import NUM_COUNTERS, Opcode, Queue
from sieve.simulator.errors import SimulatorError
from sieve.simulator.events import EVENTS, cost


@dataclass(frozen=True)
class Timeline:
    """Per core: start/end cycle and event counts of every instruction, and the issue order."""
    start: tuple[np.ndarray, ...]
    end: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]        # [instructions][len(EVENTS)]
    busy: tuple[np.ndarray, ...]          # unit cycles per instruction
    order: tuple[tuple[int, int], ...]    # (core, index) in simulated-time order
    cycles: int


def simulate_timing(p: Program) -> Timeline:
    arch = p.arch
    latency = arch.memory.dram_latency_cycles
    n_cores = len(p.streams)
    queues = [[[i for i, ins in enumerate(s) if ins.queue is q] for q in Queue] for s in p.streams]
    heads = [[0, 0, 0] for _ in range(n_cores)]
    free = [[0, 0, 0] for _ in range(n_cores)]
    reached: list[list[list[int]]] = [[[] for _ in range(NUM_COUNTERS + 1)] for _ in range(n_cores)]
    start = [np.zeros(len(s), np.int64) for s in p.streams]
    end = [np.zeros(len(s), np.int64) for s in p.streams]
    counts = [np.zeros((len(s), len(EVENTS)), np.int64) for s in p.streams]
    busy = [np.zeros(len(s), np.int64) for s in p.streams]
    order: list[tuple[int, int]] = []
    channel_free = 0
    remaining = sum(len(s) for s in p.streams)
    while remaining:
        best = None
        for core in range(n_cores):
            for q in range(3):
                if heads[core][q] >= len(queues[core][q]):
                    continue
                idx = queues[core][q][heads[core][q]]
                ready = free[core][q]
                for counter, value in p.streams[core][idx].waits:
                    if value == 0:
                        continue
                    times = reached[core][counter]
                    if len(times) < value:
                        break
                    ready = max(ready, times[value - 1])
                else:
                    if best is None or ready < best[0]:
                        best = (ready, core, q, idx)
        if best is None:
            raise _deadlock(p, queues, heads, reached)
        ready, core, q, idx = best
        ins = p.streams[core][idx]
        cycles, ev = cost(ins, arch)
        if q == Queue.COMPUTE:
            finish = ready + cycles
            free[core][q] = finish
        else:
            xfer = max(ready, channel_free)
            channel_free = xfer + cycles
            free[core][q] = channel_free
            finish = channel_free + latency
        start[core][idx], end[core][idx], busy[core][idx] = ready, finish, cycles
        counts[core][idx] = ev
        if ins.signal:
            reached[core][ins.signal].append(finish)
        heads[core][q] += 1
        order.append((core, idx))
        remaining -= 1
    total = int(max((e.max() for e in end if e.size), default=0))
    return Timeline(tuple(start), tuple(end), tuple(counts), tuple(busy), tuple(order), total)


def _deadlock(p: Program, queues, heads, reached) -> SimulatorError:
    for core, stream in enumerate(p.streams):
        for q in range(3):
            if heads[core][q] < len(queues[core][q]):
                idx = queues[core][q][heads[core][q]]
                ins = stream[idx]
                waits = ", ".join(f"counter {c} >= {v} (has {len(reached[core][c])})" for c, v in ins.waits)
                return SimulatorError(f"deadlock: {Queue(q).name.lower()} queue waits for {waits}, "
                                      "which no remaining instruction can signal", core, idx,
                                      p.layer_of(core, idx), "the binary's synchronization is inconsistent")
    return SimulatorError("deadlock")
