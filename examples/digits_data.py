"""Write sklearn's bundled 8x8 digits as LeNet-sized inputs (1x32x32, values 0..1).

    python examples/digits_data.py OUT_DIR      -> digit.npy (one image), calib.npy (64 images),
                                                   digits_test.npz (x, y: 200 held-out images)
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def lenet_inputs(images: np.ndarray) -> np.ndarray:
    """[N, 8, 8] in 0..16 -> [N, 1, 32, 32] in 0..1 (each pixel repeated 4x4)."""
    x = np.kron(images / 16.0, np.ones((4, 4)))
    return x[:, None].astype(np.float32)


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    x, y = lenet_inputs(digits.images), digits.target
    np.save(out / "digit.npy", x[1500:1501])
    np.save(out / "calib.npy", x[:64])
    np.savez(out / "digits_test.npz", x=x[1597:], y=y[1597:])
    print(f"wrote digit.npy (label {y[1500]}), calib.npy, digits_test.npz to {out}")


if __name__ == "__main__":
    main()
