"""Repair end to end: private and system libraries vendored, wheels installed and imported."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import (
    auditwheel_tag,
    build_wheel,
    check_record,
    copy_project,
    install,
    make_venv,
    platform_tags,
    run,
)

from mlbackend.elf import read_elf
from mlbackend.repair import vendored_name

pytestmark = pytest.mark.slow

BASE_C = "int mlb_base_twice(int x) { return 2 * x; }\n"
PRIV_C = """
int mlb_base_twice(int x);
int mlb_priv_answer(void) { return mlb_base_twice(21); }
"""
EXT_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
int mlb_priv_answer(void);
static PyObject *answer(PyObject *self, PyObject *args) {
    return PyLong_FromLong(mlb_priv_answer());
}
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, "42, from libmlbpriv"}, {0}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_priv", 0, -1, methods};
PyMODINIT_FUNC PyInit__priv(void) { return PyModule_Create(&mod); }
"""
SETUP_PY = """
from setuptools import Extension, setup
setup(ext_modules=[Extension("privdemo._priv", ["privdemo/_priv.c"], libraries=["mlbpriv"],
                             library_dirs=[{libdir!r}])])
"""
PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "{backend}"

[project]
name = "privdemo"
version = "1.0"

[tool.setuptools]
packages = ["privdemo"]
"""
PRIV_SONAMES = {"libmlbpriv.so.1", "libmlbbase.so.0"}


@dataclass(frozen=True)
class Private:
    """A private library pair (libmlbpriv needs libmlbbase) outside every default path."""

    libdir: Path

    def env(self, **extra: str) -> Dict[str, str]:
        """The environment with LD_LIBRARY_PATH pointing at the private libraries."""
        env = clean_env()
        env["LD_LIBRARY_PATH"] = str(self.libdir)
        env.update(extra)
        return env


def clean_env() -> Dict[str, str]:
    """os.environ without LD_LIBRARY_PATH or CI (the build must not turn strict), with this
    tree's backend first on the path (the CLI and the --no-isolation builds run it, not an
    installed copy)."""
    env = dict(os.environ)
    for key in ("LD_LIBRARY_PATH", "CI"):
        env.pop(key, None)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "backend")
    env.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    return env


def mlbackend_cmd() -> List[str]:
    return [sys.executable, "-m", "mlbackend"]


def libs_in(wheel: Path) -> List[str]:
    """File names under ``*.libs/`` in ``wheel``."""
    with zipfile.ZipFile(wheel) as zf:
        return sorted(n.rsplit("/", 1)[1] for n in zf.namelist()
                      if ".libs/" in n and not n.endswith("/"))


def import_in_venv(python: Path, code: str, *, check: bool = True) -> str:
    proc = run([python, "-c", code], env=clean_env(), check=check, cwd=python.parent)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def private(tmp_path_factory: pytest.TempPathFactory) -> Private:
    """libmlbbase.so.0 and libmlbpriv.so.1 built with gcc into a private prefix."""
    prefix = tmp_path_factory.mktemp("prefix")
    src = prefix / "src"
    libdir = prefix / "lib"
    src.mkdir()
    libdir.mkdir()
    (src / "base.c").write_text(BASE_C)
    (src / "priv.c").write_text(PRIV_C)
    run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-Wl,-soname,libmlbbase.so.0",
         "-o", libdir / "libmlbbase.so.0", src / "base.c"])
    (libdir / "libmlbbase.so").symlink_to("libmlbbase.so.0")
    run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-Wl,-soname,libmlbpriv.so.1",
         "-o", libdir / "libmlbpriv.so.1.0.0", src / "priv.c", f"-L{libdir}", "-lmlbbase"])
    (libdir / "libmlbpriv.so.1").symlink_to("libmlbpriv.so.1.0.0")
    (libdir / "libmlbpriv.so").symlink_to("libmlbpriv.so.1")
    return Private(libdir)


def private_project(root: Path, private: Private, backend: str) -> Path:
    project = root / "privdemo"
    (project / "privdemo").mkdir(parents=True)
    (project / "privdemo" / "__init__.py").write_text("from ._priv import answer\n")
    (project / "privdemo" / "_priv.c").write_text(EXT_C)
    (project / "setup.py").write_text(SETUP_PY.format(libdir=str(private.libdir)))
    (project / "pyproject.toml").write_text(PYPROJECT.format(backend=backend))
    return project


@pytest.fixture(scope="session")
def private_plain(tmp_path_factory: pytest.TempPathFactory, private: Private) -> Path:
    """The extension wheel as setuptools makes it: linux tag, libmlbpriv not in it."""
    root = tmp_path_factory.mktemp("plain")
    project = private_project(root, private, "setuptools.build_meta")
    return build_wheel(project, root / "dist", clean_env(), isolated=False)


@pytest.fixture(scope="session")
def private_cli(tmp_path_factory: pytest.TempPathFactory, private: Private,
                private_plain: Path) -> Path:
    """``private_plain`` repaired by ``mlbackend repair``."""
    out = tmp_path_factory.mktemp("cli-repaired")
    run([*mlbackend_cmd(), "repair", private_plain, "-w", out], env=private.env())
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="session")
def private_backend(tmp_path_factory: pytest.TempPathFactory, private: Private) -> Path:
    """The extension built through mlbackend's build_wheel hook (repair on by default)."""
    root = tmp_path_factory.mktemp("backend")
    project = private_project(root, private, "mlbackend")
    return build_wheel(project, root / "dist", private.env(), isolated=False)


