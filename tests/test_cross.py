"""zig cross builds: aarch64 wheels run under QEMU, musllinux wheels on a musl CPython.

The aarch64 Python (Debian's, under qemu-user through binfmt_misc), musl and the musl CPython
(built from Debian's python3.11 source) come from ``.ci/setup-qemu.sh``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import (
    ROOT,
    Builds,
    auditwheel_tag,
    copy_project,
    install,
    make_venv,
    platform_tags,
    run,
    run_example_tests,
)

from mlbackend.policy import load_policies, musl_libc_soname

CROSS_ROOT = Path(os.environ.get("MLBACKEND_CROSS_ROOT", "/usr/local/lib/mlbackend-cross"))
AARCH64_PYTHON = CROSS_ROOT / "aarch64" / "bin" / "python3.11"
MUSL_LOADER = Path("/lib/ld-musl-x86_64.so.1")
MUSL_PYTHON = CROSS_ROOT / "musl-x86_64" / "bin" / "python3.11"
PROJECTS = ("c_ext", "cpp_ext")
SETUP = "run `bash .ci/setup-qemu.sh` (as root), which .ci/setup does"

pytestmark = [pytest.mark.slow, pytest.mark.zig]


def extensions(wheel: Path, dest: Path) -> List[Path]:
    """The wheel's ELF members, extracted under ``dest``."""
    out = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if archive.read(name)[:4] == b"\x7fELF":
                archive.extract(name, dest)
                out.append(dest / name)
    assert out, f"{wheel.name} has no ELF files"
    return out


