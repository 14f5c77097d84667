"""Facts about one ELF file, read with pyelftools; nothing here decides anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from .errors import AuditError

__all__ = ["ELF_MAGIC", "LOADER_PREFIXES", "ElfInfo", "Symbol", "elf_header", "read_elf"]

ELF_MAGIC = b"\x7fELF"
_EM_ARCH = {  # (e_machine, class, little endian) -> platform architecture
    ("EM_X86_64", 64, True): "x86_64",
    ("EM_386", 32, True): "i686",
    ("EM_AARCH64", 64, True): "aarch64",
    ("EM_ARM", 32, True): "armv7l",
    ("EM_PPC64", 64, True): "ppc64le",
    ("EM_PPC64", 64, False): "ppc64",
    ("EM_S390", 64, False): "s390x",
    ("EM_RISCV", 64, True): "riscv64",
    ("EM_LOONGARCH", 64, True): "loongarch64",
}
LOADER_PREFIXES = ("ld-linux", "ld64.so.", "ld-musl-")
"""Sonames of dynamic loaders: never vendored, never counted against a policy."""


@dataclass(frozen=True)
class Symbol:
    """An undefined dynamic symbol and the version it binds to."""

    name: str
    version: Optional[str]
    """e.g. ``GLIBC_2.34``; None when the reference is unversioned."""
    library: Optional[str]
    """The soname the version belongs to (from ``.gnu.version_r``), if versioned."""
    weak: bool

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic linker and the policies care about in one ELF file."""

    elf_class: int
    """32 or 64."""
    machine: str
    """pyelftools' e_machine name, e.g. ``EM_X86_64``."""
    arch: Optional[str]
    """Platform architecture (``x86_64``...), None when unknown."""
    interp: Optional[str]
    libc: Optional[str]
    """``glibc``, ``musl``, or None when neither PT_INTERP nor DT_NEEDED tells."""
    soname: Optional[str]
    needed: Tuple[str, ...]
    rpath: Tuple[str, ...]
    runpath: Tuple[str, ...]
    version_needs: Mapping[str, Tuple[str, ...]]
    """Soname -> version names from ``.gnu.version_r`` (dynamic loaders left out)."""
    undefined: Tuple[Symbol, ...]
    """Undefined dynamic symbols with their versions (from ``.dynsym`` + ``.gnu.version``)."""
    init_functions: frozenset[str]
    """Functions the file defines that look like module init functions (``PyInit_*``,
    ``init*``, ``_cffi_pypyinit_*``): from the dynamic symbols, else the symbol table."""
    isa_level: Optional[str] = None
    """x86-64 micro-architecture level the file needs beyond the baseline (``x86_64_v3``),
    from its GNU_PROPERTY_X86_ISA_1_NEEDED note; None when it needs only the baseline."""

    def is_python_extension(self, filename: str) -> bool:
        """True when the file defines the module init function for its own name."""
        module = filename.split(".", 1)[0]
        return bool({f"PyInit_{module}", f"init{module}", f"_cffi_pypyinit_{module}"}
                    & self.init_functions)


