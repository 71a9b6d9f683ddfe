"""Transaction-level timing of the three decoupled queues per core.

Each instruction starts when its queue is free and every counter it waits on has reached its
value; it then occupies its unit for the cycles ``events.COST`` gives. DMA transfers from all
queues and cores share one DRAM channel: a transfer starts when the channel is free, holds it for
bytes / bandwidth cycles, and completes ``dram_latency_cycles`` later (the DMA engine keeps issuing
while earlier requests are in flight). A signal increments its counter at completion.
Instructions are scheduled earliest-ready first (ties: lower core, then load, compute, store
queue), so the order of issue is the order of simulated time.

Costs are priced for all instructions at once from the decoded arrays; the scheduling loop keeps
each queue head's ready time and re-examines a head only when its own queue moves or a counter
it waits on is signalled.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.isa import NUM_COUNTERS, Queue
from sieve.arch.stream import Stream
from sieve.simulator.errors import SimulatorError
from sieve.simulator.events import costs

NEVER = 1 << 62                    # the ready time of a head that waits on an unsignalled counter


@dataclass(frozen=True)
class Timeline:
    """Per core: start/end cycle and event counts of every instruction, and the issue order."""
    start: tuple[np.ndarray, ...]
    end: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]        # [instructions][len(EVENTS)]
    busy: tuple[np.ndarray, ...]          # unit cycles per instruction
    order: tuple[tuple[int, int], ...]    # (core, index) in simulated-time order
    cycles: int
    streams: tuple[Stream, ...] = ()      # the array form the timing was computed from


def as_streams(p: Program) -> tuple[Stream, ...]:
    return tuple(s if isinstance(s, Stream) else Stream.of(s) for s in p.streams)


def simulate_timing(p: Program) -> Timeline:
    arch = p.arch
    latency = arch.memory.dram_latency_cycles
    streams = as_streams(p)
    priced = [costs(s, arch) for s in streams]
    n_cores = len(streams)
    # one entry per (core, queue), k = 3 * core + queue: its instructions' indices, cycles, signals and
    # wait conditions as parallel lists, in program order
    idx, cyc, sig, w0, v0, w1, v1, qcore, is_dma = [], [], [], [], [], [], [], [], []
    for core, (s, (cycles, _)) in enumerate(zip(streams, priced)):
        for q in Queue:
            sel = np.flatnonzero(s.queue == int(q))
            idx.append(sel.tolist())
            cyc.append(cycles[sel].tolist())
            sig.append(s.signal[sel].tolist())
            w0.append(s.wait_counter[sel, 0].tolist())
            v0.append(s.wait_value[sel, 0].tolist())
            w1.append(s.wait_counter[sel, 1].tolist())
            v1.append(s.wait_value[sel, 1].tolist())
            qcore.append(core)
            is_dma.append(q != Queue.COMPUTE)
    start = [[0] * len(s) for s in streams]
    end = [[0] * len(s) for s in streams]
    reached = [[[] for _ in range(NUM_COUNTERS + 1)] for _ in range(n_cores)]
    waiting: dict[tuple[int, int], list[int]] = {}          # (core, counter) -> heads blocked on it
    size = [len(x) for x in idx]
    pos = [0] * len(idx)
    free = [0] * len(idx)
    ready = [NEVER] * len(idx)

    def examine(k: int) -> None:
        """The ready time of queue k's head, or NEVER (and note the counter it waits on)."""
        j = pos[k]
        if j >= size[k]:
            ready[k] = NEVER
            return
        r = free[k]
        c = w0[k][j]
        if c:
            times, v = reached[qcore[k]][c], v0[k][j]
            if len(times) < v:
                ready[k] = NEVER
                waiting.setdefault((qcore[k], c), []).append(k)
                return
            if v and times[v - 1] > r:
                r = times[v - 1]
        c = w1[k][j]
        if c:
            times, v = reached[qcore[k]][c], v1[k][j]
            if len(times) < v:
                ready[k] = NEVER
                waiting.setdefault((qcore[k], c), []).append(k)
                return
            if v and times[v - 1] > r:
                r = times[v - 1]
        ready[k] = r

    for k in range(len(idx)):
        examine(k)
    order: list[tuple[int, int]] = []
    append = order.append
    channel_free = 0
    remaining = sum(size)
    while remaining:
        r = min(ready)
        if r >= NEVER:
            raise _deadlock(p, streams, idx, pos, reached)
        k = ready.index(r)                      # ties: the lowest core, then load, compute, store
        core, j = qcore[k], pos[k]
        i = idx[k][j]
        if is_dma[k]:
            if channel_free > r:
                r = channel_free
            channel_free = r + cyc[k][j]
            free[k] = channel_free
            finish = channel_free + latency
        else:
            finish = free[k] = r + cyc[k][j]
        start[core][i] = r
        end[core][i] = finish
        append((core, i))
        pos[k] = j + 1
        remaining -= 1
        s = sig[k][j]
        if s:                                   # signal first: the next head may wait on it
            reached[core][s].append(finish)
            examine(k)
            for b in waiting.pop((core, s), ()):
                if b != k:
                    examine(b)
        else:
            examine(k)
    starts = tuple(np.asarray(x, np.int64) for x in start)
    ends = tuple(np.asarray(x, np.int64) for x in end)
    total = int(max((e.max() for e in ends if e.size), default=0))
    return Timeline(starts, ends, tuple(c for _, c in priced), tuple(c for c, _ in priced), tuple(order), total,
                    streams)


def _deadlock(p: Program, streams, indices, pos, reached) -> SimulatorError:
    for k, rows in enumerate(indices):
        if pos[k] < len(rows):
            core, q = divmod(k, 3)
            idx = rows[pos[k]]
            s = streams[core]
            waits = ", ".join(f"counter {c} >= {v} (has {len(reached[core][c])})"
                              for c, v in zip(s.wait_counter[idx].tolist(), s.wait_value[idx].tolist()) if c)
            return SimulatorError(f"deadlock: {Queue(q).name.lower()} queue waits for {waits}, which no "
                                  "remaining instruction can signal", core, idx, p.layer_of(core, idx),
                                  "the binary's synchronization is inconsistent")
    return SimulatorError("deadlock")
