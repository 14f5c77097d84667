"""Smoke test for the installed mlb-example-c wheel."""

import math
import pathlib
import sys

import mlb_example_c


def test_add_in_thread() -> None:
    assert mlb_example_c.add_in_thread(2, 40) == 42
    assert mlb_example_c.add_in_thread(-(2**40), 1) == 1 - 2**40


def test_file_size(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"x" * 1234)
    assert mlb_example_c.file_size(str(target)) == 1234
    assert mlb_example_c.file_size(target) == 1234


def test_file_size_missing(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing"
    try:
        mlb_example_c.file_size(str(missing))
    except FileNotFoundError as error:
        assert error.filename == str(missing)
    else:
        raise AssertionError("file_size accepted a missing file")


def test_cube_root() -> None:
    assert math.isclose(mlb_example_c.cube_root(27.0), 3.0)
    assert math.isclose(mlb_example_c.cube_root(-8.0), -2.0)


def test_has_symbol() -> None:
    assert mlb_example_c.has_symbol("Py_Initialize")
    assert not mlb_example_c.has_symbol("mlb_no_such_symbol_" + sys.platform)
