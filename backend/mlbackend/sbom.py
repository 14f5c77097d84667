"""PEP 770 SBOM of a repaired wheel: a CycloneDX document at
``<name>.dist-info/sboms/mlbackend.cdx.json`` listing every vendored library with the hash
of its member and, where the host's package manager knows the file it was copied from
(:mod:`mlbackend.owners`), the system package and version it came from."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from packaging.utils import parse_wheel_filename

from . import __version__
from .owners import Provider

__all__ = ["SBOM_NAME", "VendoredFile", "make_sbom", "sbom_lines"]

SBOM_NAME = "sboms/mlbackend.cdx.json"
"""The SBOM's path inside the ``.dist-info`` folder."""


@dataclass(frozen=True)
class VendoredFile:
    """A library copied into the wheel, as the SBOM describes it."""

    member: str
    soname: str
    """The soname it had on the build machine."""
    source: Path
    """The file it was copied from."""
    data: bytes
    """Its bytes in the wheel (after patching)."""


def _timestamp(epoch: Optional[str]) -> Optional[str]:
    if not epoch or not epoch.isdigit():
        return None
    moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_sbom(wheel_name: str, files: Sequence[VendoredFile],
              found: Mapping[Path, Provider], env: Mapping[str, str]) -> bytes:
    """The CycloneDX 1.6 JSON for ``files`` vendored into the wheel ``wheel_name``.

    The same inputs give the same bytes: no random serial number, and a timestamp only
    from ``SOURCE_DATE_EPOCH``.
    """
    name, version, _, _ = parse_wheel_filename(wheel_name)
    wheel_ref = f"pkg:pypi/{quote(name, safe='')}@{quote(str(version), safe='')}"
    components: List[Dict[str, object]] = []
    depends: List[str] = []
    for file in sorted(files, key=lambda f: f.member):
        ref = f"file:{file.member}"
        component: Dict[str, object] = {
            "type": "library", "bom-ref": ref, "name": file.soname,
            "hashes": [{"alg": "SHA-256", "content": hashlib.sha256(file.data).hexdigest()}],
            "properties": [{"name": "mlbackend:member", "value": file.member},
                           {"name": "mlbackend:source", "value": str(file.source)}],
        }
        provider = found.get(file.source)
        if provider is not None:
            component["version"] = provider.version
            component["purl"] = provider.purl
            component["properties"] = [*component["properties"],  # type: ignore[misc]
                                        {"name": "mlbackend:package", "value": provider.name}]
        components.append(component)
        depends.append(ref)
    metadata: Dict[str, object] = {
        "component": {"type": "library", "bom-ref": wheel_ref, "name": str(name),
                      "version": str(version), "purl": wheel_ref},
        "tools": {"components": [{"type": "application", "name": "mlbackend",
                                  "version": __version__}]},
    }
    stamp = _timestamp(env.get("SOURCE_DATE_EPOCH"))
    if stamp:
        metadata["timestamp"] = stamp
    document: Dict[str, object] = {
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "metadata": metadata, "components": components,
        "dependencies": [{"ref": wheel_ref, "dependsOn": depends},
                         *({"ref": ref} for ref in depends)],
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def sbom_lines(files: Sequence[VendoredFile],
               found: Mapping[Path, Provider]) -> Tuple[str, ...]:
    """One line per vendored library, for the build log."""
    return tuple(f"sbom: {f.member}: {f.soname}"
                 + (f" from {found[f.source].name} {found[f.source].version}"
                    if f.source in found else " (no system package owns it)")
                 for f in sorted(files, key=lambda f: f.member))
