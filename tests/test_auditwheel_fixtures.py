"""auditwheel's own test fixtures through auditwheel and mlbackend: same verdicts.

The fixtures come from auditwheel's sdist on PyPI (cached): the wheels under
``tests/bundled-wheels/`` and C projects under ``tests/integration/``, built here with gcc.
Per case: the same tag, the same external libraries, the same refusal, the same repaired file
name, and the repaired wheel installs and imports in a fresh venv when it is for this machine.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import pytest
from oracle import auditwheel_repair, auditwheel_show, install_and_import, mlbackend_repair
from pypi_cache import fetch_sdist

from mlbackend.audit import audit_wheel
from mlbackend.errors import MlbackendError

HOST = platform.machine()
AUDITWHEEL = version("auditwheel")

# Where mlbackend deliberately differs from auditwheel, and why.
DIFFERS: Dict[str, str] = {
    # auditwheel takes soft-float ARM code for an unknown architecture and calls the wheel
    # "not a platform wheel"; it is an armv5l binary, which no manylinux policy covers.
    "testsimple-0.0.1-cp313-cp313-linux_armv5l.whl": "armv5l",
    # auditwheel 6.8 cannot tell the libc of these armv6l (soft-float) musl binaries either.
    # auditwheel calls a wheel whose only binary is for an architecture without policies
    # "not a platform wheel"; mlbackend refuses it too, naming what is wrong (this fixture's
    # WHEEL also says cp311 where the file name says cp313).
    "testsimple-0.0.1-cp313-cp313-linux_mips64.whl": "mips64",
    # auditwheel's repair has no PyFPE_jbuf check: it writes manylinux_2_41 for a wheel its
    # own `show` calls linux (PyFPE_jbuf is gone from Python >= 3.7); mlbackend refuses.
    "fpewheel-0.0.0-cp35-cp35m-linux_x86_64.whl": "pyfpe",
}
# Binaries that load no C library at all: auditwheel refuses an extension it cannot place;
# mlbackend audits it for this machine's libc (as auditwheel does for programs) and says so.
NO_LIBC_SIGN = {"testsimple-0.0.1-cp310-cp310-linux_x86_64.whl"}
# Where the repaired name differs: auditwheel keeps every tag the wheel already carries but
# linux_<arch>, even a false one; mlbackend keeps only the tags that still hold.
KEEPS_FALSE_TAGS = {
    "python_mscl-67.0.1.0-cp313-cp313-manylinux2014_aarch64.whl",  # needs glibc 2.31
    "testsimple-0.0.1-cp312-cp312-linux_armv6l.whl",  # linux_armv6l beside musllinux_1_2_armv7l
}


def _platforms(name: str) -> set[str]:
    return set(name[: -len(".whl")].rsplit("-", 1)[1].split("."))


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """auditwheel's ``tests/`` folder from its sdist (the installed version's)."""
    sdist = fetch_sdist(f"auditwheel=={AUDITWHEEL}", f"auditwheel-{AUDITWHEEL}.tar.gz")
    dest = tmp_path_factory.mktemp("auditwheel-sdist")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name]
        tar.extractall(dest, members=members)
    return dest / f"auditwheel-{AUDITWHEEL}" / "tests"


def _bundled() -> List[str]:
    return [
        *(f"glibc/testsimple-0.0.1-cp313-cp313-linux_{a}.whl" for a in (
            "aarch64", "armv5l", "armv7l", "i686", "mips64", "ppc64le", "riscv64", "s390x",
            "x86_64")),
        "musllinux_1_2/testsimple-0.0.1-cp310-cp310-linux_x86_64.whl",
        *(f"musllinux_1_2/testsimple-0.0.1-cp312-cp312-linux_{a}.whl" for a in (
            "aarch64", "armv6l", "armv7l", "i686", "ppc64le", "riscv64", "s390x", "x86_64")),
        "cffi-1.5.0-cp27-none-linux_x86_64.whl",
        "fpewheel-0.0.0-cp35-cp35m-linux_x86_64.whl",
        "plumbum-1.6.8-py2.py3-none-any.whl",
        "python_mscl-67.0.1.0-cp313-cp313-manylinux2014_aarch64.whl",
        "python_snappy-0.5.2-pp260-pypy_41-linux_x86_64.whl",
        "testzlib-0.0.1-cp310-cp310-linux_x86_64.whl",
    ]


def _ours(wheel: Path) -> Tuple[Optional[str], Optional[set[str]], str]:
    """mlbackend's tag, external libraries (for the most compatible policy), or its error."""
    try:
        report = audit_wheel(wheel)
    except MlbackendError as exc:
        return None, None, exc.message
    if report.pure or report.policies is None:
        return "pure", set(), ""
    return report.tag, set(report.externals.get(report.policies.highest.name, {})), ""


