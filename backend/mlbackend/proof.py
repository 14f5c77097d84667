"""Proof that a repaired wheel loads: the loader's walk (:func:`~mlbackend.resolve.walk_wheel`)
over its ELF files, confined to the wheel, before the wheel is written.

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
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

from .elf import LOADER_PREFIXES, ElfInfo
from .resolve import Dependencies, LinkerPaths, LoadTree, expand_origin, search_dirs, walk_wheel

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


@dataclass(frozen=True)
class _Prover:
    deps: Dependencies
    infos: Mapping[str, ElfInfo]
    policy: Optional[Policy]
    exclude: Tuple[str, ...]

    def inside(self, folder: str) -> Optional[str]:
        """``folder`` relative to the wheel's root (``.`` for the root), None if outside."""
        try:
            return Path(folder).relative_to(self.deps.root).as_posix()
        except ValueError:
            return None

    def outside_paths(self, member: str) -> List[Unresolved]:
        """The RPATH/RUNPATH entries of ``member`` that lead outside the wheel."""
        info = self.infos[member]
        origin = self.deps.root / PurePosixPath(member).parent
        return [Unresolved(member, entry, f"RPATH/RUNPATH entry {entry} points outside the "
                                          "wheel")
                for entry in (*info.rpath, *info.runpath)
                if self.inside(os.path.normpath(expand_origin(entry, origin))) is None]

    def allowed(self, soname: str) -> bool:
        """True for what the wheel may take from the user's system."""
        return self.policy is None or self.policy.is_linux or soname in self.policy.whitelist \
            or any(fnmatch.fnmatch(soname, g) for g in self.exclude)

    def needs(self, tree: LoadTree, member: str, chain: Tuple[str, ...]) -> List[Unresolved]:
        """What ``member``, loaded in ``tree`` by objects whose DT_RPATH it inherits
        (``chain``), needs and the walk did not find in the wheel, or found lacking a
        version."""
        info = self.infos[member]
        out: List[Unresolved] = []
        for soname in info.needed:
            lib = tree.libraries.get(soname)
            if soname.startswith(LOADER_PREFIXES) or lib is None:
                continue  # the loader itself, or a need the walk does not enter
            found = self.deps.member_of(lib.realpath)
            if found is not None and found in self.infos:
                out += self.versions(member, soname, found)
            elif not self.allowed(soname):
                assert self.policy is not None
                dirs = search_dirs(info, self.deps.root / member, LinkerPaths.none(), chain)
                out.append(Unresolved(
                    member, soname, f"needs {soname}, which is not in the wheel (searched "
                    f"{self._shown(dirs)}) and not allowed by {self.policy.base}"))
        return out

    def _shown(self, dirs: Sequence[str]) -> str:
        inside = [self.inside(d) for d in dirs]
        names = [d for d in inside if d is not None]
        return ", ".join(names) if names else "no folder of the wheel"

    def versions(self, member: str, soname: str, found: str) -> List[Unresolved]:
        """The versions ``member`` needs of ``soname`` that ``found`` does not define."""
        info = self.infos[member]
        target = self.infos[found]
        names = {soname, target.soname, PurePosixPath(found).name}
        defined = set(target.version_defs)
        return [Unresolved(member, f"{soname}@{version}",
                           f"needs version {version} of {soname}, which {found} does not "
                           f"define ({', '.join(sorted(defined)) or 'it defines no versions'})")
                for library, versions in info.version_needs.items() if library in names
                for version in versions if version not in defined]


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
    Sonames matching an ``exclude`` glob are the user's to provide, like whitelisted ones.

    The walk is the audit's, with no system folder searched: after a repair, whatever the
    policy does not allow must be inside the wheel, whatever the build machine has."""
    members = list(infos)
    extensions = [m for m in members if infos[m].is_python_extension(PurePosixPath(m).name)]
    deps = walk_wheel(root, members, infos, extensions, paths=LinkerPaths.none(),
                      inside_only=True)
    prover = _Prover(deps, infos, policy, tuple(exclude))
    problems: List[Unresolved] = []
    checked: set[str] = set()
    for tree in deps.trees.values():
        loaded: Dict[str, Tuple[str, ...]] = {tree.member: ()}
        for lib in tree.libraries.values():
            member = deps.member_of(lib.realpath)
            if member is not None and member in infos:
                loaded.setdefault(member, lib.loader_rpaths)
        for member, chain in loaded.items():
            if member not in checked:
                checked.add(member)
                problems += prover.outside_paths(member)
            problems += prover.needs(tree, member, chain)
    return tuple(dict.fromkeys(problems + _duplicates(infos, vendored)))
