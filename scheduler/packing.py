"""Packing of weight tiles into the layouts the MATMUL instruction reads (arch.formats).

A weight tile is [k][R] integers in the accelerator's reduction order (kernel row, kernel
column, channel), stored at the format's width: int8, int16, or int4 (two per byte, the low
nibble first), followed by int4 scale multipliers where the layer has scale groups. Kinds:

- unstructured: each output channel's nonzeros, in index order, fill groups of
  `simd_lanes` lanes (the last group padded with zeros). Layout: a row table of k
  entries (u16 original channel, u16 group count) in PE order, then every group's
  values, then every group's u16 reduction indices. Rows are ordered by group
  count (descending) when balancing, so that rows of equal cost share a PE batch;
  the original channel in the row table sends each result to its accumulator row,
  so the permutation costs nothing.
- N:M: each block of M consecutive reduction values holds at most N nonzeros;
  every block stores exactly N values, then every value's offset in its block: 2 bits each
  when M <= 4, else 4 bits (packed LSB first).
  Layout: values [k][blocks][N], then the packed offsets.

A group costs one cycle per output column; a batch of `pe_rows` rows costs its
slowest row. `batch_groups` (the sum over batches of the slowest row's groups),
`groups` (all groups) and `nnz` travel in the instruction, so timing needs no data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sieve.arch.formats import NM, UNSTRUCTURED, WeightFormat, offset_bits


@dataclass(frozen=True)
class PackedTile:
    blob: bytes
    fmt: WeightFormat
    batch_groups: int = 0
    groups: int = 0
    nnz: int = 0

    def fields(self) -> dict:
        """The MATMUL fields that describe the tile."""
        return dict(fmt=self.fmt.code, batch_groups=self.batch_groups, groups=self.groups, nnz=self.nnz,
                    nm_n=self.fmt.nm[0], nm_m=self.fmt.nm[1], w_group=self.fmt.group_log2)


def value_blob(values: np.ndarray, bits: int) -> bytes:
    """Weight values at a format's width: int8, little-endian int16, or int4 two per byte (low nibble first)."""
    v = np.asarray(values).ravel()
    if bits == 16:
        return v.astype("<i2").tobytes()
    if bits == 8:
        return v.astype(np.int8).tobytes()
    if v.size and (v.min() < -8 or v.max() > 7):
        raise ValueError("an int4 weight is outside -8..7")
    nib = (v.astype(np.int64) & 15).astype(np.uint8)
    if nib.size % 2:
        nib = np.append(nib, np.uint8(0))
    return (nib[0::2] | (nib[1::2] << 4)).tobytes()


def pack(tile: np.ndarray, fmt: WeightFormat, lanes: int, pe_rows: int, balance: bool = True,
         multipliers: np.ndarray | None = None) -> PackedTile:
    """A [k][r] tile of integers in the format's range, in format ``fmt``; ``lanes`` values per SIMD group;
    ``multipliers`` [k][groups] (int4 scale groups) follow the tile."""
    if fmt.kind == UNSTRUCTURED:
        p = pack_unstructured(tile, lanes, pe_rows, balance, fmt.bits)
    elif fmt.kind == NM:
        p = pack_nm(tile, *fmt.nm, lanes, pe_rows, fmt.bits)
    else:
        p = PackedTile(value_blob(tile, fmt.bits), fmt)
    if fmt.group:
        if multipliers is None:
            raise ValueError("a format with scale groups needs its multipliers")
        return PackedTile(p.blob + np.asarray(multipliers, np.uint8).tobytes(), fmt, p.batch_groups, p.groups, p.nnz)
    return PackedTile(p.blob, fmt, p.batch_groups, p.groups, p.nnz)


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


