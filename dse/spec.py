"""A sweep specification: models x pruning x partitions x points of an arch space.

A spec is a TOML file (or the same keys as a dict) with the models, the options and a ``[space]``
table of arch fields, each a list of values, a ``range``, or a random distribution; optional
constraints drop points. Every error is one ``SpecError`` naming the file and the key. The
points are plain dicts of arch overrides (``"memory.l2_bytes": 1048576``) applied to the base arch.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import itertools
import json
import math
import operator
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sieve.arch.config import ArchConfig, ArchError, CoreConfig, EnergyConfig, MemoryConfig, load_arch, with_overrides
from sieve.frontend.zoo import ZOO


class SpecError(Exception):
    def __init__(self, message: str, source: str = "", hint: str = ""):
        text = f"{source}: {message}" if source else message
        super().__init__(text + (f" (hint: {hint})" if hint else ""))


# every arch field a space may name, with its type
FIELDS: dict[str, type] = {"cores": int, "clock_mhz": float}
for _section, _cls in (("core", CoreConfig), ("memory", MemoryConfig), ("energy", EnergyConfig)):
    FIELDS.update({f"{_section}.{f.name}": type(f.default) for f in dataclasses.fields(_cls)})
DISTRIBUTIONS = ("uniform", "log_uniform", "choice")
# what constraints may use besides the fields: the arch's area and its on-chip SRAM
DERIVED = {"area_mm2": lambda a: a.area_mm2()["total"],
           "sram_bytes": lambda a: a.cores * (a.core.scratchpad_bytes + a.core.accumulator_bytes) + a.memory.l2_bytes}
MODES = ("timing", "bitexact")
TOP = ("models", "size", "calibrate", "prune", "partition", "arch", "mode", "samples", "seed", "constraints",
       "space", "name")


@dataclass(frozen=True)
class Axis:
    """One arch field of the space: a list of values (a grid axis) or a distribution (random points)."""
    key: str
    values: tuple = ()
    dist: str = ""                 # "uniform", "log_uniform" (random points only), "" for values
    low: float = 0.0
    high: float = 0.0

    def draw(self, rng: np.random.Generator) -> Any:
        if not self.dist:
            return self.values[int(rng.integers(len(self.values)))]
        x = rng.uniform(self.low, self.high) if self.dist == "uniform" else \
            math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return int(round(x)) if FIELDS[self.key] is int else float(x)


@dataclass(frozen=True)
class Spec:
    models: tuple[str, ...]                     # zoo names or absolute file paths
    arch: ArchConfig                            # the base every point overrides
    axes: tuple[Axis, ...] = ()
    prune: tuple = (None,)                      # None, a fraction, or "N:M"
    partition: tuple[str, ...] = ("auto",)
    mode: str = "timing"
    samples: int = 0                            # 0: the full grid; else this many random points
    seed: int = 0
    size: int | None = None                     # input resolution of the zoo's ImageNet models
    calibrate: str | None = None                # a calibration file (absolute path)
    constraints: tuple[str, ...] = ()
    name: str = "sweep"
    source: str = "<dict>"
    _checks: tuple = field(default=(), repr=False, compare=False)

    def points(self) -> list[dict[str, Any]]:
        """The arch overrides of every point that meets the constraints, in a fixed order."""
        if self.samples == 0:
            grid = itertools.product(*(a.values for a in self.axes))
            out = [dict(zip((a.key for a in self.axes), combo)) for combo in grid]
            return [p for p in out if self._meets(p)]
        rng = np.random.default_rng(self.seed)
        out, seen, tries = [], set(), 0
        while len(out) < self.samples:
            tries += 1
            if tries > 100 * self.samples + 1000:
                raise SpecError(f"found only {len(out)} of {self.samples} random points that meet the constraints "
                                "after many draws", self.source, "loosen the constraints or draw fewer samples")
            p = {a.key: a.draw(rng) for a in self.axes}
            frozen = json.dumps(p, sort_keys=True)
            if frozen in seen or not self._meets(p):
                continue
            seen.add(frozen)
            out.append(p)
        return out

    def _meets(self, point: dict[str, Any]) -> bool:
        if not self._checks:
            return True
        values = {k: getattr_dotted(self.arch, k) for k in FIELDS}
        values.update(point)
        if any(_dotted(n) in DERIVED for tree in self._checks for n in ast.walk(tree) if isinstance(n, ast.Name)):
            try:
                arch = point_arch(self, point)
            except ArchError:
                return True                      # kept: recorded as an invalid arch
            values.update({k: f(arch) for k, f in DERIVED.items()})
        return all(_evaluate(tree, values) for tree in self._checks)


def getattr_dotted(arch: ArchConfig, key: str) -> Any:
    obj = arch
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise SpecError(f"cannot read: {err.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text", str(path)) from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as err:
        raise SpecError(f"malformed TOML: {err}", str(path)) from None
    return spec_from_dict(data, str(path), path.parent)


def spec_from_dict(data: dict, source: str = "<dict>", base: Path | None = None) -> Spec:
    """Validate the keys of a spec (see docs/sweeps.md); relative files are found from ``base``."""
    base = base or Path.cwd()
    for key in data:
        if key not in TOP:
            raise SpecError(f"unknown key '{key}'", source, f"known keys: {', '.join(TOP)}")
    models = _list(data.get("models"), "models", source, str)
    if not models:
        raise SpecError("'models' must name at least one model (a zoo name or a model file)", source)
    resolved = []
    for m in models:
        if m in ZOO:
            resolved.append(m)
            continue
        p = (base / m).resolve()
        if not p.is_file():
            raise SpecError(f"model '{m}' is neither a zoo model nor a file", source,
                            f"zoo models: {', '.join(ZOO)}")
        resolved.append(str(p))
    try:
        arch = load_arch(_typed(data.get("arch", "default"), str, "arch", source)
                         if not str(data.get("arch", "default")).endswith(".toml")
                         else str((base / data["arch"]).resolve()))
    except ArchError as err:
        raise SpecError(f"arch: {err}", source) from None
    prune = tuple(_prune(v, source) for v in _list(data.get("prune", ["none"]), "prune", source))
    partition = tuple(_list(data.get("partition", ["auto"]), "partition", source, str))
    from sieve.scheduler.partition import PARTITIONS
    for p in partition:
        if p not in PARTITIONS:
            raise SpecError(f"unknown partition '{p}'", source, f"choose from {', '.join(PARTITIONS)}")
    mode = _typed(data.get("mode", "timing"), str, "mode", source)
    if mode not in MODES:
        raise SpecError(f"key 'mode' must be one of {', '.join(MODES)}, got '{mode}'", source)
    samples = _typed(data.get("samples", 0), int, "samples", source)
    seed = _typed(data.get("seed", 0), int, "seed", source)
    if samples < 0:
        raise SpecError("key 'samples' must not be negative", source)
    size = data.get("size")
    if size is not None and (_typed(size, int, "size", source) < 8 or size > 1024):
        raise SpecError(f"key 'size' must be 8..1024, got {size}", source)
    calibrate = data.get("calibrate")
    if calibrate is not None:
        calibrate = str((base / _typed(calibrate, str, "calibrate", source)).resolve())
        if not Path(calibrate).exists():
            raise SpecError(f"calibration data '{data['calibrate']}' not found", source)
    axes = tuple(_axes(data.get("space", {}), source))
    if samples == 0 and any(a.dist for a in axes):
        key = next(a.key for a in axes if a.dist)
        raise SpecError(f"space key '{key}' is a random distribution, which needs 'samples' > 0", source)
    constraints = tuple(_list(data.get("constraints", []), "constraints", source, str))
    checks = tuple(_parse_constraint(c, source) for c in constraints)
    name = _typed(data.get("name", "sweep"), str, "name", source)
    return Spec(tuple(resolved), arch, axes, prune, partition, mode, samples, seed, size, calibrate, constraints,
                name, source, checks)


def _typed(value: Any, want: type, key: str, source: str) -> Any:
    if want is int and isinstance(value, bool) or not isinstance(value, want):
        raise SpecError(f"key '{key}' must be {want.__name__}, got {value!r}", source)
    return value


def _list(value: Any, key: str, source: str, kind: type | None = None) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    if kind is not None:
        for v in value:
            _typed(v, kind, key, source)
    return value


def _prune(value: Any, source: str):
    if value in ("none", None, 0, 0.0):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1:
        return float(value)
    if isinstance(value, str) and ":" in value:
        n, _, m = value.partition(":")
        if n.isdigit() and m.isdigit() and 0 < int(n) < int(m):
            return value
    raise SpecError(f"prune value {value!r} is not 'none', a fraction in (0, 1) or 'N:M'", source)


def _flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not (set(value) & {"range", *DISTRIBUTIONS}):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _axes(space: Any, source: str):
    if not isinstance(space, dict):
        raise SpecError("'space' must be a table of arch fields", source)
    for key, value in _flatten(space).items():
        where = f"space key '{key}'"
        if key not in FIELDS:
            import difflib
            close = difflib.get_close_matches(key, list(FIELDS), n=1)
            raise SpecError(f"{where} is not an arch field", source,
                            f"did you mean '{close[0]}'?" if close else "fields are written 'memory.l2_bytes'")
        want = FIELDS[key]
        if isinstance(value, dict):
            if len(value) != 1:
                raise SpecError(f"{where} must have one of range, {', '.join(DISTRIBUTIONS)}", source)
            (kind, args), = value.items()
            if kind == "range":
                if not (isinstance(args, list) and len(args) == 3 and all(isinstance(a, (int, float)) for a in args)
                        and args[2] > 0):
                    raise SpecError(f"{where}: range is [start, stop, step] with step > 0, stop exclusive", source)
                values = tuple(np.arange(*args).tolist())
                yield Axis(key, tuple(_value(v, want, where, source) for v in values))
            elif kind == "choice":
                yield Axis(key, tuple(_value(v, want, where, source) for v in _list(args, key, source)))
            else:
                if not (isinstance(args, list) and len(args) == 2 and all(isinstance(a, (int, float)) for a in args)
                        and args[0] < args[1] and (kind == "uniform" or args[0] > 0)):
                    raise SpecError(f"{where}: {kind} is [low, high] with low < high"
                                    + (" and low > 0" if kind == "log_uniform" else ""), source)
                if want is bool or want is str:
                    raise SpecError(f"{where}: a {want.__name__} field takes a list of values", source)
                yield Axis(key, (), kind, float(args[0]), float(args[1]))
        else:
            values = _list(value, key, source)
            if not values:
                raise SpecError(f"{where} has no values", source)
            yield Axis(key, tuple(_value(v, want, where, source) for v in values))


def _value(v: Any, want: type, where: str, source: str) -> Any:
    if want is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if want is int and isinstance(v, float) and v.is_integer():
        return int(v)
    if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
        raise SpecError(f"{where}: {v!r} is not {want.__name__}", source)
    return v


# constraints: arithmetic and comparisons over arch fields, parsed once, evaluated without eval()
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}


def _parse_constraint(text: str, source: str):
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise SpecError(f"constraint '{text}' is not an expression", source) from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = _dotted(node)
            section = isinstance(node, ast.Name) and name in ("core", "memory", "energy")
            if name not in FIELDS and name not in DERIVED and not section:
                raise SpecError(f"constraint '{text}' names '{name}', which is not an arch field", source)
        elif not isinstance(node, (ast.BinOp, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Constant, ast.operator,
                                   ast.cmpop, ast.boolop, ast.unaryop, ast.Load)):
            raise SpecError(f"constraint '{text}' may use numbers, arch fields, arithmetic and comparisons only",
                            source)
    return tree


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _evaluate(node, values: dict[str, Any]):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name not in values:
            raise SpecError(f"'{name}' is not an arch field")
        return values[name]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        v = _evaluate(node.operand, values)
        return -v if isinstance(node.op, ast.USub) else (not v if isinstance(node.op, ast.Not) else v)
    if isinstance(node, ast.BoolOp):
        vals = [_evaluate(v, values) for v in node.values]
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, values)
        for op, right in zip(node.ops, node.comparators):
            r = _evaluate(right, values)
            if not _COMPARE[type(op)](left, r):
                return False
            left = r
        return True
    raise SpecError("unsupported expression")


def point_arch(spec: Spec, point: dict[str, Any]) -> ArchConfig:
    """The arch of one point (an invalid combination raises ArchError naming the key)."""
    return with_overrides(spec.arch, point) if point else spec.arch


def point_key(model_id: str, prune, partition: str, mode: str, calibrate: str | None, arch: ArchConfig) -> str:
    """The point's identity in the store: everything that decides its result."""
    text = json.dumps({"model": model_id, "prune": prune, "partition": partition, "mode": mode,
                       "calibrate": calibrate, "arch": json.loads(arch.to_json())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]
