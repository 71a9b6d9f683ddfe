"""Weight formats: one frozen type carries a layer's weight format from the scheduler's choice to the
MATMUL's ``fmt`` field, and one table gives every format's layout arithmetic to the scheduler (sizing),
codegen (packing) and the simulator (bounds, decoding, timing). docs/isa.md describes the layouts.

A format is a kind and a width. Kinds:

- dense: every reduction value, in order;
- unstructured: each output channel's nonzeros fill groups of lanes (a row table of k entries,
  u16 original channel and u16 group count, then the values, then one u16 reduction index per value);
- nm: every block of M reduction values keeps N values, each with its offset in the block: 2 bits when
  M <= 4, else 4 bits, packed LSB first (2:4 metadata costs half a bit per weight, as in sparse tensor
  cores).

Widths: 8 (int8), 16 (int16 weights holding imported zero points; dense only; the array takes two
passes) and 4 (int4, two per byte, the low nibble first, range -8..7; the MAC array runs
``core.int4_macs_per_lane`` of them per lane and cycle, so a SIMD group of int4 weights holds that many
times ``simd_lanes`` values).

int4 tiles may carry per-group integer scale multipliers (two-level scaling, as in VS-Quant, Dai et
al., MLSys 2021): the reduction of each output channel is split into groups of ``group`` input channels
(shared by the kernel taps), each with an unsigned multiplier q in 1..15 that the array applies to the
group's partial sum. The weight a reduction value stands for is w4 * q, an integer of at most 8 bits,
so the accumulator, the bias and the per-channel requantization are those of int8 weights. The
multipliers follow the tile: one byte per (output channel in original order, group of the tile's
channels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DENSE, UNSTRUCTURED, NM = "dense", "unstructured", "nm"
KINDS = (DENSE, UNSTRUCTURED, NM)

# the MATMUL fmt field: one code per (kind, bits)
CODES = ((DENSE, 8), (UNSTRUCTURED, 8), (NM, 8), (DENSE, 16), (DENSE, 4), (UNSTRUCTURED, 4), (NM, 4))
KIND_OF = np.array([KINDS.index(k) for k, _ in CODES], np.int64)     # 0 dense, 1 unstructured, 2 nm
BITS_OF = np.array([b for _, b in CODES], np.int64)
MAX_MULTIPLIER = 15                  # a group's scale multiplier: 4 bits, 1..15


@dataclass(frozen=True)
class WeightFormat:
    kind: str = DENSE
    bits: int = 8
    nm: tuple[int, int] = (0, 0)     # N:M: at most N nonzeros in each block of M reduction values
    group: int = 0                   # int4: input channels per scale multiplier (0: per output channel)

    def __post_init__(self) -> None:
        if (self.kind, self.bits) not in CODES:
            raise ValueError(f"no {self.bits}-bit {self.kind} weight format")
        if (self.kind == NM) != (self.nm != (0, 0)):
            raise ValueError("an N:M format, and only one, names its N and M")
        if self.group and (self.bits != 4 or self.group & (self.group - 1) or not 2 <= self.group <= 1 << 15):
            raise ValueError(f"scale groups are for int4 weights, a power of two 2..32768, got {self.group}")

    @property
    def code(self) -> int:
        return CODES.index((self.kind, self.bits))

    @property
    def packed(self) -> bool:
        return self.kind != DENSE

    @property
    def group_log2(self) -> int:
        """The MATMUL's w_group field: 0 for none, else log2 of the group."""
        return self.group.bit_length() - 1 if self.group else 0

    def lanes(self, simd_lanes: int, int4_rate: int):
        """Reduction values one SIMD group of this format holds."""
        return simd_lanes * (int4_rate if self.bits == 4 else 1)

    @property
    def name(self) -> str:
        """How reports show it: "dense", "unstructured", "2:4", with " int4" / " int16" and " g64"."""
        base = f"{self.nm[0]}:{self.nm[1]}" if self.kind == NM else self.kind
        width = "" if self.bits == 8 else f" int{self.bits}"
        return base + width + (f" g{self.group}" if self.group else "")


def group_lanes(code, simd_lanes: int, int4_rate: int):
    """Values per SIMD group for each fmt code (ints or arrays)."""
    return simd_lanes * np.where(BITS_OF[code] == 4, int4_rate, 1)


def offset_bits(nm_m):
    """Bits of one N:M offset: 2 for blocks of up to 4, else 4."""
    return np.where(np.asarray(nm_m) <= 4, 2, 4)


def value_bytes(count, bits):
    """Bytes of ``count`` weight values of ``bits`` each (int4: two per byte)."""
    return (count * bits + 7) // 8


def multiplier_count(k, in_c, group_log2, depthwise=0):
    """Scale multipliers a tile carries: one per output channel and group of its input channels."""
    g = np.left_shift(1, np.asarray(group_log2))
    return np.where((np.asarray(group_log2) > 0) & (np.asarray(depthwise) == 0), k * -(-np.asarray(in_c) // g), 0)


def tile_layout(code, k, r, values, nm_n, nm_m, mults):
    """Where each part of a weight tile lies, in bytes from its start: (value count, values start,
    metadata start, multipliers start, end). ``r`` is the reduction length per output channel, ``values``
    the packed value slots (unstructured: groups x lanes) and ``mults`` the multiplier count; every
    argument may be an array (the simulator checks and prices whole programs at once)."""
    kind, bits = KIND_OF[code], BITS_OF[code]
    nb = -(-np.asarray(r) // np.maximum(nm_m, 1))
    count = np.select([kind == 1, kind == 2], [values, k * nb * nm_n], k * r)
    head = np.where(kind == 1, 4 * k, 0)
    vb = value_bytes(count, bits)
    meta_at = head + vb + np.where(kind == 1, vb % 2, 0)              # u16 indices start even
    meta = np.select([kind == 1, kind == 2], [2 * count, (count * offset_bits(nm_m) + 7) // 8], 0)
    mult_at = meta_at + meta
    return count, head, meta_at, mult_at, mult_at + mults

