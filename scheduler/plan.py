"""What the scheduler hands to codegen: one plan per graph node."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace, field

import numpy as np

from sieve.arch.config import ArchConfig
from sieve.arch.formats import NM, UNSTRUCTURED, WeightFormat, multiplier_count, tile_layout
from sieve.ir.graph import Graph

ALIGN = 16


class ScheduleError(Exception):
    def __init__(self, message: str, node: str | None = None, hint: str = ""):
        self.node, self.hint = node, hint
        text = f"layer '{node}': {message}" if node else message
        super().__init__(text + (f" (hint: {hint})" if hint else ""))


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


def split(total: int, tile: int) -> list[tuple[int, int]]:
    """[(start, size)] of the tiles covering range(total)."""
    return [(s, min(tile, total - s)) for s in range(0, total, tile)]


@dataclass(frozen=True)
class ConvGeom:
    """A conv or dense layer on NHWC memory (dense: N=1, H=1, W=batch, 1x1 kernel)."""
    n: int
    h: int
    w: int
    c: int
    k: int
    oh: int
    ow: int
    kh: int = 1
    kw: int = 1
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 0
    pl: int = 0
    groups: int = 1           # c and k above are per group; a group is tiled on its own
    depthwise: bool = False   # output channel j reads input channel j only (c == k)
    out_bytes: int = 1        # 1: requantized int8; 4: raw int32 (ConvInteger-style)
    batched: bool = False     # groups are separate [h][w][c] images with their own weights (batched matmul)
    fmt: WeightFormat = WeightFormat()   # kind (dense, unstructured, N:M), width (4, 8, 16 bits), scale groups
    dmax: float = 1.0         # the densest output channel's fraction of nonzero weights
    density: float = 1.0      # the layer's fraction of nonzero weights (a packed format multiplies only those)
    nnz_max: int = 0          # that channel's nonzero count (bounds a packed tile's size)
    balance: bool = True      # order PE rows by work (unstructured)
    rows: "RowCounts | None" = None   # the layer's nonzero pattern, for exact sparse compute estimates
    c_mem: int = 0            # channels per pixel of the stored input and output (0: the whole
    k_mem: int = 0            # layer's, c * groups and k * groups; a core's share of a split layer has fewer)
    # a window sum whose window exceeds the MATMUL fields (a global average pool over more than 31 x 31
    # pixels): summed band by band (band_h x band_w windows, accumulating); (0, 0): one window
    band: tuple[int, int] = (0, 0)
    x_pitch: int = 0          # bytes per pixel of the scratchpad tile the MAC array reads (0: the tile's
                              # channels; a fused stack's layers read channel slices of whole-pixel regions)

    def bands(self) -> list[tuple[int, int, int, int]]:
        """(first row, rows, first column, columns) of each band of a banded window sum."""
        bh, bw = self.band
        return [(y, min(bh, self.kh - y), x, min(bw, self.kw - x))
                for y in range(0, self.kh, bh) for x in range(0, self.kw, bw)]

    def per_band(self) -> "ConvGeom":
        """The geometry of one band, each band an image of its own: what the tiling is sized and priced
        for (the accumulator holds a band's partial sums; a requantization is counted per band)."""
        if not self.band[0]:
            return self
        bh, bw = self.band
        return replace(self, n=self.n * len(self.bands()), h=bh, w=bw, kh=bh, kw=bw, band=(0, 0))

    def stored_channels(self) -> tuple[int, int]:
        """Channels per pixel of the input and output tensors as stored in DRAM."""
        if self.batched:
            return self.c_mem or self.c, self.k_mem or self.k
        return self.c_mem or self.c * self.groups, self.k_mem or self.k * self.groups

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    def reduction(self, c_t: int) -> int:
        """Values reduced per output: the kernel window, times the channel tile unless depthwise."""
        return self.taps if self.depthwise else self.taps * c_t

    def lanes(self, core) -> int:
        """Reduction values one SIMD group of this layer's weight format holds (int4: several per lane)."""
        return self.fmt.lanes(core.simd_lanes, core.int4_macs_per_lane)

    def channel_unit(self) -> int:
        """Channel tiles are multiples of this (or the whole layer): whole N:M blocks, whole scale groups."""
        return math.lcm(max(self.fmt.nm[1], 1), max(self.fmt.group, 1))

    def row_groups(self, c_t, lanes: int):
        """SIMD groups of ``lanes`` values an output channel costs per tile (an estimate for unstructured
        weights); c_t may be an array of channel tiles (the tiling search prices all candidates at once)."""
        r = self.reduction(c_t)
        if self.fmt.kind == UNSTRUCTURED:
            return -(-np.ceil(self.dmax * r).astype(np.int64) // lanes)
        if self.fmt.kind == NM:
            n, m = self.fmt.nm
            return -(-(-(-r // m) * n) // lanes)
        return -(-r // lanes) * (2 if self.fmt.bits == 16 else 1)

    def weight_tile_bytes(self, k_t, c_t, lanes: int):
        """An upper bound on a weight tile's bytes in this format (sizes the scratchpad region), scale
        multipliers included; k_t and c_t may be arrays, ``lanes`` is ``self.lanes(core)``."""
        r = self.reduction(c_t)
        n, m = self.fmt.nm
        if self.fmt.kind == UNSTRUCTURED:
            values = k_t * -(-np.minimum(r, self.nnz_max) // lanes) * lanes
        else:
            values = 0
        mults = multiplier_count(k_t, c_t, self.fmt.group_log2, int(self.depthwise))
        return tile_layout(self.fmt.code, k_t, r, values, n, m, mults)[-1]

    def in_rows(self, o0: int, size: int, stride: int, dil: int, kern: int, pad: int, extent: int):
        """Input rows [lo, hi) a run of ``size`` outputs from ``o0`` reads, and its top padding."""
        lo = o0 * stride - pad
        hi = (o0 + size - 1) * stride - pad + dil * (kern - 1) + 1
        start, stop = max(lo, 0), min(hi, extent)
        if start >= stop:                  # the whole window is padding: an empty tile
            return 0, 0, 0
        return start, stop, start - lo

    def max_in(self, size: int, stride: int, dil: int, kern: int, extent: int) -> int:
        return min(extent, (size - 1) * stride + dil * (kern - 1) + 1)


class RowCounts:
    """Nonzeros per output channel per channel tile of a layer's weights [K][taps][C]; gives the exact
    MAC-array group count of a tiling (hashable by identity: one per layer)."""

    def __init__(self, hw_weights: np.ndarray):
        k = hw_weights.shape[0]
        self.nz = (hw_weights.reshape(k, -1, hw_weights.shape[-1]) != 0)
        self._memo: dict = {}

    def _groups(self, c_t: int, lanes: int) -> np.ndarray:
        key = (c_t, lanes)
        if key not in self._memo:
            c = self.nz.shape[2]
            counts = np.stack([self.nz[:, :, c0:c0 + c_t].sum(axis=(1, 2)) for c0 in range(0, c, c_t)], axis=1)
            self._memo[key] = -(-counts // lanes)                       # [K, channel tiles]
        return self._memo[key]

    def batch_groups(self, k_t: int, c_t: int, lanes: int, pe_rows: int, balance: bool) -> int:
        """Sum over all (k, c) tiles of the tile's batch cost, rows balanced or in natural order."""
        key = (k_t, c_t, lanes, pe_rows, balance)
        if key not in self._memo:
            g = self._groups(c_t, lanes)
            k, n_c = g.shape
            tiles = -(-k // k_t)
            g = np.concatenate([g, np.zeros((tiles * k_t - k, n_c), g.dtype)]).reshape(tiles, k_t, n_c)
            if balance:
                g = -np.sort(-g, axis=1)
            batches = -(-k_t // pe_rows)
            g = np.concatenate([g, np.zeros((tiles, batches * pe_rows - k_t, n_c), g.dtype)], axis=1)
            self._memo[key] = int(g.reshape(tiles, batches, pe_rows, n_c).max(axis=2).sum())
        return self._memo[key]

    def sub(self, k0: int, k1: int) -> "RowCounts":
        """The counts of output channels [k0, k1) (one object per range, so tiling searches cache)."""
        key = ("sub", k0, k1)
        if key not in self._memo:
            part = RowCounts.__new__(RowCounts)
            part.nz, part._memo = self.nz[k0:k1], {}
            self._memo[key] = part
        return self._memo[key]


@dataclass(frozen=True)
class MatmulTiling:
    k_t: int
    oh_t: int
    ow_t: int
    c_t: int
    order: str          # "k_outer": weights stay while pixels stream; "pixels_outer": the reverse
    acc_buffers: int = 1  # 2: output tiles alternate accumulator halves, so the vector unit (with its own
                          # path) requantizes one while the MAC array fills the other


@dataclass(frozen=True)
class SpadLayout:
    """Byte sizes of one slot of each region, double-buffered unless a region says it has one slot
    (name, size, 1); codegen places them in order."""
    regions: tuple[tuple, ...]

    @staticmethod
    def _slots(region: tuple) -> int:
        return region[2] if len(region) > 2 else 2

    def offsets(self) -> dict[str, tuple[int, int]]:
        """region name -> (slot 0 address, slot 1 address); a one-slot region gives its address twice."""
        out, addr = {}, 0
        for region in self.regions:
            size = align(region[1])
            out[region[0]] = (addr, addr + size if self._slots(region) == 2 else addr)
            addr += self._slots(region) * size
        return out

    @property
    def total(self) -> int:
        return sum(self._slots(r) * align(r[1]) for r in self.regions)


@dataclass(frozen=True)
class Part:
    """One core's share of a layer as half-open ranges; ``None`` means the whole extent. For a
    matmul: output channels ``k`` (per group), output rows ``y``, output columns ``x``, images ``n``
    and groups ``g``; for pooling ``y`` and ``n``; for elementwise layers ``e`` (elements), for
    affine and concat layers ``e`` (pixels). ``images`` are the images the part covers where it is
    one image's share of a pipelined layer (``None``: every image); consumers wait only for the
    parts of their inputs that cover their images."""
    core: int
    k: tuple[int, int] | None = None
    y: tuple[int, int] | None = None
    x: tuple[int, int] | None = None
    n: tuple[int, int] | None = None
    g: tuple[int, int] | None = None
    e: tuple[int, int] | None = None
    images: tuple[int, int] | None = None

    def range(self, dim: str, total: int) -> tuple[int, int]:
        r = getattr(self, dim)
        return (0, total) if r is None else r


@dataclass(frozen=True)
class LayerPlan:
    node: str
    kind: str                          # "matmul", "pool", "eltwise", "alias"
    spad: SpadLayout | None = None
    tiling: MatmulTiling | None = None
    geom: ConvGeom | None = None
    tile_elems: int = 0                # eltwise: elements per tile
    pool_rows: int = 0                 # pool: output rows per tile
    pool_c: int = 0                    # pool: channels per tile
    est_cycles: int = 0
    est_energy_pj: float = 0.0         # matmul: the cost model's energy (scheduler.tiling.energy_estimate)
    reason: str = ""
    partition: str = "single"          # how the layer is split across cores (scheduler.partition)
    parts: tuple[Part, ...] = (Part(0),)   # one per working core
    # move: the tiles in output order, each a tuple of gathers (src byte offset, dst byte offset, rows,
    # row bytes, src row stride) filling one contiguous stretch of the output; parts split the tiles
    moves: tuple = ()
    stack: "Stack | None" = None       # kind "stack": the fused layers it runs (scheduler.fusion)


@dataclass(frozen=True)
class Stack:
    """Consecutive layers fused into one tile loop over bands of the last layer's output rows (all
    channels; whole rows, or ``cols`` columns per tile). Every tensor the stack touches lives in a
    scratchpad region holding the box of rows and columns the tile needs: the stack's inputs are loaded
    from DRAM, the layers in between never leave the scratchpad, the last layer's box is stored. In
    ``recompute`` mode every tile computes its whole boxes (what overlaps the previous tile's is
    computed again); in ``cache`` mode (whole rows) the overlapping rows are kept (shifted to the front
    of the region, or copied to its other slot) and only new rows are computed or loaded."""
    members: tuple[LayerPlan, ...]          # kind "matmul" (geom, tiling), "pool" (geom) or "eltwise"
    inputs: tuple[tuple[str, ...], ...]     # each member's input tensors
    loaded: tuple[str, ...]                 # tensors read from DRAM (produced outside the stack)
    shapes: tuple[tuple[str, tuple[int, int, int]], ...]   # tensor -> (h, w, c) as stored (channels last)
    rows: int                               # output rows of the last layer per band
    mode: str                               # "recompute" or "cache"
    cols: int = 0                           # output columns per tile (0: whole rows; else recompute only)
    dram_bytes: int = 0                     # the cost model's estimate, fused
    unfused_dram_bytes: int = 0             # ... and layer by layer
    unfused_cycles: int = 0                 # the layers' own estimates, summed
    recomputed_macs: int = 0                # MACs computed more than once (recompute mode's halos)
    steps: int = 0                          # compute steps (counter increments), an upper bound
    # element-wise layers computed in place: (tensor, the tensor whose region it shares), the owner being
    # the last of a chain (its window holds the others'); every other tensor owns its region
    homes: tuple[tuple[str, str], ...] = ()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(m.node for m in self.members)

    def shape(self, tensor: str) -> tuple[int, int, int]:
        return dict(self.shapes)[tensor]

    def home(self, tensor: str) -> str:
        """The tensor whose scratchpad region holds ``tensor``."""
        return dict(self.homes).get(tensor, tensor)

    @property
    def owners(self) -> tuple[str, ...]:
        """The tensors with a region of their own: the loaded ones, then the layers' in order."""
        shared = dict(self.homes)
        return tuple(t for t in (*self.loaded, *self.nodes) if t not in shared)

    @property
    def last(self) -> str:
        return self.members[-1].node


@dataclass(frozen=True)
class Schedule:
    graph: Graph
    arch: ArchConfig
    layers: tuple[LayerPlan, ...]
    orders: dict = field(default_factory=dict)   # tensor -> MemoryOrder (scheduler.layout)
    order: tuple[tuple[int, int], ...] = ()      # (layer, part) in emission order; () = layer by layer
    # zero-value compression of DRAM transfers: "activations" (intermediate int8 tensors) and/or "weights",
    # with each tensor's estimated fraction of bytes that are not its zero point (the binary's estimate)
    compress: frozenset = frozenset()
    densities: dict = field(default_factory=dict)

    def plan(self, node: str) -> LayerPlan:
        for p in self.layers:
            if p.node == node:
                return p
        raise KeyError(node)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def dma_cycles(nbytes: int, arch: ArchConfig) -> int:
    return math.ceil(nbytes / arch.memory.dram_bytes_per_cycle)
