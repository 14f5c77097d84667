"""A model of the dynamic loader: which file each DT_NEEDED entry of a wheel's ELF files loads.

One walk per wheel (:func:`walk_wheel`) gives a :class:`Dependencies` that the audit judges and
the repair vendors from; the proof walks a repaired wheel the same way, confined to the wheel.
The search follows glibc's
``ld.so``: the needer's DT_RPATH (unless it has DT_RUNPATH), then the DT_RPATH of every object
up the chain that loaded it (each ``$ORIGIN`` the folder of the object that carries it), then
``LD_LIBRARY_PATH``, the needer's own DT_RUNPATH (direct needs only), ``ld.so.conf`` and the
default folders; a soname already loaded satisfies every later need of it.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from .elf import LOADER_PREFIXES, ElfInfo, elf_header, read_elf

__all__ = [
    "LIBC_OWN",
    "Dependencies",
    "Library",
    "LinkerPaths",
    "LoadTree",
    "expand_origin",
    "is_libc_own",
    "is_libpython",
    "search_dirs",
    "walk_wheel",
]

_LIBPYTHON = re.compile(r"^libpython\d+\.\d+m?\.so(\.\d)*$")
LIBC_OWN = re.compile(
    r"^(libc|libm|libmvec|libpthread|libdl|librt|libutil)\.so(\.\d+)*$"
    r"|^libc\.musl-[^/]+\.so\.1$|^ld-musl-[^/]+\.so\.1$")
"""Sonames that belong to the C library itself: the system always has its own copy, and a
vendored one would not match the system's loader."""


def is_libpython(soname: str) -> bool:
    """True for ``libpython3.X.so...``: the interpreter has it loaded; never vendored."""
    return _LIBPYTHON.match(soname) is not None


def is_libc_own(soname: str) -> bool:
    """True for the C library's own sonames and dynamic loaders: never vendored."""
    return soname.startswith(LOADER_PREFIXES) or LIBC_OWN.match(soname) is not None


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
    """From ``AUDITWHEEL_LD_LIBRARY_PATH`` then ``LD_LIBRARY_PATH``."""
    conf: Tuple[str, ...]
    """From ``/etc/ld.so.conf`` and what it includes (the folders ld.so.cache indexes)."""
    default: Tuple[str, ...]
    """The built-in folders."""

    @classmethod
    def from_system(cls, env: Optional[Mapping[str, str]] = None,
                    root: Path = Path("/")) -> LinkerPaths:
        """Read the search folders of the system under ``root`` and ``env``."""
        env = os.environ if env is None else env
        ld_path = [p for name in ("AUDITWHEEL_LD_LIBRARY_PATH", "LD_LIBRARY_PATH")
                   for p in env.get(name, "").replace(";", ":").split(":") if p]
        conf = _parse_conf(root / "etc/ld.so.conf", set())
        default = ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
        return cls(tuple(ld_path), tuple(conf), tuple(default))

    @classmethod
    def none(cls) -> LinkerPaths:
        """No folder of any system: only the objects' own RPATH/RUNPATH are searched."""
        return cls((), (), ())


def expand_origin(entry: str, origin: Path) -> str:
    """Expand ``$ORIGIN``/``${ORIGIN}`` in an RPATH/RUNPATH entry."""
    return entry.replace("${ORIGIN}", str(origin)).replace("$ORIGIN", str(origin))


def _own_rpath(info: ElfInfo, path: Path) -> Tuple[str, ...]:
    """The DT_RPATH folders of ``info`` (none when DT_RUNPATH is set: it replaces them)."""
    if info.runpath:
        return ()
    return tuple(os.path.normpath(expand_origin(p, path.parent)) for p in info.rpath)


