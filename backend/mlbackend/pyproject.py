"""Read a project's pyproject.toml (the one place that parses it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons
    import tomli as tomllib

__all__ = ["read_pyproject", "read_table"]


def read_pyproject(source_dir: Path) -> Dict[str, Any]:
    """The parsed ``pyproject.toml`` of ``source_dir`` ({} when there is none); a file that
    cannot be read or parsed is a ConfigError naming it."""
    path = source_dir / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return dict(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}",
                          tip="fix the TOML syntax of pyproject.toml") from exc


def read_table(source_dir: Path, *keys: str) -> Dict[str, Any]:
    """The table at ``keys`` (e.g. ``"tool", "mlbackend"``) of ``source_dir``'s pyproject.toml,
    {} when absent; a ConfigError naming it when a level is not a table."""
    table: Any = read_pyproject(source_dir)
    for depth, key in enumerate(keys):
        table = table.get(key, {})
        if not isinstance(table, dict):
            name = ".".join(keys[: depth + 1])
            raise ConfigError(f"[{name}] in {source_dir / 'pyproject.toml'} must be a table, "
                              f"not {type(table).__name__} {table!r}"[:200])
    return dict(table)
