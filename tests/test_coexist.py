"""Coexistence hazards, abi3, run-time loads, the loader proof and the SBOM, on extensions
compiled here with gcc/g++ and packed into wheels, and on the examples."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional

import pytest
from conftest import run

from mlbackend.elf import DlopenNote, read_elf
from mlbackend.hazards import MANY_EXPORTS

if TYPE_CHECKING:
    from conftest import Builds

pytestmark = pytest.mark.slow

PY_INCLUDE = sysconfig.get_paths()["include"]
PY_TAG = f"cp{sys.version_info[0]}{sys.version_info[1]}"
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")

INIT = r"""
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ext", 0, -1, 0};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&mod); }
"""
CXX_RUNTIME = r"""
#include <Python.h>
#include <sstream>
#include <stdexcept>
#include <string>
extern "C" int mlb_len(const char *s) {
    std::ostringstream out; out << s;
    std::string text = out.str();
    if (text.empty()) throw std::runtime_error("empty");
    return static_cast<int>(text.size());
}
extern "C" {
""" + INIT + "}\n"
UNIQUE = r"""
#include <Python.h>
inline int &mlb_counter() { static int count = 0; return count; }
int mlb_bump() { return ++mlb_counter(); }
extern "C" {
""" + INIT + "}\n"
CLEAN_C = "#include <Python.h>\nstatic int twice(int x) { return 2 * x; }\n" + INIT
MANY_C = "#include <Python.h>\n" + "".join(
    f"int mlbz_part{i}(int x) {{ return x + {i}; }}\n" for i in range(MANY_EXPORTS + 15)) + INIT
DLOPEN_NOTE = (r"""
#include <Python.h>
#define NOTE "[{\"soname\":[\"libz.so.1\"],\"feature\":\"zip\",\"priority\":\"recommended\"},"\
    "{\"soname\":[\"libmlbnowhere.so.3\",\"libmlbnowhere.so.2\"],\"priority\":\"suggested\"}]"
struct note { unsigned namesz, descsz, type; char name[4]; char desc[(sizeof(NOTE) + 3) & ~3]; };
__attribute__((used, section(".note.dlopen"), aligned(4)))
static const struct note dlopen_note = {4, sizeof(NOTE), 0x407c0c0a, "FDO", NOTE};
""" + INIT)
LOADER_PY = """
import ctypes
import sys

sys.setdlopenflags(sys.getdlopenflags() | ctypes.RTLD_GLOBAL)
libm = ctypes.CDLL("libm.so.6")
"""
ABI3_C = r"""
#include <Python.h>
#include <frameobject.h>
void *mlb_uses[] = {(void *)&PyUnicode_AsUTF8, (void *)&PyCode_Addr2Line,
                    (void *)&PyLong_FromLong};
""" + INIT
VERSIONED_C = """
int mlbver_one(void) { return 1; }
int mlbver_two(void) { return 2; }
"""
VERSIONED_EXT = "#include <Python.h>\nint mlbver_two(void);\n" \
                "int mlb_call(void) { return mlbver_two(); }\n" + INIT


def compile_so(src: str, out: Path, *flags: str, cxx: bool = False) -> Path:
    """Compile ``src`` into the shared object ``out`` with gcc/g++ and ``flags``."""
    source = out.with_suffix(".cpp" if cxx else ".c")
    source.write_text(src)
    run(["g++" if cxx else "gcc", "-shared", "-fPIC", "-O1", f"-I{PY_INCLUDE}", "-o", out,
         source, *flags])
    return out


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def make_wheel(folder: Path, name: str, files: Mapping[str, bytes],
               tag: str = f"{PY_TAG}-{PY_TAG}-linux_x86_64") -> Path:
    """A wheel of ``files`` (member -> bytes) with its metadata and RECORD."""
    dist_info = f"{name}-1.0.dist-info"
    members = dict(files)
    members[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" \
        .encode()
    members[f"{dist_info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                                     f"false\nTag: {tag}\n").encode()
    record = "".join(f"{m},{record_hash(d)},{len(d)}\n" for m, d in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    wheel = folder / f"{name}-1.0-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            info = zipfile.ZipInfo(member, (2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if member.endswith(".so") else 0o644) << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
    return wheel


def ext_wheel(tmp: Path, name: str, src: str, *flags: str, cxx: bool = False) -> Path:
    """A wheel holding one extension ``<name>/_ext`` compiled from ``src``."""
    so = compile_so(src, tmp / f"_ext{EXT_SUFFIX}", *flags, cxx=cxx)
    return make_wheel(tmp, name, {f"{name}/__init__.py": b"", f"{name}/_ext{EXT_SUFFIX}":
                                  so.read_bytes()})


def mlbackend(*args: object, env: Optional[Dict[str, str]] = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "mlbackend", *args], env=env or clean_env(),
               check=check)


def clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "CI")}
    env.setdefault("SOURCE_DATE_EPOCH", "1700000000")
    env.update(extra)
    return env


def audit(wheel: Path) -> Dict[str, object]:
    data: Dict[str, object] = json.loads(mlbackend("audit", "--json", wheel).stdout)
    return data


def hazards(wheel: Path) -> List[Dict[str, object]]:
    found = audit(wheel)["hazards"]
    assert isinstance(found, list)
    return found


def kinds(wheel: Path) -> List[str]:
    return sorted(str(h["kind"]) for h in hazards(wheel))


def test_static_libstdcxx_exported_is_flagged_and_fails_strict(tmp_path: Path) -> None:
    wheel = ext_wheel(tmp_path, "mlbstatic", CXX_RUNTIME, "-static-libstdc++", cxx=True)
    found = {h["kind"]: h for h in hazards(wheel)}
    runtime = found["cxx-runtime"]
    assert runtime["file"] == f"mlbstatic/_ext{EXT_SUFFIX}"
    assert runtime["certain"] is True
    assert "linked in statically" in str(runtime["detail"])
    assert "--exclude-libs" in str(runtime["advice"])
    text = mlbackend("audit", wheel).stdout
    assert "hazard: mlbstatic/_ext" in text and "why:" in text
    # retag runs strict: a certain hazard is an error, and nothing is written
    proc = mlbackend("retag", wheel, "-w", tmp_path / "out", check=False)
    assert proc.returncode == 2, proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("mlbackend: error")]
    assert "cxx-runtime" in error and "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("*.whl"))


def test_static_libstdcxx_hidden_is_not_flagged(tmp_path: Path) -> None:
    wheel = ext_wheel(tmp_path, "mlbhidden", CXX_RUNTIME, "-static-libstdc++",
                      "-fvisibility=hidden", "-fvisibility-inlines-hidden",
                      "-Wl,--exclude-libs,ALL", cxx=True)
    assert hazards(wheel) == []


def test_gnu_unique_is_flagged_as_a_warning(tmp_path: Path) -> None:
    wheel = ext_wheel(tmp_path, "mlbunique", UNIQUE, cxx=True)
    (hazard,) = hazards(wheel)
    assert hazard["kind"] == "gnu-unique" and hazard["certain"] is False
    assert "_ZZ11mlb_countervE5count" in str(hazard["detail"])
    proc = mlbackend("retag", wheel, "-w", tmp_path / "out")
    assert "gnu-unique" in proc.stderr
    assert list((tmp_path / "out").glob("*.whl"))


def test_many_exports_counted_with_examples(tmp_path: Path) -> None:
    wheel = ext_wheel(tmp_path, "mlbmany", MANY_C)
    (hazard,) = hazards(wheel)
    assert hazard["kind"] == "many-exports"
    assert f"exports {MANY_EXPORTS + 15} symbols" in str(hazard["detail"])
    assert "mlbz_*" in str(hazard["detail"]) and "mlbz_part0" in str(hazard["detail"])


def test_clean_c_extension_has_no_hazard(tmp_path: Path) -> None:
    assert hazards(ext_wheel(tmp_path, "mlbclean", CLEAN_C)) == []


@pytest.mark.parametrize("project", ["c_ext", "cpp_ext", "yaml_ext"])
def test_examples_have_no_hazard(builds: Builds, project: str) -> None:
    wheel = builds.wheel(project)
    data = audit(wheel)
    assert data["hazards"] == [] and data["abi3_violations"] == []


def test_dlopen_note_and_python_loads(tmp_path: Path) -> None:
    so = compile_so(DLOPEN_NOTE, tmp_path / f"_ext{EXT_SUFFIX}")
    assert read_elf(so).dlopen_notes == (
        DlopenNote(("libz.so.1",), "zip", "recommended"),
        DlopenNote(("libmlbnowhere.so.3", "libmlbnowhere.so.2"), None, "suggested"))
    wheel = make_wheel(tmp_path, "mlbnote", {f"mlbnote/_ext{EXT_SUFFIX}": so.read_bytes(),
                                             "mlbnote/__init__.py": LOADER_PY.encode()})
    data = audit(wheel)
    uses = {tuple(d["sonames"]): d for d in data["dlopen"]}  # type: ignore[union-attr]
    assert uses[("libz.so.1",)]["allowed"] is True
    assert uses[("libz.so.1",)]["shipped"] is False
    assert uses[("libmlbnowhere.so.3", "libmlbnowhere.so.2")]["allowed"] is False
    assert uses[("libm.so.6",)]["source"] == "ctypes.CDLL (line 6)"
    assert uses[("libm.so.6",)]["allowed"] is True
    (hazard,) = data["hazards"]  # type: ignore[misc]
    assert hazard["kind"] == "rtld-global" and hazard["file"] == "mlbnote/__init__.py"
    assert "sys.setdlopenflags (line 5)" in hazard["detail"]


def test_abi3_wheel_with_non_limited_symbols(tmp_path: Path) -> None:
    import abi3info
    from abi3info.models import Symbol

    so = compile_so(ABI3_C, tmp_path / "_ext.abi3.so")
    wheel = make_wheel(tmp_path, "mlbabi", {"mlbabi/_ext.abi3.so": so.read_bytes()},
                       tag="cp39-abi3-linux_x86_64")
    data = audit(wheel)
    assert data["abi3_minimum"] == "3.9"
    found = {v["symbol"]: v["detail"] for v in data["abi3_violations"]}  # type: ignore[union-attr]
    known = {**abi3info.FUNCTIONS, **abi3info.DATAS}
    expected = {}
    for name in ("PyUnicode_AsUTF8", "PyCode_Addr2Line", "PyLong_FromLong",
                 "PyModule_Create2"):
        entry = known.get(Symbol(name))
        if entry is None:
            expected[name] = "not in the Limited API"
        elif (entry.added.major, entry.added.minor) > (3, 9):
            expected[name] = f"in the Limited API since {entry.added}, the wheel declares 3.9"
    assert found == expected
    assert "PyCode_Addr2Line" in found and "PyLong_FromLong" not in found
    proc = mlbackend("retag", wheel, "-w", tmp_path / "out", check=False)
    assert proc.returncode == 1 and "PyCode_Addr2Line" in proc.stderr
    assert not list((tmp_path / "out").glob("*.whl"))


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libmlbver.so.1 in new/ (versions MLBVER_1, MLBVER_2) and old/ (MLBVER_1 only), and
    a wheel whose extension was linked against the new one and calls mlbver_two@MLBVER_2."""
    root = tmp_path_factory.mktemp("versioned")
    for kind, script in (("new", "MLBVER_1 { global: mlbver_one; local: *; };\n"
                                 "MLBVER_2 { global: mlbver_two; } MLBVER_1;\n"),
                         ("old", "MLBVER_1 { global: mlbver_one; mlbver_two; local: *; };\n")):
        (root / kind).mkdir()
        (root / f"{kind}.map").write_text(script)
        compile_so(VERSIONED_C, root / kind / "libmlbver.so.1", "-Wl,-soname,libmlbver.so.1",
                   f"-Wl,--version-script={root / f'{kind}.map'}")
        (root / kind / "libmlbver.so").symlink_to("libmlbver.so.1")
    (root / "wheel").mkdir()
    so = compile_so(VERSIONED_EXT, root / "wheel" / f"_ext{EXT_SUFFIX}",
                    f"-L{root / 'new'}", "-lmlbver")
    assert read_elf(so).version_needs["libmlbver.so.1"] == ("MLBVER_2",)
    make_wheel(root / "wheel", "mlbver", {f"mlbver/_ext{EXT_SUFFIX}": so.read_bytes(),
                                          "mlbver/__init__.py": b""})
    return root


def test_repair_with_a_library_lacking_a_version_is_refused(tmp_path: Path,
                                                           versioned: Path) -> None:
    (wheel,) = (versioned / "wheel").glob("*.whl")
    before = wheel.read_bytes()
    proc = mlbackend("repair", wheel, "-w", tmp_path, check=False,
                     env=clean_env(LD_LIBRARY_PATH=str(versioned / "old")))
    # the host's library is not the one the wheel was linked against: exit 3, as for a
    # missing library (the wheel itself is not malformed)
    assert proc.returncode == 3, proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("mlbackend: error")]
    assert "would not load" in error and "MLBVER_2" in error and "libmlbver" in error
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
    assert wheel.read_bytes() == before


def sbom_of(wheel: Path) -> Dict[str, object]:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/sboms/mlbackend.cdx.json")]
        record = zf.read(name.split("/", 1)[0] + "/RECORD").decode()
        assert f"{name},{record_hash(zf.read(name))}," in record
        data: Dict[str, object] = json.loads(zf.read(name))
        data["_members"] = {n: hashlib.sha256(zf.read(n)).hexdigest()
                            for n in zf.namelist() if ".libs/" in n}
    return data


def check_sbom(wheel: Path) -> List[Dict[str, object]]:
    """The SBOM lists every vendored library once, with the sha256 of its member."""
    data = sbom_of(wheel)
    assert data["bomFormat"] == "CycloneDX"
    members: Dict[str, str] = data["_members"]  # type: ignore[assignment]
    components: List[Dict[str, object]] = data["components"]  # type: ignore[assignment]
    listed = {}
    for component in components:
        props = {p["name"]: p["value"] for p in component["properties"]}  # type: ignore[union-attr]
        (digest,) = component["hashes"]  # type: ignore[misc]
        listed[props["mlbackend:member"]] = digest["content"]
    assert members and listed == members
    return components


def test_repair_with_the_right_library_writes_an_sbom(tmp_path: Path, versioned: Path) -> None:
    (wheel,) = (versioned / "wheel").glob("*.whl")
    env = clean_env(LD_LIBRARY_PATH=str(versioned / "new"))
    mlbackend("repair", wheel, "-w", tmp_path / "a", env=env)
    (repaired,) = (tmp_path / "a").glob("*.whl")
    (component,) = check_sbom(repaired)
    assert component["name"] == "libmlbver.so.1" and "purl" not in component
    mlbackend("repair", wheel, "-w", tmp_path / "b", env=env)
    assert (tmp_path / "b" / repaired.name).read_bytes() == repaired.read_bytes()


def test_repaired_yaml_example_sbom_names_the_system_package(tmp_path: Path,
                                                            builds: Builds) -> None:
    plain = builds.wheel("yaml_ext", "repair=false")
    mlbackend("repair", plain, "-w", tmp_path)
    (repaired,) = tmp_path.glob("*.whl")
    (component,) = check_sbom(repaired)
    assert component["name"] == "libyaml-0.so.2"
    dpkg = shutil.which("dpkg")
    assert dpkg, "the tests run on Debian (.ci/setup installs libyaml-dev with apt)"
    props = {p["name"]: p["value"] for p in component["properties"]}  # type: ignore[union-attr]
    owner = run([dpkg, "-S", str(Path(props["mlbackend:source"]).resolve())])
    package = owner.stdout.split(":", 1)[0]
    assert str(component["purl"]).startswith(f"pkg:deb/debian/{package}@")
    assert audit(repaired)["hazards"] == []



def test_proof_names_outside_rpaths_duplicate_sonames_and_missing_libraries(
        tmp_path: Path) -> None:
    from mlbackend.policy import load_policies
    from mlbackend.proof import prove

    root = tmp_path / "wheel"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg.libs").mkdir()
    compile_so(VERSIONED_C, root / "pkg.libs" / "libdup-1.so", "-Wl,-soname,libdup.so.1")
    compile_so(VERSIONED_C, root / "pkg" / "libdup.so.1", "-Wl,-soname,libdup.so.1")
    compile_so(VERSIONED_C, tmp_path / "libmlbgone.so.1", "-Wl,-soname,libmlbgone.so.1")
    compile_so(CLEAN_C, root / "pkg" / f"_ext{EXT_SUFFIX}", "-Wl,-rpath,/opt/mlb/lib",
               f"-L{tmp_path}", "-Wl,--no-as-needed", "-l:libmlbgone.so.1")
    members = ["pkg.libs/libdup-1.so", "pkg/libdup.so.1", f"pkg/_ext{EXT_SUFFIX}"]
    infos = {m: read_elf(root / m) for m in members}
    policy = load_policies("glibc", "x86_64").find("manylinux_2_17")
    problems = {(p.file, p.need) for p in prove(root, infos, policy, ["pkg.libs/libdup-1.so"])}
    assert problems == {(f"pkg/_ext{EXT_SUFFIX}", "/opt/mlb/lib"),
                        (f"pkg/_ext{EXT_SUFFIX}", "libmlbgone.so.1"),
                        ("pkg.libs/libdup-1.so", "libdup.so.1")}



def test_proof_follows_dt_rpath_down_the_loader_chain(tmp_path: Path) -> None:
    """A library of the wheel found only through the DT_RPATH its loader inherited from the
    extension, and needing another found the same way: ld.so loads it (checked here with
    the real loader), so the proof, which walks the loader's own model, finds nothing."""
    from mlbackend.policy import load_policies
    from mlbackend.proof import prove

    root = tmp_path / "wheel"
    lib = root / "pkg" / "lib"
    lib.mkdir(parents=True)
    chain = [("libmlbc.so.1", "int mlbc(void) { return 3; }\n", ()),
             ("libmlbb.so.1", "int mlbc(void);\nint mlbb(void) { return mlbc() + 1; }\n",
              ("-l:libmlbc.so.1",)),
             ("libmlba.so.1", "int mlbb(void);\nint mlba(void) { return mlbb() + 1; }\n",
              ("-l:libmlbb.so.1",))]
    for soname, src, libs in chain:  # no RPATH of their own
        compile_so(src, lib / soname, f"-Wl,-soname,{soname}", f"-L{lib}",
                   "-Wl,--no-as-needed", *libs)
    ext = f"pkg/_ext{EXT_SUFFIX}"
    compile_so("int mlba(void);\nint mlb_go(void) { return mlba(); }\n" + CLEAN_C,
               root / ext, f"-L{lib}", "-Wl,--no-as-needed", "-l:libmlba.so.1",
               "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/lib")
    assert read_elf(root / ext).rpath == ("$ORIGIN/lib",)
    loads = run([sys.executable, "-c", f"import ctypes; print(ctypes.CDLL({str(root / ext)!r})"
                                       ".mlb_go())"], env=clean_env())
    assert loads.stdout.strip() == "5"
    # the libraries first in the archive, as a wheel may list them
    members = ["pkg/lib/libmlbb.so.1", "pkg/lib/libmlbc.so.1", "pkg/lib/libmlba.so.1", ext]
    infos = {m: read_elf(root / m) for m in members}
    policy = load_policies("glibc", "x86_64").find("manylinux_2_17")
    assert prove(root, infos, policy) == ()
    # without the extension's DT_RPATH nothing leads into pkg/lib: every link is unresolved
    bare = {**infos, ext: replace(infos[ext], rpath=())}
    assert {(p.file, p.need) for p in prove(root, bare, policy)} == {
        (ext, "libmlba.so.1"), ("pkg/lib/libmlba.so.1", "libmlbb.so.1"),
        ("pkg/lib/libmlbb.so.1", "libmlbc.so.1")}

def test_pure_wheel_python_files_are_checked(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "mlbpure", {"mlbpure/__init__.py": LOADER_PY.encode()},
                       tag="py3-none-any")
    data = audit(wheel)
    assert [h["kind"] for h in data["hazards"]] == ["rtld-global"]  # type: ignore[union-attr]
    (use,) = data["dlopen"]  # type: ignore[misc]
    assert use["sonames"] == ["libm.so.6"] and use["shipped"] is False
    assert use["allowed"] is None  # no binaries: no policy says what the system has


def test_pure_and_binary_reports_share_their_json_keys(tmp_path: Path) -> None:
    """A pure wheel's report is its own small result; the JSON keeps one shape for both, so
    the Action and other readers need no second schema."""
    pure = make_wheel(tmp_path, "mlbpure", {"mlbpure/__init__.py": LOADER_PY.encode()},
                      tag="py3-none-any")
    binary = ext_wheel(tmp_path, "mlbbinary", CLEAN_C)
    pure_data, binary_data = audit(pure), audit(binary)
    assert list(pure_data) == list(binary_data)
    assert pure_data["pure"] is True and binary_data["pure"] is False
    assert (pure_data["tag"], pure_data["tags"], pure_data["repair"]) == ("any", [], None)
    assert pure_data["reason"] == "no ELF files: a pure Python wheel keeps its tags"
    proc = mlbackend("audit", "--target", "2_17", pure)  # no binaries: every target is met
    assert proc.stdout.splitlines()[:2] == [f"{pure.name}: any",
                                            "  pure Python wheel: no ELF files"]
