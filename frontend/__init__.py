"""Frontends: the Sieve text format and the model zoo."""
from sieve.frontend.errors import FrontendError
from sieve.frontend.onnx_import import import_model, load_onnx
from sieve.frontend.text_format import dump_sv, load_sv, parse_sv, sv_text
from sieve.frontend.zoo import ZOO, build, build_onnx

__all__ = ["FrontendError", "import_model", "load_onnx", "dump_sv", "load_sv", "parse_sv", "sv_text",
           "ZOO", "build", "build_onnx"]
