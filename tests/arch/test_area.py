"""The area table: counts of units times µm² per unit, derived by hand here."""
from __future__ import annotations

import dataclasses

import pytest

from sieve.arch import load_arch, with_overrides
from sieve.arch.config import AreaConfig

CELL = 0.346 * 8192 / 0.7            # µm² per KiB of SRAM: 6T cells at 70 % array efficiency


def test_default_area_by_hand():
    a = load_arch("default").area_mm2()
    assert a["mac"] == pytest.approx(16 * 16 * 419.0 / 1e6)                 # 0.107 mm²
    assert a["vector"] == pytest.approx(16 * 7837.0 / 1e6)
    assert a["scratchpad"] == pytest.approx(256 * CELL / 1e6)               # 1.04 mm²
    assert a["accumulator"] == pytest.approx(64 * CELL / 1e6)
    assert a["l2"] == 0
    assert a["total"] == pytest.approx(sum(v for k, v in a.items() if k != "total"))


def test_cores_and_l2_scale_the_area():
    one, four = load_arch("default").area_mm2(), load_arch("multicore").area_mm2()
    for part in ("mac", "vector", "scratchpad", "accumulator"):
        assert four[part] == pytest.approx(4 * one[part])
    assert four["l2"] == pytest.approx(1024 * CELL / 1e6)


@pytest.mark.parametrize("key,part", [("mac_um2", "mac"), ("vector_lane_um2", "vector"),
                                      ("sram_um2_per_kib", "scratchpad"), ("l2_um2_per_kib", "l2")])
def test_each_area_figure_prices_its_component(key, part):
    base = load_arch("multicore")
    other = with_overrides(base, {f"area.{key}": 77.0})
    assert other.area_mm2()[part] != base.area_mm2()[part]
    assert other.fingerprint() == base.fingerprint()            # area is not what instructions see


def test_every_area_field_has_a_case():
    assert {f.name for f in dataclasses.fields(AreaConfig)} == {"mac_um2", "vector_lane_um2", "sram_um2_per_kib",
                                                                "l2_um2_per_kib"}


def test_negative_area_is_an_error():
    from sieve.arch import ArchError
    with pytest.raises(ArchError, match="area.mac_um2"):
        with_overrides(load_arch("default"), {"area.mac_um2": -1.0})
