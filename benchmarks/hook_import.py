"""What importing the backend costs a hook, against importing setuptools' backend alone.

    python benchmarks/hook_import.py [--runs N] [--source]

Each variant is a fresh interpreter (``python -c``), the variants alternating; the medians
and the extra milliseconds over ``import setuptools.build_meta`` are printed. The backend's
bytecode is compiled first, as a ``pip install`` compiles it; ``--source`` imports it from a
copy without bytecode instead (``PYTHONDONTWRITEBYTECODE=1``), as in an isolated build
environment, where ``build`` installs with ``--no-compile`` and uv compiles nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from _examples import compile_checkout

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "setuptools.build_meta": "import setuptools.build_meta",
    "mlbackend (any hook)": "import mlbackend, setuptools.build_meta; "
                            "mlbackend._setuptools_config({})",
    "mlbackend build_wheel": "import mlbackend, setuptools.build_meta, mlbackend._backend, "
                             "mlbackend.finish, mlbackend.baseline, mlbackend.audit, "
                             "mlbackend.coexist, mlbackend.wheel_scan",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--source", action="store_true",
                        help="import the backend from source, without bytecode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlb-import-bench-") as tmp:
        if args.source:
            shutil.copytree(ROOT / "backend" / "mlbackend", Path(tmp) / "mlbackend",
                            ignore=shutil.ignore_patterns("__pycache__"))
            env = dict(os.environ, PYTHONPATH=tmp, PYTHONDONTWRITEBYTECODE="1")
        else:
            compile_checkout()
            env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"))
        _measure(args.runs, env)
    return 0


def _measure(runs: int, env: Dict[str, str]) -> None:
    times: Dict[str, List[float]] = {name: [] for name in VARIANTS}
    for _ in range(runs):
        for name, code in VARIANTS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["setuptools.build_meta"])
    for name, values in times.items():
        value = statistics.median(values)
        print(f"{name:24} median {value * 1000:7.1f} ms  (+{(value - base) * 1000:5.1f} ms)")


if __name__ == "__main__":
    sys.exit(main())
