"""Libraries a wheel loads at run time rather than through DT_NEEDED: named in FDO
``.note.dlopen`` ELF notes and in string literals passed to ``ctypes``/``cffi`` loaders.
The audit cannot resolve them, so it lists them with whether the wheel ships them or the
policy allows them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import AbstractSet, Iterable, List, Optional, Tuple

from .elf import ElfInfo
from .pysource import PythonFacts

__all__ = ["DlopenUse", "dlopen_uses"]


@dataclass(frozen=True)
class DlopenUse:
    """One library a file loads by name at run time."""

    file: str
    sonames: Tuple[str, ...]
    """The names tried (a note may list alternatives)."""
    source: str
    """``.note.dlopen``, or the Python call, e.g. ``ctypes.CDLL (line 12)``."""
    shipped: bool
    """One of the names is a file of the wheel."""
    allowed: Optional[bool]
    """One of the names is a library the wheel's policy lets it take from the system; None
    for a wheel without binaries, which no policy covers."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"file": self.file, "sonames": list(self.sonames), "source": self.source,
                "shipped": self.shipped, "allowed": self.allowed}

    def __str__(self) -> str:
        state = "shipped" if self.shipped else "allowed" if self.allowed else \
            "not shipped: it must be on the user's system" if self.allowed is None else \
            "neither shipped nor allowed: it must be on the user's system"
        return f"{self.file}: loads {' or '.join(self.sonames)} at run time " \
               f"({self.source}); {state}"


def dlopen_uses(elves: Iterable[Tuple[str, ElfInfo]], python: Iterable[PythonFacts],
                shipped: AbstractSet[str], allowed: Optional[AbstractSet[str]],
                ) -> Tuple[DlopenUse, ...]:
    """The run-time loads of the ELF files (member, facts) and Python files; ``shipped``
    holds the file names and sonames of the wheel's libraries, ``allowed`` the policy's
    (None when no policy applies)."""
    out: List[DlopenUse] = []

    def use(file: str, names: Tuple[str, ...], source: str) -> None:
        bases = {PurePosixPath(n).name for n in names}
        out.append(DlopenUse(file, names, source, bool(bases & shipped),
                             None if allowed is None else bool(bases & allowed)))

    for file, info in elves:
        for note in info.dlopen_notes:
            feature = f", feature {note.feature}" if note.feature else ""
            priority = f", {note.priority}" if note.priority else ""
            use(file, note.sonames, f".note.dlopen{feature}{priority}")
    for fact in python:
        for line, how, library in fact.loads:
            use(fact.file, (library,), f"{how} (line {line})")
    return tuple(out)
