"""Discrete-event timing of the three decoupled queues per core over a stateful memory system.

Each instruction starts when its queue is free and every counter it waits on has reached its
value (a WAIT instruction: another core's counter). A compute instruction occupies its unit for
the cycles ``events.COST`` gives (closed form, from its fields and the arch). A LOAD or STORE goes
to the memory system (``simulator.memory``): per-core DMA engines, the shared L2, DRAM; its data
phase ends when the shared resources have moved its bytes (their bandwidth shared among the
transfers in flight at each moment), its queue is then free for the next transfer, and it
completes - signals - one latency later. Events are processed in simulated-time order (ties: data
phases that end, then the lowest core, then load, compute, store queue), so the order of issue is
a valid order of execution for the functional model.

Costs are priced for all instructions at once from the decoded arrays (numpy); the event loop
runs compiled (numba) over flat arrays of every queue's instructions in program order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from sieve.arch.binary import Program
from sieve.arch.isa import NUM_COUNTERS, Opcode, Queue
from sieve.arch.stream import Stream
from sieve.simulator.errors import SimulatorError
from sieve.simulator.events import E, MEMORY_EVENTS, costs, units
from sieve.simulator.verify import verify
from sieve.simulator.memory import DRAM, L2, NEVER, MemoryState, next_end, pop_end, start_transfer

# stall cycles by cause, per instruction: DMA transfers slowed by the DRAM (its bandwidth shared,
# its engine's request limit) and by L2 bank conflicts; MATMULs fed slower than the MAC array
# computes (scratchpad port); WAIT instructions holding a load queue for another core
STALLS = ("dram", "l2_bank", "spad_port", "core")
_MEM_COLUMNS = np.array([E[name] for name in MEMORY_EVENTS])
_SLOTS = NUM_COUNTERS + 1


@dataclass(frozen=True)
class Timeline:
    """Per core: start/end cycle, event counts, unit cycles and stall cycles of every instruction, and
    the issue order."""
    start: tuple[np.ndarray, ...]
    end: tuple[np.ndarray, ...]
    counts: tuple[np.ndarray, ...]        # [instructions][len(EVENTS)]
    busy: tuple[np.ndarray, ...]          # unit cycles per instruction (a transfer: its data phase)
    order: tuple[tuple[int, int], ...]    # (core, index) in simulated-time order
    cycles: int
    streams: tuple[Stream, ...] = ()      # the array form the timing was computed from
    stalls: tuple[np.ndarray, ...] = ()   # [instructions][len(STALLS)]
    l2_dirty_lines: int = 0               # dirty L2 lines left at the end (not written back)
    zvc: str = ""                         # compressed transfers sized "measured" (from the data) or "estimated"


def as_streams(p: Program) -> tuple[Stream, ...]:
    return tuple(s if isinstance(s, Stream) else Stream.of(s) for s in p.streams)


def simulate_timing(p: Program, nonzeros: tuple[np.ndarray, ...] | None = None) -> Timeline:
    """The timeline of ``p``. Zero-value-compressed transfers move a mask bit per byte and the bytes
    that are not their zero value: ``nonzeros`` (per core, per instruction; -1 elsewhere) counts them
    from the data; without it each transfer's ``zvc_density`` estimates them."""
    arch = p.arch
    streams = as_streams(p)
    verify(p, streams)
    priced = [costs(s, arch) for s in streams]
    zvc = [_zvc(s, None if nonzeros is None else nonzeros[core]) for core, s in enumerate(streams)]
    any_zvc = any(z[0].size for z in zvc)
    n_cores = len(streams)
    # every queue's instructions in program order, one flat array per field; queue k = 3 * core + queue
    cols = {name: [] for name in ("core", "index", "cycles", "signal", "wc0", "wv0", "wc1", "wv1", "rcore", "rctr",
                                  "rval", "addr", "rows", "row_bytes", "stride", "store", "unit", "dep")}
    q_start, q_dma, signals = [0], [], np.zeros((n_cores, _SLOTS), np.int64)
    for core, (s, (cycles, _)) in enumerate(zip(streams, priced)):
        remote = _remote_waits(p, s, core, n_cores)
        dma = _dma_fields(s)
        where, moved, raw = zvc[core]
        dma[2][where] = moved
        priced[core][1][where, E["zvc_raw_bytes"]] = raw
        priced[core][1][where, E["zvc_bytes"]] = moved * dma[1][where]
        unit, dep = units(s, arch)
        flat_of = np.zeros(len(s), np.int64)             # stream index -> position in the flat arrays
        np.add.at(signals[core], s.signal, 1)
        for q in Queue:
            sel = np.flatnonzero(s.queue == int(q))
            flat_of[sel] = q_start[-1] + np.arange(len(sel))
            for name, values in (("core", np.full(len(sel), core)), ("index", sel), ("cycles", cycles[sel]),
                                 ("signal", s.signal[sel]), ("wc0", s.wait_counter[sel, 0]),
                                 ("wv0", s.wait_value[sel, 0]), ("wc1", s.wait_counter[sel, 1]),
                                 ("wv1", s.wait_value[sel, 1]), ("rcore", remote[0][sel]), ("rctr", remote[1][sel]),
                                 ("rval", remote[2][sel]), ("addr", dma[0][sel]), ("rows", dma[1][sel]),
                                 ("row_bytes", dma[2][sel]), ("stride", dma[3][sel]), ("store", dma[4][sel]),
                                 ("unit", unit[sel]), ("dep", dep[sel])):
                cols[name].append(np.asarray(values, np.int64))
            q_start.append(q_start[-1] + len(sel))
            q_dma.append(int(q != Queue.COMPUTE))
        here = cols["dep"][-3:]                          # this core's queues: dependences as flat positions
        for i, d in enumerate(here):
            here[i] = np.where(d >= 0, flat_of[np.maximum(d, 0)], -1)
    flat = {name: np.concatenate(v) if v else np.zeros(0, np.int64) for name, v in cols.items()}
    n = len(flat["core"])
    mem = MemoryState(arch, len(q_dma))
    # where each (core, counter)'s completion times go: room for every signal of it in the program
    slots = np.concatenate([[0], np.cumsum(signals.ravel())]).astype(np.int64)
    out_start, out_end, out_busy = np.zeros(n), np.zeros(n), np.zeros(n)
    out_mem, out_stall, order = np.zeros((n, len(MEMORY_EVENTS)), np.int64), np.zeros((n, 3)), np.zeros(n, np.int64)
    status = _run(np.asarray(q_start, np.int64), np.asarray(q_dma, np.int64), flat["core"], flat["cycles"],
                  flat["signal"], flat["wc0"], flat["wv0"], flat["wc1"], flat["wv1"], flat["rcore"], flat["rctr"],
                  flat["rval"], flat["addr"], flat["rows"], flat["row_bytes"], flat["stride"], flat["store"],
                  flat["unit"], flat["dep"], slots,
                  mem.arrays(), out_start, out_end, out_busy, out_mem, out_stall, order)
    if status >= 0:
        raise _deadlock(p, streams, flat, status)
    # back to per-core arrays in program order
    starts, ends, busy, counts, stalls = [], [], [], [], []
    for core, (s, (cycles, c)) in enumerate(zip(streams, priced)):
        sel = np.flatnonzero(flat["core"] == core)
        at = flat["index"][sel]
        for out, values, dtype in ((starts, out_start, np.float64), (ends, out_end, np.float64),
                                   (busy, out_busy, np.float64)):
            a = np.zeros(len(s), dtype)
            a[at] = values[sel]
            out.append(a)
        c = c.copy()
        c[np.ix_(at, _MEM_COLUMNS)] = out_mem[sel]
        counts.append(c)
        st = np.zeros((len(s), len(STALLS)))
        st[at, 0], st[at, 1], st[at, 3] = out_stall[sel, 0], out_stall[sel, 1], out_stall[sel, 2]
        st[:, 2] = c[:, E["spad_port_stall_cycles"]]
        stalls.append(np.ceil(st - 1e-9).astype(np.int64))
    starts = tuple(np.floor(a + 1e-9).astype(np.int64) for a in starts)
    ends = tuple(np.ceil(a - 1e-9).astype(np.int64) for a in ends)
    busy = tuple(np.ceil(a - 1e-9).astype(np.int64) for a in busy)
    total = int(max((e.max() for e in ends if e.size), default=0))
    issue = tuple(zip(flat["core"][order].tolist(), flat["index"][order].tolist()))
    return Timeline(starts, ends, tuple(counts), busy, issue, total, streams, tuple(stalls),
                    int((mem.dirty != 0).sum()) if arch.memory.l2_bytes else 0,
                    ("measured" if nonzeros is not None else "estimated") if any_zvc else "")


