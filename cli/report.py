"""Human-readable tables for the CLI (rich)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from simulator.stats import RunStats


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
