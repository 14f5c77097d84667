"""Find the file a DT_NEEDED entry loads, searching the way the dynamic linker does."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

from .elf import ElfInfo, elf_header

__all__ = ["LinkerPaths", "expand_origin", "find_library", "search_dirs"]

_ELF_CLASS = {32: 1, 64: 2}
_MACHINE_NUMBERS = {"EM_X86_64": 62, "EM_386": 3, "EM_AARCH64": 183, "EM_ARM": 40,
                    "EM_PPC64": 21, "EM_S390": 22, "EM_RISCV": 243, "EM_LOONGARCH": 258}


def _parse_conf(path: Path, seen: set[Path]) -> List[str]:
    if path in seen or not path.is_file():
        return []
    seen.add(path)
    dirs: List[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return dirs
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include"):
            for pattern in line.split()[1:]:
                full = pattern if pattern.startswith("/") else str(path.parent / pattern)
                for included in sorted(glob.glob(full)):  # noqa: PTH207 (absolute patterns)
                    dirs.extend(_parse_conf(Path(included), seen))
        else:
            dirs.append(line)
    return dirs


@dataclass(frozen=True)
class LinkerPaths:
    """The linker's search folders that do not depend on the loading object."""

    env: Tuple[str, ...]
    """From ``LD_LIBRARY_PATH``."""
    conf: Tuple[str, ...]
    """From ``/etc/ld.so.conf`` and what it includes (the folders ld.so.cache indexes)."""
    default: Tuple[str, ...]
    """The built-in folders."""

    @classmethod
    def from_system(cls, env: Optional[Mapping[str, str]] = None,
                    root: Path = Path("/")) -> LinkerPaths:
        """Read the search folders of the system under ``root`` and ``env``."""
        env = os.environ if env is None else env
        ld_path = [p for p in env.get("LD_LIBRARY_PATH", "").replace(";", ":").split(":") if p]
        conf = _parse_conf(root / "etc/ld.so.conf", set())
        default = ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
        return cls(tuple(ld_path), tuple(conf), tuple(default))


def expand_origin(entry: str, origin: Path) -> str:
    """Expand ``$ORIGIN``/``${ORIGIN}`` in an RPATH/RUNPATH entry."""
    return entry.replace("${ORIGIN}", str(origin)).replace("$ORIGIN", str(origin))


def search_dirs(needer: ElfInfo, needer_path: Path, paths: LinkerPaths,
                loader_rpaths: Sequence[str] = ()) -> Tuple[str, ...]:
    """The folders searched, in order, for a library ``needer`` needs.

    DT_RPATH (with the loaders' RPATHs) comes before LD_LIBRARY_PATH and is ignored when
    DT_RUNPATH is set; DT_RUNPATH comes after LD_LIBRARY_PATH; then ld.so.conf, then defaults.
    """
    origin = needer_path.parent
    order: List[str] = []
    if not needer.runpath:
        order += [expand_origin(p, origin) for p in needer.rpath]
        order += list(loader_rpaths)
    order += list(paths.env)
    order += [expand_origin(p, origin) for p in needer.runpath]
    order += list(paths.conf) + list(paths.default)
    seen: set[str] = set()
    return tuple(d for d in order if not (d in seen or seen.add(d)))  # type: ignore[func-returns-value]


def find_library(soname: str, needer: ElfInfo, needer_path: Path, paths: LinkerPaths,
                 loader_rpaths: Sequence[str] = ()) -> Optional[Path]:
    """The file the linker would load for ``soname`` (same ELF class and machine), or None."""
    if "/" in soname:
        candidate = Path(soname)
        return candidate if candidate.is_file() else None
    want = (_ELF_CLASS.get(needer.elf_class), _MACHINE_NUMBERS.get(needer.machine))
    for folder in search_dirs(needer, needer_path, paths, loader_rpaths):
        candidate = Path(folder) / soname
        header = elf_header(candidate)
        if header is None:
            continue
        if None in want or header == want:
            return candidate
    return None
