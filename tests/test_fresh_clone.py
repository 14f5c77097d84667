"""The README's two commands, run as a newcomer would: in a fresh clone with nothing beside it."""

from __future__ import annotations

import os
import re
import subprocess
import venv
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import ROOT, run


def _readme_commands() -> List[str]:
    """The commands of the README's first code block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```bash\n(.*?)```", text, re.DOTALL)
    assert match, "the README starts with no bash block"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repository's committed state in a folder that holds nothing else."""
    parent = tmp_path_factory.mktemp("alone")
    run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, parent / "repo"])
    assert sorted(p.name for p in parent.iterdir()) == ["repo"]
    return parent / "repo"


@pytest.fixture(scope="module")
def newcomer_env(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """A shell environment whose ``python3`` is a fresh venv (with pip), so that the
    commands install into it and not into the Python running these tests."""
    home = tmp_path_factory.mktemp("newcomer") / "venv"
    venv.EnvBuilder(with_pip=True).create(home)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_FIND_LINKS")}
    env["PATH"] = f"{home / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(home)
    return env


def test_readme_leads_with_two_commands() -> None:
    setup_and_example, tests = _readme_commands()[:2]
    assert "examples/" in setup_and_example and "mlbackend audit" in setup_and_example
    assert tests.startswith("bash .ci/setup && ")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == tests.split(" && ", 1)[1]


@pytest.mark.slow
@pytest.mark.container
def test_setup_works_in_a_lone_clone(clone: Path, newcomer_env: Dict[str, str]) -> None:
    """The setup part of the README's test command, containers included, with no other
    folder beside the clone."""
    setup = _readme_commands()[1].split(" && ")[0]
    proc = subprocess.run(["bash", "-c", setup], cwd=clone, env=newcomer_env, text=True,
                          capture_output=True, timeout=1800, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "localhost/baseline-bookworm ready" in output, output
    assert "localhost/baseline-bullseye ready" in output, output
    done = run([Path(newcomer_env["VIRTUAL_ENV"]) / "bin" / "python", "-c",
                "import mlbackend, pytest; print(mlbackend.__file__)"], env=newcomer_env)
    assert done.stdout.strip().startswith(str(clone)), done.stdout


@pytest.mark.slow
def test_first_command_builds_and_audits_the_example(clone: Path,
                                                     newcomer_env: Dict[str, str]) -> None:
    proc = subprocess.run(["bash", "-c", _readme_commands()[0]], cwd=clone, env=newcomer_env,
                          text=True, capture_output=True, timeout=1800, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert re.search(r"manylinux_2_\d+_x86_64", proc.stdout), output
    assert list((clone / "dist").glob("mlb_example_c-*manylinux_2_*.whl")), output
