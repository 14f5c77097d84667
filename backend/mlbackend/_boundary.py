"""The error boundaries: whatever ends a hook, a command or the pipeline becomes one
``<prog>: error: ...`` line (and at most one ``tip:`` line) and the exit status its class
carries (see :mod:`mlbackend.errors`)."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, TypeVar

from .errors import EXIT_INTERRUPTED, EXIT_SYSTEM, MlbackendError, os_error

__all__ = ["as_error", "hook", "render", "report_error"]

F = TypeVar("F", bound=Callable[..., Any])


def as_error(exc: BaseException) -> MlbackendError:
    """``exc`` as an MlbackendError: OS errors name their path and cause."""
    if isinstance(exc, MlbackendError):
        return exc
    if isinstance(exc, OSError):
        return os_error(exc, exc.filename, "cannot access" if exc.filename else "system error")
    raise exc


def _write(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is gone: nothing left to tell


def report_error(error: MlbackendError, prog: str = "mlbackend", *,
                 inline_tip: bool = False) -> None:
    """Write ``error`` as ``<prog>: error: ...`` and a ``<prog>: tip: ...`` line (or the tip
    in parentheses on the same line) to stderr."""
    message = " ".join(error.message.split("\n"))
    if error.tip and inline_tip:
        _write(f"{prog}: error: {message} ({error.tip})\n")
        return
    _write(f"{prog}: error: {message}\n")
    if error.tip:
        _write(f"{prog}: tip: {' '.join(error.tip.splitlines())}\n")


def render(exc: BaseException, prog: str = "mlbackend", *, inline_tip: bool = False) -> int:
    """Report ``exc`` (an MlbackendError, OSError or KeyboardInterrupt) on stderr; the exit
    status to end with. Anything else is re-raised: it is a bug to be seen."""
    if isinstance(exc, KeyboardInterrupt):
        _write(f"{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    error = as_error(exc)
    report_error(error, prog, inline_tip=inline_tip)
    return error.exit_code


def quiet_stdout() -> int:
    """After stdout failed (a closed pipe, a full disk): point it at /dev/null so the
    interpreter's own flush at exit stays quiet; the exit status to use."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_SYSTEM


def hook(func: F) -> F:
    """Turn an MlbackendError or OSError raised by a PEP 517 hook into one line and
    ``SystemExit`` with its exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (MlbackendError, OSError) as exc:
            raise SystemExit(render(exc)) from None

    return wrapper  # type: ignore[return-value]
