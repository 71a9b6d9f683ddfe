"""Human-readable tables for the CLI (rich)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sieve.simulator.stats import RunStats


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f}"


def stats_table(stats: RunStats, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col in ("layer", "op", "cycles", "util %", "MACs", "DRAM rd KiB", "DRAM wr KiB", "spad KiB",
                "energy nJ"):
        t.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for l in stats.layers:
        e = l.events
        t.add_row(l.name, l.op, f"{l.cycles:,}", f"{100 * l.utilization:.1f}", f"{l.macs:,}",
                  _kb(e["dram_read_bytes"]), _kb(e["dram_write_bytes"]),
                  _kb(e["spad_read_bytes"] + e["spad_write_bytes"]), f"{l.energy_total_pj / 1e3:,.1f}")
    e = stats.events
    t.add_section()
    t.add_row("total", "", f"{stats.cycles:,}", f"{100 * stats.utilization:.1f}", f"{stats.macs:,}",
              _kb(e["dram_read_bytes"]), _kb(e["dram_write_bytes"]),
              _kb(e["spad_read_bytes"] + e["spad_write_bytes"]), f"{stats.energy_total_pj / 1e3:,.1f}")
    return t


def energy_table(stats: RunStats) -> Table:
    t = Table(title="energy by component", title_justify="left")
    t.add_column("component")
    t.add_column("nJ", justify="right")
    t.add_column("share", justify="right")
    total = stats.energy_total_pj or 1.0
    for name, pj in stats.energy_pj.items():
        t.add_row(name, f"{pj / 1e3:,.2f}", f"{100 * pj / total:.1f} %")
    return t


def print_run_summary(console: Console, stats: RunStats, inferences: int) -> None:
    console.print(stats_table(stats, f"per layer, one inference on arch '{stats.arch}'"))
    console.print(energy_table(stats))
    console.print(f"{stats.cycles:,} cycles = {stats.time_us:,.2f} us at {stats.clock_mhz:g} MHz; "
                  f"{stats.energy_total_pj / 1e6:,.3f} uJ per inference; {inferences} inference(s) executed")


def sparsity_table(program, stats: RunStats) -> Table:
    """Per layer and in total: density, lane utilization, skipped MACs, and the dense twin."""
    t = Table(title="sparsity (dense twin: the same layer compiled dense on the same arch, simulated at "
                    "compile time)", title_justify="left")
    for col in ("layer", "weights", "density %", "lane util %", "skipped MACs", "MAC-array cycles",
                "dense MAC cycles", "cycles", "dense cycles", "speedup", "energy nJ", "dense nJ"):
        t.add_column(col, justify="left" if col in ("layer", "weights") else "right")
    syms = {s.name: s for s in program.layers}
    tot = {"macs": 0, "dense": 0, "lanes": 0, "mc": 0, "dmc": 0, "c": 0, "dc": 0, "e": 0.0, "de": 0.0}
    all_ref = True
    for layer in stats.layers:
        ev, sym = layer.events, syms[layer.name]
        if ev["dense_macs"] == 0:
            continue
        has_ref = sym.dense_cycles > 0 or sym.weight_format == "dense"
        dc = sym.dense_cycles or layer.cycles
        dmc = sym.dense_mac_cycles or layer.mac_cycles
        de = sym.dense_energy_pj or layer.energy_total_pj
        ref = (lambda v: v) if has_ref else (lambda v: "-")        # compiled with --no-twin
        all_ref = all_ref and has_ref
        t.add_row(layer.name, sym.weight_format, f"{100 * ev['macs'] / ev['dense_macs']:.1f}",
                  f"{100 * ev['macs'] / max(ev['lane_slots'], 1):.1f}", f"{ev['dense_macs'] - ev['macs']:,}",
                  f"{layer.mac_cycles:,}", ref(f"{dmc:,}"), f"{layer.cycles:,}", ref(f"{dc:,}"),
                  ref(f"{dc / max(layer.cycles, 1):.2f}x"), f"{layer.energy_total_pj / 1e3:,.1f}",
                  ref(f"{de / 1e3:,.1f}"))
        for key, v in (("macs", ev["macs"]), ("dense", ev["dense_macs"]), ("lanes", ev["lane_slots"]),
                       ("mc", layer.mac_cycles), ("dmc", dmc), ("c", layer.cycles), ("dc", dc),
                       ("e", layer.energy_total_pj), ("de", de)):
            tot[key] += v
    t.add_section()
    ref = (lambda v: v) if all_ref else (lambda v: "-")
    t.add_row("total", "", f"{100 * tot['macs'] / max(tot['dense'], 1):.1f}",
              f"{100 * tot['macs'] / max(tot['lanes'], 1):.1f}", f"{tot['dense'] - tot['macs']:,}",
              f"{tot['mc']:,}", ref(f"{tot['dmc']:,}"), f"{tot['c']:,}", ref(f"{tot['dc']:,}"),
              ref(f"{tot['dc'] / max(tot['c'], 1):.2f}x"), f"{tot['e'] / 1e3:,.1f}", ref(f"{tot['de'] / 1e3:,.1f}"))
    return t
