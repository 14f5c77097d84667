"""The exceptions mlbackend raises; every one is a :class:`MlbackendError`."""

from __future__ import annotations

__all__ = [
    "AuditError",
    "BaselineError",
    "ConfigError",
    "MlbackendError",
    "RepairError",
    "TargetMissedError",
    "WheelError",
]


class MlbackendError(Exception):
    """Root of mlbackend's errors: one line of what went wrong, and an optional tip."""

    def __init__(self, message: str, tip: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.tip = tip


class ConfigError(MlbackendError):
    """A setting is unknown or has a value mlbackend cannot use."""


class WheelError(MlbackendError):
    """A wheel cannot be read or written (missing, not a zip, bad RECORD or WHEEL)."""


class AuditError(MlbackendError):
    """A wheel's binaries cannot be audited."""


class TargetMissedError(MlbackendError):
    """The wheel needs a newer policy than the requested target (strict mode)."""


class RepairError(MlbackendError):
    """External libraries cannot be vendored into the wheel."""


class BaselineError(MlbackendError):
    """The requested build baseline (container, zig, host) cannot be used."""
