"""The baseline a build picks, and the reason its log gives: the true one, leftovers named."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import pytest
from conftest import build, copy_project, platform_tags, run

from mlbackend.baseline import INSIDE_CONTAINER, choose, zig
from mlbackend.settings import Settings

# A local image that never exists: the container is ruled out without asking a registry.
NO_IMAGE = "localhost/mlbackend-test-no-such-image"


def _baseline_lines(project: Path, out: Path, env: Dict[str, str]) -> list[str]:
    """Build ``project`` (isolated: the build environment has no ziglang) and return its
    ``mlbackend: baseline:`` log lines."""
    proc = build(project, out, env, "manylinux=2_17", f"image={NO_IMAGE}")
    assert list(out.glob("*.whl"))
    return [line for line in proc.stdout.splitlines() + proc.stderr.splitlines()
            if line.startswith("mlbackend: baseline:")]


@pytest.fixture()
def cache_env(build_env: Dict[str, str], tmp_path: Path) -> Dict[str, str]:
    """The build environment with an empty user cache (pip keeps its own cache)."""
    env = dict(build_env)
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


@pytest.mark.slow
def test_without_ziglang_or_a_cached_zig_the_log_says_so(cache_env, tmp_path: Path) -> None:
    project = copy_project("pure", tmp_path)
    (line,) = _baseline_lines(project, tmp_path / "dist", cache_env)
    assert line.startswith("mlbackend: baseline: host (")
    cache = Path(cache_env["XDG_CACHE_HOME"]) / "mlbackend"
    assert f"ziglang is not installed and no zig is cached in {cache}" in line
    assert NO_IMAGE in line  # why the container is out, too


@pytest.mark.slow
@pytest.mark.zig
def test_a_zig_cached_by_an_earlier_build_is_named_as_such(cache_env, tmp_path: Path) -> None:
    # What an earlier zig build leaves behind: the stable copy find_toolchain keeps.
    assert zig.locate_zig() is not None, "ziglang comes with the test extras"
    kept = zig.find_toolchain("x86_64", (2, 17), {"XDG_CACHE_HOME": cache_env["XDG_CACHE_HOME"]})
    home = kept.zig.parent
    project = copy_project("pure", tmp_path)
    (line,) = _baseline_lines(project, tmp_path / "dist", cache_env)
    assert line.startswith("mlbackend: baseline: zig (")
    assert f"zig {kept.version} cached in {home} by an earlier build" in line
    assert "(ziglang is not installed)" in line
    assert "ziglang is installed" not in line


def test_installed_ziglang_is_named_as_such() -> None:
    found = zig.locate_zig()
    assert found is not None and found.origin == "ziglang", "ziglang comes with the test extras"
    choice = choose(Settings(baseline="zig"), env=dict(os.environ))
    assert choice.kind == "zig"
    assert choice.log_line() == f"baseline: zig (baseline = zig; ziglang {found.version} " \
                                "is installed)"


def test_the_build_inside_a_container_is_not_a_second_choice() -> None:
    env = {INSIDE_CONTAINER: "localhost/baseline-bookworm", "AUDITWHEEL_PLAT": "manylinux_2_36"}
    choice = choose(Settings(baseline="host"), env=env)
    assert choice.kind == "host" and choice.inside
    assert not choice.log_line().startswith("baseline:")
    assert choice.log_line().startswith("inside the container image localhost/baseline-bookworm")


CPP = r"""
#include <string>
extern "C" int PyInit_cpp(void) { return (int)std::to_string(42).size(); }
"""


@pytest.mark.slow
@pytest.mark.zig
def test_zig_first_cxx_runtime_build_has_a_line_before_and_after(tmp_path: Path) -> None:
    # zig's own cache is the user's (warm when other zig builds ran here, cold on a fresh
    # machine); only mlbackend's marker is removed, so the first link counts as the first.
    env = zig.toolchain_env("x86_64", (2, 17), tmp_path / "work", dict(os.environ))
    target = zig.zig_target("x86_64", (2, 17))
    marker = Path(env["ZIG_GLOBAL_CACHE_DIR"]) / f"mlbackend-libcxx-{target}.done"
    marker.unlink(missing_ok=True)
    (tmp_path / "cpp.cpp").write_text(CPP)
    link = [env["CXX"], "-shared", "-fPIC", "-o", tmp_path / "cpp.so", tmp_path / "cpp.cpp"]
    first = run(link, timeout=1800)
    before, after = [line for line in first.stderr.splitlines()
                     if line.startswith("mlbackend: zig: ")]
    assert before.startswith(f"mlbackend: zig: building its C++ runtime (libc++) for {target}")
    assert after.startswith(f"mlbackend: zig: C++ runtime for {target} ready after ")
    assert (tmp_path / "cpp.so").is_file() and marker.exists()
    again = run(link)
    assert "mlbackend: zig:" not in again.stderr


@pytest.mark.slow
def test_build_wheel_writes_its_record_where_the_caller_asks(build_env, tmp_path: Path) -> None:
    from conftest import auditwheel_tag

    from mlbackend.record import RECORD_ENV, read_record

    project = copy_project("c_ext", tmp_path)
    record_path = tmp_path / "record.json"
    build(project, tmp_path / "dist", dict(build_env, **{RECORD_ENV: str(record_path)}))
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    record = read_record(record_path)
    assert record is not None
    assert record.wheel == wheel.name
    assert record.baseline == "host" and "no manylinux target" in record.baseline_reason
    assert record.tag == auditwheel_tag(wheel)
    assert set(record.tags) == set(platform_tags(wheel))
    assert record.reason.startswith(record.tag)
