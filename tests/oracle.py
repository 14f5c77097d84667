"""auditwheel and mlbackend side by side on one wheel: what each says and what each repair
writes; and the fresh-venv install check both test modules use."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from pypi_cache import oracle

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["Outcome", "auditwheel_repair", "auditwheel_show", "install_and_import",
           "mlbackend_repair", "python_for"]


def _env(extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(extra or {})
    return env


def auditwheel_show(wheel: Path, env: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """``auditwheel show --json`` of ``wheel`` (cached by the wheel's sha256)."""
    key = "show" + "".join(f"-{k}={v}" for k, v in sorted((env or {}).items())).replace("/", "_")

    def compute() -> Dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", "auditwheel", "show", "--json", str(wheel)],
                              capture_output=True, text=True, env=_env(env), timeout=1200,
                              check=False)
        try:
            data: Dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            data = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        data["returncode"] = proc.returncode
        return data

    return dict(oracle(key[:180], wheel, compute))


@dataclass(frozen=True)
class Outcome:
    """What a repair did: its exit status and the wheel it wrote, if any."""

    returncode: int
    name: Optional[str]
    message: str


def auditwheel_repair(wheel: Path, args: Sequence[str] = (),
                      env: Optional[Mapping[str, str]] = None) -> Outcome:
    """``auditwheel repair`` of ``wheel``: exit status and output name (cached)."""
    key = ("repair" + "".join(args) + "".join(f"-{k}={v}" for k, v in sorted(
        (env or {}).items()))).replace("/", "_").replace(" ", "")

    def compute() -> Dict[str, Any]:
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run(
                [sys.executable, "-m", "auditwheel", "repair", "-w", out, *args, str(wheel)],
                capture_output=True, text=True, env=_env(env), timeout=1800, check=False)
            names = sorted(p.name for p in Path(out).glob("*.whl"))
        lines = proc.stderr.strip().splitlines()
        return {"returncode": proc.returncode, "name": names[0] if names else None,
                "message": lines[-1] if lines else ""}

    data = oracle(key[:180], wheel, compute)
    return Outcome(int(data["returncode"]), data["name"], str(data["message"]))


def mlbackend_repair(wheel: Path, out: Path, args: Sequence[str] = (),
                     env: Optional[Mapping[str, str]] = None) -> Outcome:
    """``mlbackend repair`` of ``wheel`` into ``out``, run from this tree."""
    full = _env(env)
    full["PYTHONPATH"] = str(ROOT / "backend")
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.whl"))
    proc = subprocess.run([sys.executable, "-m", "mlbackend", "repair", "-w", str(out), *args,
                           str(wheel)], capture_output=True, text=True, env=full, timeout=1800,
                          check=False)
    made = sorted(set(out.glob("*.whl")) - before)
    if proc.returncode == 0:
        assert len(made) == 1 or (out / wheel.name).is_file(), proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    name = made[0].name if made else (wheel.name if proc.returncode == 0 else None)
    return Outcome(proc.returncode, name, proc.stderr.strip())


def python_for(version: str) -> str:
    """An interpreter for ``3.X`` on this machine (PATH, then pyenv); fails when missing."""
    pyenv = sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}.*/bin/python3")))
    found = pyenv[-1] if pyenv else shutil.which(f"python{version}")
    assert found, f"python{version} is needed to install the wheel; the test setup installs it"
    return found


def install_and_import(wheel: Path, python_version: str, module: str, where: Path,
                       code: str = "") -> None:
    """Install ``wheel`` (dependencies from PyPI) into a fresh venv and import ``module``."""
    env_dir = where / f"venv-{wheel.stem[:40]}"
    subprocess.run([python_for(python_version), "-m", "venv", str(env_dir)], check=True,
                   capture_output=True, timeout=300)
    py = env_dir / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=1200, env=_env(None))
    assert proc.returncode == 0, f"install of {wheel.name} failed:\n{proc.stderr[-3000:]}"
    proc = subprocess.run([str(py), "-c", f"import {module}\n{code}"], capture_output=True,
                          text=True, timeout=600, cwd=where, env=_env(None))
    assert proc.returncode == 0, f"import {module} from {wheel.name} failed:\n{proc.stderr}"
    shutil.rmtree(env_dir, ignore_errors=True)

