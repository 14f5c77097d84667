"""The pipeline's steps: backend wheelhouse, sdist, a wheel per Python from it, tests in a venv."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Literal, Mapping, Optional, Sequence

from .. import _proc as proc
from ..errors import ConfigError, MlbackendError

if TYPE_CHECKING:
    from .python import Interpreter

__all__ = [
    "StepError",
    "TestResult",
    "backend_source_dir",
    "build_backend_wheelhouse",
    "build_sdist",
    "build_wheel_from_sdist",
    "check_test_sources",
    "file_digest",
    "installed_backend_wheel",
    "test_wheel",
]

_TAIL_LINES = 60
_BACKEND_NAME = "manylinux-backend"
# Files that never belong in a wheel of the backend; skipping them keeps the copy small.
_COPY_IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                      ".venv", ".*_cache", "wheelhouse", "examples", "tests",
                                      "node_modules")


class StepError(MlbackendError):
    """A pipeline step's command failed; ``log_tail`` holds the end of its output."""

    def __init__(self, message: str, log_tail: str = "", tip: str = "") -> None:
        super().__init__(message, tip=tip)
        self.log_tail = log_tail


@dataclass(frozen=True)
class TestResult:
    """How a wheel's test-command went in a fresh venv."""

    status: Literal["passed", "failed", "skipped"]
    """``passed``, ``failed`` or ``skipped`` (no test-command)."""
    output_tail: str
    """The last lines of the install and test output."""
    command: str
    """The test-command as run, placeholders filled in."""


def tail(text: str, lines: int = _TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text``."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def file_digest(path: Path) -> str:
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(args: Sequence[str], log: Path, what: str, cwd: Optional[Path] = None,
         env: Optional[Mapping[str, str]] = None) -> None:
    """Run ``args``, appending its output to ``log``; raise StepError naming ``what`` on failure."""
    with log.open("a", encoding="utf-8") as stream:
        stream.write(f"$ {' '.join(args)}\n")
        stream.flush()
        start = time.monotonic()
        code = proc.run(args, what=what, error=StepError, timeout=None, cwd=cwd,
                        env=env or os.environ, log=stream).code
        stream.write(f"[exit {code} after {time.monotonic() - start:.1f} s]\n")
    if code != 0:
        raise StepError(f"{what} failed (exit {code})",
                        log_tail=tail(log.read_text(encoding="utf-8", errors="replace")))


def backend_source_dir() -> Optional[Path]:
    """The project folder of the running mlbackend when it runs from a source checkout."""
    root = Path(__file__).resolve().parents[3]  # <root>/backend/mlbackend/pipeline/
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and f'"{_BACKEND_NAME}"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


def build_backend_wheelhouse(source: Path, dest: Path, log: Path) -> Path:
    """Build a wheel of manylinux-backend from ``source`` into ``dest`` (for isolated builds)."""
    if not (source / "pyproject.toml").is_file():
        raise ConfigError(f"backend source {source} has no pyproject.toml")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlbackend-self-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=_COPY_IGNORE)
        # setuptools is a dependency of the backend, so no isolated env is needed here
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--disable-pip-version-check", "-q", "-w", str(dest), str(copy)],
             log, f"building a wheel of {_BACKEND_NAME} from {source}")
    return dest


_NOT_REPACKED = ("INSTALLER", "REQUESTED", "RECORD", "direct_url.json")
"""dist-info files an installer wrote (RECORD is written anew)."""


def installed_backend_wheel(dest: Path) -> Path:
    """Pack the installed manylinux-backend back into a wheel in ``dest`` (for isolated builds
    when no index holds it): its installed files, listed in its RECORD, minus bytecode, the
    installer's own records and the console script (entry_points.txt recreates it)."""
    from importlib import metadata

    from wheel.wheelfile import WheelFile

    try:
        dist = metadata.distribution(_BACKEND_NAME)
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(f"{_BACKEND_NAME} is not installed, so no wheel of it can be made",
                          tip="pass --backend-source or --backend-wheelhouse") from exc
    files = [f for f in dist.files or () if f.parts[0] != ".."
             and "__pycache__" not in f.parts and f.suffix != ".pyc"
             and not (f.parts[0].endswith(".dist-info") and f.name in _NOT_REPACKED)]
    if not any(f.parts[:2] == ("mlbackend", "__init__.py") for f in files):
        raise ConfigError(f"the installed {_BACKEND_NAME} holds no mlbackend package (an "
                          "editable install of a checkout that is gone?)",
                          tip="pass --backend-source or --backend-wheelhouse")
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"manylinux_backend-{dist.version}-py3-none-any.whl"
    with WheelFile(wheel, "w") as archive:
        for member in sorted(files, key=str):
            archive.write(str(dist.locate_file(member)), member.as_posix())
    return wheel


def _config_args(config_settings: Sequence[str]) -> List[str]:
    return [f"--config-setting={item}" for item in config_settings]


