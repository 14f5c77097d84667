"""Which system package owns a file, read from this Debian machine's dpkg database and checked
against dpkg-query's own answers."""

from __future__ import annotations

import glob
import os
import platform
import shutil
from pathlib import Path
from typing import Dict, List
from urllib.parse import quote

from conftest import run

from mlbackend.owners import OwnerQuery, aliases, owners


def _dpkg_query() -> str:
    exe = shutil.which("dpkg-query")
    assert exe, "the tests run on Debian (.ci/setup installs libyaml-dev with apt)"
    return exe


def _system_library(pattern: str) -> Path:
    """The real file (not a link) of a library every test machine has, for its own
    architecture."""
    triplet = f"{platform.machine()}-linux-gnu"
    for found in sorted(glob.glob(f"/usr/lib/{triplet}/{pattern}")
                        + glob.glob(f"/lib/{triplet}/{pattern}")):
        return Path(os.path.realpath(found))
    raise AssertionError(f"no {pattern} on this machine (.ci/setup installs libyaml-dev)")


def _dpkg_says(path: Path) -> Dict[str, str]:
    """dpkg's own answer: the owner of ``path`` (recorded under /usr/lib or /lib) and that
    package's version and arch."""
    exe = _dpkg_query()
    bare = str(path).replace("/usr/lib/", "/lib/", 1)
    searched = run([exe, "-S", str(path), bare], check=False).stdout
    package = searched.split(": ", 1)[0].split(", ")[0]
    shown = run([exe, "-W", "-f=${Package}\t${Version}\t${Architecture}", package]).stdout
    name, version, arch = shown.split("\t")
    return {"name": name, "version": version, "arch": arch}


def test_owners_match_dpkg_for_libraries_and_leave_unowned_files_out(tmp_path: Path) -> None:
    yaml = _system_library("libyaml-0.so.2.*")
    libc = _system_library("libc.so.6")
    stray = tmp_path / "libstray.so.1"
    stray.write_bytes(b"\x7fELF")
    found = owners([yaml, libc, stray])
    assert set(found) == {yaml, libc}
    for path in (yaml, libc):
        expected = _dpkg_says(path)
        provider = found[path]
        assert (provider.name, provider.version) == (expected["name"], expected["version"])
        version = quote(expected["version"], safe="")  # purl escapes the "+" of "+deb12u1"
        assert provider.purl == (f"pkg:deb/debian/{expected['name']}@{version}"
                                 f"?arch={expected['arch']}")


def test_a_library_named_by_its_link_or_its_unmerged_path_is_found() -> None:
    yaml = _system_library("libyaml-0.so.2.*")
    link = yaml.with_name("libyaml-0.so.2")
    assert link.is_symlink()
    bare = Path(str(yaml).replace("/usr/lib/", "/lib/", 1))
    names = aliases(link)
    assert str(link) in names and str(yaml) in names
    found = owners([link, bare, yaml])  # three files that share names: each is answered
    assert found[link].name == found[bare].name == found[yaml].name \
        == _dpkg_says(yaml)["name"]


def test_the_database_read_agrees_with_dpkg_query_on_the_system_libraries() -> None:
    """Every fifth library of this machine's own architecture: the owners read from dpkg's
    database are the packages ``dpkg-query --search`` names, under either name of a merged
    /usr, and the files it knows no owner of are left out."""
    triplet = f"{platform.machine()}-linux-gnu"
    libraries = sorted({Path(os.path.realpath(p))
                        for p in glob.glob(f"/usr/lib/{triplet}/*.so*")
                        if os.path.isfile(p)})[::5]
    assert len(libraries) > 20
    names = {name: path for path in libraries for name in aliases(path)}
    searched = run([_dpkg_query(), "--search", "--", *names], check=False).stdout
    expected: Dict[Path, str] = {}
    for line in searched.splitlines():
        packages, _, name = line.partition(": ")
        if name in names and not line.startswith("diversion by "):
            expected.setdefault(names[name], packages.split(", ")[0].split(":")[0])
    found = owners(libraries)
    assert {path: p.name for path, p in found.items()} == expected
    assert len(expected) > 20


def test_the_background_query_gives_the_same_answer() -> None:
    paths: List[Path] = [_system_library("libyaml-0.so.2.*"), _system_library("libc.so.6")]
    query = OwnerQuery(paths)
    assert query.result() == owners(paths)
    assert query.result() == owners(paths)  # asked again: the same answer, no new query