def elf_facts(path: Path) -> Tuple[str, List[str], bool]:
    """(e_machine, DT_NEEDED, has PT_INTERP) read with pyelftools."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as handle:
        elf = ELFFile(handle)
        needed = [tag.needed for section in elf.iter_sections()
                  if isinstance(section, DynamicSection)
                  for tag in section.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
        interp = any(seg.header.p_type == "PT_INTERP" for seg in elf.iter_segments())
        return str(elf["e_machine"]), needed, interp


@pytest.fixture(scope="session")
def aarch64_wheels(builds: Builds) -> Dict[str, Path]:
    """The C and C++ examples cross-built for aarch64 with zig, glibc 2.17."""
    return {name: builds.wheel(name, "baseline=zig", "arch=aarch64", "manylinux=2_17")
            for name in PROJECTS}


@pytest.fixture(scope="session")
def musl_wheels(builds: Builds) -> Dict[str, Path]:
    """The C and C++ examples built with zig against musl for x86_64."""
    return {name: builds.wheel(name, "baseline=zig", "manylinux=musllinux_1_2")
            for name in PROJECTS}


@pytest.mark.parametrize("project", PROJECTS)
def test_aarch64_wheel_has_the_target_tags_and_auditwheel_agrees(
        aarch64_wheels: Dict[str, Path], project: str, tmp_path: Path) -> None:
    wheel = aarch64_wheels[project]
    tags = platform_tags(wheel)
    # the target's tags, and more compatible ones when the binary allows them, sorted in the
    # file name as auditwheel writes them
    assert {"manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(tags)
    assert tags == sorted(tags)
    assert auditwheel_tag(wheel) in tags
    (so,) = extensions(wheel, tmp_path)
    assert so.name.endswith(".cpython-311-aarch64-linux-gnu.so")
    assert elf_facts(so)[0] == "EM_AARCH64"


@pytest.mark.parametrize("project", PROJECTS)
def test_aarch64_wheel_passes_the_example_tests_under_qemu(
        aarch64_wheels: Dict[str, Path], project: str, tmp_path: Path) -> None:
    assert AARCH64_PYTHON.is_file(), f"no aarch64 Python at {AARCH64_PYTHON}: {SETUP}"
    python = make_venv(tmp_path / "venv", str(AARCH64_PYTHON))
    machine = run([python, "-c", "import platform; print(platform.machine())"]).stdout
    assert machine.strip() == "aarch64"
    install(python, aarch64_wheels[project])
    run_example_tests(python, project, tmp_path)


@pytest.mark.parametrize("project", PROJECTS)
def test_musl_wheel_is_musllinux_1_2_and_auditwheel_agrees(
        musl_wheels: Dict[str, Path], project: str) -> None:
    wheel = musl_wheels[project]
    assert platform_tags(wheel) == ["musllinux_1_2_x86_64"]
    assert auditwheel_tag(wheel) == "musllinux_1_2_x86_64"


@pytest.mark.parametrize("project", PROJECTS)
def test_musl_wheel_needs_only_musl_and_allowed_libraries(
        musl_wheels: Dict[str, Path], project: str, tmp_path: Path) -> None:
    policy = load_policies("musl", "x86_64", "musllinux_1_2").find("musllinux_1_2")
    assert policy is not None
    for so in extensions(musl_wheels[project], tmp_path):
        # a musl CPython loads only these suffixes
        assert re.search(r"\.(cpython-3\d+-x86_64-linux-musl|abi3)\.so$|^[^.]+\.so$", so.name)
        machine, needed, interp = elf_facts(so)
        assert machine == "EM_X86_64"
        assert not interp
        assert musl_libc_soname("x86_64") in needed
        assert set(needed) <= policy.whitelist, needed


@pytest.mark.parametrize("project", PROJECTS)
def test_musl_wheel_passes_the_example_tests_on_a_musl_cpython(
        musl_wheels: Dict[str, Path], project: str, tmp_path: Path) -> None:
    assert MUSL_PYTHON.is_file(), f"no musl CPython at {MUSL_PYTHON}: {SETUP}"
    suffix = run([MUSL_PYTHON, "-c", "import sysconfig; "
                  "print(sysconfig.get_config_var('EXT_SUFFIX'))"]).stdout.strip()
    assert suffix == ".cpython-311-x86_64-linux-musl.so"
    # That CPython has no zlib for pip to run on, so the host's pip installs for its platform.
    site = tmp_path / "site"
    run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--target", site, "--platform", "musllinux_1_2_x86_64", "--python-version", "3.11",
         "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:",
         musl_wheels[project], "pytest"])
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    run([MUSL_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         ROOT / "examples" / project / "tests"], cwd=tmp_path, env=env)


@pytest.mark.parametrize("project", PROJECTS)
def test_musl_loader_resolves_everything_but_the_python_api(
        musl_wheels: Dict[str, Path], project: str, tmp_path: Path) -> None:
    # musl's own dynamic loader, outside any interpreter: the libraries must resolve, and the
    # only symbols left unresolved must be the Python C API the interpreter provides.
    assert MUSL_LOADER.is_file(), f"no musl loader at {MUSL_LOADER}: {SETUP}"
    for so in extensions(musl_wheels[project], tmp_path):
        proc = subprocess.run([str(MUSL_LOADER), "--list", str(so)], capture_output=True,
                              text=True, check=False)
        assert f"{musl_libc_soname('x86_64')} => {MUSL_LOADER}" in proc.stdout, proc.stdout
        assert "not found" not in proc.stdout
        missing = re.findall(r"Error relocating .*?: (\S+): symbol not found", proc.stderr)
        other = [line for line in proc.stderr.splitlines() if "symbol not found" not in line]
        assert not other, proc.stderr
        assert missing, "an extension that uses no Python API cannot be the example"
        assert all(re.match(r"_?Py", name) for name in missing), missing


def test_impossible_combinations_are_one_line(builds: Builds, tmp_path: Path) -> None:
    env = {k: v for k, v in builds.env.items() if k != "PIP_FIND_LINKS"}
    backend = Path(__file__).resolve().parents[1] / "backend"
    cases = {
        ("arch=aarch64", "baseline=host"): "needs baseline zig",
        ("arch=riscv64", "manylinux=2_17", "baseline=zig"): "no riscv64 policy",
        ("arch=armv7l", "manylinux=musllinux_1_1", "baseline=zig"): "musl 1.2",
        ("arch=sparc",): "arch in config-settings",
    }
    code = ("import json, sys, mlbackend\n"
            "mlbackend.build_wheel(sys.argv[1], json.loads(sys.argv[2]))")
    for settings, expected in cases.items():
        config = dict(item.split("=", 1) for item in settings)
        out = tmp_path / "out"
        proc = subprocess.run([sys.executable, "-c", code, str(out), json.dumps(config)],
                              cwd=Path(__file__).resolve().parents[1] / "examples" / "c_ext",
                              env={**env, "PYTHONPATH": str(backend)}, capture_output=True,
                              text=True, check=False)
        assert proc.returncode != 0, settings
        errors = [line for line in proc.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and expected in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert not out.exists() or not list(out.iterdir())


def test_action_builds_x86_64_and_aarch64_wheels_in_one_run(tmp_path: Path) -> None:
    from test_action import Runner, _summary_rows

    action_path = tmp_path / "_actions" / "manylinux-backend"
    shutil.copytree(ROOT, action_path, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", ".*_cache"))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    copy_project("c_ext", workspace)
    (tmp_path / "temp").mkdir()
    runner = Runner(action_path, workspace, tmp_path / "temp")
    result = runner.run({"package-dir": "c_ext", "python-versions": "3.11",
                         "setup-python": "false", "sdist": "false", "manylinux": "2_17",
                         "archs": "x86_64 aarch64", "test-requires": "pytest",
                         "test-command": "pytest -q -p no:cacheprovider {package}/tests"})
    assert result.failed_step is None, result.stdout[-3000:] + result.stderr[-3000:]
    wheels = sorted(Path(p) for p in result.outputs["wheels"].splitlines())
    assert sorted(t for w in wheels for t in platform_tags(w) if t.startswith("manylinux2014_")) \
        == ["manylinux2014_aarch64", "manylinux2014_x86_64"]
    report = json.loads(Path(result.outputs["report"]).read_text())
    outcome = {w["arch"]: (w["baseline"], w["test"]["result"]) for w in report["wheels"]}
    # the host's wheel is tested here; the aarch64 one is tested under QEMU above
    assert outcome == {"x86_64": ("zig", "passed"), "aarch64": ("zig", "skipped")}
    assert len(_summary_rows(result.summary)) == 2


def test_target_facts() -> None:
    from mlbackend.baseline import cross

    assert cross.platform_triplet("aarch64", "glibc") == "aarch64-linux-gnu"
    assert cross.platform_triplet("armv7l", "musl") == "arm-linux-musleabihf"
    assert cross.platform_triplet("i686", "glibc") == "i386-linux-gnu"
    # the host's own suffix comes out the same way sysconfig says it
    import sysconfig

    assert cross.ext_suffix("x86_64", "glibc") == sysconfig.get_config_var("EXT_SUFFIX")
    assert cross.cross_target("x86_64", "glibc", "x86_64") is None
    target = cross.cross_target("aarch64", "glibc", "x86_64")
    assert target is not None and target.plat_name == "linux_aarch64"
    assert target.ext_suffix.endswith("-aarch64-linux-gnu.so")


def test_include_folders_are_mapped_in_both_spellings() -> None:
    from mlbackend.baseline._zig_wrapper import map_includes

    mapping = {"/py/include/python3.11": "/shim/python3.11"}
    assert map_includes(["-I/py/include/python3.11/", "-I", "/py/include/python3.11", "-Ia",
                         "-c", "x.c"], mapping) == [
        "-I/shim/python3.11", "-I", "/shim/python3.11", "-Ia", "-c", "x.c"]
