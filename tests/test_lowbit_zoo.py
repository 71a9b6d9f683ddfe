"""Every zoo model at int4, forced into each weight format (dense, unstructured, N:M), with and without
scale groups: the simulator equals the reference interpreter bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from sieve.arch import load_arch
from sieve.arch.formats import DENSE, NM, UNSTRUCTURED
from sieve.frontend.zoo import build
from sieve.pipeline import integer_model
from sieve.scheduler import schedule
from tests.helpers import check_bitexact, random_calibration

ZOO_KWARGS = {"bert_tiny": {"size": 16}, "fsrcnn": {"size": 24},
              "mobilenetv2": {"size": 32, "classes": 10}, "resnet18": {"size": 32, "classes": 10},
              "resnet50": {"size": 32, "classes": 10}, "vgg16": {"size": 32, "classes": 10},
              "efficientnet_b0": {"size": 32, "classes": 10}, "mobilenetv3": {"size": 32, "classes": 10},
              "yolo_like": {"size": 32}, "vit_tiny": {"size": 32}}
# every zoo model in every int4 format, with and without scale groups; the largest within the time of
# `make test`: ResNet-50 without groups (they double its time; the rest covers them), VGG-16 (19 M weights
# at 32x32) in N:M only, BERT-base (85 M) left to BERT-Tiny, the same ops
ZOO_CASES = [(name, prune, want, group) for name in ("lenet5", "mlp", "resnet18", "resnet50", "mobilenetv2",
                                                      "fsrcnn", "efficientnet_b0", "mobilenetv3", "yolo_like",
                                                      "bert_tiny", "vit_tiny")
             for prune, want in ((None, DENSE), ("0.9", UNSTRUCTURED), ("2:4", NM)) for group in (0, 8)
             if not (group and name == "resnet50")]
ZOO_CASES.append(("vgg16", "2:4", NM, 0))


def _int4_model(name: str, prune, group: int):
    kwargs = ZOO_KWARGS.get(name, {})
    g = build(name, **kwargs)
    rng = np.random.default_rng(5)
    q = integer_model(g, calibrate=random_calibration(g, rng, 4), prune=prune, weights="int4", group=group).qgraph
    return q, random_calibration(g, rng, 1)


@pytest.mark.parametrize("name,prune,want,group", ZOO_CASES)
def test_int4_zoo_models_are_bitexact(name, prune, want, group):
    """Every zoo model family at int4, forced into each format where a layer can take it: the simulator
    equals the reference bit for bit."""
    q, x = _int4_model(name, prune, group)
    arch = load_arch("default")
    sched = schedule(q, arch, formats=(want,))
    fmts = {p.geom.fmt for p in sched.layers if p.geom is not None and q[p.node].attrs.get("w_bits") == 4}
    assert fmts and all(f.bits == 4 for f in fmts)
    assert any(f.kind == want for f in fmts), fmts
    if group:
        assert any(f.group == group for f in fmts)
    check_bitexact(q, arch, x, formats=(want,))
