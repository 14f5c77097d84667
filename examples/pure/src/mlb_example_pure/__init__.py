"""Example pure-Python package: nothing to audit, so the wheel stays py3-none-any."""

from __future__ import annotations

__all__ = ["greet", "word_count"]


def greet(name: str) -> str:
    """Return a greeting for name."""
    return f"Hello, {name}!"


def word_count(text: str) -> int:
    """Return the number of whitespace-separated words in text."""
    return len(text.split())
