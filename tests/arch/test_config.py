from __future__ import annotations

import pytest

from sieve.arch import ArchError, load_arch, preset_names, with_overrides
from sieve.arch.config import sram_pj_per_byte


def test_presets_load_and_validate():
    assert {"default", "edge"} <= set(preset_names())
    d = load_arch("default")
    assert (d.core.pe_rows, d.core.simd_lanes, d.core.scratchpad_bytes) == (16, 16, 256 * 1024)
    assert d.acc_entries == 65536 // 4
    e = load_arch("edge")
    assert e.core.pe_rows * e.core.simd_lanes == 64


def test_sram_energy_follows_horowitz_points():
    # 64-bit read: 10 pJ at 8 KB, 20 pJ at 32 KB, ~100 pJ at 1 MB
    assert sram_pj_per_byte(8192) * 8 == pytest.approx(10)
    assert sram_pj_per_byte(32768) * 8 == pytest.approx(20)
    assert 90 < sram_pj_per_byte(1 << 20) * 8 < 120
    assert load_arch("default").energy_table.spad_pj_per_byte == pytest.approx(sram_pj_per_byte(256 * 1024))


def test_fingerprint_sees_core_not_memory():
    d = load_arch("default")
    assert with_overrides(d, {"memory.dram_bytes_per_cycle": 2.0}).fingerprint() == d.fingerprint()
    assert with_overrides(d, {"core.pe_rows": 8}).fingerprint() != d.fingerprint()
    # what bounds or shapes instructions changes it; what only changes their duration does not
    for key, value in (("cores", 2), ("core.simd_lanes", 8), ("core.scratchpad_bytes", 65536),
                       ("core.accumulator_bytes", 16384)):
        assert with_overrides(d, {key: value}).fingerprint() != d.fingerprint(), key
    for key, value in (("core.scratchpad_banks", 2), ("core.scratchpad_port_bytes", 4), ("core.vector_lanes", 4),
                       ("core.matmul_fill_cycles", 20), ("core.vector_fill_cycles", 9),
                       ("core.weights_double_buffered", False), ("core.vector_own_path", True), ("clock_mhz", 500.0)):
        assert with_overrides(d, {key: value}).fingerprint() == d.fingerprint(), key


def _write(tmp_path, text):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text,match", [
    ("[core]\npe_row = 4\n", r"bad.toml: unknown key 'core.pe_row'.*did you mean 'pe_rows'"),
    ("colors = 3\n", r"unknown key 'colors'"),
    ("[core]\npe_rows = \"16\"\n", r"key 'core.pe_rows' must be int"),
    ("[core]\npe_rows = 0\n", r"key 'core.pe_rows' must be in 1..256"),
    ("cores = 65\n", r"key 'cores' must be in 1..64"),
    ("[memory]\nl2_line_bytes = 48\n", r"memory.l2_line_bytes' must be a power of two"),
    ("[memory]\ndram_bytes_per_cycle = -1\n", r"dram_bytes_per_cycle' must be in 0.000976562..1.04858e\+06"),
    # values that pass a sign check and overflow the simulator: refused with the range
    ("[memory]\ndram_latency_cycles = 4611686018427387904\n", r"dram_latency_cycles' must be in 0..16777216"),
    ("[memory]\ndram_bytes_per_cycle = 5e-324\n", r"dram_bytes_per_cycle' must be in"),
    ("[energy]\nmac_pj = inf\n", r"energy.mac_pj' must be in 0..1e\+09, got inf"),
    ("clock_mhz = inf\n", r"clock_mhz' must be in"),
    ("clock_mhz = nan\n", r"clock_mhz' must be in"),
    ("[memory]\nl2_bytes = 1099511627776\n", r"l2_bytes' must be in 0..1073741824"),
    ("cores = " + "9" * 5000 + "\n", r"bad.toml: malformed TOML"),
    ("[core\npe_rows = 4\n", r"bad.toml: malformed TOML"),
    ("core = 3\n", r"'core' must be a table"),
])
def test_bad_toml_is_one_clear_error(tmp_path, text, match):
    with pytest.raises(ArchError, match=match):
        load_arch(_write(tmp_path, text))


def test_unknown_preset_lists_presets():
    with pytest.raises(ArchError, match="presets: cores16, default, edge, multicore"):
        load_arch("nonesuch")


def test_partial_file_takes_defaults(tmp_path):
    a = load_arch(_write(tmp_path, "name = 'x'\n[core]\npe_rows = 4\n"))
    assert a.core.pe_rows == 4 and a.core.simd_lanes == 16
