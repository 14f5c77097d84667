"""Read a wheel and write a changed copy; unchanged members keep their compressed bytes.

``zipfile`` can only write members it compresses itself, so the writer here emits local
headers and the central directory directly and copies untouched members' data as it is.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, List, Mapping, Optional, Sequence, Tuple

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from .elf import ELF_MAGIC
from .errors import WheelError

__all__ = ["WheelContents", "record_hash", "rename_wheel", "write_wheel"]

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_LIMIT = 0xFFFFFFFF


def record_hash(data: bytes) -> str:
    """The RECORD hash field for ``data``: ``sha256=<urlsafe base64, no padding>``."""
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class WheelContents:
    """A wheel's members and metadata, read once."""

    path: Path
    infos: Tuple[zipfile.ZipInfo, ...]
    dist_info: str
    """The ``<name>-<version>.dist-info`` folder."""
    wheel_metadata: str
    """The text of ``.dist-info/WHEEL``."""

    @classmethod
    def open(cls, path: Path) -> WheelContents:
        """Read the member list and WHEEL file of the wheel at ``path``."""
        try:
            parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            raise WheelError(f"{path}: not a wheel file name ({exc})") from exc
        try:
            with zipfile.ZipFile(path) as zf:
                infos = tuple(zf.infolist())
                dist_infos = sorted({i.filename.split("/", 1)[0] for i in infos
                                     if i.filename.split("/", 1)[0].endswith(".dist-info")
                                     and i.filename.endswith("/WHEEL")})
                if len(dist_infos) != 1:
                    raise WheelError(f"{path}: expected one .dist-info/WHEEL, "
                                     f"found {len(dist_infos)}")
                wheel = zf.read(f"{dist_infos[0]}/WHEEL").decode("utf-8")
        except (OSError, zipfile.BadZipFile) as exc:
            raise WheelError(f"cannot read wheel {path}: {exc}") from exc
        return cls(path, infos, dist_infos[0], wheel)

    @property
    def names(self) -> Tuple[str, ...]:
        """Member names in archive order."""
        return tuple(i.filename for i in self.infos)

    def read(self, name: str) -> bytes:
        """The uncompressed bytes of member ``name``."""
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(name)

    def extract_elf_files(self, dest: Path) -> List[str]:
        """Extract the members that are ELF files under ``dest`` (keeping permissions), in
        one pass over the archive; their names, in archive order."""
        found: List[str] = []
        with zipfile.ZipFile(self.path) as zf:
            for info in self.infos:
                if info.is_dir():
                    continue
                with zf.open(info) as member:
                    if member.read(4) != ELF_MAGIC:
                        continue
                    name = info.filename
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise WheelError(f"{self.path}: unsafe member path {name!r}")
                    target = dest / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with target.open("wb") as out:
                        out.write(ELF_MAGIC)
                        shutil.copyfileobj(member, out)
                target.chmod((info.external_attr >> 16) & 0o777 or 0o644)
                found.append(name)
        return found


def rename_wheel(filename: str, platforms: Sequence[str]) -> str:
    """``filename`` with its platform tag part replaced by ``platforms`` joined with dots."""
    stem = filename[: -len(".whl")]
    return f"{stem.rsplit('-', 1)[0]}-{'.'.join(platforms)}.whl"