def search_dirs(needer: ElfInfo, needer_path: Path, paths: LinkerPaths,
                loader_rpaths: Sequence[str] = ()) -> Tuple[str, ...]:
    """The folders searched, in order, for a library ``needer`` needs; ``loader_rpaths`` are
    the DT_RPATH folders of the objects that loaded ``needer``, nearest first."""
    order: List[str] = []
    if not needer.runpath:
        order += list(_own_rpath(needer, needer_path)) + list(loader_rpaths)
    order += list(paths.env)
    order += [os.path.normpath(expand_origin(p, needer_path.parent)) for p in needer.runpath]
    order += list(paths.conf) + list(paths.default)
    return tuple(dict.fromkeys(order))


def _inside(path: Path, root: Path) -> bool:
    """True when ``path`` names a file under ``root``, judged lexically: the wheel's members
    are decoded from memory and are not on disk, and nothing outside links into the fresh
    folder the wheel stands for (``root`` is resolved)."""
    return os.path.normpath(path).startswith(f"{root}{os.sep}")


class _Disk:
    """What one walk knows of the files it looks for: the wheel's members by path (under
    ``root``), and each file outside probed once per walk (many members look for the same
    system libraries in the same folders)."""

    def __init__(self, root: Path, members: Mapping[Path, ElfInfo], inside_only: bool) -> None:
        self.prefix = f"{root}{os.sep}"
        self.inside_only = inside_only  # no file outside the wheel looked at (the proof)
        self.members = {str(path): info for path, info in members.items()}
        self.headers: Dict[str, Optional[Tuple[int, str]]] = {}
        self.real: Dict[Path, Path] = {}

    def header(self, path: str) -> Optional[Tuple[int, str]]:
        if path not in self.headers:
            self.headers[path] = elf_header(Path(path))
        return self.headers[path]

    def resolved(self, path: Path) -> Path:
        """The file ``path`` stands for: a member's own path inside the wheel, else the
        file on disk with its symlinks resolved."""
        inside = os.path.normpath(path)
        if inside.startswith(self.prefix):
            return Path(inside)
        if path not in self.real:
            self.real[path] = path.resolve()
        return self.real[path]


def _find(soname: str, needer: ElfInfo, dirs: Iterable[str], disk: _Disk) -> Optional[Path]:
    """The first file named ``soname`` in ``dirs`` of the needer's ELF class and machine;
    a folder inside the wheel is looked up among its members (paths as strings: this runs
    for every need of every file, times every folder searched), one outside it only when
    the walk is not confined to the wheel."""
    if "/" in soname:
        return Path(soname) if not disk.inside_only and Path(soname).is_file() else None
    want = (needer.elf_class, needer.machine)
    for folder in dirs:
        candidate = f"{folder}{os.sep}{soname}" if folder else soname  # "": the cwd
        inside = os.path.normpath(candidate)
        if inside.startswith(disk.prefix):
            member = disk.members.get(inside)
            if member is not None and (member.elf_class, member.machine) == want:
                return Path(candidate)
            continue
        if not disk.inside_only and disk.header(candidate) == want:
            return Path(candidate)
    return None


@dataclass(frozen=True)
class Library:
    """One soname as the loader resolves it for a wheel file."""

    soname: str
    path: Optional[Path]
    """The file found on the search path (None when nowhere; also for libpython)."""
    realpath: Optional[Path]
    """``path`` with symlinks resolved: the file that is read and, if vendored, copied."""
    needed: Tuple[str, ...] = ()
    """Its own DT_NEEDED entries."""
    version_needs: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    """Its symbol version needs (soname -> versions), counted when it is vendored."""
    isa_level: Optional[str] = None
    searched: Tuple[str, ...] = ()
    """The folders searched for it (for the message when it is not found)."""
    needer: str = ""
    """The soname or wheel member whose DT_NEEDED first asked for it."""
    exported: Tuple[str, ...] = ()
    """The symbols it defines (what it provides to the files that need it)."""
    loader_rpaths: Tuple[str, ...] = ()
    """The DT_RPATH folders of the objects that loaded it, nearest first: its own searches
    inherit them (see :func:`search_dirs`)."""