def elf_header(path: Path) -> Optional[Tuple[int, int]]:
    """(EI_CLASS, e_machine) of ``path`` from its first 20 bytes, or None if not ELF."""
    try:
        with path.open("rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != ELF_MAGIC:
        return None
    if head[5] == 1:
        return head[4], int.from_bytes(head[18:20], "little")
    return head[4], int.from_bytes(head[18:20], "big")


def _dynamic(elf: object) -> Tuple[Optional[str], List[str], List[str], List[str]]:
    from elftools.elf.dynamic import DynamicSection

    soname: Optional[str] = None
    needed: List[str] = []
    rpath: List[str] = []
    runpath: List[str] = []
    for section in elf.iter_sections():  # type: ignore[attr-defined]
        if not isinstance(section, DynamicSection):
            continue
        for tag in section.iter_tags():
            kind = tag.entry.d_tag
            if kind == "DT_NEEDED":
                needed.append(tag.needed)  # type: ignore[attr-defined]
            elif kind == "DT_SONAME":
                soname = tag.soname  # type: ignore[attr-defined]
            elif kind == "DT_RPATH":
                rpath.extend(p for p in tag.rpath.split(":") if p)  # type: ignore[attr-defined]
            elif kind == "DT_RUNPATH":
                runpath.extend(p for p in tag.runpath.split(":") if p)  # type: ignore[attr-defined]
        break
    return soname, needed, rpath, runpath


def _versions(elf: object) -> Tuple[Dict[str, List[str]], Dict[int, Tuple[str, str]]]:
    """Version needs per soname, and version index -> (version, soname)."""
    from elftools.elf.gnuversions import GNUVerNeedSection

    needs: Dict[str, List[str]] = {}
    by_index: Dict[int, Tuple[str, str]] = {}
    for section in elf.iter_sections():  # type: ignore[attr-defined]
        if not isinstance(section, GNUVerNeedSection):
            continue
        for verneed, auxiliaries in section.iter_versions():
            lib = str(verneed.name)
            for aux in auxiliaries:
                by_index[int(aux["vna_other"])] = (str(aux.name), lib)
                if not lib.startswith(LOADER_PREFIXES):
                    needs.setdefault(lib, []).append(str(aux.name))
    return needs, by_index


_INIT_PREFIXES = ("PyInit_", "init", "_cffi_pypyinit_")


def _symbols(elf: object, by_index: Mapping[int, Tuple[str, str]],
             ) -> Tuple[List[Symbol], frozenset[str]]:
    """Undefined dynamic symbols with their versions, and the exported init-like functions."""
    from elftools.elf.gnuversions import GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    dynsym = None
    versym = None
    for section in elf.iter_sections():  # type: ignore[attr-defined]
        if isinstance(section, GNUVerSymSection):
            versym = section
        elif isinstance(section, SymbolTableSection) and section.name == ".dynsym":
            dynsym = section
    undefined: List[Symbol] = []
    inits: set[str] = set()
    if dynsym is None:
        return undefined, frozenset()
    for index, sym in enumerate(dynsym.iter_symbols()):
        if not sym.name:
            continue
        if sym["st_shndx"] != "SHN_UNDEF":
            if sym["st_info"]["type"] == "STT_FUNC" and sym.name.startswith(_INIT_PREFIXES):
                inits.add(sym.name)
            continue
        version = library = None
        if versym is not None:
            ndx = versym.get_symbol(index)["ndx"]
            if isinstance(ndx, int):
                version, library = by_index.get(ndx & 0x7FFF, (None, None))
        undefined.append(Symbol(sym.name, version, library, sym["st_info"]["bind"] == "STB_WEAK"))
    return undefined, frozenset(inits)


def _isa_level(elf: object) -> Optional[str]:
    from elftools.elf.sections import NoteSection

    for section in elf.iter_sections():  # type: ignore[attr-defined]
        if not isinstance(section, NoteSection):
            continue
        for note in section.iter_notes():
            if note["n_type"] != "NT_GNU_PROPERTY_TYPE_0" or note["n_name"] != "GNU":
                continue
            for prop in note["n_desc"]:
                if prop.pr_type == "GNU_PROPERTY_X86_ISA_1_NEEDED" and prop.pr_datasz == 4:
                    bits = int(prop.pr_data) & ~1  # bit 0 is the baseline
                    for bit, level in ((8, "x86_64_v4"), (4, "x86_64_v3"), (2, "x86_64_v2")):
                        if bits & bit:
                            return level
    return None


def _libc(interp: Optional[str], needed: List[str]) -> Optional[str]:
    if interp:
        if "musl" in interp:
            return "musl"
        if "ld-linux" in interp or "ld64.so" in interp:
            return "glibc"
    for lib in needed:
        if lib.startswith(("libc.musl-", "ld-musl-")):
            return "musl"
        if lib == "libc.so.6" or lib.startswith(("ld-linux-", "ld64.so.")):
            return "glibc"
    return None


def read_elf(path: Path) -> ElfInfo:
    """Read the facts of the ELF file at ``path``; raises AuditError if it cannot be parsed."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            machine = str(elf["e_machine"])
            elf_class = int(elf.elfclass)
            interp = None
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    interp = segment.get_interp_name()  # type: ignore[attr-defined]
            soname, needed, rpath, runpath = _dynamic(elf)
            needs, by_index = _versions(elf)
            undefined, defined = _symbols(elf, by_index)
            little = bool(elf.little_endian)
            isa = _isa_level(elf) if machine == "EM_X86_64" else None
    except (ELFError, OSError, ValueError, KeyError) as exc:
        raise AuditError(f"cannot read ELF file {path}: {exc}",
                         tip="is the file truncated or not a shared library?") from exc
    return ElfInfo(
        elf_class=elf_class, machine=machine, arch=_EM_ARCH.get((machine, elf_class, little)),
        interp=interp, libc=_libc(interp, needed), soname=soname, needed=tuple(needed),
        rpath=tuple(rpath), runpath=tuple(runpath),
        version_needs={k: tuple(v) for k, v in needs.items()},
        undefined=tuple(undefined), init_functions=defined, isa_level=isa,
    )
