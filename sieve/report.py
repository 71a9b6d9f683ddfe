"""Reports: the figures as data (for --stats JSON and the API), and as tables for a terminal (rich).

Tables keep every number whole: numeric columns never wrap or get cut, and when the output is
not a terminal the console is as wide as the table needs.
"""
from __future__ import annotations

from sieve.arch import Program
from sieve.simulator.stats import RunStats


def sparsity_report(program: Program, stats: RunStats) -> dict:
    """Per weight layer: format, density, lane utilization, skipped MACs, and the dense twin (the
    same layer compiled dense on the same arch and simulated at compile time); totals over the
    weight layers and end to end. Twin figures are None when the binary was compiled without one."""
    syms = {s.name: s for s in program.layers}
    layers = []
    tot = {"macs": 0, "dense_macs": 0, "lane_slots": 0, "mac_cycles": 0, "dense_mac_cycles": 0, "cycles": 0,
           "dense_cycles": 0, "energy_pj": 0.0, "dense_energy_pj": 0.0}
    twin_everywhere = True
    for layer in stats.layers:
        ev, sym = layer.events, syms[layer.name]
        if ev["dense_macs"] == 0:
            continue
        twin = sym.dense_cycles > 0 or sym.weight_format == "dense"
        twin_everywhere &= twin
        dense_cycles = (sym.dense_cycles or layer.cycles) if twin else None
        dense_mc = (sym.dense_mac_cycles or layer.mac_cycles) if twin else None
        dense_e = (sym.dense_energy_pj or layer.energy_total_pj) if twin else None
        layers.append({
            "name": layer.name, "weight_format": sym.weight_format,
            "density": ev["macs"] / ev["dense_macs"], "lane_utilization": ev["macs"] / max(ev["lane_slots"], 1),
            "skipped_macs": ev["dense_macs"] - ev["macs"], "mac_cycles": layer.mac_cycles,
            "dense_mac_cycles": dense_mc, "cycles": layer.cycles, "dense_cycles": dense_cycles,
            "speedup": dense_cycles / max(layer.cycles, 1) if twin else None,
            "energy_pj": layer.energy_total_pj, "dense_energy_pj": dense_e})
        for key, v in (("macs", ev["macs"]), ("dense_macs", ev["dense_macs"]), ("lane_slots", ev["lane_slots"]),
                       ("mac_cycles", layer.mac_cycles), ("dense_mac_cycles", dense_mc or 0),
                       ("cycles", layer.cycles), ("dense_cycles", dense_cycles or 0),
                       ("energy_pj", layer.energy_total_pj), ("dense_energy_pj", dense_e or 0.0)):
            tot[key] += v
    twin = twin_everywhere
    other = stats.cycles - tot["cycles"]                 # layers without weights, and gaps
    total = {
        "density": tot["macs"] / max(tot["dense_macs"], 1),
        "lane_utilization": tot["macs"] / max(tot["lane_slots"], 1),
        "skipped_macs": tot["dense_macs"] - tot["macs"],
        "mac_cycles": tot["mac_cycles"], "dense_mac_cycles": tot["dense_mac_cycles"] if twin else None,
        "weight_layer_cycles": tot["cycles"], "dense_weight_layer_cycles": tot["dense_cycles"] if twin else None,
        "weight_layer_speedup": tot["dense_cycles"] / max(tot["cycles"], 1) if twin else None,
        "cycles": stats.cycles, "dense_cycles": other + tot["dense_cycles"] if twin else None,
        "end_to_end_speedup": (other + tot["dense_cycles"]) / max(stats.cycles, 1) if twin else None,
        "energy_pj": stats.energy_total_pj,
        "dense_energy_pj": stats.energy_total_pj - tot["energy_pj"] + tot["dense_energy_pj"] if twin else None,
    }
    return {"layers": layers, "total": total, "dense_twin": twin,
            "note": "dense twin: each weight layer compiled dense on the same arch and simulated at compile "
                    "time; weight-layer speedup counts the layers with weights, end-to-end the whole "
                    "inference (layers without weights run the same in both)"}


