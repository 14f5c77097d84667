"""Which system package owns a file: the question the SBOM asks about every library a
repair copies into a wheel.

The host's package database answers. On Debian and Ubuntu it is read directly, as SBOM
scanners (syft, trivy) do: each package's file list ``/var/lib/dpkg/info/<package>.list`` and
its version in ``/var/lib/dpkg/status``. ``dpkg-query --search`` reads the same files but
builds a tree of every path on the system first (~70 ms here); reading the list of the
package Debian Policy names for the library first takes a few milliseconds, and all of them
~25 ms when that misses. ``rpm -qf``
answers on the manylinux images, Fedora and SUSE; ``apk info --who-owns`` on Alpine. Each file
is looked up under its names across a merged ``/usr``, and the question is asked in a
background thread as soon as the repair knows what it will copy, so the answer is ready by
the time the SBOM is written.
"""

from __future__ import annotations

import os
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


DPKG_DATABASE = Path("/var/lib/dpkg")
"""dpkg's database: ``status`` and ``info/<package>[:<arch>].list``."""


_SONAME = re.compile(r"^(lib.+?)\.so\.(\d+)")


def _policy_name(file_name: str) -> Optional[str]:
    """The package Debian Policy 8.1 names for the library ``file_name``: its soname's name
    and major version (``libyaml-0.so.2`` is in ``libyaml-0-2``, ``libc.so.6`` in
    ``libc6``)."""
    match = _SONAME.match(file_name)
    if match is None:
        return None
    stem, major = match.groups()
    return (stem + ("-" if stem[-1].isdigit() else "") + major).lower().replace("_", "-")


def _dpkg_owners(paths: Sequence[Path], database: Path) -> Dict[Path, str]:
    """The package (``name`` or ``name:arch``) whose file list holds each file under one of
    its names. The lists of the packages Debian Policy names for the files are read first:
    most searches end there instead of reading every list."""
    needles: Dict[bytes, List[Path]] = {}
    likely = set()
    for path in paths:
        for name in aliases(path):
            needles.setdefault(b"\n" + os.fsencode(name) + b"\n", []).append(path)
            likely.add(_policy_name(Path(name).name))
    owner: Dict[Path, str] = {}
    count = len(set(paths))
    with os.scandir(database / "info") as entries:
        lists = sorted((e.name for e in entries if e.name.endswith(".list")),
                       key=lambda n: (n[:-len(".list")].split(":")[0] not in likely, n))
    for name in lists:
        try:
            listed = b"\n" + (database / "info" / name).read_bytes()
        except OSError:
            continue
        for needle, holders in needles.items():
            if needle in listed:
                for path in holders:
                    owner.setdefault(path, name[:-len(".list")])
        if len(owner) == count:
            break
    return owner


_STANZA_FIELD = re.compile(rb"^(Architecture|Version|Status): ([^\n]*)$", re.M)


def _dpkg_version(status: bytes, package: str) -> Optional[Tuple[str, str, str]]:
    """(name, version, arch) of the installed ``package`` (``name`` or ``name:arch``),
    from its stanza in dpkg's status file."""
    name, _, want_arch = package.partition(":")
    pattern = re.compile(rb"^Package: " + re.escape(name.encode()) + rb"$", re.M)
    for match in pattern.finditer(status):
        end = status.find(b"\n\n", match.end())
        fields = {k.decode(): v.decode("utf-8", "replace")
                  for k, v in _STANZA_FIELD.findall(status, match.end(),
                                                    end if end >= 0 else len(status))}
        arch, version = fields.get("Architecture", ""), fields.get("Version", "")
        if version and fields.get("Status", "").endswith(" installed") \
                and want_arch in ("", arch):
            return name, version, arch
    return None


def _dpkg(distro: str, paths: Sequence[Path],
          database: Path = DPKG_DATABASE) -> Dict[Path, Provider]:
    owner = _dpkg_owners(paths, database)
    if not owner:
        return {}
    status = (database / "status").read_bytes()
    found = {}
    for path, package in owner.items():
        facts = _dpkg_version(status, package)
        if facts is not None:
            name, version, arch = facts
            found[path] = Provider(_purl("deb", distro, name, version, arch), name, version)
    return found


def _rpm(exe: str, distro: str, name: str) -> Optional[Provider]:
    asked = try_run([exe, "-qf", "--queryformat", "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n",
                     "--", name])
    fields = asked.out.splitlines()[0].split("\t") if asked and asked.code == 0 \
        and asked.out.strip() else []
    return Provider(_purl("rpm", distro, *fields), fields[0], fields[1]) \
        if len(fields) == 3 else None


def _apk(exe: str, distro: str, name: str) -> Optional[Provider]:
    asked = try_run([exe, "info", "--who-owns", name])
    match = _APK_OWNER.search(asked.out) if asked and asked.code == 0 else None
    if match is None:
        return None
    package, version = match.groups()
    return Provider(_purl("apk", distro, package, version, ""), package, version)


def owners(paths: Sequence[Path], dpkg_database: Path = DPKG_DATABASE,
           ) -> Dict[Path, Provider]:
    """The system package of each of ``paths`` that the host's package databases know;
    the others are left out."""
    distro = _distro()
    if distro is None or not paths:
        return {}
    found: Dict[Path, Provider] = {}
    if (dpkg_database / "status").is_file():
        found.update(_dpkg(distro, paths, dpkg_database))
    for command, ask in (("rpm", _rpm), ("apk", _apk)):  # one question per file and name
        exe = shutil.which(command)
        if exe is None:
            continue
        for path in [p for p in paths if p not in found]:
            hit = next(filter(None, (ask(exe, distro, name) for name in aliases(path))), None)
            if hit is not None:
                found[path] = hit
    return found


class OwnerQuery:
    """:func:`owners` asked in a background thread (its time is spent reading files and
    waiting on programs, with the GIL released); :meth:`result` waits for the answer."""

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
