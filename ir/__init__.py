"""Sieve IR: typed graph, op registry, reference interpreters, passes, verifier."""
from sieve.ir.build import GraphBuilder
from sieve.ir.graph import Graph, IRError, Node, Op
from sieve.ir.interpret import dequantize_outputs, quantize_inputs, run_float, run_int
from sieve.ir.registry import REGISTRY, macs, opdef
from sieve.ir.types import DType, QuantParams, TensorType
from sieve.ir.verify import verify

__all__ = ["Graph", "GraphBuilder", "IRError", "Node", "Op", "DType", "QuantParams", "TensorType",
           "REGISTRY", "opdef", "macs", "run_float", "run_int", "quantize_inputs",
           "dequantize_outputs", "verify"]
