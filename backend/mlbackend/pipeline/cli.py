"""``mlbackend pipeline``: sdist, wheels per Python, audit and tests; ``pipeline plan``: CI matrix.

The error boundary of both commands: bad input is one line and exit 2, a failed build or
test is one line per failure and exit 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path
from typing import List, NoReturn, Optional, Sequence

from .._boundary import render
from ..errors import ConfigError, MlbackendError, UsageError
from .plan import parse_archs, plan_matrix, planned_pythons
from .python import parse_versions
from .run import LogSink, PipelineOptions, PipelineResult, run_pipeline
from .steps import StepError

__all__ = ["main"]

_PROG = "mlbackend pipeline"


class _Parser(argparse.ArgumentParser):
    """argparse whose bad usage is a UsageError (one line, exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _run_parser() -> _Parser:
    parser = _Parser(prog=_PROG, description="Build the sdist, then a wheel per Python from "
                     "it; audit and test each wheel. 'mlbackend pipeline plan -h' for the "
                     "CI matrix.")
    parser.add_argument("package_dir", nargs="?", default=".", type=Path,
                        help="the project to build (default: .)")
    parser.add_argument("--output-dir", type=Path, default=Path("wheelhouse"),
                        help="where the sdist and wheels go (default: wheelhouse)")
    parser.add_argument("--python-versions", default="",
                        help="e.g. '3.11 3.12' (default: the running Python; 'pipeline plan' "
                             "names every supported one the project allows)")
    parser.add_argument("--manylinux", default="", help="target policy, e.g. 2_17 or auto")
    parser.add_argument("--baseline", default="", help="auto, container, zig or host")
    parser.add_argument("--archs", default="",
                        help="architectures, e.g. 'x86_64 aarch64': each Python's wheel is "
                             "built for each with zig (default: the host's only)")
    parser.add_argument("--before-build", default="",
                        help="shell commands run in the build container first (container "
                             "baseline)")
    parser.add_argument("--test-requires", default="", help="packages to install for the tests")
    parser.add_argument("--test-command", default="",
                        help="run in a fresh venv outside the source tree; {package} and "
                             "{project} stand for the package folder")
    parser.add_argument("--test-sources", default="",
                        help="files and folders of the project (e.g. 'tests pytest.ini') "
                             "copied into the folder the tests run from, so they import the "
                             "installed wheel rather than the checkout")
    parser.add_argument("--sdist", dest="sdist", action="store_true", default=True,
                        help="keep the sdist in the output folder (default)")
    parser.add_argument("--no-sdist", dest="sdist", action="store_false",
                        help="build wheels from an sdist but do not keep it")
    parser.add_argument("-C", "--config-setting", action="append", default=[],
                        metavar="KEY=VALUE", help="passed to every build (repeatable)")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--backend-source", type=Path,
                        help="a manylinux-backend checkout for isolated builds (default: the "
                             "running one when it is a checkout)")
    parser.add_argument("--backend-wheelhouse", type=Path,
                        help="a folder holding a manylinux-backend wheel for isolated builds")
    parser.add_argument("-j", "--jobs", type=int, default=0,
                        help="parallel wheel builds (default: one per core)")
    parser.add_argument("--github", action="store_true",
                        default=os.environ.get("GITHUB_ACTIONS") == "true",
                        help="fold logs in ::group:: blocks (default when GITHUB_ACTIONS=true)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every step's log")
    return parser


def _plan_parser() -> _Parser:
    parser = _Parser(prog=f"{_PROG} plan",
                     description="Print the build matrix as JSON for strategy.matrix.")
    parser.add_argument("package_dir", nargs="?", default=".", type=Path,
                        help="the project (its requires-python bounds the default Pythons)")
    parser.add_argument("--python-versions", default="",
                        help="e.g. '3.11 3.12' (default: every supported CPython the "
                             "project allows)")
    parser.add_argument("--os", dest="runners", default="ubuntu-latest",
                        help="runner labels, e.g. 'ubuntu-latest ubuntu-24.04-arm'")
    parser.add_argument("--manylinux", default="", help="target policy put in each entry")
    parser.add_argument("--archs", default="",
                        help="architectures to fan out, e.g. 'x86_64 aarch64' (zig builds)")
    parser.add_argument("--versions-only", action="store_true",
                        help="print only the planned Python versions, one per line (what a "
                             "CI step sets up before the build)")
    return parser


