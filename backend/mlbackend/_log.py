"""Semantic events: the library reports, the entry point decides how they look."""

from __future__ import annotations

import contextvars
import sys
from typing import Callable

__all__ = ["Emitter", "emit", "use_emitter"]

Emitter = Callable[[str, str], None]
"""Receives ``(level, message)``; ``level`` is ``info``, ``warning`` or ``note``."""


def _stderr(level: str, message: str) -> None:
    prefix = "mlbackend: " if level == "info" else f"mlbackend: {level}: "
    for line in message.splitlines() or [""]:
        sys.stderr.write(f"{prefix}{line}\n")
        prefix = "    "
    sys.stderr.flush()


_EMITTER: contextvars.ContextVar[Emitter] = contextvars.ContextVar("mlbackend_emitter")


def emit(level: str, message: str) -> None:
    """Report an event to the current emitter (stderr unless an entry point chose another)."""
    _EMITTER.get(_stderr)(level, message)


def use_emitter(emitter: Emitter) -> contextvars.Token[Emitter]:
    """Route events to ``emitter``; returns the token to restore the previous one."""
    return _EMITTER.set(emitter)
