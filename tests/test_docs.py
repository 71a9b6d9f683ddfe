"""The docs match the code: every ISA field, event and arch key is documented."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from arch.config import ArchConfig, CoreConfig, EnergyConfig, MemoryConfig
from arch.isa import FIELDS
from simulator.events import EVENTS
from simulator.energy import COMPONENTS

DOCS = Path(__file__).parent.parent / "docs"


def test_isa_doc_lists_every_field_with_its_bits():
    text = (DOCS / "isa.md").read_text()
    from arch.isa import HEADER_BITS
    for op, fields in FIELDS.items():
        assert f"### {op.name.lower()} (opcode {int(op)}," in text
        pos = HEADER_BITS
        section = text.split(f"### {op.name.lower()} (opcode")[1].split("###")[0]
        for name, _, bits in fields:
            assert f"| `{name}` | {pos}–{pos + bits - 1} |" in section, (op, name)
            pos += bits


def test_stats_doc_lists_every_event_and_component():
    text = (DOCS / "stats.md").read_text()
    for name in EVENTS + COMPONENTS:
        assert f"`{name}`" in text, name


def test_arch_doc_lists_every_key():
    text = (DOCS / "arch.md").read_text()
    for cls, prefix in ((CoreConfig, "core."), (MemoryConfig, "memory."), (EnergyConfig, "")):
        for f in dataclasses.fields(cls):
            assert f.name in text, prefix + f.name
    for f in dataclasses.fields(ArchConfig):
        if f.name not in ("core", "memory", "energy"):
            assert f"`{f.name}`" in text