@pytest.fixture(scope="session")
def yaml_plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/yaml_ext built by the backend with repair off: libyaml stays external."""
    root = tmp_path_factory.mktemp("yaml-plain")
    return build_wheel(copy_project("yaml_ext", root), root / "dist", clean_env(),
                       "repair=false", isolated=False)


@pytest.fixture(scope="session")
def yaml_backend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/yaml_ext built by the backend (repair on)."""
    root = tmp_path_factory.mktemp("yaml")
    return build_wheel(copy_project("yaml_ext", root), root / "dist", clean_env(),
                       isolated=False)


def test_unrepaired_wheel_fails_to_import(tmp_path: Path, private_plain: Path) -> None:
    assert platform_tags(private_plain) == ["linux_x86_64"]
    python = make_venv(tmp_path / "venv")
    install(python, private_plain)
    out = import_in_venv(python, "import privdemo", check=False)
    assert "libmlbpriv.so.1" in out


def test_cli_repair_imports_without_ld_library_path(tmp_path: Path, private_cli: Path) -> None:
    assert any(t.startswith("manylinux_") for t in platform_tags(private_cli))
    names = libs_in(private_cli)
    assert {n.split("-", 1)[0] for n in names} == {"libmlbpriv", "libmlbbase"}
    check_record(private_cli)
    python = make_venv(tmp_path / "venv")
    install(python, private_cli)
    assert import_in_venv(python, "import privdemo; print(privdemo.answer())").strip() == "42"


def test_backend_repair_imports(tmp_path: Path, private_backend: Path) -> None:
    assert any(t.startswith("manylinux_") for t in platform_tags(private_backend))
    assert len(libs_in(private_backend)) == 2
    check_record(private_backend)
    python = make_venv(tmp_path / "venv")
    install(python, private_backend)
    assert import_in_venv(python, "import privdemo; print(privdemo.answer())").strip() == "42"


def test_vendored_files_are_renamed_and_patched(tmp_path: Path, private: Private,
                                                private_cli: Path) -> None:
    with zipfile.ZipFile(private_cli) as zf:
        zf.extractall(tmp_path)
    libs = tmp_path / "privdemo.libs"
    for lib in libs.iterdir():
        info = read_elf(lib)
        assert info.soname == lib.name
        assert not set(info.needed) & PRIV_SONAMES
    # copies are named after the real file, as auditwheel names them
    real_base = (private.libdir / "libmlbbase.so.0").resolve()
    real_priv = (private.libdir / "libmlbpriv.so.1").resolve()
    base = vendored_name(real_base.name, real_base.read_bytes())
    priv = read_elf(libs / vendored_name(real_priv.name, real_priv.read_bytes()))
    assert base in priv.needed
    assert priv.rpath == ("$ORIGIN",)
    assert read_elf(libs / base).rpath == ()
    (ext,) = (tmp_path / "privdemo").glob("_priv*.so")
    info = read_elf(ext)
    assert info.rpath == ("$ORIGIN/../privdemo.libs",)
    assert [n for n in info.needed if n.startswith("libmlbpriv")] == [priv.soname]


