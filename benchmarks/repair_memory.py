"""Peak memory (RSS) of ``mlbackend repair`` on big wheels, against ``auditwheel repair``.

    python benchmarks/repair_memory.py [--no-auditwheel] [--pypi-wheel PATH]

Two wheels, both tagged ``linux_x86_64`` so that repair must rewrite them whole:
- one made here: a small compiled extension and one 512 MiB member;
- a real ~200 MB wheel from PyPI (triton 3.1.0, cp311, cached under
  ``${MLBACKEND_TEST_CACHE:-~/.cache/mlbackend-tests}/pypi``), retagged ``linux_x86_64``.
Each tool runs as its command line in a child process; the child's peak RSS comes from
``wait4``. The bar is 150 MB for mlbackend.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from mlbackend.tags import rename_wheel, retag_wheel_metadata  # noqa: E402
from mlbackend.wheel_reader import WheelReader  # noqa: E402
from mlbackend.wheel_writer import write_wheel  # noqa: E402

BAR_MB = 150
PYPI = ("triton==3.1.0", "triton-3.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
EXT_C = r"""
#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ext", 0, -1, 0};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&mod); }
"""
WHEEL = ("Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\n"
         "Tag: cp311-cp311-linux_x86_64\n")


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def big_wheel(folder: Path, size: int = 512 << 20) -> Path:
    """A linux_x86_64 wheel with a compiled extension and one ``size``-byte member,
    written streaming (the member is never whole in memory)."""
    (folder / "ext.c").write_text(EXT_C)
    subprocess.run(["gcc", "-shared", "-fPIC", f"-I{sysconfig.get_path('include')}", "-o",
                    str(folder / "ext.so"), str(folder / "ext.c")], check=True)
    ext = (folder / "ext.so").read_bytes()
    wheel = folder / "big-1.0-cp311-cp311-linux_x86_64.whl"
    rows: List[str] = []
    block = os.urandom(64 << 10) + bytes(960 << 10)  # 1 MiB, deflates quickly
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("big/_ext.cpython-311-x86_64-linux-gnu.so", ext)
        rows.append(f"big/_ext.cpython-311-x86_64-linux-gnu.so,sha256="
                    f"{_b64(hashlib.sha256(ext).digest())},{len(ext)}")
        digest = hashlib.sha256()
        with zf.open("big/blob.bin", "w") as out:
            for _ in range(size // len(block)):
                out.write(block)
                digest.update(block)
        rows.append(f"big/blob.bin,sha256={_b64(digest.digest())},{size}")
        zf.writestr("big-1.0.dist-info/WHEEL", WHEEL)
        rows.append(f"big-1.0.dist-info/WHEEL,sha256="
                    f"{_b64(hashlib.sha256(WHEEL.encode()).digest())},{len(WHEEL)}")
        zf.writestr("big-1.0.dist-info/RECORD", "\n".join(rows) + "\nbig-1.0.dist-info/RECORD,,\n")
    return wheel


def pypi_wheel(given: Optional[Path]) -> Path:
    """The cached PyPI wheel (downloaded once)."""
    if given is not None:
        return given
    cache = Path(os.environ.get("MLBACKEND_TEST_CACHE",
                                Path.home() / ".cache" / "mlbackend-tests")) / "pypi"
    path = cache / PYPI[1]
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary", ":all:", "--python-version", "3.11", "--platform",
                        "manylinux_2_17_x86_64", "-d", str(cache), PYPI[0]], check=True)
    return path


def as_linux(wheel: Path, folder: Path) -> Path:
    """``wheel`` retagged linux_x86_64 (so that repair has to rewrite it)."""
    dest = folder / rename_wheel(wheel.name, ["linux_x86_64"])
    with WheelReader.open(wheel) as reader:
        write_wheel(reader, dest,
                    wheel_metadata=retag_wheel_metadata(reader.wheel_metadata,
                                                        ["linux_x86_64"]))
    return dest


def peak(command: List[str]) -> Tuple[float, float]:
    """(peak RSS in MB, seconds) of ``command`` run as a child process."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "backend")}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err.decode()}")
    return usage.ru_maxrss / 1024, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-auditwheel", action="store_true")
    parser.add_argument("--pypi-wheel", type=Path)
    args = parser.parse_args()
    failed = False
    env_python = [sys.executable]
    with tempfile.TemporaryDirectory(prefix="mlb-memory-") as tmp:
        work = Path(tmp)
        inputs = [("512 MiB member", big_wheel(work)),
                  (pypi_wheel(args.pypi_wheel).name,
                   as_linux(pypi_wheel(args.pypi_wheel), work))]
        for label, wheel in inputs:
            size = wheel.stat().st_size / 1e6
            ours, ours_s = peak([*env_python, "-m", "mlbackend", "repair", str(wheel), "-w",
                                 str(work / "out-mlbackend")])
            line = (f"{label:50} {size:7.1f} MB  mlbackend repair: peak RSS {ours:6.1f} MB "
                    f"({ours_s:5.1f} s)")
            if not args.no_auditwheel:
                theirs, theirs_s = peak([*env_python, "-m", "auditwheel", "repair",
                                         str(wheel), "-w", str(work / "out-auditwheel")])
                line += (f"; auditwheel repair: {theirs:6.1f} MB ({theirs_s:5.1f} s); "
                         f"ratio {ours / theirs:.2f}")
            print(line, flush=True)
            failed |= ours >= BAR_MB
    print(f"bar: under {BAR_MB} MB: {'missed' if failed else 'met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
