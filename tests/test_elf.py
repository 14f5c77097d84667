"""The bulk ELF decoder against pyelftools (the oracle) on real files: the system's libraries,
ELF members of PyPI wheels of other architectures and byte orders, compiled fixtures; and
malformed files, which must raise AuditError and nothing else."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from conftest import run

from mlbackend.elf import DlopenNote, ElfInfo, parse_elf, read_elf
from mlbackend.errors import AuditError

SYSTEM = Path("/usr/lib/x86_64-linux-gnu")
DATA = Path(__file__).parent / "data" / "pypi"
# (platform, requirement): ELF members of every architecture and byte order in the table
FOREIGN = [
    ("manylinux2014_aarch64", "orjson==3.10.12"),
    ("manylinux2014_armv7l", "orjson==3.10.12"),
    ("manylinux2014_ppc64le", "orjson==3.10.12"),
    ("manylinux2014_s390x", "orjson==3.10.12"),  # big-endian
    ("manylinux2014_i686", "orjson==3.10.12"),  # 32-bit
    ("musllinux_1_2_x86_64", "orjson==3.10.12"),
    ("manylinux2014_s390x", "pyyaml==6.0.2"),
    ("manylinux1_i686", "numpy==1.19.5"),
]


def oracle(data: bytes) -> Dict[str, Any]:
    """The same facts as read by pyelftools."""
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection, GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    elf = ELFFile(io.BytesIO(data))
    out: Dict[str, Any] = {
        "elf_class": elf.elfclass, "machine": elf["e_machine"], "e_flags": elf["e_flags"],
        "interp": None, "soname": None, "needed": [], "rpath": [], "runpath": [],
        "is_static": True}
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_INTERP":
            out["interp"] = seg.get_interp_name()
        if isinstance(seg, DynamicSegment) and out["is_static"]:
            out["is_static"] = False
            for tag in seg.iter_tags():
                kind = tag.entry.d_tag
                if kind == "DT_NEEDED":
                    out["needed"].append(tag.needed)
                elif kind == "DT_SONAME":
                    out["soname"] = tag.soname
                elif kind in ("DT_RPATH", "DT_RUNPATH"):
                    key = kind[3:].lower()
                    out[key] += [p for p in getattr(tag, key).split(":") if p]
    by_index: Dict[int, Tuple[str, str]] = {}
    needs: Dict[str, List[str]] = {}
    defs: List[str] = []
    versym = dynsym = None
    for sec in elf.iter_sections():
        if isinstance(sec, GNUVerNeedSection):
            for need, auxiliaries in sec.iter_versions():
                for aux in auxiliaries:
                    by_index[aux["vna_other"]] = (aux.name, need.name)
                    if not need.name.startswith(("ld-linux", "ld64.so.", "ld-musl-")):
                        needs.setdefault(need.name, []).append(aux.name)
        elif isinstance(sec, GNUVerDefSection):
            defs += [next(iter(auxes)).name for vd, auxes in sec.iter_versions()
                     if not vd["vd_flags"] & 1]
        elif isinstance(sec, GNUVerSymSection):
            versym = sec
        elif isinstance(sec, SymbolTableSection) and sec["sh_type"] == "SHT_DYNSYM":
            dynsym = sec
    out["version_needs"] = {k: tuple(v) for k, v in needs.items()}
    out["version_defs"] = defs
    undefined, exported, unique, inits = [], {}, {}, set()
    for index, sym in enumerate(dynsym.iter_symbols() if dynsym is not None else ()):
        if not sym.name:
            continue
        bind = sym["st_info"]["bind"]
        if sym["st_shndx"] != "SHN_UNDEF":
            if bind in ("STB_GLOBAL", "STB_WEAK", "STB_LOOS") and \
                    sym["st_other"]["visibility"] in ("STV_DEFAULT", "STV_PROTECTED"):
                exported[sym.name] = None
                if bind == "STB_LOOS":  # STB_GNU_UNIQUE
                    unique[sym.name] = None
            if sym["st_info"]["type"] == "STT_FUNC" and sym.name.startswith(
                    ("PyInit_", "init", "_cffi_pypyinit_")):
                inits.add(sym.name)
            continue
        version = library = None
        if versym is not None:
            ndx = versym.get_symbol(index)["ndx"]
            if isinstance(ndx, int):
                version, library = by_index.get(ndx & 0x7FFF, (None, None))
        undefined.append((sym.name, version, library, bind == "STB_WEAK"))
    out.update(undefined=undefined, exported=list(exported), unique=list(unique),
               init_functions=inits)
    return out


def facts(info: ElfInfo) -> Dict[str, Any]:
    """The decoder's facts in the oracle's shape."""
    return {
        "elf_class": info.elf_class, "machine": info.machine, "e_flags": info.e_flags,
        "interp": info.interp, "soname": info.soname, "needed": list(info.needed),
        "rpath": list(info.rpath), "runpath": list(info.runpath), "is_static": info.is_static,
        "version_needs": dict(info.version_needs), "version_defs": list(info.version_defs),
        "undefined": [tuple(s) for s in info.undefined], "exported": list(info.exported),
        "unique": list(info.unique), "init_functions": set(info.init_functions)}


def assert_same(data: bytes, name: str) -> ElfInfo:
    info = parse_elf(data, name)
    expected = oracle(data)
    ours = facts(info)
    for key, value in expected.items():
        assert ours[key] == value, f"{name}: {key} differs from pyelftools"
    return info


def system_libraries() -> List[Path]:
    """Every third shared library of the system (all sizes, all kinds of toolchains)."""
    files = sorted(p for p in SYSTEM.glob("*.so*") if p.is_file() and not p.is_symlink())
    return [p for p in files[::3] if p.read_bytes()[:4] == b"\x7fELF"]


def test_system_libraries_match_pyelftools() -> None:
    libraries = system_libraries()
    assert len(libraries) > 50
    names = set()
    for path in libraries:
        info = assert_same(path.read_bytes(), str(path))
        assert read_elf(path) == info  # the mmap path gives the same facts
        names.update(info.exported)
    libc = read_elf(SYSTEM / "libc.so.6")
    assert libc.soname == "libc.so.6" and "GLIBC_2.17" in libc.version_defs
    assert "printf" in libc.exported and libc.arch == "x86_64"


def wheel_elves(wheel: Path) -> Iterator[Tuple[str, bytes]]:
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.infolist():
            data = zf.read(member)
            if data[:4] == b"\x7fELF":
                yield member.filename, data


@pytest.fixture(scope="module")
def foreign_wheels(pypi_cache: Path) -> List[Path]:
    """The wheels of FOREIGN, downloaded once into the cache."""
    wheels = []
    for platform, requirement in FOREIGN:
        name, version = requirement.split("==")
        arch = platform.split("_", 1)[1]  # aarch64, 1_2_x86_64 (musllinux), ...

        def cached(name: str = name, version: str = version, arch: str = arch) -> List[Path]:
            return [p for p in pypi_cache.glob("*.whl") if arch in p.name
                    and p.name.lower().startswith(f"{name}-{version}-")]

        if not cached():
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--only-binary=:all:", "--platform", platform, "--python-version",
                 "3.8" if version == "1.19.5" else "3.11", "-d", pypi_cache, requirement])
        assert cached(), f"no wheel for {requirement} on {platform}"
        wheels.append(cached()[0])
    return wheels


def test_foreign_architectures_and_byte_orders_match_pyelftools(
        foreign_wheels: List[Path]) -> None:
    arches = set()
    for wheel in [*foreign_wheels, *sorted(DATA.glob("*.whl"))]:
        for member, data in wheel_elves(wheel):
            info = assert_same(data, f"{wheel.name}:{member}")
            arches.add((info.arch, info.libc))
    assert {("aarch64", "glibc"), ("armv7l", "glibc"), ("ppc64le", "glibc"),
            ("s390x", "glibc"), ("i686", "glibc"), ("x86_64", "musl")} <= arches


def compile_c(tmp: Path, name: str, code: str, *flags: str, cxx: bool = False) -> Path:
    src = tmp / f"{name}.{'cc' if cxx else 'c'}"
    src.write_text(code)
    out = tmp / name
    subprocess.run(["g++" if cxx else "gcc", "-O1", "-o", str(out), str(src), *flags],
                   check=True)
    return out


DLOPEN_NOTE = r"""
#define NOTE(json) \
  __asm__(".pushsection .note.dlopen,\"a\",@note\n.balign 4\n.long 4\n" \
          ".long 2f-1f\n.long 0x407c0c0a\n.asciz \"FDO\"\n1: .asciz \"" json "\"\n" \
          ".balign 4\n2:\n.popsection\n");
