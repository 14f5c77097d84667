"""Audit a wheel: which policy every ELF in it satisfies, and what blocks the next one
(the result is a :class:`~mlbackend.report.AuditReport`)."""

from __future__ import annotations

import fnmatch
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .elf import LOADER_PREFIXES, ElfInfo
from .errors import AuditError
from .policy import Policy, load_policies
from .report import AuditReport, Blocker, ElfSummary
from .resolve import LinkerPaths, WheelLibraries
from .wheel_reader import WheelReader

__all__ = [
    "AuditReport",
    "Blocker",
    "ElfSummary",
    "audit_tree",
    "audit_wheel",
    "read_wheel_elves",
]

_PYTHON_PREFIXES = ("Py", "_Py", "PyInit_")


def read_wheel_elves(reader: WheelReader) -> Dict[str, ElfInfo]:
    """Check every member of the wheel in one pass and decode those that are ELF files
    (never written whole to disk); member -> facts, in archive order."""
    from .wheel_scan import scan_wheel

    return dict(scan_wheel(reader).elves)


def _blacklisted(elf: ElfSummary, policy: Policy) -> List[str]:
    hits = []
    for lib in elf.info.needed:
        banned = policy.blacklist.get(lib)
        used = banned & elf.info.undefined_names if banned else frozenset()
        if used:
            hits += sorted({s.name for s in elf.info.undefined if not s.weak
                            and s.name in used})
    return hits


def _symbol_blockers(elf: ElfSummary, policy: Policy) -> List[Blocker]:
    out: List[Blocker] = []
    for lib, versions in elf.info.version_needs.items():
        for version in versions:
            prefix, _, number = version.partition("_")
            allowed = policy.symbol_versions.get(prefix)
            if allowed is None or number in allowed:
                continue
            syms = sorted({f"{s}{' (weak)' if s.weak else ''}"
                           for s in elf.info.versioned.get((version, lib), ())})
            out += [Blocker(elf.file, "symbol", s) for s in syms] or [
                Blocker(elf.file, "symbol", f"{lib} {version}")]
    return out


def _blockers(elves: Sequence[ElfSummary], policy: Policy,
              externals: Mapping[str, Mapping[str, Optional[str]]],
              needed_by: Mapping[str, Tuple[str, ...]], *, libraries: bool) -> List[Blocker]:
    if policy.is_linux:
        return []
    out: List[Blocker] = []
    for elf in elves:
        out += _symbol_blockers(elf, policy)
        out += [Blocker(elf.file, "blacklist", f"{s} (blacklisted)")
                for s in _blacklisted(elf, policy)]
        if "PyFPE_jbuf" in elf.info.undefined_names:
            out.append(Blocker(elf.file, "pyfpe", "PyFPE_jbuf"))
        if elf.info.isa_level is not None:
            out.append(Blocker(elf.file, "isa", f"needs the {elf.info.isa_level} instruction "
                                                "set (-march); policies assume the baseline"))
    if libraries:
        for lib in sorted(externals.get(policy.name, {})):
            for file in needed_by.get(lib, ("*",)):
                out.append(Blocker(file, "library", f"{lib} (not in the wheel, not allowed "
                                                    f"by {policy.base})"))
    return out


def _unversioned(info: ElfInfo, libc: str) -> Tuple[str, ...]:
    if libc != "glibc":  # musl has no symbol versions: nothing to report there
        return ()
    return tuple(sorted(s.name for s in info.undefined
                        if s.version is None and not s.weak
                        and not s.name.startswith(_PYTHON_PREFIXES)))