def fusion_report(program: Program, stats: RunStats) -> dict:
    """Per fused stack: its layers, bands, overlap mode, where each tensor lived, the scratchpad it
    uses, the MACs done more than once, and its measured DRAM bytes, cycles and energy against the
    unfused twin (the same layers compiled one by one on the same arch and simulated at compile time;
    None without one); totals over the stacks and end to end."""
    by_name = {layer.name: layer for layer in stats.layers}
    stacks = []
    tot = {k: 0 for k in ("dram_bytes", "unfused_dram_bytes", "cycles", "unfused_cycles", "energy_pj",
                          "unfused_energy_pj", "recomputed_macs")}
    twin = True
    for name, syms in program.layer_groups().items():
        sym = syms[0]
        if not sym.members:
            continue
        layer = by_name[name]
        has = sym.unfused_cycles > 0
        twin &= has
        row = {"name": name, "layers": list(sym.members), "band_rows": sym.band_rows, "band_cols": sym.band_cols,
               "overlap": sym.overlap,
               "tensors": [{"tensor": t, "home": where, "window_bytes": size} for t, where, size in sym.residency],
               "spad_bytes": sym.spad_bytes, "recomputed_macs": sym.recomputed_macs,
               "dram_bytes": int(layer.events["dram_read_bytes"] + layer.events["dram_write_bytes"]),
               "cycles": layer.cycles, "energy_pj": layer.energy_total_pj,
               "unfused_dram_bytes": sym.unfused_dram_bytes if has else None,
               "unfused_cycles": sym.unfused_cycles if has else None,
               "unfused_energy_pj": sym.unfused_energy_pj if has else None}
        stacks.append(row)
        for key in tot:
            tot[key] += row[key] or 0
    total = dict(tot)
    if not twin or not stacks:
        for key in ("unfused_dram_bytes", "unfused_cycles", "unfused_energy_pj"):
            total[key] = None
    dram = int(stats.events["dram_read_bytes"] + stats.events["dram_write_bytes"])
    total.update({"end_to_end_cycles": stats.cycles, "end_to_end_dram_bytes": dram,
                  "end_to_end_energy_pj": stats.energy_total_pj})
    if total["unfused_cycles"] is not None:
        total.update({"end_to_end_unfused_cycles": stats.cycles - tot["cycles"] + tot["unfused_cycles"],
                      "end_to_end_unfused_dram_bytes": dram - tot["dram_bytes"] + tot["unfused_dram_bytes"],
                      "end_to_end_unfused_energy_pj": stats.energy_total_pj - tot["energy_pj"]
                      + tot["unfused_energy_pj"]})
    return {"stacks": stacks, "total": total, "unfused_twin": twin and bool(stacks),
            "note": "unfused twin: each stack's layers compiled one by one on the same arch and simulated at "
                    "compile time, their figures summed; end to end, the other layers count as they ran"}


def fusion_tables(report: dict):
    """The stacks (layers, bands, residency) and their figures against the unfused twin."""
    a = table("fused stacks", ["stack", "layers", "tile", "overlap", "on chip only", "scratchpad KiB",
                               "recomputed MACs"], 4)
    b = table("fused stacks against their layers one by one (unfused twin, simulated at compile time)",
              ["stack", "DRAM KB", "unfused", "cycles", "unfused", "speedup", "nJ", "unfused nJ"])

    def kb(v):
        return _num(None if v is None else v / 1e3, ",.1f")

    def nj(v):
        return _num(None if v is None else v / 1e3, ",.1f")

    def ratio(u, f):
        return "-" if u is None else f"{u / max(f, 1):.2f}x"
    for r in report["stacks"]:
        chip = [t["tensor"] for t in r["tensors"] if t["home"] == "scratchpad"]
        label = f"{r['layers'][0]} .. {r['name']}"
        tile = f"{r['band_rows']}x{r['band_cols']}" if r["band_cols"] else f"{r['band_rows']} rows"
        a.add_row(label, " ".join(r["layers"]), tile, r["overlap"], " ".join(chip),
                  _kb(r["spad_bytes"]), f"{r['recomputed_macs']:,}")
        b.add_row(label, kb(r["dram_bytes"]), kb(r["unfused_dram_bytes"]), f"{r['cycles']:,}",
                  _num(r["unfused_cycles"]), ratio(r["unfused_cycles"], r["cycles"]), nj(r["energy_pj"]),
                  nj(r["unfused_energy_pj"]))
    if not report["stacks"]:
        a.add_row("(none)", "compiled with --fusion none, or no run of layers paid", "", "", "", "", "")
    t = report["total"]
    b.add_section()
    b.add_row("all stacks", kb(t["dram_bytes"]), kb(t["unfused_dram_bytes"]), f"{t['cycles']:,}",
              _num(t["unfused_cycles"]), ratio(t["unfused_cycles"], t["cycles"]), nj(t["energy_pj"]),
              nj(t["unfused_energy_pj"]))
    b.add_row("end to end", kb(t["end_to_end_dram_bytes"]), kb(t.get("end_to_end_unfused_dram_bytes")),
              f"{t['end_to_end_cycles']:,}", _num(t.get("end_to_end_unfused_cycles")),
              ratio(t.get("end_to_end_unfused_cycles"), t["end_to_end_cycles"]), nj(t["end_to_end_energy_pj"]),
              nj(t.get("end_to_end_unfused_energy_pj")))
    return a, b


