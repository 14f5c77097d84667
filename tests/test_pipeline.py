"""`mlbackend pipeline` and `mlbackend pipeline plan`: matrix, interpreters, errors, a real run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_project

from mlbackend.errors import ConfigError
from mlbackend.pipeline import main
from mlbackend.pipeline_python import find_interpreter, parse_versions

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