def _log_sink(github: bool, verbose: bool) -> Optional[LogSink]:
    lock = threading.Lock()

    def sink(title: str, text: str) -> None:
        failed = "(failed)" in title
        if not (github or verbose or failed):
            return
        with lock:
            out = sys.stdout
            out.write(f"::group::{title}\n" if github else f"----- {title}\n")
            out.write(text.rstrip() + "\n")
            out.write("::endgroup::\n" if github else "")
            out.flush()

    return sink


def _human_size(size: int) -> str:
    return f"{size / 1024:.0f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"


def _print_table(result: PipelineResult) -> None:
    if result.sdist is not None:
        print(f"sdist  {result.sdist.name}")
    for wheel in result.wheels:
        print(f"{wheel.path.name}  {wheel.tag or '?'}  {_human_size(wheel.size)}  "
              f"Python {wheel.python}  baseline {wheel.baseline}  test {wheel.test.status}")
        if wheel.reason:
            print(f"    why this tag: {wheel.reason}")


def _write_report(result: PipelineResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")


def _run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(list(argv))
    missing = [m for m in ("build", "wheel") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"mlbackend pipeline needs {' and '.join(missing)}, not installed",
                          tip="pip install 'manylinux-backend[pipeline]'")
    versions = parse_versions(args.python_versions) or (
        f"{sys.version_info[0]}.{sys.version_info[1]}",)
    options = PipelineOptions(
        package_dir=args.package_dir, output_dir=args.output_dir, python_versions=versions,
        manylinux=args.manylinux, baseline=args.baseline, before_build=args.before_build,
        test_requires=tuple(args.test_requires.split()), test_command=args.test_command,
        test_sources=tuple(args.test_sources.split()),
        sdist=args.sdist, config_settings=tuple(args.config_setting),
        backend_source=args.backend_source, backend_wheelhouse=args.backend_wheelhouse,
        jobs=max(0, args.jobs), archs=parse_archs(args.archs))
    result = run_pipeline(options, on_log=_log_sink(args.github, args.verbose))
    if args.report is not None:
        _write_report(result, args.report)
    _print_table(result)
    for failure in result.failures:
        sys.stderr.write(f"mlbackend: error: {_PROG}: Python {failure.python}: "
                         f"{failure.message}\n")
    for wheel in result.failed_tests:
        sys.stderr.write(f"mlbackend: error: {_PROG}: test-command failed for "
                         f"{wheel.path.name}\n")
    return 0 if result.ok else 1


def _plan(argv: Sequence[str]) -> int:
    args = _plan_parser().parse_args(list(argv))
    if args.versions_only:
        print("\n".join(planned_pythons(parse_versions(args.python_versions),
                                         args.package_dir)))
        return 0
    runners = args.runners.replace(",", " ").split()
    if not runners:
        raise ConfigError("--os needs at least one runner label")
    matrix = plan_matrix(parse_versions(args.python_versions), runners, args.package_dir,
                         args.manylinux, archs=parse_archs(args.archs))
    print(json.dumps(matrix, separators=(",", ":")))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``mlbackend pipeline [plan] ...``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["plan"]:
            return _plan(argv[1:])
        return _run(argv)
    except StepError as exc:
        if exc.log_tail:
            sys.stderr.write(exc.log_tail.rstrip() + "\n")
        return render(exc, inline_tip=True)
    except (MlbackendError, OSError, KeyboardInterrupt) as exc:
        return render(exc, inline_tip=True)
