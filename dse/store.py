"""The result store: Parquet datasets of points and of their layers, appended part by part.

``OUT/points.parquet/`` and ``OUT/layers.parquet/`` are folders of part files (pandas and pyarrow
read a folder as one table). A part is written to a temporary name and renamed, so a killed
process leaves whole parts only; the layers of a batch are written before its points, so a stored
point always has its layers. Every row carries the point's ``key`` (a hash of model, options and
arch): resuming skips stored keys, and reading keeps one row per key (per key and layer).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class Store:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.points_dir = self.folder / "points.parquet"
        self.layers_dir = self.folder / "layers.parquet"

    def _parts(self, where: Path) -> list[Path]:
        return sorted(where.glob("part-*.parquet")) if where.is_dir() else []

    def done(self) -> set[str]:
        """Keys of the points already stored."""
        keys: set[str] = set()
        for part in self._parts(self.points_dir):
            keys.update(pq.read_table(part, columns=["key"]).column("key").to_pylist())
        return keys

    def append(self, points: list[dict], layers: list[dict]) -> None:
        if layers:
            self._write(self.layers_dir, layers)
        if points:
            self._write(self.points_dir, points)

    def _write(self, where: Path, rows: list[dict]) -> None:
        where.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = where / f".{name}.tmp"
        pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), tmp)
        os.replace(tmp, where / name)

    def points(self) -> pd.DataFrame:
        return _read(self._parts(self.points_dir), ["key"])

    def layers(self) -> pd.DataFrame:
        return _read(self._parts(self.layers_dir), ["key", "layer"])


def _read(parts: list[Path], unique: list[str]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame()
    frame = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    # a part whose values of a numeric column were all missing (an L2 hit rate without an L2) reads back as
    # objects: the column is numbers again, whichever points landed in which part
    for col in frame.columns[frame.dtypes == object]:
        values = frame[col].dropna()
        if len(values) and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
            frame[col] = pd.to_numeric(frame[col])
    frame = frame.drop_duplicates(subset=unique, keep="last")
    order = [c for c in ("point", "layer_index") if c in frame.columns]
    return (frame.sort_values(order, kind="stable") if order else frame).reset_index(drop=True)
