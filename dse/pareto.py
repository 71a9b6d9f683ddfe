"""Pareto fronts over sweep results, and their plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Which rows of ``values`` [points][metrics] no other row dominates, every metric minimized (a
    row dominates another when it is no worse in every metric and better in one; equal rows are all
    kept). Rows with a NaN are never on the front."""
    v = np.asarray(values, np.float64)
    if v.ndim != 2:
        raise ValueError("values must be [points][metrics]")
    n, m = v.shape
    ok = ~np.isnan(v).any(axis=1)
    keep = ok.copy()
    w = v[ok]
    if len(w) == 0:
        return keep
    chunk = max(1, int(2e7 // max(len(w) * m, 1)))
    dominated = np.zeros(len(w), bool)
    for lo in range(0, len(w), chunk):
        a = w[lo:lo + chunk, None, :]
        no_worse = (w[None, :, :] <= a).all(axis=2)
        better = (w[None, :, :] < a).any(axis=2)
        dominated[lo:lo + chunk] = (no_worse & better).any(axis=1)
    keep[np.flatnonzero(ok)] = ~dominated
    return keep


def plot_front(frame, x: str, y: str, z: str | None, mask: np.ndarray, path: str | Path, title: str = "") -> None:
    """Every point in grey, the front in colour (by ``z`` when given), joined along ``x``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    ax.scatter(frame[x], frame[y], s=8, c="0.75", label="all points")
    front = frame[mask].sort_values(x)
    if z:
        sc = ax.scatter(front[x], front[y], s=28, c=front[z], cmap="viridis", label="Pareto front", zorder=3)
        fig.colorbar(sc, ax=ax, label=z)
    else:
        ax.plot(front[x], front[y], "o-", color="C3", ms=5, label="Pareto front", zorder=3)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title or f"{len(front)} of {len(frame)} points on the front")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