NOTE("[{\\\"soname\\\":[\\\"libz.so.1\\\",\\\"libz.so\\\"],\\\"feature\\\":\\\"zip\\\","
     "\\\"priority\\\":\\\"recommended\\\"}]")
NOTE("[{\\\"soname\\\":[\\\"libzstd.so.1\\\"]}]")
int answer(void) { return 42; }
"""

VERSIONED = r"""
int old_api(void) { return 1; }
int new_api(void) { return 2; }
"""

UNIQUE = r"""
template <typename T> struct Counter { static int value; };
template <typename T> int Counter<T>::value = 0;
inline int &shared_count() { static int count = 0; return count; }
int bump() { Counter<int>::value++; return ++shared_count(); }
"""


def test_compiled_fixtures_match_pyelftools(tmp_path: Path) -> None:
    so = compile_c(tmp_path, "libnote.so", DLOPEN_NOTE, "-shared", "-fPIC")
    info = assert_same(so.read_bytes(), "libnote.so")
    assert info.dlopen_notes == (DlopenNote(("libz.so.1", "libz.so"), "zip", "recommended"),
                                 DlopenNote(("libzstd.so.1",), None, None))
    script = tmp_path / "vers.map"
    script.write_text("V_1 { global: old_api; local: *; };\nV_2 { global: new_api; } V_1;\n")
    so = compile_c(tmp_path, "libvers.so", VERSIONED, "-shared", "-fPIC",
                   f"-Wl,--version-script={script}", "-Wl,-soname,libvers.so.2")
    info = assert_same(so.read_bytes(), "libvers.so")
    assert info.version_defs == ("V_1", "V_2") and info.soname == "libvers.so.2"
    so = compile_c(tmp_path, "libunique.so", UNIQUE, "-shared", "-fPIC", cxx=True)
    info = assert_same(so.read_bytes(), "libunique.so")
    assert info.unique and set(info.unique) <= set(info.exported)
    exe = compile_c(tmp_path, "static", "int main(void) { return 0; }", "-static")
    info = assert_same(exe.read_bytes(), "static")
    assert info.is_static and info.needed == () and info.interp is None
    exe = compile_c(tmp_path, "dynamic", "int main(void) { return 0; }",
                    "-Wl,-rpath,$ORIGIN/lib:/opt/x", "-Wl,--disable-new-dtags")
    info = assert_same(exe.read_bytes(), "dynamic")
    assert not info.is_static and info.rpath == ("$ORIGIN/lib", "/opt/x")
    assert info.interp == "/lib64/ld-linux-x86-64.so.2" and info.libc == "glibc"


def _without_sections(data: bytes) -> bytes:
    """The file with its section header table removed, as sstrip does: the facts must then
    come from the dynamic segment alone (DT_SYMTAB, DT_GNU_HASH, DT_VERSYM, ...)."""
    out = bytearray(data)
    struct.pack_into("<Q", out, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", out, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    return bytes(out)


def test_files_without_section_headers_give_the_same_facts() -> None:
    for path in (SYSTEM / "libc.so.6", SYSTEM / "libstdc++.so.6", SYSTEM / "libz.so.1"):
        data = path.resolve().read_bytes()
        full, bare = parse_elf(data, path.name), parse_elf(_without_sections(data), path.name)
        for key in ("needed", "soname", "version_needs", "version_defs", "undefined",
                    "exported", "unique", "init_functions"):
            assert getattr(bare, key) == getattr(full, key), f"{path.name}: {key}"


def _damaged(data: bytes, seed: int) -> Iterator[bytes]:
    """Truncations at many points and random bytes written over the tables the decoder
    reads (headers, dynamic segment, symbol and version tables)."""
    for cut in (0, 3, 16, 40, 63, 64, 100, *range(128, len(data), max(len(data) // 60, 1))):
        yield data[:cut]
    rng = random.Random(seed)
    spans = [(0, 64)]
    info = parse_elf(data, "fixture")
    assert info.needed  # the fixture is dynamic: its tables are worth damaging
    shoff, = struct.unpack_from("<Q", data, 0x28)
    spans.append((shoff, len(data) - shoff))
    spans.append((64, 56 * struct.unpack_from("<H", data, 0x38)[0]))
    for _ in range(400):
        start, size = rng.choice(spans)
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = start + rng.randrange(max(size, 1))
            if at < len(out):
                out[at] = rng.randrange(256)
        yield bytes(out)


@pytest.mark.parametrize("source", ["libz.so.1", "libnote.so"])
def test_damaged_files_raise_audit_error_and_nothing_else(tmp_path: Path, source: str) -> None:
    if source == "libnote.so":
        data = compile_c(tmp_path, source, DLOPEN_NOTE, "-shared", "-fPIC", "-lm",
                         "-Wl,--no-as-needed").read_bytes()
    else:
        data = (SYSTEM / source).resolve().read_bytes()
    raised = 0
    for index, damaged in enumerate(_damaged(data, 14)):
        try:
            parse_elf(damaged, f"pkg/{source}")
        except AuditError as exc:
            raised += 1
            assert "\n" not in exc.message and f"pkg/{source}" in exc.message, exc.message
        except Exception as exc:  # any other exception fails
            pytest.fail(f"damaged copy {index} of {source} raised {exc!r}")
    assert raised > 60  # truncations and broken tables were noticed, not silently passed


def test_read_elf_of_a_short_or_missing_file_is_an_audit_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.so"
    empty.write_bytes(b"")
    with pytest.raises(AuditError, match=r"empty\.so: not an ELF file"):
        read_elf(empty)
    with pytest.raises(AuditError, match=r"missing\.so"):
        read_elf(tmp_path / "missing.so")


def test_a_wheel_member_with_a_bad_crc_is_one_line_naming_it(tmp_path: Path) -> None:
    source = DATA / "bcrypt-4.3.0-cp39-abi3-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(source) as zf:
        member = next(i for i in zf.infolist() if i.filename.endswith(".so"))
    data = bytearray(source.read_bytes())
    data[member.header_offset + 30 + len(member.filename) + len(member.extra)
         + member.compress_size // 2] ^= 0xFF
    wheel = tmp_path / source.name
    wheel.write_bytes(bytes(data))
    proc = run([sys.executable, "-m", "mlbackend", "audit", wheel], check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    line, *tip = proc.stderr.splitlines()
    assert line.startswith("mlbackend: error: ") and member.filename in line, line
    assert len(tip) <= 1 and all(t.startswith("mlbackend: tip: ") for t in tip)


def test_arm_float_abi_decides_armv7l_or_armv5l(foreign_wheels: List[Path]) -> None:
    """32-bit ARM code is armv7l only for the EABI 5 hard-float ABI (e_flags): the same
    file with the hard-float flag cleared, or an older EABI, is soft-float armv5l."""
    member, data = next((m, d) for w in foreign_wheels for m, d in wheel_elves(w)
                        if parse_elf(d, m).arch == "armv7l")
    flags = parse_elf(data, member).e_flags
    assert flags & 0xFF000000 == 0x05000000 and flags & 0x400

    def with_flags(value: int) -> bytes:
        return data[:36] + struct.pack("<I", value) + data[40:]  # e_flags of ELFCLASS32

    assert parse_elf(with_flags(flags & ~0x400), member).arch == "armv5l"
    assert parse_elf(with_flags((flags & 0x00FFFFFF) | 0x04000000), member).arch == "armv5l"
    assert parse_elf(with_flags(flags), member).arch == "armv7l"
