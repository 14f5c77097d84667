"""Facts about one ELF file, read with pyelftools; nothing here decides anything."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import AuditError

__all__ = ["ELF_MAGIC", "LOADER_PREFIXES", "DlopenNote", "ElfInfo", "Symbol", "elf_header",
           "read_elf"]

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
class DlopenNote:
    """One entry of a freedesktop.org ``.note.dlopen`` note: libraries loaded at run time."""

    sonames: Tuple[str, ...]
    """Alternatives: the first one found is loaded."""
    feature: Optional[str]
    priority: Optional[str]
    """``required``, ``recommended`` or ``suggested``, as the file declares it."""


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
    exported: Tuple[str, ...] = ()
    """Defined dynamic symbols with GLOBAL/WEAK/GNU_UNIQUE binding and DEFAULT/PROTECTED
    visibility: what other objects in the process can bind to."""
    unique: Tuple[str, ...] = ()
    """The subset of ``exported`` with STB_GNU_UNIQUE binding."""
    version_defs: Tuple[str, ...] = ()
    """Version names the file defines (``.gnu.version_d``), its base entry excluded."""
    dlopen_notes: Tuple[DlopenNote, ...] = ()
    """FDO ``.note.dlopen`` entries (owner ``FDO``, type 0x407c0c0a)."""
    e_flags: int = 0
    """The ELF header's e_flags (the ARM float ABI, for one)."""
    is_static: bool = False
    """True when the file has no PT_DYNAMIC segment (a static executable)."""

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


_EXPORT_BINDINGS = ("STB_GLOBAL", "STB_WEAK", "STB_LOOS")  # pyelftools names GNU_UNIQUE LOOS
_EXPORT_VISIBILITY = ("STV_DEFAULT", "STV_PROTECTED")


def _symbols(elf: object, by_index: Mapping[int, Tuple[str, str]],
             ) -> Tuple[List[Symbol], frozenset[str], List[str], List[str]]:
    """Undefined dynamic symbols with their versions, the exported init-like functions,
    the exported symbols, and those of them with STB_GNU_UNIQUE binding."""
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
    exported: List[str] = []
    unique: List[str] = []
    if dynsym is None:
        return undefined, frozenset(), exported, unique
    for index, sym in enumerate(dynsym.iter_symbols()):
        if not sym.name:
            continue
        if sym["st_shndx"] != "SHN_UNDEF":
            if sym["st_info"]["type"] == "STT_FUNC" and sym.name.startswith(_INIT_PREFIXES):
                inits.add(sym.name)
            bind = sym["st_info"]["bind"]
            if bind in _EXPORT_BINDINGS and sym["st_other"]["visibility"] in _EXPORT_VISIBILITY:
                exported.append(sym.name)
                if bind == "STB_LOOS":
                    unique.append(sym.name)
            continue
        version = library = None
        if versym is not None:
            ndx = versym.get_symbol(index)["ndx"]
            if isinstance(ndx, int):
                version, library = by_index.get(ndx & 0x7FFF, (None, None))
        undefined.append(Symbol(sym.name, version, library, sym["st_info"]["bind"] == "STB_WEAK"))
    return undefined, frozenset(inits), exported, unique


def _version_defs(elf: object) -> List[str]:
    from elftools.elf.gnuversions import GNUVerDefSection

    names: List[str] = []
    for section in elf.iter_sections():  # type: ignore[attr-defined]
        if not isinstance(section, GNUVerDefSection):
            continue
        for verdef, auxiliaries in section.iter_versions():
            if int(verdef["vd_flags"]) & 1:  # VER_FLG_BASE: the file's own name
                continue
            first = next(iter(auxiliaries), None)
            if first is not None:
                names.append(str(first.name))
    return names


_NT_FDO_DLOPEN_METADATA = 0x407C0C0A


def _dlopen_entry(raw: Any) -> Optional[DlopenNote]:
    if not isinstance(raw, dict):
        return None
    sonames = raw.get("soname")
    if not isinstance(sonames, list) or not all(isinstance(s, str) for s in sonames):
        return None
    feature, priority = raw.get("feature"), raw.get("priority")
    return DlopenNote(tuple(sonames), feature if isinstance(feature, str) else None,
                      priority if isinstance(priority, str) else None)


def _dlopen_notes(elf: object) -> List[DlopenNote]:
    """Entries of FDO dlopen notes (a JSON array of objects with a ``soname`` list); a note
    whose payload is not such JSON is skipped, as the loader skips it."""
    import json

    from elftools.elf.sections import NoteSection

    found: List[DlopenNote] = []
    for section in elf.iter_sections():  # type: ignore[attr-defined]
        if not isinstance(section, NoteSection):
            continue
        for note in section.iter_notes():
            kind: object = note["n_type"]  # an int: pyelftools has no name for this type
            if note["n_name"] != "FDO" or kind != _NT_FDO_DLOPEN_METADATA:
                continue
            text = bytes(note["n_descdata"]).split(b"\0", 1)[0]
            try:
                entries = json.loads(text.decode("utf-8"))
            except ValueError:
                continue
            for raw in entries if isinstance(entries, list) else []:
                entry = _dlopen_entry(raw)
                if entry is not None:
                    found.append(entry)
    return found


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


EF_ARM_EABIMASK = 0xFF000000
EF_ARM_EABI_VER5 = 0x05000000
EF_ARM_ABI_FLOAT_HARD = 0x00000400


def _arch(machine: str, elf_class: int, little: bool, flags: int) -> Optional[str]:
    arch = _EM_ARCH.get((machine, elf_class, little))
    if arch == "armv7l" and (flags & EF_ARM_EABIMASK != EF_ARM_EABI_VER5
                             or not flags & EF_ARM_ABI_FLOAT_HARD):
        return "armv5l"  # soft-float (or old EABI) code does not run on an armv7l hard-float system
    return arch


def read_elf(path: Path) -> ElfInfo:
    """Read the facts of the ELF file at ``path``; raises AuditError if it cannot be parsed."""
    from elftools.common.exceptions import ELFError
    from elftools.construct.core import ConstructError
    from elftools.elf.elffile import ELFFile

    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            machine = str(elf["e_machine"])
            elf_class = int(elf.elfclass)
            interp = None
            dynamic = False
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    interp = segment.get_interp_name()  # type: ignore[attr-defined]
                dynamic = dynamic or segment["p_type"] == "PT_DYNAMIC"
            flags = int(elf["e_flags"])
            soname, needed, rpath, runpath = _dynamic(elf)
            needs, by_index = _versions(elf)
            undefined, defined, exported, unique = _symbols(elf, by_index)
            version_defs = _version_defs(elf)
            dlopen = _dlopen_notes(elf)
            little = bool(elf.little_endian)
            isa = _isa_level(elf) if machine == "EM_X86_64" else None
    except (ELFError, ConstructError, OSError, ValueError, KeyError, IndexError,
            struct.error) as exc:
        raise AuditError(f"cannot read ELF file {path}: {exc}",
                         tip="is the file truncated or not a shared library?") from exc
    return ElfInfo(
        elf_class=elf_class, machine=machine, arch=_arch(machine, elf_class, little, flags),
        interp=interp, libc=_libc(interp, needed), soname=soname, needed=tuple(needed),
        rpath=tuple(rpath), runpath=tuple(runpath),
        version_needs={k: tuple(v) for k, v in needs.items()},
        undefined=tuple(undefined), init_functions=defined, isa_level=isa,
        exported=tuple(exported), unique=tuple(unique), version_defs=tuple(version_defs),
        dlopen_notes=tuple(dlopen), e_flags=flags, is_static=not dynamic,
    )
