"""`mlbackend audit`/`repair` against `auditwheel show`/`repair` and the inflate floor, on big
real wheels from PyPI, in one run.

    python benchmarks/big_wheels.py [--rounds N] [--auditwheel-rounds M] [WHEEL...]

Without wheels it downloads (once, into the test cache) scipy, pyarrow, numpy and
opencv-python-headless for x86_64; pass a torch CPU wheel's path to add it. Per wheel:

- floor: a Python process that only inflates the wheel's ELF members (one zlib call each,
  pinned to one core): the least a one-core audit of the wheel with zlib must do (mlbackend
  checks members on every core it may use, with zlib-ng when the ``fast`` extra is there;
  the first line says which);
- every tool as its command line, a fresh process per run, interpreter start included,
  the runs of one wheel alternating between tools; repair writes into a fresh folder;
  mlbackend runs from this checkout with its bytecode compiled first, as an installed copy
  has it.

Prints per wheel the median seconds, the ratios (ours / floor, auditwheel / ours) and each
tool's peak RSS (``ru_maxrss`` of that child, from ``os.wait4``); then the set's totals.
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
from typing import Dict, List, Optional, Tuple

from _examples import compile_checkout

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MLBACKEND_TEST_CACHE", Path.home() / ".cache/mlbackend-tests"))
DEFAULT = ("scipy==1.17.1", "pyarrow==26.0.1", "numpy==2.4.6",
           "opencv-python-headless==5.0.0.93")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
FLOOR = r"""
import struct, sys, zipfile, zlib
path = sys.argv[1]
local = struct.Struct("<4s5H3L2H")
with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
    for info in zf.infolist():
        f.seek(info.header_offset)
        n, m = local.unpack(f.read(30))[9:]
        f.seek(info.header_offset + 30 + n + m)
        raw = f.read(info.compress_size)
        if info.compress_type == 8:
            head = zlib.decompressobj(-15).decompress(raw[:4096], 4)
            if len(head) == 4 and head != b"\x7fELF":
                continue
            data = zlib.decompress(raw, -15, info.file_size)
        else:
            data = raw
        if data[:4] == b"\x7fELF":
            zlib.crc32(data)
"""


def fetch(requirement: str) -> Path:
    """The cached wheel for ``requirement`` (downloaded from PyPI when missing)."""
    folder = CACHE / "pypi"
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-cp311-"

    def cached() -> List[Path]:
        return sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem)
                      and "x86_64" in p.name and "musllinux" not in p.name)

    if not cached():
        platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", *platforms, "--python-version", "3.11", "-d",
                        str(folder), requirement], check=True)
    return cached()[0]


def timed(command: List[str], *, one_core: bool = False) -> Tuple[float, int, int]:
    """(seconds, peak RSS in MB, exit code) of ``command`` as a child process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"))

    def pin() -> None:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, preexec_fn=pin if one_core else None)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return took, usage.ru_maxrss // 1024, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--auditwheel-rounds", type=int, default=1)
    parser.add_argument("--no-repair", action="store_true", help="time the audits only")
    args = parser.parse_args()
    wheels = args.wheels or [fetch(r) for r in DEFAULT]
    py = sys.executable
    compile_checkout()
    totals: Dict[str, float] = {}
    import importlib.util

    inflate = "zlib-ng (the fast extra)" if importlib.util.find_spec("zlib_ng") else "zlib"
    print(f"mlbackend inflates with {inflate} on {len(os.sched_getaffinity(0))} cores; "
          "the floor with zlib on one")
    print(f"{'wheel':44} {'tool':17} {'median s':>9} {'peak MB':>8}  ratio")
    with tempfile.TemporaryDirectory(prefix="mlb-big-") as tmp:
        for wheel in wheels:
            def out(tool: str, run: int, wheel: Path = wheel) -> str:
                return str(Path(tmp) / f"{wheel.stem}-{tool}-{run}")

            tools: Dict[str, Tuple[int, object]] = {
                "floor": (args.rounds, lambda r, w=wheel: timed([py, "-c", FLOOR, str(w)],
                                                                 one_core=True)),
                "mlbackend audit": (args.rounds, lambda r, w=wheel: timed(
                    [py, "-m", "mlbackend", "audit", "--json", str(w)])),
                "auditwheel show": (args.auditwheel_rounds, lambda r, w=wheel: timed(
                    [py, "-m", "auditwheel", "show", str(w)])),
            }
            if not args.no_repair:
                tools["mlbackend repair"] = (args.rounds, lambda r, w=wheel: timed(
                    [py, "-m", "mlbackend", "repair", "-w", out("mlb", r), str(w)]))
                tools["auditwheel repair"] = (args.auditwheel_rounds, lambda r, w=wheel: timed(
                    [py, "-m", "auditwheel", "repair", "-w", out("aw", r), str(w)]))
            tools = {t: spec for t, spec in tools.items() if spec[0] > 0}
            seen: Dict[str, List[Tuple[float, int, int]]] = {t: [] for t in tools}
            for run in range(max(args.rounds, args.auditwheel_rounds)):
                for tool, (rounds, call) in tools.items():
                    if run < rounds:
                        seen[tool].append(call(run))  # type: ignore[operator]
            median = {t: statistics.median(s for s, _, _ in v) for t, v in seen.items()}
            for tool, values in seen.items():
                failed = [code for _, _, code in values if code != 0]
                ratio = ""
                if tool.startswith("mlbackend"):
                    ratio = f"{median[tool] / median['floor']:.2f}x floor"
                    theirs = "auditwheel " + tool.split()[1].replace("audit", "show")
                    if theirs in median:
                        ratio += f", auditwheel {median[theirs] / median[tool]:.1f}x slower"
                if failed:
                    ratio += f"  (exit {failed[0]})"
                rss = max(m for _, m, _ in values)
                print(f"{wheel.name[:44]:44} {tool:17} {median[tool]:9.2f} {rss:8d}  {ratio}")
                totals[tool] = totals.get(tool, 0.0) + median[tool]
    print(f"\n{'total of ' + str(len(wheels)) + ' wheels':44}")
    for tool, value in totals.items():
        ratio: Optional[str] = None
        if tool.startswith("mlbackend"):
            theirs = "auditwheel " + tool.split()[1].replace("audit", "show")
            ratio = f"{value / totals['floor']:.2f}x floor"
            if theirs in totals:
                ratio += f", auditwheel {totals[theirs] / value:.1f}x slower"
        print(f"{'':44} {tool:17} {value:9.2f} {'':8}  {ratio or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
