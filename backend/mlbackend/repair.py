"""Repair a wheel: vendor the external libraries its binaries load into ``<name>.libs/``.

The work is split in two: :func:`plan_repair` resolves every library and decides every
edit (nothing is written), :func:`apply_plan` copies the libraries and patches the files.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

from ._log import emit
from .elf import LOADER_PREFIXES, ElfInfo
from .errors import RepairError, WheelError, os_error
from .patcher import ElfEdit, apply_edits, find_patchelf, strip_files
from .resolve import LinkerPaths, WheelLibraries, expand_origin

if TYPE_CHECKING:
    from .audit import AuditReport
    from .policy import Policy
    from .wheel_reader import WheelReader

__all__ = ["RepairPlan", "RepairResult", "VendoredLib", "apply_plan", "plan_repair",
           "repair_tree", "vendored_name"]

_LIBPYTHON = re.compile(r"^libpython\d+\.\d+m?\.so(\.\d)*$")


@dataclass(frozen=True)
class VendoredLib:
    """One external library copied into the wheel."""

    soname: str
    """The DT_NEEDED name the wheel's binaries use today."""
    source: Path
    """The file the dynamic linker would load."""
    member: str
    """Its path in the repaired wheel, e.g. ``foo.libs/libyaml-0-1a2b3c4d.so.2``."""
    needed_by: Tuple[str, ...]
    """The wheel members or vendored sonames that load it directly."""

    @property
    def new_soname(self) -> str:
        """The SONAME it gets, which is also its file name."""
        return self.member.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RepairPlan:
    """Everything a repair will do, decided before any file is touched."""

    libs_dir: str
    vendored: Tuple[VendoredLib, ...]
    edits: Tuple[ElfEdit, ...]
    """One edit per file, vendored libraries included (by their new member path)."""
    strip: bool = False


@dataclass(frozen=True)
class RepairResult:
    """What a repair changed in the unpacked wheel."""

    vendored: Mapping[str, str] = field(default_factory=dict)
    """Original soname -> new member path."""
    added: Mapping[str, int] = field(default_factory=dict)
    """New member path -> file mode."""
    patched: Tuple[str, ...] = ()
    """Existing members that were modified."""


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.digest()


def vendored_name(soname: str, data: bytes, *, digest: Optional[bytes] = None) -> str:
    """auditwheel's name for a vendored copy: ``<stem>-<8 hex of sha256>.<rest>``."""
    short = (digest or hashlib.sha256(data).digest()).hex()[:8]
    stem, dot, rest = soname.partition(".")
    if stem.endswith(f"-{short}"):
        return soname
    return f"{stem}-{short}{dot}{rest}"


@dataclass
class _Walk:
    """What the wheel's files load from outside it, and which file needs each library."""

    libs: WheelLibraries
    whitelist: frozenset[str]
    exclude: Tuple[str, ...]
    found: Dict[str, Path] = field(default_factory=dict)
    needers: Dict[str, List[str]] = field(default_factory=dict)

    def vendorable(self, soname: str) -> bool:
        return not (any(fnmatch.fnmatch(soname, g) for g in self.exclude)
                    or soname.startswith(LOADER_PREFIXES) or soname in self.whitelist
                    or _LIBPYTHON.match(soname) is not None)

    def walk(self, member: str) -> set[str]:
        """Resolve what ``member`` loads; the external sonames it reaches."""
        start = self.libs.root / member
        by_path = {path: soname for soname, path in self.found.items()}
        reached: set[str] = set()
        for load in self.libs.loads(start, self.vendorable):
            label = member if load.needer == start else by_path.get(load.needer, load.soname)
            if "/" in load.soname or load.soname in ("", ".", ".."):
                raise WheelError(
                    f"{label} needs {load.soname!r}: a DT_NEEDED entry that is a path is "
                    "loaded from wherever it points, so it cannot be vendored",
                    tip="link against the library by its soname (-lNAME), not by path")
            if load.path is None:
                raise RepairError(
                    f"cannot find {load.soname}, needed by {label}; searched: "
                    f"{', '.join(self.libs.searched(load)) or 'no folders'}",
                    tip="install the library, add its folder to LD_LIBRARY_PATH, or "
                        "exclude it (--exclude / exclude = [...])")
            if self.libs.inside(load.path):
                continue  # a member of the wheel: walked on its own
            by_path.setdefault(load.path, load.soname)
            self.found.setdefault(load.soname, load.path)
            if label not in self.needers.setdefault(load.soname, []):
                self.needers[load.soname].append(label)
            reached.add(load.soname)
        return reached


def _kept_rpath(info: ElfInfo, member: str, root: Path) -> List[str]:
    """The member's RPATH/RUNPATH entries that point inside the wheel."""
    kept: List[str] = []
    origin = (root / member).parent
    for entry in info.runpath or info.rpath:
        if "$ORIGIN" not in entry and "${ORIGIN}" not in entry:
            continue
        target = Path(os.path.normpath(expand_origin(entry, origin)))
        try:
            target.relative_to(root)
        except ValueError:
            continue
        kept.append(entry)
    return kept


