"""action.yml run the way a Linux runner runs a composite action, and its lint gate."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import pytest
import yaml
from conftest import copy_project

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def parse_github_output(text: str) -> Dict[str, str]:
    """Read a GITHUB_OUTPUT file: ``name=value`` lines and ``name<<DELIMITER`` blocks."""
    values: Dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block: List[str] = []
            while lines[index] != delimiter:
                block.append(lines[index])
                index += 1
            index += 1
            values[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


@dataclass
class ActionRun:
    """What one run of the composite action left behind."""

    outputs: Dict[str, str]
    summary: str
    stdout: str = ""
    stderr: str = ""
    failed_step: Optional[str] = None
    returncode: int = 0
    steps: Dict[str, Dict[str, str]] = field(default_factory=dict)


class Runner:
    """Runs action.yml's ``run:`` steps as the runner does: ``bash -eo pipefail`` with the
    step's ``env:`` evaluated, a fresh GITHUB_OUTPUT per step and one step summary."""

    def __init__(self, action_path: Path, workspace: Path, temp: Path) -> None:
        self.action_path = action_path
        self.workspace = workspace
        self.temp = temp

    def evaluate(self, text: str, inputs: Mapping[str, str],
                 steps: Mapping[str, Mapping[str, str]]) -> str:
        def one(match: re.Match[str]) -> str:
            expr = match.group(1)
            if expr.startswith("inputs."):
                return inputs[expr[len("inputs."):]]
            if expr == "github.action_path":
                return str(self.action_path)
            if expr == "runner.temp":
                return str(self.temp)
            step = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr)
            if step:
                return steps.get(step.group(1), {}).get(step.group(2), "")
            raise AssertionError(f"expression the test runner does not know: {expr}")

        return EXPRESSION.sub(one, text)

    def run(self, given: Mapping[str, str], until: Optional[str] = None) -> ActionRun:
        """Run the steps with the inputs ``given`` (the rest at their defaults), up to and
        including the step whose id is ``until`` when set."""
        inputs = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
        unknown = set(given) - set(inputs)
        assert not unknown, f"not inputs of action.yml: {unknown}"
        inputs.update(given)
        summary = self.temp / "step_summary.md"
        summary.write_text("")
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        base.update(CI="true", GITHUB_ACTIONS="true", RUNNER_OS="Linux",
                    RUNNER_TEMP=str(self.temp), GITHUB_WORKSPACE=str(self.workspace),
                    GITHUB_ACTION_PATH=str(self.action_path), GITHUB_STEP_SUMMARY=str(summary))
        result = ActionRun(outputs={}, summary="")
        for number, step in enumerate(ACTION["runs"]["steps"]):
            step_id = step.get("id", f"step{number}")
            if "uses" in step:
                continue  # setup-python: this machine's Pythons come from pyenv
            assert "if" not in step, "the test runner does not evaluate if: on run steps"
            output = self.temp / f"output_{number}"
            output.write_text("")
            env = dict(base, GITHUB_OUTPUT=str(output))
            env.update({k: self.evaluate(str(v), inputs, result.steps)
                        for k, v in step.get("env", {}).items()})
            script = self.temp / f"step_{number}.sh"
            script.write_text(step["run"])
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail",
                                   str(script)], cwd=self.workspace, env=env, text=True,
                                  capture_output=True, timeout=1800)
            result.stdout += proc.stdout
            result.stderr += proc.stderr
            result.steps[step_id] = parse_github_output(output.read_text())
            if proc.returncode != 0:
                result.failed_step, result.returncode = step_id, proc.returncode
                break
            if step_id == until:
                break
        result.outputs = {name: self.evaluate(str(spec["value"]), inputs, result.steps)
                          for name, spec in ACTION["outputs"].items()}
        result.summary = summary.read_text()
        return result


def test_action_declares_the_interface():
    assert set(ACTION["inputs"]) >= {"package-dir", "output-dir", "python-versions",
                                     "manylinux", "baseline", "before-build", "test-requires",
                                     "test-command", "test-sources", "sdist", "config-settings"}
    assert set(ACTION["outputs"]) == {"wheels", "sdist", "wheelhouse", "report"}
    assert ACTION["runs"]["using"] == "composite"


