"""Frontends: the Sieve text format and the model zoo."""
from frontend.errors import FrontendError
from frontend.onnx_import import import_model, load_onnx
from frontend.text_format import dump_sv, load_sv, parse_sv
from frontend.zoo import ZOO, build, build_onnx

__all__ = ["FrontendError", "import_model", "load_onnx", "dump_sv", "load_sv", "parse_sv", "ZOO", "build", "build_onnx"]