def _compare(wheel: Path, out: Path, env: Optional[Mapping[str, str]] = None,
             python: Optional[str] = None, module: Optional[str] = None) -> None:
    if env:
        os.environ.update(env)  # the in-process audit reads LD_LIBRARY_PATH like the CLI
    try:
        theirs = auditwheel_show(wheel, env)
        tag, libs, error = _ours(wheel)
    finally:
        for key in env or {}:
            os.environ.pop(key, None)
    reason = DIFFERS.get(wheel.name)
    if wheel.name in NO_LIBC_SIGN:
        assert "couldn't detect libc" in str(theirs.get("error")), theirs
        report = audit_wheel(wheel)
        assert any("no binary says which C library" in n for n in report.notes), report.notes
        return
    if theirs.get("pure") or "not look like a platform wheel" in str(theirs.get("error")):
        assert tag == "pure" or reason, (wheel.name, tag, error)
    elif "error" in theirs or theirs["returncode"] != 0:
        assert reason is not None or tag is None, (wheel.name, theirs, tag)
    else:
        assert tag == theirs["overall_tag"], (wheel.name, tag, theirs)
        assert libs == set(theirs["external_libs"]), (wheel.name, libs, theirs)
    aw = auditwheel_repair(wheel, env=env)
    ours = mlbackend_repair(wheel, out, env=env)
    if reason is not None:
        assert ours.returncode != 0, (wheel.name, reason, ours)
        return
    if aw.returncode != 0:
        assert ours.returncode != 0, (wheel.name, aw, ours)
        assert ours.message.startswith("mlbackend: ") and "Traceback" not in ours.message
        return
    if aw.name is None:  # auditwheel exits 0 without a wheel: it found nothing to do
        assert ours.returncode != 0 or ours.name == wheel.name, (wheel.name, ours)
        return
    assert ours.returncode == 0, (wheel.name, ours, aw)
    if wheel.name in KEEPS_FALSE_TAGS:
        dropped = _platforms(str(aw.name)) - _platforms(str(ours.name))
        assert dropped and dropped <= _platforms(wheel.name), (ours.name, aw.name)
        assert _platforms(str(ours.name)) < _platforms(str(aw.name)), (ours.name, aw.name)
    else:
        assert ours.name == aw.name, (wheel.name, ours.name, aw.name)
    if python and module and f"_{HOST}" in str(ours.name) and "musllinux" not in str(ours.name):
        install_and_import(out / str(ours.name), python, module, out)


@pytest.mark.parametrize("name", _bundled())
def test_bundled_wheel(fixtures: Path, tmp_path: Path, name: str) -> None:
    """Each bundled wheel: the same tag, libraries, refusal and repaired name."""
    wheel = fixtures / "bundled-wheels" / name
    python = "3.13" if "cp313" in name else None
    _compare(wheel, tmp_path / "out", python=python, module="testsimple")


def test_musl_fixtures_are_musllinux(fixtures: Path, tmp_path: Path) -> None:
    """Musl binaries in linux_* wheels get a musllinux tag and file name, never manylinux
    (or, where nothing in the binary tells the libc, a refusal that says so)."""
    for wheel in sorted((fixtures / "bundled-wheels" / "musllinux_1_2").glob("*.whl")):
        tag, _, error = _ours(wheel)
        if wheel.name in NO_LIBC_SIGN:
            continue
        assert tag.startswith("musllinux_1_2_"), (wheel.name, tag, error)
        ours = mlbackend_repair(wheel, tmp_path / wheel.stem)
        assert ours.returncode == 0 and "-musllinux_1_2_" in str(ours.name), ours


# --- C fixtures of tests/integration, built with gcc ---------------------------------------


def _pip_wheel(project: Path, out: Path, env: Optional[Mapping[str, str]] = None) -> Path:
    full = dict(os.environ)
    full.pop("PYTHONPATH", None)
    full.update(env or {})
    shutil.rmtree(project / "build", ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "--no-build-isolation", "-w", str(out), str(project)],
                          capture_output=True, text=True, cwd=project, env=full, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = sorted(out.glob("*.whl"), key=lambda p: p.stat().st_mtime)
    return made[-1]


