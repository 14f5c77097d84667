"""The package stays mypy --strict and ruff clean (both configured in pyproject.toml)."""

from __future__ import annotations

import sys

from conftest import ROOT, run


def test_ruff_reports_nothing() -> None:
    proc = run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                "backend", "tests", "benchmarks", "action", "examples"], cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict_reports_nothing() -> None:
    proc = run([sys.executable, "-m", "mypy"], cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
