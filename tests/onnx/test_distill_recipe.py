"""The recipe example (examples/distill_digits.py): teacher, student, distilled, pruned, int4 — each
compiled and simulated, with what each lever buys on the accelerator."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")


def _recipe():
    path = Path(__file__).parents[2] / "examples" / "distill_digits.py"
    spec = importlib.util.spec_from_file_location("distill_digits", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_distill_prune_int4_recipe_table(tmp_path):
    recipe = _recipe()
    rows = {r["model"]: r for r in recipe.table(recipe.models(epochs=15), tmp_path)}
    teacher, alone = rows["teacher"], rows["student, trained alone"]
    distilled, pruned = rows["student, distilled"], rows["distilled, pruned 75 %"]
    int4 = rows["distilled, pruned 75 %, int4"]
    # the levers in hardware: a smaller net, its zeros, its 4-bit values each shrink the binary
    assert teacher["constants_bytes"] > distilled["constants_bytes"] > pruned["constants_bytes"] \
        > int4["constants_bytes"]
    assert distilled["constants_bytes"] == alone["constants_bytes"]
    assert pruned["nonzero"] <= 0.3 * pruned["weights"] + 200          # 75 % of all but the first conv
    assert teacher["cycles"] > distilled["cycles"] and teacher["energy_uj"] > distilled["energy_uj"]
    assert int4["energy_uj"] < pruned["energy_uj"]
    for r in rows.values():                                           # every model learned the digits
        assert r["float_top1"] > 0.9
        assert r["sieve_top1"] >= r["float_top1"] - (0.03 if r["bits"] == "int4" else 0.02)
    text = recipe.markdown(list(rows.values()))
    assert text.count("\n") == 2 + len(rows) and "| teacher |" in text
