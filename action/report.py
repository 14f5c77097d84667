"""Turn the pipeline's JSON report into GitHub step outputs, a step summary and annotations.

Usage: python report.py REPORT_JSON   (reads GITHUB_OUTPUT, GITHUB_STEP_SUMMARY,
GITHUB_WORKSPACE, INPUT_OUTPUT_DIR from the environment; stdlib only).
Exits 1 when the report is missing or records a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

_ICONS = {"passed": "\N{WHITE HEAVY CHECK MARK} passed", "failed": "\N{CROSS MARK} failed",
          "skipped": "\N{WHITE CIRCLE} skipped"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotate(level: str, file: str, title: str, message: str) -> None:
    """Print a ``::error``/``::warning`` workflow command."""
    props = f"file={_escape_property(file)},title={_escape_property(title)}"
    print(f"::{level} {props}::{_escape_data(message)}", flush=True)


def _write_outputs(path: str, values: Mapping[str, str]) -> None:
    """Append ``values`` to GITHUB_OUTPUT, multi-line ones in the heredoc delimiter form."""
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as stream:
        for name, value in values.items():
            if "\n" in value:
                delimiter = f"ghadelimiter_{secrets.token_hex(8)}"
                stream.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                stream.write(f"{name}={value}\n")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def _size(size: int) -> str:
    return f"{size / 1024:.0f} KiB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MiB"


def _summary(report: Dict[str, Any]) -> str:
    lines = ["## mlbackend wheels", ""]
    if report.get("sdist"):
        sdist = report["sdist"]
        lines += [f"sdist: `{sdist['filename']}` ({_size(sdist['size'])})", ""]
    lines += ["| Wheel | Tag | Size | Python | Baseline | Test | Why this tag |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for wheel in report["wheels"]:
        result = wheel["test"]["result"]
        lines.append(f"| `{_cell(wheel['filename'])}` | `{_cell(wheel['tag'] or '?')}` | "
                     f"{_size(wheel['size'])} | {_cell(wheel['python'])} | "
                     f"{_cell(wheel['baseline'])} | {_ICONS.get(result, result)} | "
                     f"{_cell(wheel['why'])} |")
    for failure in report["failures"]:
        lines.append(f"| (none) | | | {_cell(failure['python'])} | | "
                     f"{_ICONS['failed']} build | {_cell(failure['message'])} |")
    for wheel in report["wheels"]:
        if wheel["test"]["result"] == "failed":
            lines += ["", f"<details><summary>{wheel['filename']}: test output</summary>", "",
                      "```", wheel["test"]["output_tail"], "```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _anchor(report: Dict[str, Any], env: Mapping[str, str]) -> str:
    """The repository file annotations point at: the package's pyproject.toml."""
    target = Path(report["package_dir"]) / "pyproject.toml"
    workspace = env.get("GITHUB_WORKSPACE", "")
    try:
        return target.relative_to(Path(workspace).resolve()).as_posix() if workspace else str(
            target)
    except ValueError:
        return str(target)


def _annotations(report: Dict[str, Any], env: Mapping[str, str]) -> None:
    anchor = _anchor(report, env)
    for wheel in report["wheels"]:
        if wheel["test"]["result"] == "failed":
            last = (wheel["test"]["output_tail"].strip().splitlines() or [""])[-1]
            _annotate("error", anchor, f"{wheel['filename']} failed its tests",
                      f"test-command failed for {wheel['filename']} (Python {wheel['python']})"
                      f": {last}")
    for failure in report["failures"]:
        _annotate("error", anchor, f"Python {failure['python']} wheel build failed",
                  failure["message"])


def main(argv: List[str]) -> int:
    """Render the report at ``argv[0]``; returns the exit code."""
    env = os.environ
    report_path = Path(argv[0]) if argv else Path()
    summary_path = env.get("GITHUB_STEP_SUMMARY", "")
    if not argv or not report_path.is_file():
        print("::error title=mlbackend::the pipeline stopped before writing its report",
              flush=True)
        _write_outputs(env.get("GITHUB_OUTPUT", ""), {
            "wheels": "", "sdist": "", "report": "",
            "wheelhouse": str(Path(env.get("INPUT_OUTPUT_DIR", ".")).resolve())})
        return 1
    report = json.loads(report_path.read_text(encoding="utf-8"))
    _write_outputs(env.get("GITHUB_OUTPUT", ""), {
        "wheels": "\n".join(w["path"] for w in report["wheels"]),
        "sdist": report["sdist"]["path"] if report.get("sdist") else "",
        "wheelhouse": report["output_dir"],
        "report": str(report_path.resolve()),
    })
    if summary_path:
        with Path(summary_path).open("a", encoding="utf-8") as stream:
            stream.write(_summary(report))
    _annotations(report, env)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
