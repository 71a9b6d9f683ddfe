"""Reading .npy and .npz files that a user gives (weights side files, inputs, calibration data):
every way such a file can be wrong is one FrontendError naming it, and the file is always closed."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from sieve.frontend.errors import FrontendError


def load_arrays(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """One array (.npy) or arrays by name (.npz); pickled objects are refused (never unpickled)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(6) not in (b"\x93NUMPY",) and not f.seek(0) and f.read(2) != b"PK":
                raise FrontendError("cannot read array file: not a .npy or .npz file", str(path))
            f.seek(0)
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            arrays = {k: loaded[k] for k in loaded.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise FrontendError("holds Python objects, not numbers (Sieve does not unpickle)", str(path)) from None
        raise FrontendError(f"cannot read array file: {err}", str(path)) from None
    except OSError as err:
        raise FrontendError(f"cannot read: {err.strerror or err}", str(path)) from None
    except (EOFError, zipfile.BadZipFile, KeyError, zlib.error, NotImplementedError) as err:
        raise FrontendError(f"cannot read array file: {err or type(err).__name__}", str(path)) from None
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):
            raise FrontendError(f"member '{k}' is not a .npy array", str(path))
    return arrays
