"""Audit a wheel: which policy every ELF in it satisfies, and what blocks the next one
(the result is a :class:`~mlbackend.report.BinaryReport`, or a
:class:`~mlbackend.report.PureReport` for a wheel without ELF files)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .elf import ElfInfo, read_elf
from .errors import AuditError
from .policy import Policy, load_policies
from .report import AuditReport, BinaryReport, Blocker, ElfSummary, PureReport
from .resolve import Library, LinkerPaths, is_libc_own, is_libpython, walk_wheel
from .tags import wheel_platforms
from .wheel_reader import WheelReader

__all__ = [
    "AuditReport",
    "BinaryReport",
    "Blocker",
    "ElfSummary",
    "PureReport",
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


def _disallowed(elf: ElfSummary, policy: Policy) -> Iterator[Tuple[str, str]]:
    """(library, version) of each symbol version ``elf`` needs that ``policy`` forbids."""
    for lib, versions in elf.info.version_needs.items():
        for version in versions:
            prefix, _, number = version.partition("_")
            allowed = policy.symbol_versions.get(prefix)
            if allowed is not None and number not in allowed:
                yield lib, version


def _symbol_blockers(elf: ElfSummary, policy: Policy) -> List[Blocker]:
    out: List[Blocker] = []
    for lib, version in _disallowed(elf, policy):
        syms = sorted({(s.name, s.weak) for s in elf.info.versioned.get((version, lib), ())})
        out += [Blocker(elf.file, "symbol", f"{name}@{version}{' (weak)' if weak else ''}",
                        symbol=name, version=version, weak=weak)
                for name, weak in syms] or [
            Blocker(elf.file, "symbol", f"{lib} {version}", version=version)]
    return out


def _root_blockers(elf: ElfSummary) -> List[Blocker]:
    """What keeps a root file from every policy alike: PyFPE_jbuf, UCS2 and ISA levels."""
    out: List[Blocker] = []
    if "PyFPE_jbuf" in elf.info.undefined_names:
        out.append(Blocker(elf.file, "pyfpe", "PyFPE_jbuf"))
    if elf.is_extension:
        ucs2 = sorted(n for n in elf.info.undefined_names if "PyUnicodeUCS2_" in n)
        if ucs2:
            out.append(Blocker(elf.file, "ucs2", f"{ucs2[0]} (built for a narrow-unicode "
                                                 "(UCS2) Python)"))
    if elf.info.isa_level is not None:
        out.append(Blocker(elf.file, "isa", f"needs the {elf.info.isa_level} instruction "
                                            "set (-march); policies assume the baseline"))
    return out


def _blockers(elves: Sequence[ElfSummary], policy: Policy,
              externals: Mapping[str, Mapping[str, Optional[str]]],
              needed_by: Mapping[str, Tuple[str, ...]], roots: Mapping[str, List[Blocker]],
              *, libraries: bool) -> List[Blocker]:
    """What keeps ``elves`` from ``policy``: symbol versions of every file; black-listed
    symbols of the root files, and what keeps them from any policy (``roots``: root file ->
    those blockers, as auditwheel counts them); with ``libraries``, the external libraries
    too."""
    if policy.is_linux:
        return []
    out: List[Blocker] = []
    for elf in elves:
        out += _symbol_blockers(elf, policy)
        if elf.file not in roots:
            continue
        out += [Blocker(elf.file, "blacklist", f"{s} (blacklisted)")
                for s in _blacklisted(elf, policy)]
        out += roots[elf.file]
    if libraries:
        for lib in sorted(externals.get(policy.name, {})):
            for file in needed_by.get(lib, ("*",)):
                out.append(Blocker(file, "library", f"{lib} (not in the wheel, not allowed "
                                                    f"by {policy.base})"))
    return out


def _unversioned(info: ElfInfo, libc: str) -> List[str]:
    """Undefined, unversioned, strong, non-Python symbols: bound only at import time, where
    an old glibc may lack them (musl has no symbol versions: none to report there)."""
    if libc != "glibc":
        return []
    return [s.name for s in info.undefined if s.version is None and not s.weak
            and not s.name.startswith(_PYTHON_PREFIXES)]


_MUSL_SUFFIXES = ("-linux-musl.so", "-arm-linux-musleabihf.so")
_GNU_SUFFIXES = ("-linux-gnu.so", "-arm-linux-gnueabihf.so")


def _libc_of(info: ElfInfo, name: str) -> Optional[str]:
    """The libc a binary is for: from its loader and needs, else its extension suffix;
    a static program with no other sign is glibc's (musl programs are rarely static)."""
    if info.libc is not None:
        return info.libc
    if name.endswith(_MUSL_SUFFIXES):
        return "musl"
    # musl Pythons before 3.11 also named extensions -linux-gnu: only later ones tell
    match = re.search(r"\.cpython-3(\d+)", name)
    if name.endswith(_GNU_SUFFIXES) and match and int(match.group(1)) >= 11:
        return "glibc"
    return None


