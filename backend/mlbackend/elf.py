"""Facts about one ELF file, decoded in bulk with ``struct``; nothing here decides anything.

Every offset and size read from the file is checked against the file before it is used: a
malformed file raises :class:`~mlbackend.errors.AuditError` with one line naming the defect.
"""

from __future__ import annotations

import json
import mmap
import struct
import sys
from array import array
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ._elfformat import (
    ELF_MAGIC,
    PT_DYNAMIC,
    PT_INTERP,
    PT_LOAD,
    PT_NOTE,
    SHT_NOTE,
    Buffer,
    DefectError,
    Dynamic,
    Reader,
    Tables,
    find_tables,
    iter_notes,
    read_dynamic,
    read_sections,
    read_segments,
    read_version_defs,
)
from .errors import AuditError

__all__ = ["ELF_MAGIC", "LOADER_PREFIXES", "DlopenNote", "ElfInfo", "Symbol", "elf_header",
           "parse_elf", "read_elf"]

LOADER_PREFIXES = ("ld-linux", "ld64.so.", "ld-musl-")
"""Sonames of dynamic loaders: never vendored, never counted against a policy."""

_MACHINES = {62: "EM_X86_64", 3: "EM_386", 183: "EM_AARCH64", 40: "EM_ARM", 21: "EM_PPC64",
             20: "EM_PPC", 22: "EM_S390", 243: "EM_RISCV", 258: "EM_LOONGARCH", 8: "EM_MIPS",
             2: "EM_SPARC", 43: "EM_SPARCV9", 50: "EM_IA_64"}
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
_INIT_PREFIXES = ("PyInit_", "init", "_cffi_pypyinit_")

_STB_WEAK, _EXPORT_BINDS = 2, frozenset((1, 2, 10))  # GLOBAL, WEAK, GNU_UNIQUE
_STB_GNU_UNIQUE, _STT_FUNC = 10, 2
_NT_GNU_PROPERTY, _X86_ISA_NEEDED, _NT_FDO_DLOPEN = 5, 0xC0008002, 0x407C0C0A



class Symbol(NamedTuple):
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
    """One entry of an FDO ``.note.dlopen`` note: libraries the file may ``dlopen``."""

    sonames: Tuple[str, ...]
    feature: Optional[str]
    priority: Optional[str]
    """``required``, ``recommended`` or ``suggested`` when the note says."""


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic linker and the policies care about in one ELF file."""

    elf_class: int
    """32 or 64."""
    machine: str
    """The e_machine name, e.g. ``EM_X86_64`` (``EM_<number>`` when not in the table)."""
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
    ``init*``, ``_cffi_pypyinit_*``), from the dynamic symbols."""
    isa_level: Optional[str] = None
    """x86-64 micro-architecture level the file needs beyond the baseline (``x86_64_v3``),
    from its GNU_PROPERTY_X86_ISA_1_NEEDED note; None when it needs only the baseline."""
    e_flags: int = 0
    """ELF header e_flags (ARM float ABI etc.)."""
    is_static: bool = False
    """No PT_DYNAMIC segment (a static executable)."""
    exported: Tuple[str, ...] = ()
    """Defined dynamic symbols with GLOBAL/WEAK/GNU_UNIQUE binding and DEFAULT/PROTECTED
    visibility, in table order, each name once."""
    unique: Tuple[str, ...] = ()
    """The subset of ``exported`` with STB_GNU_UNIQUE binding."""
    version_defs: Tuple[str, ...] = ()
    """``.gnu.version_d`` version names, the file's base entry excluded."""
    dlopen_notes: Tuple[DlopenNote, ...] = ()
    """FDO ``.note.dlopen`` entries (owner ``FDO``, type 0x407c0c0a)."""

    @cached_property
    def undefined_names(self) -> frozenset[str]:
        """The names in ``undefined`` (weak ones too), as a set."""
        return frozenset(s.name for s in self.undefined)

    @cached_property
    def versioned(self) -> Mapping[Tuple[str, str], Tuple[Symbol, ...]]:
        """``undefined`` grouped by (version, library), the unversioned left out."""
        groups: Dict[Tuple[str, str], List[Symbol]] = {}
        for s in self.undefined:
            if s.version is not None and s.library is not None:
                groups.setdefault((s.version, s.library), []).append(s)
        return {key: tuple(value) for key, value in groups.items()}

    def is_python_extension(self, filename: str) -> bool:
        """True when the file defines the module init function for its own name."""
        module = filename.split(".", 1)[0]
        return bool({f"PyInit_{module}", f"init{module}", f"_cffi_pypyinit_{module}"}
                    & self.init_functions)


