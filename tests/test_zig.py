"""The zig baseline: argument rewriting, targets, and real zig builds of the C and C++ examples."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict, Tuple

import pytest
from conftest import (
    Builds,
    auditwheel_tag,
    build,
    copy_project,
    install,
    make_venv,
    platform_tags,
    run_example_tests,
)

from mlbackend.baseline import zig
from mlbackend.baseline._zig_wrapper import rewrite_args
from mlbackend.errors import BaselineError

GLIBC = (2, 17)


def max_glibc(path: Path) -> Tuple[int, int]:
    """The newest GLIBC_x.y symbol version an ELF file needs."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    found = [(0, 0)]
    with path.open("rb") as handle:
        for section in ELFFile(handle).iter_sections():
            if not isinstance(section, GNUVerNeedSection):
                continue
            for _, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    name = aux.name
                    if name.startswith("GLIBC_") and name[6:].replace(".", "").isdigit():
                        major, minor = name[6:].split(".")[:2]
                        found.append((int(major), int(minor)))
    return max(found)


def version_names(path: Path) -> set[str]:
    """Every symbol version an ELF file needs (GLIBC_*, GLIBCXX_*, CXXABI_*...)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    names = set()
    with path.open("rb") as handle:
        for section in ELFFile(handle).iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for _, auxiliaries in section.iter_versions():
                    names.update(aux.name for aux in auxiliaries)
    return names


def extension(wheel: Path, dest: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".so")]
        archive.extract(name, dest)
    return dest / name


@pytest.fixture(scope="session")
def zig_wheels(builds: Builds) -> dict[str, Path]:
    """The C and C++ examples built once each through the backend: zig, glibc 2.17."""
    return {name: builds.wheel(name, "baseline=zig", "manylinux=2_17")
            for name in ("c_ext", "cpp_ext")}


@pytest.mark.slow
@pytest.mark.zig
@pytest.mark.parametrize("project", ["c_ext", "cpp_ext"])
def test_zig_build_is_tagged_manylinux2014_and_auditwheel_agrees(
        zig_wheels: dict[str, Path], project: str) -> None:
    wheel = zig_wheels[project]
    platforms = platform_tags(wheel)
    # the target's tags, and more compatible ones when the binary allows them, sorted in the
    # file name as auditwheel writes them
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(platforms)
    assert platforms == sorted(platforms)
    assert auditwheel_tag(wheel) in platforms


@pytest.mark.slow
@pytest.mark.zig
@pytest.mark.parametrize("project", ["c_ext", "cpp_ext"])
def test_zig_build_needs_at_most_glibc_2_17(zig_wheels: dict[str, Path], project: str,
                                             tmp_path: Path) -> None:
    so = extension(zig_wheels[project], tmp_path)
    assert max_glibc(so) <= GLIBC
    # zig links libc++ statically: no libstdc++ symbol versions leak into the wheel.
    assert not {n for n in version_names(so) if n.startswith(("GLIBCXX", "CXXABI"))}


@pytest.mark.slow
@pytest.mark.zig
@pytest.mark.parametrize("project", ["c_ext", "cpp_ext"])
def test_zig_build_imports_in_fresh_venv(zig_wheels: dict[str, Path], project: str,
                                         tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    install(python, zig_wheels[project])
    # The examples' own tests cover import, C++ exceptions into ValueError, and std::thread.
    run_example_tests(python, project, tmp_path)


def test_rewrite_drops_flags_zig_rejects() -> None:
    args, notes = rewrite_args(
        ["-Wl,-O1,-Bsymbolic-functions,-z,relro", "-flto=auto", "-specs=/x.specs",
         "-Wp,-D_FORTIFY_SOURCE=2", "-mtune=generic", "-march=native", "-c", "a.c"], "cc")
    assert args == ["-O2", "-Wl,-z,relro", "-D_FORTIFY_SOURCE=2", "-c", "a.c"]
    assert len(notes) == 7


def test_rewrite_keeps_optimization_and_adds_shared() -> None:
    args, notes = rewrite_args(["-O3", "a.o", "-o", "m.cpython-311-x86_64-linux-gnu.so"],
                                   "c++")
    assert args == ["-shared", "-O3", "a.o", "-o", "m.cpython-311-x86_64-linux-gnu.so"]
    assert not notes
    args, _ = rewrite_args(["a.o", "-o", "m"], "ldshared")
    assert args[:2] == ["-shared", "-O2"]
    args, _ = rewrite_args(["-Wl,--exclude-libs,ALL", "-c", "a.c"], "cc")
    assert args == ["-O2", "-c", "a.c"]


def test_targets() -> None:
    assert zig.zig_target("x86_64", (2, 17)) == "x86_64-linux-gnu.2.17"
    assert zig.zig_target("aarch64", (2, 28)) == "aarch64-linux-gnu.2.28"
    assert zig.zig_target("armv7l", (2, 31)) == "arm-linux-gnueabihf.2.31"
    assert zig.zig_target("x86_64", None) == "x86_64-linux-musl"
    with pytest.raises(BaselineError, match="architecture"):
        zig.zig_target("sparc", (2, 17))
    with pytest.raises(BaselineError, match=r"glibc 2\.12 on aarch64"):
        zig.zig_target("aarch64", (2, 12))


@pytest.mark.zig
def test_unknown_glibc_is_one_line(tmp_path: Path) -> None:
    assert zig.zig_available(), "ziglang comes with the test extras: pip install -e '.[test]'"
    with pytest.raises(BaselineError) as info:
        zig.toolchain_env("x86_64", (2, 99), tmp_path, {"XDG_CACHE_HOME": str(tmp_path)})
    assert "\n" not in info.value.message
    assert info.value.tip


def test_missing_ziglang_is_one_line(tmp_path: Path) -> None:
    # A real interpreter without ziglang: a venv without site packages.
    python = make_venv(tmp_path / "venv")
    backend = Path(zig.__file__).resolve().parents[2]
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]);"
            "from mlbackend.baseline import zig; from mlbackend.errors import BaselineError\n"
            "env = {'XDG_CACHE_HOME': sys.argv[2]}\n"  # no zig cached by earlier builds
            "print(zig.requirements(env))\n"
            "try: zig.toolchain_env('x86_64', (2, 17), sys.argv[2], env)\n"
            "except BaselineError as e: print(e.message, '|', e.tip)")
    out = subprocess.run([str(python), "-c", code, str(backend), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"[{zig.REQUIREMENT!r}]")
    assert "ziglang" in out
    assert "pip install" in out


@pytest.mark.slow
@pytest.mark.zig
def test_a_zig_build_names_the_flags_it_dropped(build_env: Dict[str, str], tmp_path: Path) -> None:
    src = copy_project("c_ext", tmp_path)
    env = dict(build_env, CFLAGS="-march=native")
    proc = build(src, tmp_path / "dist", env, "baseline=zig", "manylinux=2_17")
    notes = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.startswith("mlbackend: note: zig: ")]
    assert any("dropped -march=native" in line for line in notes), proc.stdout + proc.stderr