@njit(cache=True, nogil=True)
def _examine(k, pos, q_start, inflight, free, ready, blocked, core_of, wc0, wv0, wc1, wv1, rcore, rctr, rval,
             unit, dep, unit_free, out_end, slots, count, reached):
    """The ready time of queue k's head, or NEVER (then ``blocked[k]`` names the counter it waits on)."""
    j = pos[k]
    blocked[k] = -1
    if j >= q_start[k + 1] or inflight[k] >= 0:
        ready[k] = NEVER
        return
    r = free[k]
    for w in range(3):
        if w == 0:
            c, v, core = wc0[j], wv0[j], core_of[j]
        elif w == 1:
            c, v, core = wc1[j], wv1[j], core_of[j]
        else:
            c, v, core = rctr[j], rval[j], rcore[j]
        if c == 0:
            continue
        key = core * 16 + c
        if count[key] < v:
            ready[k] = NEVER
            blocked[k] = key
            return
        if v > 0 and reached[slots[key] + v - 1] > r:
            r = reached[slots[key] + v - 1]
    # a compute instruction also waits for its unit, and for the other unit's instruction whose data it shares
    r = max(r, unit_free[2 * k + unit[j]])
    if dep[j] >= 0:
        r = max(r, out_end[dep[j]])
    ready[k] = r


