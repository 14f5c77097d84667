"""Time isolated wheel builds of the C++ example: zig twice, then the host's gcc once.

The second zig build shows the steady state: zig's libc++ comes from its cache because the
zig baseline points ZIG_LIB_DIR at one stable copy of zig's lib folder, even though every
isolated build installs ziglang into a fresh temporary venv. Acceptance: second zig / gcc < 1.5.

    python benchmarks/zig_vs_gcc.py                      # through mlbackend (-C baseline=zig)
    python benchmarks/zig_vs_gcc.py --driver setuptools  # plain setuptools.build_meta + overlay

``--driver setuptools`` swaps the project's backend for a small in-tree one that wraps
``setuptools.build_meta.build_wheel`` in ``mlbackend.baseline.zig.toolchain_env`` (zig.py is
loaded from this checkout by path), so it needs nothing of mlbackend but that file.
Both drivers need the network (or PIP_FIND_LINKS) for setuptools and ziglang.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
ZIG_PY = ROOT / "backend" / "mlbackend" / "baseline" / "zig.py"

SHIM = '''"""setuptools.build_meta, with the zig toolchain overlay around build_wheel."""
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

from setuptools.build_meta import *  # noqa: F403
from setuptools import build_meta as _meta

_ZIG = os.environ.get("BENCH_ZIG_PY", "")


def _zig():
    spec = importlib.util.spec_from_file_location("bench_zig", _ZIG)
    zig = importlib.util.module_from_spec(spec)
    sys.modules["bench_zig"] = zig
    spec.loader.exec_module(zig)
    return zig


def get_requires_for_build_wheel(config_settings=None):
    extra = _zig().requirements(os.environ) if _ZIG else []
    return [*_meta.get_requires_for_build_wheel(config_settings), *extra]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if not _ZIG:
        return _meta.build_wheel(wheel_directory, config_settings, metadata_directory)
    zig = _zig()
    with tempfile.TemporaryDirectory() as tmp:
        overlay = zig.toolchain_env("x86_64", (2, 17), Path(tmp), os.environ)
        saved = dict(os.environ)
        os.environ.update(overlay)
        try:
            return _meta.build_wheel(wheel_directory, config_settings, metadata_directory)
        finally:
            os.environ.clear()
            os.environ.update(saved)
'''

EMBEDDED_SETUP = '''from setuptools import Extension, setup
setup(name="bench-cpp", version="0.1",
      ext_modules=[Extension("bench_cpp", ["bench_cpp.cpp"], language="c++",
                             extra_compile_args=["-std=c++17"])])
'''
EMBEDDED_CPP = r'''#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
static PyObject *run(PyObject *, PyObject *args) {
    long n;
    if (!PyArg_ParseTuple(args, "l", &n)) return nullptr;
    try {
        if (n < 0) throw std::invalid_argument("negative " + std::to_string(n));
        std::vector<long> part(2, 0);
        std::thread a([&] { for (long k = 0; k <= n; k += 2) part[0] += k; });
        std::thread b([&] { for (long k = 1; k <= n; k += 2) part[1] += k; });
        a.join(); b.join();
        std::cout << part[0] + part[1] << std::endl;
        return PyLong_FromLong(part[0] + part[1]);
    } catch (const std::exception &e) {
        PyErr_SetString(PyExc_ValueError, e.what());
        return nullptr;
    }
}
static PyMethodDef methods[] = {{"run", run, METH_VARARGS, ""}, {nullptr, nullptr, 0, nullptr}};
static PyModuleDef mod = {PyModuleDef_HEAD_INIT, "bench_cpp", nullptr, -1, methods};
PyMODINIT_FUNC PyInit_bench_cpp(void) { return PyModule_Create(&mod); }
'''


def project(dest: Path, driver: str) -> Path:
    """A fresh copy of the C++ example (or the embedded one), set up for ``driver``."""
    src = dest / "cpp"
    example = ROOT / "examples" / "cpp_ext"
    if example.is_dir():
        shutil.copytree(example, src, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__"))
    else:
        src.mkdir(parents=True)
        (src / "setup.py").write_text(EMBEDDED_SETUP)
        (src / "bench_cpp.cpp").write_text(EMBEDDED_CPP)
        (src / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["manylinux-backend"]\nbuild-backend = "mlbackend"\n')
    if driver == "setuptools":
        (src / "_bench_backend.py").write_text(SHIM)
        text = (src / "pyproject.toml").read_text()
        head, _, tail = text.partition("[build-system]")
        rest = tail.split("\n[", 1)[1] if "\n[" in tail else ""
        (src / "pyproject.toml").write_text(
            head + '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "_bench_backend"\nbackend-path = ["."]\n'
            + ("\n[" + rest if rest else ""))
    return src


def backend_wheelhouse(dest: Path) -> Path:
    """manylinux-backend's own wheel from this checkout, for the isolated builds to find."""
    out = dest / "wheelhouse"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    return out


def timed_build(src: Path, out: Path, config: List[str], env: Dict[str, str]) -> float:
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--driver", choices=("backend", "setuptools"), default="backend")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zig-vs-gcc-") as tmp:
        root = Path(tmp)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if args.driver == "backend":
            env["PIP_FIND_LINKS"] = str(backend_wheelhouse(root))
            zig_config = ["baseline=zig", "manylinux=2_17"]
            gcc_config = ["baseline=host", "manylinux=auto"]
        else:
            zig_config, gcc_config = [], []
        runs = [("zig (first)", zig_config, True), ("zig (second)", zig_config, True),
                ("gcc", gcc_config, False)]
        times: Dict[str, float] = {}
        for index, (label, config, use_zig) in enumerate(runs):
            src = project(root / f"run{index}", args.driver)
            run_env = dict(env)
            if args.driver == "setuptools" and use_zig:
                run_env["BENCH_ZIG_PY"] = str(ZIG_PY)
            times[label] = timed_build(src, root / f"out{index}", config, run_env)
            print(f"{label:>13}: {times[label]:6.1f} s", flush=True)
        ratio = times["zig (second)"] / times["gcc"]
        verdict = "ok" if ratio < 1.5 else "too slow"
        print(f"second zig build / gcc build = {ratio:.2f}x (acceptance < 1.5x: {verdict})")
        return 0 if ratio < 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