def _host_libc() -> str:
    """The C library of the running system (``glibc`` or ``musl``)."""
    import os

    try:
        return "glibc" if os.confstr("CS_GNU_LIBC_VERSION") else "musl"
    except (ValueError, OSError):
        return "musl"


def _name_facts(wheel_name: str) -> Tuple[set[str], set[str]]:
    """Architectures and libcs the wheel's file name claims (``linux_*`` claims no libc)."""
    arches: set[str] = set()
    libcs: set[str] = set()
    try:
        platforms = wheel_platforms(wheel_name)
    except ValueError:
        return arches, libcs
    for tag in platforms:
        match = _PLATFORM_RE.match(tag)
        if match is None:
            continue
        arches.add(match.group("arch"))
        if match.group("family") in ("manylinux", "musllinux"):
            libcs.add("musl" if match.group("family") == "musllinux" else "glibc")
    return arches, libcs


_PLATFORM_RE = re.compile(
    r"^(?P<family>manylinux|musllinux|linux)(?:_\d+_\d+|1|2010|2014)?_(?P<arch>[a-z0-9_]+?)$")


def _closure_symbol_blockers(libs: Mapping[str, Library], policy: Policy) -> List[Blocker]:
    """What vendoring ``libs`` costs under ``policy``: their own symbol versions and ISA."""
    out: List[Blocker] = []
    for soname, lib in sorted(libs.items()):
        if is_libpython(soname):
            continue  # the repair removes the need
        if is_libc_own(soname):
            out.append(Blocker(soname, "library", f"{soname} (part of the C library: never "
                                                  f"vendored, not allowed by {policy.base})"))
            continue
        if lib.path is None:
            continue  # the forecast says it is missing; its versions are unknown
        for dep, versions in lib.version_needs.items():
            for version in versions:
                prefix, _, number = version.partition("_")
                allowed = policy.symbol_versions.get(prefix)
                if allowed is not None and number not in allowed:
                    out.append(Blocker(soname, "symbol", f"{dep} {version}", version=version))
        if lib.isa_level is not None:
            out.append(Blocker(soname, "isa", f"needs the {lib.isa_level} instruction set"))
    return out


