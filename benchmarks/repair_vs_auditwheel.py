"""Time ``mlbackend repair`` against ``auditwheel repair`` on the same wheels, same run.

    python benchmarks/repair_vs_auditwheel.py [WHEEL...] [--runs N]

Without wheels it builds examples/yaml_ext with repair off (libyaml left external).
Both tools run as their command line (interpreter start included), alternately, each
into a fresh folder; the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]


def build_input(out: Path) -> Path:
    """examples/yaml_ext as a linux_x86_64 wheel with libyaml not vendored."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-C",
                    "repair=false", "-o", str(out), str(ROOT / "examples" / "yaml_ext")],
                   check=True, capture_output=True, env=env)
    (wheel,) = out.glob("*.whl")
    return wheel


def timed(command: List[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlb-bench-") as tmp:
        work = Path(tmp)
        wheels = args.wheels or [build_input(work / "input")]
        tools = {
            "mlbackend": [sys.executable, "-m", "mlbackend", "repair"],
            "auditwheel": [sys.executable, "-m", "auditwheel", "repair"],
        }
        times: Dict[str, List[float]] = {name: [] for name in tools}
        for run in range(args.runs):
            for name, command in tools.items():
                out = work / f"{name}-{run}"
                times[name].append(timed([*command, *map(str, wheels), "-w", str(out)]))
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:10} median {value * 1000:8.1f} ms over {args.runs} runs "
              f"(min {min(times[name]) * 1000:.1f} ms)")
    print(f"ratio auditwheel / mlbackend: {median['auditwheel'] / median['mlbackend']:.2f}x "
          f"({len(wheels)} wheel(s): {', '.join(w.name for w in wheels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
