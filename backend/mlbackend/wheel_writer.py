"""Write a changed copy of a checked wheel, streaming: unchanged members keep their
compressed bytes and their (already verified) RECORD hashes; only new or replaced members
are compressed and hashed. Memory stays flat in member and wheel size.

``zipfile`` can only write members it compresses itself, so local headers and the central
directory are emitted here directly.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import struct
import time
import zlib
from pathlib import Path
from typing import IO, Dict, Iterator, List, Mapping, Optional, Tuple, Union

from .errors import InputError, WheelError, os_error
from .safe_output import output_file
from .wheel_reader import CHUNK, Member, WheelReader, _encode
from .zip_layout import check_name

__all__ = ["Source", "copy_wheel", "write_wheel"]

Source = Union[bytes, Path]
"""A new member's content: bytes, or a file streamed from disk."""

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_LIMIT = 0xFFFFFFFF
_DEFLATED = 8
DateTime = Tuple[int, int, int, int, int, int]


def _epoch_time() -> Optional[DateTime]:
    """SOURCE_DATE_EPOCH as a zip time (as auditwheel does), or None when unset."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    try:
        stamp = max(int(value), 315532800)  # zip times start in 1980
    except ValueError:
        raise InputError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds") from None
    return tuple(time.gmtime(stamp)[:6])  # type: ignore[return-value]


def _dos_time(date_time: DateTime) -> Tuple[int, int]:
    y, mo, d, h, mi, s = date_time
    return (h << 11) | (mi << 5) | (s // 2), ((max(y, 1980) - 1980) << 9) | (mo << 5) | d


class _ZipOut:
    """Local headers and data written in order; the central directory at the end."""

    def __init__(self, out: IO[bytes], dest: Path) -> None:
        self.out = out
        self.dest = dest
        self.central: List[bytes] = []

    def _header(self, name: bytes, method: int, crc: int, csize: int, usize: int,
                date_time: DateTime) -> Tuple[bytes, int, int, int]:
        if csize > _LIMIT or usize > _LIMIT or self.out.tell() > _LIMIT:
            raise WheelError(f"{self.dest.name}: wheels over 4 GiB are not supported")
        flags = 0x800 if any(b > 0x7F for b in name) else 0
        dos_t, dos_d = _dos_time(date_time)
        head = _LOCAL.pack(b"PK\x03\x04", 20, flags, method, dos_t, dos_d, crc, csize, usize,
                           len(name), 0)
        return head, flags, dos_t, dos_d

    def _central(self, name: bytes, method: int, crc: int, csize: int, usize: int,
                 date_time: DateTime, external_attr: int, create_system: int,
                 offset: int) -> None:
        _, flags, dos_t, dos_d = self._header(name, method, crc, csize, usize, date_time)
        self.central.append(_CENTRAL.pack(
            b"PK\x01\x02", (create_system << 8) | 20, 20, flags, method, dos_t, dos_d, crc,
            csize, usize, len(name), 0, 0, 0, 0, external_attr, offset) + name)

    def copy(self, reader: WheelReader, member: Member, date_time: DateTime) -> None:
        """Copy ``member``'s compressed bytes as they are."""
        name = member.name.encode("utf-8")
        offset = self.out.tell()
        head, *_ = self._header(name, member.method, member.crc, member.compressed_size,
                                member.size, date_time)
        self.out.write(head + name)
        for piece in reader.raw_chunks(member):
            self.out.write(piece)
        self._central(name, member.method, member.crc, member.compressed_size, member.size,
                      date_time, member.external_attr, member.create_system, offset)

    def add(self, name_text: str, chunks: Iterator[bytes], date_time: DateTime,
            mode: int) -> Tuple[str, int]:
        """Deflate ``chunks`` as member ``name_text``; its RECORD hash and size."""
        name = name_text.encode("utf-8")
        offset = self.out.tell()
        self.out.write(_LOCAL.pack(b"PK\x03\x04", 20, 0, _DEFLATED, 0, 0, 0, 0, 0, len(name),
                                   0) + name)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        digest = hashlib.sha256()
        crc = size = csize = 0
        for piece in chunks:
            crc = zlib.crc32(piece, crc)
            digest.update(piece)
            size += len(piece)
            packed = compressor.compress(piece)
            csize += len(packed)
            self.out.write(packed)
        packed = compressor.flush()
        csize += len(packed)
        self.out.write(packed)
        end = self.out.tell()
        head, *_ = self._header(name, _DEFLATED, crc, csize, size, date_time)
        self.out.seek(offset)
        self.out.write(head)
        self.out.seek(end)
        self._central(name, _DEFLATED, crc, csize, size, date_time, (0o100000 | mode) << 16,
                      3, offset)
        return _encode("sha256", digest.digest()), size

    def finish(self) -> None:
        start = self.out.tell()
        for record in self.central:
            self.out.write(record)
        if len(self.central) > 0xFFFF:
            raise WheelError(f"{self.dest.name}: wheels with more than 65535 members are "
                             "not supported")
        self.out.write(_END.pack(b"PK\x05\x06", 0, 0, len(self.central), len(self.central),
                                 self.out.tell() - start, start, 0))