@njit(cache=True, nogil=True)
def _run(q_start, q_dma, core_of, cycles, signal, wc0, wv0, wc1, wv1, rcore, rctr, rval, addr, rows, row_bytes,
         stride, store, unit, dep, slots, mem, out_start, out_end, out_busy, out_mem, out_stall, order):
    """The event loop. Returns -1, or the queue whose head can never start (a deadlock)."""
    server, vfin, on = mem[0], mem[1], mem[2]
    n_q = q_dma.size
    pos = q_start[:-1].copy()
    free = np.zeros(n_q)
    ready = np.full(n_q, NEVER)
    blocked = np.full(n_q, -1)
    inflight = np.full(n_q, -1)
    pending = np.zeros(n_q, np.int64)
    latency, ideal, conflict = np.zeros(n_q), np.zeros(n_q), np.zeros(n_q)
    retired = np.zeros(n_q)
    unit_free = np.zeros(2 * n_q)            # per queue, per unit (a compute queue: MAC array, vector unit)
    reached = np.zeros(max(slots[-1], 1))
    count = np.zeros(slots.size - 1, np.int64)
    for k in range(n_q):
        _examine(k, pos, q_start, inflight, free, ready, blocked, core_of, wc0, wv0, wc1, wv1, rcore, rctr, rval,
                 unit, dep, unit_free, out_end, slots, count, reached)
    remaining = core_of.size
    issued = 0
    flying = 0
    while remaining > 0 or flying > 0:
        r, kk = NEVER, -1
        for k in range(n_q):
            if ready[k] < r:
                r, kk = ready[k], k
        t = next_end(server)
        if flying > 0 and t <= r:                # data phases that end first
            for s in (DRAM, L2):
                while True:
                    k = pop_end(server, vfin, on, s, t)
                    if k < 0:
                        break
                    pending[k] -= 1
                    if pending[k] == 0:
                        flying -= 1
                        _retire(k, t, inflight, latency, ideal, conflict, retired, free, out_start, out_end, out_busy,
                                out_stall, signal, core_of, slots, count, reached, pos, q_start, ready, blocked, wc0,
                                wv0, wc1, wv1, rcore, rctr, rval, unit, dep, unit_free)
            continue
        if kk < 0:                               # nothing can start and nothing is in flight
            for k in range(n_q):
                if pos[k] < q_start[k + 1]:
                    return pos[k]
            return 0
        j = pos[kk]
        out_start[j] = r
        order[issued] = j
        issued += 1
        pos[kk] = j + 1
        remaining -= 1
        if addr[j] >= 0:                         # LOAD / STORE: into the memory system
            n, latency[kk], ideal[kk], conflict[kk] = start_transfer(mem, r, kk, addr[j], rows[j], row_bytes[j],
                                                                     stride[j], store[j], out_mem[j])
            inflight[kk] = j
            ready[kk] = NEVER
            pending[kk] = n
            if n == 0:                           # nothing to move
                _retire(kk, r, inflight, latency, ideal, conflict, retired, free, out_start, out_end, out_busy,
                        out_stall, signal, core_of, slots, count, reached, pos, q_start, ready, blocked, wc0, wv0,
                        wc1, wv1, rcore, rctr, rval, unit, dep, unit_free)
            else:
                flying += 1
            continue
        if q_dma[kk]:                            # WAIT: it held its queue for another core
            out_stall[j, 2] = r - free[kk]
        finish = r + cycles[j]
        out_end[j] = finish
        out_busy[j] = cycles[j]
        if q_dma[kk]:
            free[kk] = finish
            done = finish
        else:                                    # issue in order; retire (signal) in order
            free[kk] = r
            unit_free[2 * kk + unit[j]] = finish
            done = max(finish, retired[kk])
            retired[kk] = done
        if signal[j]:
            _signal(core_of[j] * 16 + signal[j], done, slots, count, reached, pos, q_start, inflight, free, ready,
                    blocked, core_of, wc0, wv0, wc1, wv1, rcore, rctr, rval, unit, dep, unit_free, out_end)
        _examine(kk, pos, q_start, inflight, free, ready, blocked, core_of, wc0, wv0, wc1, wv1, rcore, rctr, rval,
                 unit, dep, unit_free, out_end, slots, count, reached)
    return -1


