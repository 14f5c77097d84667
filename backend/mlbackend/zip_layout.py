"""The zip structure of an archive, parsed with ``struct`` and checked before any member is
trusted: the end record, central and local headers agree; members neither overlap nor leave
bytes unaccounted for; names are safe, unique and never both a file and a folder; no
symbolic links, devices, encryption or compression methods other than stored and deflate;
declared sizes are possible.

``zipfile`` checks none of these, so the archive is read here directly.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass
from typing import IO, Dict, List, Tuple

from .errors import WheelError

__all__ = ["DEFLATED", "DESCRIPTOR", "STORED", "Layout", "ZipEntry", "check_name", "fail",
           "read_layout"]

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = b"PK\x06\x07"
STORED, DEFLATED = 0, 8
_ENCRYPTED, DESCRIPTOR, _STRONG, _MASKED = 0x1, 0x8, 0x40, 0x2000
_UTF8 = 0x800
_CONTROL = re.compile("[\x00-\x1f]")
_MAX_RATIO = 1032  # deflate cannot expand more than this


def fail(wheel: str, what: str) -> WheelError:
    """A WheelError about ``wheel``."""
    return WheelError(f"{wheel}: {what}",
                      tip="rebuild the wheel; a wheel must be checked, not trusted")


def check_name(wheel: str, name: str) -> None:
    """WheelError unless ``name`` is a safe, relative member name."""
    if not name or name.startswith("/") or "\\" in name or _CONTROL.search(name):
        raise fail(wheel, f"unsafe member name {name!r}")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if any(p in ("", ".", "..") for p in parts) or (len(parts[0]) > 1 and parts[0][1] == ":"):
        raise fail(wheel, f"unsafe member name {name!r}")
    size = len(name.encode("utf-8"))
    if size > 1024 or (size > 255 and any(len(p.encode("utf-8")) > 255 for p in parts)):
        raise fail(wheel, f"member name too long: {name[:60]!r}...")


def _dos_date(date: int, time: int) -> Tuple[int, int, int, int, int, int]:
    return ((date >> 9) + 1980, (date >> 5) & 0xF, date & 0x1F,
            time >> 11, (time >> 5) & 0x3F, (time & 0x1F) * 2)


def _decode_name(wheel: str, raw: bytes, flags: int) -> str:
    try:
        return raw.decode("utf-8" if flags & _UTF8 else "cp437")
    except UnicodeDecodeError:
        raise fail(wheel, f"member name {raw!r} is not valid UTF-8") from None


@dataclass(frozen=True)
class ZipEntry:
    """One central directory entry."""

    name: str
    raw_name: bytes
    method: int
    flags: int
    crc: int
    csize: int
    usize: int
    offset: int
    date_time: Tuple[int, int, int, int, int, int]
    external_attr: int
    create_system: int


def _end_record(wheel: str, f: IO[bytes], size: int) -> Tuple[int, int, int]:
    """(entries, central directory offset, central directory size)."""
    tail_len = min(size, _END.size + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0 and (at + _END.size > tail_len or
                       at + _END.size + struct.unpack_from("<H", tail, at + 20)[0] != tail_len):
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        raise WheelError(f"cannot read wheel {wheel}: not a zip file (no end record)",
                         tip="the file is truncated or is not a wheel")
    _, disk, cd_disk, n_disk, n, cd_size, cd_offset, _ = _END.unpack_from(tail, at)
    zip64 = at >= 20 and tail[at - 20:at - 16] == _ZIP64_LOCATOR
    if zip64 or 0xFFFF in (n, n_disk) or 0xFFFFFFFF in (cd_size, cd_offset):
        raise fail(wheel, "zip64 archives (over 4 GiB or 65535 members) are not supported")
    end_offset = size - tail_len + at
    if disk or cd_disk or n != n_disk:
        raise fail(wheel, "multi-volume zip archives are not supported")
    if cd_offset + cd_size != end_offset:
        raise fail(wheel, "the central directory is not where the end record says "
                           "(data prepended or appended)")
    return n, cd_offset, cd_size


def _central_entries(wheel: str, f: IO[bytes], size: int) -> Tuple[List[ZipEntry], int]:
    n, cd_offset, cd_size = _end_record(wheel, f, size)
    f.seek(cd_offset)
    directory = f.read(cd_size)
    out: List[ZipEntry] = []
    pos = 0
    for _ in range(n):
        if pos + _CENTRAL.size > len(directory):
            raise fail(wheel, "the central directory is truncated")
        (sig, made_by, _, flags, method, time, date, crc, csize, usize, name_len, extra_len,
         comment_len, disk, _, attr, offset) = _CENTRAL.unpack_from(directory, pos)
        if sig != b"PK\x01\x02" or disk != 0:
            raise fail(wheel, "bad central directory entry")
        raw = directory[pos + _CENTRAL.size:pos + _CENTRAL.size + name_len]
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        if pos > len(directory):
            raise fail(wheel, "the central directory is truncated")
        out.append(ZipEntry(_decode_name(wheel, raw, flags), raw, method, flags, crc, csize,
                            usize, offset, _dos_date(date, time), attr, made_by >> 8))
    if pos != len(directory):
        raise fail(wheel, "the central directory holds more than the end record lists")
    return out, cd_offset


def _check_entry(wheel: str, entry: ZipEntry) -> None:
    check_name(wheel, entry.name)
    if 0xFFFFFFFF in (entry.csize, entry.usize, entry.offset):
        raise fail(wheel, f"{entry.name} is a zip64 member (over 4 GiB), not supported")
    if entry.flags & (_ENCRYPTED | _STRONG | _MASKED):
        raise fail(wheel, f"{entry.name} is encrypted")
    if entry.method not in (STORED, DEFLATED):
        raise fail(wheel, f"{entry.name} uses compression method {entry.method} "
                           "(only stored and deflate are allowed)")
    if entry.method == STORED and entry.csize != entry.usize:
        raise fail(wheel, f"{entry.name}: stored member with two different sizes")
    if entry.usize > entry.csize * _MAX_RATIO + 1024:
        raise fail(wheel, f"{entry.name} declares {entry.usize} bytes, more than its "
                           f"{entry.csize} compressed bytes can hold")
    kind = stat.S_IFMT(entry.external_attr >> 16) if entry.create_system == 3 else 0
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        what = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a device",
                stat.S_IFBLK: "a device", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
        raise fail(wheel, f"{entry.name} is {what.get(kind, 'not a regular file')}")
    if entry.name.endswith("/") and entry.usize:
        raise fail(wheel, f"folder entry {entry.name} has data")


def _locate(wheel: str, f: IO[bytes], entry: ZipEntry, limit: int) -> int:
    """Check the local header against the central one; where the data start."""
    # the header and, in the same read, the name it should hold
    head = os.pread(f.fileno(), _LOCAL.size + len(entry.raw_name), entry.offset)
    if len(head) < _LOCAL.size:
        raise fail(wheel, f"{entry.name}: local header past the end of the file")
    (sig, _, flags, method, _, _, crc, csize, usize, name_len,
     extra_len) = _LOCAL.unpack_from(head)
    raw = head[_LOCAL.size:_LOCAL.size + name_len] if name_len == len(entry.raw_name) \
        else None
    if sig != b"PK\x03\x04" or raw != entry.raw_name:
        raise fail(wheel, f"{entry.name}: local header does not match the central directory")
    if method != entry.method or (flags ^ entry.flags) & (_ENCRYPTED | DESCRIPTOR):
        raise fail(wheel, f"{entry.name}: local and central headers disagree")
    if not flags & DESCRIPTOR and (crc, csize, usize) != (entry.crc, entry.csize,
                                                          entry.usize):
        raise fail(wheel, f"{entry.name}: local and central headers disagree on CRC or sizes")
    start: int = entry.offset + _LOCAL.size + name_len + extra_len
    if start + entry.csize > limit:
        raise fail(wheel, f"{entry.name}: data run past the central directory")
    return start


@dataclass(frozen=True)
class Layout:
    """The checked entries of an archive and where each one's data start."""

    entries: Tuple[ZipEntry, ...]
    """In central directory order."""
    by_name: Dict[str, ZipEntry]
    starts: Dict[str, int]
    """Member name -> offset of its compressed data."""


