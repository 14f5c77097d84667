"""The build record: what ``build_wheel`` did, as data for the process that started it.

A caller (the pipeline, the container baseline, the Action through the pipeline) sets
:data:`RECORD_ENV` to a file path; ``build_wheel`` writes one JSON object there: the wheel, the
baseline and its reason, the tag and why. Facts cross the process boundary as data instead of
being parsed back out of the build log.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

__all__ = ["RECORD_ENV", "RECORD_VERSION", "BuildRecord", "read_record", "write_record"]

RECORD_ENV = "_MLBACKEND_RECORD"
"""The variable that names the record file. Outside the ``MLBACKEND_`` prefix: it is not a
setting, and it never crosses into a container (which gets its own)."""
RECORD_VERSION = 1


@dataclass(frozen=True)
class BuildRecord:
    """One wheel build, as ``build_wheel`` reports it."""

    wheel: str
    """The file name of the wheel placed in the wheel directory."""
    baseline: str
    """``container``, ``zig`` or ``host``."""
    baseline_reason: str
    tag: str
    """The audited platform tag (``any`` for a pure wheel)."""
    tags: Tuple[str, ...] = field(default=())
    """The platform tags in the file name."""
    reason: str = ""
    """Why the wheel has its tag."""

    def to_json(self) -> Dict[str, Any]:
        """The record as written (with its format version)."""
        data = asdict(self)
        data["tags"] = list(self.tags)
        return {"record_version": RECORD_VERSION, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildRecord:
        """Read a record written by :meth:`to_json`; ValueError when it is not one."""
        if data.get("record_version") != RECORD_VERSION:
            raise ValueError(f"unknown build record version {data.get('record_version')!r}")
        try:
            return cls(wheel=str(data["wheel"]), baseline=str(data["baseline"]),
                       baseline_reason=str(data["baseline_reason"]), tag=str(data["tag"]),
                       tags=tuple(str(t) for t in data.get("tags", ())),
                       reason=str(data.get("reason", "")))
        except KeyError as exc:
            raise ValueError(f"build record lacks {exc}") from exc


def write_record(record: BuildRecord, env: Optional[Mapping[str, str]] = None) -> None:
    """Write ``record`` to the file :data:`RECORD_ENV` names (atomically); no-op when unset."""
    target = (os.environ if env is None else env).get(RECORD_ENV)
    if not target:
        return
    from .safe_output import output_file

    with output_file(Path(target)) as stream:
        stream.write(json.dumps(record.to_json(), indent=1).encode("utf-8"))


def read_record(path: Path) -> Optional[BuildRecord]:
    """The record at ``path``; None when the build wrote none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return BuildRecord.from_json(data)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
