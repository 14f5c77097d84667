"""Files from PyPI and auditwheel's verdicts on them, kept in one cache folder between runs.

The folder is ``$MLBACKEND_TEST_CACHE`` (default ``~/.cache/mlbackend-tests``): wheels and
sdists under ``pypi/``, auditwheel's results under ``oracle/`` keyed by the file's sha256 and
auditwheel's version (a cache of the oracle's answers, recomputed whenever either changes).
An empty cache is filled from PyPI, so a fresh machine downloads what it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Dict, List

__all__ = ["Download", "cache_dir", "fetch", "fetch_sdist", "oracle"]


def cache_dir() -> Path:
    """The cache folder (created)."""
    base = Path(os.environ.get("MLBACKEND_TEST_CACHE")
                or Path.home() / ".cache" / "mlbackend-tests")
    (base / "pypi").mkdir(parents=True, exist_ok=True)
    return base


@dataclass(frozen=True)
class Download:
    """One binary wheel to fetch: pip's ``--platform``, ``--python-version`` and requirement."""

    platform: str
    python: str
    requirement: str

    @property
    def key(self) -> str:
        """A file-name-safe name for the download."""
        return f"{self.requirement}-{self.platform}-py{self.python}".replace("=", "")


def _pip_download(args: List[str], dest: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--disable-pip-version-check", "--dest", tmp, *args],
            capture_output=True, text=True, timeout=1800, check=False)
        got = list(Path(tmp).iterdir())
        if proc.returncode != 0 or len(got) != 1:
            raise AssertionError(f"pip download {args} failed:\n{proc.stdout}{proc.stderr}")
        target = dest / got[0].name
        got[0].replace(target)
        return target


def fetch(item: Download) -> Path:
    """The wheel ``item`` names, from the cache or downloaded into it."""
    pypi = cache_dir() / "pypi"
    index = pypi / "index.json"
    known: Dict[str, str] = json.loads(index.read_text()) if index.is_file() else {}
    name = known.get(item.key)
    if name and (pypi / name).is_file():
        return pypi / name
    path = _pip_download(["--only-binary", ":all:", "--platform", item.platform,
                          "--python-version", item.python, item.requirement], pypi)
    known = json.loads(index.read_text()) if index.is_file() else {}
    known[item.key] = path.name
    tmp = index.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
    tmp.replace(index)
    return path


def fetch_sdist(requirement: str, filename: str) -> Path:
    """The sdist ``filename`` of ``requirement``, from the cache or downloaded into it."""
    path = cache_dir() / "pypi" / filename
    if path.is_file():
        return path
    return _pip_download(["--no-binary", ":all:", requirement],
                         cache_dir() / "pypi")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def oracle(kind: str, path: Path, compute: Callable[[], Any]) -> Any:
    """auditwheel's answer ``kind`` for the file at ``path``: cached by the file's sha256 and
    auditwheel's version, else ``compute()`` (JSON-ready) and kept."""
    folder = cache_dir() / "oracle" / f"auditwheel-{version('auditwheel')}"
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / f"{kind}-{_sha256(path)}.json"
    if entry.is_file():
        return json.loads(entry.read_text())
    result = compute()
    tmp = entry.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(entry)
    return result