def _source_chunks(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
        return
    try:
        with source.open("rb") as f:
            while True:
                piece = f.read(CHUNK)
                if not piece:
                    return
                yield piece
    except OSError as exc:
        raise os_error(exc, source, "cannot read") from None


def _refuse_overwriting_input(reader: WheelReader, dest: Path) -> None:
    try:
        same = dest.exists() and dest.samefile(reader.path)
    except OSError:
        same = False
    if same:
        raise InputError(f"cannot write {dest}: it is the input wheel, which is never "
                         "changed", tip="choose another output folder (-w)")


def write_wheel(
    reader: WheelReader,
    dest: Path,
    *,
    wheel_metadata: str,
    replace: Optional[Mapping[str, Source]] = None,
    add: Optional[Mapping[str, Tuple[Source, int]]] = None,
) -> Path:
    """Write the wheel of ``reader`` to ``dest`` with a new WHEEL text, ``replace``d member
    contents and ``add``ed members (name -> (content, mode)); RECORD is written anew.

    Members neither replaced nor added keep their compressed bytes and RECORD hashes (the
    reader checks every member first if it has not yet). Member times come from
    SOURCE_DATE_EPOCH when set. The file appears at ``dest`` only once complete.
    """
    _refuse_overwriting_input(reader, dest)
    for name in add or {}:
        check_name(dest.name, name)
    if not reader.verified:
        for _ in reader.stream():
            pass
    reader.check_unchanged()
    replaced: Dict[str, Source] = dict(replace or {})
    replaced[f"{reader.dist_info}/WHEEL"] = wheel_metadata.encode("utf-8")
    added = sorted((add or {}).items())
    epoch = _epoch_time()
    stamp = epoch or reader.get(f"{reader.dist_info}/WHEEL").date_time
    rows: List[Tuple[str, str, str]] = []
    with output_file(dest) as out:
        zout = _ZipOut(out, dest)

        def new(name: str, source: Source, mode: int, when: DateTime) -> None:
            digest, size = zout.add(name, _source_chunks(source), when, mode)
            rows.append((name, digest, str(size)))

        for member in reader.members:
            if member.name == reader.record_name or member.is_dir:
                continue
            if member.name.startswith(reader.dist_info + "/") and added:
                for name, (source, mode) in added:  # new members go before .dist-info
                    new(name, source, mode, stamp)
                added = []
            if member.name in replaced:
                new(member.name, replaced[member.name], member.mode,
                    epoch or member.date_time)
            else:
                zout.copy(reader, member, epoch or member.date_time)
                rows.append((member.name, member.record_hash, str(member.size)))
        for name, (source, mode) in added:
            new(name, source, mode, stamp)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(
            [*rows, (reader.record_name, "", "")])
        zout.add(reader.record_name, iter([text.getvalue().encode("utf-8")]), stamp, 0o644)
        zout.finish()
    return dest


def copy_wheel(reader: WheelReader, dest: Path) -> Path:
    """Copy the (checked) wheel file as it is to ``dest``; nothing when ``dest`` is the
    input itself."""
    try:
        if dest.exists() and dest.samefile(reader.path):
            return dest
    except OSError:
        pass
    with output_file(dest) as out:
        reader.copy_to(out)
    return dest