def _project(fixtures: Path, name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(fixtures / "integration" / name, target)
    return target


PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.mark.parametrize("dtag", ["rpath", "runpath"])
def test_testrpath(fixtures: Path, tmp_path: Path, dtag: str) -> None:
    """Libraries found through the extension's and each other's RPATH/RUNPATH."""
    project = _project(fixtures, "testrpath", tmp_path)
    wheel = _pip_wheel(project, tmp_path / "dist", {"DTAG": dtag})
    env = {"LD_LIBRARY_PATH": str(project / "a")}
    _compare(wheel, tmp_path / "out", env, PY, "testrpath.testrpath")


def test_testpartialresolution(fixtures: Path, tmp_path: Path) -> None:
    """Libraries in the wheel that need each other, found only through the loader chain."""
    project = _project(fixtures, "testpartialresolution", tmp_path)
    wheel = _pip_wheel(project, tmp_path / "dist")
    _compare(wheel, tmp_path / "out", None, PY, "testpartialresolution.testpartialresolution")
    report = audit_wheel(wheel)
    assert report.tag != f"linux_{HOST}", report.reason


def test_testdependencies(fixtures: Path, tmp_path: Path) -> None:
    """An external library on LD_LIBRARY_PATH is vendored under its real file name."""
    project = _project(fixtures, "testdependencies", tmp_path)
    wheel = _pip_wheel(project, tmp_path / "dist", {"WITH_DEPENDENCY": "1"})
    env = {"LD_LIBRARY_PATH": str(project)}
    _compare(wheel, tmp_path / "out", env, PY, "testdependencies")
    # the forecast counts libdependency's own symbol versions: it names the repair's tag
    os.environ.update(env)
    try:
        report = audit_wheel(wheel)
    finally:
        os.environ.pop("LD_LIBRARY_PATH")
    aw = auditwheel_repair(wheel, env=env)
    assert report.repairable_policy is not None
    assert report.repairable_policy.name in _platforms(str(aw.name)), (report.to_dict(), aw)
    # dep_run comes from libdependency, not from glibc: the unversioned note leaves it out
    assert not [n for n in report.notes if "dep_run" in n], report.notes
    assert "libdependency.so" in report.repair_summary


def test_exclude_takes_path_globs(fixtures: Path, tmp_path: Path) -> None:
    """``--exclude`` with a path glob keeps the library out, as auditwheel's does."""
    project = _project(fixtures, "testdependencies", tmp_path)
    wheel = _pip_wheel(project, tmp_path / "dist", {"WITH_DEPENDENCY": "1"})
    env = {"LD_LIBRARY_PATH": str(project)}
    args = ["--exclude", f"{project}/*.so"]
    aw = auditwheel_repair(wheel, args, env)
    ours = mlbackend_repair(wheel, tmp_path / "out", args, env)
    assert ours.returncode == aw.returncode == 0 and ours.name == aw.name, (ours, aw)
    with zipfile.ZipFile(tmp_path / "out" / str(ours.name)) as zf:
        assert not [n for n in zf.namelist() if "libdependency" in n]


def test_testdependencies_auditwheel_ld_library_path(fixtures: Path, tmp_path: Path) -> None:
    """AUDITWHEEL_LD_LIBRARY_PATH is searched as auditwheel searches it."""
    project = _project(fixtures, "testdependencies", tmp_path)
    wheel = _pip_wheel(project, tmp_path / "dist", {"WITH_DEPENDENCY": "1"})
    _compare(wheel, tmp_path / "out", {"AUDITWHEEL_LD_LIBRARY_PATH": str(project)})


@pytest.mark.parametrize("level", ["x86-64-v3"])
def test_isa_extension_is_refused(fixtures: Path, tmp_path: Path, level: str) -> None:
    """A binary that needs x86-64-v3 is refused by both repairs, with the reason."""
    if HOST != "x86_64":
        pytest.fail("this case builds x86_64 code; run it on an x86_64 machine")
    project = _project(fixtures, "testdependencies", tmp_path)
    wheel = _pip_wheel(project, tmp_path / "dist", {"WITH_ARCH": level})
    _compare(wheel, tmp_path / "out")
    ours = mlbackend_repair(wheel, tmp_path / "again")
    assert ours.returncode == 1 and "x86_64_v3" in ours.message, ours


def test_testsimple(fixtures: Path, tmp_path: Path) -> None:
    """The simplest extension: the same tag and name as auditwheel's repair."""
    project = _project(fixtures, "testsimple", tmp_path)
    wheel = _pip_wheel(project, tmp_path / "dist")
    _compare(wheel, tmp_path / "out", None, PY, "testsimple")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def make_wheel(dest: Path, dist: str, tag: str, files: Mapping[str, Tuple[bytes, int]]) -> Path:
    """A wheel ``<dist>-0.1-<tag>.whl`` holding ``files`` (name -> data, mode)."""
    info = f"{dist}-0.1.dist-info"
    python, abi, plat = tag.split("-")
    meta = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n".encode(),
        f"{info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: false\n"
                          f"Tag: {python}-{abi}-{plat}\n").encode(),
    }
    path = dest / f"{dist}-0.1-{tag}.whl"
    dest.mkdir(parents=True, exist_ok=True)
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (data, mode) in [*files.items(), *((k, (v, 0o644)) for k, v in meta.items())]:
            zinfo = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            zinfo.external_attr = (0o100000 | mode) << 16
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zinfo, data)
            records.append(_record_line(name, data))
        zf.writestr(f"{info}/RECORD", "\n".join([*records, f"{info}/RECORD,,"]) + "\n")
    return path


