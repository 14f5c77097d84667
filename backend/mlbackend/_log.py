"""Build events: the library reports them here; they go to stderr as ``mlbackend: ...``,
where PEP 517 frontends show the backend's log."""

from __future__ import annotations

import sys

__all__ = ["emit"]


def emit(level: str, message: str) -> None:
    """Report an event; ``level`` is ``info``, ``warning`` or ``note``."""
    prefix = "mlbackend: " if level == "info" else f"mlbackend: {level}: "
    for line in message.splitlines() or [""]:
        sys.stderr.write(f"{prefix}{line}\n")
        prefix = "    "
    sys.stderr.flush()
