"""Smoke test for the installed mlb-example-yaml wheel."""

import mlb_example_yaml
import pytest


def test_version() -> None:
    assert mlb_example_yaml.version().startswith("0.")


def test_count_scalars() -> None:
    assert mlb_example_yaml.count_scalars("a: 1\nb: [x, y]\n") == 5


def test_invalid() -> None:
    with pytest.raises(ValueError, match="invalid YAML"):
        mlb_example_yaml.count_scalars("a: 'unterminated")
