"""Method registry: `from methods import get_method; get_method("sac")`."""

from methods.base import PAPER_METHODS, SCALES, MethodSpec, UnknownMethodError, expand_methods, get_method, method_names, register_method

__all__ = ["PAPER_METHODS", "SCALES", "MethodSpec", "UnknownMethodError", "expand_methods", "get_method", "method_names", "register_method"]