def _single(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise StepError(f"{what}: expected one {pattern} in {folder}, found {len(found)}")
    return found[0]


def build_sdist(package_dir: Path, dest: Path, env: Mapping[str, str],
                config_settings: Sequence[str], log: Path) -> Path:
    """Build the sdist of ``package_dir`` with pypa/build (isolated) into ``dest``."""
    with tempfile.TemporaryDirectory(prefix="mlbackend-sdist-") as tmp:
        _run([sys.executable, "-m", "build", "--sdist", "--outdir", tmp,
              *_config_args(config_settings), str(package_dir)], log, "building the sdist",
             env=env)
        built = _single(Path(tmp), "*.tar.gz", "building the sdist")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / built.name
        shutil.move(str(built), str(target))
    return target


def _unpack_sdist(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts or member.issym() or member.islnk():
                raise StepError(f"{sdist.name}: unsafe member {member.name!r}")
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # pragma: no cover - Pythons before the extraction filters
            archive.extractall(dest)  # members checked above
    roots = [p for p in dest.iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise StepError(f"{sdist.name}: expected one top-level folder")
    return roots[0]


def _builder(interp: Interpreter, work: Path, env: Mapping[str, str], log: Path) -> Path:
    """An interpreter of ``interp``'s version that has pypa/build: itself or a small venv."""
    probe = proc.try_run([interp.path, "-c", "import build"], env=env)
    if probe is not None and probe.code == 0:
        return interp.path
    venv = work / f"builder-{interp.version}"
    _run([str(interp.path), "-m", "venv", str(venv)], log, f"creating a venv for Python "
         f"{interp.version}", env=env)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "build"],
         log, f"installing build for Python {interp.version}", env=env)
    return python


def build_wheel_from_sdist(interp: Interpreter, sdist: Path, dest: Path, work: Path,
                           env: Mapping[str, str], config_settings: Sequence[str],
                           log: Path) -> Path:
    """Unpack ``sdist`` and build its wheel with ``interp`` (isolated) into ``dest``."""
    job = work / f"py{interp.version}"
    job.mkdir(parents=True)
    source = _unpack_sdist(sdist, job / "src")
    builder = _builder(interp, job, env, log)
    out = job / "dist"
    _run([str(builder), "-m", "build", "--wheel", "--outdir", str(out),
          *_config_args(config_settings), str(source)], log,
         f"building the wheel for Python {interp.version}", env=env)
    built = _single(out, "*.whl", f"building the wheel for Python {interp.version}")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / built.name
    shutil.move(str(built), str(target))
    return target


def _test_env(venv: Path, base: Mapping[str, str]) -> Dict[str, str]:
    env = dict(base)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{base.get('PATH', '')}"
    return env


def check_test_sources(package_dir: Path, test_sources: Sequence[str]) -> None:
    """Refuse test-sources that are absolute, leave ``package_dir`` or do not exist."""
    for item in test_sources:
        path = Path(item)
        inside = (package_dir / path).resolve()
        if path.is_absolute() or package_dir.resolve() not in (inside, *inside.parents):
            raise ConfigError(f"test-sources path {item!r} is not inside {package_dir}",
                              tip="name files and folders relative to the project, e.g. tests")
        if not inside.exists():
            raise ConfigError(f"test-sources path {item!r} does not exist in {package_dir}")


def _copy_test_sources(package_dir: Path, test_sources: Sequence[str], dest: Path) -> None:
    for item in test_sources:
        src, target = package_dir / item, dest / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        else:
            shutil.copy2(src, target)


def test_wheel(interp: Interpreter, wheel: Path, test_requires: Sequence[str],
               test_command: str, package_dir: Path, work: Path,
               env: Mapping[str, str], test_sources: Sequence[str] = ()) -> TestResult:
    """Install ``wheel`` and ``test_requires`` into a fresh venv; run ``test_command`` outside
    the source tree (``{package}``/``{project}`` stand for the package folder), from a
    folder that holds copies of ``test_sources`` (paths relative to ``package_dir``)."""
    command = test_command.replace("{package}", str(package_dir)).replace(
        "{project}", str(package_dir))
    if not test_command.strip():
        return TestResult(status="skipped", output_tail="", command="")
    job = work / f"test-{interp.version}"
    cwd = job / "cwd"
    cwd.mkdir(parents=True)
    _copy_test_sources(package_dir, test_sources, cwd)
    log = job / "test.log"
    venv = job / "venv"
    try:
        # ensurepip is the slow part of a venv: install with our own pip (>= 22.3) when we
        # have one (an environment made by uv or `venv --without-pip` has none)
        python = str(venv / "bin" / "python")
        own_pip = importlib.util.find_spec("pip") is not None
        _run([str(interp.path), "-m", "venv", *(["--without-pip"] if own_pip else []),
              str(venv)], log, "creating the test venv", env=env)
        pip = [sys.executable, "-m", "pip", "--python", python] if own_pip else \
            [python, "-m", "pip"]
        _run([*pip, "install", "--disable-pip-version-check", "-q", str(wheel),
              *test_requires], log, f"installing {wheel.name}", env=env)
        _run(["/bin/sh", "-c", command], log, "test-command", cwd=cwd, env=_test_env(venv, env))
    except StepError as exc:
        return TestResult(status="failed", output_tail=exc.log_tail or exc.message,
                          command=command)
    output = log.read_text(encoding="utf-8", errors="replace")
    return TestResult(status="passed", output_tail=tail(output, 20), command=command)