def _num(v, fmt: str = ",", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{suffix}"


def table(title: str, columns: list[str], left: int = 1):
    """A table whose first ``left`` columns are text and the rest numbers; in a narrow terminal every
    cell wraps (folds) instead of being cut, so no digit is ever lost."""
    from rich.table import Table
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i < left else "right", overflow="fold")
    return t


def sparsity_tables(report: dict):
    """Three tables that fit an 80-column terminal: sparsity per layer, cycles and energy against
    the dense twin."""
    a = table("sparsity per weight layer", ["layer", "weights", "density %", "lane util %", "skipped MACs"], 2)
    b = table("cycles against the dense twin (same layer compiled dense, simulated at compile time)",
               ["layer", "MAC-array cycles", "dense", "cycles", "dense", "speedup"])
    c = table("energy against the dense twin", ["layer", "nJ", "dense nJ", "saved"])

    def nj(v):
        return _num(None if v is None else v / 1e3, ",.1f")

    def saved(e, d):
        return "-" if d is None else f"{100 * (1 - e / d):.1f} %" if d else ""
    for r in report["layers"]:
        a.add_row(r["name"], r["weight_format"], f"{100 * r['density']:.1f}", f"{100 * r['lane_utilization']:.1f}",
                  f"{r['skipped_macs']:,}")
        b.add_row(r["name"], f"{r['mac_cycles']:,}", _num(r["dense_mac_cycles"]), f"{r['cycles']:,}",
                  _num(r["dense_cycles"]), _num(r["speedup"], ".2f", "x"))
        c.add_row(r["name"], nj(r["energy_pj"]), nj(r["dense_energy_pj"]), saved(r["energy_pj"], r["dense_energy_pj"]))
    t = report["total"]
    a.add_section()
    a.add_row("total", "", f"{100 * t['density']:.1f}", f"{100 * t['lane_utilization']:.1f}",
              f"{t['skipped_macs']:,}")
    b.add_section()
    b.add_row("weight layers", f"{t['mac_cycles']:,}", _num(t["dense_mac_cycles"]), f"{t['weight_layer_cycles']:,}",
              _num(t["dense_weight_layer_cycles"]), _num(t["weight_layer_speedup"], ".2f", "x"))
    b.add_row("end to end", "", "", f"{t['cycles']:,}", _num(t["dense_cycles"]),
              _num(t["end_to_end_speedup"], ".2f", "x"))
    c.add_section()
    c.add_row("end to end", nj(t["energy_pj"]), nj(t["dense_energy_pj"]), saved(t["energy_pj"], t["dense_energy_pj"]))
    return a, b, c


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f}"


