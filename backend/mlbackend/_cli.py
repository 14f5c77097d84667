"""The ``mlbackend`` command: audit, retag and repair wheels, run the pipeline."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any, List, NoReturn, Optional, Sequence

from . import __version__
from ._boundary import quiet_stdout, render
from ._log import held_info
from .audit import audit_wheel
from .errors import (
    EXIT_MISSED,
    EXIT_OK,
    EXIT_TERMINATED,
    ConfigError,
    MlbackendError,
    UsageError,
    os_error,
)
from .policy import normalize_target
from .report import render_text

__all__ = ["main"]



class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are a UsageError (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        where = "" if self.prog == "mlbackend" else f"{self.prog}: "
        raise UsageError(f"{where}{message}", tip=f"see {self.prog} --help")


def _print(text: str) -> None:
    """Write a line of results to stdout; a failure is one error naming stdout."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as exc:
        quiet_stdout()
        raise os_error(exc, "<stdout>", tip="") from None


_ARCHES = ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "armv7l", "riscv64",
           "loongarch64")


def _target(value: Optional[str]) -> str:
    return normalize_target(value) if value else "auto"


def _cmd_audit(args: argparse.Namespace) -> int:
    target = _target(args.target)
    reports = [audit_wheel(Path(w), target=target) for w in args.wheels]
    if args.json:
        data = [r.to_dict() for r in reports]
        _print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
    else:
        from .coexist import coexist_text

        _print("\n".join(render_text(r) + coexist_text(r) for r in reports))
    return EXIT_OK if all(r.target_met for r in reports) else EXIT_MISSED


def _check_plat_arch(wheel: Path, plat: Optional[str]) -> None:
    """Refuse a ``--plat`` for another architecture than the wheel's file name says."""
    from .tags import wheel_platforms

    wanted = next((a for a in _ARCHES if plat and plat.endswith(f"_{a}")), None)
    if wanted is None:
        return
    have = {a for t in wheel_platforms(wheel.name) for a in _ARCHES if t.endswith(f"_{a}")}
    if have and wanted not in have:
        raise ConfigError(f"cannot repair {wheel.name}, built for {', '.join(sorted(have))}, "
                          f"to {plat}", tip=f"choose a {'/'.join(sorted(have))} policy")


def _finish(args: argparse.Namespace, *, command: str) -> int:
    from .finish import finish_wheel
    from .settings import Settings

    settings = replace(Settings(), manylinux=_target(args.plat), repair=command == "repair",
                       strict=True,
                       exclude=tuple(getattr(args, "exclude", None) or ()),
                       strip=bool(getattr(args, "strip", False)))
    out = Path(args.wheel_dir)  # made when the first wheel is written
    for wheel in args.wheels:
        _check_plat_arch(Path(wheel), args.plat)
    for wheel in args.wheels:
        with held_info():
            name = finish_wheel(Path(wheel), out, settings, command=command)
        _print(str(out / name))
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlbackend",
        description="Audit, repair and retag wheels; run the build pipeline.")
    parser.add_argument("--version", action="version", version=f"mlbackend {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="show a wheel's true platform tag and why")
    audit.add_argument("wheels", nargs="+", metavar="WHEEL")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument("--target", help="exit 1 unless the wheel meets this policy")
    audit.set_defaults(func=_cmd_audit)
    for name, text in (("retag", "rewrite a wheel's platform tags to what its audit allows"),
                       ("repair", "vendor external libraries, then retag")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("wheels", nargs="+", metavar="WHEEL")
        cmd.add_argument("-w", "--wheel-dir", default="wheelhouse",
                         help="output folder (default: wheelhouse)")
        cmd.add_argument("--plat", help="target policy; fail (exit 1) when the wheel misses it")
        if name == "repair":
            cmd.add_argument("--exclude", action="append", metavar="GLOB",
                             help="soname or library path glob never vendored (repeatable)")
            cmd.add_argument("--strip", action="store_true",
                             help="strip debug symbols from vendored libraries")
        cmd.set_defaults(func=lambda a, n=name: _finish(a, command=n))
    sub.add_parser("pipeline", help="sdist, wheels and tests for several Pythons "
                                    "(see `mlbackend pipeline --help`)", add_help=False)
    return parser


def _terminate(signum: int, frame: Optional[FrameType]) -> Any:
    raise SystemExit(EXIT_TERMINATED)  # unwinds, so temporary files are removed


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status (see :mod:`mlbackend.errors`)."""
    args_list: List[str] = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["pipeline"]:
        from .pipeline import main as pipeline_main

        return pipeline_main(args_list[1:])
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        parser = _parser()
        args = parser.parse_args(args_list)
        return int(args.func(args))
    except (MlbackendError, OSError, KeyboardInterrupt) as exc:
        return render(exc)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
