"""Smoke test for the installed mlb-example-pure wheel."""

import mlb_example_pure


def test_greet() -> None:
    assert mlb_example_pure.greet("wheel") == "Hello, wheel!"


def test_word_count() -> None:
    assert mlb_example_pure.word_count("  one two\tthree\n") == 3
    assert mlb_example_pure.word_count("") == 0
