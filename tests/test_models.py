"""Whole models: bit-exact on both presets, and int8 accuracy on sklearn's bundled digits."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from sieve.arch import load_arch
from sieve.frontend import build
from sieve.ir import Graph, Op, run_float
from tests.helpers import PRESETS, check_bitexact, quantize, random_calibration


@pytest.mark.parametrize("model", ["mlp", "lenet5"])
@pytest.mark.parametrize("arch", PRESETS)
def test_zoo_model_bitexact(model, arch):
    rng = np.random.default_rng(7)
    g = build(model)
    q = quantize(g, random_calibration(g, rng, 32))
    result = check_bitexact(q, load_arch(arch), random_calibration(g, rng, 5))
    assert result.inferences == 5
    assert result.stats.macs == sum(l.macs for l in result.stats.layers)
    from sieve.ir import macs
    assert result.stats.macs == macs(q)


# ---------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    return x[:1400], d.target[:1400], x[1400:], d.target[1400:]


def _fit(features: np.ndarray, labels: np.ndarray, hidden: tuple[int, ...]) -> MLPClassifier:
    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(features, labels)
    return clf


def _with_dense_weights(g: Graph, names: list[str], clf: MLPClassifier) -> Graph:
    params = {n: {"w": w.T.astype(np.float32), "b": b.astype(np.float32)}
              for n, w, b in zip(names, clf.coefs_, clf.intercepts_)}
    return g.replace_nodes([n.evolve(params=params[n.name]) if n.name in params else n for n in g])


def _check_accuracy(g: Graph, calib: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> None:
    float_pred = run_float(g, {"x": x_test})["logits"].argmax(1)
    q = quantize(g, {"x": calib})
    for arch in PRESETS:
        result = check_bitexact(q, load_arch(arch), {"x": x_test})      # the simulator, bit-exact
        int_pred = result.floats["logits"].argmax(1)
        float_acc, int_acc = (float_pred == y_test).mean(), (int_pred == y_test).mean()
        assert float_acc > 0.9, float_acc
        assert (int_pred == float_pred).mean() >= 0.97
        assert int_acc >= float_acc - 0.02, (float_acc, int_acc)


def test_mlp_on_digits(digits):
    x_train, y_train, x_test, y_test = digits
    clf = _fit(x_train.reshape(-1, 64), y_train, (128, 64))
    g = _with_dense_weights(build("mlp"), ["fc1", "fc2", "logits"], clf)
    _check_accuracy(g, x_train[:200].reshape(-1, 64), x_test.reshape(-1, 64), y_test)


def test_lenet5_on_digits(digits):
    """Seeded conv layers as a fixed feature extractor; the three dense layers trained here."""
    x_train, y_train, x_test, y_test = digits
    up = lambda x: np.kron(x, np.ones((4, 4), np.float32))[:, None]          # 8x8 -> 1x32x32
    g = build("lenet5")
    feats = run_float(g, {"x": up(x_train)}, keep_all=True)["flatten"]
    clf = _fit(feats, y_train, (120, 84))
    g = _with_dense_weights(g, ["fc3", "fc4", "logits"], clf)
    assert [n.op for n in g].count(Op.CONV2D) == 2
    _check_accuracy(g, up(x_train[:200]), up(x_test), y_test)


@pytest.mark.parametrize("model", ["resnet18", "resnet50", "mobilenetv2", "vgg16", "efficientnet_b0", "mobilenetv3",
                                   "yolo_like"])
def test_onnx_zoo_model_bitexact_at_small_size(model):
    """The ImageNet zoo models, built as ONNX and imported, at 32x32: simulator == reference."""
    rng = np.random.default_rng(3)
    g = build(model, size=32, classes=10)
    q = quantize(g, random_calibration(g, rng, 4))
    result = check_bitexact(q, load_arch("default"), random_calibration(g, rng, 1))
    from sieve.ir import macs
    assert result.stats.macs == macs(q)
    assert len(np.unique(result.outputs[q.outputs[0]])) > 1


def test_calibration_from_a_folder_of_images(tmp_path):
    from PIL import Image

    from sieve.data import calibration_inputs
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3)).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    g = build("resnet18", size=32, classes=10)
    cal = calibration_inputs({n.name: n.out.shape for n in g.inputs}, tmp_path)
    x = cal[g.inputs[0].name]
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.float32
    # ImageNet normalization: a [0, 1] pixel maps into [(0 - mean) / std, (1 - mean) / std]
    assert x.min() >= (0 - 0.485) / 0.229 - 1e-5 and x.max() <= (1 - 0.406) / 0.225 + 1e-5
    img = np.asarray(Image.open(tmp_path / "img0.png").convert("RGB"), np.float32)
    assert abs(x[0, 0].mean() - ((img[..., 0] / 255).mean() - 0.485) / 0.229) < 0.1
