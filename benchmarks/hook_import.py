"""What importing the backend costs a hook, against importing setuptools' backend alone.

    python benchmarks/hook_import.py [--runs N]

Each variant is a fresh interpreter (``python -c``), the variants alternating; the medians
and the extra milliseconds over ``import setuptools.build_meta`` are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
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
                             "mlbackend.finish, mlbackend.baseline",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"))
    compile_checkout()
    times: Dict[str, List[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.runs):
        for name, code in VARIANTS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["setuptools.build_meta"])
    for name, values in times.items():
        value = statistics.median(values)
        print(f"{name:24} median {value * 1000:7.1f} ms  (+{(value - base) * 1000:5.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
