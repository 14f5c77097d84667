"""`mlbackend pipeline` and `mlbackend pipeline plan`: matrix, interpreters, errors, a real run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_project, make_venv, run

from mlbackend.errors import ConfigError
from mlbackend.pipeline import main
from mlbackend.pipeline.plan import SUPPORTED_PYTHONS
from mlbackend.pipeline.python import find_interpreter, parse_versions

ROOT = Path(__file__).resolve().parents[1]


def _plan(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["plan", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_named_versions_and_runners(capsys):
    matrix = _plan(capsys, "--python-versions", "3.11, 3.12", "--os",
                   "ubuntu-latest ubuntu-24.04-arm")
    entries = [(e["os"], e["python"]) for e in matrix["include"]]
    assert entries == [("ubuntu-latest", "3.11"), ("ubuntu-latest", "3.12"),
                       ("ubuntu-24.04-arm", "3.11"), ("ubuntu-24.04-arm", "3.12")]
    # exactly one job keeps the sdist, every job has its own artifact name
    assert [e["sdist"] for e in matrix["include"]] == [True, False, False, False]
    assert len({e["artifact"] for e in matrix["include"]}) == 4


def test_plan_follows_requires_python(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "1"\nrequires-python = ">=3.10,<3.13"\n')
    matrix = _plan(capsys, str(tmp_path))
    assert [e["python"] for e in matrix["include"]] == ["3.10", "3.11", "3.12"]


def test_plan_versions_only_lists_what_the_matrix_plans(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "1"\nrequires-python = ">=3.12"\n')
    assert main(["plan", str(tmp_path), "--versions-only"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == [e["python"] for e in _plan(capsys, str(tmp_path))["include"]]
    assert listed == list(SUPPORTED_PYTHONS[SUPPORTED_PYTHONS.index("3.12"):])
    assert main(["plan", str(tmp_path), "--versions-only", "--python-versions", "3.9,cp311"]) == 0
    assert capsys.readouterr().out == "3.9\n3.11\n"


def test_plan_of_an_example_is_valid_for_from_json(capsys):
    matrix = _plan(capsys, str(ROOT / "examples" / "c_ext"), "--manylinux", "2_17")
    assert matrix["include"][0]["python"] == "3.8"
    assert all(e["manylinux"] == "2_17" for e in matrix["include"])


@pytest.mark.parametrize(("args", "needle"), [
    (["plan", "--python-versions", "2.7"], "'2.7' is not of the form 3.Y"),
    (["plan", "--bogus"], "unrecognized arguments: --bogus"),
    (["--python-versions", "3.99", str(ROOT / "examples" / "c_ext")],
     "no Python 3.99 interpreter found"),
    (["/nonexistent/project"], "has no pyproject.toml or setup.py"),
    (["--test-sources", "../outside", str(ROOT / "examples" / "c_ext")],
     "test-sources path '../outside' is not inside"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(args))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1, err


def test_parse_versions_accepts_common_spellings():
    assert parse_versions("3.11 3.12,3.13\ncp310 310 3.11") == ("3.11", "3.12", "3.13", "3.10")
    with pytest.raises(ConfigError):
        parse_versions("python3")


@pytest.mark.parametrize("version", ["3.11", "3.12"])
def test_find_interpreter_answers_for_its_version(version):
    interp = find_interpreter(version)
    assert interp.version == version
    assert interp.path.is_file()
    assert interp.found_via in ("manylinux", "PATH", "pyenv")


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, wheelhouse):
    """One real pipeline run on examples/c_ext for the running Python, without the sdist."""
    work = tmp_path_factory.mktemp("pipeline")
    project = copy_project("c_ext", work)
    out = work / "out"
    report = work / "report.json"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    code = main([str(project), "--output-dir", str(out), "--python-versions", version,
                 "--no-sdist", "--backend-wheelhouse", str(wheelhouse), "--report", str(report),
                 "--test-command",
                 # runs outside the source tree, from the installed wheel, with {package} filled
                 "test -f {package}/pyproject.toml && python -c \"import os, mlb_example_c; "
                 "assert 'site-packages' in mlb_example_c.__file__; "
                 "assert not os.path.exists('pyproject.toml'); "
                 "assert mlb_example_c.add_in_thread(2, 40) == 42\""])
    return code, json.loads(report.read_text()), out


@pytest.mark.slow
def test_pipeline_report_describes_each_wheel(pipeline_run):
    code, report, out = pipeline_run
    assert code == 0, report
    assert report["ok"] is True
    assert report["sdist"] is None and not list(out.glob("*.tar.gz"))
    (wheel,) = report["wheels"]
    path = Path(wheel["path"])
    assert path.parent == out.resolve() and path.name == wheel["filename"]
    assert wheel["size"] == path.stat().st_size
    assert wheel["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert wheel["tag"] and any(t.endswith(wheel["tag"]) for t in wheel["tags"])
    assert wheel["tag"] in wheel["why"]
    assert wheel["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    # auto resolves to the host here (no target set); the backend says so in its build log
    assert wheel["baseline"] == "host" and wheel["baseline_reason"]
    assert wheel["test"]["result"] == "passed"


@pytest.mark.slow
def test_failing_test_command_exits_1_naming_the_wheel(tmp_path, wheelhouse, capsys):
    project = copy_project("pure", tmp_path)
    code = main([str(project), "--output-dir", str(tmp_path / "out"), "--no-sdist",
                 "--backend-wheelhouse", str(wheelhouse),
                 "--test-command", "python -c 'raise SystemExit(\"boom\")'"])
    assert code == 1
    (wheel,) = (tmp_path / "out").glob("*.whl")
    captured = capsys.readouterr()
    assert f"test-command failed for {wheel.name}" in captured.err
    assert "boom" in captured.out


def test_the_mlbackend_cli_dispatches_pipeline_plan():
    proc = subprocess.run([sys.executable, "-m", "mlbackend", "pipeline", "plan",
                           "--python-versions", "3.12"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["include"][0]["python"] == "3.12"
    proc = subprocess.run([sys.executable, "-m", "mlbackend", "pipeline", "--jobs", "x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


FLAT_SETUP = """
from setuptools import Extension, setup
setup(ext_modules=[Extension("flatpkg._speed", ["flatpkg/_speed.c"])])
"""
FLAT_C = """
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {0}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speed", "", -1, methods};
PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&module); }
"""
FLAT_TEST = """
import flatpkg

