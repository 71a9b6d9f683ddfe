"""Packing of nonzero weights into SIMD groups, the layouts the MATMUL instruction reads.

A weight tile is [k][R] int8 in the accelerator's reduction order (kernel row, kernel
column, channel). Formats (the MATMUL `fmt` field):

- 1, unstructured: each output channel's nonzeros, in index order, fill groups of
  `simd_lanes` lanes (the last group padded with zeros). Layout: a row table of k
  entries (u16 original channel, u16 group count) in PE order, then every group's
  int8 values, then every group's u16 reduction indices. Rows are ordered by group
  count (descending) when balancing, so that rows of equal cost share a PE batch;
  the original channel in the row table sends each result to its accumulator row,
  so the permutation costs nothing.
- 2, N:M: each block of M consecutive reduction values holds at most N nonzeros;
  every block stores exactly N int8 values and N 4-bit offsets (two per byte).
  Layout: values [k][blocks][N], then the packed offsets.

A group costs one cycle per output column; a batch of `pe_rows` rows costs its
slowest row. `batch_groups` (the sum over batches of the slowest row's groups),
`groups` (all groups) and `nnz` travel in the instruction, so timing needs no data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PackedTile:
    blob: bytes
    fmt: int
    batch_groups: int
    groups: int
    nnz: int
    nm: tuple[int, int] = (0, 0)


def row_groups(w: np.ndarray, lanes: int) -> np.ndarray:
    return -(-np.count_nonzero(w, axis=1) // lanes)


def batch_cost(groups: np.ndarray, pe_rows: int) -> int:
    """Sum over consecutive batches of pe_rows rows of the slowest row's groups."""
    pad = (-len(groups)) % pe_rows
    g = np.concatenate([groups, np.zeros(pad, groups.dtype)]).reshape(-1, pe_rows)
    return int(g.max(axis=1).sum()) if g.size else 0


def balanced_order(groups: np.ndarray) -> np.ndarray:
    """Rows by decreasing group count: consecutive chunks then minimize the sum of chunk maxima."""
    return np.argsort(-groups, kind="stable")


def pack_unstructured(w: np.ndarray, lanes: int, pe_rows: int, balance: bool = True) -> PackedTile:
    k, r = w.shape
    if r > 65535 or k > 65535:
        raise ValueError("a tile's reduction length and rows must fit 16 bits")
    groups = row_groups(w, lanes)
    order = balanced_order(groups) if balance else np.arange(k)
    g_sorted = groups[order]
    header = np.stack([order, g_sorted], axis=1).astype("<u2")
    start = np.concatenate([[0], np.cumsum(g_sorted)]) * lanes          # first lane of each row
    total = int(g_sorted.sum())
    values = np.zeros(total * lanes, np.int8)
    index = np.zeros(total * lanes, "<u2")
    rows, cols = np.nonzero(w[order])                                    # sorted by row, then index
    if rows.size:
        first = np.searchsorted(rows, rows, side="left")                 # position of each row's first nz
        slot = start[rows] + (np.arange(rows.size) - first)
        values[slot] = w[order][rows, cols]
        index[slot] = cols
    blob = header.tobytes() + values.tobytes() + bytes(values.size % 2) + index.tobytes()
    return PackedTile(blob, 1, batch_cost(g_sorted, pe_rows), total, int(rows.size))


def nm_ok(w: np.ndarray, n: int, m: int) -> bool:
    k, r = w.shape
    blocks = np.pad(w, ((0, 0), (0, (-r) % m))).reshape(k, -1, m)
    return bool((np.count_nonzero(blocks, axis=2) <= n).all())


def pack_nm(w: np.ndarray, n: int, m: int, lanes: int, pe_rows: int) -> PackedTile:
    k, r = w.shape
    if not (1 <= n <= m <= 16 and lanes % n == 0):
        raise ValueError(f"{n}:{m} needs 1 <= N <= M <= 16 and N dividing simd_lanes={lanes}")
    blocks = np.pad(w, ((0, 0), (0, (-r) % m))).reshape(k, -1, m)
    nb = blocks.shape[1]
    if (np.count_nonzero(blocks, axis=2) > n).any():
        raise ValueError(f"the tile is not {n}:{m} sparse")
    # the first n positions of each block in order: nonzeros first, then zero filler positions
    key = (blocks == 0).astype(np.int8) * m + np.arange(m)               # nonzeros sort first
    pos = np.sort(np.argsort(key, axis=2, kind="stable")[:, :, :n], axis=2)
    vals = np.take_along_axis(blocks, pos, axis=2).astype(np.int8)
    offs = pos.astype(np.uint8).ravel()
    packed = (offs[0::2] | (np.append(offs[1::2], 0)[:len(offs[0::2])] << 4)).astype(np.uint8)
    per_row = -(-nb * n // lanes)
    return PackedTile(vals.tobytes() + packed.tobytes(), 2, -(-k // pe_rows) * per_row, k * per_row,
                      int(np.count_nonzero(blocks)), (n, m))


def unpack(blob: bytes, fmt: int, k: int, r: int, lanes: int, nm: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The dense [k][r] tile a packed blob stands for (used by tests; the simulator has its own)."""
    w = np.zeros((k, r), np.int64)
    buf = np.frombuffer(blob, np.uint8)
    if fmt == 1:
        header = buf[:4 * k].view("<u2").reshape(k, 2)
        total = int(header[:, 1].sum()) * lanes
        values = buf[4 * k:4 * k + total].view(np.int8)
        index = buf[4 * k + total + total % 2:][:2 * total].view("<u2")
        lane = 0
        for orig, g in header:
            for j in range(lane, lane + g * lanes):
                w[orig, index[j]] += values[j]
            lane += g * lanes
        return w
    n, m = nm
    nb = -(-r // m)
    vals = buf[:k * nb * n].view(np.int8).reshape(k, nb, n)
    packed = buf[k * nb * n:]
    offs = np.empty(2 * len(packed), np.uint8)
    offs[0::2], offs[1::2] = packed & 15, packed >> 4
    offs = offs[:k * nb * n].reshape(k, nb, n)
    dense = np.zeros((k, nb, m), np.int64)
    np.put_along_axis(dense, offs.astype(np.int64), vals.astype(np.int64), axis=2)
    return dense.reshape(k, -1)[:, :r]