def read_layout(wheel: str, f: IO[bytes], size: int) -> Layout:
    """Parse and check the zip structure of ``f`` (``size`` bytes); ``wheel`` names it in
    errors."""
    entries, cd_offset = _central_entries(wheel, f, size)
    seen: Dict[str, ZipEntry] = {}
    for entry in entries:
        _check_entry(wheel, entry)
        if entry.name in seen or entry.name + "/" in seen or entry.name.rstrip("/") in seen:
            raise fail(wheel, f"{entry.name} is in the archive twice")
        seen[entry.name] = entry
    files = {e.name for e in entries if not e.name.endswith("/")}
    folders: set[str] = set()
    for entry in entries:
        folder = entry.name.rstrip("/").rpartition("/")[0]
        while folder and folder not in folders:  # each folder's parents are added once
            folders.add(folder)
            folder = folder.rpartition("/")[0]
    both = sorted(files & folders)
    if both:
        raise fail(wheel, f"{both[0]} is both a file and a folder")
    ordered = sorted(entries, key=lambda e: e.offset)
    starts: Dict[str, int] = {}
    end = 0
    for i, entry in enumerate(ordered):
        if entry.offset < end:
            raise fail(wheel, f"{entry.name}: overlaps the member before it")
        slack = 24 if i and ordered[i - 1].flags & DESCRIPTOR else 0  # data descriptor
        if entry.offset > end + slack:
            raise fail(wheel, f"{entry.offset - end} bytes before {entry.name} belong to "
                               "no member")
        limit = ordered[i + 1].offset if i + 1 < len(ordered) else cd_offset
        starts[entry.name] = _locate(wheel, f, entry, limit)
        end = starts[entry.name] + entry.csize
    last = ordered[-1] if ordered else None
    slack = 24 if last is not None and last.flags & DESCRIPTOR else 0
    if cd_offset > end + slack:
        raise fail(wheel, f"{cd_offset - end} bytes before the central directory belong "
                           "to no member")
    return Layout(tuple(entries), seen, starts)
