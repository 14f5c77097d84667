"""The ELF file format, as far as the audit reads it: headers, segments, sections, the
dynamic segment, version definitions and notes, every offset and size checked against the
file before use (a violation raises :class:`DefectError` naming it)."""

from __future__ import annotations

import mmap
import struct
from typing import Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

ELF_MAGIC = b"\x7fELF"
Buffer = Union[bytes, bytearray, mmap.mmap]

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
SHT_DYNSYM, SHT_NOTE = 11, 7
SHT_VERDEF, SHT_VERNEED, SHT_VERSYM = 0x6FFFFFFD, 0x6FFFFFFE, 0x6FFFFFFF
DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB, DT_STRSZ = 1, 4, 5, 6, 10
DT_SONAME, DT_RPATH, DT_RUNPATH = 14, 15, 29
DT_GNU_HASH, DT_VERSYM = 0x6FFFFEF5, 0x6FFFFFF0
DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM = (0x6FFFFFFC, 0x6FFFFFFD, 0x6FFFFFFE,
                                                          0x6FFFFFFF)
class DefectError(Exception):
    """What is wrong with the file, as one phrase."""


class Layout(NamedTuple):
    """The record formats of one ELF class and byte order."""

    end: str
    ehdr: struct.Struct
    phdr: struct.Struct
    shdr: struct.Struct
    sym: struct.Struct
    dyn: struct.Struct
    word: int


def layout(elf_class: int, end: str) -> Layout:
    if elf_class == 64:
        return Layout(end, struct.Struct(end + "HHIQQQIHHHHHH"),
                       struct.Struct(end + "IIQQQQQQ"), struct.Struct(end + "IIQQQQIIQQ"),
                       struct.Struct(end + "IBBH16x"), struct.Struct(end + "qQ"), 8)
    return Layout(end, struct.Struct(end + "HHIIIIIHHHHHH"), struct.Struct(end + "8I"),
                   struct.Struct(end + "10I"), struct.Struct(end + "I8xBBH"),
                   struct.Struct(end + "iI"), 4)


class Segment(NamedTuple):
    type: int
    offset: int
    vaddr: int
    filesz: int
    align: int


class Section(NamedTuple):
    type: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int


