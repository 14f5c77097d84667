"""Build events: the library reports them here; they go to stderr as ``mlbackend: ...``,
where PEP 517 frontends show the backend's log."""

from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from typing import Iterator, List, Literal, Optional

__all__ = ["emit", "held_info"]

_HELD: ContextVar[Optional[List[str]]] = ContextVar("mlbackend_held_info", default=None)


def _write(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def emit(level: Literal["info", "warning", "note"], message: str) -> None:
    """Report an event; ``level`` is ``info``, ``warning`` or ``note``."""
    prefix = "mlbackend: " if level == "info" else f"mlbackend: {level}: "
    lines = []
    for line in message.splitlines() or [""]:
        lines.append(f"{prefix}{line}\n")
        prefix = "    "
    held = _HELD.get()
    if level == "info" and held is not None:
        held.extend(lines)
    else:
        _write("".join(lines))


@contextlib.contextmanager
def held_info() -> Iterator[None]:
    """Hold back ``info`` events until the body succeeds (a failure then shows only its
    error line); warnings and notes go out at once."""
    held: List[str] = []
    token = _HELD.set(held)
    try:
        yield
    finally:
        _HELD.reset(token)
    _write("".join(held))
