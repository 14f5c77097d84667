"""The hooks' error boundary: a known error becomes one line and exit status 1."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

from .errors import MlbackendError

__all__ = ["hook", "report_error"]

F = TypeVar("F", bound=Callable[..., Any])


def report_error(error: MlbackendError) -> None:
    """Write ``error`` as ``mlbackend: error: ...`` (and a tip line) to stderr."""
    sys.stderr.write(f"mlbackend: error: {error.message}\n")
    if error.tip:
        sys.stderr.write(f"mlbackend: tip: {error.tip}\n")
    sys.stderr.flush()


def hook(func: F) -> F:
    """Turn MlbackendError raised by a PEP 517 hook into one line and ``SystemExit(1)``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MlbackendError as error:
            report_error(error)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]
