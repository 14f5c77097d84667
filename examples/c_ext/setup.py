"""Declares the C extension; all other metadata lives in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlb_example_c._ext",
            sources=["src/mlb_example_c/_ext.c"],
            # pthread and dl symbols live in libc since glibc 2.34; libm still needs linking.
            libraries=["m"],
        )
    ]
)
