"""Wheel tags: the tags in a wheel file name, a name with new platform tags, and the WHEEL
text that carries them. (The tags a wheel may have are the audit's decision, in ``report``.)"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

from packaging.utils import parse_wheel_filename

__all__ = ["platforms_after", "rename_wheel", "retag_wheel_metadata", "wheel_fields",
           "wheel_platforms", "wheel_tags"]


def wheel_fields(text: str) -> Dict[str, List[str]]:
    """The ``Key: Value`` fields of a WHEEL file (lower-cased key -> values in order), read
    as an e-mail header block is: it ends at the first empty line or line that is not a
    field, and a line starting with white space continues the field before it. (The
    standard library's e-mail parser reads the same, at the cost of importing much of the
    e-mail and socket modules into every command.)"""
    fields: Dict[str, List[str]] = {}
    last: List[str] = []
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and last:
            last[-1] += " " + line.strip()
            continue
        key, colon, value = line.partition(":")
        if not colon or not key or " " in key or "\t" in key:
            break
        last = fields.setdefault(key.lower(), [])
        last.append(value.strip())
    return fields


def wheel_platforms(filename: str) -> Tuple[str, ...]:
    """The platform tags in a wheel file name, in file-name order."""
    parse_wheel_filename(filename)
    return tuple(filename[: -len(".whl")].rsplit("-", 1)[1].split("."))


def wheel_tags(filename: str) -> Tuple[str, ...]:
    """Every full tag (``cp312-cp312-manylinux_2_17_x86_64``...) a wheel file name carries,
    sorted."""
    return tuple(sorted(str(tag) for tag in parse_wheel_filename(filename)[3]))


def rename_wheel(filename: str, platforms: Sequence[str]) -> str:
    """``filename`` with its platform tag part replaced by ``platforms`` joined with dots."""
    stem = filename[: -len(".whl")]
    return f"{stem.rsplit('-', 1)[0]}-{'.'.join(platforms)}.whl"


def platforms_after(existing: Sequence[str], new: Sequence[str],
                    still_true: Callable[[str], bool]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(file-name platforms, kept platforms) after a retag to ``new``: the ``existing`` tags
    that are still true stay, and the file name lists them all sorted, as auditwheel does."""
    kept = tuple(t for t in dict.fromkeys(existing) if t not in new and still_true(t))
    return tuple(sorted({*kept, *new})), kept


def retag_wheel_metadata(text: str, platforms: Sequence[str], kept: Sequence[str] = ()) -> str:
    """WHEEL text whose ``Tag:`` lines are the existing ones with a platform in ``kept``, then
    every python/abi pair times ``platforms``, and ``Root-Is-Purelib: false``; other lines
    keep their order."""
    pairs: List[Tuple[str, str]] = []
    old: List[str] = []
    for tag in wheel_fields(text).get("tag", []):
        python, abi, platform = tag.strip().split("-", 2)
        if (python, abi) not in pairs:
            pairs.append((python, abi))
        if platform in kept:
            old.append(tag.strip())
    tags = list(dict.fromkeys(old + [f"{py}-{abi}-{plat}" for py, abi in pairs
                                     for plat in platforms]))
    lines: List[str] = []
    tags_written = False
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key == "tag":
            if not tags_written:
                lines += [f"Tag: {tag}" for tag in tags]
                tags_written = True
            continue
        if key == "root-is-purelib":
            line = "Root-Is-Purelib: false"
        if line.strip():
            lines.append(line)
    return "\n".join(lines) + "\n\n"
