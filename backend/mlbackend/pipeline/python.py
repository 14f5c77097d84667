"""Find a CPython interpreter for a version: on PATH, under pyenv, or in a manylinux image."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Tuple

from .._proc import try_run
from ..errors import ConfigError

__all__ = ["Interpreter", "find_interpreter", "parse_versions"]

_VERSION_RE = re.compile(r"^3\.\d+$")
_PROBE = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"


@dataclass(frozen=True)
class Interpreter:
    """A CPython interpreter that answered for its version."""

    version: str
    """``X.Y``, e.g. ``3.12``."""
    path: Path
    """The real executable (pyenv shims resolved)."""
    found_via: str
    """``manylinux``, ``PATH`` or ``pyenv``."""


def parse_versions(text: str) -> Tuple[str, ...]:
    """Split ``"3.11 3.12"`` (spaces, commas or newlines) into checked ``X.Y`` versions."""
    versions: List[str] = []
    for part in text.replace(",", " ").split():
        version = part[2:] if part.lower().startswith("cp") and "." not in part else part
        if version.startswith("3") and "." not in version and len(version) > 1:
            version = f"3.{version[1:]}"
        if not _VERSION_RE.match(version):
            raise ConfigError(f"python version {part!r} is not of the form 3.Y",
                              tip="e.g. --python-versions '3.11 3.12'")
        if version not in versions:
            versions.append(version)
    return tuple(versions)


def _pyenv_root(env: Mapping[str, str]) -> Optional[Path]:
    pyenv = shutil.which("pyenv", path=env.get("PATH"))
    if pyenv:
        out = try_run([pyenv, "root"], env=env)
        if out is not None and out.code == 0:
            return Path(out.out.strip())
    root = env.get("PYENV_ROOT")
    return Path(root) if root else None


def _pyenv_candidates(version: str, env: Mapping[str, str]) -> Iterator[Path]:
    root = _pyenv_root(env)
    if root is None or not (root / "versions").is_dir():
        return
    patch_re = re.compile(rf"^{re.escape(version)}(\.(\d+))?$")
    found = []
    for entry in (root / "versions").iterdir():
        match = patch_re.match(entry.name)
        if match:
            found.append((int(match.group(2) or 0), entry / "bin" / "python"))
    for _, path in sorted(found, reverse=True):
        yield path


def _candidates(version: str, env: Mapping[str, str]) -> Iterator[Tuple[str, Path]]:
    nodot = version.replace(".", "")
    yield "manylinux", Path(f"/opt/python/cp{nodot}-cp{nodot}/bin/python")
    on_path = shutil.which(f"python{version}", path=env.get("PATH"))
    if on_path:
        yield "PATH", Path(on_path)
    for path in _pyenv_candidates(version, env):
        yield "pyenv", path


def _probe(path: Path, env: Mapping[str, str]) -> Optional[Tuple[str, Path]]:
    if not os.access(path, os.X_OK):
        return None
    out = try_run([path, "-c", _PROBE], env=env)
    if out is None or out.code != 0:
        return None
    lines = out.out.split()
    return (lines[0], Path(lines[1])) if len(lines) == 2 else None


def find_interpreter(version: str, env: Optional[Mapping[str, str]] = None) -> Interpreter:
    """The first interpreter that answers as ``version``: manylinux ``/opt/python``, PATH, pyenv."""
    env = os.environ if env is None else env
    for via, path in _candidates(version, env):
        answer = _probe(path, env)
        if answer is not None and answer[0] == version:
            return Interpreter(version=version, path=answer[1], found_via=via)
    raise ConfigError(f"no Python {version} interpreter found",
                      tip=f"put python{version} on PATH, install it with pyenv, or run in a "
                          "manylinux image (/opt/python)")
