"""The build matrix for CI fan-out: one entry per (runner, Python), for ``strategy.matrix``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..pyproject import read_table

if TYPE_CHECKING:
    from pathlib import Path


__all__ = ["SUPPORTED_PYTHONS", "parse_archs", "plan_matrix", "planned_pythons",
           "requires_python"]

SUPPORTED_PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
"""CPython versions planned when none are named (``pipeline plan`` and the Action), those
the project's ``requires-python`` allows: the one list of them."""


def requires_python(package_dir: Path) -> str:
    """The ``requires-python`` of the project in ``package_dir`` ("" when absent)."""
    value = read_table(package_dir, "project").get("requires-python", "")
    return value if isinstance(value, str) else ""


def _allowed(versions: Sequence[str], spec: str) -> Tuple[str, ...]:
    if not spec:
        return tuple(versions)
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        specifier = SpecifierSet(spec)
    except InvalidSpecifier as exc:
        raise ConfigError(f"requires-python {spec!r} is not a valid specifier") from exc
    return tuple(v for v in versions if specifier.contains(f"{v}.0", prereleases=True))


def parse_archs(text: str) -> Tuple[str, ...]:
    """``"x86_64, aarch64"`` -> ``("x86_64", "aarch64")``, each checked as the ``arch``
    setting is (aliases such as ``arm64`` allowed)."""
    from ..settings import normalize_arch

    out: List[str] = []
    for word in text.replace(",", " ").split():
        arch = normalize_arch(word, "--archs")
        if arch and arch not in out:
            out.append(arch)
    return tuple(out)


def planned_pythons(python_versions: Sequence[str],
                    package_dir: Optional[Path] = None) -> Tuple[str, ...]:
    """``python_versions`` when any are named, else every CPython of
    :data:`SUPPORTED_PYTHONS` that the project's ``requires-python`` allows."""
    if python_versions:
        return tuple(python_versions)
    spec = requires_python(package_dir) if package_dir is not None else ""
    versions = _allowed(SUPPORTED_PYTHONS, spec)
    if not versions:
        raise ConfigError(f"requires-python {spec!r} allows none of "
                          f"{', '.join(SUPPORTED_PYTHONS)}")
    return versions


def plan_matrix(python_versions: Sequence[str], runners: Sequence[str],
                package_dir: Optional[Path] = None, manylinux: str = "",
                archs: Sequence[str] = ()) -> Dict[str, Any]:
    """``{"include": [...]}``: one job per runner, Python (and arch, when ``archs`` are
    given: each built with zig); the first also keeps the sdist. The Pythons are
    :func:`planned_pythons`."""
    versions = planned_pythons(python_versions, package_dir)
    include: List[Dict[str, Any]] = []
    for runner in runners:
        for version in versions:
            for arch in archs or ("",):
                entry: Dict[str, Any] = {
                    "os": runner, "python": version, "sdist": not include,
                    "artifact": f"wheels-{runner}-py{version}" + (f"-{arch}" if arch else ""),
                }
                if arch:
                    entry["arch"] = arch
                if manylinux:
                    entry["manylinux"] = manylinux
                include.append(entry)
    return {"include": include}