@dataclass(frozen=True)
class LoadTree:
    """What loading one wheel member brings in, every soname once, in the loader's order."""

    member: str
    needed: Tuple[str, ...]
    """The member's own DT_NEEDED entries (excluded ones left out)."""
    libraries: Mapping[str, Library]


@dataclass(frozen=True)
class Dependencies:
    """The result of the one walk over a wheel: a load tree per root member."""

    root: Path
    """The folder the wheel was unpacked in (what counts as inside it)."""
    trees: Mapping[str, LoadTree]
    """Per root member: extensions and files no other member needs."""
    member_needed: Mapping[str, Tuple[str, ...]]
    """Every walked member's DT_NEEDED, excluded sonames left out."""
    excluded: FrozenSet[str]
    """The ``exclude`` patterns that matched a soname or a library's path."""

    def inside(self, path: Optional[Path]) -> bool:
        """True when ``path`` is a file of the unpacked wheel."""
        return path is not None and _inside(path, self.root)

    def member_of(self, path: Optional[Path]) -> Optional[str]:
        """The wheel member path of ``path``, if it is inside the wheel."""
        if not self.inside(path):
            return None
        assert path is not None
        return Path(os.path.relpath(os.path.normpath(path), self.root)).as_posix()

    def external(self, whitelist: FrozenSet[str]) -> Dict[str, Library]:
        """The libraries the root members reach outside the wheel when ``whitelist`` and the
        loaders stay on the system. libpython counts (a wheel that links it fails where
        Python is static) but is not entered: a repair removes the need, never vendors it."""
        out: Dict[str, Library] = {}
        for tree in self.trees.values():
            todo = list(tree.needed)
            seen: set[str] = set()
            while todo:
                soname = todo.pop(0)
                if soname in seen or soname in whitelist or soname.startswith(LOADER_PREFIXES):
                    continue
                seen.add(soname)
                lib = tree.libraries.get(soname)
                if lib is None:
                    continue
                if not self.inside(lib.realpath):
                    out.setdefault(soname, lib)
                todo += list(lib.needed)
        return out

    def libraries(self) -> Dict[str, Library]:
        """Every soname the walk met, as the first tree that loads it resolves it."""
        out: Dict[str, Library] = {}
        for tree in self.trees.values():
            for soname, lib in tree.libraries.items():
                if soname not in out or (out[soname].path is None and lib.path is not None):
                    out[soname] = lib
        return out

    def closure(self, needed: Iterable[str]) -> Tuple[str, ...]:
        """The sonames ``needed`` loads, directly or through each other."""
        libs = self.libraries()
        todo = list(needed)
        seen: Dict[str, None] = {}
        while todo:
            soname = todo.pop(0)
            if soname in seen:
                continue
            seen[soname] = None
            lib = libs.get(soname)
            if lib is not None:
                todo += list(lib.needed)
        return tuple(seen)

    def needers(self, soname: str) -> Tuple[str, ...]:
        """The root members whose load trees reach ``soname``."""
        return tuple(m for m, t in self.trees.items() if soname in t.libraries)


def _matches(exclude: Sequence[str], *names: str) -> List[str]:
    return [g for g in exclude for n in names if fnmatch.fnmatch(n, g)]