def _gcc(*args: object) -> None:
    proc = subprocess.run(["gcc", *map(str, args)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_libmvec_is_never_vendored(fixtures: Path, tmp_path: Path) -> None:
    """A library linking glibc's libmvec: same tag as auditwheel; the repair keeps libmvec on
    the system (it is part of glibc), so the tag does not rise to the host's glibc."""
    lib = tmp_path / "libtest_mvec.so"
    _gcc("-shared", "-fPIC", "-o", lib, fixtures / "integration/test_mvec/main.c",
         "-Wl,-no-as-needed", "-lmvec", "-lm")
    wheel = make_wheel(tmp_path / "dist", "test_mvec", f"py3-none-linux_{HOST}",
                       {"test_mvec/libtest_mvec.so": (lib.read_bytes(), 0o755),
                        "test_mvec/__init__.py": (b"", 0o644)})
    report = audit_wheel(wheel)
    theirs = auditwheel_show(wheel)
    assert report.tag == theirs["overall_tag"]
    ours = mlbackend_repair(wheel, tmp_path / "out")
    assert ours.returncode == 0, ours
    with zipfile.ZipFile(tmp_path / "out" / str(ours.name)) as zf:
        assert not [n for n in zf.namelist() if "libmvec" in n]
    assert str(ours.name).endswith(f"{report.policy.name}.whl" if report.policy else "")


def test_elf_script_gets_a_launcher_and_runs(fixtures: Path, tmp_path: Path) -> None:
    """An ELF program under .data/scripts/ that needs an external library: the repair moves
    it into platlib behind a launcher, as auditwheel does, and it runs after install."""
    dep = fixtures / "integration" / "testdependencies"
    libdir = tmp_path / "lib"
    libdir.mkdir()
    _gcc("-shared", "-fPIC", "-D_GNU_SOURCE", "-o", libdir / "libdependency.so",
         dep / "dependency.c")
    src = tmp_path / "hello.c"
    src.write_text('#include "dependency.h"\n#include <stdio.h>\n'
                   'int main(void) { printf("dep=%d\\n", dep_run()); return 0; }\n')
    program = tmp_path / "hello"
    _gcc("-o", program, src, f"-I{dep}", f"-L{libdir}", "-ldependency")
    wheel = make_wheel(tmp_path / "dist", "hello", f"py3-none-linux_{HOST}", {
        "hello/__init__.py": (b"", 0o644),
        "hello-0.1.data/scripts/hello": (program.read_bytes(), 0o755)})
    env = {"LD_LIBRARY_PATH": str(libdir)}
    aw = auditwheel_repair(wheel, env=env)
    ours = mlbackend_repair(wheel, tmp_path / "out", env=env)
    assert ours.returncode == 0 and ours.name == aw.name, (ours, aw)
    repaired = tmp_path / "out" / str(ours.name)
    with zipfile.ZipFile(repaired) as zf:
        names = zf.namelist()
        assert "hello.scripts/hello" in names
        assert zf.read("hello-0.1.data/scripts/hello").startswith(b"#!python")
    venv_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)
    subprocess.run([str(venv_dir / "bin/python"), "-m", "pip", "install", "-q", str(repaired)],
                   check=True, capture_output=True)
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    proc = subprocess.run([str(venv_dir / "bin/hello")], capture_output=True, text=True,
                          env=clean, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("dep="), proc.stderr


def test_pure_wheel_has_its_own_exit_code(fixtures: Path, tmp_path: Path) -> None:
    """auditwheel refuses a pure wheel; mlbackend too, with exit 4 and one line."""
    wheel = fixtures / "bundled-wheels" / "plumbum-1.6.8-py2.py3-none-any.whl"
    aw = auditwheel_repair(wheel)
    ours = mlbackend_repair(wheel, tmp_path / "out")
    assert aw.returncode != 0
    assert ours.returncode == 4 and "not a platform wheel" in ours.message, ours
    assert not list((tmp_path / "out").glob("*"))

