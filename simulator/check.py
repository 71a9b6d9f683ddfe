"""Find reads that are not ordered after the write they read: a binary with a missing wait.

A binary synchronizes its queues and cores with counters: an instruction that waits for a counter to
reach v starts after the v-th instruction that signals it has completed. A read of scratchpad,
accumulator or DRAM bytes is safe only if the instruction that last wrote them is ordered before it:
earlier in the same queue (a queue runs its instructions in order, and the compute units interlock on
overlapping footprints), or completed before some wait on the way. Otherwise the read races the write,
and the answer depends on timing: the simulator, which executes in simulated-time order, may compute
a wrong answer and say nothing.

``unordered_reads`` builds this happens-before relation with one vector clock per instruction (per
queue of every core, how many of its instructions are known complete), visiting instructions in the
order the timing model issued them, and tracks the last writer of every byte (and accumulator entry)
of every space. Each read whose last writer is not ordered before it is reported once per pair of
instructions. What the instructions read and write is ``verify.ACCESS``, the same table that bounds
them. A LERP's input rows are as wide as its column table (data) says; only their first pixel counts.

Memory: 4 bytes per byte of DRAM and scratchpad, per accumulator entry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.isa import Opcode
from sieve.simulator.timing import Timeline, simulate_timing
from sieve.simulator.verify import ACCESS, Spaces


@dataclass(frozen=True)
class Race:
    """A read (core, instruction) of bytes that a write not ordered before it produced."""
    space: str                 # "DRAM", "scratchpad of core 0", "accumulator of core 1"
    address: int               # the first byte (entry) read that the writer wrote
    reader: tuple[int, int]    # (core, instruction)
    writer: tuple[int, int]
    reader_what: str           # e.g. "MATMUL input tile (layer conv2)"
    writer_what: str

    def __str__(self) -> str:
        (rc, ri), (wc, wi) = self.reader, self.writer
        return (f"core {rc} instruction {ri}, {self.reader_what}, reads {self.space} at {self.address:#x} written by "
                f"core {wc} instruction {wi}, {self.writer_what}, with no wait between them")


def _regions(p: Program, t: Timeline):
    """Per core, per instruction: its accesses as (space, mode, what, addr, rows, row, stride) in numbers."""
    spaces = Spaces(p)
    out = []
    for stream in t.streams:
        per = [[] for _ in range(len(stream))]
        for op, (idx, f) in stream.fields.items():
            for space, mode, name, addr, rows, row, stride, _ in ACCESS[op](f, spaces):
                cols = [np.broadcast_to(a, idx.shape).tolist() for a in (addr, rows, row, stride)]
                for j, a, r, n, st in zip(idx.tolist(), *cols):
                    if r > 0 and n > 0:
                        per[j].append((space, mode, f"{op.name} {name}", a, r, n, st))
        out.append(per)
    return out


def _view(mem: np.ndarray, addr: int, rows: int, row: int, stride: int) -> np.ndarray:
    if rows == 1 or stride == row:
        return mem[addr:addr + rows * row]
    return np.lib.stride_tricks.as_strided(mem[addr:], (rows, row), (stride * mem.itemsize, mem.itemsize))


def unordered_reads(p: Program, limit: int = 20, timeline: Timeline | None = None) -> list[Race]:
    """Up to ``limit`` reads whose writer is not ordered before them (none: the program is race-free
    for every timing)."""
    t = timeline or simulate_timing(p)
    streams = t.streams
    n_cores = len(streams)
    n_queues = 3 * n_cores
    queue_of = [s.queue.astype(np.int64) + 3 * c for c, s in enumerate(streams)]
    seq = []                                        # position of each instruction within its queue
    for c, s in enumerate(streams):
        q = s.queue.astype(np.int64)
        pos = np.zeros(len(s), np.int64)
        for k in range(3):
            sel = np.flatnonzero(q == k)
            pos[sel] = np.arange(len(sel))
        seq.append(pos)
    # the signalers of each (core, counter), in the order they completed
    signalers = {}
    for c, s in enumerate(streams):
        for ctr in np.unique(s.signal[s.signal > 0]).tolist():
            idx = np.flatnonzero(s.signal == ctr)
            signalers[(c, ctr)] = idx[np.lexsort((idx, t.end[c][idx]))].tolist()
    prefix = {}                                     # (core, counter) -> (how many merged, merged clock)
    clock = [np.zeros((len(s), n_queues), np.int64) for s in streams]
    last_in_queue = [[-1] * 3 for _ in range(n_cores)]
    writer = {("dram", 0): np.full(p.dram_bytes, -1, np.int64)}
    for c in range(n_cores):
        writer[("spad", c)] = np.full(p.arch.core.scratchpad_bytes, -1, np.int64)
        writer[("acc", c)] = np.full(p.arch.acc_entries, -1, np.int64)
    base = np.cumsum([0] + [len(s) for s in streams])
    regions = _regions(p, t)
    races: list[Race] = []
    seen = set()

    def completed(c: int, ctr: int, value: int) -> np.ndarray:
        """What is known once counter ``ctr`` of core ``c`` has reached ``value``."""
        done, vc = prefix.get((c, ctr), (0, np.zeros(n_queues, np.int64)))
        order = signalers.get((c, ctr), [])
        for j in order[done:min(value, len(order))]:
            vc = np.maximum(vc, clock[c][j])
            q = queue_of[c][j]
            vc[q] = max(vc[q], seq[c][j] + 1)
        prefix[(c, ctr)] = (max(done, min(value, len(order))), vc)
        return vc

    def what(c: int, i: int, text: str) -> str:
        return f"{text} (layer {p.layer_of(c, i)})"

    for c, i in t.order:
        s = streams[c]
        k = int(s.queue[i])
        vc = np.zeros(n_queues, np.int64)
        prev = last_in_queue[c][k]
        if prev >= 0:                               # a queue runs in order (the compute units interlock)
            vc = np.maximum(vc, clock[c][prev])
            vc[3 * c + k] = seq[c][prev] + 1
        for ctr, value in zip(s.wait_counter[i].tolist(), s.wait_value[i].tolist()):
            if ctr:
                vc = np.maximum(vc, completed(c, ctr, value))
        if s.opcode[i] == Opcode.WAIT:                # another core's counter
            ins = s[i]
            vc = np.maximum(vc, completed(int(ins.core), int(ins.counter), int(ins.value)))
        clock[c][i] = vc
        last_in_queue[c][k] = i
        me = base[c] + i
        for space, mode, text, a, rows, row, stride in regions[c][i]:
            key = (space, 0 if space == "dram" else c)
            view = _view(writer[key], a, rows, row, stride)
            if mode == "w":
                view[...] = me
                continue
            lo, hi = int(view.min()), int(view.max())
            writers = [lo] if lo == hi else np.unique(view).tolist()
            for w in writers:
                if w < 0 or w == me:
                    continue
                wc = int(np.searchsorted(base, w, side="right") - 1)
                wi = int(w - base[wc])
                wq = queue_of[wc][wi]
                if vc[wq] > seq[wc][wi] or (wc == c and wq == 3 * c + k):
                    continue
                if (w, me) in seen:
                    continue
                seen.add((w, me))
                first = int(np.flatnonzero(np.asarray(view).ravel() == w)[0])
                addr = a + (first // row) * stride + first % row
                name = {"dram": "DRAM", "spad": f"the scratchpad of core {c}",
                        "acc": f"the accumulator of core {c}"}[space]
                wtext = next((r[2] for r in regions[wc][wi] if r[0] == space and r[1] == "w"), "")
                races.append(Race(name, addr, (c, i), (wc, wi), what(c, i, text), what(wc, wi, wtext)))
                if len(races) >= limit:
                    return races
    return races
