"""The audit's verdict on one wheel, and how it reads: the CLI, the backend and the Action
all render an :class:`AuditReport`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from .elf import ElfInfo
from .policy import Policy, PolicySet, version_key

__all__ = ["AuditReport", "Blocker", "ElfSummary", "version_key"]


@dataclass(frozen=True)
class Blocker:
    """One reason a file cannot meet a policy."""

    file: str
    """The wheel member (or ``*`` for the whole wheel)."""
    kind: str
    """``symbol``, ``library``, ``blacklist``, ``pyfpe``, ``isa`` or ``libc``."""
    what: str
    """e.g. ``pthread_create@GLIBC_2.34`` or ``libyaml-0.so.2``."""

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
class AuditReport:
    """The verdict on one wheel; the CLI, the backend and the Action all render this."""

    wheel: str
    target: str
    pure: bool
    arch: Optional[str] = None
    libc: Optional[str] = None
    policies: Optional[PolicySet] = None
    policy: Optional[Policy] = None
    """The most compatible policy every ELF satisfies."""
    repairable_policy: Optional[Policy] = None
    """The most compatible policy reachable by vendoring the external libraries."""
    externals: Mapping[str, Mapping[str, Optional[str]]] = field(default_factory=dict)
    """Policy name -> external soname -> resolved path (None when not found)."""
    needed_by: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    """External soname -> wheel members that need it (directly or through another)."""
    elves: Tuple[ElfSummary, ...] = ()
    blocked_policy: Optional[Policy] = None
    """The target when missed, else the next more compatible policy, if any."""
    blockers: Tuple[Blocker, ...] = ()
    notes: Tuple[str, ...] = ()
    unmatched_excludes: Tuple[str, ...] = ()
    """``exclude`` globs that match no library the wheel loads."""

    @property
    def tags(self) -> Tuple[str, ...]:
        """Platform tags for the file name: the policy's tag then its legacy aliases."""
        return self.policy.tags if self.policy is not None else ()

    @property
    def wheel_tags(self) -> Tuple[str, ...]:
        """Tags for the file name: the policy's, then, when a target was met with room to
        spare, the target's too (as ``auditwheel repair --plat`` does)."""
        tags = self.tags
        if self.policies is None or self.policy is None or self.target == "auto":
            return tags
        wanted = self.policies.find(self.target)
        if wanted is not None and not wanted.is_linux and wanted.priority < self.policy.priority:
            tags += tuple(t for t in wanted.tags if t not in tags)
        return tags

    @property
    def tag(self) -> str:
        """The PEP 600/656 platform tag, or ``any`` for a wheel without binaries."""
        return self.policy.name if self.policy is not None else "any"

    @property
    def target_met(self) -> bool:
        """True when no target was set or the tag is at least as compatible as the target."""
        if self.pure or self.target == "auto":
            return True
        wanted = self.policies.find(self.target) if self.policies is not None else None
        return wanted is not None and self.policy is not None \
            and self.policy.priority >= wanted.priority

    def versioned_symbols(self) -> Dict[str, Tuple[str, ...]]:
        """Soname -> sorted versions needed by the wheel's ELF files."""
        out: Dict[str, set[str]] = {}
        for elf in self.elves:
            for lib, versions in elf.info.version_needs.items():
                out.setdefault(lib, set()).update(versions)
        return {k: tuple(sorted(v, key=version_key)) for k, v in sorted(out.items())}

    def blocker_lines(self) -> List[str]:
        """One line per file: the symbols/libraries that block ``blocked_policy`` (or the
        target, when the binaries use the other libc)."""
        if not self.blockers:
            return []
        by_file: Dict[str, List[str]] = {}
        for b in self.blockers:
            by_file.setdefault(b.file, []).append(b.what)
        prefixes = {b.what.split("@", 1)[1].partition("_")[0]
                    for b in self.blockers if b.kind == "symbol" and "@" in b.what}
        if self.blocked_policy is None:
            target, limit = self.target, "is for the other libc"
        else:
            target, limit = self.blocked_policy.base, _limit_text(self.blocked_policy, prefixes)
        lines = []
        for file, whats in by_file.items():
            shown = ", ".join(whats[:8]) + (f" (+{len(whats) - 8} more)" if len(whats) > 8 else "")
            lines.append(f"{Path(file).name}: {shown} (target {target} {limit})")
        return lines

    @property
    def reason(self) -> str:
        """Why the wheel has its tag, in one paragraph."""
        if self.pure or self.policy is None:
            return "no ELF files: a pure Python wheel keeps its tags"
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
        if self.policy.is_linux and self.repairable_policy and not self.repairable_policy.is_linux:
            libs = sorted(self.externals.get(self.repairable_policy.name, {}))
            text += f"; external libraries not in the wheel: {', '.join(libs)}"
        elif ext:
            text += f"; external libraries: {', '.join(sorted(ext))}"
        if self.blockers:
            blocked = self.blocked_policy.name if self.blocked_policy else self.target
            text += f". {blocked} is blocked by: " + "; ".join(
                self.blocker_lines())
        return text

    def to_dict(self) -> Dict[str, object]:
        """A JSON-ready view of the report."""
        return {
            "wheel": self.wheel, "pure": self.pure, "tag": self.tag, "tags": list(self.tags),
            "target": self.target, "target_met": self.target_met, "arch": self.arch,
            "libc": self.libc, "reason": self.reason,
            "repairable_tag": self.repairable_policy.name if self.repairable_policy else None,
            "blocked_policy": self.blocked_policy.name if self.blocked_policy else None,
            "blockers": [{"file": b.file, "kind": b.kind, "what": b.what} for b in self.blockers],
            "external_libs": dict(self.externals.get(self.policy.name, {}))
            if self.policy and not self.policy.is_linux else
            dict(self.externals.get(self.repairable_policy.name, {}))
            if self.repairable_policy else {},
            "versioned_symbols": {k: list(v) for k, v in self.versioned_symbols().items()},
            "elf_files": [{
                "file": e.file, "extension": e.is_extension, "needed": list(e.info.needed),
                "rpath": list(e.info.rpath), "runpath": list(e.info.runpath),
                "unversioned_symbols": list(e.unversioned)} for e in self.elves],
            "notes": list(self.notes),
        }


def _limit_text(policy: Policy, prefixes: Iterable[str]) -> str:
    parts = []
    for prefix in ("GLIBC", "GLIBCXX", "CXXABI", "GCC"):
        version = policy.version(prefix)
        if version is not None and prefix in prefixes:
            parts.append(f"{prefix} <= {'.'.join(map(str, version))}")
    return f"allows {', '.join(parts)}" if parts else "forbids these"
