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
    # one entry per (core, queue), k = 3 * core + queue: its instructions as
    # (index, cycles, signal, wait counter 1, value 1, wait counter 2, value 2), in program order
    ops, qcore, is_dma = [], [], []
    for core, (s, (cyc, _)) in enumerate(zip(streams, priced)):
        cols = list(zip(range(len(s)), cyc.tolist(), s.signal.tolist(), s.wait_counter[:, 0].tolist(),
                        s.wait_value[:, 0].tolist(), s.wait_counter[:, 1].tolist(), s.wait_value[:, 1].tolist()))
        queue = s.queue.tolist()
        for q in Queue:
            ops.append([row for row, qq in zip(cols, queue) if qq == q])
            qcore.append(core)
            is_dma.append(q != Queue.COMPUTE)
    start = [[0] * len(s) for s in streams]
    end = [[0] * len(s) for s in streams]
    reached = [[[] for _ in range(NUM_COUNTERS + 1)] for _ in range(n_cores)]
    waiting: dict[tuple[int, int], list[int]] = {}          # (core, counter) -> heads blocked on it
    pos = [0] * len(ops)
    free = [0] * len(ops)
    ready = [NEVER] * len(ops)

    def examine(k: int) -> None:
        """The ready time of queue k's head, or NEVER (and note the counter it waits on)."""
        if pos[k] >= len(ops[k]):
            ready[k] = NEVER
            return
        _, _, _, c0, v0, c1, v1 = ops[k][pos[k]]
        r = free[k]
        if c0 and v0:
            times = reached[qcore[k]][c0]
            if len(times) < v0:
                ready[k] = NEVER
                waiting.setdefault((qcore[k], c0), []).append(k)
                return
            if times[v0 - 1] > r:
                r = times[v0 - 1]
        if c1 and v1:
            times = reached[qcore[k]][c1]
            if len(times) < v1:
                ready[k] = NEVER
                waiting.setdefault((qcore[k], c1), []).append(k)
                return
            if times[v1 - 1] > r:
                r = times[v1 - 1]
        ready[k] = r

    for k in range(len(ops)):
        examine(k)
    order: list[tuple[int, int]] = []
    channel_free = 0
    remaining = sum(len(s) for s in streams)
    while remaining:
        r = min(ready)
        if r >= NEVER:
            raise _deadlock(p, streams, ops, pos, reached)
        k = ready.index(r)                      # ties: the lowest core, then load, compute, store
        core = qcore[k]
        i, c, s, *_ = ops[k][pos[k]]
        if is_dma[k]:
            if channel_free > r:
                r = channel_free
            channel_free = r + c
            free[k] = channel_free
            finish = channel_free + latency
        else:
            finish = r + c
            free[k] = finish
        start[core][i] = r
        end[core][i] = finish
        order.append((core, i))
        pos[k] += 1
        remaining -= 1
        blocked = ()
        if s:                                   # signal first: the next head may wait on it
            reached[core][s].append(finish)
            blocked = waiting.pop((core, s), ())
        examine(k)
        for b in blocked:
            if b != k:
                examine(b)
    starts = tuple(np.asarray(x, np.int64) for x in start)
    ends = tuple(np.asarray(x, np.int64) for x in end)
    total = int(max((e.max() for e in ends if e.size), default=0))
    return Timeline(starts, ends, tuple(c for _, c in priced), tuple(c for c, _ in priced), tuple(order), total,
                    streams)


def _deadlock(p: Program, streams, ops, pos, reached) -> SimulatorError:
    for k, rows in enumerate(ops):
        if pos[k] < len(rows):
            core, q = divmod(k, 3)
            idx = rows[pos[k]][0]
            s = streams[core]
            waits = ", ".join(f"counter {c} >= {v} (has {len(reached[core][c])})"
                              for c, v in zip(s.wait_counter[idx].tolist(), s.wait_value[idx].tolist()) if c)
            return SimulatorError(f"deadlock: {Queue(q).name.lower()} queue waits for {waits}, which no "
                                  "remaining instruction can signal", core, idx, p.layer_of(core, idx),
                                  "the binary's synchronization is inconsistent")
    return SimulatorError("deadlock")
