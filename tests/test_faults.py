"""Malformed wheels and failing systems: every one ends as one error line (plus at most one
tip line), the documented exit status, no traceback, nothing left in the output folder or
TMPDIR, and the input unchanged.

The corpus is made here: a zip writer that can break any field, one small real extension
compiled once, and tmpfs mounts for full and read-only file systems.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from mlbackend._cli import main
from mlbackend.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_SYSTEM

ROOT = Path(__file__).resolve().parents[1]
NAME = "demo-1.0-cp311-cp311-linux_x86_64.whl"
SO = "demo/_ext.cpython-311-x86_64-linux-gnu.so"
WHEEL = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n" \
        b"Tag: cp311-cp311-linux_x86_64\n"
EXT_C = r"""
#include <Python.h>
#include <string.h>
static PyObject *answer(PyObject *self, PyObject *args) {
    return PyLong_FromLong((long)strlen("forty-two characters are not needed here"));
}
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {0}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ext", 0, -1, methods};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&mod); }
"""


# --- a zip writer that can break anything ------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One member as written; any field can be made to lie."""

    name: bytes
    data: bytes
    method: int = 8
    flags: int = 0
    attr: int = 0o100644 << 16
    system: int = 3
    crc: Optional[int] = None
    csize: Optional[int] = None
    usize: Optional[int] = None
    raw: Optional[bytes] = None
    """The stored bytes, instead of data compressed with ``method``."""
    local: Dict[str, Any] = field(default_factory=dict)
    """Overrides for the local header only (name, method, flags, crc, csize, usize)."""
    offset_delta: int = 0
    """Added to the offset the central directory records."""


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def build_zip(entries: Sequence[Entry], *, prefix: bytes = b"", suffix: bytes = b"",
              n: Optional[int] = None, disk: int = 0, cd_size_delta: int = 0) -> bytes:
    """A zip archive of ``entries``; the end record's fields can be overridden."""
    out = bytearray(prefix)
    central: List[bytes] = []
    for e in entries:
        packed = e.raw if e.raw is not None else (_deflate(e.data) if e.method == 8 else e.data)
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        csize = len(packed) if e.csize is None else e.csize
        usize = len(e.data) if e.usize is None else e.usize
        lo = {"name": e.name, "method": e.method, "flags": e.flags, "crc": crc,
              "csize": csize, "usize": usize, **e.local}
        offset = len(out)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, lo["flags"], lo["method"], 0,
                           0x5021, lo["crc"], lo["csize"], lo["usize"], len(lo["name"]), 0)
        out += lo["name"] + packed
        central.append(struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", (e.system << 8) | 20, 20, e.flags, e.method, 0,
            0x5021, crc, csize, usize, len(e.name), 0, 0, 0, 0, e.attr,
            offset + e.offset_delta) + e.name)
    start = len(out)
    directory = b"".join(central)
    out += directory
    count = len(entries) if n is None else n
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", disk, 0, count, count,
                       len(directory) + cd_size_delta, start, 0)
    return bytes(out + suffix)


def _hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def record_of(members: Sequence[Tuple[str, bytes]], dist_info: str = "demo-1.0.dist-info",
              ) -> bytes:
    """A correct RECORD for ``members``."""
    rows = [f"{name},{_hash(data)},{len(data)}" for name, data in members
            if not name.endswith("/")]
    return ("\n".join([*rows, f"{dist_info}/RECORD,,"]) + "\n").encode()


def good_members(ext: bytes) -> List[Tuple[str, bytes]]:
    """The members of a correct wheel (RECORD excluded)."""
    return [("demo/__init__.py", b"from ._ext import answer\n"), (SO, ext),
            ("demo-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"),
            ("demo-1.0.dist-info/WHEEL", WHEEL)]


def wheel_zip(members: Sequence[Tuple[str, bytes]], *, record: Optional[bytes] = None,
              change: Optional[Callable[[List[Entry]], List[Entry]]] = None,
              **zip_options: Any) -> bytes:
    """A wheel of ``members`` with RECORD (correct unless given), its entries then passed
    through ``change``."""
    entries = [Entry(n.encode(), d) for n, d in members]
    entries.append(Entry(b"demo-1.0.dist-info/RECORD",
                         record_of(members) if record is None else record))
    return build_zip(change(entries) if change else entries, **zip_options)