def test_inputs_reach_scripts_only_through_env():
    for step in ACTION["runs"]["steps"]:
        if "run" in step:
            assert "${{" not in step["run"], step.get("name")
            assert step["shell"] == "bash"
        for value in step.get("env", {}).values():
            assert EXPRESSION.fullmatch(str(value)), value


def _all_uses() -> List[str]:
    steps = list(ACTION["runs"]["steps"])
    for path in sorted((ROOT / "examples" / "workflows").glob("*.yml")):
        workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
        for job in workflow["jobs"].values():
            steps += job.get("steps", [])
    return [step["uses"] for step in steps if "uses" in step]


def test_third_party_actions_are_pinned_by_sha():
    uses = _all_uses()
    assert len(uses) >= 8
    for ref in uses:
        assert ref == "./" or SHA_PIN.match(ref), ref


def test_example_workflows_keep_permissions_minimal():
    for path in sorted((ROOT / "examples" / "workflows").glob("*.yml")):
        workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert workflow["permissions"] == {}, path.name
        for name, job in workflow["jobs"].items():
            granted = job.get("permissions", {})
            assert set(granted.values()) <= {"read"} or granted == {"id-token": "write"}, name
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


def test_github_output_parser_reads_the_delimiter_form():
    text = "a=1\nwheels<<ghadelimiter_x\n/p/one.whl\n/p/two.whl\nghadelimiter_x\nb=x=y\n"
    assert parse_github_output(text) == {"a": "1", "wheels": "/p/one.whl\n/p/two.whl",
                                         "b": "x=y"}


