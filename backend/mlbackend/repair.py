"""Repair a wheel: vendor the external libraries its binaries load into ``<name>.libs/``.

The work is split in two: :func:`plan_repair` resolves every library and decides every
edit (nothing is written), :func:`apply_plan` copies the libraries and patches the files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

from ._log import emit
from .elf import ElfInfo
from .errors import RepairError, WheelError, os_error
from .patcher import ElfEdit, apply_edits, find_patchelf, strip_files
from .resolve import expand_origin, is_libc_own, is_libpython

if TYPE_CHECKING:
    from .policy import Policy
    from .report import BinaryReport
    from .wheel_reader import WheelReader

__all__ = ["RepairPlan", "RepairResult", "VendoredLib", "apply_plan", "dist_name", "is_script",
           "plan_repair", "repair_tree", "script_launcher", "vendored_name"]


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
    moves: Tuple[Tuple[str, str], ...] = ()
    """ELF programs under ``.data/scripts/`` moved into platlib (old member, new member);
    a launcher takes the old place."""


@dataclass(frozen=True)
class RepairResult:
    """What a repair changed in the unpacked wheel."""

    vendored: Mapping[str, str] = field(default_factory=dict)
    """Original soname -> new member path."""
    sources: Mapping[str, Path] = field(default_factory=dict)
    """Original soname -> the file it was copied from."""
    added: Mapping[str, int] = field(default_factory=dict)
    """New member path -> file mode."""
    patched: Tuple[str, ...] = ()
    """Existing members that were modified."""
    moved: Mapping[str, str] = field(default_factory=dict)
    """Old member -> new member, for ELF programs replaced by a launcher."""


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.digest()


def vendored_name(filename: str, data: bytes, *, digest: Optional[bytes] = None) -> str:
    """auditwheel's name for a vendored copy of the file ``filename`` (the real file, not the
    soname symlink): ``<stem>-<8 hex of sha256>.<rest>``."""
    short = (digest or hashlib.sha256(data).digest()).hex()[:8]
    stem, dot, rest = filename.partition(".")
    if stem.endswith(f"-{short}"):
        return filename
    return f"{stem}-{short}{dot}{rest}"


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


def is_script(member: str) -> bool:
    """True for ``<name>.data/scripts/<file>``: installed to a bin folder, away from platlib."""
    parts = member.split("/")
    return len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "scripts"


def script_launcher(moved_to: str) -> bytes:
    """A Python launcher that runs the ELF program moved to ``moved_to`` in platlib (the
    program's RPATH then finds the vendored libraries; a script folder is elsewhere)."""
    return (
        "#!python\n"
        "import os\n"
        "import sys\n"
        "import sysconfig\n"
        "\n"
        "\n"
        'if __name__ == "__main__":\n'
        "    os.execv(\n"
        f'        os.path.join(sysconfig.get_path("platlib"), {moved_to!r}),\n'
        "        sys.argv,\n"
        "    )\n").encode()


def plan_repair(report: BinaryReport, policy: Policy, *, libs_dir: str, scripts_dir: str,
                strip: bool = False) -> RepairPlan:
    """Decide how to vendor what ``policy`` does not allow, from the audit's own walk of the
    wheel; raises RepairError (before anything is written) if a library cannot be vendored."""
    deps = report.dependencies
    root = deps.root
    libraries = deps.libraries()
    wanted = {k: v for k, v in deps.external(policy.whitelist).items() if not is_libpython(k)}
    taken = {e.file for e in report.elves}
    vendored: Dict[str, VendoredLib] = {}
    for soname in sorted(wanted):
        lib = wanted[soname]
        users = deps.needers(soname) or (lib.needer,)
        if "/" in soname or soname in ("", ".", ".."):
            raise WheelError(
                f"{lib.needer} needs {soname!r}: a DT_NEEDED entry that is a path is "
                "loaded from wherever it points, so it cannot be vendored",
                tip="link against the library by its soname (-lNAME), not by path")
        if is_libc_own(soname):
            raise RepairError(
                f"cannot vendor {soname}, needed by {', '.join(users)}: it is part of the C "
                f"library, which {policy.base} does not allow",
                tip=f"build against an older C library, or target a policy that allows "
                    f"{soname} (the audit's repairable tag names one)")
        if lib.path is None or lib.realpath is None:
            raise RepairError(
                f"cannot find {soname}, needed by {lib.needer} (loaded by "
                f"{', '.join(users)}); searched: {', '.join(lib.searched) or 'no folders'}",
                tip="install the library, add its folder to LD_LIBRARY_PATH, or "
                    "exclude it (--exclude / exclude = [...])")
        member = f"{libs_dir}/{vendored_name(lib.realpath.name, lib.realpath.read_bytes())}"
        if member in taken:
            raise WheelError(f"cannot vendor {soname}: {member} is already in the wheel")
        taken.add(member)
        vendored[soname] = VendoredLib(soname, lib.realpath, member, users)
    renames = {lib.soname: lib.new_soname for lib in vendored.values()}
    edits: List[ElfEdit] = []
    moves: List[Tuple[str, str]] = []
    for elf in report.elves:
        member, info = elf.file, elf.info
        needed = deps.member_needed.get(member, info.needed)
        replace = tuple((n, renames[n]) for n in needed if n in renames)
        reaches = any(n in renames for n in deps.closure(needed))
        target = member
        if reaches and is_script(member):
            target = f"{scripts_dir}/{member.rsplit('/', 1)[1]}"
            moves.append((member, target))
        rpath = None
        if reaches:
            entries = [*_kept_rpath(info, member, root), _origin_path(target, libs_dir)]
            rpath = ":".join(dict.fromkeys(entries))
        remove = tuple(n for n in needed if is_libpython(n))
        for name in remove:
            emit("warning", f"{member}: removing its DT_NEEDED {name} (linking libpython is "
                            "not allowed in manylinux wheels)")
        if replace or rpath is not None or remove:
            edits.append(ElfEdit(target, replace_needed=replace, remove_needed=remove,
                                 rpath=rpath))
    for copy in vendored.values():
        copy_needed = libraries[copy.soname].needed if copy.soname in libraries else ()
        replace = tuple((n, renames[n]) for n in copy_needed if n in renames)
        edits.append(ElfEdit(copy.member, soname=copy.new_soname, replace_needed=replace,
                             rpath="$ORIGIN" if replace else ""))
    return RepairPlan(libs_dir, tuple(vendored.values()), tuple(edits), strip, tuple(moves))


def apply_plan(plan: RepairPlan, root: Path) -> RepairResult:
    """Copy the vendored libraries under ``root``, move ELF scripts behind a launcher, strip
    if asked, patch every file."""
    patchelf = find_patchelf()
    added: Dict[str, int] = {}
    for lib in plan.vendored:
        target = root / lib.member
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib.source, target)
        mode = (lib.source.stat().st_mode & 0o777) | 0o200
        target.chmod(mode)
        added[lib.member] = mode
    for old, new in plan.moves:
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        mode = (root / old).stat().st_mode & 0o777
        (root / old).replace(root / new)
        (root / old).write_bytes(script_launcher(new))
        added[new] = mode
    if plan.strip:
        strip_files([root / lib.member for lib in plan.vendored])
    apply_edits(root, plan.edits, patchelf)
    moved = {old for old, _ in plan.moves}
    return RepairResult(
        vendored={lib.soname: lib.member for lib in plan.vendored},
        sources={lib.soname: lib.source for lib in plan.vendored},
        added=added,
        patched=tuple(sorted({e.member for e in plan.edits if e.member not in added}
                             | moved)),
        moved=dict(plan.moves),
    )


def dist_name(wheel_name: str) -> str:
    """The distribution part of a wheel file name (``numpy`` in ``numpy-2.0-...whl``)."""
    return wheel_name.split("-", 1)[0]


def repair_tree(wheel: WheelReader, report: BinaryReport, root: Path, policy: Policy, *,
                strip: bool = False) -> RepairResult:
    """Vendor what ``wheel`` needs beyond ``policy`` (see module doc); ``root`` is the folder
    the audit's walk took for the wheel's (it holds only the files the repair writes)."""
    name = dist_name(report.wheel)
    plan = plan_repair(report, policy, libs_dir=f"{name}.libs", scripts_dir=f"{name}.scripts",
                       strip=strip)
    if not plan.vendored and not plan.edits:
        return RepairResult()
    audited = {e.file for e in report.elves}
    _unpack(wheel, sorted({e.member for e in plan.edits if e.member in audited}
                          | {old for old, _ in plan.moves}), root)
    return apply_plan(plan, root)


def _unpack(wheel: WheelReader, members: Sequence[str], root: Path) -> None:
    """Write the wheel ``members`` patchelf will edit (or a launcher replaces) under ``root``,
    streamed and checked by the reader (they were audited from memory; no other member is
    written)."""
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
