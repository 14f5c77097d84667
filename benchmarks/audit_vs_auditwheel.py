"""Time `mlbackend audit --json` against `auditwheel show --json` on the same wheels.

    python benchmarks/audit_vs_auditwheel.py [WHEEL...]   # default: tests/data/pypi/*.whl

Each tool runs as a fresh process per wheel, alternately, for several rounds; the script checks
that both give the same tag and prints the median total per tool and the ratio.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5
TOOLS = {
    "mlbackend": [sys.executable, "-m", "mlbackend", "audit", "--json"],
    "auditwheel": [sys.executable, "-m", "auditwheel", "show", "--json"],
}


def _run(cmd: List[str]) -> Tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc.stdout


def _tag(tool: str, output: str) -> str:
    data = json.loads(output)
    return str(data["tag"] if tool == "mlbackend" else data["overall_tag"])


def main(argv: List[str]) -> int:
    wheels = [Path(a) for a in argv] or sorted((ROOT / "tests/data/pypi").glob("*.whl"))
    totals: Dict[str, List[float]] = {tool: [] for tool in TOOLS}
    for _ in range(ROUNDS):
        for tool, cmd in TOOLS.items():
            tags = []
            total = 0.0
            for wheel in wheels:
                took, out = _run([*cmd, str(wheel)])
                total += took
                tags.append(_tag(tool, out))
            totals[tool].append(total)
            if tool == "mlbackend":
                ours = tags
            elif tags != ours:
                print(f"tags differ: mlbackend {ours}, auditwheel {tags}")
                return 1
    median = {tool: statistics.median(t) for tool, t in totals.items()}
    for tool, value in median.items():
        print(f"{tool:>10}: median {value:6.2f} s for {len(wheels)} wheels over {ROUNDS} rounds")
    print(f"ratio auditwheel / mlbackend: {median['auditwheel'] / median['mlbackend']:.2f}x "
          "(same tag for every wheel)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
