"""Reference interpreters. The integer one is the golden model of the accelerator."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from sieve.ir.graph import Graph, IRError, Op
from sieve_numerics.integer import dequantize, quantize
from sieve.ir.registry import opdef
from sieve.ir.types import DType


def _feed(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    env = {}
    for node in graph.inputs:
        if node.name not in inputs:
            raise IRError(f"no value given for graph input '{node.name}'")
        x = np.asarray(inputs[node.name])
        if x.shape[1:] != node.out.shape[1:]:
            raise IRError(f"input has shape {list(x.shape)}, expected {list(node.out.shape)}", node.name)
        env[node.name] = x
    return env


def graph_batch(graph: Graph) -> int:
    return graph.inputs[0].out.shape[0] if graph.inputs else 1


def _in_model_batches(run):
    """Most ops compute any batch of their input; a MOVE's view spans the model's own batch (a transpose may
    mix it with other axes). A graph with one runs in chunks of the model's batch, results concatenated."""
    def chunked(graph: Graph, inputs: Mapping[str, np.ndarray], keep_all: bool = False, **kw):
        gb = graph_batch(graph)
        n = len(next(iter(inputs.values()))) if inputs else gb
        if n == gb or not any(node.op is Op.MOVE for node in graph):
            return run(graph, inputs, keep_all, **kw)
        if n % gb:
            raise IRError(f"a batch of {n} is not a multiple of the model's batch of {gb} (its views of "
                          "tensors span the batch)", hint="compile with the batch you run, or pad the inputs")
        parts = [run(graph, {k: v[i:i + gb] for k, v in inputs.items()}, keep_all, **kw) for i in range(0, n, gb)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    chunked.__doc__ = run.__doc__
    chunked.__name__ = run.__name__
    return chunked


@_in_model_batches
def run_float(graph: Graph, inputs: Mapping[str, np.ndarray], keep_all: bool = False,
              observe: Callable[[str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    """Run a float graph; returns the graph outputs (or every tensor with keep_all). ``observe`` sees
    every tensor as it is computed; tensors no longer needed are freed unless keep_all."""
    env = {k: v.astype(np.float32) for k, v in _feed(graph, inputs).items()}
    uses = {n.name: len(graph.consumers(n.name)) for n in graph}
    for node in graph:
        if node.op is not Op.INPUT:
            env[node.name] = opdef(node.op).ref_float(node, [env[i] for i in node.inputs])
        if observe is not None:
            observe(node.name, env[node.name])
        if not keep_all:
            for i in node.inputs:
                uses[i] -= 1
                if uses[i] == 0 and i not in graph.outputs:
                    del env[i]
    return env if keep_all else {o: env[o] for o in graph.outputs}


@_in_model_batches
def run_int(graph: Graph, inputs: Mapping[str, np.ndarray], keep_all: bool = False) -> dict[str, np.ndarray]:
    """Run a quantized graph on int8 inputs; returns int8 outputs (or every tensor)."""
    env = _feed(graph, inputs)
    for name, x in env.items():
        if x.dtype != np.int8:
            raise IRError(f"integer interpreter needs int8 input, got {x.dtype}", name,
                          hint="use quantize_inputs() on float data first")
    for node in graph:
        if node.op is Op.INPUT:
            continue
        ins = [graph[i].out for i in node.inputs]
        env[node.name] = opdef(node.op).ref_int(node, [env[i] for i in node.inputs], ins)
    return env if keep_all else {o: env[o] for o in graph.outputs}


def quantize_inputs(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float inputs -> int8 with each input node's quantization (what the host does)."""
    out = {}
    for node in graph.inputs:
        if node.name not in inputs:
            continue
        x = np.asarray(inputs[node.name], dtype=np.float32)
        if node.out.dtype is not DType.INT8:
            raise IRError("graph is not quantized", node.name)
        out[node.name] = quantize(x, node.out.quant.scale[0], node.out.quant.zp)
    return out


def dequantize_outputs(graph: Graph, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Integer outputs to float; float outputs (the host's softmax) pass through."""
    return {name: q if graph[name].out.quant is None else
            dequantize(q, graph[name].out.quant.scale[0], graph[name].out.quant.zp)
            for name, q in outputs.items()}