def audit_tree(
    wheel_name: str,
    root: Path,
    members: Iterable[str],
    *,
    target: str = "auto",
    exclude: Sequence[str] = (),
    paths: Optional[LinkerPaths] = None,
    known: Optional[Mapping[str, ElfInfo]] = None,
) -> BinaryReport:
    """Audit the ELF ``members`` of a wheel unpacked under ``root`` (at least one: a wheel
    without ELF files is a :class:`PureReport`, which needs no audit of binaries).

    ``known`` holds facts already decoded (member -> info): those members are not read from
    ``root``, and need not be there (the audit of a wheel reads them from memory).
    """
    root = root.resolve()
    known = known or {}
    notes: List[str] = []
    elves: List[ElfSummary] = []
    infos: Dict[str, ElfInfo] = {}
    arch = ""  # the first audited member's; the others must share it
    libc: Optional[str] = None
    unknown: List[str] = []
    for member in members:
        if ".data/purelib/" in member:
            raise AuditError(f"{wheel_name}: shared library {member} is in purelib",
                             tip="binaries must be installed to platlib")
        try:
            info = known[member] if member in known else read_elf(root / member)
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
            unknown.append(f"{member} ({info.machine.replace('EM_', '').lower()})")
            continue
        arch = arch or info.arch
        if info.arch != arch:
            notes.append(f"{member}: ignored, architecture {info.arch} is not {arch}")
            continue
        name = Path(member).name
        member_libc = _libc_of(info, name)
        if member_libc is not None:
            libc = libc or member_libc
            if member_libc != libc:
                notes.append(f"{member}: ignored, libc {member_libc} is not {libc}")
                continue
        infos[member] = info
        elves.append(ElfSummary(member, info, info.is_python_extension(name), ()))
    if not elves and unknown:
        raise AuditError(f"{wheel_name}: no binary for an architecture with a manylinux or "
                         f"musllinux policy: {', '.join(unknown)}",
                         tip="build the wheel for x86_64, i686, aarch64, armv7l, ppc64le, "
                             "s390x, riscv64 or loongarch64")
    if not elves:  # only when there were no members: every other case kept one or raised
        raise AuditError(f"{wheel_name}: no ELF file to audit",
                         tip="a pure Python wheel needs no audit of its binaries")
    name_arches, name_libcs = _name_facts(wheel_name)
    if "armv6l" in name_arches:  # armv6 hard-float code is armv7l's ABI
        name_arches.add("armv7l")
    if name_arches and arch not in name_arches:
        raise AuditError(f"{wheel_name}: the file name says {', '.join(sorted(name_arches))} "
                         f"but {elves[0].file} is built for {arch}",
                         tip=f"rename the wheel to its real architecture ({arch}) or rebuild it")
    libc_known = libc is not None
    if not libc_known and not all(e.info.is_static for e in elves):
        libc = "musl" if name_libcs == {"musl"} else "glibc" if name_libcs else _host_libc()
        notes.append(f"no binary says which C library it is for (none loads one): audited "
                     f"as {libc}, {'as the file name says' if name_libcs else 'the libc of '}"
                     f"{'' if name_libcs else 'this machine, as auditwheel does for programs'}")
    libc = libc or "glibc"
    if libc_known and name_libcs and libc not in name_libcs:
        raise AuditError(f"{wheel_name}: the file name says "
                         f"{'musllinux' if 'musl' in name_libcs else 'manylinux'} but "
                         f"{elves[0].file} links {libc}",
                         tip="rebuild the wheel for the libc its name promises, or rename it")
    # a target for the other libc can never be met: audit as auto, then say why not
    other_libc = target != "auto" and not target.startswith(
        "musllinux" if libc == "musl" else "manylinux")
    wanted_target = "auto" if other_libc else target
    policies = load_policies(libc, arch, wanted_target)
    everywhere = [p.whitelist for p in policies if not p.is_linux]
    deps = walk_wheel(root, [e.file for e in elves], infos,
                      [e.file for e in elves if e.is_extension], paths=paths, exclude=exclude,
                      system=frozenset.intersection(*everywhere) if everywhere else frozenset())
    libraries = deps.libraries()
    exports: Dict[str, frozenset[str]] = {}

    def provided(soname: str) -> frozenset[str]:
        """What ``soname`` defines, as a set made the first time it is asked for."""
        if soname not in exports:
            exports[soname] = frozenset(libraries[soname].exported)
        return exports[soname]

    for i, elf in enumerate(elves):
        names = _unversioned(elf.info, libc)
        if names:  # those the libraries the file loads define are resolved, not at risk
            sets = [provided(soname)
                    for soname in deps.member_needed.get(elf.file, elf.info.needed)
                    if soname in libraries and not is_libc_own(soname)]
            names = [n for n in names if not any(n in p for p in sets)]
        elves[i] = replace(elf, unversioned=tuple(sorted(names)))
    roots = {e.file: _root_blockers(e) for e in elves if e.file in deps.trees}
    reached: Dict[str, Dict[str, Library]] = {}
    externals: Dict[str, Dict[str, Optional[str]]] = {}
    by_whitelist: Dict[frozenset[str], Dict[str, Library]] = {}
    for policy in policies:
        if policy.is_linux:
            continue
        if policy.whitelist not in by_whitelist:  # most policies share a whitelist
            by_whitelist[policy.whitelist] = deps.external(policy.whitelist)
        reached[policy.name] = by_whitelist[policy.whitelist]
        externals[policy.name] = {k: str(v.realpath) if v.realpath else None
                                  for k, v in reached[policy.name].items()}
    needed_by = {soname: deps.needers(soname)
                 for libs in reached.values() for soname in libs}

    def blockers_for(candidate: Policy, *, libraries: bool) -> List[Blocker]:
        out = _blockers(elves, candidate, externals, needed_by, roots, libraries=libraries)
        if not libraries and not candidate.is_linux:
            out += _closure_symbol_blockers(reached[candidate.name], candidate)
        return out

    def best(libraries: bool) -> Policy:
        for candidate in reversed(policies.policies):
            # the symbol versions rule most candidates out: checked before any blocker is made
            if not any(next(_disallowed(e, candidate), None) for e in elves) \
                    and not blockers_for(candidate, libraries=libraries):
                return candidate
        return policies.linux

    policy = best(True)
    repairable = best(False)
    # as auditwheel: never a policy that vendors more than the fewest any policy needs
    counts = [len(v) for v in reached.values()]
    fewest = min(counts, default=0)
    graft = max((p for p in policies if not p.is_linux and len(reached[p.name]) <= fewest),
                key=lambda p: p.priority, default=policies.linux)
    if graft.priority < repairable.priority:
        repairable = graft
    if wanted_target != "auto":
        wanted = policies.find(target)
        if wanted is None:
            raise AuditError(f"no policy {target} for {arch}",
                             tip="choose a target that exists for this architecture")
        blocked: Optional[Policy] = wanted if wanted.priority > policy.priority else None
    else:
        higher = [p for p in policies if p.priority > policy.priority]
        blocked = higher[0] if higher else None
    blockers = _blockers(elves, blocked, externals, needed_by, roots, libraries=True) \
        if blocked is not None else []
    for elf in elves:
        if elf.unversioned:
            shown = ", ".join(elf.unversioned[:6]) + (" ..." if len(elf.unversioned) > 6 else "")
            notes.append(f"{elf.file}: unversioned undefined symbols ({shown}) are looked up "
                         "only at import time; an old glibc may not have them")
    weak = sorted({(b.file, f"{b.symbol}@{b.version}") for b in blockers if b.weak})
    for file, what in weak:
        notes.append(f"{file}: weak reference {what} is newer than "
                     f"{blocked.base if blocked else 'the target'}: it still counts, as the "
                     "version need is recorded; loaders without it fail to load the file")
    if other_libc:
        blocked, blockers = None, [Blocker(e.file, "libc", f"links {libc}") for e in elves]
    repair_blockers: Tuple[Blocker, ...] = ()
    if repairable.priority < policies.highest.priority:
        nxt = next(p for p in policies if p.priority > repairable.priority)
        repair_blockers = tuple(blockers_for(nxt, libraries=False))
    return BinaryReport(
        wheel=wheel_name, target=target, arch=arch, libc=libc, policies=policies,
        policy=policy, repairable_policy=repairable, dependencies=deps, elves=tuple(elves),
        externals=externals, needed_by=needed_by, blocked_policy=blocked,
        blockers=tuple(blockers), notes=tuple(notes),
        unmatched_excludes=tuple(g for g in exclude if g not in deps.excluded),
        repair_blockers=repair_blockers)


def audit_wheel(path: Path, *, target: str = "auto", exclude: Sequence[str] = (),
                paths: Optional[LinkerPaths] = None) -> AuditReport:
    """Audit the wheel file at ``path`` (reads it, changes nothing)."""
    from .wheel_scan import scan_wheel

    with WheelReader.open(path) as reader:
        scan = scan_wheel(reader)
    infos = dict(scan.elves)
    report: AuditReport = PureReport(path.name, target)
    if infos:
        with tempfile.TemporaryDirectory(prefix="mlbackend-audit-") as tmp:  # stays empty
            report = audit_tree(path.name, Path(tmp), list(infos), target=target,
                                exclude=exclude, paths=paths, known=infos)
    from .coexist import with_coexistence

    return with_coexistence(report, path, scan.python)

