"""The scratchpad-against-L2 study: for the same on-chip SRAM, is it better spent on per-core
scratchpads or on a shared L2, and at how many cores does the answer flip?

At each core count N the budget B is split: every core gets a scratchpad of S (a power of two from
``smallest`` up to B / N) and the L2 gets B - N·S (accumulators are outside the budget). Each split
is a sweep point (compiled for its scratchpad, timing-only); the study reads the rows back and
writes a table (one row per core count and split), a heatmap, and a summary that names the best
split at each core count, why (DRAM bytes, L2 hit rate, stalls), where the answer flips, and which
split each layer class prefers.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from sieve.dse.spec import Spec, spec_from_dict

KIB = 1024
COLUMNS = ["cores", "scratchpad_kib", "l2_kib", "l2_share", "cycles", "latency_ms", "energy_mj", "dram_mb",
           "l2_hit_rate", "stall_dram", "stall_l2_bank", "stall_core", "area_mm2", "best"]


def parse_bytes(text: str) -> int:
    """'4MiB', '512KiB', '65536' -> bytes."""
    t = text.strip().lower().replace(" ", "")
    for unit, scale in (("gib", 1 << 30), ("mib", 1 << 20), ("kib", 1 << 10), ("b", 1)):
        if t.endswith(unit):
            t, mult = t[:-len(unit)], scale
            break
    else:
        mult = 1
    try:
        value = float(t) * mult
    except ValueError:
        raise ValueError(f"'{text}' is not a size (e.g. 4MiB, 512KiB, 65536)") from None
    if value <= 0 or value != int(value):
        raise ValueError(f"'{text}' is not a whole, positive number of bytes")
    return int(value)


def splits(budget: int, cores: int, smallest: int = 64 * KIB) -> list[tuple[int, int]]:
    """(scratchpad per core, L2) pairs that spend exactly ``budget``: scratchpads of powers of two."""
    out, s = [], smallest
    while cores * s <= budget:
        out.append((s, budget - cores * s))
        s *= 2
    return out


def study_spec(model: str, budget: int, cores: list[int], arch: str = "default", size: int | None = None,
               calibrate: str | None = None, smallest: int = 64 * KIB) -> Spec:
    """The study as a sweep spec: core counts x splits, the budget held by a constraint."""
    for n in cores:
        if not splits(budget, n, smallest):
            raise ValueError(f"a budget of {budget:,} bytes does not give each of {n} cores a "
                             f"{smallest // KIB} KiB scratchpad")
    spads = sorted({s for n in cores for s, _ in splits(budget, n, smallest)})
    l2s = sorted({l2 for n in cores for _, l2 in splits(budget, n, smallest)})
    data = {"name": f"scratchpad vs L2, {budget / (1 << 20):g} MiB of SRAM", "models": [model], "arch": arch,
            "space": {"cores": cores, "core.scratchpad_bytes": spads, "memory.l2_bytes": l2s},
            "constraints": [f"cores * core.scratchpad_bytes + memory.l2_bytes == {budget}"]}
    if size is not None:
        data["size"] = size
    if calibrate is not None:
        data["calibrate"] = calibrate
    return spec_from_dict(data, "sieve study")


def table(points: pd.DataFrame, budget: int) -> pd.DataFrame:
    """One row per (core count, split), the best split of each core count marked."""
    ok = points[points["error"].isna()].copy() if "error" in points else points.copy()
    t = pd.DataFrame({
        "cores": ok["cores"].astype(int), "scratchpad_kib": ok["core.scratchpad_bytes"] // KIB,
        "l2_kib": ok["memory.l2_bytes"] // KIB, "l2_share": ok["memory.l2_bytes"] / budget,
        "cycles": ok["cycles"], "latency_ms": ok["latency_ms"], "energy_mj": ok["energy_mj"],
        "dram_mb": ok["dram_bytes"] / 1e6, "l2_hit_rate": ok["l2_hit_rate"].fillna(0.0),
        "stall_dram": ok["stall_dram"], "stall_l2_bank": ok["stall_l2_bank"], "stall_core": ok["stall_core"],
        "area_mm2": ok["area_mm2"], "key": ok["key"]})
    t = t.sort_values(["cores", "l2_share"]).reset_index(drop=True)
    t["best"] = t["cycles"] == t.groupby("cores")["cycles"].transform("min")
    return t


def heatmap(t: pd.DataFrame, path: str | Path, title: str) -> None:
    """Cycles of each split relative to the best at its core count: rows are core counts, columns the
    L2's share of the SRAM."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * t["cores"].nunique()), dpi=120)
    rel = t["cycles"] / t.groupby("cores")["cycles"].transform("min")
    levels = sorted(t["cores"].unique())
    y = t["cores"].map({c: i for i, c in enumerate(levels)})
    sc = ax.scatter(t["l2_share"], y, c=rel, cmap="viridis_r", marker="s", s=420, vmin=1.0,
                    vmax=max(1.05, float(rel.max())))
    for (_, row), yy, r in zip(t.iterrows(), y, rel):
        ax.annotate(f"{r:.2f}", (row["l2_share"], yy), ha="center", va="center", fontsize=7,
                    color="white" if r > 1 + 0.5 * (float(rel.max()) - 1) else "black")
    ax.set_yticks(range(len(levels)), [f"{c} core{'s' if c > 1 else ''}" for c in levels])
    ax.set_xlabel("share of the SRAM in the shared L2 (the rest: per-core scratchpads)")
    ax.set_xlim(-0.08, 1.08)
    ax.set_title(title)
    fig.colorbar(sc, ax=ax, label="cycles / best at this core count")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary(t: pd.DataFrame, layers: pd.DataFrame, model: str, budget: int) -> str:
    """What wins at each core count and why, where the answer flips, and per layer class."""
    lines = [f"# Scratchpad or L2: {model}, {budget / (1 << 20):g} MiB of SRAM", ""]
    winners = {}
    for n, g in t.groupby("cores"):
        best = g[g["best"]].iloc[0]
        winners[n] = best
        most_sp, most_l2 = g.iloc[0], g.iloc[-1]
        text = (f"- **{n} core{'s' if n > 1 else ''}**: best {int(best.scratchpad_kib)} KiB per core + "
                f"{int(best.l2_kib)} KiB L2 ({100 * best.l2_share:.0f} % in the L2): {int(best.cycles):,} cycles, "
                f"{best.dram_mb:.1f} MB from DRAM, L2 hit rate {100 * best.l2_hit_rate:.0f} %.")
        for label, other in (("the largest scratchpads", most_sp), ("the largest L2", most_l2)):
            if other.key != best.key:
                ratio = other.cycles / best.cycles
                what = f"{ratio:.2f}x the cycles ({_why(best, other)})" if ratio >= 1.005 else "within 0.5 %"
                text += f" With {label} ({int(other.scratchpad_kib)} KiB + {int(other.l2_kib)} KiB): {what}."
        lines.append(text)
    shares = [(n, winners[n].l2_share) for n in sorted(winners)]
    sides = [(n, _side(share)) for n, share in shares]
    lines.append("")
    flips = [(a, b, sb) for (a, sa), (b, sb) in zip(sides, sides[1:]) if sa != sb]
    for a, b, side in flips:
        lines.append(f"The answer changes between {a} and {b} cores: from {b} cores on, the best split gives {side}.")
    if not flips:
        lines.append(f"The answer does not change over {', '.join(str(n) for n, _ in shares)} cores: the best split "
                     f"gives {sides[0][1]} at every core count.")
    if not layers.empty and "class" in layers:
        lines += ["", "Per layer class, the split with the fewest cycles in that class's layers (L2 share):", ""]
        merged = layers.merge(t[["key", "cores", "l2_share"]], on="key")
        per = merged.groupby(["cores", "class", "l2_share"])["cycles"].sum().reset_index()
        classes = sorted(per["class"].unique())
        lines.append("| cores | " + " | ".join(classes) + " |")
        lines.append("|---:|" + "---:|" * len(classes))
        for n, g in per.groupby("cores"):
            cells = []
            for c in classes:
                h = g[g["class"] == c]
                cells.append("-" if h.empty else f"{100 * h.loc[h['cycles'].idxmin(), 'l2_share']:.0f} %")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _side(share: float) -> str:
    if share > 0.5 + 1e-9:
        return "most of the SRAM to the L2"
    if share < 0.5 - 1e-9:
        return "most of the SRAM to the scratchpads"
    return "half of the SRAM to each"