def _at(name: str, **changes: Any) -> Callable[[List[Entry]], List[Entry]]:
    """A change that alters the entry called ``name``."""
    def change(entries: List[Entry]) -> List[Entry]:
        return [replace(e, **changes) if e.name == name.encode() else e for e in entries]
    return change


# --- the corpus ----------------------------------------------------------------------------

Case = Callable[[bytes], Tuple[str, bytes]]
CASES: Dict[str, Case] = {}


def case(name: str, make: Callable[[List[Tuple[str, bytes]], bytes], bytes],
         filename: str = NAME) -> None:
    """Register a malformed wheel made by ``make(good members, extension bytes)``; the
    error line must contain ``NEEDLES[name]``."""
    CASES[name] = lambda ext: (filename, make(good_members(ext), ext))


NEEDLES: Dict[str, str] = {
    '.data of another project': 'other-1.0.data does not match',
    '.dist-info of another project': 'other-1.0.dist-info does not match',
    'DT_NEEDED absolute': 'a path',
    'DT_NEEDED relative path': 'a path',
    'DT_NEEDED with ..': 'a path',
    'ELF header only': 'cannot read the ELF file',
    'FIFO entry': 'demo/fifo is a FIFO',
    'NUL in a name': 'unsafe member name',
    'RECORD hash of a tampered extension': 'does not match its RECORD hash',
    'RECORD hash of a tampered file': 'does not match its RECORD hash',
    'RECORD lists a file twice': 'RECORD lists demo/__init__.py twice',
    'RECORD lists a missing file': 'which is not in the wheel',
    'RECORD misses a member': 'demo/extra.py is not listed in RECORD',
    'RECORD not UTF-8': 'RECORD is not UTF-8',
    'RECORD row of two fields': 'does not have 3 fields',
    'RECORD size lies': 'has 999 bytes',
    'RECORD uses md5': 'no sha256',
    'RECORD without a hash': 'no sha256',
    'WHEEL Tag garbage': "malformed tag 'garbage'",
    'WHEEL in Latin-1': 'WHEEL is not UTF-8',
    'WHEEL version 2': 'Wheel-Version 2.0',
    'WHEEL without Root-Is-Purelib': 'Root-Is-Purelib',
    'WHEEL without Tag': 'no Tag',
    'absolute member': "unsafe member name '/tmp/evil.py'",
    'backslash member': 'unsafe member name',
    'bad CRC': 'CRC mismatch',
    'bad CRC on the extension': 'CRC mismatch',
    'bzip2 member': 'compression method 12',
    'central directory size lies': 'central directory is not where',
    'character device': 'is a device',
    'component too long': 'too long',
    'corrupt deflate stream': 'corrupt deflate data',
    'declares 4 GB': 'declares 4294967280 bytes',
    'deflate stream cut short': 'corrupt deflate data',
    'dot component': 'unsafe member name',
    'drive letter': 'unsafe member name',
    'empty component': 'unsafe member name',
    'empty extension': 'empty file named like a shared library',
    'empty file': 'not a zip file',
    'encrypted': 'is encrypted',
    'end record counts one member too few': 'holds more than the end record lists',
    'end record counts one member too many': 'truncated',
    'file and folder of one name': 'both a file and a folder',
    'file name py3-none-any, WHEEL cp311': 'do not match the file name',
    'file name version differs': 'does not match the file name',
    'folder entry with data': 'has data',
    'holds more than declared': 'holds more than its declared',
    'junk after the end record': 'not a zip file',
    'junk before the first member': 'belong to no member',
    'local CRC differs': 'disagree',
    'local header says data descriptor': 'disagree',
    'local method differs': 'disagree',
    'local name differs': 'local header does not match',
    'local size differs': 'disagree',
    'lzma member': 'compression method 14',
    'multi-volume': 'multi-volume',
    'name not UTF-8': 'not valid UTF-8',
    'newline in a name': 'unsafe member name',
    'no RECORD': 'RECORD is missing',
    'no WHEEL': 'WHEEL is missing',
    'not a wheel file name': 'not a wheel file name',
    'not a zip': 'not a zip file',
    'offset into another member': 'demo/__init__.py',
    'offset past the end': 'belong to no member',
    'parent-folder member': "unsafe member name '../../evil.py'",
    'stored member with two sizes': 'two different sizes',
    'strong encryption': 'is encrypted',
    'symbolic link': 'is a symbolic link',
    'truncated': 'not a zip file',
    'truncated ELF': 'cannot read the ELF file',
    'two .dist-info folders': 'found 2',
    'two METADATA': 'METADATA is in the archive twice',
    'two WHEEL': 'WHEEL is in the archive twice',
    'two extensions of one name': 'is in the archive twice',
    'zip64 marker': 'zip64',
    'end record signature at the very end': 'not a zip file',
    'zip64 member': 'zip64 member',
}


