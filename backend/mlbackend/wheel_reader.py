"""Read a wheel strictly: nothing in it is trusted before it is checked.

:meth:`WheelReader.open` checks the zip structure (central and local headers agree, member
data do not overlap, no duplicate, absolute, ``..``, backslash, NUL or colliding names, no
symlink or device entries, only stored or deflated data, no encryption, declared sizes
possible), the ``.dist-info`` folder against the file name, WHEEL (parseable, tags equal to
the file name's) and RECORD (every file listed once with a sha256-or-stronger hash, nothing
listed that is not there). :meth:`WheelReader.stream` then reads every member once, in
chunks, and checks its CRC, size and RECORD hash as it goes; a mismatch is a
:class:`~mlbackend.errors.WheelError` naming the member.

``zipfile`` checks none of the name rules, reads members whole to check CRCs and accepts
headers that disagree, so the archive is parsed here with ``struct``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import IO, Dict, Iterator, List, Optional, Tuple

from packaging.tags import parse_tag
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from .errors import WheelError, os_error

__all__ = ["CHUNK", "Member", "WheelReader", "record_hash"]

CHUNK = 1 << 20
"""Bytes read or inflated at a time."""

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = b"PK\x06\x07"
_STORED, _DEFLATED = 0, 8
_ENCRYPTED, _DESCRIPTOR, _STRONG, _MASKED = 0x1, 0x8, 0x40, 0x2000
_UTF8 = 0x800
_MAX_RATIO = 1032  # deflate cannot expand more than this
_MAX_META = 64 << 20  # WHEEL and RECORD are read whole; this bounds them
_STRONG_HASHES = ("sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512",
                  "blake2b")
_SIGNATURES = ("RECORD", "RECORD.jws", "RECORD.p7s")


def record_hash(data: bytes) -> str:
    """The RECORD hash field for ``data``: ``sha256=<urlsafe base64, no padding>``."""
    return _encode("sha256", hashlib.sha256(data).digest())


def _encode(algorithm: str, digest: bytes) -> str:
    return f"{algorithm}=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Member:
    """One file (or folder) entry of a wheel, as its headers describe it."""

    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int
    """Where the compressed bytes start."""
    date_time: Tuple[int, int, int, int, int, int]
    external_attr: int
    create_system: int
    record_hash: str
    """The RECORD hash (``algorithm=digest``), ``""`` for RECORD itself and folders."""

    @property
    def is_dir(self) -> bool:
        """True for a folder entry."""
        return self.name.endswith("/")

    @property
    def mode(self) -> int:
        """Its permission bits (0o644 when the archive records none)."""
        return (self.external_attr >> 16) & 0o777 or 0o644


def _fail(wheel: str, what: str) -> WheelError:
    return WheelError(f"{wheel}: {what}",
                      tip="rebuild the wheel; a wheel must be checked, not trusted")


def _check_name(wheel: str, name: str) -> None:
    if not name or name.startswith("/") or "\\" in name or any(ord(c) < 0x20 for c in name):
        raise _fail(wheel, f"unsafe member name {name!r}")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    if any(p in ("", ".", "..") for p in parts) or (len(parts[0]) > 1 and parts[0][1] == ":"):
        raise _fail(wheel, f"unsafe member name {name!r}")
    if any(len(p.encode("utf-8")) > 255 for p in parts) or len(name.encode("utf-8")) > 1024:
        raise _fail(wheel, f"member name too long: {name[:60]!r}...")


def _dos_date(date: int, time: int) -> Tuple[int, int, int, int, int, int]:
    return ((date >> 9) + 1980, (date >> 5) & 0xF, date & 0x1F,
            time >> 11, (time >> 5) & 0x3F, (time & 0x1F) * 2)


def _decode_name(wheel: str, raw: bytes, flags: int) -> str:
    try:
        return raw.decode("utf-8" if flags & _UTF8 else "cp437")
    except UnicodeDecodeError:
        raise _fail(wheel, f"member name {raw!r} is not valid UTF-8") from None


@dataclass(frozen=True)
class _Central:
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
        raise _fail(wheel, "zip64 archives (over 4 GiB or 65535 members) are not supported")
    end_offset = size - tail_len + at
    if disk or cd_disk or n != n_disk:
        raise _fail(wheel, "multi-volume zip archives are not supported")
    if cd_offset + cd_size != end_offset:
        raise _fail(wheel, "the central directory is not where the end record says "
                           "(data prepended or appended)")
    return n, cd_offset, cd_size


def _central_entries(wheel: str, f: IO[bytes], size: int) -> Tuple[List[_Central], int]:
    n, cd_offset, cd_size = _end_record(wheel, f, size)
    f.seek(cd_offset)
    directory = f.read(cd_size)
    out: List[_Central] = []
    pos = 0
    for _ in range(n):
        if pos + _CENTRAL.size > len(directory):
            raise _fail(wheel, "the central directory is truncated")
        (sig, made_by, _, flags, method, time, date, crc, csize, usize, name_len, extra_len,
         comment_len, disk, _, attr, offset) = _CENTRAL.unpack_from(directory, pos)
        if sig != b"PK\x01\x02" or disk != 0:
            raise _fail(wheel, "bad central directory entry")
        raw = directory[pos + _CENTRAL.size:pos + _CENTRAL.size + name_len]
        pos += _CENTRAL.size + name_len + extra_len + comment_len
        if pos > len(directory):
            raise _fail(wheel, "the central directory is truncated")
        out.append(_Central(_decode_name(wheel, raw, flags), raw, method, flags, crc, csize,
                            usize, offset, _dos_date(date, time), attr, made_by >> 8))
    if pos != len(directory):
        raise _fail(wheel, "the central directory holds more than the end record lists")
    return out, cd_offset


def _check_entry(wheel: str, entry: _Central) -> None:
    _check_name(wheel, entry.name)
    if 0xFFFFFFFF in (entry.csize, entry.usize, entry.offset):
        raise _fail(wheel, f"{entry.name} is a zip64 member (over 4 GiB), not supported")
    if entry.flags & (_ENCRYPTED | _STRONG | _MASKED):
        raise _fail(wheel, f"{entry.name} is encrypted")
    if entry.method not in (_STORED, _DEFLATED):
        raise _fail(wheel, f"{entry.name} uses compression method {entry.method} "
                           "(only stored and deflate are allowed)")
    if entry.method == _STORED and entry.csize != entry.usize:
        raise _fail(wheel, f"{entry.name}: stored member with two different sizes")
    if entry.usize > entry.csize * _MAX_RATIO + 1024:
        raise _fail(wheel, f"{entry.name} declares {entry.usize} bytes, more than its "
                           f"{entry.csize} compressed bytes can hold")
    kind = stat.S_IFMT(entry.external_attr >> 16) if entry.create_system == 3 else 0
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        what = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a device",
                stat.S_IFBLK: "a device", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
        raise _fail(wheel, f"{entry.name} is {what.get(kind, 'not a regular file')}")
    if entry.name.endswith("/") and entry.usize:
        raise _fail(wheel, f"folder entry {entry.name} has data")


def _locate(wheel: str, f: IO[bytes], entry: _Central, limit: int) -> int:
    """Check the local header against the central one; where the data start."""
    f.seek(entry.offset)
    head = f.read(_LOCAL.size)
    if len(head) < _LOCAL.size:
        raise _fail(wheel, f"{entry.name}: local header past the end of the file")
    (sig, _, flags, method, _, _, crc, csize, usize, name_len,
     extra_len) = _LOCAL.unpack(head)
    raw = f.read(name_len)
    if sig != b"PK\x03\x04" or raw != entry.raw_name:
        raise _fail(wheel, f"{entry.name}: local header does not match the central directory")
    if method != entry.method or (flags ^ entry.flags) & (_ENCRYPTED | _DESCRIPTOR):
        raise _fail(wheel, f"{entry.name}: local and central headers disagree")
    if not flags & _DESCRIPTOR and (crc, csize, usize) != (entry.crc, entry.csize,
                                                          entry.usize):
        raise _fail(wheel, f"{entry.name}: local and central headers disagree on CRC or sizes")
    start: int = entry.offset + _LOCAL.size + name_len + extra_len
    if start + entry.csize > limit:
        raise _fail(wheel, f"{entry.name}: data run past the central directory")
    return start


def _wheel_text(wheel: str, data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(wheel, f"{what} is not UTF-8") from None


def _check_wheel_file(wheel: str, text: str, tags: frozenset[str]) -> None:
    message = HeaderParser().parsestr(text)
    version = (message.get("Wheel-Version") or "").strip()
    if not version or version.split(".")[0] != "1":
        raise _fail(wheel, f"WHEEL has Wheel-Version {version or 'missing'} (need 1.x)")
    if (message.get("Root-Is-Purelib") or "").strip().lower() not in ("true", "false"):
        raise _fail(wheel, "WHEEL has no Root-Is-Purelib: true/false line")
    found = set()
    for tag in message.get_all("Tag") or []:
        parts = tag.strip().split("-")
        if len(parts) != 3 or not all(parts):
            raise _fail(wheel, f"WHEEL has a malformed tag {tag.strip()!r}")
        found |= {str(t) for t in parse_tag(tag.strip())}
    if not found:
        raise _fail(wheel, "WHEEL has no Tag: line")
    # the file name carries the WHEEL tags compressed: each of its parts must come from one
    used = [{t.split("-")[i] for t in found} for i in range(3)]
    named = [{t.split("-")[i] for t in tags} for i in range(3)]
    if not found <= tags or used != named:
        raise _fail(wheel, f"WHEEL tags ({', '.join(sorted(found))}) do not match the file "
                           "name")


def _parse_record(wheel: str, text: str) -> Dict[str, Tuple[str, str]]:
    rows: Dict[str, Tuple[str, str]] = {}
    try:
        parsed = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise _fail(wheel, f"RECORD is not CSV: {exc}") from None
    for row in parsed:
        if not row:
            continue
        if len(row) != 3:
            raise _fail(wheel, f"RECORD row {','.join(row)[:80]!r} does not have 3 fields")
        name, digest, size = row
        if name in rows:
            raise _fail(wheel, f"RECORD lists {name} twice")
        rows[name] = (digest, size)
    return rows


def _check_record_row(wheel: str, name: str, row: Optional[Tuple[str, str]],
                      size: int) -> str:
    if row is None:
        raise _fail(wheel, f"{name} is not listed in RECORD")
    digest, declared = row
    algorithm, _, value = digest.partition("=")
    if algorithm not in _STRONG_HASHES or not value:
        raise _fail(wheel, f"RECORD has no sha256 (or stronger) hash for {name}")
    if declared and declared != str(size):
        raise _fail(wheel, f"RECORD says {name} has {declared} bytes, the archive {size}")
    return digest


class WheelReader:
    """An open, checked wheel; use as a context manager."""

    def __init__(self, path: Path, f: IO[bytes], members: Tuple[Member, ...],
                 dist_info: str, wheel_metadata: str, identity: Tuple[int, int, int]) -> None:
        self.path = path
        self._f = f
        self.members = members
        self.dist_info = dist_info
        """The ``<name>-<version>.dist-info`` folder."""
        self.wheel_metadata = wheel_metadata
        """The text of ``.dist-info/WHEEL``."""
        self._identity = identity
        self.verified = False
        """True once :meth:`stream` has checked every member."""

    @property
    def name(self) -> str:
        """The wheel's file name."""
        return self.path.name

    @property
    def names(self) -> Tuple[str, ...]:
        """Member names in archive order."""
        return tuple(m.name for m in self.members)

    @property
    def record_name(self) -> str:
        """``<dist-info>/RECORD``."""
        return f"{self.dist_info}/RECORD"

    def __enter__(self) -> WheelReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._f.close()

    @classmethod
    def open(cls, path: Path) -> WheelReader:
        """Open and check the wheel at ``path`` (see the module doc)."""
        try:
            name, version, _, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise WheelError(f"{path}: not a wheel file name ({exc})",
                             tip="wheel names are <name>-<version>-<python>-<abi>-"
                                 "<platform>.whl") from exc
        try:
            # opening a device can act on it (a tape rewinds): look before opening, and
            # again after (the path may have changed in between)
            if not stat.S_ISREG(path.stat().st_mode):
                raise WheelError(f"cannot access {path}: not a regular file")
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise WheelError(f"cannot access {path}: no such file") from None
        except OSError as exc:
            raise os_error(exc, path, "cannot read wheel", cls=WheelError) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise WheelError(f"cannot access {path}: not a regular file")
        f = os.fdopen(fd, "rb")
        try:
            os.set_blocking(fd, True)
            return cls._read(path, f, info, canonicalize_name(name), str(version),
                             frozenset(str(t) for t in tags))
        except OSError as exc:
            f.close()
            raise os_error(exc, path, "cannot read wheel", cls=WheelError) from None
        except BaseException:
            f.close()
            raise

    @classmethod
    def _read(cls, path: Path, f: IO[bytes], info: os.stat_result, name: str, version: str,
              tags: frozenset[str]) -> WheelReader:
        wheel = path.name
        entries, cd_offset = _central_entries(wheel, f, info.st_size)
        seen: Dict[str, _Central] = {}
        for entry in entries:
            _check_entry(wheel, entry)
            if entry.name in seen or entry.name + "/" in seen or entry.name.rstrip("/") in seen:
                raise _fail(wheel, f"{entry.name} is in the archive twice")
            seen[entry.name] = entry
        files = {e.name for e in entries if not e.name.endswith("/")}
        for entry in entries:
            parts = entry.name.rstrip("/").split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in files:
                    raise _fail(wheel, f"{'/'.join(parts[:i])} is both a file and a folder")
        tops = {e.name.split("/", 1)[0] for e in entries if "/" in e.name}
        dist_infos = sorted(t for t in tops if t.endswith(".dist-info"))
        if len(dist_infos) != 1:
            raise _fail(wheel, f"expected one .dist-info folder, found {len(dist_infos)}")
        dist_info = dist_infos[0]
        d_name, _, d_version = dist_info[: -len(".dist-info")].partition("-")
        if canonicalize_name(d_name) != name or canonicalize_version(d_version) != \
                canonicalize_version(version):
            raise _fail(wheel, f"{dist_info} does not match the file name")
        datas = [t for t in tops if t.endswith(".data")]
        if any(t != dist_info[: -len(".dist-info")] + ".data" for t in datas):
            raise _fail(wheel, f"{datas[0]} does not match {dist_info}")
        for meta in ("WHEEL", "RECORD"):
            if f"{dist_info}/{meta}" not in seen:
                raise _fail(wheel, f"{dist_info}/{meta} is missing")
        ordered = sorted(entries, key=lambda e: e.offset)
        starts: Dict[str, int] = {}
        end = 0
        for i, entry in enumerate(ordered):
            if entry.offset < end:
                raise _fail(wheel, f"{entry.name}: overlaps the member before it")
            slack = 24 if i and ordered[i - 1].flags & _DESCRIPTOR else 0  # data descriptor
            if entry.offset > end + slack:
                raise _fail(wheel, f"{entry.offset - end} bytes before {entry.name} belong to "
                                   "no member")
            limit = ordered[i + 1].offset if i + 1 < len(ordered) else cd_offset
            starts[entry.name] = _locate(wheel, f, entry, limit)
            end = starts[entry.name] + entry.csize
        raw = cls._small(wheel, f, seen[f"{dist_info}/WHEEL"], starts)
        wheel_text = _wheel_text(wheel, raw, "WHEEL")
        _check_wheel_file(wheel, wheel_text, tags)
        record_text = _wheel_text(wheel, cls._small(wheel, f, seen[f"{dist_info}/RECORD"],
                                                    starts), "RECORD")
        rows = _parse_record(wheel, record_text)
        extra = set(rows) - set(seen)
        if extra:
            raise _fail(wheel, f"RECORD lists {sorted(extra)[0]}, which is not in the wheel")
        members: List[Member] = []
        for e in entries:
            unsigned = e.name.endswith("/") or e.name in (
                f"{dist_info}/{s}" for s in _SIGNATURES)
            digest = "" if unsigned else _check_record_row(wheel, e.name, rows.get(e.name),
                                                           e.usize)
            members.append(Member(e.name, e.method, e.flags, e.crc, e.csize, e.usize,
                                  e.offset, starts[e.name], e.date_time, e.external_attr,
                                  e.create_system, digest))
        last = ordered[-1] if ordered else None
        slack = 24 if last is not None and last.flags & _DESCRIPTOR else 0
        if cd_offset > end + slack:
            raise _fail(wheel, f"{cd_offset - end} bytes before the central directory belong "
                               "to no member")
        identity = (info.st_size, info.st_mtime_ns, info.st_ino)
        return cls(path, f, tuple(members), dist_info, wheel_text, identity)

    @staticmethod
    def _small(wheel: str, f: IO[bytes], entry: _Central, starts: Dict[str, int]) -> bytes:
        if entry.usize > _MAX_META or entry.csize > _MAX_META:
            raise _fail(wheel, f"{entry.name} is too large ({entry.usize} bytes)")
        f.seek(starts[entry.name])
        data = f.read(entry.csize)
        out = _inflate_all(wheel, entry.name, entry.method, data, entry.usize)
        if zlib.crc32(out) != entry.crc:
            raise _fail(wheel, f"{entry.name}: CRC mismatch (corrupt data)")
        return out

    def get(self, name: str) -> Member:
        """The member called ``name``; WheelError if there is none."""
        for member in self.members:
            if member.name == name:
                return member
        raise WheelError(f"{self.name}: no member {name}")

    def check_unchanged(self) -> None:
        """WheelError if the file changed on disk since it was opened."""
        info = os.fstat(self._f.fileno())
        if (info.st_size, info.st_mtime_ns, info.st_ino) != self._identity:
            raise WheelError(f"{self.path} changed while it was read")

    def raw_chunks(self, member: Member) -> Iterator[bytes]:
        """The member's compressed bytes as stored, in chunks (checked by :meth:`chunks`)."""
        left = member.compressed_size
        at = member.data_offset
        while left:
            self._f.seek(at)  # callers may read other members between chunks
            piece = self._f.read(min(CHUNK, left))
            at += len(piece)
            if not piece:
                raise _fail(self.name, f"{member.name}: data end early")
            left -= len(piece)
            yield piece

    def chunks(self, member: Member) -> Iterator[bytes]:
        """The member's bytes in chunks of at most :data:`CHUNK`; its CRC, size and RECORD
        hash are checked as they pass, a mismatch raised after the last chunk."""
        wheel = self.name
        algorithm = member.record_hash.partition("=")[0]
        digest = hashlib.new(algorithm) if algorithm else None
        crc = 0
        produced = 0
        inflater = zlib.decompressobj(-15) if member.method == _DEFLATED else None
        for piece in self.raw_chunks(member):
            if inflater is None:
                outs = [piece]
            else:
                outs = []
                try:
                    data = inflater.decompress(piece, CHUNK)
                    outs.append(data)
                    while inflater.unconsumed_tail:
                        outs.append(inflater.decompress(inflater.unconsumed_tail, CHUNK))
                except zlib.error as exc:
                    raise _fail(wheel, f"{member.name}: corrupt deflate data ({exc})") from None
            for out in outs:
                if not out:
                    continue
                produced += len(out)
                if produced > member.size:
                    raise _fail(wheel, f"{member.name}: holds more than its declared "
                                       f"{member.size} bytes")
                crc = zlib.crc32(out, crc)
                if digest is not None:
                    digest.update(out)
                yield out
        if inflater is not None and (not inflater.eof or inflater.unused_data):
            raise _fail(wheel, f"{member.name}: corrupt deflate data (stream does not end "
                               "with the member)")
        if produced != member.size:
            raise _fail(wheel, f"{member.name}: holds {produced} bytes, declares {member.size}")
        if crc != member.crc:
            raise _fail(wheel, f"{member.name}: CRC mismatch (corrupt data)")
        if digest is not None and _encode(algorithm, digest.digest()) != member.record_hash:
            raise _fail(wheel, f"{member.name}: does not match its RECORD hash (changed "
                               "after the wheel was built)")

    def read(self, member: Member, limit: int = 256 << 20) -> bytes:
        """The member's checked bytes, for members up to ``limit`` bytes."""
        if member.size > limit:
            raise WheelError(f"{self.name}: {member.name} is too large to read whole "
                             f"({member.size} bytes)")
        return b"".join(self.chunks(member))

    def stream(self) -> Iterator[Tuple[Member, Iterator[bytes]]]:
        """Every file member in archive order with its checked chunks (see :meth:`chunks`).
        What the caller leaves unread is read and checked before the next member, so one
        loop over this checks the whole wheel."""
        for member in self.members:
            if member.is_dir:
                continue
            chunks = self.chunks(member)
            yield member, chunks
            for _ in chunks:
                pass
        self.verified = True

    def file_chunks(self) -> Iterator[bytes]:
        """The whole wheel file as it is, in chunks."""
        self.check_unchanged()
        at = 0
        while True:
            self._f.seek(at)
            piece = self._f.read(CHUNK)
            if not piece:
                return
            at += len(piece)
            yield piece


def _inflate_all(wheel: str, name: str, method: int, data: bytes, size: int) -> bytes:
    if method == _STORED:
        return data
    try:
        inflater = zlib.decompressobj(-15)
        out = inflater.decompress(data, size + 1)
    except zlib.error as exc:
        raise _fail(wheel, f"{name}: corrupt deflate data ({exc})") from None
    if len(out) != size or not inflater.eof:
        raise _fail(wheel, f"{name}: holds other than its declared {size} bytes")
    return out
