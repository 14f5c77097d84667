"""Decode the same ELF files with mlbackend's decoder and with pyelftools, in one process.

    python benchmarks/elf_vs_pyelftools.py [FILE...]   # default: /usr/lib/x86_64-linux-gnu/*.so*

pyelftools reads what the audit needs the way a pyelftools-based audit does: the dynamic
segment, .gnu.version_r and, per dynamic symbol, its binding, section and version. Files are
read into memory first, so only decoding is timed; the decoders alternate, best of 3.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from mlbackend.elf import parse_elf  # noqa: E402


def with_pyelftools(data: bytes) -> int:
    from elftools.elf.dynamic import DynamicSegment
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection, GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    elf = ELFFile(io.BytesIO(data))
    count = 0
    for seg in elf.iter_segments():
        if isinstance(seg, DynamicSegment):
            count += sum(1 for _ in seg.iter_tags())
    versym = dynsym = None
    for sec in elf.iter_sections():
        if isinstance(sec, GNUVerNeedSection):
            count += sum(len(list(aux)) for _, aux in sec.iter_versions())
        elif isinstance(sec, GNUVerSymSection):
            versym = sec
        elif isinstance(sec, SymbolTableSection) and sec["sh_type"] == "SHT_DYNSYM":
            dynsym = sec
    for index, sym in enumerate(dynsym.iter_symbols() if dynsym is not None else ()):
        _ = sym.name, sym["st_shndx"], sym["st_info"]["bind"]
        if versym is not None:
            _ = versym.get_symbol(index)["ndx"]
        count += 1
    return count


def main(argv: List[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(
        p for p in Path("/usr/lib/x86_64-linux-gnu").glob("*.so*")
        if p.is_file() and not p.is_symlink())
    blobs = [d for d in (p.read_bytes() for p in paths) if d[:4] == b"\x7fELF"]
    best = {"mlbackend": float("inf"), "pyelftools": float("inf")}
    symbols = 0
    for _ in range(3):
        start = time.perf_counter()
        symbols = 0
        for data in blobs:
            info = parse_elf(data, "file")
            symbols += len(info.undefined) + len(info.exported)
        best["mlbackend"] = min(best["mlbackend"], time.perf_counter() - start)
        start = time.perf_counter()
        for data in blobs:
            with_pyelftools(data)
        best["pyelftools"] = min(best["pyelftools"], time.perf_counter() - start)
    size = sum(len(d) for d in blobs) >> 20
    print(f"{len(blobs)} ELF files, {size} MB, {symbols} dynamic symbols (undefined + exported)")
    for name, value in best.items():
        print(f"{name:>10}: {value:6.3f} s")
    print(f"ratio pyelftools / mlbackend: {best['pyelftools'] / best['mlbackend']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
