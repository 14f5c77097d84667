"""Proof that a repaired wheel loads: the dynamic linker simulated over its ELF files
before the wheel is written.

Each DT_NEEDED resolves inside the wheel through RPATH/RUNPATH (with DT_RPATH inherited
by what a file loads, as ld.so does), or is a library the policy lets the wheel take from
the system; each version a file needs is defined by the library it resolves to; vendored
sonames are unique; no RPATH/RUNPATH leads outside the wheel.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .elf import LOADER_PREFIXES, ElfInfo
from .resolve import expand_origin

if TYPE_CHECKING:
    from .policy import Policy

__all__ = ["Unresolved", "prove"]


@dataclass(frozen=True)
class Unresolved:
    """One need of one file that the loader would not meet."""

    file: str
    need: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}: {self.why}"


@dataclass
class _Prover:
    root: Path
    infos: Mapping[str, ElfInfo]
    policy: Optional[Policy]
    exclude: Tuple[str, ...]
    problems: List[Unresolved]
    checked: Set[str]

    def dirs(self, member: str, inherited: Tuple[str, ...]) -> Tuple[str, ...]:
        info = self.infos[member]
        origin = self.root / PurePosixPath(member).parent
        own = info.runpath or info.rpath
        expanded = tuple(os.path.normpath(expand_origin(p, origin)) for p in own)
        return expanded if info.runpath else expanded + inherited

    def inside(self, folder: str) -> Optional[str]:
        try:
            return Path(folder).relative_to(self.root).as_posix()
        except ValueError:
            return None

    def check_paths(self, member: str) -> None:
        info = self.infos[member]
        origin = self.root / PurePosixPath(member).parent
        for entry in (*info.rpath, *info.runpath):
            if self.inside(os.path.normpath(expand_origin(entry, origin))) is None:
                self.problems.append(Unresolved(
                    member, entry, f"RPATH/RUNPATH entry {entry} points outside the wheel"))

    def resolve(self, soname: str, dirs: Tuple[str, ...]) -> Optional[str]:
        for folder in dirs:
            relative = self.inside(folder)
            if relative is None:
                continue
            candidate = soname if relative == "." else f"{relative}/{soname}"
            if candidate in self.infos:
                return candidate
        return None

    def walk(self, member: str, inherited: Tuple[str, ...], seen: Tuple[str, ...]) -> None:
        if member in seen:
            return
        if member not in self.checked:
            self.checked.add(member)
            self.check_paths(member)
        info = self.infos[member]
        own = tuple(d for d in self.dirs(member, ()) if not info.runpath)
        dirs = self.dirs(member, inherited)
        for soname in info.needed:
            if soname.startswith(LOADER_PREFIXES):
                continue
            found = self.resolve(soname, dirs)
            if found is None:
                if self.policy is None or self.policy.is_linux \
                        or soname in self.policy.whitelist \
                        or any(fnmatch.fnmatch(soname, g) for g in self.exclude):
                    continue
                self.problems.append(Unresolved(
                    member, soname, f"needs {soname}, which is not in the wheel (searched "
                    f"{self._shown(dirs)}) and not allowed by {self.policy.base}"))
                continue
            self.check_versions(member, soname, found)
            self.walk(found, own + inherited, (*seen, member))

    def _shown(self, dirs: Sequence[str]) -> str:
        inside = [self.inside(d) for d in dirs]
        names = [d for d in inside if d is not None]
        return ", ".join(names) if names else "no folder of the wheel"

    def check_versions(self, member: str, soname: str, found: str) -> None:
        info = self.infos[member]
        target = self.infos[found]
        names = {soname, target.soname, PurePosixPath(found).name}
        defined = set(target.version_defs)
        for library, versions in info.version_needs.items():
            if library not in names:
                continue
            for version in versions:
                if version not in defined:
                    self.problems.append(Unresolved(
                        member, f"{soname}@{version}",
                        f"needs version {version} of {soname}, which {found} does not "
                        f"define ({', '.join(sorted(defined)) or 'it defines no versions'})"))


def _duplicates(infos: Mapping[str, ElfInfo], vendored: Sequence[str]) -> List[Unresolved]:
    names: Dict[str, List[str]] = {}
    for member, info in infos.items():
        names.setdefault(info.soname or PurePosixPath(member).name, []).append(member)
    out = []
    for member in vendored:
        if member not in infos:
            continue
        soname = infos[member].soname or PurePosixPath(member).name
        others = [m for m in names[soname] if m != member]
        if others:
            out.append(Unresolved(member, soname, f"its soname {soname} is also the soname "
                                                  f"of {', '.join(others)}"))
    return out


def prove(root: Path, infos: Mapping[str, ElfInfo], policy: Optional[Policy],
          vendored: Sequence[str] = (), exclude: Sequence[str] = ()) -> Tuple[Unresolved, ...]:
    """What the loader would fail on in the ELF files ``infos`` (member -> facts) of the
    wheel unpacked under ``root``, loaded as ``policy`` allows; empty when all loads.
    Sonames matching an ``exclude`` glob are the user's to provide, like whitelisted ones."""
    prover = _Prover(root.resolve(), infos, policy, tuple(exclude), [], set())
    loaded: Set[str] = set()
    for member in infos:
        dirs = prover.dirs(member, ())
        for soname in infos[member].needed:
            found = prover.resolve(soname, dirs)
            if found is not None:
                loaded.add(found)
    # walk from what nothing in the wheel loads (extensions, executables), then the rest
    for member in [m for m in infos if m not in loaded] + sorted(loaded):
        if member not in prover.checked:
            prover.walk(member, (), ())
    return tuple(dict.fromkeys(prover.problems + _duplicates(infos, vendored)))