def test_missing_library_names_it_and_writes_nothing(tmp_path: Path,
                                                     private_plain: Path) -> None:
    proc = run([*mlbackend_cmd(), "repair", private_plain, "-w", tmp_path / "out"],
               env=clean_env(), check=False)
    assert proc.returncode == 3  # the system lacks the library: not bad input (exit 2)
    assert "Traceback" not in proc.stderr
    error = proc.stderr.splitlines()[0]
    assert "libmlbpriv.so.1" in error
    assert "privdemo/_priv" in error
    assert "/usr/lib" in error and "/lib64" in error
    assert not list((tmp_path / "out").glob("*.whl"))


def test_exclude_skips_library_and_its_dependencies(tmp_path: Path, private: Private,
                                                    private_plain: Path) -> None:
    run([*mlbackend_cmd(), "repair", private_plain, "-w", tmp_path / "a",
         "--exclude", "libmlbpriv.*"], env=private.env())
    (wheel,) = (tmp_path / "a").glob("*.whl")
    assert libs_in(wheel) == []  # libmlbbase is only needed through libmlbpriv


def test_exclude_one_and_warn_on_unmatched(tmp_path: Path, private: Private,
                                          private_plain: Path) -> None:
    proc = run([*mlbackend_cmd(), "repair", private_plain, "-w", tmp_path,
                "--exclude", "libmlbbase.*", "--exclude", "libnothing*"], env=private.env())
    (wheel,) = tmp_path.glob("*.whl")
    assert [n.split("-", 1)[0] for n in libs_in(wheel)] == ["libmlbpriv"]
    assert "'libnothing*' matches no library" in proc.stderr
    assert "libmlbbase.*" not in proc.stderr


def test_strip(tmp_path: Path, private: Private, private_plain: Path) -> None:
    run([*mlbackend_cmd(), "repair", private_plain, "-w", tmp_path, "--strip"],
        env=private.env())
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if ".libs/" in name:
                data = zf.read(name)
                assert b".symtab" not in data and b".debug_info" not in data, name
    check_record(wheel)


def test_yaml_example_vendors_libyaml_and_imports(tmp_path: Path, yaml_backend: Path) -> None:
    assert [n.split("-")[:2] for n in libs_in(yaml_backend)] == [["libyaml", "0"]]
    check_record(yaml_backend)
    python = make_venv(tmp_path / "venv")
    install(python, yaml_backend)
    out = import_in_venv(python, "import mlb_example_yaml as m; "
                                 "print(m.version(), m.count_scalars('a: [b, c]'))")
    version, count = out.split()
    assert version.startswith("0.") and count == "3"


@pytest.mark.parametrize("which", ["private", "yaml"])
def test_same_as_auditwheel(tmp_path: Path, which: str, request: pytest.FixtureRequest,
                            private: Private) -> None:
    plain: Path = request.getfixturevalue(f"{which}_plain")
    env = private.env()
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    run([*mlbackend_cmd(), "repair", plain, "-w", ours], env=env)
    run([sys.executable, "-m", "auditwheel", "repair", plain, "-w", theirs], env=env)
    (mine,) = ours.glob("*.whl")
    (ref,) = theirs.glob("*.whl")
    # both name the copy after the real file (libfoo-<hash>.so.1.0.0), and the wheel alike
    assert libs_in(mine) == libs_in(ref)
    assert libs_in(mine)
    assert mine.name == ref.name
    shown = run([sys.executable, "-m", "auditwheel", "show", "--json", mine], env=clean_env())
    data = json.loads(shown.stdout)
    assert data["external_libs"] == {}
    assert data["overall_tag"] == auditwheel_tag(ref)
    assert data["overall_tag"] in platform_tags(mine)
    check_record(mine)


def test_repair_is_idempotent(tmp_path: Path, private_cli: Path) -> None:
    run([*mlbackend_cmd(), "repair", private_cli, "-w", tmp_path], env=clean_env())
    (again,) = tmp_path.glob("*.whl")
    assert libs_in(again) == libs_in(private_cli)


def test_patchelf_is_found() -> None:
    from mlbackend.patcher import find_patchelf

    path = find_patchelf()
    assert os.access(path, os.X_OK)
    assert shutil.which(str(path))
