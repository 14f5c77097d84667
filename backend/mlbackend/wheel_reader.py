"""Read a wheel strictly: nothing in it is trusted before it is checked.

:meth:`WheelReader.open` checks the zip structure (central and local headers agree, member
data do not overlap, no duplicate, absolute, ``..``, backslash, NUL or colliding names, no
symlink or device entries, only stored or deflated data, no encryption, declared sizes
possible), the ``.dist-info`` folder against the file name, WHEEL (parseable, tags equal to
the file name's) and RECORD (every file listed once with a sha256-or-stronger hash, nothing
listed that is not there). :meth:`WheelReader.stream` then reads every member once, in
chunks, and checks its CRC, size and RECORD hash as it goes; a mismatch is a
:class:`~mlbackend.errors.WheelError` naming the member.

The zip structure is checked by :mod:`mlbackend.zip_layout`; ``zipfile`` would read members
whole to check their CRCs.
"""

from __future__ import annotations

import base64
import csv
import errno
import hashlib
import io
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple, Type

from packaging.tags import parse_tag
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_wheel_filename,
)

from .errors import WheelError, os_error
from .tags import wheel_fields
from .zip_layout import DEFLATED, STORED, ZipEntry, fail, read_layout


def _inflate_module() -> ModuleType:
    """zlib-ng when the optional ``fast`` extra is installed (it inflates about twice as
    fast, with the same results and errors), else the standard library's zlib."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib
    return zlib_ng


_zlib = _inflate_module()
_ZLIB_ERRORS: Tuple[Type[Exception], ...] = (zlib.error, _zlib.error)

__all__ = ["CHUNK", "Member", "WheelReader", "record_hash"]

CHUNK = 1 << 20
"""Bytes read or inflated at a time."""

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


def _wheel_text(wheel: str, data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(wheel, f"{what} is not UTF-8") from None


def _check_wheel_file(wheel: str, text: str, tags: frozenset[str]) -> None:
    fields = wheel_fields(text)
    version = (fields.get("wheel-version") or [""])[0]
    if not version or version.split(".")[0] != "1":
        raise fail(wheel, f"WHEEL has Wheel-Version {version or 'missing'} (need 1.x)")
    if (fields.get("root-is-purelib") or [""])[0].lower() not in ("true", "false"):
        raise fail(wheel, "WHEEL has no Root-Is-Purelib: true/false line")
    found = set()
    for tag in fields.get("tag", []):
        parts = tag.strip().split("-")
        if len(parts) != 3 or not all(parts):
            raise fail(wheel, f"WHEEL has a malformed tag {tag.strip()!r}")
        found |= {str(t) for t in parse_tag(tag.strip())}
    if not found:
        raise fail(wheel, "WHEEL has no Tag: line")
    # the file name carries the WHEEL tags compressed: each of its parts must come from one
    used = [{t.split("-")[i] for t in found} for i in range(3)]
    named = [{t.split("-")[i] for t in tags} for i in range(3)]
    if not found <= tags or used != named:
        raise fail(wheel, f"WHEEL tags ({', '.join(sorted(found))}) do not match the file "
                           "name")


def _parse_record(wheel: str, text: str) -> Dict[str, Tuple[str, str]]:
    rows: Dict[str, Tuple[str, str]] = {}
    try:
        parsed = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise fail(wheel, f"RECORD is not CSV: {exc}") from None
    for row in parsed:
        if not row:
            continue
        if len(row) != 3:
            raise fail(wheel, f"RECORD row {','.join(row)[:80]!r} does not have 3 fields")
        name, digest, size = row
        if name in rows:
            raise fail(wheel, f"RECORD lists {name} twice")
        rows[name] = (digest, size)
    return rows


def _check_record_row(wheel: str, name: str, row: Optional[Tuple[str, str]],
                      size: int) -> str:
    if row is None:
        raise fail(wheel, f"{name} is not listed in RECORD")
    digest, declared = row
    algorithm, _, value = digest.partition("=")
    if algorithm not in _STRONG_HASHES or not value:
        raise fail(wheel, f"RECORD has no sha256 (or stronger) hash for {name}")
    if declared and declared != str(size):
        raise fail(wheel, f"RECORD says {name} has {declared} bytes, the archive {size}")
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
        layout = read_layout(wheel, f, info.st_size)
        entries, seen, starts = layout.entries, layout.by_name, layout.starts
        tops = {e.name.split("/", 1)[0] for e in entries if "/" in e.name}
        dist_infos = sorted(t for t in tops if t.endswith(".dist-info"))
        if len(dist_infos) != 1:
            raise fail(wheel, f"expected one .dist-info folder, found {len(dist_infos)}")
        dist_info = dist_infos[0]
        d_name, _, d_version = dist_info[: -len(".dist-info")].partition("-")
        if canonicalize_name(d_name) != name or canonicalize_version(d_version) != \
                canonicalize_version(version):
            raise fail(wheel, f"{dist_info} does not match the file name")
        datas = [t for t in tops if t.endswith(".data")]
        if any(t != dist_info[: -len(".dist-info")] + ".data" for t in datas):
            raise fail(wheel, f"{datas[0]} does not match {dist_info}")
        for meta in ("WHEEL", "RECORD"):
            if f"{dist_info}/{meta}" not in seen:
                raise fail(wheel, f"{dist_info}/{meta} is missing")
        raw = cls._small(wheel, f, seen[f"{dist_info}/WHEEL"], starts)
        wheel_text = _wheel_text(wheel, raw, "WHEEL")
        _check_wheel_file(wheel, wheel_text, tags)
        record_text = _wheel_text(wheel, cls._small(wheel, f, seen[f"{dist_info}/RECORD"],
                                                    starts), "RECORD")
        rows = _parse_record(wheel, record_text)
        extra = set(rows) - set(seen)
        if extra:
            raise fail(wheel, f"RECORD lists {sorted(extra)[0]}, which is not in the wheel")
        members: List[Member] = []
        for e in entries:
            unsigned = e.name.endswith("/") or e.name in (
                f"{dist_info}/{s}" for s in _SIGNATURES)
            digest = "" if unsigned else _check_record_row(wheel, e.name, rows.get(e.name),
                                                           e.usize)
            members.append(Member(e.name, e.method, e.flags, e.crc, e.csize, e.usize,
                                  e.offset, starts[e.name], e.date_time, e.external_attr,
                                  e.create_system, digest))
        identity = (info.st_size, info.st_mtime_ns, info.st_ino)
        return cls(path, f, tuple(members), dist_info, wheel_text, identity)

    @staticmethod
    def _small(wheel: str, f: IO[bytes], entry: ZipEntry, starts: Dict[str, int]) -> bytes:
        if entry.usize > _MAX_META or entry.csize > _MAX_META:
            raise fail(wheel, f"{entry.name} is too large ({entry.usize} bytes)")
        f.seek(starts[entry.name])
        data = f.read(entry.csize)
        out = _inflate_all(wheel, entry.name, entry.method, data, entry.usize)
        if _zlib.crc32(out) != entry.crc:
            raise fail(wheel, f"{entry.name}: CRC mismatch (corrupt data)")
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
        fd = self._f.fileno()
        while left:
            # pread, not seek + read: callers may read other members between chunks, and
            # threads may check several members at once
            piece = os.pread(fd, min(CHUNK, left), at)
            at += len(piece)
            if not piece:
                raise fail(self.name, f"{member.name}: data end early")
            left -= len(piece)
            yield piece

    def chunks(self, member: Member) -> Iterator[bytes]:
        """The member's bytes in chunks of at most :data:`CHUNK`; its CRC, size and RECORD
        hash are checked as they pass, a mismatch raised after the last chunk. Several
        threads may each iterate the chunks of a different member at once."""
        wheel = self.name
        algorithm = member.record_hash.partition("=")[0]
        digest = hashlib.new(algorithm) if algorithm else None
        crc = 0
        produced = 0
        inflater = _zlib.decompressobj(-15) if member.method == DEFLATED else None
        raw = self.raw_chunks(member)
        for out in raw if inflater is None else _inflated(wheel, member.name, inflater, raw):
            if not out:
                continue
            produced += len(out)
            if produced > member.size:
                raise fail(wheel, f"{member.name}: holds more than its declared "
                                   f"{member.size} bytes")
            crc = _zlib.crc32(out, crc)
            if digest is not None:
                digest.update(out)
            yield out
        _check_end(wheel, member, inflater, produced, crc,
                   _encode(algorithm, digest.digest()) if digest is not None else "")

    def read(self, member: Member, limit: int = 256 << 20) -> bytes:
        """The member's bytes, checked as :meth:`chunks` checks them, for members up to
        ``limit`` bytes: read in one call and inflated in one call (no chunk loop; the
        memory is the member's stored and inflated size). Several threads may each read a
        different member at once."""
        wheel = self.name
        if member.size > limit:
            raise WheelError(f"{wheel}: {member.name} is too large to read whole "
                             f"({member.size} bytes)")
        raw = os.pread(self._f.fileno(), member.compressed_size, member.data_offset)
        if len(raw) != member.compressed_size:
            raise fail(wheel, f"{member.name}: data end early")
        inflater = _zlib.decompressobj(-15) if member.method == DEFLATED else None
        data: bytes = raw
        if inflater is not None:
            try:
                data = inflater.decompress(raw, member.size + 1)
            except _ZLIB_ERRORS as exc:
                raise fail(wheel, f"{member.name}: corrupt deflate data ({exc})") from None
        if len(data) > member.size:
            raise fail(wheel, f"{member.name}: holds more than its declared "
                              f"{member.size} bytes")
        algorithm = member.record_hash.partition("=")[0]
        _check_end(wheel, member, inflater, len(data), _zlib.crc32(data),
                   _encode(algorithm, hashlib.new(algorithm, data).digest()) if algorithm
                   else "")
        return data

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

    def copy_to(self, out: IO[bytes]) -> None:
        """Write the whole wheel file as it is to ``out``, copied by the kernel
        (``copy_file_range``) where it can, else in chunks."""
        out.flush()
        self.check_unchanged()
        size, start = self._identity[0], out.tell()
        done = 0
        copy = getattr(os, "copy_file_range", None)  # Linux, Python 3.8+
        try:
            while copy is not None and done < size:
                step = copy(self._f.fileno(), out.fileno(), size - done, done, start + done)
                if step <= 0:
                    raise WheelError(f"{self.path} changed while it was read")
                done += step
        except OSError as exc:
            if done or exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS,
                                         errno.EOPNOTSUPP, errno.EBADF):
                raise
        if done == size:
            out.seek(start + size)
            return
        for piece in self.file_chunks():
            out.write(piece)

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


def _check_end(wheel: str, member: Member, inflater: Any, produced: int, crc: int,
               digest: str) -> None:
    """The checks once a member's bytes are all out (``digest`` is their RECORD hash field,
    ``""`` when RECORD gives none): the deflate stream ended with the member, the size, the
    CRC and the RECORD hash are the declared ones."""
    if inflater is not None and (not inflater.eof or inflater.unused_data):
        raise fail(wheel, f"{member.name}: corrupt deflate data (stream does not end "
                           "with the member)")
    if produced != member.size:
        raise fail(wheel, f"{member.name}: holds {produced} bytes, declares {member.size}")
    if crc != member.crc:
        raise fail(wheel, f"{member.name}: CRC mismatch (corrupt data)")
    if digest and digest != member.record_hash:
        raise fail(wheel, f"{member.name}: does not match its RECORD hash (changed "
                           "after the wheel was built)")


def _inflated(wheel: str, name: str, inflater: Any, raw: Iterator[bytes]) -> Iterator[bytes]:
    """The inflated bytes of ``raw``, at most :data:`CHUNK` at a time, each handed on before
    the next is made (a small piece of input can inflate to much output)."""
    try:
        for piece in raw:
            out: bytes = inflater.decompress(piece, CHUNK)
            yield out
            # a full output may leave more pending inside zlib though all input is consumed
            while not inflater.eof and (inflater.unconsumed_tail or len(out) == CHUNK):
                out = inflater.decompress(inflater.unconsumed_tail, CHUNK)
                yield out
    except _ZLIB_ERRORS as exc:
        raise fail(wheel, f"{name}: corrupt deflate data ({exc})") from None


def _inflate_all(wheel: str, name: str, method: int, data: bytes, size: int) -> bytes:
    if method == STORED:
        return data
    try:
        inflater = _zlib.decompressobj(-15)
        out: bytes = inflater.decompress(data, size + 1)
    except _ZLIB_ERRORS as exc:
        raise fail(wheel, f"{name}: corrupt deflate data ({exc})") from None
    if len(out) != size or not inflater.eof:
        raise fail(wheel, f"{name}: holds other than its declared {size} bytes")
    return out
