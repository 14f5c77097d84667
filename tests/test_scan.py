"""The one checked pass over a wheel (wheel_scan): the same facts whatever the number of
threads and whether an ELF member is decoded from memory or from a temporary file; the first
bad member in archive order is the error; without the optional zlib-ng the standard zlib
finds the same defects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_faults import CASES, NEEDLES, SO, _at, _replace_member, ext, good_members, wheel_zip

from mlbackend.elf import parse_elf
from mlbackend.errors import EXIT_BAD_INPUT, WheelError
from mlbackend.wheel_reader import WheelReader
from mlbackend.wheel_scan import SPILL, scan_wheel

__all__ = ["ext"]  # the compiled extension fixture, shared with test_faults

LOADER = b"import ctypes\nlib = ctypes.CDLL('libfoo.so.1', mode=ctypes.RTLD_GLOBAL)\n"


def _wheel(tmp_path: Path, members: list) -> Path:
    path = tmp_path / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    path.write_bytes(wheel_zip(members))
    return path


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_facts_do_not_depend_on_threads_or_spilling(workers: int, ext: bytes,
                                                    tmp_path: Path) -> None:
    # zeros after the last section leave the file's ELF structures where they were
    big = ext + bytes(SPILL + 1 - len(ext))
    small_files = [(f"demo/m{i}.py", b"x = %d\n" % i) for i in range(300)]
    members = [*good_members(ext)[:2], ("demo/big.so", big), ("demo/loads.py", LOADER),
               *small_files, *good_members(ext)[2:]]
    with WheelReader.open(_wheel(tmp_path, members)) as reader:
        scan = scan_wheel(reader, workers=workers)
        assert reader.verified
    expected = parse_elf(ext, SO)
    assert list(scan.elves) == [SO, "demo/big.so"]
    assert scan.elves[SO] == expected and scan.elves["demo/big.so"] == expected
    (facts,) = scan.python
    assert facts.file == "demo/loads.py"
    assert facts.loads == ((2, "ctypes.CDLL", "libfoo.so.1"),)
    assert facts.global_loads


@pytest.mark.parametrize("workers", [1, 2])
def test_the_first_bad_member_in_the_archive_is_the_error(workers: int, ext: bytes,
                                                          tmp_path: Path) -> None:
    # a bad member big enough to be checked first (the largest go first) comes last
    members = [(f"demo/m{i}.py", b"y = %d\n" % i) for i in range(200)]
    members += [(SO, ext), ("demo/big.bin", os.urandom(3 << 20)), *good_members(ext)[2:]]
    path = tmp_path / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    path.write_bytes(wheel_zip(members, change=lambda entries: _at("demo/big.bin", crc=1)(
        _at("demo/m150.py", crc=1)(_at("demo/m3.py", crc=1)(entries)))))
    with WheelReader.open(path) as reader, \
            pytest.raises(WheelError, match=re.escape("demo/m3.py: CRC mismatch")):
        scan_wheel(reader, workers=workers)


@pytest.mark.parametrize("name", ["bad CRC", "corrupt deflate stream", "deflate stream cut short",
                                  "bad CRC on the extension"])
def test_the_standard_zlib_finds_the_same_defects(name: str, ext: bytes,
                                                  tmp_path: Path) -> None:
    from mlbackend import wheel_reader

    assert wheel_reader._zlib.__name__ == "zlib_ng.zlib_ng", "the test extra has zlib-ng"
    filename, data = CASES[name](ext)
    wheel = tmp_path / filename
    wheel.write_bytes(data)
    code = ("import sys; sys.modules['zlib_ng'] = None\n"
            "from mlbackend import wheel_reader\n"
            "assert wheel_reader._zlib.__name__ == 'zlib'\n"
            "from mlbackend._cli import main\n"
            f"sys.exit(main(['audit', {str(wheel)!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert NEEDLES[name] in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_loader_file_is_found_next_to_many_others(ext: bytes, tmp_path: Path) -> None:
    members = _replace_member(good_members(ext), "demo/__init__.py", LOADER)
    with WheelReader.open(_wheel(tmp_path, members)) as reader:
        scan = scan_wheel(reader)
    assert [f.file for f in scan.python] == ["demo/__init__.py"]


def test_the_needles_find_every_loader_word() -> None:
    from mlbackend.pysource import LOADER_WORDS
    from mlbackend.wheel_scan import _NEEDLES

    assert all(any(n.decode() in word for n in _NEEDLES) for word in LOADER_WORDS)


def test_only_a_file_that_could_load_is_parsed() -> None:
    """The text filter passes every shape the parser turns into a fact, and lets through
    none of the files that only talk about loading."""
    from mlbackend.pysource import may_load, scan_source

    loading = ['ctypes.CDLL ("libfoo.so")', 'cdll.LoadLibrary(\n  "libbar.so")',
               'ffi.dlopen("libbaz.so")', 'sys.setdlopenflags(flags)',
               'ctypes.PyDLL("x.so", mode=os.RTLD_GLOBAL)']
    for text in loading:
        assert may_load(text), text
        facts = scan_source("m.py", text)
        assert facts.loads or facts.global_loads, text
    talking = ['"""Uses dlopen to find the library."""', "# the CDLL class", "LoadLibrary = 1"]
    for text in talking:
        assert not may_load(text), text
        facts = scan_source("m.py", text)
        assert not facts.loads and not facts.global_loads, text
