"""Example package with a C extension that needs GLIBC_2.34 when built on a recent glibc."""

from mlb_example_c._ext import add_in_thread, cube_root, file_size, has_symbol

__all__ = ["add_in_thread", "cube_root", "file_size", "has_symbol"]
