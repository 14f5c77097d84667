"""The wheel writer: unchanged members keep their compressed bytes; output is reproducible."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from mlbackend.tags import rename_wheel, retag_wheel_metadata
from mlbackend.wheel_reader import WheelReader, record_hash
from mlbackend.wheel_writer import write_wheel

WHEEL = ("Wheel-Version: 1.0\nGenerator: bdist_wheel (0.43.0)\nRoot-Is-Purelib: false\n"
         "Tag: cp311-cp311-linux_x86_64\nTag: cp312-cp312-linux_x86_64\n\n")


def _wheel(tmp: Path) -> Path:
    path = tmp / "demo-1.0-cp311.cp312-cp311.cp312-linux_x86_64.whl"
    members = {"demo/__init__.py": b"x = 1\n" * 500, "demo/data.bin": bytes(range(256)) * 64,
               "demo-1.0.dist-info/WHEEL": WHEEL.encode()}
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d in members.items())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (2020, 1, 2, 3, 4, 6))
            info.external_attr = (0o100755 if name.endswith(".bin") else 0o100644) << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
        zf.writestr("demo-1.0.dist-info/RECORD", record + "demo-1.0.dist-info/RECORD,,\n")
    return path


def _raw(path: Path, name: str) -> bytes:
    with WheelReader.open(path) as reader:
        return b"".join(reader.raw_chunks(reader.get(name)))


def test_raw_copy_keeps_compressed_bytes_and_modes(tmp_path: Path) -> None:
    src = _wheel(tmp_path)
    tags = ("manylinux_2_17_x86_64", "manylinux2014_x86_64")
    dest = tmp_path / "out" / rename_wheel(src.name, tags)
    with WheelReader.open(src) as wheel:
        write_wheel(wheel, dest,
                    wheel_metadata=retag_wheel_metadata(wheel.wheel_metadata, tags),
                    add={"demo.libs/libx-12345678.so.1": (b"\x7fELF...", 0o755)})
    assert dest.name == ("demo-1.0-cp311.cp312-cp311.cp312-manylinux_2_17_x86_64."
                         "manylinux2014_x86_64.whl")
    with WheelReader.open(dest) as again:  # the output passes the strict reader
        for _ in again.stream():
            pass
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dest) as b:
        for name in ("demo/__init__.py", "demo/data.bin"):
            ia, ib = a.getinfo(name), b.getinfo(name)
            assert _raw(src, name) == _raw(dest, name)
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
        dest = tmp_path / str(n) / "demo-1.0-cp311.cp312-cp311.cp312-manylinux_2_17_x86_64.whl"
        with WheelReader.open(src) as wheel:
            write_wheel(wheel, dest, wheel_metadata=wheel.wheel_metadata,
                        replace={"demo/__init__.py": b"x = 2\n"})
        outs.append(dest.read_bytes())
    assert outs[0] == outs[1]
    name = "demo-1.0-cp311.cp312-cp311.cp312-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(tmp_path / "0" / name) as zf:
        assert zf.read("demo/__init__.py") == b"x = 2\n"
        assert zf.testzip() is None


def test_times_from_source_date_epoch_and_mode_from_umask(tmp_path: Path,
                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    src = _wheel(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    old = os.umask(0o027)
    try:
        dest = tmp_path / "out" / "demo-1.0-cp311.cp312-cp311.cp312-manylinux_2_17_x86_64.whl"
        with WheelReader.open(src) as wheel:
            write_wheel(wheel, dest, wheel_metadata=wheel.wheel_metadata)
    finally:
        os.umask(old)
    assert dest.stat().st_mode & 0o777 == 0o640
    with zipfile.ZipFile(dest) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    assert os.listdir(dest.parent) == [dest.name]


def test_members_with_data_descriptors_are_read_and_rewritten_without(tmp_path: Path) -> None:
    """zipfile writing to a pipe puts sizes in data descriptors; such wheels are valid."""
    import io

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[no-untyped-def,override]
            self.data += b
            return len(b)

    members = {"demo/__init__.py": b"x = 1\n" * 50, "demo-1.0.dist-info/WHEEL": WHEEL.encode()}
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d in members.items())
    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("demo-1.0.dist-info/RECORD", record + "demo-1.0.dist-info/RECORD,,\n")
    src = tmp_path / "demo-1.0-cp311.cp312-cp311.cp312-linux_x86_64.whl"
    src.write_bytes(bytes(pipe.data))
    with zipfile.ZipFile(src) as zf:
        assert all(i.flag_bits & 0x8 for i in zf.infolist())
    dest = tmp_path / "out" / src.name.replace("linux", "manylinux_2_17")
    with WheelReader.open(src) as wheel:
        write_wheel(wheel, dest, wheel_metadata=retag_wheel_metadata(
            wheel.wheel_metadata, ["manylinux_2_17_x86_64"]))
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
        assert not any(i.flag_bits & 0x8 for i in zf.infolist())
        assert zf.read("demo/__init__.py") == members["demo/__init__.py"]


def test_without_o_tmpfile_a_temporary_name_is_used_and_removed(
        tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from mlbackend.errors import OutputError
    from mlbackend.safe_output import output_file

    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    dest = tmp_path / "out" / "x.whl"
    old = os.umask(0o002)
    try:
        with output_file(dest) as out:
            out.write(b"whole")
            assert [p.name.startswith(".mlbackend-") for p in dest.parent.iterdir()] == [True]
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"whole" and dest.stat().st_mode & 0o777 == 0o664
    with pytest.raises(OutputError) as info, output_file(tmp_path / "out" / "y.whl") as out:
        out.write(b"half")
        raise OSError(28, "No space left on device")
    assert "y.whl" in info.value.message and "no space" in info.value.message
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.whl"]
