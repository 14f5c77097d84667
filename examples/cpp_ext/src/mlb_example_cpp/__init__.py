"""Example package with a C++17 extension that links libstdc++."""

from mlb_example_cpp._ext import format_point, parallel_sum, parse_int

__all__ = ["format_point", "parallel_sum", "parse_int"]
