"""Declares the C++ extension; all other metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlb_example_cpp._ext",
            sources=["src/mlb_example_cpp/_ext.cpp"],
            language="c++",
            extra_compile_args=["-std=c++17"],
        )
    ]
)
