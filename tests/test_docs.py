"""The docs match the code: every ISA field, event and arch key is documented."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from sieve.arch.config import ArchConfig, AreaConfig, CoreConfig, EnergyConfig, MemoryConfig
from sieve.simulator.events import EVENTS
from sieve.simulator.energy import COMPONENTS

DOCS = Path(__file__).parent.parent / "docs"


def test_isa_doc_lists_every_field_with_its_bits():
    from sieve.arch.isa import markdown_tables
    assert markdown_tables() in (DOCS / "isa.md").read_text(), "regenerate with: python -m sieve.arch.isa"


def test_stats_doc_lists_every_event_and_component():
    text = (DOCS / "stats.md").read_text()
    for name in EVENTS + COMPONENTS:
        assert f"`{name}`" in text, name


def test_arch_doc_lists_every_key():
    text = (DOCS / "arch.md").read_text()
    for cls, prefix in ((CoreConfig, "core."), (MemoryConfig, "memory."), (EnergyConfig, ""), (AreaConfig, "")):
        for f in dataclasses.fields(cls):
            assert f.name in text, prefix + f.name
    for f in dataclasses.fields(ArchConfig):
        if f.name not in ("core", "memory", "energy", "area"):
            assert f"`{f.name}`" in text
