"""Time isolated wheel builds of the C++ example: zig twice, then the host's gcc once.

    python benchmarks/zig_vs_gcc.py

Each build is ``python -m build --wheel`` in a fresh isolated environment, the backend coming
from a wheel of this checkout (PIP_FIND_LINKS). The second zig build shows the steady state:
zig's libc++ comes from its cache because the zig baseline points ZIG_LIB_DIR at one stable copy
of zig's lib folder in the user cache. Acceptance: second zig / gcc < 1.5.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from _examples import backend_wheelhouse, example_copy


def timed_build(src: Path, out: Path, config: List[str], env: Dict[str, str]) -> float:
    """Seconds one isolated ``python -m build --wheel`` of ``src`` takes."""
    cmd = [sys.executable, "-m", "build", "--wheel", "-o", str(out), str(src)]
    for item in config:
        cmd += ["-C", item]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"build failed: {' '.join(cmd)}")
    return elapsed


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="zig-vs-gcc-") as tmp:
        root = Path(tmp)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.pop("CI", None)
        env["PIP_FIND_LINKS"] = str(backend_wheelhouse(root))
        zig = ["baseline=zig", "manylinux=2_17"]
        runs = [("zig (first)", zig), ("zig (second)", zig), ("gcc", ["baseline=host"])]
        times: Dict[str, float] = {}
        for index, (label, config) in enumerate(runs):
            src = example_copy("cpp_ext", root / f"run{index}")
            times[label] = timed_build(src, root / f"out{index}", config, env)
            print(f"{label:>13}: {times[label]:6.1f} s", flush=True)
        ratio = times["zig (second)"] / times["gcc"]
        verdict = "ok" if ratio < 1.5 else "too slow"
        print(f"second zig build / gcc build = {ratio:.2f}x (acceptance < 1.5x: {verdict})")
        return 0 if ratio < 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
