"""Will the wheel load next to other wheels? The coexistence hazards, the abi3 check and
the run-time loads of an audited wheel in one report; and, for a repaired wheel, the proof
that it loads and its SBOM, before it is written."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from ._log import emit
from .abi3 import Abi3Violation, abi3_minimum, abi3_violations
from .dlopen import DlopenUse, dlopen_uses
from .errors import AuditError, RepairError, TargetMissedError
from .hazards import Hazard, elf_hazards, python_hazards
from .pysource import PythonFacts, python_facts

if TYPE_CHECKING:
    from .owners import OwnerQuery
    from .policy import Policy
    from .repair import RepairResult
    from .report import AuditReport, BinaryReport
    from .settings import Settings
    from .wheel_reader import WheelReader

__all__ = ["CoexistReport", "check_coexistence", "coexist_text", "finish_checks",
           "with_coexistence"]


@dataclass(frozen=True)
class CoexistReport:
    """What can break the wheel at run time though its tag is right."""

    hazards: Tuple[Hazard, ...] = ()
    abi3_minimum: Optional[str] = None
    """The oldest Python an abi3 wheel declares (``3.9``), None for other wheels."""
    abi3_violations: Tuple[Abi3Violation, ...] = ()
    dlopen: Tuple[DlopenUse, ...] = ()
    notes: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, object]:
        """The JSON fields ``hazards``, ``abi3_violations``, ``dlopen`` of the audit."""
        return {"hazards": [h.to_dict() for h in self.hazards],
                "abi3_minimum": self.abi3_minimum,
                "abi3_violations": [v.to_dict() for v in self.abi3_violations],
                "dlopen": [d.to_dict() for d in self.dlopen]}

    def lines(self) -> List[str]:
        """The report as text lines (without indentation)."""
        out = [f"hazard: {h.file}: {h.kind}: {h.detail}\n  why: {h.advice}"
               for h in self.hazards]
        out += [f"abi3: {v.file}: {v.symbol} {v.detail}" for v in self.abi3_violations]
        out += [f"dlopen: {d}" for d in self.dlopen]
        return out + [f"note: {n}" for n in self.notes]


def _vendored(member: str) -> bool:
    return PurePosixPath(member).parts[0].endswith(".libs")


def _allowed_policy(report: AuditReport) -> Optional[Policy]:
    """The policy whose whitelist says which run-time loads the system provides: the one
    met, else the one a repair reaches, else the most compatible; None for a pure wheel."""
    if report.pure:
        return None
    for policy in (report.policy, report.repairable_policy):
        if not policy.is_linux:
            return policy
    return report.policies.highest


def check_coexistence(wheel: Path, report: AuditReport,
                      python: Optional[Sequence[PythonFacts]] = None) -> CoexistReport:
    """The coexistence report of the wheel file ``wheel`` whose ELF files ``report``
    audited (after a repair, ``report`` is the audit of the repaired files); ``python``,
    the loader facts of its Python files when the caller has them, spares a second read."""
    python = tuple(python) if python is not None else python_facts(wheel)
    elves = [(e.file, e.info, e.is_extension) for e in report.elves]
    hazards = elf_hazards(elves, [e.file for e in report.elves if _vendored(e.file)])
    hazards += python_hazards(python)
    shipped = {PurePosixPath(e.file).name for e in report.elves}
    shipped |= {e.info.soname for e in report.elves if e.info.soname}
    policy = _allowed_policy(report)
    allowed = policy.whitelist if policy is not None else None
    uses = dlopen_uses([(e.file, e.info) for e in report.elves], python, shipped, allowed)
    minimum = abi3_minimum(report.wheel)
    violations: Tuple[Abi3Violation, ...] = ()
    notes: List[str] = []
    if minimum is not None:
        try:
            violations = abi3_violations(minimum, [(e.file, e.info) for e in report.elves
                                                   if not _vendored(e.file)])
        except ImportError:
            notes.append("the abi3 check needs the abi3info package (Python 3.10 or newer: "
                         "pip install 'manylinux-backend[cli]')")
    return CoexistReport(hazards, f"{minimum[0]}.{minimum[1]}" if minimum else None,
                         violations, uses, tuple(notes))


def with_coexistence(report: AuditReport, wheel: Path,
                     python: Optional[Sequence[PythonFacts]] = None) -> AuditReport:
    """``report`` with its coexistence report attached."""
    return replace(report, coexist=check_coexistence(wheel, report, python))


def coexist_text(report: AuditReport) -> str:
    """The coexistence lines of ``report`` for ``mlbackend audit``, indented, or ``""``."""
    if report.coexist is None:
        return ""
    return "".join(f"\n  {line}" for text in report.coexist.lines()
                   for line in text.splitlines())


def _prove(root: Path, report: BinaryReport, added: Sequence[str],
           exclude: Sequence[str]) -> None:
    from .proof import prove

    problems = prove(root, {e.file: e.info for e in report.elves}, report.policy,
                     [m for m in added if _vendored(m)], exclude)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise RepairError("the repaired wheel would not load, so it is not written: "
                          + "; ".join(map(str, problems[:3])) + more,
                          tip="make the library the wheel was linked against findable "
                              "(LD_LIBRARY_PATH), or exclude it (--exclude / exclude = [...])")


def _write_sbom(wheel: WheelReader, root: Path, repair: RepairResult,
                owners: Optional[OwnerQuery]) -> Optional[Tuple[str, bytes]]:
    from .sbom import SBOM_NAME, VendoredFile, make_sbom, sbom_lines

    if not repair.vendored:
        return None
    files = [VendoredFile(member, soname, repair.sources[soname], (root / member).read_bytes())
             for soname, member in sorted(repair.vendored.items(), key=lambda sm: sm[1])]
    found = owners.result() if owners is not None else {}
    for line in sbom_lines(files, found):
        emit("info", line)
    return f"{wheel.dist_info}/{SBOM_NAME}", make_sbom(wheel.path.name, files, found,
                                                       os.environ)


def _report(coexist: CoexistReport, settings: Settings) -> None:
    for hazard in coexist.hazards:
        emit("warning", f"{hazard.file}: {hazard.kind}: {hazard.detail}\n"
                        f"why: {hazard.advice}")
    for use in coexist.dlopen:
        emit("note", str(use))
    for note in coexist.notes:
        emit("note", note)
    certain = [h for h in coexist.hazards if h.certain]
    if settings.strict and certain:
        raise AuditError(f"{certain[0].file}: {certain[0].kind}: {certain[0].detail}",
                         tip=certain[0].advice)
    if coexist.abi3_violations:
        text = "; ".join(f"{v.file}: {v.symbol} {v.detail}"
                         for v in coexist.abi3_violations[:6])
        more = len(coexist.abi3_violations) - 6
        message = (f"the wheel is tagged abi3 for Python {coexist.abi3_minimum} but imports "
                   f"beyond its Limited API: {text}" + (f" (+{more} more)" if more > 0 else ""))
        if settings.strict:
            raise TargetMissedError(message, tip="define Py_LIMITED_API to the oldest "
                                                 "Python the tag names, or raise the tag")
        emit("warning", message)


def finish_checks(wheel: WheelReader, root: Path, report: BinaryReport,
                  repair: RepairResult, settings: Settings,
                  python: Optional[Sequence[PythonFacts]] = None,
                  owners: Optional[OwnerQuery] = None,
                  ) -> Tuple[BinaryReport, List[str], Dict[str, int]]:
    """The checks a built wheel passes before it is written: the loader proof (when it
    was repaired), the coexistence report (warnings; errors in strict mode where certain)
    and the SBOM of what ``repair`` vendored (its system packages from ``owners``).
    Returns the report with its coexistence part and the members to replace and add, the
    SBOM included."""
    patched, added = list(repair.patched), dict(repair.added)
    if added:
        _prove(root, report, sorted(added), settings.exclude)
    coexist = check_coexistence(wheel.path, report, python)
    _report(coexist, settings)
    sbom = _write_sbom(wheel, root, repair, owners)
    if sbom is not None:
        member, data = sbom
        (root / member).parent.mkdir(parents=True, exist_ok=True)
        (root / member).write_bytes(data)
        if member in wheel.names:
            patched = [*patched, member]
        else:
            added[member] = 0o644
    return replace(report, coexist=coexist), patched, added
