"""Frontends: the Sieve text format and the model zoo."""
from frontend.errors import FrontendError
from frontend.text_format import dump_sv, load_sv, parse_sv
from frontend.zoo import ZOO, build

__all__ = ["FrontendError", "dump_sv", "load_sv", "parse_sv", "ZOO", "build"]
