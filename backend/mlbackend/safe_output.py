"""Create an output file that appears complete or not at all, whatever kills the process.

On Linux the data go to an anonymous ``O_TMPFILE`` in the output folder, linked into place
once complete: a killed process leaves nothing behind. Where that is not available, a
temporary ``.mlbackend-*.tmp`` name is used and removed on errors, SIGINT and SIGTERM.
The file gets the mode the umask gives (``0o666 & ~umask``), as ``open()`` would.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import IO, Any, Iterator, Optional

from .errors import OutputError, os_error

__all__ = ["ensure_folder", "output_file"]

_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
_NO_TMPFILE = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ensure_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents); one-line OutputError if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        try:
            folder.stat()  # a symlink loop or a dangling link says so here
        except OSError as exc:
            raise os_error(exc, folder, "cannot create folder") from None
        raise OutputError(f"cannot create folder {folder}: a file of that name exists",
                          tip="choose another output folder (-w)") from None
    except OSError as exc:
        raise os_error(exc, exc.filename or folder, "cannot create folder") from None


def _link(fd: int, path: Path) -> None:
    """Give the anonymous file ``fd`` the name ``path``."""
    try:  # linkat(AT_EMPTY_PATH) works where /proc is not this mount's (needs privilege)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.linkat(fd, b"", _AT_FDCWD, os.fsencode(path), _AT_EMPTY_PATH) == 0:
            return
        code = ctypes.get_errno()
    except (OSError, AttributeError):
        code = 0
    if code == errno.EEXIST:
        raise FileExistsError(code, os.strerror(code), str(path))
    os.link(f"/proc/self/fd/{fd}", path)


def _copy_into_place(out: IO[bytes], dest: Path) -> None:
    """Where the anonymous file cannot be linked: copy it to a temporary name, rename."""
    temp = dest.parent / f".mlbackend-{secrets.token_hex(6)}.tmp"
    mode = 0o666 & ~_umask()
    size = out.seek(0, os.SEEK_END)
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            sent = 0
            while sent < size:
                step = os.sendfile(fd, out.fileno(), sent, size - sent)
                if step <= 0:
                    raise OSError(errno.EIO, "short copy", str(temp))
                sent += step
        finally:
            os.close(fd)
        temp.replace(dest)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _link_into_place(out: IO[bytes], dest: Path) -> None:
    fd = out.fileno()
    try:
        _link(fd, dest)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOENT, errno.EPERM, errno.EACCES):
            raise
        _copy_into_place(out, dest)
        return
    # replace an existing file: link under a fresh name, then rename over it
    temp = dest.parent / f".mlbackend-{secrets.token_hex(6)}.tmp"
    _link(fd, temp)
    try:
        temp.replace(dest)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """While the body runs, SIGTERM raises SystemExit (so cleanup code runs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Optional[FrameType]) -> Any:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_dest(dest: Path) -> None:
    if dest.is_dir():
        raise OutputError(f"cannot write {dest}: a folder of that name exists",
                          tip="remove it or choose another output folder (-w)")


@contextlib.contextmanager
def output_file(dest: Path) -> Iterator[IO[bytes]]:
    """A binary file to write ``dest`` through; it appears at ``dest`` only when the body
    ends without an exception. OS errors become one-line OutputErrors naming the path."""
    ensure_folder(dest.parent)
    _check_dest(dest)
    mode = 0o666 & ~_umask()
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    temp: Optional[Path] = None
    fd = -1
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile and Path("/proc/self/fd").is_dir():
        try:
            fd = os.open(dest.parent, flags | tmpfile, mode)
        except OSError as exc:
            if exc.errno not in _NO_TMPFILE:
                raise os_error(exc, dest) from None
    try:
        with _terminate_as_exit():
            if fd < 0:
                temp = dest.parent / f".mlbackend-{secrets.token_hex(6)}.tmp"
                fd = os.open(temp, flags | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as out:
                fd = -1
                yield out
                out.flush()
                if temp is None:
                    _link_into_place(out, dest)
            if temp is not None:
                temp.replace(dest)
                temp = None
    except OSError as exc:
        raise os_error(exc, dest) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if temp is not None:
            with contextlib.suppress(OSError):
                temp.unlink()
