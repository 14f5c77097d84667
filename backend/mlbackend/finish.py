"""The step after every build: audit, repair, retag and write the wheel.

The PEP 517 hook (through :mod:`mlbackend._backend`), the ``repair``/``retag`` commands and the
build inside a container all end here, so a wheel is finished the same way whichever way it was
built."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Tuple

from ._log import emit
from .errors import PureWheelError, RepairError, TargetMissedError
from .report import AuditReport, BinaryReport, PureReport
from .settings import Settings
from .tags import platforms_after, rename_wheel, retag_wheel_metadata, wheel_platforms
from .wheel_reader import WheelReader
from .wheel_writer import copy_wheel, write_wheel

if TYPE_CHECKING:  # the audit's modules are imported once a wheel turns out to hold ELF files
    from .elf import ElfInfo
    from .owners import OwnerQuery
    from .repair import RepairResult

__all__ = ["finish", "finish_wheel"]


_MISSED_TIPS = {
    "build": "build in a baseline (-C baseline=container, or -C baseline=zig), or set "
             "-C manylinux=auto to accept the honest tag",
    "wheel": "drop --plat to keep the honest tag; a more compatible one needs the binaries "
             "rebuilt against an older glibc (e.g. in a manylinux image)",
}


def _report_outcome(report: BinaryReport, settings: Settings, command: str) -> None:
    for note in report.notes:
        emit("note", note)
    if command == "repair" and settings.target == "auto" and report.policy.is_linux:
        raise TargetMissedError(
            f"cannot repair {report.wheel} to any manylinux/musllinux policy: "
            + ("; ".join(report.blocker_lines()) or report.repair_summary),
            tip="rebuild in an older baseline (-C baseline=container or zig) without the "
                "listed symbols, ISA levels or black-listed calls")
    if report.target_met:
        emit("info", f"audit: {report.reason}")
        return
    lines = report.blocker_lines()
    message = (f"the wheel needs {report.tag}, which misses the target {settings.target}:\n"
               + "\n".join(lines))
    if settings.strict:
        raise TargetMissedError(message.replace(":\n", ": ", 1).replace("\n", "; "),
                                tip=_MISSED_TIPS["build" if command == "build" else "wheel"])
    emit("warning", message + f"\nthe wheel is tagged {report.tag} (strict mode would fail)")


def _repair(wheel: WheelReader, root: Path, infos: Mapping[str, ElfInfo],
            report: BinaryReport, settings: Settings, command: str,
            ) -> Tuple[BinaryReport, RepairResult, Optional[OwnerQuery]]:
    """Vendor the external libraries the aimed-at policy forbids; re-audit what changed.
    Returns the new audit, what the repair changed, and the query, started before the
    copies, of the system packages that own them (for the SBOM)."""
    from .repair import RepairResult

    aim = report.repairable_policy
    if settings.target != "auto":
        aim = report.policies.find(settings.target) or aim
    libs = report.externals.get(aim.name, {})
    for glob in report.unmatched_excludes:
        emit("warning", f"exclude pattern {glob!r} matches no library the wheel loads")
    if aim.is_linux or not libs:
        return report, RepairResult(), None
    if not settings.repair:
        why = ("retag does not vendor them; `mlbackend repair` does" if command == "retag"
               else "repair = false")
        emit("warning", f"external libraries {', '.join(sorted(libs))} are not vendored "
                        f"({why}): the wheel keeps a linux tag")
        return report, RepairResult(), None
    if not settings.strict:
        from .patcher import find_patchelf

        try:
            find_patchelf()
        except RepairError as missing:
            # a build without isolation on a laptop: an honest tag, not a failed install
            emit("warning", f"external libraries {', '.join(sorted(libs))} are not vendored "
                            f"({missing.message}; {missing.tip}): the wheel keeps a linux tag")
            return report, RepairResult(), None
    from .audit import audit_tree
    from .owners import OwnerQuery
    from .repair import repair_tree

    owners = OwnerQuery(sorted({Path(path) for path in libs.values() if path}))

    result = repair_tree(wheel, report, root, aim, strip=settings.strip)
    for soname, member in sorted(result.vendored.items()):
        emit("info", f"repair: vendored {soname} as {member}")
    for old, new_path in sorted(result.moved.items()):
        emit("info", f"repair: {old} moved to {new_path}, a launcher takes its place")
    members = [m for m in infos if m not in result.moved] + sorted(result.added)
    unchanged = {m: info for m, info in infos.items() if m not in result.patched}
    new = audit_tree(report.wheel, root, members, target=settings.target,
                     exclude=settings.exclude, known=unchanged)
    return new, result, owners


def finish_wheel(wheel_path: Path, out_dir: Path, settings: Settings,
                 command: str = "build") -> str:
    """Audit, repair and retag the wheel at ``wheel_path`` into ``out_dir``; its new name.

    ``command`` (``build``, ``repair`` or ``retag``) is what runs this step, so that warnings
    and tips give advice that fits it."""
    return finish(wheel_path, out_dir, settings, command)[0]


def finish(wheel_path: Path, out_dir: Path, settings: Settings,
            command: str) -> Tuple[str, AuditReport]:
    """:func:`finish_wheel`, also returning the final audit (the build record needs it)."""
    with tempfile.TemporaryDirectory(prefix="mlbackend-finish-") as tmp, \
            WheelReader.open(wheel_path) as wheel:
        root = Path(tmp)  # holds only the files a repair adds or patches
        from .wheel_scan import scan_wheel

        scan = scan_wheel(wheel)
        infos = dict(scan.elves)
        members = list(infos)
        if not members:
            if command != "build":
                raise PureWheelError(
                    f"{wheel_path}: not a platform wheel: no ELF file (extension, library or "
                    "program) in it; nothing to repair or retag",
                    tip="a pure Python wheel needs no repair; publish it as it is")
            emit("info", "audit: no ELF files; the pure Python wheel is returned as built")
            copy_wheel(wheel, out_dir / wheel_path.name)
            return wheel_path.name, PureReport(wheel_path.name, settings.target)
        from .audit import audit_tree

        report = audit_tree(wheel_path.name, root, members, target=settings.target,
                            exclude=settings.exclude, known=infos)
        repaired, result, owners = _repair(wheel, root, infos, report, settings, command)
        from .coexist import finish_checks

        report, patched, added = finish_checks(wheel, root, repaired, result, settings,
                                               scan.python, owners)
        _report_outcome(report, settings, command)
        tags = report.wheel_tags
        platforms, kept = platforms_after(wheel_platforms(wheel_path.name), tags,
                                          report.still_true)
        if set(platforms) == set(wheel_platforms(wheel_path.name)) and not patched \
                and not added:
            copy_wheel(wheel, out_dir / wheel_path.name)
            return wheel_path.name, report
        name = rename_wheel(wheel_path.name, platforms)
        write_wheel(
            wheel, out_dir / name,
            wheel_metadata=retag_wheel_metadata(wheel.wheel_metadata, tags, kept),
            replace={m: root / m for m in patched},
            add={m: (root / m, mode) for m, mode in added.items()},
        )
    emit("info", f"wheel: {name}")
    return name, report
