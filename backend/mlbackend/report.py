"""The audit's verdict on one wheel, and how it reads: the CLI, the backend and the Action
all render an :data:`AuditReport`, a :class:`BinaryReport` for a wheel with ELF files or a
:class:`PureReport` for one without."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    ClassVar,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from .policy import Policy, PolicySet, version_key

if TYPE_CHECKING:
    from .coexist import CoexistReport
    from .elf import ElfInfo
    from .resolve import Dependencies

__all__ = ["AuditReport", "BinaryReport", "Blocker", "BlockerKind", "ElfSummary", "PureReport",
           "render_text", "version_key"]


BlockerKind = Literal["symbol", "library", "blacklist", "pyfpe", "ucs2", "isa", "libc"]

_LEGACY = {"manylinux1": "manylinux_2_5", "manylinux2010": "manylinux_2_12",
           "manylinux2014": "manylinux_2_17"}


@dataclass(frozen=True)
class Blocker:
    """One reason a file cannot meet a policy."""

    file: str
    """The wheel member (or ``*`` for the whole wheel)."""
    kind: BlockerKind
    what: str
    """The text shown, e.g. ``pthread_create@GLIBC_2.34`` or ``libyaml-0.so.2 (...)``."""
    symbol: Optional[str] = None
    """For ``symbol`` blockers: the symbol (None when only the version need is known)."""
    version: Optional[str] = None
    """For ``symbol`` blockers: the version it binds to, e.g. ``GLIBC_2.34``."""
    weak: bool = False
    """For ``symbol`` blockers: the reference is weak (still recorded as a version need)."""

    def __str__(self) -> str:
        return self.what


@dataclass(frozen=True)
class ElfSummary:
    """The facts the audit used about one ELF member."""

    file: str
    info: ElfInfo
    is_extension: bool
    unversioned: Tuple[str, ...]
    """Undefined, unversioned, non-Python symbols (resolved only at import time)."""

    def newest(self, prefix: str) -> Optional[str]:
        """The newest version this file needs with ``prefix`` (e.g. ``GLIBC_2.34``)."""
        found = [v for vs in self.info.version_needs.values() for v in vs
                 if v.partition("_")[0] == prefix]
        return max(found, key=version_key) if found else None


@dataclass(frozen=True)
class PureReport:
    """The verdict on a wheel without ELF files: it keeps its tags, nothing blocks it."""

    wheel: str
    target: str
    coexist: Optional[CoexistReport] = None
    """Hazards and run-time loads of its Python files (see coexist.py); None until checked."""

    pure: ClassVar[Literal[True]] = True
    tag: ClassVar[str] = "any"
    """Not a platform tag: the wheel has no binaries."""
    tags: ClassVar[Tuple[str, ...]] = ()
    target_met: ClassVar[bool] = True
    """A wheel without binaries meets every target."""
    reason: ClassVar[str] = "no ELF files: a pure Python wheel keeps its tags"
    elves: ClassVar[Tuple[ElfSummary, ...]] = ()

    def to_dict(self) -> Dict[str, object]:
        """A JSON-ready view of the report, with the keys of :meth:`BinaryReport.to_dict`."""
        return {
            "wheel": self.wheel, "pure": True, "tag": self.tag, "tags": [],
            "target": self.target, "target_met": True, "arch": None, "libc": None,
            "reason": self.reason, "repairable_tag": None, "repair": None,
            "blocked_policy": None, "blockers": [], "external_libs": {},
            "versioned_symbols": {}, "elf_files": [], "notes": [],
            **(self.coexist.to_dict() if self.coexist is not None else {}),
        }


@dataclass(frozen=True)
class BinaryReport:
    """The verdict on a wheel's ELF files: the policy they meet, what a repair reaches, what
    blocks the next step."""

    wheel: str
    target: str
    arch: str
    libc: str
    """``glibc`` or ``musl``."""
    policies: PolicySet
    """The policies of ``libc`` and ``arch`` the audit weighed."""
    policy: Policy
    """The most compatible policy every ELF satisfies (the linux policy when none does)."""
    repairable_policy: Policy
    """The most compatible policy reachable by vendoring the external libraries (the linux
    policy when none is)."""
    dependencies: Dependencies
    """The loader walk the verdict rests on; the repair vendors from it."""
    elves: Tuple[ElfSummary, ...]
    externals: Mapping[str, Mapping[str, Optional[str]]] = field(default_factory=dict)
    """Policy name -> external soname -> resolved path (None when not found)."""
    needed_by: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    """External soname -> wheel members that need it (directly or through another)."""
    blocked_policy: Optional[Policy] = None
    """The target when missed, else the next more compatible policy; None when the policy
    met is the most compatible, or the target is for the other libc."""
    blockers: Tuple[Blocker, ...] = ()
    notes: Tuple[str, ...] = ()
    unmatched_excludes: Tuple[str, ...] = ()
    """``exclude`` globs that match no library the wheel loads."""
    coexist: Optional[CoexistReport] = None
    """Hazards next to other wheels, abi3 violations, run-time loads (see coexist.py); None
    until checked (the bare audit of the ELF files does not look at them)."""
    repair_blockers: Tuple[Blocker, ...] = ()
    """What keeps a repair from the next policy above ``repairable_policy``."""

    pure: ClassVar[Literal[False]] = False

    @property
    def repair_summary(self) -> str:
        """What a repair reaches, what it vendors to get there, and what stops it going
        further, in one sentence (the JSON's ``repair.text``)."""
        aim = self.repairable_policy
        libs = sorted(self.externals.get(aim.name, {})) if not aim.is_linux else []
        text = f"a repair reaches {aim.name}"
        text += f" by vendoring {', '.join(libs)}" if libs else " without vendoring anything"
        if self.repair_blockers:
            text += "; beyond it: " + "; ".join(
                f"{b.file}: {b.what}" for b in self.repair_blockers[:6])
        return text

    @property
    def tags(self) -> Tuple[str, ...]:
        """Platform tags for the file name: the policy's tag then its legacy aliases."""
        return self.policy.tags

    @property
    def wheel_tags(self) -> Tuple[str, ...]:
        """Tags for the file name: the policy's, then, when a target was met with room to
        spare, the target's too (as ``auditwheel repair --plat`` does)."""
        tags = self.tags
        if self.target == "auto":
            return tags
        wanted = self.policies.find(self.target)
        if wanted is not None and not wanted.is_linux and wanted.priority < self.policy.priority:
            tags += tuple(t for t in wanted.tags if t not in tags)
        return tags

    def still_true(self, tag: str) -> bool:
        """True when a platform tag the wheel carries still holds for its binaries: same
        architecture, and a policy at most as compatible as the one met (either libc's for
        static programs, which need none)."""
        if self.policy.is_linux or not tag.endswith(f"_{self.arch}"):
            return False
        base = tag[: -len(self.arch) - 1]
        base = _LEGACY.get(base, base)
        family, _, version = base.partition("_")
        met_family, _, met_version = self.policy.base.partition("_")
        if family != met_family:
            return family in ("manylinux", "musllinux") and bool(self.elves) and all(
                e.info.is_static for e in self.elves)
        return bool(version) and version_key(version) >= version_key(met_version)

    @property
    def tag(self) -> str:
        """The PEP 600/656 platform tag (``linux_<arch>`` when no policy is met)."""
        return self.policy.name

    @property
    def target_met(self) -> bool:
        """True when no target was set or the tag is at least as compatible as the target."""
        if self.target == "auto":
            return True
        wanted = self.policies.find(self.target)
        return wanted is not None and self.policy.priority >= wanted.priority

    def versioned_symbols(self) -> Dict[str, Tuple[str, ...]]:
        """Soname -> sorted versions needed by the wheel's ELF files."""
        out: Dict[str, set[str]] = {}
        for elf in self.elves:
            for lib, versions in elf.info.version_needs.items():
                out.setdefault(lib, set()).update(versions)
        return {k: tuple(sorted(v, key=_version_order)) for k, v in sorted(out.items())}

    @property
    def blocked_name(self) -> str:
        """What the blockers block, named for what it is: ``the target manylinux_2_17_x86_64``
        or, with no target, ``the next policy (manylinux_2_31_x86_64)``."""
        if self.blocked_policy is None:
            return f"the target {self.target}"
        if self.target != "auto":
            return f"the target {self.blocked_policy.name}"
        return f"the next policy ({self.blocked_policy.name})"

    def blocker_lines(self) -> List[str]:
        """One line per file: the symbols/libraries that block ``blocked_policy`` (or the
        target, when the binaries use the other libc)."""
        if not self.blockers:
            return []
        by_file: Dict[str, List[str]] = {}
        for b in self.blockers:
            by_file.setdefault(b.file, []).append(b.what)
        prefixes = {b.version.partition("_")[0]
                    for b in self.blockers if b.kind == "symbol" and b.version}
        if self.blocked_policy is None:
            limit = f" (target {self.target} is for the other libc)"
        elif all(b.kind == "library" for b in self.blockers):
            limit = ""  # each library blocker already names the policy that does not allow it
        else:
            named = f"target {self.blocked_policy.base}" if self.target != "auto" \
                else self.blocked_policy.base
            limit = f" ({named} {_limit_text(self.blocked_policy, prefixes)})"
        lines = []
        for file, whats in by_file.items():
            shown = ", ".join(whats[:8]) + (f" (+{len(whats) - 8} more)" if len(whats) > 8 else "")
            lines.append(f"{Path(file).name}: {shown}{limit}")
        return lines

    @property
    def tag_reason(self) -> str:
        """Why the wheel has its tag: the policy, the newest versions, the external libraries."""
        needs = []
        for prefix in ("GLIBC", "GLIBCXX", "CXXABI", "GCC"):
            newest = [(e.newest(prefix), e.file) for e in self.elves if e.newest(prefix)]
            if newest:
                version, file = max(newest, key=lambda vf: version_key(vf[0] or ""))
                needs.append(f"{version} ({Path(file).name})")
        text = f"{self.tag}: the most compatible {self.libc} policy all {len(self.elves)} ELF " \
               f"file(s) satisfy"
        text += f"; newest versions needed: {', '.join(needs)}" if needs else ""
        ext = self.externals.get(self.policy.name, {})
        if self.policy.is_linux and not self.repairable_policy.is_linux:
            libs = sorted(self.externals.get(self.repairable_policy.name, {}))
            text += f"; external libraries not in the wheel: {', '.join(libs)}"
        elif ext:
            text += f"; external libraries: {', '.join(sorted(ext))}"
        return text

    @property
    def reason(self) -> str:
        """Why the wheel has its tag and what blocks the next step, in one paragraph (for
        one-line uses: the build log, the pipeline's report)."""
        text = self.tag_reason
        if self.blockers:
            blocked = self.blocked_name
            text += f". {blocked[0].upper()}{blocked[1:]} is blocked by: " + "; ".join(
                self.blocker_lines())
        return text

    def repair_forecast(self) -> Optional[str]:
        """What vendoring the external libraries would reach, or None when a repair would not
        raise the tag."""
        aim = self.repairable_policy
        if aim.priority <= self.policy.priority:
            return None
        libs = self.externals.get(aim.name, {})
        if not libs:
            return None
        missing = sorted(name for name, path in libs.items() if path is None)
        text = f"vendoring {', '.join(sorted(libs))} would reach {aim.name}"
        if missing:
            text += f" (not found on this system, so a repair here fails: {', '.join(missing)})"
        return text

    def to_dict(self) -> Dict[str, object]:
        """A JSON-ready view of the report."""
        aim = self.repairable_policy
        return {
            "wheel": self.wheel, "pure": False, "tag": self.tag, "tags": list(self.tags),
            "target": self.target, "target_met": self.target_met, "arch": self.arch,
            "libc": self.libc, "reason": self.reason,
            "repairable_tag": aim.name,
            "repair": {
                "tag": aim.name,
                "vendors": sorted(self.externals.get(aim.name, {})) if not aim.is_linux else [],
                "blockers": [{"file": b.file, "kind": b.kind, "what": b.what}
                             for b in self.repair_blockers],
                "text": self.repair_summary},
            "blocked_policy": self.blocked_policy.name if self.blocked_policy else None,
            "blockers": [{"file": b.file, "kind": b.kind, "what": b.what} for b in self.blockers],
            "external_libs": dict(self.externals.get(self.policy.name, {}))
            if not self.policy.is_linux else dict(self.externals.get(aim.name, {})),
            "versioned_symbols": {k: list(v) for k, v in self.versioned_symbols().items()},
            "elf_files": [{
                "file": e.file, "extension": e.is_extension, "needed": list(e.info.needed),
                "rpath": list(e.info.rpath), "runpath": list(e.info.runpath),
                "unversioned_symbols": list(e.unversioned)} for e in self.elves],
            "notes": list(self.notes),
            **(self.coexist.to_dict() if self.coexist is not None else {}),
        }


AuditReport = Union[BinaryReport, PureReport]
"""What an audit of a wheel returns: the entry points (``audit_wheel``, ``finish``) serve
either; the steps on binaries (repair, the proof, the re-audit) take a :class:`BinaryReport`."""


def _version_order(version: str) -> Tuple[Tuple[int, ...], str]:
    """Versions by number, then by name (``OPENSSL_1_1_0`` before ``OPENSSL_1_1_0d``): the
    same order on every run, whatever the order the set held them in."""
    return version_key(version), version


def render_text(report: AuditReport) -> str:
    """The report as ``mlbackend audit`` prints it, each fact once: the tag, why, what each
    ELF file needs, what blocks the next step, what a repair would reach, notes."""
    lines = [f"{report.wheel}: {report.tag}"]
    if report.pure:
        lines.append("  pure Python wheel: no ELF files")
        return "\n".join(lines)
    if report.tags[1:]:
        lines.append(f"  aliases: {', '.join(report.tags[1:])}")
    lines.append(f"  reason: {report.tag_reason}")
    for elf in report.elves:
        needs = ", ".join(f"{lib} ({', '.join(sorted(v, key=_version_order))})"
                          for lib, v in elf.info.version_needs.items())
        lines.append(f"  {elf.file}: needs {', '.join(elf.info.needed) or 'nothing'}"
                     + (f"; versions {needs}" if needs else ""))
    if report.blockers:
        lines.append(f"  blocking {report.blocked_name}:")
        lines += [f"    {line}" for line in report.blocker_lines()]
    forecast = report.repair_forecast()
    if forecast is not None:
        lines.append(f"  repair: {forecast}")
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def _limit_text(policy: Policy, prefixes: Iterable[str]) -> str:
    parts = []
    for prefix in ("GLIBC", "GLIBCXX", "CXXABI", "GCC"):
        version = policy.version(prefix)
        if version is not None and prefix in prefixes:
            parts.append(f"{prefix} <= {'.'.join(map(str, version))}")
    return f"allows {', '.join(parts)}" if parts else "forbids these"