def _why(best, other) -> str:
    parts = []
    if other.dram_mb > best.dram_mb * 1.02:
        parts.append(f"{other.dram_mb / best.dram_mb:.2f}x the DRAM bytes")
    if abs(other.l2_hit_rate - best.l2_hit_rate) > 0.02:
        parts.append(f"L2 hit rate {100 * other.l2_hit_rate:.0f} % against {100 * best.l2_hit_rate:.0f} %")
    stalls = {"DRAM": "stall_dram", "L2 bank": "stall_l2_bank", "other cores": "stall_core"}
    worst = max(stalls, key=lambda k: other[stalls[k]] - best[stalls[k]])
    if other[stalls[worst]] > best[stalls[worst]] * 1.05 and other[stalls[worst]] > 0:
        parts.append(f"{other[stalls[worst]] / max(best[stalls[worst]], 1):.1f}x the stall cycles waiting on {worst}")
    return "; ".join(parts) or "the tiling a smaller scratchpad allows"


def write(points: pd.DataFrame, layers: pd.DataFrame, model: str, budget: int, out: Path) -> tuple[pd.DataFrame, str]:
    t = table(points, budget)
    t.drop(columns=["key"]).to_csv(out / "table.csv", index=False)
    shown = t.drop(columns=["key"])
    md = ["| " + " | ".join(shown.columns) + " |", "|" + "---:|" * len(shown.columns)]
    for _, row in shown.iterrows():
        md.append("| " + " | ".join(f"{v:,.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    (out / "table.md").write_text("\n".join(md) + "\n")
    heatmap(t, out / "heatmap.png", f"{model}: {budget / (1 << 20):g} MiB of SRAM, scratchpads or L2")
    text = summary(t, layers, model, budget)
    (out / "summary.md").write_text(text)
    return t, text


def layer_class(op: str, depthwise: bool) -> str:
    if op == "conv2d":
        return "depthwise" if depthwise else "conv"
    return {"dense": "fc", "add": "residual add", "maxpool": "pool", "avgpool": "pool",
            "globalavgpool": "pool"}.get(op, op)


def classes_of(graph) -> dict[str, str]:
    """Layer name -> class (conv, depthwise, fc, residual add, pool, ...) from the graph."""
    out = {}
    for node in graph:
        groups = node.attrs.get("groups", 1) if hasattr(node, "attrs") else 1
        out[node.name] = layer_class(node.op.value, groups > 1 and groups == node.out.shape[1])
    return out

