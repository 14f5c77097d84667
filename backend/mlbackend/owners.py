"""Which system package owns a file: the question the SBOM asks about every library a
repair copies into a wheel.

The host's package manager answers: ``dpkg-query --search`` (Debian, Ubuntu), ``rpm -qf``
(the manylinux images, Fedora, SUSE), ``apk info --who-owns`` (Alpine, musllinux). dpkg
loads its whole file database for every search (~70 ms), so all files and their names across
a merged ``/usr`` go to one search, and the question is asked in a background thread as soon
as the repair knows what it will copy: the answer is ready by the time the SBOM is written.
"""

from __future__ import annotations

import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

from ._proc import try_run

__all__ = ["OwnerQuery", "Provider", "aliases", "owners"]


@dataclass(frozen=True)
class Provider:
    """The system package a file belongs to."""

    purl: str
    name: str
    version: str


_OS_RELEASE = re.compile(r'^([A-Z_]+)=(?:"([^"]*)"|\'([^\']*)\'|(.*))$', re.M)
_APK_OWNER = re.compile(r" is owned by (\S+)-([^-\s]+-r\d+)\s*$", re.M)


def _distro(os_release: Path = Path("/etc/os-release")) -> Optional[str]:
    """The host's distribution ID (``debian``, ``almalinux``, ``alpine``), the purl's
    namespace."""
    try:
        text = os_release.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for key, *values in _OS_RELEASE.findall(text):
        if key == "ID":
            return next((v for v in values if v), None)
    return None


def aliases(path: Path) -> List[str]:
    """``path`` and its names across a merged /usr (a package database records either)."""
    text = str(path.resolve())
    out = [str(path), text]
    for usr, bare in (("/usr/lib", "/lib"), ("/usr/lib64", "/lib64"), ("/usr/bin", "/bin")):
        if text.startswith(usr + "/"):
            out.append(bare + text[len(usr):])
        elif text.startswith(bare + "/"):
            out.append(usr + text[len(bare):])
    return list(dict.fromkeys(out))


def _purl(kind: str, distro: str, name: str, version: str, arch: str) -> str:
    purl = f"pkg:{kind}/{quote(distro, safe='')}/{quote(name, safe='')}@{quote(version, safe='')}"
    return purl + (f"?arch={quote(arch, safe='')}" if arch else "")


def _dpkg(exe: str, distro: str, wanted: Dict[str, Path]) -> Dict[Path, Provider]:
    """One search for every name, then one status query for every owner found."""
    searched = try_run([exe, "--search", "--", *wanted])
    if searched is None:
        return {}
    owner: Dict[Path, str] = {}
    for line in searched.out.splitlines():
        if line.startswith("diversion by "):
            continue
        packages, sep, name = line.partition(": ")
        path = wanted.get(name)
        if sep and path is not None and path not in owner:
            owner[path] = packages.split(", ")[0].strip()
    if not owner:
        return {}
    shown = try_run([exe, "--show", "--showformat=${binary:Package}\t${Package}\t${Version}"
                     "\t${Architecture}\n", "--", *sorted(set(owner.values()))])
    if shown is None:
        return {}
    facts: Dict[str, Tuple[str, str, str]] = {}
    for line in shown.out.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[2]:
            facts[fields[0]] = (fields[1], fields[2], fields[3])
            facts.setdefault(fields[1], (fields[1], fields[2], fields[3]))
    found = {}
    for path, package in owner.items():
        if package in facts:
            name, version, arch = facts[package]
            found[path] = Provider(_purl("deb", distro, name, version, arch), name, version)
    return found


def _rpm(exe: str, distro: str, wanted: Dict[str, Path]) -> Dict[Path, Provider]:
    found: Dict[Path, Provider] = {}
    for name, path in wanted.items():
        if path in found:
            continue
        asked = try_run([exe, "-qf", "--queryformat",
                         "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n", "--", name])
        fields = asked.out.splitlines()[0].split("\t") if asked and asked.code == 0 \
            and asked.out.strip() else []
        if len(fields) == 3:
            found[path] = Provider(_purl("rpm", distro, *fields), fields[0], fields[1])
    return found


def _apk(exe: str, distro: str, wanted: Dict[str, Path]) -> Dict[Path, Provider]:
    found: Dict[Path, Provider] = {}
    for name, path in wanted.items():
        if path in found:
            continue
        asked = try_run([exe, "info", "--who-owns", name])
        match = _APK_OWNER.search(asked.out) if asked and asked.code == 0 else None
        if match:
            package, version = match.groups()
            found[path] = Provider(_purl("apk", distro, package, version, ""), package,
                                   version)
    return found


_MANAGERS = (("dpkg-query", _dpkg), ("rpm", _rpm), ("apk", _apk))


def owners(paths: Sequence[Path]) -> Dict[Path, Provider]:
    """The system package of each of ``paths`` that the host's package managers know; the
    others are left out."""
    distro = _distro()
    if distro is None or not paths:
        return {}
    found: Dict[Path, Provider] = {}
    for command, ask in _MANAGERS:
        exe = shutil.which(command)
        left = [p for p in paths if p not in found]
        if exe is None or not left:
            continue
        wanted = {name: path for path in left for name in aliases(path)}
        found.update(ask(exe, distro, wanted))
    return found


class OwnerQuery:
    """:func:`owners` asked in a background thread (the package managers' time is spent
    waiting on them, not in Python); :meth:`result` waits for the answer."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = tuple(paths)
        self._found: Dict[Path, Provider] = {}
        self._error: Optional[Exception] = None
        self._thread = threading.Thread(target=self._ask, name="mlbackend-owners",
                                        daemon=True)
        self._thread.start()

    def _ask(self) -> None:
        try:
            self._found = owners(self._paths)
        except OSError:  # a database that cannot be read: the SBOM lists hashes only
            self._found = {}
        except Exception as exc:  # raised where the answer is taken
            self._error = exc

    def result(self) -> Dict[Path, Provider]:
        """The packages that own the files the query was started with."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return dict(self._found)
