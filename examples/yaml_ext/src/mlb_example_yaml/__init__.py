"""libyaml's version and a tiny scanner, through a C extension."""

from ._yaml import count_scalars, version

__all__ = ["count_scalars", "version"]