@pytest.mark.slow
def test_lint_action_reports_nothing():
    proc = subprocess.run(["bash", str(ROOT / ".ci" / "lint-action.sh")], text=True,
                          capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "actionlint: 0 finding(s)" in proc.stdout


@pytest.fixture
def runner(tmp_path):
    """A runner with a checkout of this action and a workspace holding examples/c_ext."""
    action_path = tmp_path / "_actions" / "manylinux-backend"
    shutil.copytree(ROOT, action_path, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", ".*_cache"))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    copy_project("c_ext", workspace)
    temp = tmp_path / "runner_temp"
    temp.mkdir()
    return Runner(action_path, workspace, temp)


def test_pythons_are_listed_by_mlbackend_before_they_are_set_up():
    """One default for "which Pythons": the input is empty by default and the plan decides;
    the Pythons set up and the Pythons built are that list."""
    assert ACTION["inputs"]["python-versions"]["default"] == ""
    steps = ACTION["runs"]["steps"]
    order = [s.get("id") or s["uses"].split("@")[0] for s in steps]
    assert order == ["install", "versions", "actions/setup-python", "build"]
    (setup,) = [s for s in steps if "uses" in s]
    assert setup["with"]["python-version"] == "${{ steps.versions.outputs.list }}"
    assert "--versions-only" in steps[1]["run"]
    assert steps[3]["env"]["PYTHON_VERSIONS"] == "${{ steps.versions.outputs.list }}"


@pytest.mark.slow
def test_default_pythons_follow_requires_python(runner):
    project = runner.workspace / "bounded"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "bounded"\nversion = "1"\nrequires-python = ">=3.11,<3.13"\n')
    run = runner.run({"package-dir": "bounded", "setup-python": "false"}, until="versions")
    assert run.failed_step is None, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.steps["versions"]["list"] == "3.11\n3.12"
    assert "Pythons: 3.11 3.12" in run.stdout


def _summary_rows(summary: str) -> List[str]:
    return [line for line in summary.splitlines() if line.startswith("| `")]


@pytest.mark.slow
def test_action_builds_and_tests_two_pythons(runner):
    run = runner.run({"package-dir": "c_ext", "python-versions": "3.11 3.12",
                      "setup-python": "false", "test-requires": "pytest",
                      "test-command": "pytest -q -p no:cacheprovider {package}/tests"})
    assert run.failed_step is None, run.stdout[-3000:] + run.stderr[-3000:]
    wheels = [Path(p) for p in run.outputs["wheels"].splitlines()]
    assert sorted(w.name.split("-")[2] for w in wheels) == ["cp311", "cp312"]
    assert all(w.is_file() for w in wheels)
    assert Path(run.outputs["sdist"]).is_file()
    assert Path(run.outputs["wheelhouse"]) == (runner.workspace / "wheelhouse").resolve()
    report = json.loads(Path(run.outputs["report"]).read_text())
    rows = _summary_rows(run.summary)
    assert len(rows) == 2
    for wheel in report["wheels"]:
        (row,) = [r for r in rows if wheel["filename"] in r]
        assert f"`{wheel['tag']}`" in row and wheel["tag"] in wheel["filename"]
        assert "passed" in row
    assert "::group::" in run.stdout


@pytest.mark.slow
def test_failing_test_command_fails_the_step_naming_the_wheel(runner):
    run = runner.run({"package-dir": "c_ext", "python-versions": "3.12",
                      "setup-python": "false", "sdist": "false",
                      "test-command": "python -c 'import mlb_example_c; raise SystemExit(3)'"})
    assert run.failed_step == "build" and run.returncode == 1
    (wheel,) = [Path(p) for p in run.outputs["wheels"].splitlines()]
    assert wheel.is_file() and run.outputs["sdist"] == ""
    assert f"test-command failed for {wheel.name}" in run.stderr
    (annotation,) = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert annotation.startswith("::error file=c_ext/pyproject.toml,")
    assert wheel.name in annotation
    (row,) = _summary_rows(run.summary)
    assert wheel.name in row and "failed" in row


def _glue(report: Optional[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(GITHUB_OUTPUT=str(tmp_path / "out"), GITHUB_STEP_SUMMARY=str(tmp_path / "sum"),
               GITHUB_WORKSPACE=str(tmp_path), INPUT_OUTPUT_DIR="wheelhouse")
    (tmp_path / "out").write_text("")
    (tmp_path / "sum").write_text("")
    return subprocess.run(["python3", str(ROOT / "action" / "report.py"),
                           *([str(report)] if report else [])],
                          env=env, text=True, capture_output=True, cwd=tmp_path)


def test_report_glue_renders_outputs_summary_and_escaped_annotations(tmp_path):
    wheel = {"path": "/w/a-1-cp312-cp312-manylinux_2_17_x86_64.whl",
             "filename": "a-1-cp312-cp312-manylinux_2_17_x86_64.whl", "python": "3.12",
             "tag": "manylinux_2_17_x86_64", "why": "needs GLIBC_2.17 | no more",
             "size": 2048, "baseline": "zig",
             "test": {"result": "failed", "output_tail": "E: 50% done,\nAssertionError: x"}}
    report = {"ok": False, "package_dir": str(tmp_path / "pkg"), "output_dir": "/w",
              "sdist": None, "wheels": [wheel, dict(wheel, path="/w/b.whl", filename="b.whl",
                                                    test={"result": "passed"})],
              "failures": [{"python": "3.13", "message": "build failed (exit 1)"}]}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    proc = _glue(path, tmp_path)
    assert proc.returncode == 1
    outputs = parse_github_output((tmp_path / "out").read_text())
    assert outputs == {"wheels": "/w/a-1-cp312-cp312-manylinux_2_17_x86_64.whl\n/w/b.whl",
                       "sdist": "", "wheelhouse": "/w", "report": str(path)}
    summary = (tmp_path / "sum").read_text()
    assert len(_summary_rows(summary)) == 2
    assert "needs GLIBC_2.17 \\| no more" in summary and "| zig |" in summary
    errors = [line for line in proc.stdout.splitlines() if line.startswith("::error ")]
    assert errors[0] == ("::error file=pkg/pyproject.toml,title=a-1-cp312-cp312-manylinux_2_17_"
                         "x86_64.whl failed its tests::test-command failed for a-1-cp312-cp312-"
                         "manylinux_2_17_x86_64.whl (Python 3.12): AssertionError: x")
    assert errors[1].startswith("::error file=pkg/pyproject.toml,title=Python 3.13 wheel build")


def test_report_glue_without_a_report_fails_with_an_annotation(tmp_path):
    proc = _glue(tmp_path / "missing.json", tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error title=mlbackend::")
    outputs = parse_github_output((tmp_path / "out").read_text())
    assert outputs["wheels"] == "" and outputs["wheelhouse"] == str(tmp_path / "wheelhouse")
