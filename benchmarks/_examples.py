"""What the benchmarks share: fresh copies of the examples, the backend's own wheel, and the
checkout's bytecode."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def example_copy(name: str, dest: Path) -> Path:
    """A fresh copy of ``examples/<name>`` at ``dest/<name>``, without build leftovers."""
    src = dest / name
    shutil.copytree(ROOT / "examples" / name, src,
                    ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
    return src


def backend_wheelhouse(dest: Path) -> Path:
    """manylinux-backend's own wheel from this checkout, for the isolated builds to find."""
    out = dest / "wheelhouse"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    return out


def compile_checkout() -> None:
    """Compile the checkout's bytecode, as pip does at install: a benchmark that runs the
    package from here then times what an installed copy runs (where PYTHONDONTWRITEBYTECODE
    is set, every run would otherwise compile it again)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "backend" / "mlbackend")],
                   check=True)
