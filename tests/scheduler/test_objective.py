"""--objective (cycles, energy, edp): what each layer's weight format, tiling and partition minimize."""
from __future__ import annotations

import numpy as np
import pytest

from sieve.frontend.zoo import build
from sieve.pipeline import compile_model
from sieve.scheduler import ScheduleError, schedule
from sieve.simulator import run
from tests.helpers import random_calibration


def _compiled(name, prune, objective, weights="int8", **kw):
    g = build(name, **kw)
    cal = random_calibration(g, np.random.default_rng(0), 4)
    return compile_model(g, "default", calibrate=cal, prune=prune, objective=objective, weights=weights,
                         fusion="none")


@pytest.mark.parametrize("prune,weights", [("0.5", "int8"), ("0.9", "int8"), ("0.5", "int4")])
def test_energy_objective_never_picks_a_format_dearer_than_dense(prune, weights):
    """Measured by the simulator: with --objective energy, no layer's chosen format costs more energy than
    the same layer compiled dense (the dense twin); the total is no more than the cycles objective's."""
    totals = {}
    for objective in ("cycles", "energy"):
        c = _compiled("resnet18", prune, objective, weights, size=32, classes=10)
        stats = run(c.program, functional=False).stats
        by = {layer.name: layer for layer in stats.layers}
        dearer = [s.name for s in c.program.layers if s.dense_energy_pj and by[s.name].energy_total_pj > s.dense_energy_pj]
        totals[objective] = sum(stats.energy_pj.values())
        if objective == "energy":
            assert not dearer, dearer
    assert totals["energy"] <= totals["cycles"]


def test_the_plan_shows_what_the_other_choices_cost():
    c = _compiled("lenet5", "0.5", "energy")
    reasons = [p.reason for p in c.schedule.layers if p.kind == "matmul"]
    assert any("other choices: unstructured" in r and "µJ" in r for r in reasons), reasons
    assert all("cheapest energy estimate" in r for r in reasons)


def test_unknown_objective():
    g = build("lenet5")
    q = compile_model(g, "default", dense_twin=False).qgraph
    with pytest.raises(ScheduleError, match="unknown objective 'speed'"):
        schedule(q, __import__("sieve").arch.load_arch("default"), objective="speed")
