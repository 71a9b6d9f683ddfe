"""The memory system every DMA transfer goes through: per-core DMA engines, the shared L2, DRAM.

A transfer (one LOAD or STORE) is looked up in the L2 at the cycle it starts, line by line,
which tells how many of its bytes move on each shared resource:

- **DRAM** (``dram_bytes_per_cycle``): without an L2, the bursts its rows touch
  (``dram_burst_bytes`` each); with one, a line per load miss and per dirty line written back.
- **L2** (``l2_banks`` x ``l2_bank_bytes_per_cycle``): every line the transfer touches, each bank
  serving its own lines (``line % l2_banks``); a transfer whose lines crowd one bank is served at
  that bank's pace: it counts as ``l2_banks`` x its busiest bank's lines (the extra is its
  bank-conflict cycles).

The L2 is set-associative (``l2_ways``, sets = ``l2_bytes / (ways x line)``, set = line % sets),
LRU, write-back and write-allocate: a load's missing line is filled from DRAM (one line read); a
store's missing line is allocated without reading DRAM (the store writes it: a sector-valid
allocation); every access makes its line the most recently used, a store makes it dirty, and a
dirty victim is written back (one line written). Dirty lines left at the end are reported, not
written back.

Each resource is shared equally by the transfers on it at each moment (processor sharing: a
transfer does not hold a channel for its whole length), and each transfer moves at most
``dma_outstanding`` requests per round trip (its engine's limit on requests in flight; Little's
law: ``outstanding x request bytes / latency``). With an L2, its MSHRs bound the DRAM traffic
the same way (``l2_mshrs x line / latency``). A transfer's data phase ends when its bytes on
every resource have moved; its engine is then free for the next transfer, and the transfer
completes (signals) one latency later: ``dram_latency_cycles`` (plus ``l2_latency_cycles`` with
an L2) when any byte came from DRAM, else ``l2_latency_cycles``. An engine retires its
transfers in order.

Everything here runs inside the compiled event loop (``simulator.timing``): the state is a set
of arrays, the functions are numba-compiled.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from sieve.arch.config import ArchConfig

NEVER = float(1 << 62)
DRAM, L2 = 0, 1                  # the shared resources (servers)
# the memory event counts of one transfer, in this order (events.MEMORY_EVENTS)
READ, WRITE, HITS, MISSES, WRITEBACKS, L2_BYTES = range(6)


class MemoryState:
    """The arrays the compiled loop keeps the memory system in, for one run of ``queues`` queues."""

    def __init__(self, arch: ArchConfig, queues: int):
        m = arch.memory
        has_l2 = m.l2_bytes > 0
        latency = m.dram_latency_cycles + (m.l2_latency_cycles if has_l2 else 0)
        request = m.l2_line_bytes if has_l2 else m.dram_burst_bytes
        dram = m.dram_bytes_per_cycle
        if has_l2:
            dram = min(dram, _little(m.l2_mshrs, m.l2_line_bytes, latency))
        # per server: capacity (bytes per cycle), per-transfer cap, virtual time, time, rate, next end
        self.server = np.zeros((2, 6))
        self.server[DRAM, :2] = dram, _little(m.dma_outstanding, request, latency)
        self.server[L2, :2] = m.l2_banks * m.l2_bank_bytes_per_cycle, _little(m.dma_outstanding, m.l2_line_bytes,
                                                                               m.l2_latency_cycles)
        self.server[:, 5] = NEVER
        self.vfin = np.zeros((2, queues))          # each transfer's virtual finish on each server
        self.on = np.zeros((2, queues), np.int64)  # whether it is active there
        sets = m.l2_bytes // (m.l2_ways * m.l2_line_bytes) if has_l2 else 1
        self.tags = np.full((sets, m.l2_ways if has_l2 else 1), -1, np.int64)
        self.stamp = np.zeros_like(self.tags)
        self.dirty = np.zeros_like(self.tags)
        self.bank_lines = np.zeros(max(m.l2_banks, 1), np.int64)
        # l2 (0/1), line bytes, burst bytes, DRAM latency (with the L2's), L2 latency, LRU clock
        self.params = np.array([int(has_l2), m.l2_line_bytes, m.dram_burst_bytes, latency, m.l2_latency_cycles, 0],
                               np.int64)

    def arrays(self) -> tuple:
        return (self.server, self.vfin, self.on, self.tags, self.stamp, self.dirty, self.bank_lines, self.params)


def _little(outstanding: int, request: int, latency: int) -> float:
    """The bandwidth of ``outstanding`` requests of ``request`` bytes per ``latency`` cycles."""
    return 1e30 if latency == 0 else outstanding * request / latency


@njit(cache=True, nogil=True)
def _advance(server, s, t):
    if t > server[s, 3]:
        server[s, 2] += (t - server[s, 3]) * server[s, 4]
        server[s, 3] = t


@njit(cache=True, nogil=True)
def _rerate(server, vfin, on, s):
    """The per-transfer rate and the next end on server s after its set of transfers changed."""
    n = 0
    first = NEVER
    for k in range(on.shape[1]):
        if on[s, k]:
            n += 1
            if vfin[s, k] < first:
                first = vfin[s, k]
    if n == 0:
        server[s, 4] = 0.0
        server[s, 5] = NEVER
    else:
        server[s, 4] = min(server[s, 1], server[s, 0] / n)
        server[s, 5] = server[s, 3] + max(first - server[s, 2], 0.0) / server[s, 4]


@njit(cache=True, nogil=True)
def serve(server, vfin, on, s, t, nbytes, k):
    """Transfer k joins server s at cycle t with ``nbytes`` to move."""
    _advance(server, s, t)
    vfin[s, k] = server[s, 2] + nbytes
    on[s, k] = 1
    _rerate(server, vfin, on, s)


@njit(cache=True, nogil=True)
def next_end(server):
    return min(server[0, 5], server[1, 5])


@njit(cache=True, nogil=True)
def pop_end(server, vfin, on, s, t):
    """The transfer whose bytes on server s are all moved at cycle t (the earliest), or -1."""
    if server[s, 5] > t:
        return -1
    _advance(server, s, t)
    best, first = -1, NEVER
    for k in range(on.shape[1]):
        if on[s, k] and vfin[s, k] < first:
            best, first = k, vfin[s, k]
    on[s, best] = 0
    _rerate(server, vfin, on, s)
    return best


@njit(cache=True, nogil=True)
def bursts(addr, rows, row_bytes, stride, burst):
    """DRAM bursts a strided transfer touches (a burst is read or written whole)."""
    if rows == 0 or row_bytes == 0:
        return 0
    if rows == 1 or stride % burst == 0:
        return rows * ((addr % burst + row_bytes + burst - 1) // burst)
    total = 0
    for r in range(rows):
        total += ((addr + r * stride) % burst + row_bytes + burst - 1) // burst
    return total


@njit(cache=True, nogil=True)
def l2_access(tags, stamp, dirty, bank_lines, params, addr, rows, row_bytes, stride, write, out):
    """Walk the lines of a strided transfer through the L2: out[HITS, MISSES, WRITEBACKS]; returns
    the largest number of its lines on one bank."""
    sets, ways = tags.shape
    banks = bank_lines.size
    line_bytes = params[1]
    bank_lines[:] = 0
    hits = misses = writebacks = 0
    t = params[5]
    for r in range(rows):
        if row_bytes == 0:
            break
        a = addr + r * stride
        for line in range(a // line_bytes, (a + row_bytes - 1) // line_bytes + 1):
            s = line % sets
            bank_lines[line % banks] += 1
            t += 1
            way = -1
            for w in range(ways):
                if tags[s, w] == line:
                    way = w
                    break
            if way >= 0:
                hits += 1
            else:
                misses += 1
                way = 0
                for w in range(1, ways):          # the least recently used frame (empty frames first)
                    if stamp[s, w] < stamp[s, way]:
                        way = w
                if tags[s, way] >= 0 and dirty[s, way]:
                    writebacks += 1
                tags[s, way] = line
                dirty[s, way] = 0
            stamp[s, way] = t
            if write:
                dirty[s, way] = 1
    params[5] = t
    out[HITS], out[MISSES], out[WRITEBACKS] = hits, misses, writebacks
    return bank_lines.max()


@njit(cache=True, nogil=True)
def start_transfer(mem, t, k, addr, rows, row_bytes, stride, store, out):
    """Begin transfer k at cycle t: fill ``out`` with its memory events; return (servers it waits on,
    latency, cycles its bytes take at full bandwidth, bank-conflict cycles)."""
    server, vfin, on, tags, stamp, dirty, bank_lines, params = mem
    out[:] = 0
    if rows * row_bytes == 0:
        return 0, 0.0, 0.0, 0.0
    if params[0] == 0:                           # no L2: bursts straight to DRAM
        nbytes = bursts(addr, rows, row_bytes, stride, params[2]) * params[2]
        out[WRITE if store else READ] = nbytes
        serve(server, vfin, on, DRAM, t, nbytes, k)
        return 1, float(params[3]), nbytes / server[DRAM, 0], 0.0
    line, banks = params[1], bank_lines.size
    busiest = l2_access(tags, stamp, dirty, bank_lines, params, addr, rows, row_bytes, stride, store, out)
    lines = out[HITS] + out[MISSES]
    fill = 0 if store else out[MISSES] * line
    back = out[WRITEBACKS] * line
    out[READ], out[WRITE], out[L2_BYTES] = fill, back, (lines + out[WRITEBACKS]) * line
    serve(server, vfin, on, L2, t, busiest * banks * line, k)
    n = 1
    if fill + back:
        serve(server, vfin, on, DRAM, t, fill + back, k)
        n = 2
    ideal = max((fill + back) / server[DRAM, 0], lines * line / server[L2, 0])
    conflict = (busiest * banks - lines) * line / server[L2, 0]
    return n, float(params[3] if fill else params[4]), ideal, conflict
