"""Running another program: one helper, with a timeout, whose failures are mlbackend errors.

A program that cannot start (missing, not executable), runs past its timeout or (when
checked) exits non-zero becomes one line of the caller's error class, never a traceback.
Questions to a tool (a version, a list of targets, a probe) get :data:`QUERY_TIMEOUT`; work
whose length depends on the input (a compile, a patchelf of a large file) passes
``timeout=None``. (``baseline/_zig_wrapper.py`` and ``baseline/_container_driver.py`` run as
standalone scripts without this package, so they keep their own calls.)
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Mapping, Optional, Sequence, Union

from .errors import HostError, MlbackendError, os_error

__all__ = ["QUERY_TIMEOUT", "Finished", "run", "try_run"]

QUERY_TIMEOUT = 60.0
"""Seconds a tool gets to answer a question before it counts as broken."""

ErrorClass = Callable[[str], MlbackendError]


@dataclass(frozen=True)
class Finished:
    """How a program ended: its exit code and its output (undecodable bytes replaced)."""

    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        """The last line it wrote to stderr (else stdout), or its exit code."""
        lines = (self.err or self.out).strip().splitlines()
        return lines[-1] if lines else f"exit code {self.code}"


def run(command: Sequence[Union[str, Path]], *, what: str,
        error: ErrorClass = HostError, timeout: Optional[float] = QUERY_TIMEOUT,
        check: bool = False, env: Optional[Mapping[str, str]] = None,
        cwd: Optional[Path] = None, log: Optional[IO[str]] = None) -> Finished:
    """Run ``command`` with no input and return how it ended.

    ``error`` (called with one line naming ``what``) is raised when the program cannot start,
    runs longer than ``timeout`` seconds, or, with ``check``, exits non-zero. With ``log``
    its stdout and stderr go there instead of being captured."""
    args = [str(part) for part in command]
    try:
        done = subprocess.run(
            args, stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
            env=dict(env) if env is not None else None, cwd=cwd, timeout=timeout,
            text=True, errors="replace", check=False)
    except subprocess.TimeoutExpired:
        raise error(f"{what}: {args[0]} did not finish within {timeout:g} s") from None
    except OSError as exc:
        cause = os_error(exc, args[0], "cannot run", tip="").message
        raise error(f"{what}: {cause}") from None
    finished = Finished(done.returncode, done.stdout or "", done.stderr or "")
    if check and finished.code != 0:
        raise error(f"{what} failed: {finished.last_line}")
    return finished


def try_run(command: Sequence[Union[str, Path]], *, timeout: Optional[float] = QUERY_TIMEOUT,
            env: Optional[Mapping[str, str]] = None) -> Optional[Finished]:
    """:func:`run` for a probe whose failure is itself the answer: None when the program
    cannot start or runs past ``timeout``."""
    try:
        return run(command, what="probe", timeout=timeout, env=env)
    except MlbackendError:
        return None
