"""Time zig cross builds for aarch64 against native x86_64 zig builds of the same examples,
and the examples' tests under QEMU against the same tests run natively.

    bash .ci/setup-qemu.sh && python benchmarks/zig_cross.py

Each build is ``python -m build --wheel`` in a fresh isolated environment, the backend coming
from a wheel of this checkout (PIP_FIND_LINKS). Every build runs once to warm zig's cache (its
libc++ for a new target takes a minute), then is timed: the ratio is the steady state a CI
runner with a kept cache sees. The tests are the examples' own pytest suites, run in a venv of
Debian's aarch64 Python under qemu-user (binfmt_misc) and in a venv of the running Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Dict, List

from _examples import backend_wheelhouse, example_copy

ROOT = Path(__file__).resolve().parents[1]
CROSS_ROOT = Path(os.environ.get("MLBACKEND_CROSS_ROOT", "/usr/local/lib/mlbackend-cross"))
AARCH64_PYTHON = CROSS_ROOT / "aarch64" / "bin" / "python3.11"
PROJECTS = ("c_ext", "cpp_ext")


def run(cmd: List[str], env: Dict[str, str], cwd: Path | None = None) -> float:
    """Seconds ``cmd`` takes; exits with its output when it fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return elapsed


def build(name: str, root: Path, config: List[str], env: Dict[str, str]) -> tuple[float, Path]:
    """One isolated build of example ``name``: (seconds, wheel)."""
    work = Path(tempfile.mkdtemp(dir=root))
    out = work / "dist"
    cmd = [sys.executable, "-m", "build", "--wheel", "-o", str(out), str(example_copy(name, work))]
    for item in config:
        cmd += ["-C", item]
    seconds = run(cmd, env)
    (wheel,) = out.glob("*.whl")
    return seconds, wheel


def test_seconds(python: str, name: str, wheel: Path, root: Path, env: Dict[str, str]) -> float:
    """Seconds the example's tests take in a fresh venv of ``python`` with ``wheel``."""
    work = Path(tempfile.mkdtemp(dir=root))
    if python == sys.executable:
        venv.EnvBuilder(with_pip=False).create(work / "venv")
    else:
        run([python, "-m", "venv", "--without-pip", str(work / "venv")], env)
    vpy = str(work / "venv" / "bin" / "python")
    run([sys.executable, "-m", "pip", "--python", vpy, "install", "-q", str(wheel), "pytest"],
        env)
    return run([vpy, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                str(ROOT / "examples" / name / "tests")], env, cwd=work)


def main() -> int:
    if not AARCH64_PYTHON.is_file():
        raise SystemExit(f"no aarch64 Python at {AARCH64_PYTHON}: run bash .ci/setup-qemu.sh")
    with tempfile.TemporaryDirectory(prefix="zig-cross-") as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CI")}
        env["PIP_FIND_LINKS"] = str(backend_wheelhouse(root))
        native = ["baseline=zig", "manylinux=2_17"]
        cross = [*native, "arch=aarch64"]
        for name in PROJECTS:
            for config in (native, cross):
                build(name, root, config, env)  # warm zig's cache for this target
            native_s, native_wheel = build(name, root, native, env)
            cross_s, cross_wheel = build(name, root, cross, env)
            print(f"{name}: build x86_64 {native_s:5.1f} s, aarch64 (zig cross) {cross_s:5.1f} s"
                  f" = {cross_s / native_s:.2f}x", flush=True)
            host_t = test_seconds(sys.executable, name, native_wheel, root, env)
            qemu_t = test_seconds(str(AARCH64_PYTHON), name, cross_wheel, root, env)
            print(f"{name}: tests x86_64 {host_t:5.1f} s, aarch64 under QEMU {qemu_t:5.1f} s"
                  f" = {qemu_t / host_t:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