def pack_unstructured(w: np.ndarray, lanes: int, pe_rows: int, balance: bool = True, bits: int = 8) -> PackedTile:
    k, r = w.shape
    if r > 65535 or k > 65535:
        raise ValueError("a tile's reduction length and rows must fit 16 bits")
    groups = row_groups(w, lanes)
    order = balanced_order(groups) if balance else np.arange(k)
    g_sorted = groups[order]
    header = np.stack([order, g_sorted], axis=1).astype("<u2")
    start = np.concatenate([[0], np.cumsum(g_sorted)]) * lanes          # first lane of each row
    total = int(g_sorted.sum())
    values = np.zeros(total * lanes, np.int64)
    index = np.zeros(total * lanes, "<u2")
    rows, cols = np.nonzero(w[order])                                    # sorted by row, then index
    if rows.size:
        first = np.searchsorted(rows, rows, side="left")                 # position of each row's first nz
        slot = start[rows] + (np.arange(rows.size) - first)
        values[slot] = w[order][rows, cols]
        index[slot] = cols
    vb = value_blob(values, bits)
    blob = header.tobytes() + vb + bytes(len(vb) % 2) + index.tobytes()
    return PackedTile(blob, WeightFormat(UNSTRUCTURED, bits), batch_cost(g_sorted, pe_rows), total, int(rows.size))


def nm_ok(w: np.ndarray, n: int, m: int) -> bool:
    k, r = w.shape
    blocks = np.pad(w, ((0, 0), (0, (-r) % m))).reshape(k, -1, m)
    return bool((np.count_nonzero(blocks, axis=2) <= n).all())


def pack_nm(w: np.ndarray, n: int, m: int, lanes: int, pe_rows: int, bits: int = 8) -> PackedTile:
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
    vals = np.take_along_axis(blocks, pos, axis=2)
    packed = pack_offsets(pos.ravel(), int(offset_bits(m)))
    per_row = -(-nb * n // lanes)
    return PackedTile(value_blob(vals, bits) + packed, WeightFormat(NM, bits, (n, m)),
                      -(-k // pe_rows) * per_row, k * per_row, int(np.count_nonzero(blocks)))


def _values(buf: np.ndarray, count: int, bits: int) -> np.ndarray:
    if bits == 4:
        nib = np.empty(2 * buf.size, np.int64)
        nib[0::2], nib[1::2] = buf & 15, buf >> 4
        return ((nib[:count] + 8) & 15) - 8
    return buf[:count * bits // 8].view(np.int8 if bits == 8 else "<i2").astype(np.int64)


def pack_offsets(offs: np.ndarray, bits: int) -> bytes:
    """Small unsigned values of ``bits`` (2 or 4) each, packed LSB first."""
    per = 8 // bits
    v = np.zeros(-(-offs.size // per) * per, np.uint8)
    v[:offs.size] = offs
    v = v.reshape(-1, per) << (np.arange(per, dtype=np.uint8) * bits)
    return np.bitwise_or.reduce(v, axis=1).astype(np.uint8).tobytes()


def unpack(blob: bytes, fmt: WeightFormat, k: int, r: int, lanes: int) -> np.ndarray:
    """The dense [k][r] tile a blob stands for, multipliers left out (used by tests; the simulator has
    its own)."""
    buf = np.frombuffer(blob, np.uint8)
    vbytes = lambda count: (count * fmt.bits + 7) // 8                  # noqa: E731
    if fmt.kind == UNSTRUCTURED:
        w = np.zeros((k, r), np.int64)
        header = buf[:4 * k].view("<u2").reshape(k, 2)
        total = int(header[:, 1].sum()) * lanes
        values = _values(buf[4 * k:], total, fmt.bits)
        at = 4 * k + vbytes(total)
        index = buf[at + at % 2:][:2 * total].view("<u2")
        lane = 0
        for orig, g in header:
            for j in range(lane, lane + g * lanes):
                w[orig, index[j]] += values[j]
            lane += g * lanes
        return w
    if fmt.kind != NM:
        return _values(buf, k * r, fmt.bits).reshape(k, r)
    n, m = fmt.nm
    nb = -(-r // m)
    vals = _values(buf, k * nb * n, fmt.bits).reshape(k, nb, n)
    bits = int(offset_bits(m))
    packed = buf[vbytes(k * nb * n):]
    shifts = np.arange(8 // bits, dtype=np.uint8) * bits
    offs = ((packed[:, None] >> shifts) & ((1 << bits) - 1)).ravel()[:k * nb * n].reshape(k, nb, n)
    dense = np.zeros((k, nb, m), np.int64)
    np.put_along_axis(dense, offs.astype(np.int64), vals, axis=2)
    return dense.reshape(k, -1)[:, :r]
