"""Gradual magnitude pruning during training (PyTorch, the optional `torch` extra), then Sieve.

    python examples/prune_digits.py [OUT_DIR]

Trains a small CNN on sklearn's bundled 8x8 digits, pruning conv/linear weights by magnitude
on a cubic schedule (Zhu and Gupta 2017) up to each target sparsity, exports each model to
ONNX, and compares top-1 on held-out digits: float, and int8 compiled and simulated by Sieve.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def make_net():
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def train(x, y, target: float = 0.0, epochs: int = 30, seed: int = 0, keep_first: bool = True):
    """Train the CNN; with target > 0, prune gradually (cubic schedule over the first 2/3 of training)."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    net = make_net()
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if keep_first:
        layers = layers[1:]                                   # the 144-weight first conv stays dense
    return fit(net, [m.weight for m in layers], x, y, target, epochs)


def nm_mask(w, n: int, m: int, image=None):
    """Keep the n largest of every m weights along the accelerator's reduction order: a conv's input
    channels at each kernel tap; a Linear's features, or (``image`` = (C, H, W) of the flattened input it
    reads) the channels at each pixel, as Sieve stores images channels-last."""
    import torch
    k = w.shape[0]
    if w.dim() == 4:
        v = w.detach().permute(0, 2, 3, 1)                     # [K][kh][kw][C]
    elif image is not None:
        v = w.detach().reshape(k, *image).permute(0, 2, 3, 1)  # [K][H][W][C]
    else:
        v = w.detach().reshape(k, 1, 1, -1)
    blocks = v.abs().reshape(*v.shape[:-1], v.shape[-1] // m, m)
    keep = torch.zeros_like(blocks)
    keep.scatter_(-1, blocks.topk(n, dim=-1).indices, 1.0)
    keep = keep.reshape(v.shape)
    if w.dim() == 4 or image is not None:
        keep = keep.permute(0, 3, 1, 2)
    return keep.reshape(w.shape)


def fit(net, weights, x, y, target: float = 0.0, epochs: int = 30, lr: float = 3e-3, teacher=None,
        temperature: float = 4.0, alpha: float = 0.7, nm=None, images=None):
    """Adam on cross-entropy; with target > 0 each of ``weights`` is pruned by magnitude to a sparsity that
    rises on a cubic schedule (Zhu and Gupta 2017) over the first 2/3 of the epochs, the mask kept between
    re-prunings. With ``nm`` = (N, M) the weights are pruned N:M instead (``nm_mask``, ``images`` giving
    the (C, H, W) a Linear reads, by index in ``weights``): dense for the first third of the epochs, then
    the mask recomputed from the magnitudes every epoch (as NVIDIA's ASP recipe prunes and retrains). With a
    ``teacher`` the loss is distillation (Hinton et al. 2015): ``alpha`` x the KL divergence to the
    teacher's soft labels at ``temperature`` (times its square) plus the rest x cross-entropy. Returns the
    net in eval mode."""
    import torch
    from torch import nn
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    masks = [torch.ones_like(w) for w in weights]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    if teacher is not None:
        with torch.no_grad():
            soft = nn.functional.log_softmax(teacher.eval()(xt) / temperature, dim=1)

    def loss(idx):
        logits = net(xt[idx])
        hard = nn.functional.cross_entropy(logits, yt[idx])
        if teacher is None:
            return hard
        kl = nn.functional.kl_div(nn.functional.log_softmax(logits / temperature, dim=1), soft[idx],
                                  log_target=True, reduction="batchmean")
        return alpha * temperature ** 2 * kl + (1 - alpha) * hard

    ramp = max(1, 2 * epochs // 3)
    for epoch in range(epochs):
        net.train()
        sparsity = target * (1 - (1 - min(epoch + 1, ramp) / ramp) ** 3)
        for i, (w, mask) in enumerate(zip(weights, masks)):   # re-prune to this epoch's sparsity
            if nm is not None:
                if epoch >= epochs // 3:
                    mask.copy_(nm_mask(w, *nm, (images or {}).get(i)))
                continue
            a = w.detach().abs().flatten()
            k = int(sparsity * a.numel())
            if k:
                mask.copy_((w.detach().abs() > a.kthvalue(k).values).float())
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss(idx).backward()
            opt.step()
            with torch.no_grad():
                for w, mask in zip(weights, masks):
                    w.mul_(mask)
    return net.eval()


def export(net, path: Path) -> Path:
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), path, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"])
    return path


def sieve_top1(onnx_path: Path, x_cal, x_test, y_test, arch: str = "default") -> tuple[float, float]:
    """(float top-1, int8 top-1 of the Sieve-compiled binary on the simulator)."""
    import sieve
    f = sieve.interpret(onnx_path, x_test, float_model=True).floats
    result = sieve.simulate(sieve.compile(onnx_path, arch, calibrate=x_cal, dense_twin=False), x_test)
    top1 = lambda outputs: float((next(iter(outputs.values())).argmax(1) == y_test).mean())  # noqa: E731
    return top1(f), top1(result.floats)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    x, y = digits()
    print("target  float   int8 (Sieve)")
    for target in (0.0, 0.5, 0.75, 0.9):
        net = train(x[:1400], y[:1400], target)
        f, q = sieve_top1(export(net, out / f"digits_{int(target * 100)}.onnx"), x[:200], x[1400:], y[1400:])
        print(f"{target:6.2f}  {100 * f:5.1f} %  {100 * q:5.1f} %")


if __name__ == "__main__":
    main()