def stats_table(stats: RunStats, title: str, program: Program | None = None):
    """Per layer (a fused stack as one row, named by its first and last layer where ``program`` is given)."""
    members = {s.name: s.members for s in program.layers} if program is not None else {}
    split = any(len(layer.cores) > 1 for layer in stats.layers)
    t = table(title, ["layer", "op"] + ["split"] * split + ["cycles", "util %", "MACs", "DRAM rd KiB", "DRAM wr KiB",
                                                            "spad KiB", "energy nJ"], 2 + split)
    for layer in stats.layers:
        e = layer.events
        where = [f"{layer.partition} x{len(layer.cores)}" if len(layer.cores) > 1 else f"core {layer.cores[0]}"] \
            if split else []
        fused = members.get(layer.name)
        name, op = (f"{fused[0]} .. {layer.name}", f"stack of {len(fused)}") if fused else (layer.name, layer.op)
        t.add_row(name, op, *where, f"{layer.cycles:,}", f"{100 * layer.utilization:.1f}",
                  f"{layer.macs:,}", _kb(e["dram_read_bytes"]), _kb(e["dram_write_bytes"]),
                  _kb(e["spad_read_bytes"] + e["spad_write_bytes"]), f"{layer.energy_total_pj / 1e3:,.1f}")
    e = stats.events
    t.add_section()
    t.add_row("total", "", *([""] * split), f"{stats.cycles:,}", f"{100 * stats.utilization:.1f}", f"{stats.macs:,}",
              _kb(e["dram_read_bytes"]), _kb(e["dram_write_bytes"]),
              _kb(e["spad_read_bytes"] + e["spad_write_bytes"]), f"{stats.energy_total_pj / 1e3:,.1f}")
    return t


def cores_table(stats: RunStats):
    """Per core: when it finished, how busy its units were, and its stall cycles by cause."""
    causes = list(stats.stall_cycles)
    t = table("per core: busy and stall cycles (stalls: DMA beyond full bandwidth, L2 bank conflicts, "
              "scratchpad port, waiting for another core)",
              ["core", "end cycle", "util %", "load busy", "compute busy", "store busy"]
              + [f"stall {c}" for c in causes])
    for c in stats.cores:
        t.add_row(str(c.core), f"{c.end_cycle:,}", f"{100 * c.utilization:.1f}", f"{c.busy_cycles['load']:,}",
                  f"{c.busy_cycles['compute']:,}", f"{c.busy_cycles['store']:,}",
                  *(f"{c.stall_cycles[x]:,}" for x in causes))
    return t


def memory_table(stats: RunStats):
    """Per memory level: traffic, and for the L2 its hits, misses and write-backs."""
    t = table("memory levels", ["level", "read KiB", "write KiB", "lines hit", "missed", "written back",
                                "hit rate", "bandwidth use"])
    l2, dram = stats.memory["l2"], stats.memory["dram"]
    if l2 is not None:
        t.add_row(f"L2 {l2['capacity_bytes'] // 1024:,} KiB", _kb(l2["bytes"]), "", f"{l2['hits']:,}",
                  f"{l2['misses']:,}", f"{l2['write_backs']:,}", f"{100 * l2['hit_rate']:.1f} %", "")
    t.add_row("DRAM", _kb(dram["read_bytes"]), _kb(dram["write_bytes"]), "", "", "", "",
              f"{100 * dram['bandwidth_utilization']:.1f} %")
    t.caption = zvc_line(stats)
    return t


def zvc_line(stats: RunStats) -> str | None:
    """What zero-value compression moved, and whether the sizes were measured or estimated."""
    zvc = (stats.memory or {}).get("zvc")
    if not zvc:
        return None
    return (f"zero-value compression: {_kb(zvc['moved_bytes'])} KiB moved for {_kb(zvc['raw_bytes'])} KiB of "
            f"compressed tensors ({100 * zvc['moved_bytes'] / max(zvc['raw_bytes'], 1):.0f} %); sizes "
            + ("measured from the data" if zvc["sizes"] == "measured" else
               "estimated from the binary's densities (timing-only run)"))


def energy_table(stats: RunStats):
    t = table("energy by component", ["component", "nJ", "share"])
    total = stats.energy_total_pj or 1.0
    for name, pj in stats.energy_pj.items():
        t.add_row(name, f"{pj / 1e3:,.2f}", f"{100 * pj / total:.1f} %")
    return t


def summary_line(stats: RunStats) -> str:
    return (f"{stats.cycles:,} cycles = {stats.time_us:,.2f} us at {stats.clock_mhz:g} MHz on '{stats.arch}'; "
            f"{stats.energy_total_pj / 1e6:,.3f} uJ per inference")