def elf_header(path: Path) -> Optional[Tuple[int, str]]:
    """(class, machine) of ``path`` from its first 20 bytes, as :class:`ElfInfo` names them
    (``64``, ``EM_X86_64``), or None if it is not an ELF file."""
    try:
        with path.open("rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != ELF_MAGIC:
        return None
    e_machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return {1: 32, 2: 64}.get(head[4], 0), _MACHINES.get(e_machine, f"EM_{e_machine}")


def _version_needs(r: Reader, where: Tuple[int, int], strtab: Tuple[int, int],
                   ) -> Tuple[Dict[str, List[str]], Dict[int, Tuple[str, str]]]:
    """Version needs per soname, and version index -> (version, soname)."""
    end = r.lay.end
    needs: Dict[str, List[str]] = {}
    by_index: Dict[int, Tuple[str, str]] = {}
    offset, count = where
    for _ in range(min(count, r.size // 16)):
        r.check(offset, 16, ".gnu.version_r entry")
        _, cnt, file, aux, nxt = struct.unpack_from(end + "HHIII", r.data, offset)
        lib = r.string(strtab, file, ".gnu.version_r file")
        at = offset + aux
        for _ in range(min(cnt, r.size // 16)):
            r.check(at, 16, ".gnu.version_r auxiliary entry")
            _, _, other, name, anext = struct.unpack_from(end + "IHHII", r.data, at)
            version = r.string(strtab, name, ".gnu.version_r version")
            by_index[other & 0x7FFF] = (version, lib)
            if not lib.startswith(LOADER_PREFIXES):
                needs.setdefault(lib, []).append(version)
            if anext == 0:
                break
            at += anext
        if nxt == 0:
            break
        offset += nxt
    return needs, by_index


class _Symbols(NamedTuple):
    undefined: List[Symbol]
    exported: List[str]
    unique: List[str]
    inits: frozenset[str]


def _symbols(r: Reader, t: Tables, by_index: Mapping[int, Tuple[str, str]]) -> _Symbols:
    """Decode ``.dynsym`` (and ``.gnu.version``) as whole tables."""
    offset, count = t.dynsym
    undefined: List[Symbol] = []
    exported: Dict[str, None] = {}
    unique: Dict[str, None] = {}
    inits: set[str] = set()
    if count == 0:
        return _Symbols(undefined, [], [], frozenset())
    versions: Optional[array[int]] = None
    if t.versym is not None:
        r.check(t.versym, 2 * count, ".gnu.version table")
        versions = array("H", r.data[t.versym:t.versym + 2 * count])
        if r.little != (sys.byteorder == "little"):
            versions.byteswap()
    start, size = t.dynstr
    data = r.data
    rows = r.table(offset, count, t.symsize, r.lay.sym, ".dynsym")
    make = tuple.__new__  # Symbol's own __new__ is Python code: a tenth of the time per row
    no_version = (None, None)
    for index, (name_at, info, other, shndx) in enumerate(rows):
        if name_at == 0:
            continue
        if name_at >= size:
            raise DefectError(f".dynsym name offset {name_at} is outside its string table")
        stop = data.find(b"\0", start + name_at, start + size)
        if stop < 0:
            raise DefectError(f".dynsym name at {name_at} is not NUL-terminated")
        name = data[start + name_at:stop].decode("utf-8", "replace")
        bind = info >> 4
        if shndx:
            if bind in _EXPORT_BINDS and other & 3 in (0, 3):
                exported[name] = None
                if bind == _STB_GNU_UNIQUE:
                    unique[name] = None
            if info & 0xF == _STT_FUNC and name.startswith(_INIT_PREFIXES):
                inits.add(name)
            continue
        version, library = by_index.get(versions[index] & 0x7FFF, no_version) \
            if versions is not None else no_version
        undefined.append(make(Symbol, (name, version, library, bind == _STB_WEAK)))
    return _Symbols(undefined, list(exported), list(unique), frozenset(inits))


def _isa_level(r: Reader, desc: int, size: int) -> Optional[str]:
    end, word = r.lay.end, r.lay.word
    at, stop = desc, desc + size
    while at + 8 <= stop:
        kind, datasz = struct.unpack_from(end + "2I", r.data, at)
        if at + 8 + datasz > stop:
            raise DefectError("a GNU property runs past the end of its note")
        if kind == _X86_ISA_NEEDED and datasz == 4:
            bits = struct.unpack_from(end + "I", r.data, at + 8)[0] & ~1  # bit 0: baseline
            for bit, level in ((8, "x86_64_v4"), (4, "x86_64_v3"), (2, "x86_64_v2")):
                if bits & bit:
                    return level
        at += 8 + (datasz + word - 1) // word * word
    return None


def _dlopen(r: Reader, desc: int, size: int) -> List[DlopenNote]:
    """Entries of an FDO dlopen note (a JSON array of objects with a ``soname`` list); a
    payload or entry that is not such JSON is skipped, as the tools that read them do."""
    text = bytes(r.data[desc:desc + size]).split(b"\0", 1)[0]
    try:
        entries = json.loads(text.decode("utf-8"))
    except ValueError:
        return []
    out: List[DlopenNote] = []
    for entry in entries if isinstance(entries, list) else []:
        sonames = entry.get("soname") if isinstance(entry, dict) else None
        if not isinstance(sonames, list) or not all(isinstance(s, str) for s in sonames):
            continue
        feature, priority = entry.get("feature"), entry.get("priority")
        out.append(DlopenNote(tuple(sonames), feature if isinstance(feature, str) else None,
                              priority if isinstance(priority, str) else None))
    return out


def _libc(interp: Optional[str], needed: Sequence[str]) -> Optional[str]:
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
    """The platform architecture: by e_machine, class and byte order; 32-bit ARM code is
    armv7l only for the EABI 5 hard-float ABI (soft-float code does not run there)."""
    arch = _EM_ARCH.get((machine, elf_class, little))
    if arch == "armv7l" and (flags & EF_ARM_EABIMASK != EF_ARM_EABI_VER5
                             or not flags & EF_ARM_ABI_FLOAT_HARD):
        return "armv5l"
    return arch


def _parse(data: Buffer) -> ElfInfo:
    r = Reader(data)
    r.check(16, r.lay.ehdr.size, "ELF header")
    (_, e_machine, _, _, phoff, shoff, e_flags, _, phentsize, phnum, shentsize, shnum,
     _) = r.lay.ehdr.unpack_from(data, 16)
    machine = _MACHINES.get(e_machine, f"EM_{e_machine}")
    segments = read_segments(r, phoff, phnum, phentsize) if phoff else []
    sections = read_sections(r, shoff, shnum, shentsize)
    loads = [s for s in segments if s.type == PT_LOAD]
    interp = None
    dynamic = Dynamic(None, [], [], [], {}, (0, 0))
    has_dynamic = False
    for seg in segments:
        if seg.type == PT_INTERP:
            r.check(seg.offset, seg.filesz, "PT_INTERP segment")
            raw = bytes(data[seg.offset:seg.offset + seg.filesz])
            interp = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif seg.type == PT_DYNAMIC and not has_dynamic:
            has_dynamic = True
            dynamic = read_dynamic(r, seg, loads, sections)
    tables = find_tables(r, sections, dynamic.values, loads, dynamic.strtab)
    needs, by_index = _version_needs(r, tables.verneed, tables.verneed_str)
    symbols = _symbols(r, tables, by_index)
    version_defs = read_version_defs(r, tables.verdef, tables.verdef_str)
    if sections:
        areas = [(s.offset, s.size, s.align) for s in sections if s.type == SHT_NOTE]
    else:
        areas = [(s.offset, s.filesz, s.align) for s in segments if s.type == PT_NOTE]
    isa = None
    dlopen: List[DlopenNote] = []
    for owner, kind, desc, size in iter_notes(r, areas):
        if owner == b"GNU" and kind == _NT_GNU_PROPERTY and e_machine == 62:
            isa = _isa_level(r, desc, size) or isa
        elif owner == b"FDO" and kind == _NT_FDO_DLOPEN:
            dlopen += _dlopen(r, desc, size)
    return ElfInfo(
        elf_class=r.elf_class, machine=machine,
        arch=_arch(machine, r.elf_class, r.little, e_flags), interp=interp,
        libc=_libc(interp, dynamic.needed), soname=dynamic.soname,
        needed=tuple(dynamic.needed), rpath=tuple(dynamic.rpath),
        runpath=tuple(dynamic.runpath), version_needs={k: tuple(v) for k, v in needs.items()},
        undefined=tuple(symbols.undefined), init_functions=symbols.inits, isa_level=isa,
        e_flags=e_flags, is_static=not has_dynamic, exported=tuple(symbols.exported),
        unique=tuple(symbols.unique), version_defs=tuple(version_defs),
        dlopen_notes=tuple(dlopen))


def parse_elf(data: Buffer, name: str) -> ElfInfo:
    """Decode the facts of the ELF file ``data`` (``name`` is for messages); raises
    AuditError, naming the file and the defect, if it is malformed."""
    try:
        return _parse(data)
    except DefectError as exc:
        defect = str(exc)
    except (struct.error, ValueError, OverflowError, IndexError, MemoryError) as exc:
        defect = f"malformed ({exc})"
    raise AuditError(f"cannot read the ELF file {name}: {defect}",
                     tip="is the file truncated or not a shared library?")


def read_elf(path: Path) -> ElfInfo:
    """Read the facts of the ELF file at ``path``; raises AuditError if it cannot be parsed."""
    try:
        with path.open("rb") as f:
            try:
                view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # empty file: mmap refuses it
                return parse_elf(b"", str(path))
            with view:
                return parse_elf(view, str(path))
    except OSError as exc:
        raise AuditError(f"cannot read the ELF file {path}: {exc.strerror or exc}",
                         tip="is the file readable?") from None