def _origin_path(member: str, libs_dir: str) -> str:
    relative = os.path.relpath(libs_dir, str(Path(member).parent))
    return "$ORIGIN" if relative == "." else f"$ORIGIN/{relative}"


def plan_repair(root: Path, members: Sequence[str], policy: Policy, *, libs_dir: str,
                exclude: Sequence[str] = (), paths: Optional[LinkerPaths] = None,
                strip: bool = False, known: Optional[Mapping[str, ElfInfo]] = None,
                ) -> RepairPlan:
    """Decide how to vendor what the ELF ``members`` under ``root`` load that ``policy``
    does not allow; raises RepairError (before anything is written) if a library is missing.

    ``known`` holds ELF facts already read (member -> info), so they are not read again.
    """
    libs = WheelLibraries(root.resolve(), paths or LinkerPaths.from_system())
    libs.infos.update({root.resolve() / m: info for m, info in (known or {}).items()})
    walk = _Walk(libs, policy.whitelist, tuple(exclude))
    reached = {member: walk.walk(member) for member in members}
    taken = set(members)
    vendored: Dict[str, VendoredLib] = {}
    for soname in sorted(walk.found):
        source = walk.found[soname]
        member = f"{libs_dir}/{vendored_name(soname, b'', digest=_file_sha256(source))}"
        if member in taken:
            raise WheelError(f"cannot vendor {soname}: {member} is already in the wheel")
        taken.add(member)
        vendored[soname] = VendoredLib(soname, source, member, tuple(walk.needers[soname]))
    renames = {lib.soname: lib.new_soname for lib in vendored.values()}
    edits: List[ElfEdit] = []
    for member in members:
        info = libs.info(root.resolve() / member)
        replace = tuple((n, renames[n]) for n in info.needed if n in renames)
        rpath = None
        if reached[member]:
            entries = [*_kept_rpath(info, member, root.resolve()),
                       _origin_path(member, libs_dir)]
            rpath = ":".join(dict.fromkeys(entries))
        remove = tuple(n for n in info.needed if _LIBPYTHON.match(n))
        for name in remove:
            emit("warning", f"{member}: removing its DT_NEEDED {name} (linking libpython is "
                            "not allowed in manylinux wheels)")
        if replace or rpath is not None or remove:
            edits.append(ElfEdit(member, replace_needed=replace, remove_needed=remove,
                                 rpath=rpath))
    for lib in vendored.values():
        replace = tuple((n, renames[n]) for n in libs.info(lib.source).needed if n in renames)
        edits.append(ElfEdit(lib.member, soname=lib.new_soname, replace_needed=replace,
                             rpath="$ORIGIN" if replace else ""))
    return RepairPlan(libs_dir, tuple(vendored.values()), tuple(edits), strip)


def apply_plan(plan: RepairPlan, root: Path) -> RepairResult:
    """Copy the vendored libraries under ``root``, strip them if asked, patch every file."""
    patchelf = find_patchelf()
    added: Dict[str, int] = {}
    for lib in plan.vendored:
        target = root / lib.member
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib.source, target)
        mode = (lib.source.stat().st_mode & 0o777) | 0o200
        target.chmod(mode)
        added[lib.member] = mode
    if plan.strip:
        strip_files([root / lib.member for lib in plan.vendored])
    apply_edits(root, plan.edits, patchelf)
    return RepairResult(
        vendored={lib.soname: lib.member for lib in plan.vendored},
        added=added,
        patched=tuple(sorted(e.member for e in plan.edits if e.member not in added)),
    )


def libs_dir_name(wheel: WheelReader) -> str:
    """``<distribution>.libs``, named after the wheel's ``.dist-info`` folder."""
    return wheel.dist_info.split("-", 1)[0] + ".libs"


def repair_tree(wheel: WheelReader, root: Path, members: List[str], report: AuditReport,
                policy: Policy, *, exclude: Sequence[str] = (),
                strip: bool = False) -> RepairResult:
    """Vendor what the wheel unpacked under ``root`` needs beyond ``policy`` (see module doc)."""
    audited = [e.file for e in report.elves] or list(members)
    plan = plan_repair(root, audited, policy, libs_dir=libs_dir_name(wheel), exclude=exclude,
                       strip=strip, known={e.file: e.info for e in report.elves})
    if not plan.vendored and not plan.edits:
        return RepairResult()
    _unpack(wheel, [e.member for e in plan.edits if e.member in audited], root)
    return apply_plan(plan, root)


def _unpack(wheel: WheelReader, members: Sequence[str], root: Path) -> None:
    """Write the wheel ``members`` patchelf will edit under ``root``, streamed and checked by
    the reader (they were audited from memory; no other member is written)."""
    for name in members:
        member = wheel.get(name)  # the reader has checked the name
        target = root / name
        if target.exists():
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as out:
                for piece in wheel.chunks(member):
                    out.write(piece)
            target.chmod(member.mode | 0o600)
        except OSError as exc:
            raise os_error(exc, exc.filename or target, "cannot extract") from None
