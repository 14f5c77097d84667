"""Find the files DT_NEEDED entries load, searching the way the dynamic linker does."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from .elf import ElfInfo, elf_header, read_elf

__all__ = [
    "LinkerPaths",
    "Load",
    "WheelLibraries",
    "expand_origin",
    "find_library",
    "search_dirs",
]

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
                 loader_rpaths: Sequence[str] = (),
                 header: Callable[[Path], Optional[Tuple[int, int]]] = elf_header,
                 ) -> Optional[Path]:
    """The file the linker would load for ``soname`` (same ELF class and machine), or None.

    ``header`` gives a candidate's (EI_CLASS, e_machine), None when it is no ELF file."""
    if "/" in soname:
        candidate = Path(soname)
        return candidate if candidate.is_file() else None
    want = (_ELF_CLASS.get(needer.elf_class), _MACHINE_NUMBERS.get(needer.machine))
    for folder in search_dirs(needer, needer_path, paths, loader_rpaths):
        candidate = Path(folder) / soname
        found = header(candidate)
        if found is None:
            continue
        if None in want or found == want:
            return candidate
    return None


@dataclass(frozen=True)
class Load:
    """One DT_NEEDED entry met while walking what a file loads."""

    soname: str
    needer: Path
    """The file whose DT_NEEDED it is."""
    path: Optional[Path]
    """Where the linker finds it; None when it is nowhere on the search path."""
    loader_rpaths: Tuple[str, ...]
    """The RPATHs of the files that loaded ``needer`` (they apply to its search too)."""


@dataclass
class WheelLibraries:
    """The ELF files of one unpacked wheel and the libraries they load, resolved the way the
    dynamic linker does; facts and look-ups are read once and kept."""

    root: Path
    paths: LinkerPaths
    infos: Dict[Path, ElfInfo] = field(default_factory=dict)
    found: Dict[Tuple[Path, str, Tuple[str, ...]], Optional[Path]] = field(default_factory=dict)

    def info(self, path: Path) -> ElfInfo:
        """The facts of the ELF file at ``path``."""
        if path not in self.infos:
            self.infos[path] = read_elf(path)
        return self.infos[path]

    def header(self, path: Path) -> Optional[Tuple[int, int]]:
        """(EI_CLASS, e_machine) of ``path``: from the facts held (wheel members read from
        memory are not on disk), else from the file."""
        info = self.infos.get(Path(os.path.normpath(path)))
        if info is None:
            return elf_header(path)
        return _ELF_CLASS.get(info.elf_class, 0), _MACHINE_NUMBERS.get(info.machine, 0)

    def inside(self, path: Optional[Path]) -> bool:
        """True when ``path`` is a file of the unpacked wheel."""
        if path is None:
            return False
        # lexical: members audited from memory are not on disk, and nothing outside links
        # into the fresh folder the wheel is unpacked to (callers pass it resolved)
        return os.path.normpath(path).startswith(f"{self.root}{os.sep}")

    def searched(self, load: Load) -> Tuple[str, ...]:
        """The folders the linker searches for ``load`` (for error messages)."""
        return search_dirs(self.info(load.needer), load.needer, self.paths, load.loader_rpaths)

    def loads(self, start: Path, follow: Callable[[str], bool]) -> Iterator[Load]:
        """Every DT_NEEDED entry that ``start`` loads, directly or through the libraries it
        loads from outside the wheel, whose soname ``follow`` accepts. Libraries inside the
        wheel are reported but not entered: they are walked as files of their own."""
        pending: List[Tuple[Path, Tuple[str, ...]]] = [(start, ())]
        visited: set[Path] = set()
        while pending:
            path, loader_rpaths = pending.pop()
            if path in visited:
                continue
            visited.add(path)
            info = self.info(path)
            own = () if info.runpath else tuple(expand_origin(p, path.parent)
                                                for p in info.rpath)
            for soname in info.needed:
                if not follow(soname):
                    continue
                key = (path, soname, loader_rpaths)
                if key not in self.found:
                    self.found[key] = find_library(soname, info, path, self.paths,
                                                   loader_rpaths, self.header)
                found = self.found[key]
                yield Load(soname, path, found, loader_rpaths)
                if found is not None and not self.inside(found):
                    pending.append((found, own + loader_rpaths))