@njit(cache=True, nogil=True)
def _retire(k, t, inflight, latency, ideal, conflict, retired, free, out_start, out_end, out_busy, out_stall, signal,
            core_of, slots, count, reached, pos, q_start, ready, blocked, wc0, wv0, wc1, wv1, rcore, rctr, rval,
            unit, dep, unit_free):
    """Transfer of queue k ends its data phase at t: it completes a latency later, in order."""
    j = inflight[k]
    inflight[k] = -1
    done = max(t + latency[k], retired[k])
    retired[k] = done
    out_end[j] = done
    out_busy[j] = t - out_start[j]
    out_stall[j, 0] = max(0.0, t - out_start[j] - ideal[k] - conflict[k])
    out_stall[j, 1] = conflict[k]
    free[k] = t
    if signal[j]:
        _signal(core_of[j] * 16 + signal[j], done, slots, count, reached, pos, q_start, inflight, free, ready, blocked,
                core_of, wc0, wv0, wc1, wv1, rcore, rctr, rval, unit, dep, unit_free, out_end)
    _examine(k, pos, q_start, inflight, free, ready, blocked, core_of, wc0, wv0, wc1, wv1, rcore, rctr, rval,
             unit, dep, unit_free, out_end, slots, count, reached)


@njit(cache=True, nogil=True)
def _signal(key, t, slots, count, reached, pos, q_start, inflight, free, ready, blocked, core_of, wc0, wv0, wc1, wv1,
            rcore, rctr, rval, unit, dep, unit_free, out_end):
    """Counter ``key`` (core * 16 + counter) reaches its next value at cycle t; heads that waited on it
    are examined again."""
    base = slots[key]
    i = count[key]
    while i > 0 and reached[base + i - 1] > t:  # completion times stay sorted
        reached[base + i] = reached[base + i - 1]
        i -= 1
    reached[base + i] = t
    count[key] += 1
    for k in range(ready.size):
        if blocked[k] == key:
            _examine(k, pos, q_start, inflight, free, ready, blocked, core_of, wc0, wv0, wc1, wv1, rcore, rctr, rval,
                     unit, dep, unit_free, out_end, slots, count, reached)