def audit_tree(
    wheel_name: str,
    root: Path,
    members: Iterable[str],
    *,
    target: str = "auto",
    exclude: Sequence[str] = (),
    paths: Optional[LinkerPaths] = None,
    known: Optional[Mapping[str, ElfInfo]] = None,
) -> AuditReport:
    """Audit the ELF ``members`` of a wheel unpacked under ``root``.

    ``known`` holds facts already decoded (member -> info): those members are not read from
    ``root``, and need not be there (the audit of a wheel reads them from memory).
    """
    root = root.resolve()
    libs = WheelLibraries(root, paths or LinkerPaths.from_system())
    libs.infos.update({root / m: info for m, info in (known or {}).items()})
    notes: List[str] = []
    elves: List[ElfSummary] = []
    arch = libc = None
    for member in members:
        if ".data/purelib/" in member:
            raise AuditError(f"{wheel_name}: shared library {member} is in purelib",
                             tip="binaries must be installed to platlib")
        try:
            info = libs.info(root / member)
        except AuditError as exc:
            raise AuditError(f"{wheel_name}: {exc.message.replace(str(root) + '/', '')}",
                             tip=exc.tip) from None
        by_path = [n for n in info.needed if "/" in n]
        if by_path:
            raise AuditError(f"{wheel_name}: {member} needs {by_path[0]!r}, a path: the loader "
                             "opens whatever that path holds on the user's machine",
                             tip="link against the library by its soname (-lNAME)")
        if info.arch is None:
            notes.append(f"{member}: ignored, unknown architecture {info.machine}")
            continue
        arch = arch or info.arch
        if info.arch != arch:
            notes.append(f"{member}: ignored, architecture {info.arch} is not {arch}")
            continue
        if info.libc is not None:
            libc = libc or info.libc
            if info.libc != libc:
                notes.append(f"{member}: ignored, libc {info.libc} is not {libc}")
                continue
        name = Path(member).name
        elves.append(ElfSummary(member, info, info.is_python_extension(name), ()))
    if not elves:
        return AuditReport(wheel=wheel_name, target=target, pure=True, notes=tuple(notes))
    libc = libc or ("musl" if "musllinux" in wheel_name else "glibc")
    elves = [replace(e, unversioned=_unversioned(e.info, libc)) for e in elves]
    # a target for the other libc can never be met: audit as auto, then say why not
    other_libc = target != "auto" and not target.startswith(
        "musllinux" if libc == "musl" else "manylinux")
    wanted_target = "auto" if other_libc else target
    policies = load_policies(libc, arch or "x86_64", wanted_target)
    matched: set[str] = set()

    def excluded(soname: str) -> bool:
        hits = {glob for glob in exclude if fnmatch.fnmatch(soname, glob)}
        matched.update(hits)
        return bool(hits)

    externals: Dict[str, Dict[str, Optional[str]]] = {}
    needed_by: Dict[str, List[str]] = {}
    walked: Dict[frozenset[str], Dict[str, Optional[str]]] = {}
    for policy in policies:
        if policy.is_linux:
            continue
        if policy.whitelist in walked:  # most policies share a whitelist: same walk
            externals[policy.name] = walked[policy.whitelist]
            continue

        def follow(soname: str, allowed: frozenset[str] = policy.whitelist) -> bool:
            return not (excluded(soname) or soname.startswith(LOADER_PREFIXES)
                        or soname in allowed)

        merged: Dict[str, Optional[str]] = {}
        for elf in elves:
            for load in libs.loads(root / elf.file, follow):
                if libs.inside(load.path):
                    continue
                merged.setdefault(load.soname, str(load.path) if load.path else None)
                if elf.file not in needed_by.setdefault(load.soname, []):
                    needed_by[load.soname].append(elf.file)
        externals[policy.name] = walked[policy.whitelist] = merged
    frozen_needed = {k: tuple(v) for k, v in needed_by.items()}

    def best(libraries: bool) -> Policy:
        for candidate in reversed(policies.policies):
            if not _blockers(elves, candidate, externals, frozen_needed, libraries=libraries):
                return candidate
        return policies.linux

    policy = best(True)
    repairable = best(False)
    if wanted_target != "auto":
        wanted = policies.find(target)
        if wanted is None:
            raise AuditError(f"no policy {target} for {arch}",
                             tip="choose a target that exists for this architecture")
        blocked: Optional[Policy] = wanted if wanted.priority > policy.priority else None
    else:
        higher = [p for p in policies if p.priority > policy.priority]
        blocked = higher[0] if higher else None
    blockers = _blockers(elves, blocked, externals, frozen_needed, libraries=True) \
        if blocked is not None else []
    for elf in elves:
        if elf.unversioned:
            shown = ", ".join(elf.unversioned[:6]) + (" ..." if len(elf.unversioned) > 6 else "")
            notes.append(f"{elf.file}: unversioned undefined symbols ({shown}) are looked up "
                         "only at import time; an old glibc may not have them")
    weak = sorted({(b.file, b.what) for b in blockers if b.what.endswith(" (weak)")})
    for file, what in weak:
        notes.append(f"{file}: weak reference {what[:-7]} is newer than "
                     f"{blocked.base if blocked else 'the target'}: it still counts, as the "
                     "version need is recorded; loaders without it fail to load the file")
    if other_libc:
        blocked, blockers = None, [Blocker(e.file, "libc", f"links {libc}") for e in elves]
    return AuditReport(
        wheel=wheel_name, target=target, pure=False, arch=arch, libc=libc, policies=policies,
        policy=policy, repairable_policy=repairable, externals=externals,
        needed_by=frozen_needed, elves=tuple(elves), blocked_policy=blocked,
        blockers=tuple(blockers), notes=tuple(notes),
        unmatched_excludes=tuple(g for g in exclude if g not in matched))


def audit_wheel(path: Path, *, target: str = "auto", exclude: Sequence[str] = (),
                paths: Optional[LinkerPaths] = None) -> AuditReport:
    """Audit the wheel file at ``path`` (reads it, changes nothing)."""
    from .wheel_scan import scan_wheel

    with WheelReader.open(path) as reader:
        scan = scan_wheel(reader)
    infos = dict(scan.elves)
    with tempfile.TemporaryDirectory(prefix="mlbackend-audit-") as tmp:  # stays empty
        report = audit_tree(path.name, Path(tmp), list(infos), target=target, exclude=exclude,
                            paths=paths, known=infos)
    from .coexist import with_coexistence

    return with_coexistence(report, path, scan.python)

