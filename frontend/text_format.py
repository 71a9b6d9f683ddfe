"""Read and write the Sieve text format (.sv); the grammar is in sieve.lark."""
from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import lark
import numpy as np

from sieve.frontend.arrays import load_arrays
from sieve.frontend.errors import FrontendError
from sieve.ir.build import GraphBuilder, normalize_attrs
from sieve.ir.registry import opdef
from sieve.ir.graph import Graph, IRError, Op

@functools.cache
def _parser() -> lark.Lark:
    """The grammar, built on first use (building it costs tens of milliseconds at import)."""
    return lark.Lark(resources.files("sieve.frontend").joinpath("sieve.lark").read_text(), parser="lalr",
                     propagate_positions=True, maybe_placeholders=True)
OPS = {op.value: op for op in Op if op is not Op.INPUT}


class _Values(lark.Transformer):
    def number(self, items):
        text = str(items[0])
        return float(text) if any(ch in text for ch in ".eE") else int(text)

    def string(self, items):
        return json.loads(items[0])

    def ref(self, items):
        return _Ref(str(items[0]))

    def list(self, items):
        return [] if items == [None] else list(items)

    def shape(self, items):
        return tuple(int(i) for i in items)


class _Ref(str):
    """A bare name in an argument list: an input tensor."""


def _where(source: str, meta) -> dict:
    return {"source": source, "line": getattr(meta, "line", None), "column": getattr(meta, "column", None)}


def parse_sv(text: str, source: str = "<text>", base_dir: Path | None = None) -> Graph:
    """Parse .sv text into a float Graph; every error names file, line and column."""
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as err:
        expected = sorted(getattr(err, "expected", None) or getattr(err, "allowed", None) or [])
        hint = f"expected one of: {', '.join(expected[:8])}" if expected else ""
        raise FrontendError("syntax error", source, err.line, err.column, err.get_context(text).rstrip(),
                            hint) from None
    except RecursionError:
        raise FrontendError("nested too deeply", source) from None
    values = _Values()
    name, side, outputs = Path(source).stem, None, []
    b: GraphBuilder | None = None
    for stmt in tree.children:
        where = _where(source, stmt.meta)
        kind = stmt.data
        if kind == "model":
            name = str(stmt.children[0])
        elif kind == "weights":
            path = Path(json.loads(stmt.children[0]))
            path = (base_dir or Path(".")) / path if not path.is_absolute() else path
            side = _side_file(path, where)
        else:
            b = b or GraphBuilder(name)
            try:
                if kind == "input":
                    b.input(str(stmt.children[0]), values.transform(stmt.children[1]))
                elif kind == "layer":
                    _layer(b, stmt, values, side, where)
                elif kind == "output":
                    outputs += [str(c) for c in stmt.children]
            except IRError as err:
                raise FrontendError(str(err).split(" (hint: ")[0], hint=err.hint, **where) from None
            except lark.exceptions.VisitError as err:     # a value the transformer cannot take (4,300 digits)
                raise FrontendError(f"bad value: {err.orig_exc}", **where) from None
            except RecursionError:
                raise FrontendError("nested too deeply", **where) from None
    if b is None or not outputs:
        raise FrontendError("a model needs at least one input and one output statement", source)
    try:
        return b.build(outputs)
    except IRError as err:
        raise FrontendError(str(err), source) from None


def _layer(b: GraphBuilder, stmt, values: _Values, side: dict | None, where: dict) -> None:
    lname, opname, *rest = stmt.children
    lname, opname = str(lname), str(opname)
    args, shape, block = rest[:-2], rest[-2], rest[-1]
    if opname not in OPS:
        raise FrontendError(f"unknown op '{opname}'", hint=f"supported: {', '.join(OPS)}", **where)
    op = OPS[opname]
    inputs, attrs = [], {}
    for arg in (a for a in args if a is not None):
        if arg.data == "positional":
            v = values.transform(arg.children[0])
            if not isinstance(v, _Ref):
                raise FrontendError(f"positional arguments are input names, got {v!r}", **where)
            inputs.append(str(v))
        else:
            attrs[str(arg.children[0])] = values.transform(arg.children[1])
    params = {}
    if side is not None:
        params = {k.split(".", 1)[1]: v for k, v in side.items() if k.split(".", 1)[0] == lname}
    if block is not None:
        for p in block.children:
            params[str(p.children[0])] = _numbers(values.transform(p.children[1]), f"layer '{lname}': "
                                                  f"'{p.children[0]}'", where)
    if opdef(op).weighted:
        if "w" not in params:
            raise FrontendError(f"layer '{lname}' has no weights", hint="give a { w = [...] } block or a "
                                "weights side file with an array '" + lname + ".w'", **where)
        params = _shape_params(op, attrs, params, b, inputs, lname, where)
    b.add(lname, op, inputs, attrs, params)
    if shape is not None:
        got = b.nodes[lname].out.shape
        want = values.transform(shape)
        if got != want:
            raise FrontendError(f"layer '{lname}' is declared {list(want)} but computes {list(got)}", **where)


