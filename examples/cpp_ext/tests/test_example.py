"""Smoke test for the installed mlb-example-cpp wheel."""

import mlb_example_cpp
import pytest


def test_parse_int() -> None:
    assert mlb_example_cpp.parse_int("  -123 ") == -123


@pytest.mark.parametrize("text", ["", "12abc", "abc", "1.5"])
def test_parse_int_error_becomes_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not an integer"):
        mlb_example_cpp.parse_int(text)


def test_parallel_sum() -> None:
    assert mlb_example_cpp.parallel_sum(range(1001)) == 500500
    assert mlb_example_cpp.parallel_sum([]) == 0
    assert mlb_example_cpp.parallel_sum([7]) == 7


def test_format_point() -> None:
    assert mlb_example_cpp.format_point(1.0, 2.5) == "(1.00, 2.50)"
    assert mlb_example_cpp.format_point(1.0 / 3.0, -2.0, 4) == "(0.3333, -2.0000)"


def test_format_point_bad_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        mlb_example_cpp.format_point(0.0, 0.0, 99)
