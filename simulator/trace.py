"""A run as Chrome/Perfetto trace JSON (open it at ui.perfetto.dev or chrome://tracing).

One process per core; in it a thread per unit (the load, compute and store queues; where the vector
unit has its own path, ``core.vector_own_path``, the compute queue's vector instructions get a
thread of their own, since they overlap the MAC array's) with a slice per instruction (a transfer's slice is its data phase; its completion is a latency later), and a
thread of the layers in the order the core runs them. A WAIT instruction gets a flow arrow from
the store on the other core whose completion it waited for. Times are microseconds at the arch's
clock (``displayTimeUnit`` ns).
"""
from __future__ import annotations

import numpy as np

from sieve.arch.binary import Program
from sieve.arch.isa import Opcode, Queue
from sieve.simulator.events import units
from sieve.simulator.timing import Timeline

LAYERS_TID, VECTOR_TID = 3, 4


def chrome_trace(p: Program, t: Timeline) -> dict:
    us = 1.0 / p.arch.clock_mhz                    # microseconds per cycle
    events: list[dict] = []
    names = {int(op): op.name.lower() for op in Opcode}
    for core, s in enumerate(t.streams):
        events.append({"ph": "M", "name": "process_name", "pid": core, "args": {"name": f"core {core}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": core, "args": {"sort_index": core}})
        for q in Queue:
            events.append({"ph": "M", "name": "thread_name", "pid": core, "tid": int(q),
                           "args": {"name": f"{q.name.lower()} queue"}})
        events.append({"ph": "M", "name": "thread_name", "pid": core, "tid": LAYERS_TID, "args": {"name": "layers"}})
        unit = units(s, p.arch)[0]
        if p.arch.core.vector_own_path:
            events.append({"ph": "M", "name": "thread_name", "pid": core, "tid": VECTOR_TID,
                           "args": {"name": "vector unit"}})
        layer = np.full(len(s), "", object)
        for sym in p.layers:
            if sym.core == core:
                layer[sym.start:sym.end] = sym.name
        start, busy, opcode = t.start[core], t.busy[core], s.opcode
        queue = np.where(unit == 1, VECTOR_TID, s.queue)
        for i in range(len(s)):
            events.append({"ph": "X", "pid": core, "tid": int(queue[i]), "ts": float(start[i]) * us,
                           "dur": float(busy[i]) * us, "name": names.get(int(opcode[i]), "?"),
                           "args": {"index": i, "layer": layer[i], "end_cycle": int(t.end[core][i])}})
        last = 0
        for sym in p.layers:
            if sym.core != core or sym.end == sym.start:
                continue
            sl = slice(sym.start, sym.end)
            s0, e0 = max(int(start[sl].min()), last), int(t.end[core][sl].max())
            last = max(last, e0)
            events.append({"ph": "X", "pid": core, "tid": LAYERS_TID, "ts": s0 * us, "dur": max(e0 - s0, 0) * us,
                           "name": sym.name, "args": {"op": sym.op, "partition": sym.partition}})
    events += _flows(t, us)
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"arch": p.arch.name, "cores": len(t.streams), "cycles": t.cycles,
                          "clock_mhz": p.arch.clock_mhz}}


def _flows(t: Timeline, us: float) -> list[dict]:
    """An arrow from the store that made another core's counter reach a WAIT's value, to the WAIT."""
    out, flow = [], 0
    signals = {}
    for core, s in enumerate(t.streams):
        if Opcode.WAIT not in s.fields:
            continue
        where, f = s.fields[Opcode.WAIT]
        for i, other, counter, value in zip(where.tolist(), f["core"].tolist(), f["counter"].tolist(),
                                            f["value"].tolist()):
            if (other, counter) not in signals:
                # a queue retires in order, so its n-th signal of a counter is its n-th instruction that signals it
                signals[other, counter] = np.flatnonzero(t.streams[other].signal == counter)
            by = signals[other, counter]
            if not 0 < value <= len(by):
                continue
            j = int(by[value - 1])
            flow += 1
            q = int(t.streams[other].queue[j])
            out.append({"ph": "s", "id": flow, "pid": other, "tid": q, "ts": float(t.start[other][j]) * us,
                        "name": "data ready", "cat": "sync"})
            out.append({"ph": "f", "bp": "e", "id": flow, "pid": core, "tid": int(Queue.LOAD),
                        "ts": float(t.start[core][i]) * us, "name": "data ready", "cat": "sync"})
    return out