def _with(extra: Sequence[Tuple[str, bytes]]) -> Callable[[List[Tuple[str, bytes]], bytes],
                                                          bytes]:
    return lambda m, ext: wheel_zip([*m[:2], *extra, *m[2:]])


def _mutated(name: str, **changes: Any) -> Callable[[List[Tuple[str, bytes]], bytes], bytes]:
    return lambda m, ext: wheel_zip(m, change=_at(name, **changes))


def _data(m: List[Tuple[str, bytes]], name: str) -> bytes:
    return dict(m)[name]


def _replace_member(m: List[Tuple[str, bytes]], name: str, data: bytes,
                    ) -> List[Tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in m]


# the archive itself
case("not a zip", lambda m, ext: b"this is not a zip file\n" * 10)
case("empty file", lambda m, ext: b"")
case("truncated", lambda m, ext: wheel_zip(m)[: len(wheel_zip(m)) // 2])
case("junk after the end record", lambda m, ext: wheel_zip(m, suffix=b"junk"))
case("junk before the first member", lambda m, ext: wheel_zip(m, prefix=b"MZ" + bytes(64)))
case("end record counts one member too many", lambda m, ext: wheel_zip(m, n=len(m) + 2))
case("end record counts one member too few", lambda m, ext: wheel_zip(m, n=len(m)))
case("central directory size lies", lambda m, ext: wheel_zip(m, cd_size_delta=7))
case("zip64 marker", lambda m, ext: wheel_zip(m, n=0xFFFF))
case("multi-volume", lambda m, ext: wheel_zip(m, disk=1))
case("end record signature at the very end", lambda m, ext: wheel_zip(m)[:-22] + b"PK\x05\x06")
case("zip64 member", _mutated("demo/__init__.py", csize=0xFFFFFFFF, usize=0xFFFFFFFF))
case("offset past the end", _mutated("demo/__init__.py", offset_delta=10 ** 7))
case("offset into another member", _mutated(SO, offset_delta=-40))
case("local name differs", _mutated("demo/__init__.py", local={"name": b"demo/__init__.pz"}))
case("local method differs", _mutated("demo/__init__.py", local={"method": 0}))
case("local CRC differs", _mutated("demo/__init__.py", local={"crc": 1}))
case("local size differs", _mutated(SO, local={"usize": 5}))
case("local header says data descriptor", _mutated(SO, local={"flags": 8}))
case("bad CRC", _mutated("demo/__init__.py", crc=0x1234))
case("bad CRC on the extension", _mutated(SO, crc=0x1234))
case("corrupt deflate stream", lambda m, ext: wheel_zip(m, change=_at(
    SO, raw=b"\xff" * 300, csize=300)))
case("deflate stream cut short", lambda m, ext: wheel_zip(m, change=_at(
    SO, raw=_deflate(ext)[:200], csize=200)))
case("declares 4 GB", _mutated(SO, usize=0xFFFFFFF0))
case("holds more than declared", lambda m, ext: wheel_zip(
    m, record=record_of(m).replace(f",{len(ext)}\n".encode(), b",\n"),
    change=_at(SO, usize=len(ext) - 100)))
case("encrypted", _mutated("demo/__init__.py", flags=1, local={"flags": 1}))
case("strong encryption", _mutated(SO, flags=0x41, local={"flags": 0x41}))
case("bzip2 member", lambda m, ext: wheel_zip(m, change=_at(
    "demo/__init__.py", method=12, raw=_data(m, "demo/__init__.py"))))
case("lzma member", lambda m, ext: wheel_zip(m, change=_at(
    "demo/__init__.py", method=14, raw=_data(m, "demo/__init__.py"))))
case("stored member with two sizes", lambda m, ext: wheel_zip(m, change=_at(
    "demo/__init__.py", method=0, usize=3)))

# names
case("parent-folder member", _with([("../../evil.py", b"x")]))
case("absolute member", _with([("/tmp/evil.py", b"x")]))
case("backslash member", _with([("demo\\..\\evil.py", b"x")]))
case("NUL in a name", _with([("demo/evil\0.py", b"x")]))
case("newline in a name", _with([("demo/evil\n.py", b"x")]))
case("drive letter", _with([("C:/evil.py", b"x")]))
case("dot component", _with([("demo/./evil.py", b"x")]))
case("empty component", _with([("demo//evil.py", b"x")]))
case("component too long", _with([("demo/" + "x" * 300 + ".py", b"x")]))
case("name not UTF-8", lambda m, ext: wheel_zip(m, change=lambda es: [
    *es[:1], Entry(b"demo/\xff\xfe.py", b"x", flags=0x800), *es[1:]]))
case("two METADATA", lambda m, ext: wheel_zip(m, change=lambda es: [*es, es[2]]))
case("two WHEEL", lambda m, ext: wheel_zip(m, change=lambda es: [
    *es[:3], Entry(b"demo-1.0.dist-info/WHEEL", WHEEL.replace(b"test", b"other")), *es[3:]]))
case("two extensions of one name", lambda m, ext: wheel_zip(m, change=lambda es: [
    *es[:2], es[1], *es[2:]]))
case("file and folder of one name", _with([("demo/__init__.py/inner.so", b"x")]))
case("symbolic link", lambda m, ext: wheel_zip([*m[:2], ("demo/link", b"/etc/passwd"),
                                                 *m[2:]],
                                                change=_at("demo/link", attr=0o120777 << 16)))
case("character device", lambda m, ext: wheel_zip(
    [*m[:2], ("demo/dev", b""), *m[2:]], change=_at("demo/dev", attr=0o020644 << 16)))
case("FIFO entry", lambda m, ext: wheel_zip(
    [*m[:2], ("demo/fifo", b""), *m[2:]], change=_at("demo/fifo", attr=0o010644 << 16)))
case("folder entry with data", lambda m, ext: wheel_zip(m, change=lambda es: [
    Entry(b"demo/", b"data"), *es]))

# the wheel's metadata
case("no WHEEL", lambda m, ext: wheel_zip([x for x in m if not x[0].endswith("WHEEL")]))
case("no RECORD", lambda m, ext: build_zip([Entry(n.encode(), d) for n, d in m]))
case("WHEEL without Tag", lambda m, ext: wheel_zip(_replace_member(
    m, "demo-1.0.dist-info/WHEEL", WHEEL.split(b"Tag:")[0])))
case("WHEEL Tag garbage", lambda m, ext: wheel_zip(_replace_member(
    m, "demo-1.0.dist-info/WHEEL", WHEEL + b"Tag: garbage\n")))
case("WHEEL in Latin-1", lambda m, ext: wheel_zip(_replace_member(
    m, "demo-1.0.dist-info/WHEEL", WHEEL.replace(b"test", "tést".encode("latin-1")))))
case("WHEEL version 2", lambda m, ext: wheel_zip(_replace_member(
    m, "demo-1.0.dist-info/WHEEL", WHEEL.replace(b"1.0", b"2.0"))))
case("WHEEL without Root-Is-Purelib", lambda m, ext: wheel_zip(_replace_member(
    m, "demo-1.0.dist-info/WHEEL", WHEEL.replace(b"Root-Is-Purelib: false\n", b""))))
case("file name py3-none-any, WHEEL cp311", lambda m, ext: wheel_zip(m),
     filename="demo-1.0-py3-none-any.whl")
case("not a wheel file name", lambda m, ext: wheel_zip(m), filename="demo.whl")
case("file name version differs", lambda m, ext: wheel_zip(m),
     filename="demo-2.0-cp311-cp311-linux_x86_64.whl")
case(".dist-info of another project", lambda m, ext: wheel_zip(
    [(n.replace("demo-1.0.dist-info", "other-1.0.dist-info"), d) for n, d in m],
    change=lambda es: [replace(e, name=e.name.replace(b"demo-1.0.dist-info",
                                                      b"other-1.0.dist-info")) for e in es]))
case("two .dist-info folders", _with([("evil-1.0.dist-info/WHEEL", WHEEL)]))
case(".data of another project", _with([("other-1.0.data/scripts/x", b"#!/bin/sh\n")]))
case("RECORD misses a member", lambda m, ext: wheel_zip(
    [*m, ("demo/extra.py", b"x = 1\n")], record=record_of(m)))
case("RECORD hash of a tampered file", lambda m, ext: wheel_zip(
    _replace_member(m, "demo/__init__.py", b"from ._ext import answeR\n"),
    record=record_of(m)))
case("RECORD hash of a tampered extension", lambda m, ext: wheel_zip(
    _replace_member(m, SO, ext[:-8] + b"tampered"), record=record_of(m)))
case("RECORD lists a missing file", lambda m, ext: wheel_zip(
    m, record=record_of([*m, ("demo/gone.py", b"")])))
case("RECORD uses md5", lambda m, ext: wheel_zip(m, record=record_of(m).replace(
    b"demo/__init__.py,sha256=", b"demo/__init__.py,md5=")))
case("RECORD size lies", lambda m, ext: wheel_zip(m, record=record_of(m).replace(
    f"demo/__init__.py,{_hash(m[0][1])},{len(m[0][1])}".encode(),
    f"demo/__init__.py,{_hash(m[0][1])},999".encode())))
case("RECORD row of two fields", lambda m, ext: wheel_zip(
    m, record=record_of(m) + b"demo/x.py,sha256=abc\n"))
case("RECORD lists a file twice", lambda m, ext: wheel_zip(
    m, record=record_of(m[:1]) + record_of(m)))
case("RECORD not UTF-8", lambda m, ext: wheel_zip(m, record=record_of(m) + b"\xff\xfe,,\n"))
case("RECORD without a hash", lambda m, ext: wheel_zip(m, record=record_of(m).replace(
    _hash(ext).encode(), b"")))

# the binaries
case("empty extension", lambda m, ext: wheel_zip(_replace_member(m, SO, b"")))
case("truncated ELF", lambda m, ext: wheel_zip(_replace_member(m, SO, ext[:64])))
case("ELF header only", lambda m, ext: wheel_zip(_replace_member(
    m, SO, b"\x7fELF\x02\x01\x01" + bytes(9) + b"not really")))


def _needs(path: str) -> Callable[[List[Tuple[str, bytes]], bytes], bytes]:
    def make(m: List[Tuple[str, bytes]], ext: bytes) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            so = Path(tmp) / "ext.so"
            so.write_bytes(ext)
            subprocess.run(["patchelf", "--add-needed", path, str(so)], check=True)
            return wheel_zip(_replace_member(m, SO, so.read_bytes()))
    return make


case("DT_NEEDED with ..", _needs("/tmp/../../../../x/libevil.so"))
case("DT_NEEDED absolute", _needs("/usr/lib/x86_64-linux-gnu/libz.so.1"))
case("DT_NEEDED relative path", _needs("../evil/libevil.so"))


# --- running ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ext(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small real CPython extension, compiled once."""
    folder = tmp_path_factory.mktemp("ext")
    (folder / "ext.c").write_text(EXT_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-I{sysconfig.get_path('include')}",
                    "-o", str(folder / "ext.so"), str(folder / "ext.c")], check=True)
    return (folder / "ext.so").read_bytes()


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def _run(args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> Outcome:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink()
    except OSError:  # a name too long, a symlink loop
        return False


def _listing(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if _is_dir(folder) \
        else []


def assert_one_line(outcome: Outcome, code: int) -> None:
    """The documented status, one error line, at most one tip line, no traceback."""
    lines = outcome.err.splitlines()
    assert outcome.code == code, outcome
    assert "Traceback" not in outcome.err
    assert 1 <= len(lines) <= 2, outcome.err
    assert lines[0].startswith("mlbackend: error: "), outcome.err
    assert len(lines) == 1 or lines[1].startswith("mlbackend: tip: "), outcome.err


COMMANDS = ("audit", "repair", "retag")


def _command(command: str, wheel: Path, out: Path) -> List[str]:
    return ["audit", str(wheel)] if command == "audit" else [command, str(wheel), "-w", str(out)]


@pytest.fixture
def fresh_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return folder


def _check_refused(wheel: Path, command: str, code: int, tmp_path: Path, tmpdir: Path,
                   capsys: pytest.CaptureFixture[str], out: Optional[Path] = None) -> Outcome:
    before = (wheel.read_bytes() if wheel.is_file() else None, wheel.lstat().st_mode
              if wheel.exists() or wheel.is_symlink() else None)
    out = out or tmp_path / "out"
    listing = _listing(out)
    outcome = _run(_command(command, wheel, out), capsys)
    assert_one_line(outcome, code)
    assert _listing(out) == listing, "something was left in the output folder"
    assert _listing(tmpdir) == [], "something was left in TMPDIR"
    after = (wheel.read_bytes() if wheel.is_file() else None, wheel.lstat().st_mode
             if wheel.exists() or wheel.is_symlink() else None)
    assert after == before, "the input changed"
    return outcome


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_wheel_is_refused(name: str, command: str, ext: bytes, tmp_path: Path,
                                    fresh_tmpdir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    filename, data = CASES[name](ext)
    wheel = tmp_path / "in" / filename
    wheel.parent.mkdir()
    wheel.write_bytes(data)
    wheel.chmod(0o640)
    outcome = _check_refused(wheel, command, EXIT_BAD_INPUT, tmp_path, fresh_tmpdir, capsys)
    assert NEEDLES[name] in outcome.err


def test_the_corpus_is_large_and_its_writer_sound(ext: bytes, tmp_path: Path,
                                                   fresh_tmpdir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Without a defect, the same writer makes a wheel every command accepts."""
    assert len(CASES) >= 50 and set(NEEDLES) == set(CASES)
    wheel = tmp_path / NAME
    wheel.write_bytes(wheel_zip(good_members(ext)))
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
    for command in COMMANDS:
        outcome = _run(_command(command, wheel, tmp_path / command), capsys)
        assert outcome.code == EXIT_OK, outcome
    (made,) = (tmp_path / "repair").iterdir()
    assert made.name == "demo-1.0-cp311-cp311-manylinux1_x86_64.manylinux_2_5_x86_64.whl" \
        or "manylinux" in made.name


# --- failing systems ---------------------------------------------------------------------

def _root(cmd: Sequence[str]) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*prefix, *cmd], check=True, capture_output=True)


@contextlib.contextmanager
def tmpfs(folder: Path, *options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``folder`` for the duration (root, or passwordless sudo)."""
    folder.mkdir(parents=True, exist_ok=True)
    _root(["mount", "-t", "tmpfs", "-o", ",".join(("size=64k", *options)), "tmpfs",
           str(folder)])
    try:
        yield folder
    finally:
        _root(["umount", "-l", str(folder)])


def _fill(folder: Path, *, spare: bool = False) -> None:
    """Use up every byte of the file system holding ``folder`` (all but one page with
    ``spare``: enough for tempfile's probe of TMPDIR, which else falls back to /tmp)."""
    (folder / ".spare").write_bytes(b"\0" * 4096)
    with (folder / ".filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    if spare:
        (folder / ".spare").unlink()


@pytest.fixture
def good_wheel(ext: bytes, tmp_path: Path) -> Path:
    wheel = tmp_path / "in" / NAME
    wheel.parent.mkdir()
    wheel.write_bytes(wheel_zip(good_members(ext)))
    return wheel


@pytest.mark.parametrize("command", ("repair", "retag"))
@pytest.mark.parametrize("fault", ["output is a file", "output under a file",
                                   "output is /dev/full", "output symlink loop",
                                   "folder at the wheel's name", "name too long",
                                   "output read-only", "output full"])
def test_failing_output_is_one_line(fault: str, command: str, good_wheel: Path,
                                    tmp_path: Path, fresh_tmpdir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    with contextlib.ExitStack() as stack:
        if fault == "output is a file":
            out.write_text("a file")
        elif fault == "output under a file":
            (tmp_path / "file").write_text("a file")
            out = tmp_path / "file" / "out"
        elif fault == "output is /dev/full":
            out = Path("/dev/full")
        elif fault == "output symlink loop":
            out.symlink_to(out)
        elif fault == "folder at the wheel's name":
            for name in ("demo-1.0-cp311-cp311-manylinux1_x86_64.manylinux_2_5_x86_64.whl",
                         "demo-1.0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"):
                (out / name).mkdir(parents=True)
        elif fault == "name too long":
            out = tmp_path / ("x" * 300)
        elif fault == "output read-only":
            stack.enter_context(tmpfs(out, "ro"))
        elif fault == "output full":
            stack.enter_context(tmpfs(out))
            _fill(out)
        listing = _listing(out)
        before = good_wheel.read_bytes()
        outcome = _run(_command(command, good_wheel, out), capsys)
        assert_one_line(outcome, EXIT_SYSTEM)
        assert good_wheel.read_bytes() == before
        assert _listing(out) == listing
        assert _listing(fresh_tmpdir) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_tmpdir_does_not_stop_what_writes_nothing_there(
        command: str, good_wheel: Path, tmp_path: Path, fresh_tmpdir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """ELF members are audited from memory: with nothing to vendor, nothing goes to TMPDIR."""
    with tmpfs(fresh_tmpdir):
        _fill(fresh_tmpdir, spare=True)
        outcome = _run(_command(command, good_wheel, tmp_path / "out"), capsys)
        assert outcome.code == 0, outcome
        assert [p.name for p in fresh_tmpdir.iterdir()] == [".filler"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["FIFO", "folder", "device", "missing"])
def test_non_regular_input_is_refused_before_opening(kind: str, command: str, tmp_path: Path,
                                                     fresh_tmpdir: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     ) -> None:
    wheel = tmp_path / NAME
    if kind == "FIFO":
        os.mkfifo(wheel)  # opening it for reading would block without a writer
    elif kind == "folder":
        wheel.mkdir()
    elif kind == "device":
        wheel.symlink_to("/dev/zero")
    outcome = _check_refused(wheel, command, EXIT_BAD_INPUT, tmp_path, fresh_tmpdir, capsys)
    assert str(wheel) in outcome.err


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["repair"], ["audit", "--bogus", "x.whl"], ["frobnicate"], []):
        assert_one_line(_run(args, capsys), EXIT_BAD_INPUT)


def test_output_folder_of_the_input_leaves_the_input_alone(good_wheel: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           ) -> None:
    good_wheel.chmod(0o604)
    before = good_wheel.read_bytes()
    old = os.umask(0o022)
    try:
        for command in ("retag", "retag", "repair"):
            outcome = _run([command, str(good_wheel), "-w", str(good_wheel.parent)], capsys)
            assert outcome.code == EXIT_OK, outcome
    finally:
        os.umask(old)
    assert good_wheel.read_bytes() == before
    assert stat.S_IMODE(good_wheel.stat().st_mode) == 0o604
    made = [p for p in good_wheel.parent.iterdir() if p != good_wheel]
    assert len(made) == 1 and "manylinux" in made[0].name
    assert stat.S_IMODE(made[0].stat().st_mode) == 0o644  # from the umask, not 0600
    # retagging the output in its own folder: nothing to change, the file is left as it is
    made[0].chmod(0o600)
    outcome = _run(["retag", str(made[0]), "-w", str(made[0].parent)], capsys)
    assert outcome.code == EXIT_OK and stat.S_IMODE(made[0].stat().st_mode) == 0o600


# --- whole processes ---------------------------------------------------------------------

def _env(tmpdir: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "backend")
    env["TMPDIR"] = str(tmpdir)
    env.pop("CI", None)
    return env


def _cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "mlbackend", *args]


def test_stdout_failures_are_one_line(good_wheel: Path, tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(_cli("audit", str(good_wheel)), stdout=full, stderr=subprocess.PIPE,
                              text=True, env=_env(tmp_path), timeout=60)
    assert_one_line(Outcome(proc.returncode, "", proc.stderr), EXIT_SYSTEM)
    assert "<stdout>" in proc.stderr
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(_cli("audit", str(good_wheel)), stdout=write,
                              stderr=subprocess.PIPE, text=True, env=_env(tmp_path), timeout=60)
    finally:
        os.close(write)
    assert_one_line(Outcome(proc.returncode, "", proc.stderr), EXIT_SYSTEM)


def test_fifo_input_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / NAME
    os.mkfifo(fifo)
    proc = subprocess.run(_cli("repair", str(fifo), "-w", str(tmp_path / "out")),
                          capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert_one_line(Outcome(proc.returncode, proc.stdout, proc.stderr), EXIT_BAD_INPUT)


@pytest.fixture(scope="module")
def large_wheel(ext: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 48 MB wheel: the extension and incompressible data."""
    blob = os.urandom(48 << 20)
    members = [*good_members(ext)[:2], ("demo/blob.bin", blob), *good_members(ext)[2:]]
    wheel = tmp_path_factory.mktemp("large") / NAME
    wheel.write_bytes(wheel_zip(members, change=_at("demo/blob.bin", method=0)))
    return wheel


def test_sigkill_during_repair_leaves_the_output_folder_empty(large_wheel: Path,
                                                              tmp_path: Path) -> None:
    def start(out: Path) -> Tuple[subprocess.Popen[bytes], float]:
        tmpdir = tmp_path / f"tmp-{out.name}"
        tmpdir.mkdir()
        proc = subprocess.Popen(_cli("repair", str(large_wheel), "-w", str(out)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=_env(tmpdir))
        return proc, time.monotonic()

    proc, began = start(tmp_path / "whole")
    assert proc.wait(timeout=300) == 0
    whole = time.monotonic() - began
    (reference,) = (tmp_path / "whole").iterdir()
    kills = 0
    for n, fraction in enumerate((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)):
        out = tmp_path / f"out{n}"
        out.mkdir()
        proc, began = start(out)
        time.sleep(max(0.0, whole * fraction - (time.monotonic() - began)))
        if proc.poll() is not None:  # finished early (a faster run): not a kill point
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        left = list(out.iterdir())
        if left:  # killed after the wheel was linked into place: it must be whole
            assert [p.name for p in left] == [reference.name], f"left at {fraction:.0%}"
            assert left[0].read_bytes() == reference.read_bytes()
            continue
        kills += 1
    assert kills >= 5, "too few kills before the wheel was complete"


def test_sigterm_during_repair_cleans_output_and_tmpdir(large_wheel: Path,
                                                        tmp_path: Path) -> None:
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    tmpdir.mkdir()
    proc = subprocess.Popen(_cli("repair", str(large_wheel), "-w", str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(tmpdir))
    deadline = time.monotonic() + 60
    # until its work folder exists (ELF members are read in memory; the first entry may be
    # the probe file tempfile writes and removes when it picks TMPDIR)
    while not any(tmpdir.glob("mlbackend-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert list(out.iterdir()) == [] and list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("target", ["archive", "extension"])
def test_random_corruption_is_an_error_never_a_crash(target: str, ext: bytes,
                                                     tmp_path: Path) -> None:
    """Seeded byte flips in the archive (headers included) or in the extension (its wheel
    kept consistent): the audit either succeeds or raises an MlbackendError."""
    import random

    from mlbackend.audit import audit_wheel
    from mlbackend.errors import MlbackendError

    rng = random.Random(f"{target}-1")
    good = wheel_zip(good_members(ext))
    headers = [i for i in range(len(good) - 1) if good[i:i + 2] == b"PK"]
    wheel = tmp_path / NAME
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(150):
        data = bytearray(good if target == "archive" else ext)
        for _ in range(rng.choice((1, 2, 4, 16))):
            if target == "archive" and rng.random() < 0.5:
                pos = min(rng.choice(headers) + rng.randrange(46), len(data) - 1)
            else:
                pos = rng.randrange(64) if rng.random() < 0.3 else rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        if target == "extension":
            if rng.random() < 0.2:
                data = data[:rng.randrange(len(data))]
            data = bytearray(wheel_zip(_replace_member(good_members(ext), SO, bytes(data))))
        wheel.write_bytes(bytes(data))
        try:
            audit_wheel(wheel)
            outcomes["ok"] += 1
        except MlbackendError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


@pytest.mark.parametrize("fault", ["wheel directory under a file", "tool = 5"])
def test_hook_failures_are_one_line(fault: str, tmp_path: Path) -> None:
    """The PEP 517 hooks end the same way: one line, the status of the error's class."""
    project = tmp_path / "project"
    (project / "purepkg").mkdir(parents=True)
    (project / "purepkg" / "__init__.py").write_text("")
    head = "tool = 5\n" if fault == "tool = 5" else ""
    (project / "pyproject.toml").write_text(
        f"{head}[project]\nname = 'purepkg'\nversion = '1.0'\n"
        "[build-system]\nrequires = ['setuptools']\nbuild-backend = 'mlbackend'\n"
        + ("" if head else "[tool.setuptools]\npackages = ['purepkg']\n"))
    (tmp_path / "file").write_text("a file")
    code = ("import sys, mlbackend\n"
            "out = sys.argv[1]  # setuptools replaces sys.argv\n"
            "mlbackend.get_requires_for_build_wheel({})\n"
            "mlbackend.build_wheel(out, {'baseline': 'host'})\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "file" / "out")],
                          cwd=project, capture_output=True, text=True, env=_env(tmp_path),
                          timeout=120)
    expected = EXIT_SYSTEM if fault == "wheel directory under a file" else EXIT_BAD_INPUT
    errors = [line for line in proc.stderr.splitlines() if " error: " in line
              or line.startswith("mlbackend: tip: ") or "Traceback" in line]
    assert errors, proc.stderr
    assert_one_line(Outcome(proc.returncode, "", "\n".join(errors) + "\n"), expected)
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "file") in errors[0] or "[tool]" in errors[0]
