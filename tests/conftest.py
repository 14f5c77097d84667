"""Shared fixtures: the backend's own wheel, example builds made once per session, venvs."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run(cmd: Sequence[object], *, cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None,
        check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, capturing output; on an unexpected failure show what it printed."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def build(project: Path, out: Path, env: Dict[str, str], *config: str, isolated: bool = True,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m build --wheel`` of ``project`` into ``out``, each ``config`` item a ``-C``;
    ``isolated=False`` uses this interpreter's packages (and the backend on PYTHONPATH)."""
    args: List[object] = [sys.executable, "-m", "build", "--wheel", "-o", out, project]
    if not isolated:
        args.insert(4, "--no-isolation")
    for item in config:
        args += ["-C", item]
    return run(args, env=env, check=check)


def build_wheel(project: Path, out: Path, env: Dict[str, str], *config: str,
                isolated: bool = True) -> Path:
    """:func:`build`, returning the one wheel it wrote."""
    build(project, out, env, *config, isolated=isolated)
    (wheel,) = out.glob("*.whl")
    return wheel


def platform_tags(wheel: Path) -> List[str]:
    """The platform tags in a wheel's file name, in file-name order."""
    return wheel.name[: -len(".whl")].rsplit("-", 1)[1].split(".")


def check_record(wheel: Path) -> None:
    """Every member is in RECORD with the right sha256 and size, and nothing else is."""
    with zipfile.ZipFile(wheel) as zf:
        (record,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        rows = list(csv.reader(io.StringIO(zf.read(record).decode("utf-8"))))
        listed = {row[0] for row in rows}
        files = {n for n in zf.namelist() if not n.endswith("/")}
        assert listed == files
        for name, digest, size in rows:
            if name == record:
                assert digest == size == ""
                continue
            data = zf.read(name)
            expect = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expect.decode("ascii"), name
            assert int(size) == len(data), name


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with manylinux-backend's own wheel, for isolated builds (PIP_FIND_LINKS)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    src = tmp_path_factory.mktemp("backend-src") / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "examples", "tests", ".venv"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", out, src])
    assert list(out.glob("manylinux_backend-*.whl"))
    return out


def cache_dir() -> Path:
    """Where downloads are kept between runs: ``MLBACKEND_TEST_CACHE``, else the user cache."""
    return Path(os.environ.get("MLBACKEND_TEST_CACHE",
                               Path.home() / ".cache" / "mlbackend-tests"))


@pytest.fixture(scope="session")
def pypi_cache() -> Path:
    """The folder for files downloaded from PyPI (kept between runs)."""
    folder = cache_dir() / "pypi"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def build_env(wheelhouse: Path) -> Dict[str, str]:
    """Environment for isolated builds that finds the local backend wheel."""
    env = dict(os.environ)
    env["PIP_FIND_LINKS"] = str(wheelhouse)
    env["UV_FIND_LINKS"] = str(wheelhouse)
    env.pop("CI", None)
    env.pop("PYTHONPATH", None)
    env.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    return env


def copy_project(name: str, dest: Path) -> Path:
    """A clean copy of ``examples/<name>`` under ``dest``."""
    target = dest / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__"))
    return target


class Builds:
    """Builds each (project, settings) once per session with ``python -m build --wheel``."""

    def __init__(self, root: Path, env: Dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.cache: Dict[Tuple[str, Tuple[str, ...]], Path] = {}

    def wheel(self, project: str, *config: str) -> Path:
        key = (project, config)
        if key not in self.cache:
            work = self.root / f"{project}-{len(self.cache)}"
            work.mkdir()
            src = copy_project(project, work)
            self.cache[key] = build_wheel(src, work / "dist", self.env, *config)
        return self.cache[key]


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory, build_env: Dict[str, str]) -> Builds:
    """Session cache of isolated example builds."""
    return Builds(tmp_path_factory.mktemp("builds"), build_env)


def make_venv(path: Path, python: str = sys.executable) -> Path:
    """A fresh venv at ``path``; returns its python."""
    if python == sys.executable:
        venv.EnvBuilder(with_pip=False).create(path)
    else:
        run([python, "-m", "venv", "--without-pip", path])
    return path / "bin" / "python"


def install(python: Path, *wheels: Path, extra: Sequence[str] = ()) -> None:
    """Install wheels into the venv of ``python`` with pip from the outer interpreter."""
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         *map(str, wheels), *extra])


def run_example_tests(python: Path, project: str, cwd: Path) -> None:
    """Run ``examples/<project>/tests`` with pytest inside the venv of ``python``."""
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "pytest"])
    run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", EXAMPLES / project / "tests"],
        cwd=cwd)


def auditwheel_tag(wheel: Path) -> str:
    """What `auditwheel show --json` computes for ``wheel``."""
    import json

    proc = run([sys.executable, "-m", "auditwheel", "show", "--json", wheel])
    return str(json.loads(proc.stdout)["overall_tag"])