def test_the_installed_wheel_is_imported():
    assert "site-packages" in flatpkg.__file__, flatpkg.__file__
    assert flatpkg.answer() == 42
"""


def _flat_project(root: Path) -> Path:
    """A flat-layout project (the package beside tests/, which has __init__.py, as xxhash)."""
    project = root / "flat"
    (project / "flatpkg").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["manylinux-backend"]\nbuild-backend = "mlbackend"\n\n'
        '[project]\nname = "flatpkg"\nversion = "1.0"\n\n'
        '[tool.setuptools]\npackages = ["flatpkg"]\n')
    (project / "setup.py").write_text(FLAT_SETUP)
    (project / "flatpkg" / "__init__.py").write_text("from ._speed import answer\n")
    (project / "flatpkg" / "_speed.c").write_text(FLAT_C)
    (project / "tests" / "__init__.py").write_text("")
    (project / "tests" / "test_flat.py").write_text(FLAT_TEST)
    return project


@pytest.mark.slow
def test_test_sources_make_a_flat_layout_test_import_the_wheel(tmp_path, wheelhouse):
    project = _flat_project(tmp_path)
    report = tmp_path / "report.json"
    code = main([str(project), "--output-dir", str(tmp_path / "out"), "--no-sdist",
                 "--backend-wheelhouse", str(wheelhouse), "--report", str(report),
                 "--test-requires", "pytest", "--test-sources", "tests",
                 "--test-command", "python -m pytest -q -p no:cacheprovider tests"])
    result = json.loads(report.read_text())
    assert code == 0, result
    (wheel,) = result["wheels"]
    assert wheel["test"]["result"] == "passed"
    assert "1 passed" in wheel["test"]["output_tail"]
    # the copies went to the test folder; the checkout is as it was
    assert sorted(p.name for p in (project / "tests").iterdir()) == ["__init__.py",
                                                                    "test_flat.py"]


@pytest.mark.slow
def test_pipeline_without_its_extra_says_what_to_install(tmp_path, wheelhouse):
    python = make_venv(tmp_path / "venv")
    (backend,) = wheelhouse.glob("manylinux_backend-*.whl")
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", backend])
    proc = run([python.parent / "mlbackend", "pipeline", copy_project("pure", tmp_path)],
               cwd=tmp_path, check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert "error: mlbackend pipeline needs build and wheel, not installed" in line
    assert "pip install 'manylinux-backend[pipeline]'" in line


def test_pipeline_from_an_installed_copy_needs_no_index_holding_the_backend(
        tmp_path, wheelhouse):
    python = make_venv(tmp_path / "venv")
    (backend,) = wheelhouse.glob("manylinux_backend-*.whl")
    # a plain `pip install` of the backend with the pipeline's extra (build, wheel)
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
         f"{backend}[pipeline]"])
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PIP_FIND_LINKS", "UV_FIND_LINKS", "CI")}
    project = copy_project("pure", tmp_path)
    proc = run([python.parent / "mlbackend", "pipeline", project, "--no-sdist",
                "--output-dir", tmp_path / "out",
                "--test-command", "python -c 'import mlb_example_pure'"],
               env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"isolated builds get {backend.name}, packed from the installed copy" in proc.stderr
    (wheel,) = (tmp_path / "out").glob("*.whl")
    assert wheel.name.startswith("mlb_example_pure-")
