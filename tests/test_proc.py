"""Running other programs: a failure to start, a hang or a non-zero exit is one error line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlbackend._proc import run, try_run
from mlbackend.errors import BaselineError, HostError, RepairError


def test_a_missing_program_is_one_line_of_the_callers_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tool"
    with pytest.raises(RepairError) as caught:
        run([missing, "--version"], what="patchelf on x.so", error=RepairError)
    assert caught.value.message == f"patchelf on x.so: cannot run {missing}: no such file or folder"
    assert try_run([missing]) is None


def test_a_program_that_is_not_executable_is_one_line(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(HostError) as caught:
        run([script], what="asking the tool")
    assert caught.value.message == f"asking the tool: cannot run {script}: permission denied"
    assert "\n" not in caught.value.message


def test_a_hang_ends_at_the_timeout() -> None:
    with pytest.raises(BaselineError, match=r"^listing: .* did not finish within 0.5 s$"):
        run([sys.executable, "-c", "import time; time.sleep(30)"], what="listing",
            error=BaselineError, timeout=0.5)
    assert try_run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5) is None


def test_a_checked_failure_names_the_last_line_it_wrote() -> None:
    code = "import sys; print('working'); sys.stderr.write('first\\nbad input\\n'); sys.exit(3)"
    with pytest.raises(RepairError, match=r"^strip failed: bad input$"):
        run([sys.executable, "-c", code], what="strip", error=RepairError, check=True)
    done = run([sys.executable, "-c", code], what="strip")
    assert (done.code, done.out, done.last_line) == (3, "working\n", "bad input")


def test_output_goes_to_a_log_when_given(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with log.open("w") as stream:
        done = run([sys.executable, "-c", "import sys; print('out'); sys.stderr.write('err')"],
                   what="x", log=stream)
    assert done.code == 0 and log.read_text() == "out\nerr"


def test_zig_that_cannot_run_is_a_baseline_error_not_a_traceback(tmp_path: Path) -> None:
    from mlbackend.baseline.zig import _known_glibcs

    with pytest.raises(BaselineError, match="cannot run"):
        _known_glibcs(tmp_path / "zig")
