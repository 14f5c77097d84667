"""Declares the C extension; it links libyaml (Debian: apt-get install libyaml-dev)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mlb_example_yaml._yaml",
            sources=["src/mlb_example_yaml/_yaml.c"],
            libraries=["yaml"],
        )
    ]
)