def _walk(member: str, root: Path, infos: Dict[Path, ElfInfo], paths: LinkerPaths,
          exclude: Sequence[str], matched: set[str], system: FrozenSet[str], disk: _Disk,
          ) -> Tuple[LoadTree, Dict[str, Tuple[str, ...]]]:
    """Breadth-first, as ld.so maps dependencies: each need is searched from its needer."""
    start = root / member
    info = infos[start]
    libraries: Dict[str, Library] = {}
    if info.soname:
        libraries[info.soname] = Library(info.soname, start, start, info.needed,
                                         info.version_needs, info.isa_level, (), member,
                                         info.exported)
    member_needed: Dict[str, Tuple[str, ...]] = {}
    queue: Deque[Tuple[Path, ElfInfo, str, Tuple[str, ...]]] = deque(
        [(start, info, member, ())])
    top_needed: Tuple[str, ...] = ()
    while queue:
        path, obj, label, loader_rpaths = queue.popleft()
        kept: List[str] = []
        for soname in obj.needed:
            hits = _matches(exclude, soname)
            if hits:
                matched.update(hits)
                continue
            kept.append(soname)
            if soname in libraries or soname.startswith(LOADER_PREFIXES):
                continue
            if is_libpython(soname):
                libraries[soname] = Library(soname, None, None, needer=label)
                continue
            dirs = search_dirs(obj, path, paths, loader_rpaths)
            found = _find(soname, obj, dirs, disk)
            if found is None:
                libraries[soname] = Library(soname, None, None, searched=dirs, needer=label)
                continue
            real = disk.resolved(found)
            hits = _matches(exclude, str(real))
            if hits:
                matched.update(hits)
                kept.pop()
                continue
            if is_libc_own(soname) or soname in system:
                # the C library, and what every policy allows, need nothing a wheel could
                # vendor: found, not entered (reading libstdc++'s symbols costs time)
                libraries[soname] = Library(soname, found, real, searched=dirs, needer=label)
                continue
            if real not in infos:
                infos[real] = read_elf(real)
            lib_info = infos[real]
            chain = _own_rpath(obj, path) + tuple(loader_rpaths)
            libraries[soname] = Library(soname, found, real, lib_info.needed,
                                        lib_info.version_needs, lib_info.isa_level, dirs, label,
                                        lib_info.exported, chain)
            queue.append((found, lib_info, soname, chain))
        if path == start:
            top_needed = tuple(kept)
        else:
            member_needed[str(disk.resolved(path))] = tuple(kept)
    return LoadTree(member, top_needed, libraries), member_needed


def walk_wheel(root: Path, members: Sequence[str], infos: Mapping[str, ElfInfo],
               extensions: Iterable[str] = (), *, paths: Optional[LinkerPaths] = None,
               exclude: Sequence[str] = (), system: FrozenSet[str] = frozenset(),
               inside_only: bool = False) -> Dependencies:
    """Walk what the ELF ``members`` (unpacked under ``root``, facts in ``infos``) load.

    Roots are the Python ``extensions`` and every member no other member needs by file name;
    libraries of the wheel that only other members load are walked as part of their trees,
    with the RPATHs of the objects that load them, as ``ld.so`` does. Sonames in ``system``
    (allowed by every policy) are found but not entered. With ``inside_only`` no file
    outside the wheel is looked at: a library is found in the wheel or not at all.
    """
    paths = paths or LinkerPaths.from_system()
    root = root.resolve()
    by_path: Dict[Path, ElfInfo] = {root / m: infos[m] for m in members}
    needed_names = {n for m in members for n in infos[m].needed}
    exts = set(extensions)
    roots = [m for m in members if m in exts or Path(m).name not in needed_names]
    matched: set[str] = set()
    trees: Dict[str, LoadTree] = {}
    member_needed: Dict[str, Tuple[str, ...]] = {}
    reached: set[str] = set()
    disk = _Disk(root, by_path, inside_only)

    def walk(member: str) -> None:
        tree, needs = _walk(member, root, by_path, paths, exclude, matched, system, disk)
        trees[member] = tree
        member_needed.setdefault(member, tree.needed)
        for real, kept in needs.items():
            inner = Path(real)
            try:
                name = inner.relative_to(root).as_posix()
            except ValueError:
                continue
            member_needed.setdefault(name, kept)
            reached.add(name)

    for member in roots:
        walk(member)
    # members only reachable from each other (a cycle, or needed by a name nothing maps)
    for member in members:
        if member not in trees and member not in reached:
            walk(member)
    return Dependencies(root, trees, member_needed, frozenset(matched))
