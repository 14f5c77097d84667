"""The abi3 promise: an extension in a wheel tagged ``abi3`` may import only the Limited
API of the oldest Python its tag names. The Limited API comes from the ``abi3info``
package (generated from CPython's ``Misc/stable_abi.toml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from .elf import ElfInfo

__all__ = ["Abi3Violation", "abi3_minimum", "abi3_violations"]

_PYTHON_PREFIXES = ("Py", "_Py")


@dataclass(frozen=True)
class Abi3Violation:
    """A Python C-API symbol an abi3 extension imports beyond its declared Limited API."""

    file: str
    symbol: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"file": self.file, "symbol": self.symbol, "detail": self.detail}


def abi3_minimum(wheel_name: str) -> Optional[Tuple[int, int]]:
    """The oldest CPython an abi3 wheel declares (``cp39-abi3`` -> (3, 9)), else None."""
    try:
        tags = parse_wheel_filename(wheel_name)[3]
    except InvalidWheelFilename:
        return None
    versions = [(int(t.interpreter[2]), int(t.interpreter[3:])) for t in tags
                if t.abi == "abi3" and t.interpreter.startswith("cp")
                and t.interpreter[2:].isdigit() and len(t.interpreter) > 3]
    return min(versions) if versions else None


def abi3_violations(minimum: Tuple[int, int], elves: Iterable[Tuple[str, ElfInfo]],
                    ) -> Tuple[Abi3Violation, ...]:
    """The Python symbols each (member, facts) imports that the Limited API of ``minimum``
    lacks. Raises ImportError when abi3info is not installed (it needs Python 3.10+)."""
    import abi3info
    from abi3info.models import Symbol

    known = {**abi3info.FUNCTIONS, **abi3info.DATAS}
    wanted = f"{minimum[0]}.{minimum[1]}"
    out: List[Abi3Violation] = []
    for file, info in elves:
        for name in sorted({s.name for s in info.undefined}):
            if not name.startswith(_PYTHON_PREFIXES):
                continue
            entry = known.get(Symbol(name))
            if entry is None:
                out.append(Abi3Violation(file, name, "not in the Limited API"))
                continue
            added = (entry.added.major, entry.added.minor)
            if added > minimum:
                out.append(Abi3Violation(
                    file, name, f"in the Limited API since {added[0]}.{added[1]}, "
                                f"the wheel declares {wanted}"))
    return tuple(out)
