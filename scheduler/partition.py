"""Splitting a layer across cores: each core gets a Part, a box of the layer's output.

A conv/dense layer is split by output channels (``channels``: every core reads the whole
input and its own slice of the weights), by output rows (``rows``: every core reads all
weights and its own rows of the input, plus the halo its kernel window needs) or by images
(``batch``: every core reads all weights and its own images). A dense layer's batch lies in
its columns, so ``batch`` (and ``rows``, which a one-row output cannot use) splits columns;
grouped and batched matmuls split whole groups for ``channels``. Every other layer kind is
split where no halo is needed: elements (elementwise), pixels (affine, concat), output rows
(pooling). A dimension smaller than the core count leaves the remaining cores idle for that
layer. ``pipeline`` does not split layers: it runs consecutive layers on different cores
(``scheduler.pipeline``).
"""
from __future__ import annotations

from dataclasses import replace

from sieve.scheduler.plan import ConvGeom, Part

PARTITIONS = ("auto", "channels", "rows", "batch", "pipeline")


def even(total: int, parts: int, quantum: int = 1) -> list[tuple[int, int]]:
    """``total`` split into at most ``parts`` contiguous ranges of whole quanta, as equal as possible
    (the first ranges take the extra quanta); empty ranges are left out."""
    units = -(-total // quantum)
    n = min(parts, units)
    out, lo = [], 0
    for i in range(n):
        hi = min(total, lo + (units // n + (i < units % n)) * quantum)
        out.append((lo, hi))
        lo = hi
    return out


def matmul_parts(g: ConvGeom, how: str, cores: int, pe_rows: int) -> tuple[str, tuple[Part, ...]]:
    """(the strategy used, one Part per working core) for a conv/dense layer. A strategy the
    layer cannot use falls back to the next that can: channels -> rows -> batch."""
    if cores == 1 or how == "single":
        return "single", (Part(0),)
    dense = g.h == g.oh == 1 and g.taps == 1

    def split(dim: str, total: int, quantum: int = 1):
        return tuple(Part(i, **{dim: r}) for i, r in enumerate(even(total, cores, quantum)))

    if how == "channels":
        if g.groups > 1:
            return how, split("g", g.groups)
        return how, split("k", g.k, pe_rows if g.k >= pe_rows * cores else 1)
    if how == "rows":
        if g.oh > 1:
            return how, split("y", g.oh)
        if g.ow > 1:
            return how, split("x", g.ow)
        return matmul_parts(g, "channels", cores, pe_rows)
    if how == "batch":
        if g.n > 1:
            return how, split("n", g.n)
        if g.batched and g.groups > 1:
            return how, split("g", g.groups)
        if dense and g.ow > 1:
            return how, split("x", g.ow)
        return matmul_parts(g, "rows", cores, pe_rows)
    raise ValueError(f"unknown partition '{how}'")


def sub_geom(g: ConvGeom, part: Part) -> ConvGeom:
    """The geometry one core works on (for pricing its tiling)."""
    k0, k1 = part.range("k", g.k)
    y0, y1 = part.range("y", g.oh)
    x0, x1 = part.range("x", g.ow)
    n0, n1 = part.range("n", g.n)
    g0, g1 = part.range("g", g.groups)
    iy0, iy1, pt = g.in_rows(y0, y1 - y0, g.sh, g.dh, g.kh, g.pt, g.h)
    ix0, ix1, pl = g.in_rows(x0, x1 - x0, g.sw, g.dw, g.kw, g.pl, g.w)
    rows = g.rows.sub(k0, k1) if g.rows is not None and (k0, k1) != (0, g.k) else g.rows
    c = k1 - k0 if g.depthwise else g.c
    c_mem, k_mem = g.stored_channels()
    return replace(g, c_mem=c_mem, k_mem=k_mem, n=n1 - n0, h=max(iy1 - iy0, 1), w=max(ix1 - ix0, 1), c=c, k=k1 - k0, oh=y1 - y0,
                   ow=x1 - x0, pt=pt, pl=pl, groups=g1 - g0, rows=rows)


def flat_parts(total: int, cores: int, dim: str, quantum: int = 1) -> tuple[Part, ...]:
    """Contiguous ranges of a dimension that needs no halo (elements, pixels, rows)."""
    if cores == 1:
        return (Part(0),)
    return tuple(Part(i, **{dim: r}) for i, r in enumerate(even(total, cores, quantum)))
