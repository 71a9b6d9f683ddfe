"""Files a command reads and writes: no output may overwrite an input, every output is written
atomically (a temporary file in the same folder, renamed into place), and an output whose
extension names another format is refused before any work is done."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from sieve.errors import UsageError

FORMATS = {".sieve": "a Sieve binary", ".onnx": "an ONNX model", ".sv": "a Sieve text model",
           ".npz": "an array archive", ".npy": "an array", ".json": "JSON", ".toml": "an arch file",
           ".s": "assembly text", ".png": "an image", ".parquet": "a table"}
_WEIGHTS = re.compile(r'^\s*weights\s+("(?:[^"\\]|\\.)*")', re.M)


def model_files(path: str | Path) -> list[Path]:
    """The files a model is read from: the model, and the weights file a .sv model names."""
    path = Path(path)
    files = [path]
    if path.suffix == ".sv":
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return files
        for m in _WEIGHTS.finditer(text):
            try:
                side = Path(json.loads(m.group(1)))
            except ValueError:
                continue
            files.append(side if side.is_absolute() else path.parent / side)
    return files


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(path: str | Path | None, option: str, suffixes: tuple[str, ...], inputs: Iterable[Path] = (),
                 hints: dict[str, str] | None = None) -> Path | None:
    """Refuse an output that would overwrite an input, or whose extension names another format
    (``hints``: extension -> what the user probably wants instead)."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        other = FORMATS.get(path.suffix.lower())
        what = f"'{path.suffix}' is the extension of {other}" if other else \
            f"'{path.suffix or '(none)'}' is not its extension"
        hint = (hints or {}).get(path.suffix.lower())
        raise UsageError(f"{path}: {option} writes {FORMATS.get(suffixes[0], suffixes[0])} "
                         f"({', '.join(suffixes)}); {what}" + (f" (hint: {hint})" if hint else ""))
    for src in inputs:
        if _same(path, Path(src)):
            raise UsageError(f"{path}: {option} would overwrite an input of this command; choose another name")
    if path.is_dir():
        raise UsageError(f"{path}: {option} names a folder, not a file")
    return path


def check_distinct(*paths: Path | None) -> None:
    """Two outputs of one command may not be the same file."""
    seen: list[Path] = []
    for p in paths:
        if p is None:
            continue
        if any(_same(p, q) or p == q for q in seen):
            raise UsageError(f"{p}: named for two outputs of this command")
        seen.append(p)


@contextlib.contextmanager
def atomic(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error it is
    removed, so an interrupted command leaves the old file (or none), never a partial one."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{path}: folder '{parent}' does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    except OSError as err:
        raise UsageError(f"{path}: cannot write in folder '{parent}': {err.strerror}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise UsageError(f"{path}: cannot write: {err.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())
