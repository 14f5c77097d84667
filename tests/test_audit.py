"""The audit on real wheels from PyPI and on ELF files compiled here, against auditwheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

import pytest
from conftest import auditwheel_tag, platform_tags, run

from mlbackend.audit import audit_wheel
from mlbackend.elf import read_elf

DATA = Path(__file__).parent / "data" / "pypi"
PYPI_WHEELS = sorted(DATA.glob("*.whl"))


@pytest.mark.parametrize("wheel", PYPI_WHEELS, ids=lambda p: p.name)
def test_cli_json_tag_matches_auditwheel_show(wheel: Path) -> None:
    proc = run([sys.executable, "-m", "mlbackend", "audit", "--json", wheel])
    ours = json.loads(proc.stdout)
    assert ours["tag"] == auditwheel_tag(wheel)
    assert ours["tag"] == json.loads((DATA / "expected.json").read_text())[wheel.name]


def test_pypi_set_covers_manylinux_musllinux_and_other_arches() -> None:
    tags = {audit_wheel(w).tag for w in PYPI_WHEELS}
    assert any(t.startswith("musllinux_") for t in tags)
    assert any(t.startswith("manylinux_") and t.endswith("_x86_64") for t in tags)
    assert any(t.endswith("_aarch64") for t in tags)


def _compile(tmp: Path, name: str, code: str, *flags: str) -> Path:
    src = tmp / f"{name}.c"
    src.write_text(code)
    out = tmp / f"{name}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src), *flags],
                   check=True)
    return out


THREADS = r"""
#include <pthread.h>
#include <dlfcn.h>
static void *work(void *p) { return p; }
int PyInit_threads(void) {
    pthread_t t; void *r;
    if (pthread_create(&t, 0, work, 0)) return 1;
    pthread_join(t, &r);
    return dlopen(0, RTLD_NOW) == 0;
}
"""


def test_symbol_versions_are_read_from_stripped_binaries(tmp_path: Path) -> None:
    so = _compile(tmp_path, "threads", THREADS)
    subprocess.run(["strip", "--strip-all", str(so)], check=True)
    info = read_elf(so)
    assert info.arch == "x86_64" and info.libc == "glibc"
    bound = {str(s) for s in info.undefined if s.version}
    assert "pthread_create@GLIBC_2.34" in bound
    assert "dlopen@GLIBC_2.34" in bound
    assert "GLIBC_2.34" in info.version_needs["libc.so.6"]
    assert info.is_python_extension("threads.so")


HAND_DECLARED = r"""
extern int not_in_any_library(int);
__attribute__((weak)) extern int maybe_there(void);
int PyInit_hand(void) { return not_in_any_library(1) + (maybe_there ? maybe_there() : 0); }
"""


def test_unversioned_undefined_symbols_are_reported(tmp_path: Path) -> None:
    so = _compile(tmp_path, "hand", HAND_DECLARED, "-Wl,--no-as-needed", "-lc")
    wheel = _wheel_of(so, tmp_path)
    report = audit_wheel(wheel)
    assert any("not_in_any_library" in note for note in report.notes)
    assert not any("maybe_there" in note for note in report.notes)  # weak: optional


WEAK = r"""
#include <stddef.h>
#include <sys/types.h>
#include <unistd.h>
extern ssize_t getrandom(void *, size_t, unsigned) __attribute__((weak));
int PyInit_weak(void) { char b[4]; return (getrandom ? (int)getrandom(b, 4, 0) : -1) + getpid(); }
"""


def test_extension_without_libc_sign_is_audited_for_this_machine(tmp_path: Path) -> None:
    so = _compile(tmp_path, "hand", HAND_DECLARED)
    wheel = _wheel_of(so, tmp_path)
    report = audit_wheel(wheel)
    assert any("no binary says which C library" in note for note in report.notes)
    assert report.policy is not None and not report.policy.is_linux


def test_weak_reference_to_a_newer_version_is_reported_and_counts(tmp_path: Path) -> None:
    so = _compile(tmp_path, "weak", WEAK)
    wheel = _wheel_of(so, tmp_path)
    report = audit_wheel(wheel, target="manylinux_2_17")
    assert report.tag == auditwheel_tag(wheel)  # the weak version need still counts
    assert not report.target_met
    assert any(b.what == "getrandom@GLIBC_2.25 (weak)" for b in report.blockers)
    assert any("weak reference getrandom@GLIBC_2.25" in note for note in report.notes)


def _wheel_of(so: Path, tmp: Path) -> Path:
    """A minimal linux_x86_64 wheel holding ``so`` as ``pkg/<name>``, with a valid RECORD."""
    import zipfile

    tree = tmp / "w"
    (tree / "pkg").mkdir(parents=True)
    shutil.copy(so, tree / "pkg" / so.name)
    dist = tree / "pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                "Tag: cp311-cp311-linux_x86_64\n")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n")
    wheel = tmp / "pkg-1.0-cp311-cp311-linux_x86_64.whl"
    from mlbackend.wheel_reader import record_hash

    rows = []
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                name = path.relative_to(tree).as_posix()
                zf.write(path, name)
                data = path.read_bytes()
                rows.append(f"{name},{record_hash(data)},{len(data)}\n")
        zf.writestr("pkg-1.0.dist-info/RECORD", "".join(rows) + "pkg-1.0.dist-info/RECORD,,\n")
    return wheel


def test_threads_wheel_blockers_name_symbol_and_version(tmp_path: Path) -> None:
    so = _compile(tmp_path, "threads", THREADS)
    wheel = _wheel_of(so, tmp_path)
    report = audit_wheel(wheel, target="manylinux_2_17")
    assert not report.target_met
    assert report.tag == auditwheel_tag(wheel)
    line = "\n".join(report.blocker_lines())
    assert "threads.so: " in line and "pthread_create@GLIBC_2.34" in line
    assert "(target manylinux_2_17 allows GLIBC <= 2.17)" in line
    proc = run([sys.executable, "-m", "mlbackend", "audit", "--target", "2_17", wheel],
               check=False)
    assert proc.returncode == 1
    assert "pthread_create@GLIBC_2.34" in proc.stdout


def test_cli_exit_codes_for_bad_input(tmp_path: Path) -> None:
    missing = run([sys.executable, "-m", "mlbackend", "audit", tmp_path / "x-1.0-py3-none-any.whl"],
                  check=False)
    assert missing.returncode == 2
    assert missing.stderr.startswith("mlbackend: error: cannot access")
    assert "Traceback" not in missing.stderr
    bad = tmp_path / "bad-1.0-py3-none-any.whl"
    bad.write_text("not a zip")
    proc = run([sys.executable, "-m", "mlbackend", "audit", bad], check=False)
    assert proc.returncode == 2 and "cannot read wheel" in proc.stderr
    truncated = tmp_path / "cut.so"
    truncated.write_bytes(b"\x7fELF\x02\x01\x01 not really")
    cut = run([sys.executable, "-m", "mlbackend", "audit", _wheel_of(truncated, tmp_path)],
              check=False)
    assert cut.returncode == 2
    assert "cannot read the ELF file pkg/cut.so" in cut.stderr and "Traceback" not in cut.stderr
    target = run([sys.executable, "-m", "mlbackend", "audit", "--target", "manylinux_9_99",
                  PYPI_WHEELS[0]], check=False)
    assert target.returncode == 2 and "unknown manylinux target" in target.stderr


def test_retag_rewrites_name_wheel_and_record(tmp_path: Path) -> None:
    so = _compile(tmp_path, "threads", THREADS)
    wheel = _wheel_of(so, tmp_path)
    out = tmp_path / "out"
    proc = run([sys.executable, "-m", "mlbackend", "retag", wheel, "-w", out])
    (new,) = out.glob("*.whl")
    assert new.name == "pkg-1.0-cp311-cp311-manylinux_2_34_x86_64.whl"
    assert str(new) in proc.stdout
    import zipfile

    with zipfile.ZipFile(new) as zf:
        wheel_text = zf.read("pkg-1.0.dist-info/WHEEL").decode()
        record = zf.read("pkg-1.0.dist-info/RECORD").decode()
    assert "Tag: cp311-cp311-manylinux_2_34_x86_64" in wheel_text
    assert "linux_x86_64" not in wheel_text.replace("manylinux_2_34_x86_64", "")
    assert "pkg/threads.so,sha256=" in record
    missed = run([sys.executable, "-m", "mlbackend", "retag", wheel, "-w", tmp_path / "o2",
                  "--plat", "manylinux2014"], check=False)
    assert missed.returncode == 1
    assert "pthread_create@GLIBC_2.34" in missed.stderr
    assert not list((tmp_path / "o2").glob("*.whl"))


ISA = r"""
#include <immintrin.h>
#include <unistd.h>
float PyInit_isa(float *a, float *b) {
    __m256 x = _mm256_loadu_ps(a), y = _mm256_loadu_ps(b);
    _mm256_storeu_ps(a, _mm256_fmadd_ps(x, y, x));
    return a[0] + (float)getpid();
}
"""


def test_x86_64_v3_note_drops_to_linux_like_auditwheel(tmp_path: Path) -> None:
    so = _compile(tmp_path, "isa", ISA, "-march=x86-64-v3", "-Wl,-z,x86-64-v3")
    assert read_elf(so).isa_level == "x86_64_v3"
    wheel = _wheel_of(so, tmp_path)
    report = audit_wheel(wheel)
    assert report.tag == auditwheel_tag(wheel) == "linux_x86_64"
    assert any(b.kind == "isa" and "x86_64_v3" in b.what for b in report.blockers)


def test_target_of_the_other_libc_is_missed_with_the_honest_tag() -> None:
    musl = DATA / "MarkupSafe-3.0.2-cp311-cp311-musllinux_1_2_x86_64.whl"
    proc = run([sys.executable, "-m", "mlbackend", "audit", "--target", "2_17", musl],
               check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].endswith(": musllinux_1_2_x86_64")
    assert "links musl (target manylinux_2_17 is for the other libc)" in proc.stdout


USES_DEP = r"""
#include <unistd.h>
extern int dep_value(void);
int PyInit_uses(void) { return dep_value() + (int)getpid(); }
"""


def _dep_wheel(tmp: Path) -> Tuple[Path, Path]:
    """A wheel whose extension needs ``libdep.so.1``, a library outside every policy, and
    the folder holding that library."""
    lib = tmp / "lib"
    lib.mkdir()
    (lib / "dep.c").write_text("int dep_value(void) { return 41; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libdep.so.1", "-o",
                    str(lib / "libdep.so.1"), str(lib / "dep.c")], check=True)
    (lib / "libdep.so").symlink_to("libdep.so.1")
    so = _compile(tmp, "uses", USES_DEP, f"-L{lib}", "-ldep")
    return _wheel_of(so, tmp), lib


def _audit_text(*args: object, env: Optional[Dict[str, str]] = None
                ) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "mlbackend", "audit", *args], env=env, check=False)


def test_audit_text_without_a_target_names_the_next_policy_and_each_fact_once(
        tmp_path: Path) -> None:
    wheel = _wheel_of(_compile(tmp_path, "threads", THREADS), tmp_path)
    report = audit_wheel(wheel)
    assert report.blocked_policy is not None and report.blockers
    proc = _audit_text(wheel)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"  blocking the next policy ({report.blocked_policy.name}):" in text
    assert "target" not in text
    for blocker in report.blockers:
        assert text.count(blocker.what) == 1, text
    assert "repair:" not in text  # nothing to vendor: a repair would not raise the tag


def test_audit_text_with_a_missed_target_names_the_target_once(tmp_path: Path) -> None:
    wheel = _wheel_of(_compile(tmp_path, "threads", THREADS), tmp_path)
    report = audit_wheel(wheel, target="manylinux_2_17")
    proc = _audit_text("--target", "2_17", wheel)
    assert proc.returncode == 1
    text = proc.stdout
    assert text.count("blocking the target manylinux_2_17_x86_64:") == 1
    assert "next policy" not in text
    for blocker in report.blockers:
        assert text.count(blocker.what) == 1, text


def test_audit_text_says_what_a_repair_reaches_as_auditwheel_repair_does(
        tmp_path: Path) -> None:
    wheel, lib = _dep_wheel(tmp_path)
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    proc = _audit_text(wheel, env=env)
    assert proc.returncode == 0, proc.stderr
    # the oracle: the tag `auditwheel repair` gives the wheel
    out = tmp_path / "repaired"
    run([sys.executable, "-m", "auditwheel", "repair", "-w", out, wheel], env=env)
    (repaired,) = out.glob("*.whl")
    platforms = platform_tags(repaired)
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("  repair: ")]
    assert line.startswith("  repair: vendoring libdep.so.1 would reach ")
    assert line.split()[-1] in platforms and line.split()[-1].startswith("manylinux_")
    assert proc.stdout.count("libdep.so.1 (not in the wheel") == 1
    assert "target" not in proc.stdout
    # without the library on the search path the forecast says a repair here would fail
    missing = _audit_text(wheel)
    assert "not found on this system" in missing.stdout


def test_retag_and_repair_advice_fits_the_command(tmp_path: Path) -> None:
    wheel, lib = _dep_wheel(tmp_path)
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    retag = run([sys.executable, "-m", "mlbackend", "retag", wheel, "-w", tmp_path / "o1"],
                env=env)
    assert "`mlbackend repair` does" in retag.stderr
    assert "repair = false" not in retag.stderr
    (tmp_path / "t").mkdir()
    threads = _wheel_of(_compile(tmp_path / "t", "threads", THREADS), tmp_path / "t")
    for command in ("retag", "repair"):
        missed = run([sys.executable, "-m", "mlbackend", command, threads, "-w",
                      tmp_path / "o2", "--plat", "2_17"], env=dict(os.environ, CI="true"),
                     check=False)
        assert missed.returncode == 1
        assert missed.stderr.count("mlbackend: error:") == 1, missed.stderr
        assert missed.stderr.count("pthread_create@GLIBC_2.34") == 1
        assert "-C " not in missed.stderr and "mlbackend: tip: drop --plat" in missed.stderr


USES_MID = r"""
#include <unistd.h>
extern int mid_value(void);
int PyInit_chain(void) { return mid_value() + (int)getpid(); }
"""


def _chain_wheel(tmp: Path, dtags: str) -> Path:
    """``pkg/chain.so`` loads ``pkg.libs/libmid.so.1`` through its RPATH (``dtags``:
    ``--disable-new-dtags`` for DT_RPATH, ``--enable-new-dtags`` for DT_RUNPATH); libmid
    needs its sibling ``libsib.so.1`` and has no RPATH of its own."""
    import zipfile

    from mlbackend.wheel_reader import record_hash

    build = tmp / "build"
    build.mkdir(parents=True)
    (build / "sib.c").write_text("int sib_value(void) { return 40; }\n")
    (build / "mid.c").write_text("extern int sib_value(void);\n"
                                 "int mid_value(void) { return sib_value() + 2; }\n")
    gcc = ["gcc", "-shared", "-fPIC", "-O1"]
    subprocess.run([*gcc, "-Wl,-soname,libsib.so.1", "-o", str(build / "libsib.so.1"),
                    str(build / "sib.c")], check=True)
    subprocess.run([*gcc, "-Wl,-soname,libmid.so.1", "-o", str(build / "libmid.so.1"),
                    str(build / "mid.c"), str(build / "libsib.so.1")], check=True)
    ext = _compile(build, "chain", USES_MID, str(build / "libmid.so.1"),
                   f"-Wl,{dtags},-rpath,$ORIGIN/../pkg.libs")
    members = {"pkg/chain.so": ext, "pkg.libs/libmid.so.1": build / "libmid.so.1",
               "pkg.libs/libsib.so.1": build / "libsib.so.1"}
    files = {name: path.read_bytes() for name, path in members.items()}
    files["pkg-1.0.dist-info/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: test\n"
                                        b"Root-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n")
    files["pkg-1.0.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n"
    wheel = tmp / "pkg-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("pkg-1.0.dist-info/RECORD", "".join(
            f"{n},{record_hash(d)},{len(d)}\n" for n, d in files.items())
            + "pkg-1.0.dist-info/RECORD,,\n")
    return wheel


def test_members_decoded_in_memory_find_each_other_down_the_rpath_chain(
        tmp_path: Path) -> None:
    """The wheel's libraries are found by member path, never unpacked: libmid's sibling is
    found through the extension's DT_RPATH (inherited down the chain), and not through a
    DT_RUNPATH (direct needs only), as ld.so does it."""
    wheel = _chain_wheel(tmp_path / "rpath", "--disable-new-dtags")
    report = audit_wheel(wheel)
    assert report.policies is not None and report.tag.startswith("manylinux_"), report.reason
    assert report.tag == auditwheel_tag(wheel)
    assert report.externals[report.policies.highest.name] == {}
    assert _loads(wheel, tmp_path / "rpath")
    # auditwheel applies the extension's RUNPATH to libmid's needs too and says manylinux;
    # the real loader does not find libsib, and the audit says so
    wheel = _chain_wheel(tmp_path / "runpath", "--enable-new-dtags")
    report = audit_wheel(wheel)
    assert report.policies is not None
    assert set(report.externals[report.policies.highest.name]) == {"libsib.so.1"}
    assert report.tag == "linux_x86_64"
    assert not _loads(wheel, tmp_path / "runpath")


def _loads(wheel: Path, tmp: Path) -> bool:
    """True when the system's ld.so loads the wheel's ``pkg/chain.so``, unpacked."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp / "unpacked")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-c", "import ctypes, sys; ctypes.CDLL(sys.argv[1])",
                           str(tmp / "unpacked/pkg/chain.so")], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 0 or "libsib.so.1" in proc.stderr, proc.stderr
    return proc.returncode == 0


def test_the_newest_allowed_version_ignores_names_that_are_not_numbers() -> None:
    """``CXXABI_FLOAT128`` and ``CXXABI_TM_1`` are in every policy's list; a message saying
    what a policy allows names the newest numbered version, not 128."""
    from mlbackend.policy import load_policies

    policy = load_policies("glibc", "x86_64").find("manylinux_2_26_x86_64")
    assert policy is not None
    assert "FLOAT128" in policy.symbol_versions["CXXABI"]
    assert policy.version("CXXABI") == (1, 3, 10)
    assert policy.version("GLIBC") == (2, 26)
