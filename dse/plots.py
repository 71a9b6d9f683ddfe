"""Plots of sweep results: each point's cycles by layer class, and the points on a roofline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def layer_breakdown(points: pd.DataFrame, layers: pd.DataFrame, path: str | Path, label: str = "point") -> None:
    """One stacked bar per point: the cycles of its layers, summed per layer class (conv, depthwise,
    fc, residual add, pool, ...). Layers of one point run partly at once on several cores, so the
    bar is the sum of the layers' spans, not the run's cycles (marked per point)."""
    plt = _pyplot()
    per = layers[layers["key"].isin(points["key"])].groupby(["key", "class"])["cycles"].sum().unstack(fill_value=0)
    per = per.reindex(points["key"]).fillna(0)
    names = [str(v) for v in points[label]] if label in points else [str(i) for i in range(len(points))]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(points) + 3), 4.5), dpi=120)
    bottom = np.zeros(len(per))
    for cls in per.columns:
        ax.bar(names, per[cls].to_numpy(), bottom=bottom, label=cls)
        bottom += per[cls].to_numpy()
    ax.plot(names, points["cycles"].to_numpy(), "k_", ms=18, mew=2, label="run (cycles)")
    ax.set_ylabel("cycles")
    ax.set_xlabel(label)
    ax.set_title("cycles per layer class")
    ax.legend(fontsize=8)
    if len(names) > 12:
        ax.tick_params(axis="x", rotation=90)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def roofline(points: pd.DataFrame, path: str | Path) -> None:
    """Each point at (MACs per DRAM byte, MACs per cycle), under the roofline of its arch:
    min(peak MACs per cycle, DRAM bytes per cycle x intensity), one line per distinct arch roof."""
    plt = _pyplot()
    ok = points[points["dram_bytes"] > 0]
    x = ok["macs"] / ok["dram_bytes"]
    y = ok["macs"] / ok["cycles"]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    roofs = ok[["peak_macs_per_cycle", "dram_bytes_per_cycle"]].drop_duplicates()
    span = np.logspace(np.log10(max(x.min() / 4, 1e-3)), np.log10(x.max() * 4), 200)
    for i, (_, r) in enumerate(roofs.head(8).iterrows()):
        ax.plot(span, np.minimum(r["peak_macs_per_cycle"], r["dram_bytes_per_cycle"] * span), lw=1,
                color=f"C{i}", label=f"roof: {r['peak_macs_per_cycle']:g} MAC/cycle, "
                                     f"{r['dram_bytes_per_cycle']:g} B/cycle")
    ax.scatter(x, y, s=10, c="k", zorder=3, label="points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per DRAM byte")
    ax.set_ylabel("MACs per cycle")
    ax.set_title(f"roofline: {len(ok)} points" + (" (first 8 roofs drawn)" if len(roofs) > 8 else ""))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