def _remote_waits(p: Program, s: Stream, core: int, n_cores: int) -> tuple[np.ndarray, ...]:
    """Per instruction (core, counter, value) of a WAIT, zeros elsewhere; a WAIT naming a core or counter
    that does not exist is an error naming the instruction."""
    rc, rw, rv = (np.zeros(len(s), np.int64) for _ in range(3))
    if Opcode.WAIT in s.fields:
        pos, f = s.fields[Opcode.WAIT]
        bad = np.flatnonzero((f["core"] >= n_cores) | (f["counter"] == 0))
        if bad.size:
            i = int(pos[bad[0]])
            raise SimulatorError(f"WAIT on core {int(f['core'][bad[0]])} counter {int(f['counter'][bad[0]])}: the "
                                 f"program has {n_cores} core(s) and counters 1..{NUM_COUNTERS}", core, i,
                                 p.layer_of(core, i))
        rc[pos], rw[pos], rv[pos] = f["core"], f["counter"], f["value"]
    return rc, rw, rv


def _zvc(s: Stream, nonzeros: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The zero-value-compressed transfers of a stream: (indices, bytes each of their rows moves, raw
    bytes). A row moves its mask (a bit per byte) and its share of the transfer's nonzero bytes."""
    where, moved, raw = [], [], []
    for op in (Opcode.LOAD, Opcode.STORE):
        if op in s.fields:
            at, f = s.fields[op]
            z = np.flatnonzero(f["zvc"] == 1)
            rows, rb = f["rows"][z].astype(np.int64), f["row_bytes"][z].astype(np.int64)
            n = rows * rb
            nnz = -(-f["zvc_density"][z].astype(np.int64) * n // 255)          # the estimate, rounded up
            if nonzeros is not None:
                nnz = np.where(nonzeros[at[z]] >= 0, nonzeros[at[z]], nnz)
            where.append(at[z])
            moved.append(-(-rb // 8) + -(-nnz // np.maximum(rows, 1)))
            raw.append(n)
    if not where:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(where), np.concatenate(moved), np.concatenate(raw)


def _dma_fields(s: Stream) -> list[np.ndarray]:
    """Per instruction: DRAM address (-1 for anything that is not a transfer), rows, row bytes, DRAM
    stride, and whether it is a store."""
    out = [np.full(len(s), -1, np.int64)] + [np.zeros(len(s), np.int64) for _ in range(4)]
    for op, store in ((Opcode.LOAD, 0), (Opcode.STORE, 1)):
        if op in s.fields:
            where, f = s.fields[op]
            out[0][where], out[1][where], out[2][where] = f["dram_addr"], f["rows"], f["row_bytes"]
            out[3][where], out[4][where] = f["dram_stride"], store
    return out


def _deadlock(p: Program, streams, flat, j: int) -> SimulatorError:
    """The first queue head that can never start: its waits and how far each counter got."""
    core, idx = int(flat["core"][j]), int(flat["index"][j])
    s = streams[core]
    signals = [np.bincount(x.signal, minlength=_SLOTS) for x in streams]
    conds = [(core, int(c), int(v)) for c, v in zip(s.wait_counter[idx].tolist(), s.wait_value[idx].tolist()) if c]
    if flat["rctr"][j]:
        conds.append((int(flat["rcore"][j]), int(flat["rctr"][j]), int(flat["rval"][j])))
    text = ", ".join(f"core {c} counter {n} >= {v} (the program signals it {int(signals[c][n])} times)"
                     for c, n, v in conds)
    q = Queue(int(s.queue[idx])).name.lower()
    return SimulatorError(f"deadlock: {q} queue waits for {text or 'nothing'}, which no remaining instruction can "
                          "satisfy", core, idx, p.layer_of(core, idx), "the binary's synchronization is inconsistent")
