"""Sieve IR: typed graph, op registry, reference interpreters, passes, verifier."""
from ir.build import GraphBuilder
from ir.graph import Graph, IRError, Node, Op
from ir.interpret import dequantize_outputs, quantize_inputs, run_float, run_int
from ir.registry import REGISTRY, macs, opdef
from ir.types import DType, QuantParams, TensorType
from ir.verify import verify

__all__ = ["Graph", "GraphBuilder", "IRError", "Node", "Op", "DType", "QuantParams", "TensorType",
           "REGISTRY", "opdef", "macs", "run_float", "run_int", "quantize_inputs",
           "dequantize_outputs", "verify"]