def _shape_params(op: Op, attrs: dict, params: dict, b: GraphBuilder, inputs: list, lname: str,
                  where: dict) -> dict:
    """Inline weights may be flat: reshape them to what the layer needs."""
    if not inputs or inputs[0] not in b.nodes:
        return params
    in_shape = b.nodes[inputs[0]].out.shape
    if op is Op.CONV2D:
        try:
            a = normalize_attrs(op, attrs)                # the op's own checks and canonical forms first
        except IRError as err:
            raise FrontendError(f"layer '{lname}': {err}", **where) from None
        kh, kw = a["kernel"]
        if in_shape[1] % a["groups"]:
            raise FrontendError(f"layer '{lname}': groups={a['groups']} does not divide its {in_shape[1]} input "
                                "channels", **where)
        want = (a.get("out_channels", 0), in_shape[1] // a["groups"], kh, kw)
    else:
        want = (attrs.get("out_features", 0), in_shape[-1])
    w = params["w"]
    if w.shape != want:
        if w.ndim > 1:
            raise FrontendError(f"layer '{lname}': weights have shape {list(w.shape)}, expected {list(want)} "
                                "(or flat)", **where)
        if w.size != int(np.prod(want)):
            raise FrontendError(f"layer '{lname}': weights have {w.size} values, expected "
                                f"{int(np.prod(want))} for shape {list(want)}", **where)
        params = {**params, "w": w.reshape(want)}
    return params


def _numbers(value, what: str, where: dict) -> np.ndarray:
    """Nested lists of numbers as a float32 array; anything else (ragged, text, finite values beyond
    float32) is an error naming the parameter."""
    try:
        with np.errstate(over="raise"):
            a = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError, FloatingPointError) as err:
        raise FrontendError(f"{what} is not a rectangular array of float32 numbers ({err})", **where) from None
    return a                                             # NaN or infinities: refused where every model's are


def _side_file(path: Path, where: dict) -> dict[str, np.ndarray]:
    """A weights side file: an .npz of float arrays named "<layer>.<param>"."""
    try:
        side = load_arrays(path)
    except FrontendError as err:
        raise FrontendError(f"cannot read weights file '{path}': {str(err).removeprefix(err.source + ': ')}",
                            **where) from None
    if isinstance(side, np.ndarray):
        raise FrontendError(f"weights file '{path}' is one array, not an .npz archive of named arrays", **where)
    for k, v in side.items():
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "fiu":
            raise FrontendError(f"weights file '{path}': '{k}' is not an array of real numbers", **where)
        side[k] = _numbers(v, f"weights file '{path}': '{k}'", where)
    return side


def load_sv(path: str | Path) -> Graph:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise FrontendError(f"cannot read: {err.strerror}", str(path)) from None
    except UnicodeDecodeError as err:
        raise FrontendError(f"not UTF-8 text: byte {err.object[err.start]:#04x} at offset {err.start}",
                            str(path)) from None
    return parse_sv(text, str(path), path.parent)


def _fmt(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):                # a flag as 0 or 1 (the grammar has no booleans)
        return str(int(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v)


def sv_text(graph: Graph, weights_file: str | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """A float graph as .sv text, and its weights by "<layer>.<param>". With ``weights_file`` the text
    names that side file and carries no weights; without it the weights are inline."""
    lines = [f"# {graph.name}: written by sieve", f"model {graph.name}"]
    arrays: dict[str, np.ndarray] = {}
    if weights_file is not None:
        lines.append(f"weights {json.dumps(weights_file)}")
    for node in graph:
        if node.op is Op.INPUT:
            lines.append(f"input {node.name} {_fmt(node.out.shape)}")
            continue
        args = list(node.inputs) + [f"{k}={_fmt(v)}" for k, v in node.attrs.items()]
        line = f"{node.name} = {node.op.value}({', '.join(args)}) -> {_fmt(node.out.shape)}"
        if node.params and weights_file is None:
            body = " ".join(f"{k} = {json.dumps(np.asarray(v).tolist())}" for k, v in node.params.items())
            line += " { " + body + " }"
        arrays.update({f"{node.name}.{k}": np.asarray(v) for k, v in node.params.items()})
        lines.append(line)
    lines.append(f"output {', '.join(graph.outputs)}")
    return "\n".join(lines) + "\n", arrays


def dump_sv(graph: Graph, path: str | Path, inline: bool = False) -> list[Path]:
    """Write a float graph as .sv (+ a side .npz of weights unless inline). Returns files written."""
    path = Path(path)
    side = None if inline else path.with_suffix(".npz")
    text, arrays = sv_text(graph, side.name if side else None)
    path.write_text(text)
    if side is None:
        return [path]
    np.savez(side, **arrays)
    return [path, side]
