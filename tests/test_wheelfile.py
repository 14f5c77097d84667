"""The wheel writer: unchanged members keep their compressed bytes; output is reproducible."""

from __future__ import annotations

import zipfile
from pathlib import Path

from mlbackend.tags import retag_wheel_metadata
from mlbackend.wheelfile import WheelContents, _raw_member, record_hash, rename_wheel, write_wheel

WHEEL = ("Wheel-Version: 1.0\nGenerator: bdist_wheel (0.43.0)\nRoot-Is-Purelib: false\n"
         "Tag: cp311-cp311-linux_x86_64\nTag: cp312-cp312-linux_x86_64\n\n")


def _wheel(tmp: Path) -> Path:
    path = tmp / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(zipfile.ZipInfo("demo/__init__.py", (2020, 1, 2, 3, 4, 6)), "x = 1\n" * 500)
        info = zipfile.ZipInfo("demo/data.bin", (2020, 1, 2, 3, 4, 6))
        info.external_attr = 0o100755 << 16
        zf.writestr(info, bytes(range(256)) * 64, zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo("demo-1.0.dist-info/WHEEL", (2020, 1, 2, 3, 4, 6)), WHEEL)
        zf.writestr("demo-1.0.dist-info/RECORD", "")
    return path


def test_raw_copy_keeps_compressed_bytes_and_modes(tmp_path: Path) -> None:
    src = _wheel(tmp_path)
    wheel = WheelContents.open(src)
    tags = ("manylinux_2_17_x86_64", "manylinux2014_x86_64")
    dest = tmp_path / "out" / rename_wheel(src.name, tags)
    write_wheel(wheel, dest, wheel_metadata=retag_wheel_metadata(wheel.wheel_metadata, tags),
                add={"demo.libs/libx-12345678.so.1": (b"\x7fELF...", 0o755)})
    assert dest.name == "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dest) as b, src.open("rb") as fa, \
            dest.open("rb") as fb:
        for name in ("demo/__init__.py", "demo/data.bin"):
            ia, ib = a.getinfo(name), b.getinfo(name)
            assert _raw_member(fa, ia) == _raw_member(fb, ib)
            assert ia.external_attr == ib.external_attr
        wheel_text = b.read("demo-1.0.dist-info/WHEEL").decode()
        record = b.read("demo-1.0.dist-info/RECORD").decode().splitlines()
        names = b.namelist()
        for row in record:
            name, digest, size = row.rsplit(",", 2)
            if digest:
                assert digest == record_hash(b.read(name)) and int(size) == len(b.read(name))
    assert names.index("demo.libs/libx-12345678.so.1") < names.index("demo-1.0.dist-info/WHEEL")
    assert names[-1] == "demo-1.0.dist-info/RECORD"
    assert "Root-Is-Purelib: false" in wheel_text
    assert [line for line in wheel_text.splitlines() if line.startswith("Tag:")] == [
        "Tag: cp311-cp311-manylinux_2_17_x86_64", "Tag: cp311-cp311-manylinux2014_x86_64",
        "Tag: cp312-cp312-manylinux_2_17_x86_64", "Tag: cp312-cp312-manylinux2014_x86_64"]


def test_same_input_gives_same_bytes(tmp_path: Path) -> None:
    src = _wheel(tmp_path)
    outs = []
    for n in range(2):
        wheel = WheelContents.open(src)
        dest = tmp_path / str(n) / "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
        write_wheel(wheel, dest, wheel_metadata=wheel.wheel_metadata,
                    replace={"demo/__init__.py": b"x = 2\n"})
        outs.append(dest.read_bytes())
    assert outs[0] == outs[1]
    with zipfile.ZipFile(tmp_path / "0" / "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl") as zf:
        assert zf.read("demo/__init__.py") == b"x = 2\n"
        assert zf.testzip() is None