def _raw_member(src: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    src.seek(info.header_offset)
    header = src.read(_LOCAL.size)
    fields = _LOCAL.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise WheelError(f"bad local header for {info.filename}")
    src.seek(info.header_offset + _LOCAL.size + fields[9] + fields[10])
    return src.read(info.compress_size)


def _dos_time(date_time: Tuple[int, int, int, int, int, int]) -> Tuple[int, int]:
    y, mo, d, h, mi, s = date_time
    return (h << 11) | (mi << 5) | (s // 2), ((max(y, 1980) - 1980) << 9) | (mo << 5) | d


@dataclass(frozen=True)
class _Entry:
    name: bytes
    method: int
    crc: int
    csize: int
    usize: int
    date_time: Tuple[int, int, int, int, int, int]
    external_attr: int
    create_system: int
    data: bytes


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _write_zip(out: BinaryIO, entries: Sequence[_Entry]) -> None:
    central: List[bytes] = []
    for entry in entries:
        if entry.csize > _LIMIT or entry.usize > _LIMIT or out.tell() > _LIMIT:
            raise WheelError("wheels over 4 GiB are not supported")
        flags = 0x800 if any(b > 0x7F for b in entry.name) else 0
        dos_t, dos_d = _dos_time(entry.date_time)
        offset = out.tell()
        out.write(_LOCAL.pack(b"PK\x03\x04", 20, flags, entry.method, dos_t, dos_d,
                              entry.crc, entry.csize, entry.usize, len(entry.name), 0))
        out.write(entry.name)
        out.write(entry.data)
        central.append(_CENTRAL.pack(
            b"PK\x01\x02", (entry.create_system << 8) | 20, 20, flags, entry.method, dos_t,
            dos_d, entry.crc, entry.csize, entry.usize, len(entry.name), 0, 0, 0, 0,
            entry.external_attr, offset) + entry.name)
    start = out.tell()
    for record in central:
        out.write(record)
    if len(entries) > 0xFFFF:
        raise WheelError("wheels with more than 65535 members are not supported")
    out.write(_END.pack(b"PK\x05\x06", 0, 0, len(entries), len(entries),
                        out.tell() - start, start, 0))


def _new_entry(name: str, data: bytes, date_time: Tuple[int, int, int, int, int, int],
               mode: int) -> _Entry:
    packed = _deflate(data)
    return _Entry(name.encode("utf-8"), zipfile.ZIP_DEFLATED, zlib.crc32(data), len(packed),
                  len(data), date_time, (0o100000 | mode) << 16, 3, packed)


def write_wheel(
    wheel: WheelContents,
    dest: Path,
    *,
    wheel_metadata: str,
    replace: Optional[Mapping[str, bytes]] = None,
    add: Optional[Mapping[str, Tuple[bytes, int]]] = None,
) -> Path:
    """Write ``wheel`` to the file ``dest`` with a new WHEEL text, ``replace``d member
    contents and ``add``ed members (name -> (bytes, mode)); RECORD is written anew.

    Members neither replaced nor added keep their compressed bytes. The file appears
    at ``dest`` only once it is complete.
    """
    replace = dict(replace or {})
    add = dict(add or {})
    record_name = f"{wheel.dist_info}/RECORD"
    replace[f"{wheel.dist_info}/WHEEL"] = wheel_metadata.encode("utf-8")
    stamp = next(i.date_time for i in wheel.infos if i.filename == f"{wheel.dist_info}/WHEEL")
    entries: List[_Entry] = []
    rows: List[Tuple[str, str, str]] = []
    with wheel.path.open("rb") as src, zipfile.ZipFile(wheel.path) as zf:
        added = sorted(add.items())
        for info in wheel.infos:
            if info.filename == record_name or info.filename.endswith("/"):
                continue
            if info.filename.startswith(wheel.dist_info + "/") and added:
                for name, (data, mode) in added:  # new members go before .dist-info
                    entries.append(_new_entry(name, data, stamp, mode))
                    rows.append((name, record_hash(data), str(len(data))))
                added = []
            if info.filename in replace:
                data = replace[info.filename]
                mode = (info.external_attr >> 16) & 0o777 or 0o644
                entries.append(_new_entry(info.filename, data, info.date_time, mode))
            else:
                data = zf.read(info)  # needed for RECORD; verifies the CRC too
                raw = _raw_member(src, info)
                entries.append(_Entry(info.filename.encode("utf-8"), info.compress_type,
                                      info.CRC, info.compress_size, info.file_size,
                                      info.date_time, info.external_attr, info.create_system,
                                      raw))
            rows.append((info.filename, record_hash(data), str(len(data))))
        for name, (data, mode) in added:
            entries.append(_new_entry(name, data, stamp, mode))
            rows.append((name, record_hash(data), str(len(data))))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows(rows)
    writer.writerow((record_name, "", ""))
    entries.append(_new_entry(record_name, text.getvalue().encode("utf-8"), stamp, 0o644))
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mlbackend-", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            _write_zip(out, entries)
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
