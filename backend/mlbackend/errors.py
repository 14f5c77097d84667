"""The exceptions mlbackend raises; every one is a :class:`MlbackendError` and carries the
exit status its entry point ends with.

Exit statuses (the README lists them too):

- 0: done;
- 1: the target was missed, or a build or test failed (:class:`TargetMissedError`,
  :class:`BuildError`);
- 2: bad input: a wheel, setting or argument mlbackend refuses (:class:`InputError` and
  its subclasses);
- 3: the system cannot do it: a library, tool or baseline is missing, or the operating
  system refused a read or write (:class:`HostError` and its subclasses);
- 130: interrupted (SIGINT), 143: terminated (SIGTERM).
"""

from __future__ import annotations

import errno
import os
from typing import Optional, Union

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_MISSED",
    "EXIT_OK",
    "EXIT_PURE",
    "EXIT_SYSTEM",
    "EXIT_TERMINATED",
    "AuditError",
    "BaselineError",
    "BuildError",
    "ConfigError",
    "HostError",
    "InputError",
    "MlbackendError",
    "OutputError",
    "PureWheelError",
    "RepairError",
    "TargetMissedError",
    "UsageError",
    "WheelError",
    "os_error",
]

EXIT_OK = 0
EXIT_MISSED = 1
EXIT_BAD_INPUT = 2
EXIT_SYSTEM = 3
EXIT_PURE = 4
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class MlbackendError(Exception):
    """Root of mlbackend's errors: one line of what went wrong, and an optional tip."""

    exit_code = EXIT_MISSED

    def __init__(self, message: str, tip: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.tip = tip


class TargetMissedError(MlbackendError):
    """The wheel needs a newer policy than the requested target (strict mode)."""


class BuildError(MlbackendError):
    """A build or test step failed."""


class InputError(MlbackendError):
    """Something given to mlbackend cannot be used as it is."""

    exit_code = EXIT_BAD_INPUT


class UsageError(InputError):
    """The command line is wrong."""


class ConfigError(InputError):
    """A setting is unknown or has a value mlbackend cannot use."""


class WheelError(InputError):
    """A wheel is malformed, inconsistent or unsafe (zip structure, names, WHEEL, RECORD,
    hashes), or cannot be read."""


class AuditError(InputError):
    """A wheel's binaries cannot be audited."""


class PureWheelError(InputError):
    """A wheel without binaries was given to repair or retag (auditwheel refuses it too)."""

    exit_code = EXIT_PURE


class HostError(MlbackendError):
    """The system cannot do what was asked (a missing library or tool, an OS error)."""

    exit_code = EXIT_SYSTEM


class RepairError(HostError):
    """External libraries cannot be vendored into the wheel (missing library or tool)."""


class BaselineError(HostError):
    """The requested build baseline (container, zig, host) cannot be used."""


class OutputError(HostError):
    """The operating system refused to create or write an output file or folder."""


_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "it already exists",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EPIPE: "the reader closed the pipe",
    errno.ENOENT: "no such file or folder",
    errno.EIO: "input/output error",
    errno.EFBIG: "the file is too large",
}


def os_error(exc: OSError, path: Union[str, os.PathLike[str], None] = None,
             doing: str = "cannot write", *, cls: Optional[type] = None,
             tip: Optional[str] = None) -> MlbackendError:
    """``exc`` as one line naming the path and the cause (``doing`` prefixes it): an
    :class:`OutputError`, or ``cls`` when given; ``tip`` replaces the usual tip."""
    where = path if path is not None else (exc.filename or "")
    cause = _CAUSES.get(exc.errno or 0) or exc.strerror or str(exc)
    tips = {errno.ENOSPC: "free some space or choose another output folder (-w)",
            errno.EROFS: "choose a writable output folder (-w)",
            errno.EACCES: "choose a folder you can write to (-w)"}
    kind = cls if cls is not None else OutputError
    error = kind(f"{doing} {os.fspath(where)}: {cause}" if where else f"{doing}: {cause}",
                 tip=tips.get(exc.errno or 0, "") if tip is None else tip)
    assert isinstance(error, MlbackendError)
    return error