class Reader:
    """Bounds-checked access to the bytes of one ELF file."""

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.size = len(data)
        if self.size < 52 or data[:4] != ELF_MAGIC:
            raise DefectError("not an ELF file (no ELF header)")
        if data[4] not in (1, 2) or data[5] not in (1, 2):
            raise DefectError(f"unknown ELF class {data[4]} or byte order {data[5]}")
        self.elf_class = 32 if data[4] == 1 else 64
        self.little = data[5] == 1
        self.lay = layout(self.elf_class, "<" if self.little else ">")

    def check(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise DefectError(f"{what} (bytes {offset}..{offset + size}) lies outside the file "
                          f"of {self.size} bytes")

    def table(self, offset: int, count: int, entsize: int, fmt: struct.Struct,
              what: str) -> Iterator[Tuple[int, ...]]:
        if count == 0:
            return iter(())
        if entsize < fmt.size:
            raise DefectError(f"{what} entries of {entsize} bytes, expected {fmt.size}")
        self.check(offset, count * entsize, what)
        if entsize == fmt.size:
            return fmt.iter_unpack(self.data[offset:offset + count * entsize])
        return (fmt.unpack_from(self.data, offset + i * entsize) for i in range(count))

    def string(self, strtab: Tuple[int, int], offset: int, what: str) -> str:
        start, size = strtab
        if not 0 <= offset < size:
            raise DefectError(f"{what} name offset {offset} is outside its string table")
        end = self.data.find(b"\0", start + offset, start + size)
        if end < 0:
            raise DefectError(f"{what} name at {offset} is not NUL-terminated")
        return self.data[start + offset:end].decode("utf-8", "replace")


def read_segments(r: Reader, phoff: int, phnum: int, phentsize: int) -> List[Segment]:
    out = []
    for p in r.table(phoff, phnum, phentsize, r.lay.phdr, "program header table"):
        if r.elf_class == 64:
            out.append(Segment(p[0], p[2], p[3], p[5], p[7]))
        else:
            out.append(Segment(p[0], p[1], p[2], p[4], p[7]))
    return out


def read_sections(r: Reader, shoff: int, shnum: int, shentsize: int) -> List[Section]:
    if shoff == 0:
        return []
    if shnum == 0:  # more than 0xff00 sections: the count is in section 0's sh_size
        shnum = r.lay.shdr.unpack_from(r.data, shoff)[5] if shoff + r.lay.shdr.size \
            <= r.size else 0
    return [Section(s[1], s[4], s[5], s[6], s[7], s[8], s[9])
            for s in r.table(shoff, shnum, shentsize, r.lay.shdr, "section header table")]


def file_offset(loads: Sequence[Segment], address: int, what: str) -> int:
    for seg in loads:
        if seg.vaddr <= address < seg.vaddr + seg.filesz:
            return address - seg.vaddr + seg.offset
    raise DefectError(f"{what} address {address:#x} is in no loaded segment")


def gnu_hash_count(r: Reader, offset: int) -> int:
    """Number of dynamic symbols, from the DT_GNU_HASH table (when there are no sections)."""
    end = r.lay.end
    r.check(offset, 16, "DT_GNU_HASH header")
    nbuckets, symoffset, bloom_size, _ = struct.unpack_from(end + "4I", r.data, offset)
    buckets_at = offset + 16 + bloom_size * r.lay.word
    r.check(buckets_at, 4 * nbuckets, "DT_GNU_HASH buckets")
    buckets = struct.unpack_from(f"{end}{nbuckets}I", r.data, buckets_at)
    last: int = max(buckets, default=0)
    if last < symoffset:
        return int(symoffset)
    chain_at = buckets_at + 4 * nbuckets
    while True:
        r.check(chain_at + 4 * (last - symoffset), 4, "DT_GNU_HASH chain")
        if struct.unpack_from(end + "I", r.data, chain_at + 4 * (last - symoffset))[0] & 1:
            return last + 1
        last += 1


class Tables(NamedTuple):
    """Where the dynamic tables are: (offset, count) or (offset, size) pairs."""

    dynsym: Tuple[int, int]
    symsize: int
    dynstr: Tuple[int, int]
    versym: Optional[int]
    verneed: Tuple[int, int]
    verneed_str: Tuple[int, int]
    verdef: Tuple[int, int]
    verdef_str: Tuple[int, int]


def str_section(r: Reader, sections: Sequence[Section], index: int, what: str,
                 ) -> Tuple[int, int]:
    if not 0 <= index < len(sections):
        raise DefectError(f"{what} links to section {index}, which does not exist")
    s = sections[index]
    r.check(s.offset, s.size, f"string table of {what}")
    return s.offset, s.size


def find_tables(r: Reader, sections: Sequence[Section], dyn: Mapping[int, int],
            loads: Sequence[Segment], dynstr: Tuple[int, int]) -> Tables:
    """From the section headers when present, else from the dynamic entries."""
    symsize = r.lay.sym.size
    dynsym, versym = (0, 0), None
    verneed = verdef = (0, 0)
    verneed_str = verdef_str = dynstr
    if any(s.type == SHT_DYNSYM for s in sections):
        for s in sections:
            if s.type == SHT_DYNSYM:
                dynsym = (s.offset, s.size // (s.entsize or symsize))
                symsize = s.entsize or symsize
                dynstr = str_section(r, sections, s.link, ".dynsym")
            elif s.type == SHT_VERSYM:
                versym = s.offset
            elif s.type == SHT_VERNEED:
                verneed = (s.offset, s.info)
                verneed_str = str_section(r, sections, s.link, ".gnu.version_r")
            elif s.type == SHT_VERDEF:
                verdef = (s.offset, s.info)
                verdef_str = str_section(r, sections, s.link, ".gnu.version_d")
        return Tables(dynsym, symsize, dynstr, versym, verneed, verneed_str, verdef,
                       verdef_str)
    if DT_SYMTAB in dyn:
        start = file_offset(loads, dyn[DT_SYMTAB], "DT_SYMTAB")
        if DT_HASH in dyn:
            at = file_offset(loads, dyn[DT_HASH], "DT_HASH")
            r.check(at, 8, "DT_HASH header")
            count = struct.unpack_from(r.lay.end + "2I", r.data, at)[1]
        elif DT_GNU_HASH in dyn:
            count = gnu_hash_count(r, file_offset(loads, dyn[DT_GNU_HASH], "DT_GNU_HASH"))
        else:
            raise DefectError("DT_SYMTAB without DT_HASH or DT_GNU_HASH and no section headers")
        dynsym = (start, count)
    if DT_VERSYM in dyn:
        versym = file_offset(loads, dyn[DT_VERSYM], "DT_VERSYM")
    if DT_VERNEED in dyn:
        verneed = (file_offset(loads, dyn[DT_VERNEED], "DT_VERNEED"),
                   dyn.get(DT_VERNEEDNUM, 0))
    if DT_VERDEF in dyn:
        verdef = (file_offset(loads, dyn[DT_VERDEF], "DT_VERDEF"), dyn.get(DT_VERDEFNUM, 0))
    return Tables(dynsym, symsize, dynstr, versym, verneed, verneed_str, verdef, verdef_str)


class Dynamic(NamedTuple):
    soname: Optional[str]
    needed: List[str]
    rpath: List[str]
    runpath: List[str]
    values: Dict[int, int]
    strtab: Tuple[int, int]


def read_dynamic(r: Reader, seg: Segment, loads: Sequence[Segment],
             sections: Sequence[Section]) -> Dynamic:
    fmt = r.lay.dyn
    count = seg.filesz // fmt.size
    entries: List[Tuple[int, int]] = []
    for tag, value in r.table(seg.offset, count, fmt.size, fmt, "PT_DYNAMIC segment"):
        if tag == 0:
            break
        entries.append((tag, value))
    values = dict(entries)
    strtab = (0, 0)
    if DT_STRTAB in values:
        try:
            start = file_offset(loads, values[DT_STRTAB], "DT_STRTAB")
        except DefectError:  # fall back to the section the dynamic section links to
            dynsec = [s for s in sections if s.offset == seg.offset and s.type == 6]
            if not dynsec:
                raise
            start = str_section(r, sections, dynsec[0].link, ".dynamic")[0]
        size = min(values.get(DT_STRSZ, r.size - start), r.size - start)
        strtab = (start, size)
    elif any(t in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH) for t, _ in entries):
        raise DefectError("dynamic entries name strings but there is no DT_STRTAB")
    needed: List[str] = []
    rpath: List[str] = []
    runpath: List[str] = []
    soname = None
    for tag, value in entries:
        if tag == DT_NEEDED:
            needed.append(r.string(strtab, value, "DT_NEEDED"))
        elif tag == DT_SONAME:
            soname = r.string(strtab, value, "DT_SONAME")
        elif tag == DT_RPATH:
            rpath += [p for p in r.string(strtab, value, "DT_RPATH").split(":") if p]
        elif tag == DT_RUNPATH:
            runpath += [p for p in r.string(strtab, value, "DT_RUNPATH").split(":") if p]
    return Dynamic(soname, needed, rpath, runpath, values, strtab)


def read_version_defs(r: Reader, where: Tuple[int, int], strtab: Tuple[int, int]) -> List[str]:
    end = r.lay.end
    names: List[str] = []
    offset, count = where
    for _ in range(min(count, r.size // 20)):
        r.check(offset, 20, ".gnu.version_d entry")
        _, flags, _, cnt, _, aux, nxt = struct.unpack_from(end + "HHHHIII", r.data, offset)
        if cnt and not flags & 1:  # VER_FLG_BASE names the file itself
            r.check(offset + aux, 8, ".gnu.version_d auxiliary entry")
            name = struct.unpack_from(end + "I", r.data, offset + aux)[0]
            names.append(r.string(strtab, name, ".gnu.version_d version"))
        if nxt == 0:
            break
        offset += nxt
    return names


def iter_notes(r: Reader, areas: Sequence[Tuple[int, int, int]],
           ) -> Iterator[Tuple[bytes, int, int, int]]:
    """(owner, type, desc offset, desc size) of every note in the (offset, size, align) areas."""
    end = r.lay.end
    for offset, size, align in areas:
        r.check(offset, size, "note area")
        pad = 8 if align == 8 else 4
        at, stop = offset, offset + size
        while at + 12 <= stop:
            namesz, descsz, kind = struct.unpack_from(end + "3I", r.data, at)
            desc_at = at + (12 + namesz + pad - 1) // pad * pad
            if desc_at + descsz > stop:
                raise DefectError(f"a note at byte {at} runs past the end of its area")
            yield bytes(r.data[at + 12:at + 12 + namesz]).rstrip(b"\0"), kind, desc_at, descsz
            at += (desc_at - at + descsz + pad - 1) // pad * pad
