"""Wheel tags: the platform tags in a wheel name and the WHEEL text that carries them."""

from __future__ import annotations

from email.parser import HeaderParser
from typing import List, Sequence, Tuple

from packaging.utils import parse_wheel_filename

__all__ = ["retag_wheel_metadata", "wheel_platforms"]


def wheel_platforms(filename: str) -> Tuple[str, ...]:
    """The platform tags in a wheel file name, in file-name order."""
    parse_wheel_filename(filename)
    return tuple(filename[: -len(".whl")].rsplit("-", 1)[1].split("."))


def retag_wheel_metadata(text: str, platforms: Sequence[str]) -> str:
    """WHEEL text with ``Tag:`` lines for every python/abi pair times ``platforms`` and
    ``Root-Is-Purelib: false``; other lines keep their order."""
    message = HeaderParser().parsestr(text)
    pairs: List[Tuple[str, str]] = []
    for tag in message.get_all("Tag") or []:
        python, abi, _ = tag.strip().split("-", 2)
        if (python, abi) not in pairs:
            pairs.append((python, abi))
    lines: List[str] = []
    tags_written = False
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key == "tag":
            if not tags_written:
                lines += [f"Tag: {py}-{abi}-{plat}" for py, abi in pairs for plat in platforms]
                tags_written = True
            continue
        if key == "root-is-purelib":
            line = "Root-Is-Purelib: false"
        if line.strip():
            lines.append(line)
    return "\n".join(lines) + "\n\n"
